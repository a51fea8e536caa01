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
#include "sinks/store/store_files.h"

namespace tianhe::sinks::store {

using files::file_exists;
using files::kChunkSchema;
using files::merged_path_of;
using files::path_of;
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

/// Layout version in the catalog's meta: 1 was one SQLite row per report.
constexpr int64_t kSchemaVersion = 2;

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

}  // namespace tianhe::sinks::store
