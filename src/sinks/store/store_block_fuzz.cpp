// Fuzz target: the bytes of a chunk file are untrusted (a damaged disk, a file from elsewhere).
// A stored block (zstd-compressed or raw) and a device filter, as a reader takes them from a
// chunk file, must never be read out of bounds or make the reader allocate without bound; a block
// that decodes and is in the encoder's order must encode back to the same reports, raw and
// compressed.
//
// Seed corpus (test/corpus/store_block): blocks written by BlockEncoder (compressed and raw, one
// and many reports, extreme ids and times), device filters, and damaged copies of them.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "sinks/store/store_block.h"

namespace {

using namespace tianhe::sinks::store;

bool same(const PackedReport& a, const PackedReport& b) {
  return a.device_id == b.device_id && a.seq == b.seq && a.tenant == b.tenant &&
         a.device_time_ns == b.device_time_ns && a.received_ns == b.received_ns &&
         a.protocol == b.protocol && a.metrics.size() == b.metrics.size() &&
         (a.metrics.empty() ||
          std::memcmp(a.metrics.data(), b.metrics.data(), a.metrics.size()) == 0);
}

bool same(const std::vector<PackedReport>& a, const std::vector<PackedReport>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!same(a[i], b[i])) return false;
  }
  return true;
}

/// The order BlockEncoder::add requires: device ascending (as unsigned), then time.
bool in_encoder_order(const std::vector<PackedReport>& reps) {
  for (size_t i = 1; i < reps.size(); ++i) {
    const PackedReport& p = reps[i - 1];
    const PackedReport& q = reps[i];
    if (q.device_id < p.device_id) return false;
    if (q.device_id == p.device_id && q.device_time_ns < p.device_time_ns) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);

  // As a device filter: any answer, never a read outside the bytes.
  uint64_t probe = 0;
  if (size > 0) std::memcpy(&probe, data, std::min(size, sizeof probe));
  (void)filter_may_contain(in, probe);
  (void)filter_may_contain(in, ~probe);

  // As a stored block.
  static std::vector<uint8_t> raw;
  static std::vector<PackedReport> reps;
  if (!unpack_block(in, raw)) return 0;
  if (in[0] == 0x00 && raw.size() > kMaxCompressedBlockBytes) __builtin_trap();  // the bound
  if (!decode_block(raw, reps)) return 0;
  for (const PackedReport& r : reps) {
    if (!r.metrics.empty() && (r.metrics.data() < raw.data() ||
                               r.metrics.data() + r.metrics.size() > raw.data() + raw.size())) {
      __builtin_trap();  // a report's metrics must lie inside the block
    }
  }
  if (reps.empty() || !in_encoder_order(reps)) return 0;

  // Round trip: what decoded encodes back to the same reports, raw and compressed.
  static BlockEncoder enc;
  enc.clear();
  for (const PackedReport& r : reps) enc.add(r);
  const BlockInfo& info = enc.info();
  if (info.count != reps.size() || info.first_device != reps.front().device_id ||
      info.last_device != reps.back().device_id) {
    __builtin_trap();
  }
  static std::vector<PackedReport> again;
  const std::span<const uint8_t> raw2 = enc.raw_bytes();
  const std::vector<uint8_t> raw2_copy(raw2.begin(), raw2.end());
  if (!decode_block(raw2_copy, again) || !same(reps, again)) __builtin_trap();
  const std::span<const uint8_t> stored = enc.bytes();
  const std::vector<uint8_t> stored_copy(stored.begin(), stored.end());
  static std::vector<uint8_t> raw3;
  if (!unpack_block(stored_copy, raw3) || raw3 != raw2_copy) __builtin_trap();
  return 0;
}
