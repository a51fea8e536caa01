// Tracing on a shard: the sampling decision (consistent, parent-based, always keep, the adaptive
// limit), the spans of a batch and their parents, durability completing root spans, the fate
// table (eviction, concurrent readers) and the offset histories.
#include "runtime/tracing.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "log/shard_log.h"
#include "runtime/shard.h"

namespace tianhe::runtime {
namespace {

using core::tracing::SpanRecord;
using core::tracing::Stage;

std::shared_ptr<const pipeline::Registry> registry() {
  pipeline::ModelSpec m;
  m.name = "env";
  m.metrics.push_back({.name = "temperature", .min = -40, .max = 85, .required = true});
  pipeline::DeviceRange d{.first_id = 1, .count = 100000, .tenant = "t", .model = "env"};
  auto r = pipeline::Registry::build({}, std::span(&m, 1), std::span(&d, 1));
  EXPECT_TRUE(r.ok()) << r.error().message;
  return *r;
}

std::vector<SpanRecord> drain(core::tracing::SpanRing& ring) {
  std::vector<SpanRecord> out;
  std::array<SpanRecord, 256> buf;
  for (size_t n; (n = ring.pop(buf)) > 0;) out.insert(out.end(), buf.begin(), buf.begin() + n);
  return out;
}

class ShardTracing : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-tracing-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_.dir = dir_;
    config_.durability = log::Durability::kBatch;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void start(TracingOptions o) {
    shard_.reset();
    tracing_.reset();
    o.endpoint = "http://127.0.0.1:1/v1/traces";
    tracing_ = std::make_unique<Tracing>(o, 1);
    auto l = log::ShardLog::open(config_, 0, &log_stats_);
    ASSERT_TRUE(l.ok()) << l.error().message;
    shard_ = std::make_unique<Shard>(0, std::move(l.value()), registry());
    shard_->set_tracer(&tracing_->shard(0));
  }

  core::tracing::SpanRing& ring() { return *tracing_->rings()[0]; }

  /// Appends `n` reports of device `device` from seq `seq`, temperature `t` each.
  AppendOutcome append(uint64_t device, uint32_t seq, uint32_t n, double t = 20,
                       bool parent = false, bool parent_sampled = false,
                       uint64_t parent_threshold = core::kNoTraceValue) {
    batch_.clear();
    for (uint32_t i = 0; i < n; ++i) {
      core::Report* r = batch_.add_report();
      r->device_id = device;
      r->seq = seq + i;
      r->received_ns = core::wall_ns();
      if (parent) {
        r->trace.present = true;
        r->trace.flags = parent_sampled ? 1 : 0;
        r->trace.trace_id.fill(static_cast<uint8_t>(seq + i + 1));
        r->trace.span_id.fill(7);
        r->trace.threshold = parent_threshold;
      }
      core::Metric* m = batch_.add_metric(*r);
      m->name = "temperature";
      m->value.f64 = t;
    }
    return shard_->validate_and_append(batch_, status_, stats_);
  }

