#include "sinks/store/store_writer.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>

#include "core/clock.h"
#include "sinks/store/paced_vfs.h"
#include "sinks/store/store.h"

namespace tianhe::sinks::store {
namespace {

constexpr std::string_view kCatalogSchema = R"sql(
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS chunks(
  id INTEGER PRIMARY KEY,
  state INTEGER NOT NULL,            -- 0 open, 1 sealed, 2 indexed (merged file)
  min_time_ns INTEGER, max_time_ns INTEGER,
  reports INTEGER NOT NULL DEFAULT 0,
  created_ns INTEGER NOT NULL,
  sealed_ns INTEGER);
CREATE TABLE IF NOT EXISTS latest(
  device_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, tenant INTEGER NOT NULL,
  time_ns INTEGER NOT NULL, received_ns INTEGER NOT NULL, protocol INTEGER NOT NULL,
  metrics BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
-- Chunks whose per-commit file was replaced by the merged one: that file is deleted once no
-- reader can still be about to open it (kRetireDelay after retired_ns).
CREATE TABLE IF NOT EXISTS retired(id INTEGER PRIMARY KEY, retired_ns INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES('schema_version', 2);
)sql";

constexpr std::string_view kChunkSchema = R"sql(
-- One row per block of up to block_reports reports (store_block.h), sorted by (device, time)
-- within the block; the directory is apart from the bytes so that a search reads small rows.
CREATE TABLE IF NOT EXISTS blocks(
  id INTEGER PRIMARY KEY, first_device INTEGER NOT NULL, last_device INTEGER NOT NULL,
  min_time_ns INTEGER NOT NULL, max_time_ns INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS block_data(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(shard INTEGER PRIMARY KEY, offset INTEGER NOT NULL);
-- One row per commit: blocks first_block..last_block are sorted by (device_id, time_ns), so a
-- reader binary-searches each run. Sealing merges the runs into one.
CREATE TABLE IF NOT EXISTS runs(
  first_block INTEGER PRIMARY KEY, last_block INTEGER NOT NULL, reports INTEGER NOT NULL);
-- The devices of each run of an open chunk (store_block.h, DeviceFilterBuilder), apart from
-- `runs` so that listing the runs reads small rows. None in merged chunks, nor for runs written
-- before filters existed (their chunk files gain the table when a writer reopens them).
CREATE TABLE IF NOT EXISTS run_filters(first_block INTEGER PRIMARY KEY, filter BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER);
)sql";

/// Layout version in the catalog's meta: 1 was one SQLite row per report.
constexpr int64_t kSchemaVersion = 2;

/// A reader lists a chunk and opens its file within one query (milliseconds); a replaced file
/// is kept this long after the catalog stops naming it.
constexpr int64_t kRetireDelayNs = 30'000'000'000;

std::string path_of(const std::string& dir, int64_t id) {
  return dir + "/" + chunk_file_name(id);
}

std::string merged_path_of(const std::string& dir, int64_t id) {
  return dir + "/" + merged_chunk_file_name(id);
}

// A large file is removed in pieces: each freed extent is discarded on a `discard` mount, and
// one unlink of an 800 MB file held the log's flushes on the same disk for up to 36 ms (cut in
// 4 MiB pieces 10 ms apart, the same file left them as they were). Background thread only.
constexpr off_t kRemoveStepBytes = 4 << 20;
constexpr auto kRemoveStepPause = std::chrono::milliseconds(10);

/// Cuts the file down from its end in kRemoveStepBytes pieces, then unlinks it; at once when
/// `hurry` is set (the writer is closing). A crash midway leaves a shorter file that the next
/// removal takes up again (only files no reader needs any more are removed).
void remove_paced(const std::string& p, const std::atomic<bool>* hurry) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    struct stat st {};
    if (::fstat(fd, &st) == 0) {
      off_t size = st.st_size;
      while (size > kRemoveStepBytes && (hurry == nullptr || !hurry->load())) {
        size -= kRemoveStepBytes;
        if (::ftruncate(fd, size) != 0) break;
        std::this_thread::sleep_for(kRemoveStepPause);
      }
    }
    ::close(fd);
  }
  ::unlink(p.c_str());
}

void unlink_db(const std::string& p, const std::atomic<bool>* hurry = nullptr) {
  remove_paced(p, hurry);
  for (const char* suffix : {"-wal", "-shm", "-journal"}) ::unlink((p + suffix).c_str());
}

/// Writes a file's data to the device (the merged file is written without a journal).
bool fsync_file(const std::string& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string chunk_file_name(int64_t id) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "chunk-%06lld.db", static_cast<long long>(id));
  return buf;
}

StoreWriter::StoreWriter(StoreWriterOptions options) : opt_(std::move(options)) {
  if (!opt_.wall_clock) opt_.wall_clock = core::wall_ns;
}

StoreWriter::~StoreWriter() {
  hurry_.store(true);
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (background_.joinable()) background_.join();
}

Result<std::unique_ptr<StoreWriter>> StoreWriter::open(const StoreWriterOptions& options) {
  if (options.dir.empty()) return make_error("sinks.store.dir: empty: set a directory");
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return make_error(options.dir + ": cannot create the store directory: " + ec.message());
  // One writer per directory: two would each commit chunk files the other does not know of.
  auto lock = core::DirLock::acquire(options.dir, "store");
  if (!lock.ok()) return lock.error();
  std::unique_ptr<StoreWriter> w(new StoreWriter(options));
  w->lock_ = std::move(lock.value());
  if (auto r = w->init(); !r) return r.error();
  if (w->opt_.background_seal)
    w->background_ = std::thread([p = w.get()] { p->background_loop(); });
  return w;
}

Result<void> StoreWriter::init() {
  auto cat = Db::open(opt_.dir + "/catalog.db", true, paced_vfs_name());
  if (!cat) return cat.error();
  catalog_ = std::move(cat.value());
  if (auto r = catalog_.exec(kCatalogSchema); !r) return r;
  auto version = catalog_.query_i64("SELECT value FROM meta WHERE key = 'schema_version'", 0);
  if (!version) return version.error();
  if (version.value() != kSchemaVersion) {
    return make_error(opt_.dir + ": store layout version " + std::to_string(version.value()) +
                      ", this build reads version " + std::to_string(kSchemaVersion) +
                      ": move the directory away or set another sinks.store.dir");
  }

  // Sealed chunks left unmerged by a crash or stop: finish them before anything reads the
  // latest table (the duplicate windows are rebuilt from it).
  std::vector<int64_t> sealed;
  int64_t open_id = 0;
  {
    auto st = catalog_.prepare("SELECT id, state FROM chunks WHERE state < 2 ORDER BY id");
    if (!st) return st.error();
    while (st->step() == SQLITE_ROW) {
      if (st->i64(1) == static_cast<int64_t>(ChunkState::kSealed))
        sealed.push_back(st->i64(0));
      else
        open_id = st->i64(0);
    }
  }
  for (int64_t id : sealed) {
    if (auto r = index_chunk(id); !r) return r;
  }
  if (open_id == 0) {
    auto max_id = catalog_.query_i64("SELECT max(id) FROM chunks", 0);
    if (!max_id) return max_id.error();
    open_id = max_id.value() + 1;
    auto ins = catalog_.prepare("INSERT INTO chunks(id, state, created_ns) VALUES(?, 0, ?)");
    if (!ins) return ins.error();
    ins->bind(1, open_id);
    ins->bind(2, opt_.wall_clock());
    if (ins->step() != SQLITE_DONE) return catalog_.error("insert chunk");
  }

  // Cursors: the newest commit of each shard, wherever it lives (each chunk starts with a copy
  // of the cursors, so the open chunk normally holds them all).
  {
    auto st = catalog_.prepare("SELECT id, state FROM chunks ORDER BY id");
    if (!st) return st.error();
    while (st->step() == SQLITE_ROW) {
      std::string p = st->i64(1) == static_cast<int64_t>(ChunkState::kIndexed)
                          ? merged_path_of(opt_.dir, st->i64(0))
                          : path_of(opt_.dir, st->i64(0));
      if (!file_exists(p)) continue;
      auto db = Db::open(p, false, paced_vfs_name());
      if (!db) return db.error();
      auto cur = db->prepare("SELECT shard, offset FROM cursors");
      if (!cur) continue;  // a chunk file created but never initialised
      while (cur->step() == SQLITE_ROW) {
        auto shard = static_cast<uint32_t>(cur->i64(0));
        auto off = static_cast<uint64_t>(cur->i64(1));
        auto& c = cursors_[shard];
        c = std::max(c, off);
      }
    }
  }

  if (auto r = open_chunk(open_id, false); !r) return r;
  if (auto r = rebuild_windows(); !r) return r;
  return apply_retention();
}

Result<void> StoreWriter::open_chunk(int64_t id, bool fresh) {
  put_block_ = Stmt();
  put_block_data_ = Stmt();
  put_run_ = Stmt();
  put_run_filter_ = Stmt();
  put_cursor_ = Stmt();
  put_devices_ = Stmt();
  chunk_ = Db();
  auto db = Db::open(path_of(opt_.dir, id), true, paced_vfs_name());
  if (!db) return db.error();
  chunk_ = std::move(db.value());
  if (auto r = chunk_.exec("PRAGMA journal_mode=WAL;" + std::string(kChunkSchema)); !r) return r;
  std::string pragmas =
      "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=4096; "
      "PRAGMA cache_size=-" +
      std::to_string(std::max<int64_t>(opt_.cache_bytes >> 10, 2048)) + ";";
  if (auto r = chunk_.exec(pragmas); !r) return r;
  auto pb = chunk_.prepare(
      "INSERT INTO blocks(id, first_device, last_device, min_time_ns, max_time_ns, count) "
      "VALUES(?, ?, ?, ?, ?, ?)");
  if (!pb) return pb.error();
  put_block_ = std::move(pb.value());
  auto pbd = chunk_.prepare("INSERT INTO block_data(id, data) VALUES(?, ?)");
  if (!pbd) return pbd.error();
  put_block_data_ = std::move(pbd.value());
  auto next = chunk_.query_i64("SELECT max(id) FROM blocks", 0);
  if (!next) return next.error();
  next_block_id_ = next.value() + 1;
  auto pc = chunk_.prepare("INSERT OR REPLACE INTO cursors(shard, offset) VALUES(?, ?)");
  if (!pc) return pc.error();
  put_cursor_ = std::move(pc.value());
  auto pr = chunk_.prepare("INSERT INTO runs(first_block, last_block, reports) VALUES(?, ?, ?)");
  if (!pr) return pr.error();
  put_run_ = std::move(pr.value());
  auto pf = chunk_.prepare("INSERT INTO run_filters(first_block, filter) VALUES(?, ?)");
  if (!pf) return pf.error();
  put_run_filter_ = std::move(pf.value());
  auto pd = chunk_.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('devices', ?)");
  if (!pd) return pd.error();
  put_devices_ = std::move(pd.value());
  auto runs = read_runs(chunk_);
  if (!runs) return runs.error();
  open_runs_ = std::move(runs.value());
  open_id_ = id;
  open_reports_ = 0;
  open_min_time_ = std::numeric_limits<int64_t>::max();
  open_max_time_ = std::numeric_limits<int64_t>::min();
  auto created = catalog_.query_i64(
      "SELECT created_ns FROM chunks WHERE id = " + std::to_string(id), opt_.wall_clock());
  if (!created) return created.error();
  open_created_ns_ = created.value();
  if (fresh) {
    // The new chunk starts with the cursors and device count, so that it alone answers
    // "where to resume" and "how many devices".
    if (auto r = chunk_.exec("BEGIN"); !r) return r;
    for (auto& [shard, off] : cursors_) {
      put_cursor_.reset();
      put_cursor_.bind(1, shard);
      put_cursor_.bind(2, static_cast<int64_t>(off));
      if (put_cursor_.step() != SQLITE_DONE) return chunk_.error("write cursor");
    }
    put_devices_.reset();
    put_devices_.bind(1, static_cast<int64_t>(windows_.size()));
    if (put_devices_.step() != SQLITE_DONE) return chunk_.error("write meta");
    if (auto r = chunk_.exec("COMMIT"); !r) return r;
  }
  return {};
}

Result<void> StoreWriter::rebuild_windows() {
  auto n = catalog_.query_i64("SELECT count(*) FROM latest", 0);
  if (!n) return n.error();
  windows_ = SeqWindowTable(static_cast<size_t>(n.value()) + 1024);
  {
    auto st = catalog_.prepare("SELECT device_id, seq, time_ns FROM latest");
    if (!st) return st.error();
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) {
      windows_.seed(st->u64(0), static_cast<uint32_t>(st->i64(1)), st->i64(2));
    }
    if (rc != SQLITE_DONE) return catalog_.error("read latest");
  }
  // Replay the open chunk in commit order (each commit sorted by device, then time).
  auto st = chunk_.prepare("SELECT data FROM block_data ORDER BY id");
  if (!st) return st.error();
  std::vector<PackedReport> reps;
  std::vector<uint8_t> raw;
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) {
    if (!unpack_block(st->blob(0), raw) || !decode_block(raw, reps)) {
      return make_error(chunk_.path() + ": corrupt block");
    }
    for (const PackedReport& p : reps) {
      windows_.check(p.device_id, p.seq, p.device_time_ns);
      ++open_reports_;
      open_min_time_ = std::min(open_min_time_, p.device_time_ns);
      open_max_time_ = std::max(open_max_time_, p.device_time_ns);
    }
  }
  if (rc != SQLITE_DONE) return chunk_.error("scan open chunk");
  return {};
}

