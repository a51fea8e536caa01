#include "sinks/store/store_writer.h"

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

#include "core/clock.h"
#include "sinks/store/store.h"

namespace tianhe::sinks::store {
namespace {

constexpr std::string_view kCatalogSchema = R"sql(
PRAGMA journal_mode=WAL;
PRAGMA synchronous=FULL;
CREATE TABLE IF NOT EXISTS chunks(
  id INTEGER PRIMARY KEY,
  state INTEGER NOT NULL,            -- 0 open, 1 sealed, 2 indexed
  min_time_ns INTEGER, max_time_ns INTEGER,
  reports INTEGER NOT NULL DEFAULT 0,
  created_ns INTEGER NOT NULL,
  sealed_ns INTEGER);
CREATE TABLE IF NOT EXISTS latest(
  device_id INTEGER PRIMARY KEY, seq INTEGER NOT NULL, tenant INTEGER NOT NULL,
  time_ns INTEGER NOT NULL, received_ns INTEGER NOT NULL, protocol INTEGER NOT NULL,
  metrics BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
INSERT OR IGNORE INTO meta VALUES('schema_version', 1);
)sql";

constexpr std::string_view kChunkSchema = R"sql(
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS rows(
  device_id INTEGER NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT NULL,
  received_ns INTEGER NOT NULL, tenant INTEGER NOT NULL, protocol INTEGER NOT NULL,
  metrics BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(shard INTEGER PRIMARY KEY, offset INTEGER NOT NULL);
-- One row per commit: rows first_rowid..last_rowid are sorted by (device_id, time_ns), so a
-- reader can binary-search each run of the open chunk instead of scanning it.
CREATE TABLE IF NOT EXISTS runs(first_rowid INTEGER PRIMARY KEY, last_rowid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER);
)sql";

constexpr std::string_view kCreateIndex =
    "CREATE INDEX IF NOT EXISTS rows_device_time ON rows(device_id, time_ns)";

std::string path_of(const std::string& dir, int64_t id) {
  return dir + "/" + chunk_file_name(id);
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

StoreWriter::StoreWriter(StoreWriterOptions options) : opt_(std::move(options)) {}

StoreWriter::~StoreWriter() {
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
  std::unique_ptr<StoreWriter> w(new StoreWriter(options));
  if (auto r = w->init(); !r) return r.error();
  if (w->opt_.background_seal)
    w->background_ = std::thread([p = w.get()] { p->background_loop(); });
  return w;
}

Result<void> StoreWriter::init() {
  auto cat = Db::open(opt_.dir + "/catalog.db", true);
  if (!cat) return cat.error();
  catalog_ = std::move(cat.value());
  if (auto r = catalog_.exec(kCatalogSchema); !r) return r;

  // Sealed chunks left unindexed by a crash or stop: finish them before anything reads the
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
    ins->bind(2, core::wall_ns());
    if (ins->step() != SQLITE_DONE) return catalog_.error("insert chunk");
  }

  // Cursors: the newest commit of each shard, wherever it lives (each chunk starts with a copy
  // of the cursors, so the open chunk normally holds them all).
  {
    auto st = catalog_.prepare("SELECT id FROM chunks ORDER BY id");
    if (!st) return st.error();
    while (st->step() == SQLITE_ROW) {
      std::string p = path_of(opt_.dir, st->i64(0));
      if (!file_exists(p)) continue;
      auto db = Db::open(p, false);
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
  insert_ = Stmt();
  put_run_ = Stmt();
  put_cursor_ = Stmt();
  put_devices_ = Stmt();
  chunk_ = Db();
  auto db = Db::open(path_of(opt_.dir, id), true);
  if (!db) return db.error();
  chunk_ = std::move(db.value());
  if (auto r = chunk_.exec(kChunkSchema); !r) return r;
  if (opt_.index_open_chunk) {
    if (auto r = chunk_.exec(kCreateIndex); !r) return r;
  }
  std::string pragmas =
      "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=4096; "
      "PRAGMA cache_size=-" +
      std::to_string(std::max<int64_t>(opt_.cache_bytes >> 10, 2048)) + ";";
  if (auto r = chunk_.exec(pragmas); !r) return r;
  auto ins = chunk_.prepare(
      "INSERT INTO rows(device_id, seq, time_ns, received_ns, tenant, protocol, metrics) "
      "VALUES(?, ?, ?, ?, ?, ?, ?)");
  if (!ins) return ins.error();
  insert_ = std::move(ins.value());
  auto pc = chunk_.prepare("INSERT OR REPLACE INTO cursors(shard, offset) VALUES(?, ?)");
  if (!pc) return pc.error();
  put_cursor_ = std::move(pc.value());
  auto pr = chunk_.prepare("INSERT INTO runs(first_rowid, last_rowid) VALUES(?, ?)");
  if (!pr) return pr.error();
  put_run_ = std::move(pr.value());
  auto pd = chunk_.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES('devices', ?)");
  if (!pd) return pd.error();
  put_devices_ = std::move(pd.value());
  open_id_ = id;
  open_reports_ = 0;
  open_min_time_ = std::numeric_limits<int64_t>::max();
  open_max_time_ = std::numeric_limits<int64_t>::min();
  auto created = catalog_.query_i64(
      "SELECT created_ns FROM chunks WHERE id = " + std::to_string(id), core::wall_ns());
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
  // Replay the open chunk in arrival (rowid) order.
  auto st = chunk_.prepare("SELECT device_id, seq, time_ns FROM rows ORDER BY rowid");
  if (!st) return st.error();
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) {
    int64_t t = st->i64(2);
    windows_.check(st->u64(0), static_cast<uint32_t>(st->i64(1)), t);
    ++open_reports_;
    open_min_time_ = std::min(open_min_time_, t);
    open_max_time_ = std::max(open_max_time_, t);
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
  // Duplicates are judged in arrival order; the survivors are then inserted sorted by
  // (device, time) so that the B-tree inserts of one batch walk the index in order (hot pages)
  // and one device's rows of a batch sit together on disk.
  order_.clear();
  for (uint32_t i = 0; i < reports.size(); ++i) {
    const core::Report& rep = reports[i];
    SeqVerdict v = windows_.check(rep.device_id, rep.seq, rep.device_time_ns);
    if (v == SeqVerdict::kDuplicate) {
      ++res.duplicates;
      continue;
    }
    if (v == SeqVerdict::kReboot) ++res.reboots;
    order_.push_back(i);
  }
  {
    std::stable_sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) {
      const core::Report& x = reports[a];
      const core::Report& y = reports[b];
      return x.device_id != y.device_id ? x.device_id < y.device_id
                                        : x.device_time_ns < y.device_time_ns;
    });
  }
  for (uint32_t i : order_) {
    const core::Report& rep = reports[i];
    insert_.reset();
    insert_.bind_u64(1, rep.device_id);
    insert_.bind(2, rep.seq);
    insert_.bind(3, rep.device_time_ns);
    insert_.bind(4, rep.received_ns);
    insert_.bind(5, rep.tenant);
    insert_.bind(6, static_cast<int64_t>(rep.protocol));
    insert_.bind_blob(7, rep.raw_metrics);
    if (insert_.step() != SQLITE_DONE) {
      auto e = chunk_.error("insert");
      (void)chunk_.exec("ROLLBACK");
      return e;
    }
    ++res.written;
    open_min_time_ = std::min(open_min_time_, rep.device_time_ns);
    open_max_time_ = std::max(open_max_time_, rep.device_time_ns);
  }
  if (res.written > 0) {
    int64_t last = sqlite3_last_insert_rowid(chunk_.get());
    put_run_.reset();
    put_run_.bind(1, last - static_cast<int64_t>(res.written) + 1);
    put_run_.bind(2, last);
    if (put_run_.step() != SQLITE_DONE) {
      auto e = chunk_.error("write run");
      (void)chunk_.exec("ROLLBACK");
      return e;
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
             core::wall_ns() - open_created_ns_ >=
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
    cv_.notify_all();
    return {};
  }
  if (auto e = index_chunk(open_id_ - 1); !e) return e;
  return apply_retention();
}

Result<void> StoreWriter::seal_open_chunk() {
  // Make the chunk's last commit durable before the next chunk's commits can be: a later
  // durable cursor must never point past rows that are only in the page cache.
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
  up->bind(4, core::wall_ns());
  up->bind(5, sealed_id);
  if (up->step() != SQLITE_DONE) return catalog_.error("seal chunk");
  auto ins = catalog_.prepare("INSERT INTO chunks(id, state, created_ns) VALUES(?, 0, ?)");
  if (!ins) return ins.error();
  ins->bind(1, next_id);
  ins->bind(2, core::wall_ns());
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
  // Ingest (shards, group commit) comes first: the sink only lags under overload, and its lag
  // is bounded by the log's backlog limit.
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
    lock.lock();
    busy_ = false;
    cv_.notify_all();
  }
}

Result<void> StoreWriter::index_chunk(int64_t id) {
  int64_t t0 = core::mono_ns();
  std::string path = path_of(opt_.dir, id);
  // Own connections: this may run on the background thread while the writer commits.
  auto cat = Db::open(opt_.dir + "/catalog.db", false);
  if (!cat) return cat.error();
  if (file_exists(path)) {
    auto db = Db::open(path, false);
    if (!db) return db.error();
    // Sorting once is far cheaper than keeping the index in order on every insert.
    // The per-device newest rows are computed here, outside the catalog's write lock, which
    // the writer needs when it seals the next chunk.
    if (auto r = db->exec("PRAGMA cache_size=-262144; " + std::string(kCreateIndex) +
                          "; DROP TABLE IF EXISTS chunk_latest; DROP TABLE IF EXISTS runs;"
                          "CREATE TABLE chunk_latest AS SELECT device_id, seq, tenant, "
                          "max(time_ns) AS time_ns, received_ns, protocol, metrics "
                          "FROM rows GROUP BY device_id ORDER BY device_id;"
                          "PRAGMA wal_checkpoint(TRUNCATE)");
        !r) {
      return r;
    }
    if (auto r = cat->exec("ATTACH DATABASE '" + path + "' AS c"); !r) return r;
    // The newest report of each device in this chunk, folded into `latest` in device order.
    auto r = cat->exec(
        "BEGIN IMMEDIATE;"
        "INSERT INTO latest(device_id, seq, tenant, time_ns, received_ns, protocol, metrics) "
        "SELECT device_id, seq, tenant, time_ns, received_ns, protocol, metrics "
        "FROM c.chunk_latest WHERE true "
        "ON CONFLICT(device_id) DO UPDATE SET seq = excluded.seq, tenant = excluded.tenant, "
        "time_ns = excluded.time_ns, received_ns = excluded.received_ns, "
        "protocol = excluded.protocol, metrics = excluded.metrics "
        "WHERE excluded.time_ns > latest.time_ns OR "
        "(excluded.time_ns = latest.time_ns AND excluded.seq >= latest.seq);"
        "UPDATE chunks SET state = 2 WHERE id = " +
        std::to_string(id) + "; COMMIT; DETACH DATABASE c;");
    if (!r) {
      (void)cat->exec("ROLLBACK; DETACH DATABASE c;");
      return r;
    }
  } else {
    // The file is gone (deleted by hand): forget the chunk.
    if (auto r = cat->exec("DELETE FROM chunks WHERE id = " + std::to_string(id)); !r) return r;
  }
  stats_.chunks_indexed.fetch_add(1, std::memory_order_relaxed);
  stats_.index_ns_total.fetch_add(static_cast<uint64_t>(core::mono_ns() - t0),
                                  std::memory_order_relaxed);
  return {};
}

Result<void> StoreWriter::apply_retention() {
  if (opt_.retention.count() <= 0) return {};
  int64_t cutoff = core::wall_ns() -
                   std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.retention).count();
  auto cat = Db::open(opt_.dir + "/catalog.db", false);
  if (!cat) return cat.error();
  std::vector<int64_t> ids;
  {
    auto st = cat->prepare("SELECT id FROM chunks WHERE state = 2 AND sealed_ns < ?");
    if (!st) return st.error();
    st->bind(1, cutoff);
    while (st->step() == SQLITE_ROW) ids.push_back(st->i64(0));
  }
  for (int64_t id : ids) {
    // Catalog first: a reader never looks for a file the catalog still lists as gone.
    if (auto r = cat->exec("DELETE FROM chunks WHERE id = " + std::to_string(id)); !r) return r;
    std::string p = path_of(opt_.dir, id);
    for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((p + suffix).c_str());
    stats_.chunks_deleted.fetch_add(1, std::memory_order_relaxed);
  }
  return {};
}

}  // namespace tianhe::sinks::store
