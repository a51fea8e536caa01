#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "core/record_format.h"
#include "sinks/store/sqlite_db.h"
#include "sinks/store/store.h"
#include "sinks/store/store_block.h"

namespace tianhe::sinks::store {
namespace {

constexpr std::string_view kColumns =
    "device_id, seq, tenant, time_ns, received_ns, protocol, metrics";

StoredReport row_of(const Stmt& st) {
  StoredReport r;
  r.device_id = st.u64(0);
  r.seq = static_cast<uint32_t>(st.i64(1));
  r.tenant = static_cast<uint32_t>(st.i64(2));
  r.device_time_ns = st.i64(3);
  r.received_ns = st.i64(4);
  r.protocol = static_cast<core::Protocol>(st.i64(5));
  auto b = st.blob(6);
  r.raw_metrics.assign(b.begin(), b.end());
  return r;
}

/// Newer by device time, then seq: for StoredReport and PackedReport alike.
template <typename R>
bool newer(const R& a, const R& b) {
  return a.device_time_ns != b.device_time_ns ? a.device_time_ns > b.device_time_ns : a.seq > b.seq;
}

/// Device ids are stored as the int64 with the same bits; unsigned order (what callers page
/// by) is the signed ranges [0, INT64_MAX] then [INT64_MIN, -1]. The ranges above `after`.
std::vector<std::pair<int64_t, int64_t>> ranges_after(uint64_t after) {
  std::vector<std::pair<int64_t, int64_t>> out;
  constexpr uint64_t kHalf = uint64_t{1} << 63;
  if (after == UINT64_MAX) return out;
  uint64_t first = after + 1;
  if (first < kHalf) out.emplace_back(static_cast<int64_t>(first), INT64_MAX);
  uint64_t second = std::max(first, kHalf);
  out.emplace_back(static_cast<int64_t>(second), int64_t{-1});
  return out;
}

/// Calls `fn(block, reports)` for every block of `run` that may hold `device` (at most a few:
/// the run is sorted by device, and one device's reports may straddle blocks), skipping blocks
/// of that device alone whose time range misses [from_ns, to_ns]. `fn` returns false to stop.
template <typename Fn>
Result<void> for_device_blocks(BlockSearch& bs, const BlockRun& run, uint64_t device,
                               int64_t from_ns, int64_t to_ns, std::vector<PackedReport>& reps,
                               Fn&& fn) {
  for (int64_t id = bs.lower_bound(run, device); id <= run.last_block; ++id) {
    BlockInfo bi;
    if (!bs.info(run, id, bi) || bi.first_device > device) break;
    if (bi.first_device == device && bi.last_device == device &&
        (bi.max_time_ns < from_ns || bi.min_time_ns > to_ns)) {
      continue;
    }
    if (auto e = bs.decode(id, reps); !e) return e;
    if (!fn(bi, reps)) break;
  }
  return {};
}

}  // namespace

StoreReader::StoreReader(std::string dir) : dir_(std::move(dir)) {}
StoreReader::~StoreReader() = default;

Result<std::unique_ptr<StoreReader>> StoreReader::open(const std::string& dir) {
  std::string cat = dir + "/catalog.db";
  struct stat st {};
  if (::stat(cat.c_str(), &st) != 0) {
    return make_error(dir + ": no store here: start `tianhe serve` first or pass --data-dir");
  }
  std::unique_ptr<StoreReader> r(new StoreReader(dir));
  auto db = Db::open(cat, false);
  if (!db) return db.error();
  r->catalog_ = std::make_unique<Db>(std::move(db.value()));
  if (auto e = r->catalog_->exec("PRAGMA query_only=1"); !e) return e.error();
  return r;
}

Result<std::vector<StoreReader::Chunk>> StoreReader::list_chunks() {
  auto st = catalog_->prepare(
      "SELECT id, state, min_time_ns, max_time_ns, reports FROM chunks ORDER BY id");
  if (!st) return st.error();
  std::vector<Chunk> out;
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) {
    out.push_back(
        Chunk{st->i64(0), static_cast<ChunkState>(st->i64(1)), st->i64(2), st->i64(3), st->i64(4)});
  }
  if (rc != SQLITE_DONE) return catalog_->error("list chunks");
  // Forget connections to files the catalog no longer names (retention, merged chunks).
  auto file_of = [](const Chunk& c) {
    return c.state == ChunkState::kIndexed ? merged_chunk_file_name(c.id) : chunk_file_name(c.id);
  };
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    bool listed = std::any_of(out.begin(), out.end(),
                              [&](const Chunk& c) { return file_of(c) == it->first; });
    it = listed ? std::next(it) : chunks_.erase(it);
  }
  return out;
}

