// Frame-pointer walk (System V x86-64 psABI §3.2.2: with frame pointers, [rbp] holds the
// caller's rbp and [rbp+8] the return address). Code built without frame pointers (Debian's
// libc, for one) breaks the chain: the bounds checks end the walk there instead of reading
// wild memory.
#include "control/profiler/frame_walk.h"

#include <algorithm>
#include <charconv>

namespace tianhe::control::profiler {

namespace {

// The range holding `addr`, or nullptr (binary search on sorted, non-overlapping ranges).
const StackRange* find_range(std::span<const StackRange> stacks, uintptr_t addr) noexcept {
  size_t lo = 0;
  size_t hi = stacks.size();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (stacks[mid].end <= addr) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < stacks.size() && stacks[lo].begin <= addr && addr < stacks[lo].end) return &stacks[lo];
  return nullptr;
}

}  // namespace

// Not instrumented by AddressSanitizer: a frame pointer may point at another frame's redzone,
// which is mapped stack memory (the bounds check guarantees that) but poisoned for ASan.
__attribute__((no_sanitize("address", "undefined"))) WalkStatus walk_frames(
    uintptr_t pc, uintptr_t fp, uintptr_t sp, std::span<const StackRange> stacks,
    std::span<uint64_t> out, size_t* depth) noexcept {
  *depth = 0;
  if (out.empty()) return WalkStatus::kTruncated;
  out[0] = pc;
  size_t n = 1;
  const StackRange* range = find_range(stacks, sp);
  if (range == nullptr) {
    *depth = n;
    return WalkStatus::kLeafOnly;
  }
  WalkStatus status = WalkStatus::kComplete;
  while (true) {
    if (fp < sp || fp % 8 != 0 || fp < range->begin || fp > range->end - 16) break;
    // A frame pointer is an address read from the stack: nothing to derive it from.
    const auto* frame =
        reinterpret_cast<const uintptr_t*>(fp);  // NOLINT(performance-no-int-to-ptr)
    const uintptr_t next = frame[0];
    const uintptr_t ret = frame[1];
    if (ret == 0) break;
    if (n == out.size()) {
      status = WalkStatus::kTruncated;
      break;
    }
    out[n++] = ret;
    if (next <= fp) break;  // frames grow towards higher addresses; anything else is not a chain
    fp = next;
  }
  *depth = n;
  return status;
}

std::vector<StackRange> stack_ranges_from_maps(std::string_view maps, size_t max) {
  std::vector<StackRange> out;
  while (!maps.empty() && out.size() < max) {
    const size_t eol = maps.find('\n');
    const std::string_view line = maps.substr(0, eol);
    maps.remove_prefix(eol == std::string_view::npos ? maps.size() : eol + 1);
    // proc(5): "address perms offset dev inode pathname", address as hex "begin-end".
    const size_t dash = line.find('-');
    const size_t space = line.find(' ');
    if (dash == std::string_view::npos || space == std::string_view::npos || dash > space) continue;
    if (line.substr(space + 1, 4) != "rw-p") continue;
    StackRange r;
    const char* b = line.data();
    if (std::from_chars(b, b + dash, r.begin, 16).ec != std::errc() ||
        std::from_chars(b + dash + 1, b + space, r.end, 16).ec != std::errc() || r.end <= r.begin) {
      continue;
    }
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(),
            [](const StackRange& a, const StackRange& b) { return a.begin < b.begin; });
  return out;
}

}  // namespace tianhe::control::profiler
