// A data plane's running totals, typed: what tools that follow a gateway read (`GET
// /debug/totals`, `tianhe bench`), taken from the counters themselves rather than scraped out of
// the /metrics text by metric name. Protocols and sinks add their part (add_totals).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/counter.h"
#include "core/result.h"

namespace tianhe::runtime {

struct Totals {
  uint64_t reports_accepted = 0;      ///< appended to the logs, every protocol
  uint64_t log_appended_bytes = 0;    ///< payload bytes appended to the logs
  uint64_t heap_allocations = 0;      ///< made by the shard threads
  uint64_t input_drops = 0;           ///< input lost before a protocol read it (kernel drops)
  uint64_t acks_dropped = 0;          ///< acks not queued (their reports are stored)
  uint64_t sink_lag_bytes = 0;        ///< durable log bytes not yet delivered, every sink
  double sink_lag_seconds = 0;        ///< the age of the oldest undelivered report, worst sink
  uint64_t sink_background_work = 0;  ///< work a sink still does after writing (store merges)
  /// Log2 histograms, bucket i counting values < 2^i us (see core::Log2Histogram).
  std::vector<uint64_t> log_fsync_us = std::vector<uint64_t>(core::Log2Histogram::kBuckets);
  std::vector<uint64_t> ack_latency_us = std::vector<uint64_t>(core::Log2Histogram::kBuckets);

  /// Adds a histogram's buckets to `into`.
  static void add(std::vector<uint64_t>& into, const core::Log2Histogram& h);
  /// As JSON (the body of GET /debug/totals).
  std::string json() const;
  /// Parses json(); an error names what is missing.
  static Result<Totals> parse(std::string_view json);
};

}  // namespace tianhe::runtime
