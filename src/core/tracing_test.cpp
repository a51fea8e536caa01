// The tracing data model: thresholds and randomness (OpenTelemetry probability sampling), the
// tracestate form, derived ids (stable, distinct, well spread) and the span ring.
#include "core/tracing.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/trace_context.h"

namespace tianhe::core::tracing {
namespace {

TEST(Tracing, ThresholdForRate) {
  EXPECT_EQ(threshold_for_rate(1.0), 0u);
  EXPECT_EQ(threshold_for_rate(0.0), kMaxThreshold);
  EXPECT_EQ(threshold_for_rate(-1), kMaxThreshold);
  EXPECT_EQ(threshold_for_rate(0.5), kMaxThreshold / 2);
  EXPECT_EQ(threshold_for_rate(0.25), kMaxThreshold / 4 * 3);
}

TEST(Tracing, TracestateFollowsTheSpec) {
  char buf[32];
  auto text = [&](uint64_t t) {
    const size_t n = format_tracestate(t, buf);
    return std::string(buf, n);
  };
  // Examples of the OpenTelemetry tracestate probability sampling spec.
  EXPECT_EQ(text(0), "ot=th:0");
  EXPECT_EQ(text(threshold_for_rate(0.5)), "ot=th:8");
  EXPECT_EQ(text(threshold_for_rate(0.25)), "ot=th:c");
  EXPECT_EQ(text(threshold_for_rate(0.01)), "ot=th:fd70a3d70a3d71");
  char small[4];
  EXPECT_EQ(format_tracestate(0, small), 0u);
}

// The ot entry of a tracestate (OpenTelemetry "TraceState handling"): th padded on the right,
// rv exactly 14 digits, other vendors' members and unknown sub-keys skipped, malformed values
// refused, a threshold the traceparent contradicts erased.
TEST(Tracing, TracestateOtEntryIsRead) {
  TraceContext sampled;
  // Randomness (last 7 bytes of the trace id) 0xc0ffee00000000: above th c (75 %), below e.
  ASSERT_TRUE(
      parse_traceparent("00-0af7651916cd43dd88c0ffee00000000-b7ad6b7169203331-01", sampled));
  TraceContext t = sampled;
  ASSERT_TRUE(parse_tracestate("ot=th:c", t));
  EXPECT_EQ(t.threshold, 0xc0000000000000u);
  EXPECT_EQ(t.randomness, kNoTraceValue);
  t = sampled;
  ASSERT_TRUE(parse_tracestate("congo=t61rcWkgMzE, ot=p:8;th:0;rv:fb8233f7e3a151 ,rojo=00f", t));
  EXPECT_EQ(t.threshold, 0u);
  EXPECT_EQ(t.randomness, 0xfb8233f7e3a151u);
  t = sampled;
  ASSERT_TRUE(parse_tracestate("ot=th:fd70a3d70a3d71", t));  // 1 %: rv below it, erased
  EXPECT_EQ(t.threshold, kNoTraceValue);
  t = sampled;
  ASSERT_TRUE(parse_tracestate("ot=th:e", t));  // the trace id's randomness is below e
  EXPECT_EQ(t.threshold, kNoTraceValue);
  t = sampled;
  ASSERT_TRUE(parse_tracestate("ot=th:e;rv:f0000000000000", t));  // rv reaches it
  EXPECT_EQ(t.threshold, 0xe0000000000000u);
  TraceContext unsampled;
  ASSERT_TRUE(
      parse_traceparent("00-0af7651916cd43dd88c0ffee00000000-b7ad6b7169203331-00", unsampled));
  ASSERT_TRUE(parse_tracestate("ot=th:0", unsampled));
  EXPECT_EQ(unsampled.threshold, kNoTraceValue);  // not sampled: no threshold applies
  // No ot entry, an empty one: fine, nothing set.
  t = sampled;
  EXPECT_TRUE(parse_tracestate("rojo=00f067aa0ba902b7", t));
  EXPECT_TRUE(parse_tracestate("", t));
  EXPECT_EQ(t.threshold, kNoTraceValue);
  // Malformed: refused, nothing set.
  for (const char* bad : {"ot=th:", "ot=th:C", "ot=th:123456789abcdef", "ot=rv:abc",
                          "ot=th:8;rv:fb8233f7e3a15g", "ot=th", "ot=:8", "ot=th:8;"}) {
    t = sampled;
    t.threshold = 1;
    EXPECT_FALSE(parse_tracestate(bad, t)) << bad;
    EXPECT_EQ(t.threshold, kNoTraceValue) << bad;
    EXPECT_EQ(t.randomness, kNoTraceValue) << bad;
  }
  // Bounded: an ot entry past the 32nd member is not looked for.
  std::string many;
  for (int i = 0; i < 32; ++i) many += "k" + std::to_string(i) + "=v,";
  t = sampled;
  EXPECT_TRUE(parse_tracestate(many + "ot=th:0", t));
  EXPECT_EQ(t.threshold, kNoTraceValue);
}

TEST(Tracing, RandomnessIsTheLastSevenBytes) {
  std::array<uint8_t, 16> id{};
  for (size_t i = 0; i < 16; ++i) id[i] = static_cast<uint8_t>(i + 1);
  EXPECT_EQ(trace_randomness(id), 0x0a0b0c0d0e0f10ull);
}

TEST(Tracing, DerivedIdsAreStableAndDistinct) {
  Report r;
  r.device_id = 42;
  r.seq = 7;
  r.received_ns = 1'700'000'000'000'000'000;
  const ReportTrace a = report_trace(r);
  const ReportTrace b = report_trace(r);
  EXPECT_EQ(a.trace_id, b.trace_id);
  EXPECT_EQ(a.root_span_id, b.root_span_id);
  EXPECT_FALSE(a.has_parent);
  r.seq = 8;
  EXPECT_NE(report_trace(r).trace_id, a.trace_id);
  // Stage span ids differ from each other and from the root.
  std::set<std::array<uint8_t, 8>> ids{a.root_span_id};
  for (int s = 0; s < static_cast<int>(Stage::kCount); ++s) {
    ids.insert(stage_span_id(a, static_cast<Stage>(s)));
  }
  ids.insert(stage_span_id(a, Stage::kSink, 1));
  EXPECT_EQ(ids.size(), 1 + static_cast<size_t>(Stage::kCount) + 1);
}

TEST(Tracing, AParentKeepsItsTraceId) {
  Report r;
  r.device_id = 1;
  r.received_ns = 5;
  r.trace.present = true;
  r.trace.flags = 1;
  for (size_t i = 0; i < 16; ++i) r.trace.trace_id[i] = static_cast<uint8_t>(0xa0 + i);
  for (size_t i = 0; i < 8; ++i) r.trace.span_id[i] = static_cast<uint8_t>(i + 1);
  const ReportTrace t = report_trace(r);
  EXPECT_EQ(t.trace_id, r.trace.trace_id);
  EXPECT_EQ(t.parent_span_id, r.trace.span_id);
  EXPECT_TRUE(t.has_parent);
  EXPECT_TRUE(t.parent_sampled);
  EXPECT_NE(t.root_span_id, r.trace.span_id);
}

// The derived ids' randomness gives the configured fraction: 100,000 sequential reports (the
// common case: one device counting up) sampled at 10 % land within 5 standard deviations.
TEST(Tracing, DerivedRandomnessSamplesAtTheRate) {
  const uint64_t t = threshold_for_rate(0.1);
  int kept = 0;
  Report r;
  r.device_id = 1000;
  r.received_ns = 1'700'000'000'000'000'000;
  for (uint32_t i = 0; i < 100'000; ++i) {
    r.seq = i;
    r.received_ns += 1000;
    kept += trace_randomness(report_trace(r).trace_id) >= t ? 1 : 0;
  }
  EXPECT_NEAR(kept, 10'000, 5 * 95);  // sd = sqrt(n p (1-p)) ≈ 95
}

TEST(SpanRing, KeepsOrderAndCountsDrops) {
  SpanRing ring(4, "test");
  EXPECT_EQ(ring.capacity(), 4u);
  EXPECT_EQ(ring.name(), "test");
  SpanRecord s;
  for (uint32_t i = 0; i < 6; ++i) {
    s.seq = i;
    EXPECT_EQ(ring.push(s), i < 4);
  }
  EXPECT_EQ(ring.dropped(), 2u);
  std::array<SpanRecord, 8> out;
  ASSERT_EQ(ring.pop(out), 4u);
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(out[i].seq, i);
  EXPECT_EQ(ring.pop(out), 0u);
}

// One producer, one consumer: nothing lost or repeated while the ring has room (the producer
// waits for room here; the shards never wait: they drop).
TEST(SpanRing, TwoThreads) {
  SpanRing ring(64, "test");
  constexpr uint32_t kSpans = 200'000;
  std::thread producer([&] {
    SpanRecord s;
    for (uint32_t i = 0; i < kSpans;) {
      s.seq = i;
      if (ring.push(s)) ++i;
    }
  });
  std::vector<uint32_t> got;
  got.reserve(kSpans);
  std::array<SpanRecord, 16> out;
  while (got.size() < kSpans) {
    const size_t n = ring.pop(out);
    for (size_t i = 0; i < n; ++i) got.push_back(out[i].seq);
  }
  producer.join();
  for (uint32_t i = 0; i < kSpans; ++i) ASSERT_EQ(got[i], i);
  EXPECT_EQ(ring.pushed(), kSpans);
}

}  // namespace
}  // namespace tianhe::core::tracing