Result<WriteResult> StoreWriter::write(std::span<const core::Report> reports,
                                       std::span<const ShardCursor> cursors, bool durable) {
  if (broken_) return make_error(chunk_.path() + ": writer failed earlier: reopen the store");
  WriteResult res;
  if (durable) {
    if (auto r = chunk_.exec("PRAGMA synchronous=FULL"); !r) return r.error();
  }
  // Any failure below leaves the duplicate windows ahead of the database: the caller reopens.
  broken_ = true;
  if (auto r = chunk_.exec("BEGIN"); !r) return r.error();
  // Duplicates are judged in arrival order; the survivors are then packed sorted by
  // (device, time) into blocks: the commit becomes one sorted run that readers binary-search.
  // The window table and the reports' metric bytes are read in random order: prefetch ahead.
  constexpr uint32_t kAhead = 8;
  const auto count = static_cast<uint32_t>(reports.size());
  for (uint32_t i = 0; i < std::min(count, kAhead); ++i) windows_.prefetch(reports[i].device_id);
  keys_.clear();
  for (uint32_t i = 0; i < count; ++i) {
    if (i + kAhead < count) windows_.prefetch(reports[i + kAhead].device_id);
    const core::Report& rep = reports[i];
    SeqVerdict v = windows_.check(rep.device_id, rep.seq, rep.device_time_ns);
    if (v == SeqVerdict::kDuplicate) {
      ++res.duplicates;
      continue;
    }
    if (v == SeqVerdict::kReboot) ++res.reboots;
    keys_.push_back(SortKey{rep.device_id, rep.device_time_ns, i});
  }
  // Sorted by (device, time), ties in arrival order: compact keys, no indirection per compare.
  std::sort(keys_.begin(), keys_.end(), [](const SortKey& x, const SortKey& y) {
    if (x.device_id != y.device_id) return x.device_id < y.device_id;
    if (x.time_ns != y.time_ns) return x.time_ns < y.time_ns;
    return x.index < y.index;
  });
  order_.resize(keys_.size());
  for (size_t k = 0; k < keys_.size(); ++k) order_[k] = keys_[k].index;
  const int64_t first_block = next_block_id_;
  const uint32_t per_block = std::max<uint32_t>(opt_.block_reports, 1);
  filter_.reset(order_.size());
  for (size_t at = 0; at < order_.size(); at += per_block) {
    encoder_.clear();
    const size_t end = std::min(order_.size(), at + per_block);
    for (size_t k = at; k < end; ++k) {
      // Two stages: the Report itself further ahead, then the metric bytes it points to.
      if (k + 2 * kAhead < order_.size()) __builtin_prefetch(&reports[order_[k + 2 * kAhead]]);
      if (k + kAhead < order_.size()) {
        __builtin_prefetch(reports[order_[k + kAhead]].raw_metrics.data());
      }
      const core::Report& rep = reports[order_[k]];
      filter_.add(rep.device_id);
      encoder_.add(rep.device_id, rep.seq, rep.tenant, rep.device_time_ns, rep.received_ns,
                   static_cast<uint8_t>(rep.protocol), rep.raw_metrics);
    }
    const BlockInfo& bi = encoder_.info();
    if (auto e = insert_block(encoder_); !e) {
      (void)chunk_.exec("ROLLBACK");
      next_block_id_ = first_block;
      return e.error();
    }
    res.written += bi.count;
    open_min_time_ = std::min(open_min_time_, bi.min_time_ns);
    open_max_time_ = std::max(open_max_time_, bi.max_time_ns);
  }
  if (res.written > 0) {
    put_run_.reset();
    put_run_.bind(1, first_block);
    put_run_.bind(2, next_block_id_ - 1);
    put_run_.bind(3, static_cast<int64_t>(res.written));
    if (put_run_.step() != SQLITE_DONE || !put_filter(first_block, res.written)) {
      auto e = chunk_.error("write run");
      (void)chunk_.exec("ROLLBACK");
      next_block_id_ = first_block;
      return e;
    }
    open_runs_.push_back({first_block, next_block_id_ - 1, static_cast<int64_t>(res.written)});
    if (auto e = merge_small_runs(); !e) {
      (void)chunk_.exec("ROLLBACK");
      return e.error();
    }
  }
  for (const ShardCursor& c : cursors) {
    put_cursor_.reset();
    put_cursor_.bind(1, c.shard);
    put_cursor_.bind(2, static_cast<int64_t>(c.offset));
    if (put_cursor_.step() != SQLITE_DONE) {
      auto e = chunk_.error("write cursor");
      (void)chunk_.exec("ROLLBACK");
      return e;
    }
  }
  put_devices_.reset();
  put_devices_.bind(1, static_cast<int64_t>(windows_.size()));
  if (put_devices_.step() != SQLITE_DONE) {
    auto e = chunk_.error("write meta");
    (void)chunk_.exec("ROLLBACK");
    return e;
  }
  if (auto r = chunk_.exec("COMMIT"); !r) {
    (void)chunk_.exec("ROLLBACK");
    return r.error();
  }
  broken_ = false;
  if (durable) {
    if (auto r = chunk_.exec("PRAGMA synchronous=NORMAL"); !r) return r.error();
  }
  for (const ShardCursor& c : cursors) cursors_[c.shard] = c.offset;
  open_reports_ += res.written;

  bool full = open_reports_ >= opt_.chunk_reports;
  bool old = open_reports_ > 0 &&
             opt_.wall_clock() - open_created_ns_ >=
                 std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.chunk_duration).count();
  if (full || old) {
    if (auto r = seal(); !r) return r.error();
    res.sealed = true;
  }
  return res;
}