Result<StoreReader::ChunkFile*> StoreReader::chunk_file(const Chunk& c) {
  const bool merged = c.state == ChunkState::kIndexed;
  std::string name = merged ? merged_chunk_file_name(c.id) : chunk_file_name(c.id);
  auto it = chunks_.find(name);
  if (it != chunks_.end()) return &it->second;
  std::string path = dir_ + "/" + name;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return static_cast<ChunkFile*>(nullptr);  // not created yet
  auto db = Db::open(path, false);
  if (!db) return db.error();
  if (auto e = db->exec("PRAGMA query_only=1"); !e) return e.error();
  ChunkFile f{std::make_unique<Db>(std::move(db.value())),
              merged ? nullptr : std::make_unique<RunCache>()};
  return &chunks_.emplace(std::move(name), std::move(f)).first->second;
}

bool StoreReader::may_hold(const Chunk& c, int64_t from_ns, int64_t to_ns) {
  return c.state == ChunkState::kOpen || (c.max_time_ns >= from_ns && c.min_time_ns <= to_ns);
}

Result<std::optional<BlockSearch>> StoreReader::search_chunk(const Chunk& c) {
  auto f = chunk_file(c);
  if (!f) return f.error();
  if (f.value() == nullptr) return std::optional<BlockSearch>();
  auto bs = BlockSearch::open(*f.value()->db, f.value()->runs.get());
  if (!bs) return bs.error();
  return std::optional<BlockSearch>(std::move(bs.value()));
}

Result<void> StoreReader::for_each_chunk_in_range(
    int64_t from_ns, int64_t to_ns, const std::function<Result<void>(BlockSearch&)>& fn) {
  auto chunks = list_chunks();
  if (!chunks) return chunks.error();
  for (const Chunk& c : chunks.value()) {
    if (!may_hold(c, from_ns, to_ns)) continue;
    auto bs = search_chunk(c);
    if (!bs) return bs.error();
    if (!bs->has_value()) continue;
    if (auto e = fn(**bs); !e) return e;
  }
  return {};
}

Result<std::vector<StoredReport>> StoreReader::history(const HistoryQuery& q) {
  std::vector<StoredReport> out;
  if (q.limit == 0 || q.from_ns > q.to_ns) return out;
  auto chunks = list_chunks();
  if (!chunks) return chunks.error();
  // Visit the open chunks first (their time range is not known until sealed), then the sealed
  // ones from the end the query reads from, so that once `limit` reports are found every chunk
  // wholly behind the limit-th of them is skipped: the newest 10 of a device's 100M-report
  // history read the newest chunks alone.
  std::vector<Chunk> order;
  for (const Chunk& c : chunks.value()) {
    if (may_hold(c, q.from_ns, q.to_ns)) order.push_back(c);
  }
  const auto open_end = std::stable_partition(
      order.begin(), order.end(), [](const Chunk& c) { return c.state == ChunkState::kOpen; });
  std::stable_sort(open_end, order.end(), [&](const Chunk& a, const Chunk& b) {
    return q.newest_first ? a.max_time_ns > b.max_time_ns : a.min_time_ns < b.min_time_ns;
  });
  auto ahead = [&](const StoredReport& a, const StoredReport& b) {
    return q.newest_first ? newer(a, b) : newer(b, a);
  };
  std::vector<PackedReport> reps;
  std::vector<StoredReport> found;
  for (const Chunk& c : order) {
    if (c.state != ChunkState::kOpen && out.size() >= q.limit) {
      // `out` holds the best `limit` so far, best first: a chunk strictly behind its last one
      // has nothing to add (equal times may differ by seq, so they are read).
      const int64_t edge = out.back().device_time_ns;
      if (q.newest_first ? c.max_time_ns < edge : c.min_time_ns > edge) continue;
    }
    auto found_bs = search_chunk(c);
    if (!found_bs) return found_bs.error();
    if (!found_bs->has_value()) continue;
    BlockSearch& bs = **found_bs;
    for (const BlockRun& run : bs.runs()) {
      if (!bs.may_hold_device(run, q.device_id)) continue;
      // A run holds the device's reports in time order: the first (or last) `limit` in range.
      found.clear();
      auto e =
          for_device_blocks(bs, run, q.device_id, q.from_ns, q.to_ns, reps,
                            [&](const BlockInfo&, const std::vector<PackedReport>& rs) {
                              for (const PackedReport& p : rs) {
                                if (p.device_id != q.device_id || p.device_time_ns < q.from_ns ||
                                    p.device_time_ns > q.to_ns) {
                                  continue;
                                }
                                found.push_back(to_stored(p));
                                if (!q.newest_first && found.size() >= q.limit) return false;
                              }
                              return true;
                            });
      if (!e) return e.error();
      size_t skip = found.size() > q.limit ? found.size() - q.limit : 0;
      for (size_t i = skip; i < found.size(); ++i) out.push_back(std::move(found[i]));
    }
    std::stable_sort(out.begin(), out.end(), ahead);
    if (out.size() > q.limit) out.resize(q.limit);
  }
  return out;
}

