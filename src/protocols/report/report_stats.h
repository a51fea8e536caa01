// The report protocol's counters on one shard (tianhe_datagrams_*, tianhe_acks_*, ...), declared
// here and collected by report_protocol.cpp. Written by the shard thread only; summed across
// shards at scrape time.
#pragma once

#include "protocols/report/report_parser.h"
#include "runtime/counter.h"
#include "runtime/pipeline_stats.h"

namespace tianhe::protocols::report {

/// The counters of the report protocol on one shard.
struct ReportStats {
  runtime::PipelineStats pipeline;  ///< received, accepted, rejected: shared by every protocol
  runtime::Counter datagrams_received;
  runtime::Counter bytes_received;
  runtime::Counter datagrams_dropped[kDropReasonCount];                    ///< by DropReason
  runtime::Counter acks_sent[static_cast<int>(runtime::AckKind::kCount)];  ///< entries by status
  runtime::Counter ack_datagrams_sent;
  runtime::Counter ack_send_errors;
  runtime::Counter ack_queue_full;     ///< times receiving paused because the ack queue was full
  runtime::Counter pending_acks;       ///< gauge
  runtime::Counter kernel_drops;       ///< gauge: the socket's SO_RXQ_OVFL count
  runtime::Counter recv_buffer_bytes;  ///< gauge: receive buffer granted by the kernel
  runtime::Counter recv_batches;
  runtime::Log2Histogram ack_latency;    ///< receive to ack sent
  runtime::Log2Histogram batch_latency;  ///< receive to log append done
  runtime::Log2Histogram
      receive_queue_delay;  ///< arrival in the socket to read, oldest of each batch
};

}  // namespace tianhe::protocols::report
