// A 64-bit integer hash for open-addressing tables keyed by device id (the store's duplicate
// windows).
#pragma once

#include <cstdint>

namespace tianhe::core {

/// Murmur3's 64-bit finaliser: every input bit affects every output bit, so sequential device ids
/// (the common case: ranges) spread over all slots of a power-of-two table.
constexpr uint64_t mix64(uint64_t x) noexcept {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

}  // namespace tianhe::core
