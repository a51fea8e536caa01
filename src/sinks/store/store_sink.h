// The embedded store as a sink on the shared log consumer (sinks/common/log_consumer.h): each
// batch is written with the shards' cursors in one store transaction, so a replay after a
// crash stores nothing twice; the store's own cursors say where to resume.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/counter.h"
#include "core/metrics.h"
#include "core/result.h"
#include "log/log_config.h"
#include "sinks/common/log_consumer.h"
#include "sinks/store/store_config.h"

namespace tianhe::log {
class ShardLog;
}

namespace tianhe::runtime {
class Tracing;
}  // namespace tianhe::runtime

namespace tianhe::sinks::store {

/// Counters of the store sink (written by the consumer thread, read at scrape time).
struct StoreSinkStats {
  core::Counter reports_written;
  core::Counter duplicates_dropped;
  core::Counter reboots;  ///< device sequence restarts detected
  core::Counter batches;  ///< committed transactions
  core::Counter errors;   ///< failed commits and opens
  core::Counter chunks_sealed;
  core::Counter open_chunk_reports;         ///< gauge
  std::atomic<int64_t> unmerged_chunks{0};  ///< sealed chunks still being merged
  core::Log2Histogram write_latency;        ///< one store transaction
};

/// The store sink. start() opens the store and starts consuming; stop() (or the destructor)
/// commits durably and ends. The logs must outlive the sink; logs[i] is shard i.
class StoreSink {
 public:
  static Result<std::unique_ptr<StoreSink>> start(
      const StoreConfig& config, const log::LogConfig& log_config, std::vector<log::ShardLog*> logs,
      std::shared_ptr<runtime::Tracing> tracing = nullptr);
  ~StoreSink();
  StoreSink(const StoreSink&) = delete;
  StoreSink& operator=(const StoreSink&) = delete;

  /// Finishes the current batch, commits it durably, publishes the cursors and joins.
  void stop();
  /// Durable log bytes not yet committed to the store, over all shards.
  uint64_t lag_bytes() const { return consumer_->lag_bytes(); }
  /// Age of the oldest durable report not yet committed; 0 when caught up.
  double lag_seconds() const { return consumer_->lag_seconds(); }
  /// True when every shard's committed cursor equals its log's durable offset.
  bool caught_up() const { return consumer_->caught_up(); }
  const StoreSinkStats& stats() const noexcept { return *stats_; }
  const ConsumerStats& consumer_stats() const noexcept { return consumer_->stats(); }
  const LogConsumer& consumer() const noexcept { return *consumer_; }
  /// Writes tianhe_sink_store_* and the consumer's tianhe_sink_* samples.
  void collect(core::PromWriter& w) const;

 private:
  StoreSink() = default;
  std::unique_ptr<StoreSinkStats> stats_;  ///< outlives the consumer (its writer updates it)
  std::unique_ptr<LogConsumer> consumer_;
};

}  // namespace tianhe::sinks::store
