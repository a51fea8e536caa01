// The frame walk on this thread's real stack (the build keeps frame pointers in the dev and
// tsan presets), and its bounds checks on frames that are not a chain.
#include "control/profiler/frame_walk.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace tianhe::control::profiler {
namespace {

std::string self_maps() {
  std::ifstream in("/proc/self/maps");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Walk {
  WalkStatus status = WalkStatus::kComplete;
  std::vector<uint64_t> pcs;
};

// Walks from the caller's own frame: pc is a made-up leaf, fp and sp are this frame's.
__attribute__((noinline)) Walk walk_here(const std::vector<StackRange>& stacks, size_t max) {
  std::vector<uint64_t> out(max);
  size_t depth = 0;
  const auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  int local = 0;
  const auto sp = reinterpret_cast<uintptr_t>(&local);
  Walk w;
  w.status = walk_frames(0x1234, fp, sp, stacks, out, &depth);
  out.resize(depth);
  w.pcs = out;
  return w;
}

__attribute__((noinline)) Walk recurse(int n, const std::vector<StackRange>& stacks, size_t max) {
  if (n == 0) return walk_here(stacks, max);
  Walk w = recurse(n - 1, stacks, max);
  asm volatile("" ::: "memory");  // keeps the call from becoming a tail call
  return w;
}

TEST(FrameWalk, FollowsTheRealStack) {
  const auto stacks = stack_ranges_from_maps(self_maps(), 100000);
  ASSERT_FALSE(stacks.empty());
  const Walk w = recurse(20, stacks, 64);
  EXPECT_EQ(w.status, WalkStatus::kComplete);
  ASSERT_GE(w.pcs.size(), 22u);  // the leaf, walk_here's caller chain: 20 recurse frames and more
  EXPECT_EQ(w.pcs[0], 0x1234u);
  // recurse's 20 frames return into recurse itself: one return address, seen 19 times.
  size_t same = 0;
  for (size_t i = 2; i < w.pcs.size(); ++i) same += w.pcs[i] == w.pcs[2];
  EXPECT_GE(same, 19u);
}

TEST(FrameWalk, StopsAtTheOutputsEnd) {
  const auto stacks = stack_ranges_from_maps(self_maps(), 100000);
  const Walk w = recurse(20, stacks, 8);
  EXPECT_EQ(w.status, WalkStatus::kTruncated);
  EXPECT_EQ(w.pcs.size(), 8u);
}

TEST(FrameWalk, UnknownStackKeepsTheLeafOnly) {
  const Walk w = recurse(3, {}, 64);
  EXPECT_EQ(w.status, WalkStatus::kLeafOnly);
  ASSERT_EQ(w.pcs.size(), 1u);
  EXPECT_EQ(w.pcs[0], 0x1234u);
}

TEST(FrameWalk, RefusesFramesOutsideTheStack) {
  alignas(16) uintptr_t fake[8] = {};
  const auto base = reinterpret_cast<uintptr_t>(fake);
  const std::vector<StackRange> stacks = {{base, base + sizeof fake}};
  std::vector<uint64_t> out(16);
  size_t depth = 0;
  // A frame pointer below sp, misaligned, or past the range: only the leaf.
  EXPECT_EQ(walk_frames(1, base, base + 8, stacks, out, &depth), WalkStatus::kComplete);
  EXPECT_EQ(depth, 1u);
  EXPECT_EQ(walk_frames(1, base + 3, base, stacks, out, &depth), WalkStatus::kComplete);
  EXPECT_EQ(depth, 1u);
  EXPECT_EQ(walk_frames(1, base + sizeof fake, base, stacks, out, &depth), WalkStatus::kComplete);
  EXPECT_EQ(depth, 1u);
  // A frame pointing at itself or downwards ends after its return address.
  fake[0] = base;
  fake[1] = 0x77;
  EXPECT_EQ(walk_frames(1, base, base, stacks, out, &depth), WalkStatus::kComplete);
  ASSERT_EQ(depth, 2u);
  EXPECT_EQ(out[1], 0x77u);
  // A two-frame chain ending in a zero frame pointer.
  fake[0] = base + 32;
  fake[4] = 0;
  fake[5] = 0x88;
  EXPECT_EQ(walk_frames(1, base, base, stacks, out, &depth), WalkStatus::kComplete);
  ASSERT_EQ(depth, 3u);
  EXPECT_EQ(out[2], 0x88u);
}

TEST(FrameWalk, ParsesWritablePrivateMappings) {
  const std::string maps =
      "7f0000001000-7f0000002000 ---p 00000000 00:00 0 \n"
      "7f0000002000-7f0000802000 rw-p 00000000 00:00 0 \n"
      "55d0c0000000-55d0c0100000 r-xp 00000000 08:01 42   /usr/bin/tianhe\n"
      "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0    [stack]\n"
      "garbage line\n"
      "10-5 rw-p 00000000 00:00 0\n";
  const auto r = stack_ranges_from_maps(maps, 10);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].begin, 0x7f0000002000u);
  EXPECT_EQ(r[0].end, 0x7f0000802000u);
  EXPECT_EQ(r[1].begin, 0x7ffd00000000u);
  EXPECT_EQ(stack_ranges_from_maps(maps, 1).size(), 1u);
}

}  // namespace
}  // namespace tianhe::control::profiler