Result<void> StoreWriter::seal() {
  if (broken_) return make_error(chunk_.path() + ": writer failed earlier: reopen the store");
  if (open_reports_ == 0) return {};
  broken_ = true;  // cleared once the next chunk is listed; the caller reopens otherwise
  auto r = seal_open_chunk();
  if (!r) {
    (void)catalog_.exec("ROLLBACK");
    return r;
  }
  broken_ = false;
  if (opt_.background_seal) {
    {
      std::lock_guard lock(mu_);
      pending_.push_back(open_id_ - 1);
    }
    if (opt_.unmerged_chunks != nullptr) opt_.unmerged_chunks->fetch_add(1);
    cv_.notify_all();
    return {};
  }
  if (auto e = index_chunk(open_id_ - 1); !e) return e;
  return apply_retention();
}

Result<void> StoreWriter::seal_open_chunk() {
  // Make the chunk's last commit durable before the next chunk's commits can be: a later
  // durable cursor must never point past reports that are only in the page cache.
  if (auto r = chunk_.exec(
          "PRAGMA synchronous=FULL; BEGIN; UPDATE meta SET value = value WHERE key = 'devices'; "
          "COMMIT; PRAGMA synchronous=NORMAL");
      !r) {
    return r;
  }
  int64_t sealed_id = open_id_;
  int64_t next_id = open_id_ + 1;
  const int64_t min_time = open_min_time_, max_time = open_max_time_;
  const auto reports = static_cast<int64_t>(open_reports_);
  // Create the next chunk's file (schema, cursors) before the catalog lists it, so that a
  // reader never finds a listed chunk without its tables. A file left unlisted by a crash is
  // reused when that id is opened again.
  if (auto r = open_chunk(next_id, true); !r) return r;
  if (auto r = catalog_.exec("BEGIN IMMEDIATE"); !r) return r;
  auto up = catalog_.prepare(
      "UPDATE chunks SET state = 1, min_time_ns = ?, max_time_ns = ?, reports = ?, sealed_ns = ? "
      "WHERE id = ?");
  if (!up) return up.error();
  up->bind(1, min_time);
  up->bind(2, max_time);
  up->bind(3, reports);
  up->bind(4, opt_.wall_clock());
  up->bind(5, sealed_id);
  if (up->step() != SQLITE_DONE) return catalog_.error("seal chunk");
  auto ins = catalog_.prepare("INSERT INTO chunks(id, state, created_ns) VALUES(?, 0, ?)");
  if (!ins) return ins.error();
  ins->bind(1, next_id);
  ins->bind(2, opt_.wall_clock());
  if (ins->step() != SQLITE_DONE) return catalog_.error("insert chunk");
  up = Stmt();
  ins = Stmt();
  if (auto r = catalog_.exec("COMMIT"); !r) return r;
  stats_.chunks_sealed.fetch_add(1, std::memory_order_relaxed);
  return {};
}

