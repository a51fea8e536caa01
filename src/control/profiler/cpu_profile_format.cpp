// The legacy CPU profile layout, as google-pprof's ReadCPUProfile reads it (gperftools
// docs/cpuprofile-fileformat.html): every binary word is a native "slot" (64 bits here), the
// header is five slots (0, header words after this one = 3, version 0, period in us, padding),
// each sample is count, depth and depth pcs, and the binary part ends with the first record
// whose first pc is 0 (written as {0, 1, 0}); whatever follows is the text of /proc/self/maps, used
// to map pcs to binaries.
#include "control/profiler/cpu_profile_format.h"

#include <algorithm>
#include <cstring>

namespace tianhe::control::profiler {

namespace {

constexpr uint64_t kHeaderWords = 3;  // slots after the second one: version, period, padding

void put(std::string& out, uint64_t word) {
  char b[sizeof word];
  std::memcpy(b, &word, sizeof word);  // native order: google-pprof detects the endianness
  out.append(b, sizeof b);
}

}  // namespace

std::string write_cpu_profile(uint64_t period_us, std::span<const CpuProfileSample> samples,
                              std::string_view maps) {
  size_t words = 5 + 3;
  for (const CpuProfileSample& s : samples) words += 2 + std::min(s.pcs.size(), kMaxStackDepth);
  std::string out;
  out.reserve(words * sizeof(uint64_t) + maps.size());
  put(out, 0);
  put(out, kHeaderWords);
  put(out, 0);  // format version
  put(out, period_us);
  put(out, 0);
  for (const CpuProfileSample& s : samples) {
    // google-pprof ends the data at the first record whose first pc is 0, and a record of
    // depth 0 would make it read the next record's count as a pc.
    if (s.count == 0 || s.pcs.empty() || s.pcs[0] == 0) continue;
    const size_t depth = std::min(s.pcs.size(), kMaxStackDepth);
    put(out, s.count);
    put(out, depth);
    for (size_t i = 0; i < depth; ++i) put(out, s.pcs[i]);
  }
  put(out, 0);  // trailer: count 0, depth 1, pc 0
  put(out, 1);
  put(out, 0);
  out.append(maps);
  return out;
}

Result<CpuProfileData> parse_cpu_profile(std::span<const uint8_t> bytes) {
  const size_t n = bytes.size() / sizeof(uint64_t);
  auto word = [&](size_t i) {
    uint64_t w = 0;
    std::memcpy(&w, bytes.data() + i * sizeof w, sizeof w);
    return w;
  };
  if (n < 5) return Error{"cpu profile: shorter than its 5-word header"};
  if (word(0) != 0) return Error{"cpu profile: word 0 is not 0 (not a CPU profile)"};
  const uint64_t header_words = word(1);
  if (header_words < 3 || header_words > n - 2) {
    return Error{"cpu profile: word 1 (header words) is " + std::to_string(header_words) +
                 ", expected at least 3"};
  }
  CpuProfileData out;
  if (word(2) != 0) return Error{"cpu profile: version " + std::to_string(word(2)) + ", not 0"};
  out.period_us = word(3);
  size_t i = 2 + header_words;
  while (true) {
    if (i + 2 > n) return Error{"cpu profile: no trailer before word " + std::to_string(i)};
    const uint64_t count = word(i);
    const uint64_t depth = word(i + 1);
    if (depth > n - i - 2) {
      return Error{"cpu profile: the record at word " + std::to_string(i) + " has depth " +
                   std::to_string(depth) + ", past the end"};
    }
    // As google-pprof reads it: the record whose first pc is 0 is the trailer.
    if (depth >= 1 && word(i + 2) == 0) {
      i += 2 + depth;
      break;
    }
    if (depth == 0) {
      return Error{"cpu profile: the record at word " + std::to_string(i) + " has depth 0"};
    }
    CpuProfileSample s;
    s.count = count;
    s.pcs.reserve(depth);
    for (uint64_t k = 0; k < depth; ++k) s.pcs.push_back(word(i + 2 + k));
    out.samples.push_back(std::move(s));
    i += 2 + depth;
  }
  const size_t text_at = i * sizeof(uint64_t);
  out.maps.assign(reinterpret_cast<const char*>(bytes.data()) + text_at, bytes.size() - text_at);
  return out;
}

}  // namespace tianhe::control::profiler