Result<std::optional<StoredReport>> StoreReader::latest(uint64_t device_id) {
  // One read transaction on the catalog: the chunk states and the latest table agree.
  if (auto e = catalog_->exec("BEGIN"); !e) return e.error();
  auto chunks = list_chunks();
  std::optional<StoredReport> best;
  {
    auto st =
        catalog_->prepare("SELECT " + std::string(kColumns) + " FROM latest WHERE device_id = ?");
    if (!st) {
      (void)catalog_->exec("COMMIT");
      return st.error();
    }
    st->bind_u64(1, device_id);
    if (st->step() == SQLITE_ROW) best = row_of(st.value());
  }
  (void)catalog_->exec("COMMIT");
  if (!chunks) return chunks.error();
  std::vector<PackedReport> reps;
  for (const Chunk& c : chunks.value()) {
    if (c.state == ChunkState::kIndexed) continue;
    auto found = search_chunk(c);
    if (!found) return found.error();
    if (!found->has_value()) continue;
    BlockSearch& bs = **found;
    for (const BlockRun& run : bs.runs()) {
      if (!bs.may_hold_device(run, device_id)) continue;
      auto e = for_device_blocks(bs, run, device_id, INT64_MIN, INT64_MAX, reps,
                                 [&](const BlockInfo&, const std::vector<PackedReport>& rs) {
                                   for (const PackedReport& p : rs) {
                                     if (p.device_id != device_id) continue;
                                     StoredReport r = to_stored(p);
                                     if (!best || newer(r, *best)) best = std::move(r);
                                   }
                                   return true;
                                 });
      if (!e) return e.error();
    }
  }
  return best;
}