void StoreWriter::wait_idle() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return (pending_.empty() && !busy_) || !background_.joinable(); });
}

void StoreWriter::background_loop() {
  pthread_setname_np(pthread_self(), "store-seal");
  // Sealing (merging a chunk's runs) is background work: ingest and the sink come first.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping with nothing left
    int64_t id = pending_.front();
    pending_.pop_front();
    busy_ = true;
    lock.unlock();
    auto r = index_chunk(id);
    if (r) r = apply_retention();
    if (!r) {
      stats_.seal_errors.fetch_add(1, std::memory_order_relaxed);
      std::fprintf(stderr, "sink.store: %s (retried at the next start)\n",
                   r.error().message.c_str());
    }
    if (opt_.unmerged_chunks != nullptr) opt_.unmerged_chunks->fetch_sub(1);
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

namespace {

/// The newest report of one device in a chunk; metrics in MergeOutput::arena.
struct LatestEntry {
  PackedReport report;  ///< metrics span unused: see offset/length
  size_t metrics_at = 0;
  size_t metrics_len = 0;
};

/// One run being read in a k-way merge: its current decoded block.
struct RunCursor {
  int64_t next_block = 0;
  int64_t last_block = 0;
  std::vector<uint8_t> bytes;
  std::vector<PackedReport> reports;
  size_t pos = 0;
};

bool key_less(const PackedReport& a, const PackedReport& b) {
  if (a.device_id != b.device_id) return a.device_id < b.device_id;
  if (a.device_time_ns != b.device_time_ns) return a.device_time_ns < b.device_time_ns;
  return a.seq < b.seq;
}

/// Reads `runs` of chunk `db` (named `path` in errors) in one k-way merge by (device, time,
/// seq), calling `emit(report)` for each report in that order; the report's metrics are valid
/// during the call. Holds one decoded block per run.
template <typename Emit>
Result<void> merge_runs(Db& db, const std::vector<BlockRun>& runs, const std::string& path,
                        Emit&& emit) {
  auto fetch = db.prepare("SELECT data FROM block_data WHERE id = ?");
  if (!fetch) return fetch.error();
  std::vector<RunCursor> cursors(runs.size());
  auto load = [&](RunCursor& c) -> Result<bool> {
    while (c.next_block <= c.last_block) {
      fetch->reset();
      fetch->bind(1, c.next_block++);
      if (fetch->step() != SQLITE_ROW) return db.error("read block");
      const bool unpacked = unpack_block(fetch->blob(0), c.bytes);
      fetch->reset();
      if (!unpacked || !decode_block(c.bytes, c.reports)) {
        return make_error(path + ": corrupt block");
      }
      c.pos = 0;
      if (!c.reports.empty()) return true;
    }
    return false;
  };
  auto later = [&](size_t x, size_t y) {
    return key_less(cursors[y].reports[cursors[y].pos], cursors[x].reports[cursors[x].pos]);
  };
  std::vector<size_t> heap;
  for (size_t i = 0; i < runs.size(); ++i) {
    cursors[i].next_block = runs[i].first_block;
    cursors[i].last_block = runs[i].last_block;
    auto more = load(cursors[i]);
    if (!more) return more.error();
    if (more.value()) heap.push_back(i);
  }
  std::make_heap(heap.begin(), heap.end(), later);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    RunCursor& c = cursors[heap.back()];
    if (auto r = emit(c.reports[c.pos]); !r) return r;
    if (++c.pos == c.reports.size()) {
      auto more = load(c);
      if (!more) return more.error();
      if (!more.value()) {
        heap.pop_back();
        continue;
      }
    }
    std::push_heap(heap.begin(), heap.end(), later);
  }
  return {};
}

/// Runs of the open chunk are merged kRunFanIn at a time while they are smaller than
/// kSmallRunReports and of one size class (a power of kRunFanIn): a trickle of tiny commits
/// (50 a second at the default commit_interval) leaves tens of runs instead of 180,000 in an
/// hour-long chunk, and every reader binary-searches each run. Each report is rewritten at most
/// about log8(kSmallRunReports) = 4 times, and runs of 4,096 reports or more (a busy gateway's
/// commits) never.
constexpr size_t kRunFanIn = 8;
constexpr int64_t kSmallRunReports = 4096;

int size_class(int64_t reports) {
  int c = 0;
  for (int64_t n = reports; n >= static_cast<int64_t>(kRunFanIn); n /= kRunFanIn) ++c;
  return c;
}

}  // namespace