  /// Waits until the log is durable up to `offset` and tells the tracer.
  void make_durable(uint64_t offset) {
    const int64_t deadline = core::mono_ns() + 10'000'000'000;
    while (shard_->log().durable_offset() < offset && core::mono_ns() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_GE(shard_->log().durable_offset(), offset);
    tracing_->shard(0).on_durable(shard_->log().durable_offset());
  }

  std::string dir_;
  log::LogConfig config_;
  log::LogStats log_stats_;
  std::unique_ptr<Tracing> tracing_;
  std::unique_ptr<Shard> shard_;
  core::ReportBatch batch_{1024, 4096};
  std::array<uint8_t, 1024> status_{};
  PipelineStats stats_;
};

TEST_F(ShardTracing, EveryStageOfATracedReportWithItsParents) {
  start({.sample_rate = 1.0, .always_keep = 0});
  const AppendOutcome out = append(5, 1, 1);
  ASSERT_TRUE(out.ok);
  EXPECT_TRUE(tracing_->shard(0).waiting());
  auto spans = drain(ring());
  // Before durability: validate and append only; the root waits for the fsync.
  ASSERT_EQ(spans.size(), 2u);
  make_durable(out.durable_at);
  EXPECT_FALSE(tracing_->shard(0).waiting());
  auto more = drain(ring());
  spans.insert(spans.end(), more.begin(), more.end());
  std::map<Stage, SpanRecord> by;
  for (const auto& s : spans) by[s.stage] = s;
  ASSERT_EQ(by.size(), 4u);
  const SpanRecord& root = by[Stage::kReport];
  EXPECT_EQ(root.parent_span_id, (std::array<uint8_t, 8>{}));
  for (Stage st : {Stage::kValidate, Stage::kAppend, Stage::kDurable}) {
    EXPECT_EQ(by[st].parent_span_id, root.span_id) << core::tracing::stage_name(st);
    EXPECT_EQ(by[st].trace_id, root.trace_id);
    EXPECT_GE(by[st].start_ns, root.start_ns);
    EXPECT_LE(by[st].end_ns, root.end_ns);
  }
  EXPECT_EQ(root.device_id, 5u);
  EXPECT_EQ(root.seq, 1u);
  EXPECT_STREQ(root.model, "env");
  EXPECT_EQ(root.status, core::tracing::SpanStatus::kOk);
  EXPECT_EQ(root.threshold, 0u);  // rate 1: keep all
  // The ids are the ones any other thread derives from the report.
  core::Report r;
  r.device_id = 5;
  r.seq = 1;
  r.received_ns = root.start_ns;
  EXPECT_EQ(core::tracing::report_trace(r).trace_id, root.trace_id);
}

TEST_F(ShardTracing, RejectedReportsAreKeptWithTheirReason) {
  start({.sample_rate = 0.0});
  append(5, 1, 1, 500);  // out of range
  auto spans = drain(ring());
  ASSERT_EQ(spans.size(), 2u);
  for (const auto& s : spans) {
    EXPECT_EQ(s.status, core::tracing::SpanStatus::kError);
    EXPECT_STREQ(s.detail, "out_of_range");
  }
  // Without always_keep, a rejected report at rate 0 is not traced.
  start({.sample_rate = 0.0, .always_keep = 0});
  append(5, 1, 1, 500);
  EXPECT_TRUE(drain(ring()).empty());
}

TEST_F(ShardTracing, AParentDecidesForTheTrace) {
  start({.sample_rate = 0.0, .always_keep = 0});
  const AppendOutcome out = append(5, 1, 10, 20, /*parent=*/true, /*parent_sampled=*/true);
  make_durable(out.durable_at);
  auto spans = drain(ring());
  EXPECT_EQ(spans.size(), 40u);
  for (const auto& s : spans) {
    if (s.stage == Stage::kReport) {
      EXPECT_EQ(s.parent_span_id, (std::array<uint8_t, 8>{7, 7, 7, 7, 7, 7, 7, 7}));
    }
  }
  start({.sample_rate = 1.0, .always_keep = 0});
  append(5, 1, 10, 20, /*parent=*/true, /*parent_sampled=*/false);
  EXPECT_TRUE(drain(ring()).empty());
}

// A sender that said at which threshold it sampled (tracestate ot=th:8, 50 %) and a gateway at
// 25 % (th:c): the traces kept are those whose randomness reaches c — the consistent subset —
// and their spans carry th:c; without the sender's threshold its flag alone decides.
TEST_F(ShardTracing, ASendersThresholdKeepsTheConsistentSubset) {
  start({.sample_rate = 0.25, .max_spans_per_second = 100'000'000, .always_keep = 0});
  const uint64_t ours = core::tracing::threshold_for_rate(0.25);
  // Trace ids filled with one byte v = 0x80..0xff: randomness 0xvvvvvvvvvvvvvv.
  const AppendOutcome out = append(5, 0x7f, 128, 20, true, true, uint64_t{8} << 52);
  make_durable(out.durable_at);
  uint32_t traced = 0;
  for (uint32_t i = 0; i < batch_.size(); ++i) {
    const core::Report& r = batch_[i];
    EXPECT_EQ(r.traced, core::tracing::trace_randomness(r.trace.trace_id) >= ours) << i;
    traced += r.traced ? 1 : 0;
  }
  EXPECT_EQ(traced, 64u);  // v = 0xc0..0xff
  const auto spans = drain(ring());
  EXPECT_EQ(spans.size(), 4u * 64);
  for (const auto& s : spans) {
    EXPECT_TRUE(s.has_threshold);
    EXPECT_EQ(s.threshold, ours);  // the higher of the sender's and ours
  }
  // The sender's threshold above ours (a lower rate upstream): every sampled trace is kept,
  // its spans carry the sender's threshold.
  start({.sample_rate = 1.0, .always_keep = 0});
  const AppendOutcome out2 = append(5, 0x7f, 128, 20, true, true, uint64_t{8} << 52);
  make_durable(out2.durable_at);
  const auto all = drain(ring());
  EXPECT_EQ(all.size(), 4u * 128);
  for (const auto& s : all) EXPECT_EQ(s.threshold, uint64_t{8} << 52);
  // No threshold from the sender: its flag decides, our spans carry none.
  start({.sample_rate = 0.25, .max_spans_per_second = 100'000'000, .always_keep = 0});
  const AppendOutcome out3 = append(5, 0x7f, 128, 20, true, true);
  make_durable(out3.durable_at);
  const auto flagged = drain(ring());
  EXPECT_EQ(flagged.size(), 4u * 128);
  for (const auto& s : flagged) EXPECT_FALSE(s.has_threshold);
}

// Consistent sampling at 25 %: the fraction traced matches, and each decision is the one the
// trace id gives (so another hop with the same rate makes the same one).
TEST_F(ShardTracing, ConsistentSamplingAtTheRate) {
  start({.sample_rate = 0.25, .max_spans_per_second = 100'000'000, .always_keep = 0});
  uint32_t traced = 0;
  const uint64_t threshold = core::tracing::threshold_for_rate(0.25);
  for (uint32_t b = 0; b < 40; ++b) {
    append(1 + b, 0, 1000);
    for (uint32_t i = 0; i < batch_.size(); ++i) {
      const core::Report& r = batch_[i];
      const bool expect =
          core::tracing::trace_randomness(core::tracing::report_trace(r).trace_id) >= threshold;
      ASSERT_EQ(r.traced, expect);
      traced += r.traced ? 1 : 0;
    }
    drain(ring());
  }
  EXPECT_NEAR(traced, 10'000, 5 * 87);  // n = 40,000, sd = sqrt(n p (1-p)) ≈ 87
}

TEST_F(ShardTracing, TheSpanLimitHoldsAndTheRateAdapts) {
  start({.sample_rate = 1.0, .max_spans_per_second = 400, .always_keep = 0});
  append(1, 0, 1000);
  uint32_t traced = 0;
  for (uint32_t i = 0; i < batch_.size(); ++i) traced += batch_[i].traced ? 1 : 0;
  EXPECT_EQ(traced, 100u);  // 4 spans each
  EXPECT_EQ(tracing_->shard(0).stats().rate_limited.get(), 900u);
  // The next window's rate is lowered in proportion to what was asked for.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  append(1, 1000, 10);
  EXPECT_NEAR(tracing_->shard(0).current_rate(), 0.1, 1e-9);
}

TEST_F(ShardTracing, FatesOfEveryReportSampledOrNot) {
  start({.sample_rate = 0.0, .always_keep = 0});
  const AppendOutcome out = append(9, 100, 3);
  append(9, 103, 1, 500);
  make_durable(out.durable_at);
  std::vector<Fate> f;
  tracing_->shard(0).fates().find(9, 101, f);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].outcome, FateOutcome::kAccepted);
  EXPECT_EQ(f[0].log_end, out.durable_at);
  EXPECT_FALSE(f[0].traced);
  f.clear();
  tracing_->shard(0).fates().find(9, 103, f);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].outcome, FateOutcome::kRejected);
  EXPECT_EQ(static_cast<pipeline::RejectReason>(f[0].reason), pipeline::RejectReason::kOutOfRange);
  const std::string j = tracing_->fate_json(9, 101);
  EXPECT_NE(j.find("\"found\":true"), std::string::npos) << j;
  EXPECT_NE(j.find("\"outcome\":\"accepted\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"durable\":{\"at_ns\":"), std::string::npos) << j;
  EXPECT_NE(tracing_->fate_json(9, 103).find("\"reason\":\"out_of_range\""), std::string::npos);
  EXPECT_NE(tracing_->fate_json(9, 7).find("\"found\":false"), std::string::npos);
  // Only the last FateTable::kPerDevice of a device are kept.
  f.clear();
  tracing_->shard(0).fates().find_device(9, f);
  EXPECT_EQ(f.size(), FateTable::kPerDevice);
}

