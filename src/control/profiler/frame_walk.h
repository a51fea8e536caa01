// The stack walk the SIGPROF handler runs: frame pointers from the interrupted registers, each
// frame checked against the bounds of the thread's stack before it is read. Async-signal-safe
// (no allocation, no locks, no library calls), bounded by the output's size.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace tianhe::control::profiler {

/// A writable private mapping [begin, end): where a thread's stack may lie.
struct StackRange {
  uintptr_t begin = 0;  ///< first byte
  uintptr_t end = 0;    ///< one past the last byte
};

/// How a walk ended.
enum class WalkStatus : uint8_t {
  kComplete,   ///< reached the outermost frame (a zero or out-of-bounds frame pointer)
  kLeafOnly,   ///< the stack pointer is in no known range: only the interrupted pc is kept
  kTruncated,  ///< the output filled up before the outermost frame
};

/// Writes pc, then the return address of each frame found from `fp`, into `out`; `*depth`
/// gets the count. `stacks` is sorted by begin (stack_ranges_from_maps). A frame is followed
/// only if it lies above `sp`, inside the range that holds `sp`, is 8-byte aligned, and the
/// next frame lies above it (so the walk always ends).
WalkStatus walk_frames(uintptr_t pc, uintptr_t fp, uintptr_t sp, std::span<const StackRange> stacks,
                       std::span<uint64_t> out, size_t* depth) noexcept;

/// The writable private mappings ("rw-p") of a /proc/<pid>/maps text, sorted by address, at
/// most `max` of them (a thread's stack is one such mapping; glibc's guard page is not).
std::vector<StackRange> stack_ranges_from_maps(std::string_view maps, size_t max);

}  // namespace tianhe::control::profiler
