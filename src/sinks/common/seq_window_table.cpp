#include "sinks/common/seq_window_table.h"

#include <bit>

namespace tianhe::sinks {

SeqWindowTable::SeqWindowTable(size_t expected_devices) {
  capacity_ = std::bit_ceil(expected_devices * 2 < 16 ? size_t{16} : expected_devices * 2);
  slots_ = std::make_unique<Entry[]>(capacity_);
}

SeqWindowTable::Entry& SeqWindowTable::find_or_insert(uint64_t device_id, bool& inserted) noexcept {
  // Keep the load factor at or below 0.7 so that linear probes stay short.
  if ((size_ + 1) * 10 > capacity_ * 7) grow();
  size_t mask = capacity_ - 1;
  for (size_t i = mix(device_id) & mask;; i = (i + 1) & mask) {
    Entry& e = slots_[i];
    if (!e.used) {
      e = Entry{device_id, 0, 0, 0, 1};
      ++size_;
      inserted = true;
      return e;
    }
    if (e.device_id == device_id) {
      inserted = false;
      return e;
    }
  }
}

void SeqWindowTable::grow() {
  size_t old_capacity = capacity_;
  std::unique_ptr<Entry[]> old = std::move(slots_);
  capacity_ *= 2;
  slots_ = std::make_unique<Entry[]>(capacity_);
  size_t mask = capacity_ - 1;
  for (size_t j = 0; j < old_capacity; ++j) {
    if (!old[j].used) continue;
    size_t i = mix(old[j].device_id) & mask;
    while (slots_[i].used) i = (i + 1) & mask;
    slots_[i] = old[j];
  }
}

SeqVerdict SeqWindowTable::check(uint64_t device_id, uint32_t seq,
                                 int64_t device_time_ns) noexcept {
  bool inserted = false;
  Entry& e = find_or_insert(device_id, inserted);
  if (inserted) {
    e.last_seq = seq;
    e.bitmap = 1;
    e.last_time_ns = device_time_ns;
    return SeqVerdict::kNew;
  }
  auto ahead = static_cast<int32_t>(seq - e.last_seq);
  if (ahead > 0) {
    e.bitmap = ahead >= 64 ? 1 : (e.bitmap << ahead) | 1;
    e.last_seq = seq;
    e.last_time_ns = device_time_ns;
    return SeqVerdict::kNew;
  }
  // Not ahead, yet newer than anything seen from the device: a retransmission carries its
  // original (older or equal) device time, so this is a device that restarted its numbering.
  if (device_time_ns > e.last_time_ns) {
    e.last_seq = seq;
    e.bitmap = 1;
    e.last_time_ns = device_time_ns;
    return SeqVerdict::kReboot;
  }
  uint32_t behind = static_cast<uint32_t>(-static_cast<int64_t>(ahead));
  if (behind < kWindow) {
    uint64_t bit = uint64_t{1} << behind;
    if (e.bitmap & bit) return SeqVerdict::kDuplicate;
    e.bitmap |= bit;
    return SeqVerdict::kNew;
  }
  // Far behind the window and not newer: an old retransmission.
  return SeqVerdict::kDuplicate;
}

void SeqWindowTable::seed(uint64_t device_id, uint32_t seq, int64_t device_time_ns) noexcept {
  bool inserted = false;
  Entry& e = find_or_insert(device_id, inserted);
  if (!inserted && static_cast<int32_t>(seq - e.last_seq) < 0) return;
  e.last_seq = seq;
  e.bitmap = ~uint64_t{0};
  e.last_time_ns = device_time_ns;
}

}  // namespace tianhe::sinks