TEST(FateTable, ANewDeviceEvictsTheOldestOfItsWindow) {
  FateTable t(8);
  for (uint64_t d = 1; d <= 100; ++d) {
    t.record({.device_id = d, .seq = 1, .received_ns = static_cast<int64_t>(d)});
  }
  std::vector<Fate> f;
  t.find(100, 1, f);
  EXPECT_EQ(f.size(), 1u);
  size_t held = 0;
  for (uint64_t d = 1; d <= 100; ++d) {
    f.clear();
    t.find(d, 1, f);
    held += f.size();
  }
  EXPECT_EQ(held, 8u);
}

// A reader on another thread never sees a torn fate: every fate read back is one that was
// written (seq and received_ns written together).
TEST(FateTable, ConcurrentReaders) {
  FateTable t(1024);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (uint32_t i = 1; i <= 200'000; ++i) {
      t.record({.device_id = 1 + i % 16, .seq = i, .received_ns = int64_t{i} * 3});
    }
    done = true;
  });
  uint64_t seen = 0;
  bool last = false;
  while (!last) {
    last = done.load();  // one more pass after the writer is done: something is always read
    std::vector<Fate> f;
    for (uint64_t d = 1; d <= 16; ++d) t.find_device(d, f);
    for (const Fate& x : f) {
      ASSERT_EQ(x.received_ns, int64_t{x.seq} * 3);
      ASSERT_EQ(x.device_id, 1 + x.seq % 16);
    }
    seen += f.size();
  }
  writer.join();
  EXPECT_GT(seen, 0u);
}

TEST(OffsetHistory, WhenAnOffsetWasReached) {
  OffsetHistory h;
  EXPECT_EQ(h.when(1), 0);
  h.note(100, 1000);
  h.note(200, 2000);
  EXPECT_EQ(h.when(50), 1000);
  EXPECT_EQ(h.when(100), 1000);
  EXPECT_EQ(h.when(150), 2000);
  EXPECT_EQ(h.when(201), 0);
  for (uint64_t i = 3; i < OffsetHistory::kEntries + 10; ++i) h.note(i * 100, int64_t(i) * 1000);
  EXPECT_EQ(h.when(150), -1);  // older than the history holds
  EXPECT_EQ(h.when((OffsetHistory::kEntries + 5) * 100), (OffsetHistory::kEntries + 5) * 1000);
}

}  // namespace
}  // namespace tianhe::runtime
