// Per-shard, per-protocol ingest counters (tianhe_datagrams_*, tianhe_reports_*, tianhe_acks_*).
// Written by the shard thread only; summed across shards at scrape time.
#pragma once

#include <cstdint>

#include "runtime/counter.h"

namespace tianhe::runtime {

/// Why an accepted-by-the-parser report still was not stored (the log refused it).
enum class BusyReason : uint8_t { kBacklogFull = 0, kDiskFull, kIoError, kCount };

/// Status of one ack entry.
enum class AckKind : uint8_t { kOk = 0, kRejected, kBusy, kCount };

/// The counters of one protocol on one shard.
struct IngestStats {
  static constexpr int kMaxDropReasons = 32;
  static constexpr int kMaxRejectReasons = 16;

  Counter datagrams_received;
  Counter bytes_received;
  Counter datagrams_dropped[kMaxDropReasons];   ///< by the protocol's parse drop reason
  Counter reports_received;                     ///< reports parsed from valid datagrams
  Counter reports_accepted;                     ///< appended to the log
  Counter reports_rejected[kMaxRejectReasons];  ///< by pipeline::RejectReason
  Counter reports_busy[static_cast<int>(BusyReason::kCount)];
  Counter reports_auto_registered;
  Counter bad_traceparents;
  Counter acks_sent[static_cast<int>(AckKind::kCount)];  ///< ack entries, by status
  Counter ack_datagrams_sent;
  Counter ack_send_errors;
  Counter ack_queue_full;     ///< times receiving paused because the ack queue was full
  Counter pending_acks;       ///< gauge
  Counter kernel_drops;       ///< gauge: the socket's SO_RXQ_OVFL count
  Counter recv_buffer_bytes;  ///< gauge: receive buffer granted by the kernel
  Counter recv_batches;
  Log2Histogram ack_latency;          ///< receive to ack sent
  Log2Histogram batch_latency;        ///< receive to log append done
  Log2Histogram receive_queue_delay;  ///< arrival in the socket to read, oldest of each batch
};

}  // namespace tianhe::runtime