/// Runs smaller than this get no device filter: a reader searches them (a block or two), and a
/// trickle of tiny commits saves the filter's row. At most 2 * (kRunFanIn - 1) runs are this
/// small at a time (they merge into larger ones).
constexpr int64_t kMinFilteredRunReports = 64;

bool StoreWriter::put_filter(int64_t first_block, int64_t reports) {
  if (reports < kMinFilteredRunReports) return true;
  put_run_filter_.reset();
  put_run_filter_.bind(1, first_block);
  put_run_filter_.bind_blob(2, filter_.bytes());
  const bool ok = put_run_filter_.step() == SQLITE_DONE;
  put_run_filter_.reset();  // releases the bound bytes
  return ok;
}

Result<void> StoreWriter::insert_block(BlockEncoder& enc) {
  const BlockInfo& bi = enc.info();
  put_block_.reset();
  put_block_.bind(1, next_block_id_);
  put_block_.bind_u64(2, bi.first_device);
  put_block_.bind_u64(3, bi.last_device);
  put_block_.bind(4, bi.min_time_ns);
  put_block_.bind(5, bi.max_time_ns);
  put_block_.bind(6, bi.count);
  put_block_data_.reset();
  put_block_data_.bind(1, next_block_id_);
  put_block_data_.bind_blob(2, enc.bytes());
  const bool ok = put_block_.step() == SQLITE_DONE && put_block_data_.step() == SQLITE_DONE;
  put_block_data_.reset();  // releases the bound bytes
  if (!ok) return chunk_.error("insert block");
  ++next_block_id_;
  return {};
}