Result<std::vector<StoredReport>> StoreReader::latest_all(uint64_t after_device_id,
                                                          uint32_t limit) {
  std::vector<StoredReport> merged;
  if (limit == 0) return merged;
  auto ranges = ranges_after(after_device_id);
  // Each source yields its first `limit` devices above `after`; the first `limit` of the union
  // are among them.
  auto collect = [&](Db& db, const std::string& sql) -> Result<void> {
    uint32_t got = 0;
    for (auto [lo, hi] : ranges) {
      if (got >= limit) break;
      auto st = db.prepare(sql);
      if (!st) return st.error();
      st->bind(1, lo);
      st->bind(2, hi);
      st->bind(3, limit - got);
      int rc;
      while ((rc = st->step()) == SQLITE_ROW) {
        merged.push_back(row_of(st.value()));
        ++got;
      }
      if (rc != SQLITE_DONE) return db.error("latest");
    }
    return {};
  };
  if (auto e = catalog_->exec("BEGIN"); !e) return e.error();
  auto chunks = list_chunks();
  auto r = collect(*catalog_, "SELECT " + std::string(kColumns) +
                                  " FROM latest WHERE device_id BETWEEN ? AND ? "
                                  "ORDER BY device_id LIMIT ?");
  (void)catalog_->exec("COMMIT");
  if (!r) return r.error();
  if (!chunks) return chunks.error();
  // No device past the limit-th smallest distinct device found so far can be on the page (the
  // limit-th of a subset is at or above the limit-th of the whole): `upto` starts at the
  // latest table's page end and falls as the runs' reports come in, so the blocks and reports
  // beyond the page are skipped however wide a run's blocks are.
  uint64_t upto = merged.size() == limit ? merged.back().device_id : UINT64_MAX;
  std::set<uint64_t> smallest;  // the up to `limit` smallest distinct devices found
  auto found_device = [&](uint64_t d) {
    if (smallest.size() == limit && d >= *smallest.rbegin()) return;
    if (!smallest.insert(d).second || smallest.size() <= limit) {
      if (smallest.size() == limit) upto = std::min(upto, *smallest.rbegin());
      return;
    }
    smallest.erase(std::prev(smallest.end()));
    upto = std::min(upto, *smallest.rbegin());
  };
  if (after_device_id == UINT64_MAX) chunks->clear();
  // The runs of the unmerged chunks are read together in device order, block by block, always
  // the block that starts lowest next: every device below that start has all its reports in
  // hand. Reading stops once that start passes `upto`, so a page decodes about the blocks that
  // overlap it in each run, however many runs the open chunk holds.
  std::vector<BlockSearch> searches;
  searches.reserve(chunks->size());
  for (const Chunk& c : chunks.value()) {
    if (c.state == ChunkState::kIndexed) continue;
    auto found = search_chunk(c);
    if (!found) return found.error();
    if (found->has_value()) searches.push_back(std::move(**found));
  }
  struct Cursor {
    BlockSearch* bs;
    const BlockRun* run;
    int64_t id, last;
    BlockInfo next;  ///< the directory entry of block `id`
  };
  std::vector<Cursor> cursors;
  auto advance = [&](Cursor& c) {
    for (; c.id <= c.last; ++c.id) {
      if (!c.bs->info(*c.run, c.id, c.next) || c.next.first_device > upto) break;
      if (c.next.last_device > after_device_id) return true;
    }
    c.id = c.last + 1;
    return false;
  };
  for (BlockSearch& bs : searches) {
    for (const BlockRun& run : bs.runs()) {
      Cursor c{&bs, &run, bs.lower_bound(run, after_device_id + 1), run.last_block, {}};
      if (advance(c)) cursors.push_back(c);
    }
  }
  // One candidate per device, the newest seen so far, its metric bytes in one arena; only the
  // winners become StoredReports. A page of 10,000 devices may look at hundreds of thousands of
  // reports (a device is in about 1 % of ~1,000 runs): keeping them all and sorting them cost
  // a page tens of MB of fresh memory.
  struct Candidate {
    PackedReport r;  ///< `metrics` empty until the end: the arena may move meanwhile
    size_t metrics_at, metrics_len;
  };
  std::vector<Candidate> cands;
  std::unordered_map<uint64_t, size_t> slot;  // device -> its candidate in cands
  slot.reserve(std::min<size_t>(limit, size_t{1} << 16) * 2);
  std::vector<uint8_t> arena;
  auto add = [&](const PackedReport& p) {
    auto [it, fresh] = slot.try_emplace(p.device_id, cands.size());
    if (fresh) {
      found_device(p.device_id);
      cands.push_back({});
    } else if (!newer(p, cands[it->second].r)) {
      return;
    }
    cands[it->second] = {p, arena.size(), p.metrics.size()};
    cands[it->second].r.metrics = {};
    arena.insert(arena.end(), p.metrics.begin(), p.metrics.end());
  };
  for (const StoredReport& m : merged) {
    add(PackedReport{m.device_id, m.seq, m.tenant, m.device_time_ns, m.received_ns,
                     static_cast<uint8_t>(m.protocol), m.raw_metrics});
  }
  // Once the lowest block left starts past `upto`, every device up to it is complete, and there
  // are `limit` of them (or the runs are exhausted): the page is in hand.
  std::vector<PackedReport> reps;
  for (;;) {
    auto lowest = std::min_element(
        cursors.begin(), cursors.end(),
        [](const Cursor& a, const Cursor& b) { return a.next.first_device < b.next.first_device; });
    if (lowest == cursors.end() || lowest->next.first_device > upto) break;
    if (auto e = lowest->bs->decode(lowest->id, reps); !e) return e.error();
    for (const PackedReport& p : reps) {
      if (p.device_id <= after_device_id || p.device_id > upto) continue;
      add(p);
    }
    ++lowest->id;
    if (!advance(*lowest)) cursors.erase(lowest);
  }
  // Unsigned device order; the first `limit` devices are the page.
  std::sort(cands.begin(), cands.end(),
            [](const Candidate& x, const Candidate& y) { return x.r.device_id < y.r.device_id; });
  std::vector<StoredReport> out;
  for (Candidate& c : cands) {
    if (out.size() == limit) break;
    c.r.metrics = {arena.data() + c.metrics_at, c.metrics_len};
    out.push_back(to_stored(c.r));
  }
  return out;
}

