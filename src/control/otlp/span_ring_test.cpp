// core::tracing::SpanRing with a real producer and consumer thread (label concurrent: the tsan
// preset runs it under ThreadSanitizer): order kept, nothing lost or duplicated when the
// producer waits for room, and every refused push counted when it does not.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "core/tracing.h"

namespace tianhe::core::tracing {
namespace {

constexpr uint32_t kSpans = 200'000;

TEST(SpanRingTest, CapacityRoundsUpAndNameIsKept) {
  const SpanRing ring(1000, "shard-3");
  EXPECT_EQ(ring.capacity(), 1024u);
  EXPECT_EQ(ring.name(), "shard-3");
  const SpanRing one(0, "x");
  EXPECT_EQ(one.capacity(), 1u);
}

TEST(SpanRingTest, FullRingRefusesAndCounts) {
  SpanRing ring(8, "r");
  SpanRecord s;
  for (uint32_t i = 0; i < 20; ++i) {
    s.seq = i;
    EXPECT_EQ(ring.push(s), i < 8) << i;
  }
  EXPECT_EQ(ring.pushed(), 8u);
  EXPECT_EQ(ring.dropped(), 12u);
  std::vector<SpanRecord> out(16);
  ASSERT_EQ(ring.pop(out), 8u);
  for (uint32_t i = 0; i < 8; ++i) EXPECT_EQ(out[i].seq, i);
  EXPECT_EQ(ring.pop(out), 0u);
  s.seq = 99;
  EXPECT_TRUE(ring.push(s));  // room again after the pop
}

// claim() hands out the slot in place; only commit() publishes it, and a full ring refuses
// and counts like push().
TEST(SpanRingTest, ClaimWritesInPlaceAndCommitPublishes) {
  SpanRing ring(4, "r");
  std::vector<SpanRecord> out(8);
  SpanRecord* slot = ring.claim();
  ASSERT_NE(slot, nullptr);
  slot->seq = 41;
  EXPECT_EQ(ring.pop(out), 0u);  // claimed, not yet committed: not visible
  ring.commit();
  ASSERT_EQ(ring.pop(out), 1u);
  EXPECT_EQ(out[0].seq, 41u);
  for (uint32_t i = 0; i < 6; ++i) {
    SpanRecord* s = ring.claim();
    EXPECT_EQ(s != nullptr, i < 4) << i;
    if (s == nullptr) continue;
    s->seq = i;
    ring.commit();
  }
  EXPECT_EQ(ring.pushed(), 5u);
  EXPECT_EQ(ring.dropped(), 2u);
  ASSERT_EQ(ring.pop(out), 4u);
  for (uint32_t i = 0; i < 4; ++i) EXPECT_EQ(out[i].seq, i);
}

// The producer waits for room: the consumer must see 0..N-1 exactly once, in order.
TEST(SpanRingTest, TwoThreadsNothingLostOrDuplicated) {
  SpanRing ring(256, "r");
  uint64_t refused = 0;
  std::thread producer([&] {
    SpanRecord s;
    for (uint32_t i = 0; i < kSpans; ++i) {
      s.seq = i;
      s.device_id = uint64_t{i} * 7;
      while (!ring.push(s)) {
        ++refused;
        std::this_thread::yield();
      }
    }
  });
  std::vector<SpanRecord> buf(64);
  uint32_t next = 0;
  while (next < kSpans) {
    const size_t n = ring.pop(buf);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(buf[i].seq, next) << "out of order or duplicated";
      ASSERT_EQ(buf[i].device_id, uint64_t{next} * 7) << "torn record";
      ++next;
    }
    if (n == 0) std::this_thread::yield();
  }
  producer.join();
  EXPECT_EQ(ring.pop(buf), 0u);
  EXPECT_EQ(ring.pushed(), kSpans);
  EXPECT_EQ(ring.dropped(), refused);
}

// The producer never waits: what arrives is in order, and arrived + dropped = pushed attempts.
TEST(SpanRingTest, TwoThreadsDropsCountedWhenFull) {
  SpanRing ring(16, "r");
  std::atomic<bool> done{false};
  std::thread producer([&] {
    SpanRecord s;
    for (uint32_t i = 0; i < kSpans; ++i) {
      s.seq = i;
      (void)ring.push(s);
    }
    done.store(true, std::memory_order_release);
  });
  std::vector<SpanRecord> buf(4);
  uint64_t received = 0;
  int64_t last = -1;
  while (true) {
    const bool finished = done.load(std::memory_order_acquire);
    const size_t n = ring.pop(buf);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_GT(static_cast<int64_t>(buf[i].seq), last) << "out of order or duplicated";
      last = buf[i].seq;
    }
    received += n;
    if (finished && n == 0) break;
  }
  producer.join();
  EXPECT_EQ(received, ring.pushed());
  EXPECT_EQ(received + ring.dropped(), kSpans);
}

}  // namespace
}  // namespace tianhe::core::tracing