Result<void> StoreWriter::merge_small_runs() {
  while (open_runs_.size() >= kRunFanIn) {
    const auto tail = open_runs_.end() - static_cast<std::ptrdiff_t>(kRunFanIn);
    const int cls = size_class(tail->reports);
    if (tail->reports >= kSmallRunReports ||
        !std::all_of(tail, open_runs_.end(),
                     [&](const BlockRun& r) { return size_class(r.reports) == cls; })) {
      break;
    }
    const std::vector<BlockRun> runs(tail, open_runs_.end());
    const int64_t first = next_block_id_;
    const uint32_t per_block = std::max<uint32_t>(opt_.block_reports, 1);
    int64_t total = 0;
    encoder_.clear();
    int64_t reports = 0;
    for (const BlockRun& r : runs) reports += r.reports;
    filter_.reset(static_cast<size_t>(reports));
    auto merged = merge_runs(chunk_, runs, chunk_.path(), [&](const PackedReport& p) {
      filter_.add(p.device_id);
      encoder_.add(p);
      ++total;
      if (encoder_.count() < per_block) return Result<void>{};
      auto r = insert_block(encoder_);
      encoder_.clear();
      return r;
    });
    if (!merged) return merged;
    if (encoder_.count() > 0) {
      if (auto r = insert_block(encoder_); !r) return r;
      encoder_.clear();
    }
    // The merged runs are the chunk's last: their blocks are the ids from the first one up
    // (gaps are blocks of runs merged before).
    std::string range = " BETWEEN ";
    range += std::to_string(runs.front().first_block);
    range += " AND ";
    range += std::to_string(runs.back().last_block);
    std::string sql = "DELETE FROM blocks WHERE id";
    sql += range;
    sql += "; DELETE FROM block_data WHERE id";
    sql += range;
    sql += "; DELETE FROM runs WHERE first_block";
    sql += range;
    sql += "; DELETE FROM run_filters WHERE first_block";
    sql += range;
    if (auto r = chunk_.exec(sql); !r) return r;
    put_run_.reset();
    put_run_.bind(1, first);
    put_run_.bind(2, next_block_id_ - 1);
    put_run_.bind(3, total);
    if (put_run_.step() != SQLITE_DONE || !put_filter(first, total)) {
      return chunk_.error("write merged run");
    }
    open_runs_.erase(tail, open_runs_.end());
    open_runs_.push_back({first, next_block_id_ - 1, total});
    stats_.runs_merged.fetch_add(kRunFanIn, std::memory_order_relaxed);
  }
  return {};
}

