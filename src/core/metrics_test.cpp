#include "core/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>

namespace tianhe::core {
namespace {

TEST(PromWriter, ExactTextSortedFamiliesWithHelpAndTypeOnce) {
  PromWriter w;
  w.counter("tianhe_b_total", "B things.", {{"shard", "1"}}, 4);
  w.gauge("tianhe_a_bytes", "A size.", {}, 1.5);
  w.counter("tianhe_b_total", "B things.", {{"shard", "0"}}, 3);
  w.gauge("tianhe_c_ratio", "C ratio.", {{"z", "1"}, {"a", "2"}}, 0.25);
  EXPECT_EQ(w.render(),
            "# HELP tianhe_a_bytes A size.\n"
            "# TYPE tianhe_a_bytes gauge\n"
            "tianhe_a_bytes 1.5\n"
            "# HELP tianhe_b_total B things.\n"
            "# TYPE tianhe_b_total counter\n"
            "tianhe_b_total{shard=\"0\"} 3\n"
            "tianhe_b_total{shard=\"1\"} 4\n"
            "# HELP tianhe_c_ratio C ratio.\n"
            "# TYPE tianhe_c_ratio gauge\n"
            "tianhe_c_ratio{a=\"2\",z=\"1\"} 0.25\n");
}

TEST(PromWriter, EmptyWriterRendersNothing) {
  EXPECT_EQ(PromWriter().render(), "");
}

TEST(PromWriter, EscapesHelpAndLabelValues) {
  PromWriter w;
  w.gauge("x_bytes", "back\\slash\nnew \"quoted\"", {{"path", "C:\\dir\n\"q\""}}, 1);
  EXPECT_EQ(w.render(),
            "# HELP x_bytes back\\\\slash\\nnew \"quoted\"\n"
            "# TYPE x_bytes gauge\n"
            "x_bytes{path=\"C:\\\\dir\\n\\\"q\\\"\"} 1\n");
}

TEST(PromWriter, SumsPerShardSamplesWithEqualLabels) {
  PromWriter w;
  for (int shard = 0; shard < 4; ++shard) {
    // Same labels, given in either order: one sample.
    w.counter("rx_total", "Received.", {{"protocol", "report"}, {"reason", "ok"}}, 10);
    w.counter("rx_total", "Received.", {{"reason", "ok"}, {"protocol", "report"}}, 1);
    w.counter("rx_total", "Received.", {{"protocol", "report"}, {"reason", "bad"}}, 2);
    w.gauge("queue_depth_reports", "Depth.", {}, 0.5);
  }
  EXPECT_EQ(w.render(),
            "# HELP queue_depth_reports Depth.\n"
            "# TYPE queue_depth_reports gauge\n"
            "queue_depth_reports 2\n"
            "# HELP rx_total Received.\n"
            "# TYPE rx_total counter\n"
            "rx_total{protocol=\"report\",reason=\"bad\"} 8\n"
            "rx_total{protocol=\"report\",reason=\"ok\"} 44\n");
}

TEST(PromWriter, HistogramIsCumulativeAndSummedBucketByBucket) {
  PromWriter w;
  const std::array<double, 2> bounds = {0.1, 1};
  const std::array<uint64_t, 3> shard0 = {1, 2, 3};
  const std::array<uint64_t, 3> shard1 = {1, 0, 4};
  w.histogram("lat_seconds", "Latency.", {{"stage", "append"}}, bounds, shard0, 5.5);
  EXPECT_EQ(w.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{stage=\"append\",le=\"0.1\"} 1\n"
            "lat_seconds_bucket{stage=\"append\",le=\"1\"} 3\n"
            "lat_seconds_bucket{stage=\"append\",le=\"+Inf\"} 6\n"
            "lat_seconds_sum{stage=\"append\"} 5.5\n"
            "lat_seconds_count{stage=\"append\"} 6\n");
  w.histogram("lat_seconds", "Latency.", {{"stage", "append"}}, bounds, shard1, 2);
  EXPECT_EQ(w.render(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{stage=\"append\",le=\"0.1\"} 2\n"
            "lat_seconds_bucket{stage=\"append\",le=\"1\"} 4\n"
            "lat_seconds_bucket{stage=\"append\",le=\"+Inf\"} 11\n"
            "lat_seconds_sum{stage=\"append\"} 7.5\n"
            "lat_seconds_count{stage=\"append\"} 11\n");
}

TEST(PromWriter, HistogramWithoutLabels) {
  PromWriter w;
  const std::array<uint64_t, 1> counts = {7};
  w.histogram("h_seconds", "H.", {}, {}, counts, 0.25);
  EXPECT_EQ(w.render(),
            "# HELP h_seconds H.\n"
            "# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"+Inf\"} 7\n"
            "h_seconds_sum 0.25\n"
            "h_seconds_count 7\n");
}

TEST(PromWriter, Log2MicrosecondHistogramInSeconds) {
  PromWriter w;
  const std::array<uint64_t, 4> buckets = {1, 2, 3, 4};  // < 1us, < 2us, < 4us, rest
  write_log2_us_histogram(w, "sync_seconds", "Sync.", {}, buckets, 0.001);
  EXPECT_EQ(w.render(),
            "# HELP sync_seconds Sync.\n"
            "# TYPE sync_seconds histogram\n"
            "sync_seconds_bucket{le=\"1e-06\"} 1\n"
            "sync_seconds_bucket{le=\"2e-06\"} 3\n"
            "sync_seconds_bucket{le=\"4e-06\"} 6\n"
            "sync_seconds_bucket{le=\"+Inf\"} 10\n"
            "sync_seconds_sum 0.001\n"
            "sync_seconds_count 10\n");
}

TEST(PromValue, IntegersWithoutExponentSpecialValuesAsPrometheusSpellsThem) {
  EXPECT_EQ(format_prom_value(0), "0");
  EXPECT_EQ(format_prom_value(-0.0), "0");
  EXPECT_EQ(format_prom_value(42), "42");
  EXPECT_EQ(format_prom_value(-3), "-3");
  EXPECT_EQ(format_prom_value(1e15), "1000000000000000");
  EXPECT_EQ(format_prom_value(9007199254740993.0), "9007199254740992");
  EXPECT_EQ(format_prom_value(18446744073709551615.0), "18446744073709551616");
  EXPECT_EQ(format_prom_value(0.1), "0.1");
  EXPECT_EQ(format_prom_value(1.5), "1.5");
  EXPECT_EQ(format_prom_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(format_prom_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_prom_value(-std::numeric_limits<double>::infinity()), "-Inf");
}

TEST(PromValue, DoublesRoundTrip) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exp_dist(-300, 300);
  for (int i = 0; i < 10000; ++i) {
    const double v = std::pow(10.0, exp_dist(rng)) * ((rng() & 1) != 0 ? 1 : -1);
    const std::string text = format_prom_value(v);
    EXPECT_EQ(std::strtod(text.c_str(), nullptr), v) << text;
  }
  EXPECT_EQ(std::strtod(format_prom_value(0.1 + 0.2).c_str(), nullptr), 0.1 + 0.2);
}

#ifndef NDEBUG
TEST(PromWriterDeathTest, FamilyWithTwoTypesIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        PromWriter w;
        w.counter("x_total", "X.", {}, 1);
        w.gauge("x_total", "X.", {}, 1);
      },
      "two different types");
}

TEST(PromWriterDeathTest, InvalidNamesAreBugs) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(PromWriter().gauge("bad-name", "", {}, 1), "metric names");
  EXPECT_DEATH(PromWriter().gauge("ok", "", {{"bad label", "v"}}, 1), "label names");
  EXPECT_DEATH(PromWriter().gauge("ok", "", {{"a", "1"}, {"a", "2"}}, 1), "label names");
}
#endif

TEST(MetricsRegistry, RunsCollectorsAndAddsProcessMetrics) {
  MetricsRegistry reg;
  int calls = 0;
  reg.add([&calls](PromWriter& w) {
    ++calls;
    w.counter("tianhe_test_events_total", "Events.", {{"shard", "0"}}, 5);
  });
  reg.add([](PromWriter& w) {
    w.counter("tianhe_test_events_total", "Events.", {{"shard", "0"}}, 2);
  });
  const std::string text = reg.render();
  EXPECT_EQ(calls, 1);
  EXPECT_NE(text.find("tianhe_test_events_total{shard=\"0\"} 7\n"), std::string::npos) << text;
  for (const char* name :
       {"process_resident_memory_bytes ", "process_cpu_seconds_total ", "process_open_fds ",
        "process_start_time_seconds ", "tianhe_bugs_total "}) {
    EXPECT_NE(text.find(std::string("\n") + name), std::string::npos) << name << "\n" << text;
  }
  EXPECT_GT(process_rss_bytes(), 1024u * 1024u);
  // Start time is in the past and after 2020.
  const std::string start_name = "\nprocess_start_time_seconds ";
  const size_t at = text.find(start_name);
  ASSERT_NE(at, std::string::npos);
  const double start = std::strtod(text.c_str() + at + start_name.size(), nullptr);
  EXPECT_GT(start, 1.5e9);
  EXPECT_LE(start, static_cast<double>(time(nullptr)) + 1);
}

// A scrape shaped like the gateway's: per-shard counters by protocol and reason, log2 latency
// histograms, gauges, HTTP and process metrics.
std::string realistic_scrape() {
  MetricsRegistry reg;
  reg.add([](PromWriter& w) {
    for (int shard = 0; shard < 8; ++shard) {
      const Labels sl = {{"shard", std::to_string(shard)}};
      for (const char* proto : {"report", "mqtt_sn", "modbus", "lorawan"}) {
        w.counter("tianhe_protocol_reports_total", "Reports accepted by protocol.",
                  {{"protocol", proto}}, 1000.0 * shard + 1);
        for (const char* reason : {"malformed", "unknown_device", "model_violation"}) {
          w.counter("tianhe_protocol_rejected_reports_total", "Reports rejected, by reason.",
                    {{"protocol", proto}, {"reason", reason}}, shard);
        }
      }
      std::array<uint64_t, 24> buckets{};
      for (size_t i = 0; i < buckets.size(); ++i) buckets[i] = (i * 7 + shard) % 13;
      write_log2_us_histogram(w, "tianhe_log_append_duration_seconds", "Shard log append latency.",
                              sl, buckets, 0.125 * shard);
      write_log2_us_histogram(w, "tianhe_log_sync_duration_seconds", "Shard log fdatasync latency.",
                              {}, buckets, 1.0 / 3.0);
      w.gauge("tianhe_shard_queue_depth_reports", "Reports waiting in the shard's ring.", sl,
              shard * 3);
      w.gauge("tianhe_udp_receive_buffer_bytes", "SO_RCVBUF granted by the kernel.", sl,
              32.0 * 1024 * 1024);
      w.counter("tianhe_udp_kernel_drops_total", "Datagrams dropped by the kernel (SO_RXQ_OVFL).",
                sl, 0);
      w.gauge("tianhe_sink_backlog_bytes", "Log bytes not yet delivered to a sink.",
              {{"sink", "store"}, {"path", "/var/lib/tianhe \"main\"\\log\n"}}, 1e12 + shard);
    }
    w.gauge("tianhe_build_info", "Build information (always 1).",
            {{"version", "0.1.0"}, {"compiler", "gcc"}}, 1);
    w.gauge("tianhe_rule_last_value_ratio", "A ratio that may be undefined.", {},
            std::numeric_limits<double>::quiet_NaN());
    w.gauge("tianhe_rule_upper_limit_celsius", "An unbounded limit.", {},
            std::numeric_limits<double>::infinity());
  });
  return reg.render();
}

TEST(MetricsRegistry, RealisticScrapePassesPromtool) {
  const char* promtool = "/usr/bin/promtool";
  if (access(promtool, X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/promtool is missing (install the 'prometheus' package); skipped";
  }
  const std::string text = realistic_scrape();
  ASSERT_GT(text.size(), 20000u);
  const auto dir = std::filesystem::temp_directory_path();
  const std::string in = (dir / ("tianhe_metrics_" + std::to_string(getpid()) + ".txt")).string();
  {
    std::ofstream f(in, std::ios::binary);
    f << text;
  }
  const std::string cmd = std::string(promtool) + " check metrics < " + in + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) output.append(buf.data(), n);
  const int status = pclose(p);
  std::filesystem::remove(in);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "") << "promtool reported problems:\n" << output;
}

}  // namespace
}  // namespace tianhe::core

namespace tianhe::core {
namespace {

TEST(SumSamplesTest, SumsEveryLabelSetOfOneNameOnly) {
  const std::string text =
      "# TYPE a_total counter\n"
      "a_total{shard=\"0\"} 2\n"
      "a_total{shard=\"1\"} 3.5\n"
      "a_total_extra 100\n"
      "b_total 7\n"
      "a_total 1";
  EXPECT_EQ(sum_samples(text, "a_total"), 6.5);
  EXPECT_EQ(sum_samples(text, "a_total", "shard=\"1\""), 3.5);
  EXPECT_EQ(sum_samples(text, "b_total"), 7);
  EXPECT_EQ(sum_samples(text, "c_total"), 0);
}

}  // namespace
}  // namespace tianhe::core