Result<StoreCounts> StoreReader::counts() {
  if (auto e = catalog_->exec("BEGIN"); !e) return e.error();
  auto chunks = list_chunks();
  auto latest_devices = catalog_->query_i64("SELECT count(*) FROM latest", 0);
  (void)catalog_->exec("COMMIT");
  if (!chunks) return chunks.error();
  if (!latest_devices) return latest_devices.error();
  StoreCounts c;
  c.chunks = chunks->size();
  c.devices = static_cast<uint64_t>(latest_devices.value());
  for (const Chunk& ch : chunks.value()) {
    if (ch.state != ChunkState::kOpen) {
      c.reports += static_cast<uint64_t>(ch.reports);
      continue;
    }
    auto f = chunk_file(ch);
    if (!f) return f.error();
    if (f.value() == nullptr) continue;
    Db& db = *f.value()->db;
    // Every commit records its report count with its run.
    auto n = db.query_i64("SELECT sum(reports) FROM runs", 0);
    if (!n) return n.error();
    c.reports += static_cast<uint64_t>(n.value());
    // The writer keeps the number of devices it knows (latest table and open chunk) here.
    auto d = db.query_i64("SELECT value FROM meta WHERE key = 'devices'", -1);
    if (!d) return d.error();
    if (d.value() >= 0) c.devices = std::max(c.devices, static_cast<uint64_t>(d.value()));
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    std::error_code ec2;
    if (e.is_regular_file(ec2)) c.bytes += e.file_size(ec2);
  }
  return c;
}

Result<uint64_t> StoreReader::count_device(uint64_t device_id, int64_t from_ns, int64_t to_ns) {
  uint64_t total = 0;
  if (from_ns > to_ns) return total;
  std::vector<PackedReport> reps;
  auto searched = for_each_chunk_in_range(from_ns, to_ns, [&](BlockSearch& bs) -> Result<void> {
    for (const BlockRun& run : bs.runs()) {
      if (!bs.may_hold_device(run, device_id)) continue;
      for (int64_t id = bs.lower_bound(run, device_id); id <= run.last_block; ++id) {
        BlockInfo bi;
        if (!bs.info(run, id, bi) || bi.first_device > device_id) break;
        bool only = bi.first_device == device_id && bi.last_device == device_id;
        if (only && (bi.max_time_ns < from_ns || bi.min_time_ns > to_ns)) continue;
        if (only && bi.min_time_ns >= from_ns && bi.max_time_ns <= to_ns) {
          total += bi.count;  // the whole block counts: no need to decode it
          continue;
        }
        if (auto e = bs.decode(id, reps); !e) return e;
        for (const PackedReport& p : reps) {
          if (p.device_id == device_id && p.device_time_ns >= from_ns && p.device_time_ns <= to_ns)
            ++total;
        }
      }
    }
    return {};
  });
  if (!searched) return searched.error();
  return total;
}

}  // namespace tianhe::sinks::store
