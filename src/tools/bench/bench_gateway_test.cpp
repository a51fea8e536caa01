// What `tianhe bench --protocols` reads and rewrites: a bench plan's model codec, the codec
// failure counters of a metrics page, and a process's CPU time with its shard threads apart.
#include "tools/bench/bench_gateway.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/clock.h"

namespace tianhe::tools::bench {
namespace {

TEST(BenchPlan, TheModelCodecIsReplacedAndQuoted) {
  const std::string toml =
      "[protocols.x]\nenabled = true\n[[models]]\nname = \"m\"\ncodec = \"raw\"\nallow = 1\n";
  auto t = with_codec(toml, "/a b/c\"d\\e.js");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(*t,
            "[protocols.x]\nenabled = true\n[[models]]\nname = \"m\"\n"
            "codec = \"/a b/c\\\"d\\\\e.js\"\nallow = 1\n");
  auto builtin = with_codec("codec = \"raw\"", "cayenne_lpp");
  ASSERT_TRUE(builtin.ok());
  EXPECT_EQ(*builtin, "codec = \"cayenne_lpp\"");
}

TEST(BenchPlan, APlanWithoutAModelCodecIsRefusedWithTheOption) {
  auto t = with_codec("[protocols.x]\nlisten = \"127.0.0.1:0\"\nmy_codec = \"raw\"\n", "a.js");
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.error().message.find("--codec"), std::string::npos);
}

TEST(BenchMetrics, CountersAreSummedByTheirLabel) {
  const std::string page =
      "# HELP tianhe_codec_failures_total Payloads.\n"
      "tianhe_codec_failures_total{codec=\"a\",reason=\"timeout\"} 7\n"
      "tianhe_codec_failures_total{codec=\"b\",reason=\"timeout\"} 3\n"
      "tianhe_codec_failures_total{codec=\"a\",reason=\"thrown\"} 1\n"
      "tianhe_codec_failures_total{codec=\"a\",season=\"x\"} 100\n"
      "tianhe_codec_failures_total_other{reason=\"timeout\"} 1000\n"
      "tianhe_codec_failures_total 2\n";
  const auto by = counter_by_label(page, "tianhe_codec_failures_total", "reason");
  EXPECT_EQ(by.at("timeout"), 10u);
  EXPECT_EQ(by.at("thrown"), 1u);
  EXPECT_EQ(by.at(""), 102u);  // the sample without the label, and the one with another
  EXPECT_EQ(by.size(), 3u);
}

TEST(BenchArgs, SimulateArgsAreSplitAtWhitespace) {
  EXPECT_EQ(split_words("  --payload lpp\t--x 1 "),
            (std::vector<std::string>{"--payload", "lpp", "--x", "1"}));
  EXPECT_TRUE(split_words("").empty());
}

// A thread named as the shard threads are spins until its CPU time shows in the shard share:
// waits on the counter with a deadline, asserts nothing about how long it took.
TEST(BenchCpu, ShardThreadsAreCountedApartFromTheProcess) {
  const CpuTimes before = cpu_times(getpid());
  ASSERT_GE(before.process, 0);
  EXPECT_EQ(before.shards, 0);
  std::atomic<bool> stop{false};
  std::thread spinner([&] {
    pthread_setname_np(pthread_self(), "shard-7");
    while (!stop.load()) {
    }
  });
  const int64_t deadline = core::mono_ns() + 60'000'000'000;
  CpuTimes now = before;
  while (now.shards == 0 && core::mono_ns() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    now = cpu_times(getpid());
  }
  stop = true;
  spinner.join();
  EXPECT_GT(now.shards, 0);
  EXPECT_GE(now.process, now.shards);   // every thread since the start, this one too
  EXPECT_LT(cpu_times(-1).process, 0);  // no such process
}

}  // namespace
}  // namespace tianhe::tools::bench
