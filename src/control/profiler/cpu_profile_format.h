// The gperftools CPU profile format ("legacy" pprof format), the one Debian's google-pprof
// (perl) reads: a binary part of 64-bit native-endian words, then the text of /proc/self/maps.
// Pure: no I/O. The writer is used by the profiler; the reader checks what we wrote (tests, and
// anyone who wants to look inside a profile without google-pprof).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace tianhe::control::profiler {

/// Deepest stack one sample keeps; deeper stacks keep their innermost frames.
inline constexpr size_t kMaxStackDepth = 64;

/// One distinct stack and how many times it was sampled.
struct CpuProfileSample {
  uint64_t count = 0;         ///< samples with this stack
  std::vector<uint64_t> pcs;  ///< innermost first: pcs[0] the interrupted pc, then return addresses
};

/// A decoded profile (what parse_cpu_profile returns).
struct CpuProfileData {
  uint64_t period_us = 0;                 ///< sampling period in microseconds
  std::vector<CpuProfileSample> samples;  ///< in file order
  std::string maps;                       ///< the /proc/self/maps text after the binary part
};

/// Writes the profile: header {0, 3, 0, period_us, 0}, one record {count, depth, pcs...} per
/// sample, trailer {0, 1, 0}, then `maps` verbatim. Samples with no pcs, a zero count or a
/// first pc of 0 (which would read as the trailer) are skipped; stacks deeper than kMaxStackDepth
/// are cut to their innermost kMaxStackDepth frames.
std::string write_cpu_profile(uint64_t period_us, std::span<const CpuProfileSample> samples,
                              std::string_view maps);

/// Reads a profile written by write_cpu_profile (or gperftools' profiler on a 64-bit
/// little-endian machine); the error says which word is wrong.
Result<CpuProfileData> parse_cpu_profile(std::span<const uint8_t> bytes);

}  // namespace tianhe::control::profiler