Result<void> StoreWriter::index_chunk(int64_t id) {
  int64_t t0 = core::mono_ns();
  std::string path = path_of(opt_.dir, id);
  // Own connections: this may run on the background thread while the writer commits.
  auto cat = Db::open(opt_.dir + "/catalog.db", false, paced_vfs_name());
  if (!cat) return cat.error();
  if (!file_exists(path)) {
    // The file is gone (deleted by hand): forget the chunk.
    if (auto r = cat->exec("DELETE FROM chunks WHERE id = " + std::to_string(id)); !r) return r;
    stats_.chunks_indexed.fetch_add(1, std::memory_order_relaxed);
    return {};
  }
  auto db = Db::open(path, false, paced_vfs_name());
  if (!db) return db.error();
  if (auto r = db->exec("PRAGMA cache_size=-65536"); !r) return r;
  auto listed = read_runs(db.value());
  if (!listed) return listed.error();
  const std::vector<BlockRun>& runs = listed.value();
  // The merged chunk goes to a new file, written once without a journal (a crash before the
  // catalog names it leaves a partial file that the next attempt replaces), so the sealed data
  // is written once instead of WAL + checkpoint + freeing the old pages. 64 KiB pages hold a
  // whole block without overflow chains.
  const std::string merged_path = merged_path_of(opt_.dir, id);
  unlink_db(merged_path, &hurry_);
  auto out = Db::open(merged_path, true, paced_vfs_name());
  if (!out) return out.error();
  if (auto r = out->exec("PRAGMA page_size=65536; PRAGMA journal_mode=OFF; "
                         "PRAGMA synchronous=OFF; PRAGMA cache_size=-16384;" +
                         std::string(kChunkSchema) + "BEGIN");
      !r) {
    return r;
  }
  auto put_block = out->prepare(
      "INSERT INTO blocks(id, first_device, last_device, min_time_ns, max_time_ns, count) "
      "VALUES(?, ?, ?, ?, ?, ?)");
  if (!put_block) return put_block.error();
  auto put_data = out->prepare("INSERT INTO block_data(id, data) VALUES(?, ?)");
  if (!put_data) return put_data.error();

  int64_t next_id = 1;
  int64_t total = 0;
  BlockEncoder enc;
  auto flush = [&]() -> Result<void> {
    if (enc.count() == 0) return {};
    const BlockInfo& bi = enc.info();
    put_block->reset();
    put_block->bind(1, next_id);
    put_block->bind_u64(2, bi.first_device);
    put_block->bind_u64(3, bi.last_device);
    put_block->bind(4, bi.min_time_ns);
    put_block->bind(5, bi.max_time_ns);
    put_block->bind(6, bi.count);
    put_data->reset();
    put_data->bind(1, next_id);
    put_data->bind_blob(2, enc.bytes());
    bool ok = put_block->step() == SQLITE_DONE && put_data->step() == SQLITE_DONE;
    put_data->reset();
    if (!ok) return out->error("write merged block");
    ++next_id;
    enc.clear();
    return {};
  };
  std::vector<LatestEntry> latest;
  std::vector<uint8_t> arena;
  const uint32_t per_block = std::max<uint32_t>(opt_.block_reports, 1);
  auto merged = merge_runs(db.value(), runs, path, [&](const PackedReport& p) -> Result<void> {
    ++total;
    enc.add(p);
    if (enc.count() == per_block) {
      if (auto r = flush(); !r) return r;
    }
    // Sorted by (device, time, seq): the last report of a device is its newest.
    if (latest.empty() || latest.back().report.device_id != p.device_id) {
      latest.push_back({});
    } else {
      arena.resize(latest.back().metrics_at);
    }
    LatestEntry& e = latest.back();
    e.report = p;
    e.metrics_at = arena.size();
    e.metrics_len = p.metrics.size();
    arena.insert(arena.end(), p.metrics.begin(), p.metrics.end());
    return {};
  });
  if (!merged) return merged;
  if (auto r = flush(); !r) return r;
  {
    auto ins = out->prepare("INSERT INTO runs(first_block, last_block, reports) VALUES(?, ?, ?)");
    if (!ins) return ins.error();
    ins->bind(1, 1);
    ins->bind(2, next_id - 1);
    ins->bind(3, total);
    if (next_id > 1 && ins->step() != SQLITE_DONE) return out->error("write merged run");
    // The cursors travel with the data, as in every chunk file.
    auto cur = db->prepare("SELECT shard, offset FROM cursors");
    if (!cur) return cur.error();
    auto put = out->prepare("INSERT INTO cursors(shard, offset) VALUES(?, ?)");
    if (!put) return put.error();
    while (cur->step() == SQLITE_ROW) {
      put->reset();
      put->bind(1, cur->i64(0));
      put->bind(2, cur->i64(1));
      if (put->step() != SQLITE_DONE) return out->error("write cursor");
    }
  }
  put_block = Stmt();
  put_data = Stmt();
  if (auto r = out->exec("COMMIT"); !r) return r;
  *out = Db();
  // Durable before the catalog names it: the per-commit file is deleted after that.
  if (!fsync_file(merged_path)) return make_error(merged_path + ": fsync: " + errno_text(errno));

  // The newest report of each device in this chunk, folded into `latest` in device order.
  if (auto r = cat->exec("BEGIN IMMEDIATE"); !r) return r;
  auto up = cat->prepare(
      "INSERT INTO latest(device_id, seq, tenant, time_ns, received_ns, protocol, metrics) "
      "VALUES(?, ?, ?, ?, ?, ?, ?) "
      "ON CONFLICT(device_id) DO UPDATE SET seq = excluded.seq, tenant = excluded.tenant, "
      "time_ns = excluded.time_ns, received_ns = excluded.received_ns, "
      "protocol = excluded.protocol, metrics = excluded.metrics "
      "WHERE excluded.time_ns > latest.time_ns OR "
      "(excluded.time_ns = latest.time_ns AND excluded.seq >= latest.seq)");
  if (!up) {
    (void)cat->exec("ROLLBACK");
    return up.error();
  }
  for (const LatestEntry& e : latest) {
    up->reset();
    up->bind_u64(1, e.report.device_id);
    up->bind(2, e.report.seq);
    up->bind(3, e.report.tenant);
    up->bind(4, e.report.device_time_ns);
    up->bind(5, e.report.received_ns);
    up->bind(6, e.report.protocol);
    up->bind_blob(7, std::span<const uint8_t>(arena).subspan(e.metrics_at, e.metrics_len));
    if (up->step() != SQLITE_DONE) {
      auto err = cat->error("update latest");
      up->reset();
      (void)cat->exec("ROLLBACK");
      return err;
    }
  }
  up = Stmt();
  if (auto r =
          cat->exec("UPDATE chunks SET state = 2 WHERE id = " + std::to_string(id) +
                    "; INSERT OR REPLACE INTO retired(id, retired_ns) VALUES(" +
                    std::to_string(id) + ", " + std::to_string(opt_.wall_clock()) + "); COMMIT");
      !r) {
    (void)cat->exec("ROLLBACK");
    return r;
  }
  stats_.chunks_indexed.fetch_add(1, std::memory_order_relaxed);
  stats_.index_ns_total.fetch_add(static_cast<uint64_t>(core::mono_ns() - t0),
                                  std::memory_order_relaxed);
  return {};
}

