// The log consumer every sink is built on: one thread reads every shard's log from the cursors
// the sink committed (durable records only), in round robin so one busy shard cannot starve
// the others, hands the reports to the sink in batches, and tells each log how far it may delete
// once the sink's cursors are on disk. Lag, back-off and retry live here once; a sink only
// writes batches (SinkWriter) and says how that went.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics.h"
#include "core/report.h"
#include "core/result.h"
#include "log/log_config.h"

namespace tianhe::log {
class ShardLog;
class LogReader;
}  // namespace tianhe::log

namespace tianhe::sinks {

/// How far a batch consumes one shard's log.
struct ShardCursor {
  uint32_t shard = 0;
  uint64_t offset = 0;  ///< log offset of the next record to read
};

/// What a sink says about a batch.
enum class WriteStatus : uint8_t {
  kAccepted,  ///< written with its cursors: they advance
  kRetry,     ///< failed, state unknown (a lost connection): reopen, resume from open()'s cursors
  kBlocked,   ///< refused for now (destination full or read-only): offer the same batch later
  kRejected,  ///< can never be written: counted, skipped, the cursors advance
  kCount,
};

/// The snake_case name of a write status (a metric label): "accepted", "retry", ...
std::string_view write_status_name(WriteStatus s) noexcept;

/// A batch of reports and the cursors it reaches. The reports' metrics (raw_metrics) point into
/// the consumer's arena, valid during the write() call only.
struct Batch {
  std::span<const core::Report> reports;
  std::span<const ShardCursor> cursors;  ///< every shard, after this batch
};

/// What a sink implements. Called on the consumer's thread only.
class SinkWriter {
 public:
  virtual ~SinkWriter() = default;
  /// (Re)connects and returns the cursor committed for each of `shards` shards (0: from the
  /// start of the log). Called at start and after kRetry.
  virtual Result<std::vector<uint64_t>> open(uint32_t shards) = 0;
  /// Writes `batch` and its cursors, atomically where the destination can (rows and cursors
  /// in one transaction), so that a replay after a crash adds nothing. `durable`: on disk
  /// before returning (otherwise it may be buffered until the next durable write). An empty
  /// batch still moves the cursors. On failure sets `error`.
  virtual WriteStatus write(const Batch& batch, bool durable, std::string& error) = 0;
  /// Closes the connection (after the last write; also before a reopen).
  virtual void close() noexcept {}
};

/// How a consumer batches.
struct ConsumerOptions {
  std::string name;                               ///< the sink's name: its log consumer, its label
  uint32_t batch_reports = 65536;                 ///< reports per write at most
  std::chrono::milliseconds commit_interval{20};  ///< a partial batch waits this long to fill
  std::chrono::milliseconds durable_interval{200};  ///< a durable write at least this often
};

/// The consumer's counters (written by its thread, read at scrape time).
struct ConsumerStats {
  std::atomic<uint64_t> reports_read{0};
  std::atomic<uint64_t> malformed_records{0};  ///< log records that did not decode (skipped)
  std::atomic<uint64_t> corrupt_logs{0};       ///< shards stopped at a corrupt record
  std::atomic<uint64_t> writes[static_cast<int>(WriteStatus::kCount)]{};  ///< by status
  std::atomic<uint64_t> reports_rejected{0};  ///< in batches the sink rejected
};

/// One sink's consumer of every shard log. The logs must outlive it; logs[i] is shard i.
class LogConsumer {
 public:
  /// Opens the writer, registers a consumer named options.name with every log at the writer's
  /// committed cursors and starts the thread.
  static Result<std::unique_ptr<LogConsumer>> start(ConsumerOptions options,
                                                    const log::LogConfig& log_config,
                                                    std::vector<log::ShardLog*> logs,
                                                    std::unique_ptr<SinkWriter> writer);
  ~LogConsumer();
  LogConsumer(const LogConsumer&) = delete;
  LogConsumer& operator=(const LogConsumer&) = delete;

  /// Writes what was read, durably, publishes the cursors, joins and closes the writer.
  void stop();
  /// Durable log bytes not yet written, over all shards.
  uint64_t lag_bytes() const;
  /// Age of the oldest durable report not yet written (estimated); 0 when caught up.
  double lag_seconds() const;
  /// True when every shard's committed cursor equals its log's durable offset.
  bool caught_up() const;
  const ConsumerStats& stats() const noexcept { return stats_; }
  const std::string& name() const noexcept { return options_.name; }
  /// Writes tianhe_sink_lag_{bytes,seconds}{sink} and tianhe_sink_writes_total{sink,status}.
  void collect(core::PromWriter& w) const;

 private:
  struct Shard;
  LogConsumer(ConsumerOptions options, const log::LogConfig& log_config,
              std::vector<log::ShardLog*> logs, std::unique_ptr<SinkWriter> writer);
  Result<void> open();
  void run();
  bool read_batch();
  WriteStatus write(bool durable);
  void publish_durable();
  /// Sleeps for the back-off (doubling to 5 s); false when stopping.
  bool back_off(int64_t& backoff_ms);
  bool stopping() const;

  ConsumerOptions options_;
  log::LogConfig log_config_;
  std::unique_ptr<SinkWriter> writer_;
  std::vector<std::unique_ptr<Shard>> shards_;
  ConsumerStats stats_;

  core::ReportBatch scratch_;
  std::vector<core::Report> pending_;   ///< decoded reports of the batch being built
  std::vector<uint8_t> arena_;          ///< their metrics bytes
  std::vector<size_t> metric_offsets_;  ///< where each pending report's metrics start
  std::vector<ShardCursor> cursors_;
  size_t rr_ = 0;  ///< round-robin start shard
  int64_t last_durable_ns_ = 0;
  bool dirty_since_durable_ = false;
  bool open_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tianhe::sinks
