// Sealing's background work: the runs of a sealed chunk merged into one sorted file, its device
// index and the catalog's latest table (StoreWriter::index_chunk and what it needs).
#include <fcntl.h>
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
#include "sinks/store/store_writer.h"

namespace tianhe::sinks::store {

using files::file_exists;
using files::fsync_file;
using files::kChunkSchema;
using files::merged_path_of;
using files::path_of;
using files::unlink_db;

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

}  // namespace tianhe::sinks::store
