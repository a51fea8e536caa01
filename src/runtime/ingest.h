// A protocol's presence on one shard: the descriptors the shard's loop waits on, and what the
// loop calls when they are ready or when the log's durable offset moves. Owned and called only
// by its shard thread.
#pragma once

#include <cstddef>
#include <cstdint>

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

/// A protocol's presence on one shard (e.g. the report protocol's UDP socket). Owned and called
/// only by its shard thread.
class Ingest {
 public:
  virtual ~Ingest() = default;
  /// The descriptor the shard waits on for input.
  virtual int fd() const noexcept = 0;
  /// Receives and processes one batch without blocking; returns the datagrams handled (0: none).
  virtual uint32_t poll_input(Shard& shard) noexcept = 0;
  /// The most datagrams one poll_input() takes: a receive that returned this many may have left
  /// more in the socket.
  virtual uint32_t receive_batch() const noexcept = 0;
  /// Sends what became durable; says what the acks still pending wait for.
  virtual AckWait release_acks(uint64_t durable_offset) noexcept = 0;
  /// False when the ingest must not receive now (its ack queue is full).
  virtual bool can_receive() const noexcept = 0;
};

}  // namespace tianhe::runtime
