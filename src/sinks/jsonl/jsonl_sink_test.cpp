// The JSON-lines sink on real shard logs: every report once, in order per shard, across a
// restart that replays the log from the saved cursors and a crash that left extra lines.
#include "sinks/jsonl/jsonl_sink.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/clock.h"
#include "core/record_format.h"
#include "log/shard_log.h"
#include "sinks/common/record.h"

namespace tianhe::sinks::jsonl {
namespace {

class JsonlSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-jsonl-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_config_.dir = dir_ + "/log";
    log_config_.durability = log::Durability::kNone;
    log_config_.segment_bytes = 64 << 10;
    auto l = log::ShardLog::open(log_config_, 0, &stats_);
    ASSERT_TRUE(l.ok()) << l.error().message;
    log_ = std::move(l.value());
  }
  void TearDown() override {
    consumer_.reset();
    log_->close();
    std::filesystem::remove_all(dir_);
  }
  // Appends one record of `n` reports of device 7 with seqs from `seq`.
  void append(uint32_t seq, uint32_t n) {
    core::ReportBatch batch(n, n);
    std::vector<uint8_t> out(1 << 16);
    size_t used = 3;
    for (uint32_t i = 0; i < n; ++i) {
      core::Report* r = batch.add_report();
      r->device_id = 7;
      r->seq = seq + i;
      r->device_time_ns = 1'700'000'000'000'000'000 + i;
      r->protocol = static_cast<core::Protocol>(1);
      core::Metric* m = batch.add_metric(*r);
      m->name = "temperature";
      m->value.f64 = 20.5;
      used += core::encode_report(batch, *r, std::span(out).subspan(used));
    }
    core::encode_payload_header(static_cast<uint16_t>(n), out);
    uint64_t end = 0;
    ASSERT_EQ(log_->append(std::span(out).first(used), &end), log::AppendStatus::kOk);
  }
  void start() {
    ConsumerOptions o;
    o.name = "jsonl";
    o.commit_interval = std::chrono::milliseconds(1);
    auto c = LogConsumer::start(std::move(o), log_config_, {log_.get()},
                                std::make_unique<JsonlWriter>(path(), nullptr));
    ASSERT_TRUE(c.ok()) << c.error().message;
    consumer_ = std::move(c.value());
  }
  void wait_caught_up() {
    const int64_t deadline = core::mono_ns() + 20'000'000'000;
    while (!consumer_->caught_up() && core::mono_ns() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(consumer_->caught_up());
  }
  std::vector<nlohmann::json> lines() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(path());
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  std::string path() const { return dir_ + "/out/reports.jsonl"; }

  std::string dir_;
  log::LogConfig log_config_;
  log::LogStats stats_;
  std::unique_ptr<log::ShardLog> log_;
  std::unique_ptr<LogConsumer> consumer_;
};

TEST_F(JsonlSinkTest, WritesEveryReportOnceAcrossRestartsAndATornTail) {
  append(1, 3);
  start();
  wait_caught_up();
  consumer_->stop();
  auto l = lines();
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0]["device_id"], 7);
  EXPECT_EQ(l[0]["seq"], 1);
  EXPECT_EQ(l[2]["seq"], 3);
  EXPECT_EQ(l[0]["metrics"]["temperature"], 20.5);
  EXPECT_EQ(l[0]["time_ns"], 1'700'000'000'000'000'000);

  // A crash after appending but before the cursor was saved: a line past the saved length.
  { std::ofstream(path(), std::ios::app) << "{\"torn\":true}\n"; }
  append(4, 2);
  start();
  wait_caught_up();
  consumer_->stop();
  l = lines();
  ASSERT_EQ(l.size(), 5u);  // the torn line is cut; nothing written twice
  for (size_t i = 0; i < l.size(); ++i) EXPECT_EQ(l[i]["seq"], i + 1) << i;
}

TEST(JsonlLine, CarriesTheTraceparentAndTypedMetrics) {
  core::ReportBatch batch(1, 4);
  core::Report* r = batch.add_report();
  r->device_id = 9;
  r->seq = 3;
  r->trace.present = true;
  r->trace.trace_id[15] = 1;
  r->trace.span_id[7] = 2;
  r->trace.flags = 1;
  core::Metric* m = batch.add_metric(*r);
  m->name = "door_open";
  m->value.type = core::ValueType::kBool;
  m->value.b = true;
  std::vector<uint8_t> out(1024);
  const size_t n = core::encode_report(batch, *r, out);
  ASSERT_GT(n, 0u);
  core::ReportBatch back(1, 4);
  std::vector<uint8_t> payload(3);
  core::encode_payload_header(1, payload);
  payload.insert(payload.end(), out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n));
  ASSERT_EQ(core::decode_payload(payload, back), core::RecordStatus::kOk);
  const auto j = nlohmann::json::parse(record_json(back[0], nullptr));
  EXPECT_EQ(j["traceparent"], "00-00000000000000000000000000000001-0000000000000002-01");
  EXPECT_EQ(j["metrics"]["door_open"], true);
  EXPECT_EQ(j["seq"], 3);
  EXPECT_FALSE(j.contains("tenant"));  // no registry: no tenant name to give
}

TEST(JsonlConfig, DefaultsUnderTheDataDirAndOff) {
  config::ConfigTable t = config_table();
  std::any a = t.make_default();
  ASSERT_EQ(t.finish(a, "/var/lib/tianhe"), "");
  const auto& c = std::any_cast<const JsonlConfig&>(a);
  EXPECT_FALSE(c.enabled);
  EXPECT_EQ(c.path, "/var/lib/tianhe/reports.jsonl");
  EXPECT_EQ(t.section.header, "sinks.jsonl");
}

}  // namespace
}  // namespace tianhe::sinks::jsonl
