// Per-device duplicate detection for sinks (the store; sinks whose engine has no unique key): a
// numbers per device in an open-addressing hash table (32 bytes per device).
#pragma once

#include <cstdint>
#include <memory>

#include "core/hash.h"

namespace tianhe::sinks {

/// Verdict on one (device, seq) pair.
enum class SeqVerdict : uint8_t {
  kNew,        ///< not seen before: store it
  kDuplicate,  ///< seen (or older than the window with no newer device time): drop it
  kReboot,     ///< not ahead, but newer device time than any seen: the device restarted
               ///< its sequence; the window was reset and the report is stored
};

/// A table of per-device sequence windows. Owned by the store writer's thread; not thread-safe.
/// Sequence numbers compare with serial-number arithmetic (RFC 1982), so wrapping at 2^32 works.
class SeqWindowTable {
 public:
  /// Window width: a report up to this many sequence numbers behind the newest is still
  /// checked exactly.
  static constexpr uint32_t kWindow = 64;

  /// An empty table with room for `expected_devices` before it grows.
  explicit SeqWindowTable(size_t expected_devices = 1024);

  /// Checks (device, seq) and records it when it is new (or a reboot).
  SeqVerdict check(uint64_t device_id, uint32_t seq, int64_t device_time_ns) noexcept;
  /// Marks every seq at or below `seq` as seen for the device (restart from a sealed chunk's
  /// latest report): the window becomes [seq - 63, seq], all set.
  void seed(uint64_t device_id, uint32_t seq, int64_t device_time_ns) noexcept;
  /// Starts loading the slot check(device_id) looks at first: the table is larger than the cache
  /// and reports arrive in random device order, so the writer prefetches a few ahead. Always
  /// inlined (GCC drops calls to an out-of-line function that only prefetches).
  [[gnu::always_inline]] void prefetch(uint64_t device_id) const noexcept {
    __builtin_prefetch(&slots_[mix(device_id) & (capacity_ - 1)]);
  }
  /// The hash that places a device in the table.
  static uint64_t mix(uint64_t x) noexcept { return core::mix64(x); }
  /// Number of devices held.
  size_t size() const noexcept { return size_; }
  /// Bytes of memory held by the table.
  size_t memory_bytes() const noexcept { return capacity_ * sizeof(Entry); }

 private:
  struct Entry {
    uint64_t device_id;
    uint64_t bitmap;  ///< bit i set: seq (last_seq - i) was seen
    int64_t last_time_ns;
    uint32_t last_seq;
    uint32_t used;
  };
  /// The entry of a device, inserted empty when new (`inserted` tells).
  Entry& find_or_insert(uint64_t device_id, bool& inserted) noexcept;
  /// Doubles the capacity and rehashes.
  void grow();

  std::unique_ptr<Entry[]> slots_;
  size_t capacity_ = 0;  ///< power of two
  size_t size_ = 0;
};

}  // namespace tianhe::sinks
