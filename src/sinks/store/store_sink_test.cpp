#include "sinks/store/store_sink.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "core/clock.h"
#include "core/metrics.h"
#include "log/shard_log.h"
#include "sinks/store/store.h"
#include "sinks/store/store_test_util.h"

namespace tianhe::sinks::store {
namespace {

using testing::encode;
using testing::kSec;
using testing::kT0;
using testing::Spec;

class SinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-store-sink-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    log_config_.dir = dir_ + "/log";
    log_config_.durability = log::Durability::kNone;
    log_config_.segment_bytes = 64 << 10;
    store_config_.dir = dir_ + "/store";
    store_config_.batch_reports = 100;
    store_config_.chunk_reports = 150;
    for (uint32_t i = 0; i < 2; ++i) {
      auto l = log::ShardLog::open(log_config_, i, &stats_[i]);
      ASSERT_TRUE(l.ok()) << l.error().message;
      logs_.push_back(std::move(l.value()));
    }
  }
  void TearDown() override {
    sink_.reset();
    for (auto& l : logs_) l->close();
    logs_.clear();
    std::filesystem::remove_all(dir_);
  }
  void append(uint32_t shard, const std::vector<Spec>& specs) {
    auto e = encode(specs);
    uint64_t end = 0;
    ASSERT_EQ(logs_[shard]->append(e.payload, &end), log::AppendStatus::kOk);
  }
  void start() {
    auto s = StoreSink::start(store_config_, log_config_, {logs_[0].get(), logs_[1].get()});
    ASSERT_TRUE(s.ok()) << s.error().message;
    sink_ = std::move(s.value());
  }
  void wait_caught_up() {
    int64_t deadline = core::mono_ns() + 20 * kSec;
    while (!sink_->caught_up() && core::mono_ns() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(sink_->caught_up());
  }
  std::unique_ptr<StoreReader> reader() {
    auto r = StoreReader::open(store_config_.dir);
    EXPECT_TRUE(r.ok());
    return std::move(r.value());
  }
  /// Reports for devices [first, first + n), seqs [s0, s1).
  static std::vector<Spec> block(uint64_t first, uint64_t n, uint32_t s0, uint32_t s1) {
    std::vector<Spec> out;
    for (uint32_t s = s0; s < s1; ++s) {
      for (uint64_t d = first; d < first + n; ++d) out.push_back({d, s, kT0 + s * kSec});
    }
    return out;
  }

  std::string dir_;
  log::LogConfig log_config_;
  StoreConfig store_config_;
  log::LogStats stats_[2];
  std::vector<std::unique_ptr<log::ShardLog>> logs_;
  std::unique_ptr<StoreSink> sink_;
};

TEST_F(SinkTest, AFreshLogIsNotABacklog) {
  // The store's cursor 0 sits before each log's first segment header; from the moment the sink
  // starts (before its thread has committed anything) that header is not lag.
  start();
  EXPECT_EQ(logs_[0]->backlog_bytes(), 0u);
  EXPECT_EQ(logs_[1]->backlog_bytes(), 0u);
  EXPECT_EQ(sink_->lag_bytes(), 0u);
  EXPECT_EQ(sink_->lag_seconds(), 0.0);
  EXPECT_TRUE(sink_->caught_up());
}

TEST_F(SinkTest, ConsumesEveryShardAndResumesWithoutLossOrDuplicates) {
  // Shard 0: devices 0..9, shard 1: devices 100..109, 10 seqs each, 20 reports per record.
  for (uint32_t s = 0; s < 10; s += 2) {
    append(0, block(0, 10, s, s + 2));
    append(1, block(100, 10, s, s + 2));
  }
  start();
  wait_caught_up();
  EXPECT_EQ(sink_->stats().reports_written.get(), 200u);
  EXPECT_EQ(sink_->lag_bytes(), 0u);
  EXPECT_EQ(sink_->lag_seconds(), 0.0);
  EXPECT_GE(sink_->stats().chunks_sealed.get(), 1u);
  auto r = reader();
  auto c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 200u);
  EXPECT_EQ(c->devices, 20u);
  sink_->stop();

