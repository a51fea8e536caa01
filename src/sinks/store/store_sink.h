// The embedded store as a sink: one thread reads every shard's log from the cursors committed
// in the store, writes the reports in batches (rows and cursors in one transaction) and tells
// each log how far it may delete once those cursors are on disk.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "control/config.h"
#include "core/result.h"
#include "log/shard_log.h"
#include "sinks/store/store_writer.h"

namespace tianhe::control {
class PromWriter;
}

namespace tianhe::sinks::store {

/// Counters of the store sink (written by the sink thread, read at scrape time).
struct StoreSinkStats {
  std::atomic<uint64_t> reports_written{0};
  std::atomic<uint64_t> duplicates_dropped{0};
  std::atomic<uint64_t> reboots{0};            ///< device sequence restarts detected
  std::atomic<uint64_t> malformed_records{0};  ///< log records that did not decode (skipped)
  std::atomic<uint64_t> batches{0};            ///< committed transactions
  std::atomic<uint64_t> errors{0};             ///< failed commits and unreadable logs
  std::atomic<uint64_t> chunks_sealed{0};
  /// Commit latency, log2 buckets of microseconds (bucket i counts values < 2^i us).
  static constexpr int kBuckets = 24;
  std::atomic<uint64_t> write_us_buckets[kBuckets]{};
  std::atomic<uint64_t> write_ns_sum{0};
};

/// The store sink. start() spawns its thread; stop() (or the destructor) ends it. The logs must
/// outlive the sink; logs[i] is shard i.
class StoreSink {
 public:
  /// Opens the store in config.dir, registers a consumer with every log at the store's
  /// committed cursor and starts consuming.
  static Result<std::unique_ptr<StoreSink>> start(const control::StoreConfig& config,
                                                  const log::LogConfig& log_config,
                                                  std::vector<log::ShardLog*> logs);
  /// Stops (see stop()).
  ~StoreSink();
  /// Not copyable.
  StoreSink(const StoreSink&) = delete;
  StoreSink& operator=(const StoreSink&) = delete;

  /// Finishes the current batch, commits it durably, publishes the cursors and joins.
  void stop();
  /// Durable log bytes not yet committed to the store, over all shards.
  uint64_t lag_bytes() const;
  /// Age of the oldest durable report not yet committed (estimated from the receive time of
  /// the last report consumed and when the backlog was first seen); 0 when caught up.
  double lag_seconds() const;
  /// True when every shard's committed cursor equals its log's durable offset.
  bool caught_up() const;
  /// Counters.
  const StoreSinkStats& stats() const noexcept { return stats_; }
  /// Writes tianhe_sink_store_* and tianhe_sink_lag_* samples.
  void collect(control::PromWriter& w) const;

 private:
  struct Shard;
  StoreSink(const control::StoreConfig& config, const log::LogConfig& log_config,
            std::vector<log::ShardLog*> logs);
  /// Opens the writer and a log reader per shard at the committed cursors.
  Result<void> open_store();
  /// The sink thread's loop.
  void run();
  /// Reads up to batch_reports reports from the logs; true when any record was read.
  bool read_batch();
  /// Writes the batch and the cursors in one transaction.
  Result<void> commit(bool durable);
  /// Tells each log the cursor known to be on disk.
  void publish_durable();
  /// Reopens the store after a failed commit, with back-off.
  void recover_after_error();

  control::StoreConfig config_;
  log::LogConfig log_config_;
  std::unique_ptr<StoreWriter> writer_;
  std::vector<std::unique_ptr<Shard>> shards_;
  StoreSinkStats stats_;
  std::atomic<int64_t> open_chunk_reports_{0};
  std::atomic<int64_t> unmerged_chunks_{0};  ///< sealed chunks still being merged

  core::ReportBatch scratch_;
  std::vector<core::Report> pending_;   ///< decoded reports of the batch being built
  std::vector<uint8_t> arena_;          ///< their metrics bytes
  std::vector<size_t> metric_offsets_;  ///< where each pending report's metrics start
  size_t rr_ = 0;                       ///< round-robin start shard
  int64_t last_durable_ns_ = 0;
  bool dirty_since_durable_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tianhe::sinks::store
