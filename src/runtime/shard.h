// A shard: one thread that owns its sockets (one per protocol, SO_REUSEPORT), its slice of the
// log and its pending acks. Shards share nothing on the hot path.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/counter.h"
#include "core/report.h"
#include "log/shard_log.h"
#include "pipeline/validator.h"
#include "runtime/ingest.h"
#include "runtime/pipeline_stats.h"
#include "runtime/tracing.h"

namespace tianhe::runtime {

/// Records a count (a batch size) into a Log2Histogram: one unit is recorded as one
/// microsecond, so bucket i counts batches of fewer than 2^i units and sum_ns() / 1000 is the
/// number of units. Owner thread only.
inline void observe_count(core::Log2Histogram& h, uint32_t units) noexcept {
  h.observe_ns(int64_t{units} * 1000);
}

/// Shard-wide counters (log-side) and the loop's accounting (self-diagnosis: /debug/shards,
/// /debug/stages). Written by the shard thread, read by any.
struct ShardStats {
  core::Counter heap_allocations;  ///< operator new calls on the shard thread (see alloc_counter.h)
  core::Counter loop_iterations;
  core::Counter idle_waits;
  core::Counter receive_windows;     ///< waits of ShardOptions::receive_window
  core::Counter busy_ns;             ///< loop time outside ppoll (work), monotonic ns
  core::Counter idle_ns;             ///< loop time inside ppoll (idle waits, receive windows)
  core::Log2Histogram input_batch;   ///< units per poll_input call that handled any (observe_count)
  core::Log2Histogram input_time;    ///< such a call's duration: receive, parse, decode, append
  core::Log2Histogram append_batch;  ///< reports per validate_and_append call (observe_count)
  core::Log2Histogram validate_time;  ///< a validate_and_append call's duration (with the append)
  core::Counter reports_in;           ///< reports given to validate_and_append
  core::Counter reports_accepted;     ///< of those, appended to the log
  core::Counter reports_rejected;     ///< of those, refused by the validator or the log
};

/// How a shard's loop receives.
struct ShardOptions {
  /// Receive coalescing: after a receive that found more than one datagram but left the socket
  /// empty, wait this long before receiving again, so that the next batch is larger (fewer
  /// system calls and wake-ups per report) at the cost of at most this much latency. A receive
  /// of one datagram (light load) is never followed by a wait. Zero: no wait.
  std::chrono::microseconds receive_window{400};
};

/// One shard thread. Built on the main thread, then start() runs it until stop().
class Shard {
 public:
  Shard(uint32_t index, std::unique_ptr<log::ShardLog> log,
        std::shared_ptr<const pipeline::Registry> registry, ShardOptions options = {});
  ~Shard();

  /// Records fates and spans with `tracer` (before start(); null: neither). Kept by the caller.
  void set_tracer(ShardTracer* tracer) noexcept { tracer_ = tracer; }
  /// The shard's tracer (null when none).
  ShardTracer* tracer() const noexcept { return tracer_; }
  /// Adds a protocol ingest (before start()).
  void add_ingest(std::unique_ptr<Ingest> ingest) { ingests_.push_back(std::move(ingest)); }
  /// Starts the thread.
  void start();
  /// Asks the thread to stop, joins it, closes the log (final sync).
  void stop() noexcept;

  uint32_t index() const noexcept { return index_; }
  log::ShardLog& log() noexcept { return *log_; }
  const pipeline::Validator& validator() const noexcept { return validator_; }
  const ShardStats& stats() const noexcept { return stats_; }

  /// Validates `batch` (sets each report's status in `status`: RejectReason as uint8_t) and
  /// appends the accepted reports to the log as one record. Shard thread only.
  AppendOutcome validate_and_append(core::ReportBatch& batch, std::span<uint8_t> status,
                                    PipelineStats& stats) noexcept;

 private:
  void run() noexcept;

  uint32_t index_;
  ShardOptions options_;
  std::unique_ptr<log::ShardLog> log_;
  pipeline::Validator validator_;
  std::vector<std::unique_ptr<Ingest>> ingests_;
  ShardTracer* tracer_ = nullptr;
  std::unique_ptr<uint8_t[]> record_;  ///< encode buffer for one log record
  size_t record_bytes_ = 0;
  ShardStats stats_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tianhe::runtime
