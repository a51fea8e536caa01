// The report protocol's counters on one shard (tianhe_datagrams_*, tianhe_acks_*, ...), declared
// here and collected by report_protocol.cpp. Written by the shard thread only; summed across
// shards at scrape time.
#pragma once

#include "core/counter.h"
#include "protocols/report/report_parser.h"
#include "runtime/pipeline_stats.h"

namespace tianhe::protocols::report {

/// The counters of the report protocol on one shard.
struct ReportStats {
  runtime::PipelineStats pipeline;  ///< received, accepted, rejected: shared by every protocol
  core::Counter datagrams_received;
  core::Counter bytes_received;
  core::Counter datagrams_dropped[kDropReasonCount];                    ///< by DropReason
  core::Counter acks_sent[static_cast<int>(runtime::AckKind::kCount)];  ///< entries by status
  core::Counter ack_datagrams_sent;
  core::Counter ack_send_errors;
  core::Counter ack_queue_full;     ///< times receiving paused because the ack queue was full
  core::Counter pending_acks;       ///< gauge
  core::Counter kernel_drops;       ///< gauge: the socket's SO_RXQ_OVFL count
  core::Counter recv_buffer_bytes;  ///< gauge: receive buffer granted by the kernel
  core::Counter recv_batches;
  core::Log2Histogram ack_latency;          ///< receive to ack sent
  core::Log2Histogram batch_latency;        ///< receive to log append done
  core::Log2Histogram receive_queue_delay;  ///< arrival in the socket to read, oldest of each batch
};

}  // namespace tianhe::protocols::report
