// The store's write side: one writer per store directory appends decoded reports to the open
// time chunk, commits them in the same transaction as the shard-log cursors they came from,
// drops duplicates (per-device sequence windows) and seals chunks; a background thread merges
// each sealed chunk's runs of blocks into one sorted run and folds the chunk into the catalog's
// `latest` table.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/dir_lock.h"
#include "core/report.h"
#include "core/result.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/seq_window_table.h"
#include "sinks/store/sqlite_db.h"
#include "sinks/store/store_block.h"

namespace tianhe::sinks::store {

/// Settings of a StoreWriter (built from control::StoreConfig by the sink).
struct StoreWriterOptions {
  std::string dir;                            ///< store directory (created if missing)
  uint64_t chunk_reports = 4u << 20;          ///< seal the open chunk after this many reports
  std::chrono::seconds chunk_duration{3600};  ///< ... or once it is this old (and not empty)
  std::chrono::seconds retention{0};          ///< delete chunks sealed longer ago; 0 = keep
  /// Reports packed into one stored block (one SQLite row); see docs/store.md.
  uint32_t block_reports = kDefaultBlockReports;
  bool background_seal = true;        ///< merge sealed chunks on a thread (false: inside seal())
  int64_t cache_bytes = 256ll << 20;  ///< SQLite page cache of the open chunk's connection
  /// When set, kept equal to the number of sealed chunks whose merge has not finished (read by
  /// metrics on any thread; it outlives the writer).
  std::atomic<int64_t>* unmerged_chunks = nullptr;
  /// Wall-clock time in ns since the epoch: when chunks were created, sealed and retired, hence
  /// their age for chunk_duration and retention. Called on the sink and the seal threads; tests
  /// pass a clock they advance. Empty means core::wall_ns.
  std::function<int64_t()> wall_clock = core::wall_ns;
};

/// Where one shard's log has been consumed up to.
using ShardCursor = ::tianhe::sinks::ShardCursor;

/// Outcome of one write().
struct WriteResult {
  uint64_t written = 0;     ///< reports stored
  uint64_t duplicates = 0;  ///< reports dropped as already stored
  uint64_t reboots = 0;     ///< devices whose sequence restarted (stored, window reset)
  bool sealed = false;      ///< the open chunk was sealed after this commit
};

/// Counters of a writer (read from any thread).
struct StoreWriterStats {
  std::atomic<uint64_t> chunks_sealed{0};
  std::atomic<uint64_t> chunks_indexed{0};
  std::atomic<uint64_t> chunks_deleted{0};  ///< by retention
  std::atomic<uint64_t> seal_errors{0};
  std::atomic<uint64_t> index_ns_total{0};  ///< time spent merging sealed chunks
  std::atomic<uint64_t> runs_merged{0};     ///< small runs of the open chunk merged into larger
};

/// Writes one store directory. Lives on the sink thread (every method but stats() from that
/// thread); owns a background thread for sealed chunks. Only one writer per directory.
class StoreWriter {
 public:
  /// Opens or creates the store: merges any sealed chunk left unmerged, reopens the open
  /// chunk, reads the committed cursors and rebuilds the duplicate windows.
  static Result<std::unique_ptr<StoreWriter>> open(const StoreWriterOptions& options);
  /// Waits for background work and closes the files.
  ~StoreWriter();
  /// Not copyable.
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  /// Committed cursor of every shard seen so far (shard -> offset).
  const std::map<uint32_t, uint64_t>& cursors() const noexcept { return cursors_; }
  /// Stores `reports` (raw_metrics must be set) minus duplicates and moves `cursors` forward,
  /// in one transaction. `durable`: fsync the commit (and everything before it). Seals the open
  /// chunk afterwards when it is full or old. After an error the writer must be reopened.
  Result<WriteResult> write(std::span<const core::Report> reports,
                            std::span<const ShardCursor> cursors, bool durable);
  /// Seals the open chunk now (when it holds any report) and starts the next one.
  Result<void> seal();
  /// Blocks until every sealed chunk has been merged (state indexed).
  void wait_idle();
  /// Reports in the open chunk.
  uint64_t open_chunk_reports() const noexcept { return open_reports_; }
  /// Id of the open chunk.
  int64_t open_chunk_id() const noexcept { return open_id_; }
  /// Devices known (latest table and open chunk).
  size_t devices() const noexcept { return windows_.size(); }
  /// Counters.
  const StoreWriterStats& stats() const noexcept { return stats_; }

 private:
  /// Use open().
  explicit StoreWriter(StoreWriterOptions options);
  /// Catalog, pending seals, cursors, open chunk, duplicate windows.
  Result<void> init();
  /// Opens (creating) chunk `id` for inserts; `fresh` copies cursors into it.
  Result<void> open_chunk(int64_t id, bool fresh);
  /// Seeds the windows from `latest` and replays the open chunk.
  Result<void> rebuild_windows();
  /// Syncs the open chunk, starts the next and marks the old one sealed.
  Result<void> seal_open_chunk();
  /// Inserts the encoder's block as the open chunk's next block.
  Result<void> insert_block(BlockEncoder& enc);
  /// Writes filter_ as the device filter of the run of `reports` starting at `first_block`
  /// (none for small runs); false on a write error.
  bool put_filter(int64_t first_block, int64_t reports);
  /// Inside the current transaction: while the open chunk's last kRunFanIn runs are small and of
  /// one size class, merges them into one run (see docs/store.md, "Small runs").
  Result<void> merge_small_runs();
  /// Merges a sealed chunk's runs into one sorted run of blocks and folds each device's newest
  /// report into `latest`.
  Result<void> index_chunk(int64_t id);
  /// Deletes indexed chunks sealed before the retention period.
  Result<void> apply_retention();
  /// The background thread: merges sealed chunks in order.
  void background_loop();

  core::DirLock lock_;  ///< one writer per store directory; declared first, released last
  StoreWriterOptions opt_;
  Db catalog_;
  Db chunk_;
  Stmt put_block_;
  Stmt put_block_data_;
  Stmt put_run_;
  Stmt put_run_filter_;
  Stmt put_cursor_;
  Stmt put_devices_;
  int64_t open_id_ = 0;
  int64_t next_block_id_ = 1;  ///< id of the open chunk's next block
  BlockEncoder encoder_;
  DeviceFilterBuilder filter_;       ///< of the run being written
  std::vector<BlockRun> open_runs_;  ///< the open chunk's runs, by first block
  uint64_t open_reports_ = 0;
  int64_t open_min_time_ = 0;
  int64_t open_max_time_ = 0;
  int64_t open_created_ns_ = 0;
  bool broken_ = false;
  std::map<uint32_t, uint64_t> cursors_;
  SeqWindowTable windows_;
  /// A report's sort key in a commit: (device, device time, arrival index).
  struct SortKey {
    uint64_t device_id;
    int64_t time_ns;
    uint32_t index;
  };
  std::vector<SortKey> keys_;    ///< the surviving reports of the current write(), then sorted
  std::vector<uint32_t> order_;  ///< reports of the current write() to store, in order
  StoreWriterStats stats_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<int64_t> pending_;  ///< sealed chunks waiting for their merge
  bool busy_ = false;
  bool stopping_ = false;
  std::atomic<bool> hurry_{false};  ///< closing: remove files at once (not paced)
  std::thread background_;
};

}  // namespace tianhe::sinks::store
