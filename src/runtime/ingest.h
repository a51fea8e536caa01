// A protocol's presence on one shard: the descriptors the shard's loop waits on, and what the
// loop calls when they are ready or when the log's durable offset moves. Owned and called only
// by its shard thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/pipeline_stats.h"

namespace tianhe::runtime {

class Shard;

/// Result of appending the accepted reports of a batch to the shard log.
struct AppendOutcome {
  bool ok = false;
  uint64_t durable_at = 0;  ///< when ok: acks may go once the log is durable up to here
  BusyReason busy = BusyReason::kIoError;  ///< when !ok
};

/// What an ingest's pending acks wait for, after release_acks().
enum class AckWait : uint8_t {
  kNothing,     ///< no ack pending
  kDurability,  ///< the oldest pending ack waits for the log's durable offset to advance
  kSocket,      ///< acks are due but the socket's send buffer is full
};

/// Largest log record a shard writes (config log.max_record_bytes is at least this).
inline constexpr size_t kRecordBytes = 1u << 20;

/// A descriptor an ingest wants the shard to wait on, and for what (POLLIN, POLLOUT).
struct Watch {
  int fd = -1;
  short events = 0;
};

/// No timer pending (Ingest::next_deadline_ns).
inline constexpr int64_t kNoDeadline = INT64_MAX;

/// A protocol's presence on one shard: any number of descriptors (a UDP socket; a TCP listener
/// and its accepted connections; outbound connections to devices) and timers (request timeouts,
/// keep-alives, dedup windows), all served by the shard's one thread. Owned and called only by
/// its shard thread.
class Ingest {
 public:
  virtual ~Ingest() = default;
  /// Appends the descriptors the shard waits on while idle, with the events each wants now.
  /// `wait` is what its acks wait for (release_acks()): a socket whose acks wait for room asks
  /// for POLLOUT. Called before every idle wait; it must not allocate once warmed up.
  virtual void watches(std::vector<Watch>& out, AckWait wait) const = 0;
  /// Reads and processes what is ready on its descriptors without blocking; returns the units
  /// handled (datagrams, frames; 0: none).
  virtual uint32_t poll_input(Shard& shard) noexcept = 0;
  /// The most units one poll_input() takes: a poll that returned this many may have left more.
  virtual uint32_t receive_batch() const noexcept = 0;
  /// Sends what became durable; says what the acks still pending wait for.
  virtual AckWait release_acks(uint64_t durable_offset) noexcept = 0;
  /// False when the ingest must not receive now (its ack queue is full).
  virtual bool can_receive() const noexcept = 0;
  /// The earliest core::mono_ns() at which on_timer() is due; kNoDeadline when none. An idle
  /// shard wakes by then.
  virtual int64_t next_deadline_ns() const noexcept { return kNoDeadline; }
  /// Runs what is due at `now_ns` (core::mono_ns()); called once the deadline has passed.
  virtual void on_timer(Shard& shard, int64_t now_ns) noexcept {
    (void)shard;
    (void)now_ns;
  }
};

}  // namespace tianhe::runtime
