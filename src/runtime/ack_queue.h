// The queue of acknowledgements waiting for durability. A protocol that acknowledges reports
// (report-proto acks, MQTT-SN PUBACK) encodes the ack datagram at receive time and parks it here
// with the log offset that must be durable first; the shard releases it once the log's
// durable offset passes that point. Bounded: when full, the shard stops receiving (push back).
// Lives on one shard thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

namespace tianhe::runtime {

/// One parked ack datagram.
struct PendingAck {
  uint64_t durable_at = 0;       ///< send once the log's durable offset >= this
  int64_t received_mono_ns = 0;  ///< when the report arrived (ack latency)
  uint32_t data_offset = 0;      ///< bytes in the queue's arena
  uint32_t size = 0;
  uint32_t tag = 0;  ///< the protocol's own annotation (e.g. entry counts by status)
  socklen_t peer_len = 0;
  sockaddr_in6 peer{};  ///< IPv4 addresses are stored as sockaddr_in in the same bytes
};

/// A FIFO of pending acks with a byte arena; allocation-free after construction.
class AckQueue {
 public:
  /// Room for `max_entries` acks and `arena_bytes` of ack payload.
  AckQueue(uint32_t max_entries, uint32_t arena_bytes)
      : entries_(std::make_unique<PendingAck[]>(max_entries)),
        arena_(std::make_unique_for_overwrite<uint8_t[]>(arena_bytes)),
        max_entries_(max_entries),
        arena_bytes_(arena_bytes) {}

  /// Reserves `size` bytes for the next ack; returns nullptr when the queue is full.
  /// The reservation becomes an entry with commit().
  uint8_t* reserve(uint32_t size) noexcept {
    if (count_ == max_entries_ || size > arena_bytes_) return nullptr;
    uint32_t at = arena_head_;
    if (count_ > 0) {
      const uint32_t tail = entries_[first_].data_offset;
      if (at >= tail) {
        // Free space is [at, end) and [0, tail).
        if (arena_bytes_ - at < size) {
          if (tail <= size) return nullptr;  // keep one byte so head never equals tail
          at = 0;
        }
      } else if (tail - at <= size) {
        return nullptr;
      }
    } else {
      at = 0;
    }
    reserved_at_ = at;
    return arena_.get() + at;
  }

  /// Appends the ack whose bytes were written into the last reserve() (with `size` <= reserved).
  void commit(uint32_t size, uint64_t durable_at, int64_t received_mono_ns, const void* peer,
              socklen_t peer_len, uint32_t tag = 0) noexcept {
    PendingAck& e = entries_[(first_ + count_) % max_entries_];
    e.tag = tag;
    e.durable_at = durable_at;
    e.received_mono_ns = received_mono_ns;
    e.data_offset = reserved_at_;
    e.size = size;
    e.peer_len = peer_len > sizeof e.peer ? static_cast<socklen_t>(sizeof e.peer) : peer_len;
    std::memcpy(&e.peer, peer, e.peer_len);
    arena_head_ = reserved_at_ + size;
    ++count_;
  }

  /// Number of parked acks.
  uint32_t size() const noexcept { return count_; }
  bool empty() const noexcept { return count_ == 0; }
  /// The i-th oldest entry (i < size()).
  const PendingAck& at(uint32_t i) const noexcept { return entries_[(first_ + i) % max_entries_]; }
  /// The bytes of an entry.
  std::span<const uint8_t> bytes(const PendingAck& e) const noexcept {
    return {arena_.get() + e.data_offset, e.size};
  }
  /// Removes the `n` oldest entries.
  void pop(uint32_t n) noexcept {
    first_ = (first_ + n) % max_entries_;
    count_ -= n;
    if (count_ == 0) {
      first_ = 0;
      arena_head_ = 0;
    }
  }

 private:
  std::unique_ptr<PendingAck[]> entries_;
  std::unique_ptr<uint8_t[]> arena_;
  uint32_t max_entries_;
  uint32_t arena_bytes_;
  uint32_t first_ = 0;
  uint32_t count_ = 0;
  uint32_t arena_head_ = 0;
  uint32_t reserved_at_ = 0;
};

}  // namespace tianhe::runtime