Result<void> StoreWriter::apply_retention() {
  auto cat = Db::open(opt_.dir + "/catalog.db", false, paced_vfs_name());
  if (!cat) return cat.error();
  // Per-commit files replaced by a merged one, once no reader can still be opening them.
  std::vector<int64_t> retired;
  {
    auto st = cat->prepare("SELECT id FROM retired WHERE retired_ns < ?");
    if (!st) return st.error();
    st->bind(1, opt_.wall_clock() - kRetireDelayNs);
    while (st->step() == SQLITE_ROW) retired.push_back(st->i64(0));
  }
  for (int64_t id : retired) {
    unlink_db(path_of(opt_.dir, id), &hurry_);
    if (auto r = cat->exec("DELETE FROM retired WHERE id = " + std::to_string(id)); !r) return r;
  }
  if (opt_.retention.count() <= 0) return {};
  int64_t cutoff = opt_.wall_clock() -
                   std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.retention).count();
  std::vector<int64_t> ids;
  {
    auto st = cat->prepare("SELECT id FROM chunks WHERE state = 2 AND sealed_ns < ?");
    if (!st) return st.error();
    st->bind(1, cutoff);
    while (st->step() == SQLITE_ROW) ids.push_back(st->i64(0));
  }
  for (int64_t id : ids) {
    // Catalog first: a reader never looks for a file the catalog still lists as gone.
    if (auto r = cat->exec("DELETE FROM chunks WHERE id = " + std::to_string(id) +
                           "; DELETE FROM retired WHERE id = " + std::to_string(id));
        !r) {
      return r;
    }
    unlink_db(path_of(opt_.dir, id), &hurry_);
    unlink_db(merged_path_of(opt_.dir, id), &hurry_);
    stats_.chunks_deleted.fetch_add(1, std::memory_order_relaxed);
  }
  return {};
}

}  // namespace tianhe::sinks::store