  // While stopped: more reports, and a retransmission of ones already stored.
  append(0, block(0, 10, 10, 12));
  append(1, block(100, 10, 8, 12));  // seqs 8, 9 are duplicates
  start();
  wait_caught_up();
  EXPECT_EQ(sink_->stats().reports_written.get(), 40u);
  EXPECT_EQ(sink_->stats().duplicates_dropped.get(), 20u);
  c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 240u);
  for (uint64_t d : {uint64_t{3}, uint64_t{105}}) {
    auto h = r->history({.device_id = d});
    ASSERT_TRUE(h.ok()) << h.error().message;
    ASSERT_EQ(h->size(), 12u) << d;
    for (uint32_t s = 0; s < 12; ++s) EXPECT_EQ((*h)[s].seq, s);
    auto l = r->latest(d);
    ASSERT_TRUE(l.ok());
    ASSERT_TRUE(l->has_value());
    EXPECT_EQ((*l)->seq, 11u);
  }
  auto page = r->latest_all(0, 100);  // ids above 0: device 0 is not on the page
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 19u);
  EXPECT_EQ(page->front().device_id, 1u);
  EXPECT_EQ(page->back().device_id, 109u);
  // The restarted sink took its consumer slot back: nothing from its first run pins the logs.
  sink_->stop();
  EXPECT_EQ(logs_[0]->backlog_bytes(), 0u);
  EXPECT_EQ(logs_[1]->backlog_bytes(), 0u);
}

TEST_F(SinkTest, DuplicatesInTheLogAreStoredOnce) {
  start();
  append(0, block(1, 5, 0, 3));
  append(1, block(1, 5, 0, 3));  // the same reports again, on another shard
  append(0, block(1, 5, 2, 4));  // overlaps seq 2
  wait_caught_up();
  EXPECT_EQ(sink_->stats().reports_written.get(), 20u);
  EXPECT_EQ(sink_->stats().duplicates_dropped.get(), 20u);
  auto r = reader();
  auto n = r->count_device(3, INT64_MIN, INT64_MAX);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 4u);
}

TEST_F(SinkTest, FollowsLiveAppendsAndExportsMetrics) {
  start();
  for (uint32_t s = 0; s < 20; ++s) {
    append(s % 2, block(0, 50, s, s + 1));
    if (s % 5 == 4) wait_caught_up();
  }
  wait_caught_up();
  EXPECT_EQ(sink_->stats().reports_written.get(), 1000u);
  sink_->stop();  // commits durably and publishes the cursors to the logs
  EXPECT_EQ(logs_[0]->backlog_bytes(), 0u);
  EXPECT_EQ(logs_[1]->backlog_bytes(), 0u);
  core::PromWriter w;
  sink_->collect(w);
  std::string text = w.render();
  EXPECT_NE(text.find("tianhe_sink_store_reports_written_total 1000"), std::string::npos) << text;
  EXPECT_NE(text.find("tianhe_sink_lag_bytes{sink=\"store\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("tianhe_sink_store_write_seconds_bucket"), std::string::npos) << text;
}

TEST_F(SinkTest, SkipsMalformedRecords) {
  std::vector<uint8_t> junk = {9, 9, 9, 9};
  uint64_t end = 0;
  ASSERT_EQ(logs_[0]->append(junk, &end), log::AppendStatus::kOk);
  append(0, block(1, 2, 0, 1));
  start();
  wait_caught_up();
  EXPECT_EQ(sink_->stats().errors.get(), 0u);
  EXPECT_EQ(sink_->consumer_stats().malformed_records.load(), 1u);
  EXPECT_EQ(sink_->stats().reports_written.get(), 2u);
}

}  // namespace
}  // namespace tianhe::sinks::store
