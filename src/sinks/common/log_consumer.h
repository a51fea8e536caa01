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

#include "core/counter.h"
#include "core/metrics.h"
#include "core/report.h"
#include "core/result.h"
#include "log/log_config.h"

namespace tianhe::log {
class ShardLog;
class LogReader;
}  // namespace tianhe::log

namespace tianhe::runtime {
class Tracing;
struct SinkProgress;
}  // namespace tianhe::runtime

namespace tianhe::sinks {

class DeadLetter;

/// How far a batch consumes one shard's log.
struct ShardCursor {
  uint32_t shard = 0;
  uint64_t offset = 0;  ///< log offset of the next record to read
};

/// Where a report sits in the logs: shard, its record's offset, its index in the record. Unique
/// per copy of a report (a device's retransmission is another copy, at another position).
struct ReportPosition {
  uint32_t shard = 0;
  uint32_t index = 0;
  uint64_t offset = 0;
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
  std::span<const ShardCursor> cursors;       ///< every shard, after this batch
  std::span<const ReportPosition> positions;  ///< of each report (same order as reports)
  /// Where records the destination refuses for good go (null: the sink has none). A writer
  /// that dead-letters calls dead_letter->sync() before it commits the cursors.
  DeadLetter* dead_letter = nullptr;
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
  /// Its own samples beside the consumer's (scrape thread: read atomics only), labelled `sink`.
  virtual void collect(core::PromWriter& w, const core::Labels& sink) const {
    (void)w;
    (void)sink;
  }
};

/// How a consumer batches.
struct ConsumerOptions {
  std::string name;                               ///< the sink's name: its log consumer, its label
  uint32_t batch_reports = 65536;                 ///< reports per write at most
  std::chrono::milliseconds commit_interval{20};  ///< a partial batch waits this long to fill
  std::chrono::milliseconds durable_interval{200};  ///< a durable write at least this often
  /// Log bytes (over all shards) the sink may fall behind; 0: only the log's own limit.
  uint64_t max_backlog_bytes = 0;
  /// At max_backlog_bytes: false = the log refuses appends (BUSY); true = skip the oldest
  /// undelivered reports, counted in reports_dropped.
  bool drop_oldest = false;
  /// The writer is opened on the consumer's thread, not in start(): a server that is down or
  /// hung never fails or delays the gateway's start; the consumer holds the log from its oldest
  /// record and keeps trying. False for local sinks (an error fails start()).
  bool start_unavailable = false;
  /// The dead-letter file's directory (the data dir); empty: the sink has none.
  std::string dead_letter_dir;
  /// Where the sink notes what it delivered (fates) and records its spans; null: nowhere.
  std::shared_ptr<runtime::Tracing> tracing;
};

/// The consumer's counters (written by its thread, read at scrape time).
struct ConsumerStats {
  std::atomic<uint64_t> reports_read{0};
  std::atomic<uint64_t> malformed_records{0};  ///< log records that did not decode (skipped)
  std::atomic<uint64_t> corrupt_logs{0};       ///< shards stopped at a corrupt record
  std::atomic<uint64_t> writes[static_cast<int>(WriteStatus::kCount)]{};  ///< by status
  std::atomic<uint64_t> reports_rejected{0};   ///< in batches the sink rejected
  std::atomic<uint64_t> reports_delivered{0};  ///< in accepted batches
  std::atomic<uint64_t> reports_dropped{0};    ///< skipped by drop_oldest
  std::atomic<uint64_t> bytes_read{0};         ///< log bytes read (for the lag estimate)
  std::atomic<uint64_t> open_failures{0};      ///< (re)connects that failed
  std::atomic<bool> connected{false};
  core::Log2Histogram write_latency;  ///< per write() call; consumer thread writes
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
  /// Undelivered reports, estimated from the bytes per report read so far.
  uint64_t lag_reports() const;
  /// The last error in words and when (wall ns); "" / 0 when none yet.
  std::pair<std::string, int64_t> last_error() const;
  /// "connected", "connecting" (never opened yet), "retrying" (lost, reconnecting) or
  /// "blocked" (the destination refuses writes for now).
  std::string state() const;
  /// The dead-letter file (null when the sink has none).
  const DeadLetter* dead_letter() const noexcept { return dead_letter_.get(); }
  /// Writes tianhe_sink_lag_{bytes,seconds}{sink} and tianhe_sink_writes_total{sink,status},
  /// the delivery counters, then the writer's own samples.
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
  /// drop_oldest: skips (and counts) what lies beyond the backlog limit.
  void enforce_backlog();
  void set_error(const std::string& e);
  /// Sleeps for the back-off (doubling to 5 s); false when stopping.
  bool back_off(int64_t& backoff_ms);
  bool stopping() const;

  ConsumerOptions options_;
  log::LogConfig log_config_;
  std::unique_ptr<SinkWriter> writer_;
  std::vector<std::unique_ptr<Shard>> shards_;
  ConsumerStats stats_;

  core::ReportBatch scratch_;
  std::vector<core::Report> pending_;      ///< decoded reports of the batch being built
  std::vector<uint8_t> arena_;             ///< their metrics bytes
  std::vector<size_t> metric_offsets_;     ///< where each pending report's metrics start
  std::vector<ReportPosition> positions_;  ///< each pending report's
  std::vector<ShardCursor> cursors_;
  size_t rr_ = 0;  ///< round-robin start shard (ties of the merge)
  struct MergeState {
    bool active = false;  ///< has durable records left in this batch
    uint64_t limit = 0;   ///< the shard's durable offset when the batch began
    int64_t last_ns = 0;  ///< newest received_ns read from it in this batch
  };
  std::vector<MergeState> merge_;  ///< per shard, while a batch is read
  int64_t last_durable_ns_ = 0;
  bool dirty_since_durable_ = false;
  bool open_ = false;
  std::atomic<bool> ever_open_{false};  ///< opened at least once (state(): connecting/retrying)
  bool registered_ = false;             ///< the logs know this consumer
  bool reoffer_ = false;  ///< the last batch was blocked: offer it again before reading on
  uint64_t jitter_ = 0x9e3779b97f4a7c15ull;  ///< back-off jitter state
  std::atomic<bool> blocked_{false};
  std::unique_ptr<DeadLetter> dead_letter_;
  runtime::SinkProgress* progress_ = nullptr;  ///< owned by options_.tracing
  uint64_t span_index_ = 0;                    ///< this sink's kSink span id index
  int64_t batch_read_ns_ = 0;                  ///< wall clock when the batch began to be read
  /// Notes what the write delivered (fates) and records the traced reports' sink spans.
  void note_delivered(WriteStatus st);
  std::vector<uint64_t> drop_floor_;  ///< per shard: nothing below it is read again
  /// Per shard: where dropping started since the last write attempt (UINT64_MAX: no drop
  /// since). That write may have timed out here and landed there; open() then un-counts what
  /// the destination holds of the range dropped after it, so the count stays exact.
  std::vector<uint64_t> drop_from_;
  /// Reports in [from, to) of shard `shard`'s log (reads the records' headers).
  uint64_t count_reports(uint32_t shard, uint64_t from, uint64_t to);

  mutable std::mutex error_mu_;
  std::string last_error_;
  int64_t last_error_ns_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tianhe::sinks
