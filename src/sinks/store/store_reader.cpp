#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "core/report_codec.h"
#include "sinks/store/sqlite_db.h"
#include "sinks/store/store.h"

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

bool newer(const StoredReport& a, const StoredReport& b) {
  return a.device_time_ns != b.device_time_ns ? a.device_time_ns > b.device_time_ns : a.seq > b.seq;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
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

/// Searches a chunk without the (device_id, time_ns) index through its runs: each commit
/// inserted its rows sorted by (device_id as unsigned, time_ns) with consecutive rowids.
class RunSearch {
 public:
  /// Prepares the probes; fails when the chunk has no runs table.
  static Result<RunSearch> open(Db& db) {
    RunSearch rs;
    auto runs = db.prepare("SELECT first_rowid, last_rowid FROM runs ORDER BY first_rowid");
    if (!runs) return runs.error();
    int rc;
    while ((rc = runs->step()) == SQLITE_ROW) rs.runs_.emplace_back(runs->i64(0), runs->i64(1));
    if (rc != SQLITE_DONE) return db.error("read runs");
    auto probe = db.prepare("SELECT device_id, time_ns FROM rows WHERE rowid = ?");
    if (!probe) return probe.error();
    rs.probe_ = std::move(probe.value());
    return rs;
  }
  /// The run ranges [first, last].
  const std::vector<std::pair<int64_t, int64_t>>& runs() const { return runs_; }
  /// First rowid in [lo, hi] whose key is greater than (device, t) (or equal when `or_equal`);
  /// hi + 1 when none.
  int64_t bound(int64_t lo, int64_t hi, uint64_t device, int64_t t, bool or_equal) {
    int64_t a = lo, b = hi + 1;
    while (a < b) {
      int64_t mid = a + (b - a) / 2;
      probe_.reset();
      probe_.bind(1, mid);
      bool before = true;  // key(mid) sorts before the bound
      if (probe_.step() == SQLITE_ROW) {
        uint64_t d = probe_.u64(0);
        int64_t tm = probe_.i64(1);
        before = d != device ? d < device : (or_equal ? tm < t : tm <= t);
      }
      if (before)
        a = mid + 1;
      else
        b = mid;
    }
    return a;
  }

 private:
  std::vector<std::pair<int64_t, int64_t>> runs_;
  Stmt probe_;
};

Result<bool> has_index(Db& db) {
  auto n = db.query_i64(
      "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'rows_device_time'", 0);
  if (!n) return n.error();
  return n.value() > 0;
}

/// Rows [lo, hi) of a chunk, ascending or descending, at most `limit`.
Result<void> fetch_range(Db& db, int64_t lo, int64_t hi, bool desc, uint32_t limit,
                         std::vector<StoredReport>& out) {
  if (lo >= hi) return {};
  auto st = db.prepare("SELECT " + std::string(kColumns) +
                       " FROM rows WHERE rowid >= ? AND rowid < ? ORDER BY rowid " +
                       (desc ? "DESC" : "ASC") + " LIMIT ?");
  if (!st) return st.error();
  st->bind(1, lo);
  st->bind(2, hi);
  st->bind(3, limit);
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) out.push_back(row_of(st.value()));
  if (rc != SQLITE_DONE) return db.error("fetch rows");
  return {};
}

}  // namespace

std::string metrics_json(std::span<const uint8_t> raw_metrics) {
  core::ReportBatch batch(1, core::kMaxMetricsPerReport);
  core::Report* r = batch.add_report();
  if (core::decode_metrics(raw_metrics, batch, *r) != core::CodecStatus::kOk) {
    return "{\"#malformed\":true}";
  }
  std::string out = "{";
  bool first = true;
  for (const core::Metric& m : batch.metrics(*r)) {
    if (!first) out += ',';
    first = false;
    if (m.name.empty()) {
      // Appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on "#" + to_string().
      char id[16];
      int len = std::snprintf(id, sizeof id, "#%u", m.id);
      append_json_string(out, std::string_view(id, static_cast<size_t>(len)));
    } else {
      append_json_string(out, m.name);
    }
    out += ':';
    switch (m.value.type) {
      case core::ValueType::kDouble: {
        if (!std::isfinite(m.value.f64)) {
          out += "null";
          break;
        }
        char buf[32];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, m.value.f64);
        out.append(buf, ec == std::errc() ? end : buf);
        break;
      }
      case core::ValueType::kInt64: out += std::to_string(m.value.i64); break;
      case core::ValueType::kBool: out += m.value.b ? "true" : "false"; break;
      case core::ValueType::kString: append_json_string(out, m.value.str); break;
    }
  }
  out += '}';
  return out;
}

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
  // Forget connections to chunks deleted by retention.
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    bool listed =
        std::any_of(out.begin(), out.end(), [&](const Chunk& c) { return c.id == it->first; });
    it = listed ? std::next(it) : chunks_.erase(it);
  }
  return out;
}

Result<Db*> StoreReader::chunk_db(int64_t id) {
  auto it = chunks_.find(id);
  if (it != chunks_.end()) return it->second.get();
  std::string path = dir_ + "/" + chunk_file_name(id);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return static_cast<Db*>(nullptr);  // not created yet
  auto db = Db::open(path, false);
  if (!db) return db.error();
  if (auto e = db->exec("PRAGMA query_only=1"); !e) return e.error();
  auto p = std::make_unique<Db>(std::move(db.value()));
  Db* raw = p.get();
  chunks_.emplace(id, std::move(p));
  return raw;
}

Result<std::vector<StoredReport>> StoreReader::history(const HistoryQuery& q) {
  auto chunks = list_chunks();
  if (!chunks) return chunks.error();
  std::vector<StoredReport> out;
  if (q.limit == 0 || q.from_ns > q.to_ns) return out;
  std::string sql = "SELECT " + std::string(kColumns) +
                    " FROM rows WHERE device_id = ? AND time_ns BETWEEN ? AND ? ORDER BY time_ns " +
                    (q.newest_first ? "DESC" : "ASC") + " LIMIT ?";
  for (const Chunk& c : chunks.value()) {
    if (c.state != ChunkState::kOpen && (c.max_time_ns < q.from_ns || c.min_time_ns > q.to_ns)) {
      continue;
    }
    auto db = chunk_db(c.id);
    if (!db) return db.error();
    if (db.value() == nullptr) continue;
    auto indexed = has_index(*db.value());
    if (!indexed) return indexed.error();
    if (!indexed.value()) {
      auto rs = RunSearch::open(*db.value());
      if (!rs) return rs.error();
      for (auto [first, last] : rs->runs()) {
        int64_t lo = rs->bound(first, last, q.device_id, q.from_ns, true);
        int64_t hi = rs->bound(lo, last, q.device_id, q.to_ns, false);
        if (auto e = fetch_range(*db.value(), lo, hi, q.newest_first, q.limit, out); !e) {
          return e.error();
        }
      }
      continue;
    }
    auto st = db.value()->prepare(sql);
    if (!st) return st.error();
    st->bind_u64(1, q.device_id);
    st->bind(2, q.from_ns);
    st->bind(3, q.to_ns);
    st->bind(4, q.limit);
    int rc;
    while ((rc = st->step()) == SQLITE_ROW) out.push_back(row_of(st.value()));
    if (rc != SQLITE_DONE) return db.value()->error("history");
  }
  auto order = [&](const StoredReport& a, const StoredReport& b) {
    return q.newest_first ? newer(a, b) : newer(b, a);
  };
  std::stable_sort(out.begin(), out.end(), order);
  if (out.size() > q.limit) out.resize(q.limit);
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
  for (const Chunk& c : chunks.value()) {
    if (c.state == ChunkState::kIndexed) continue;
    auto db = chunk_db(c.id);
    if (!db) return db.error();
    if (db.value() == nullptr) continue;
    auto indexed = has_index(*db.value());
    if (!indexed) return indexed.error();
    if (!indexed.value()) {
      auto rs = RunSearch::open(*db.value());
      if (!rs) return rs.error();
      std::vector<StoredReport> found;
      for (auto [first, last] : rs->runs()) {
        int64_t hi = rs->bound(first, last, device_id, INT64_MAX, false);
        if (auto e = fetch_range(*db.value(), hi - 1, hi, false, 1, found); !e) return e.error();
        if (!found.empty() && found.back().device_id != device_id) found.pop_back();
      }
      for (auto& r : found) {
        if (!best || newer(r, *best)) best = std::move(r);
      }
      continue;
    }
    auto st = db.value()->prepare("SELECT " + std::string(kColumns) +
                                  " FROM rows WHERE device_id = ? ORDER BY time_ns DESC LIMIT 1");
    if (!st) return st.error();
    st->bind_u64(1, device_id);
    if (st->step() == SQLITE_ROW) {
      StoredReport r = row_of(st.value());
      if (!best || newer(r, *best)) best = std::move(r);
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
  // Devices past the latest table's page cannot be among the first `limit`.
  const uint64_t upto = merged.size() == limit ? merged.back().device_id : UINT64_MAX;
  for (const Chunk& c : chunks.value()) {
    if (c.state == ChunkState::kIndexed) continue;
    auto db = chunk_db(c.id);
    if (!db) return db.error();
    if (db.value() == nullptr) continue;
    auto indexed = has_index(*db.value());
    if (!indexed) return indexed.error();
    if (!indexed.value()) {
      // Each run is sorted by device: read its rows from the first device above `after` up to
      // `upto`, stopping after `limit` distinct devices. Paging through every device reads each
      // row of the chunk about once.
      auto rs = RunSearch::open(*db.value());
      if (!rs) return rs.error();
      if (after_device_id == UINT64_MAX) break;
      for (auto [first, last] : rs->runs()) {
        int64_t lo = rs->bound(first, last, after_device_id + 1, INT64_MIN, true);
        int64_t hi = upto == UINT64_MAX ? last + 1 : rs->bound(lo, last, upto, INT64_MAX, false);
        if (lo >= hi) continue;
        auto st = db.value()->prepare("SELECT " + std::string(kColumns) +
                                      " FROM rows WHERE rowid >= ? AND rowid < ? ORDER BY rowid");
        if (!st) return st.error();
        st->bind(1, lo);
        st->bind(2, hi);
        uint32_t distinct = 0;
        uint64_t prev = 0;
        int rc;
        while ((rc = st->step()) == SQLITE_ROW) {
          uint64_t d = st->u64(0);
          if (distinct == 0 || d != prev) {
            if (++distinct > limit) break;
            prev = d;
          }
          merged.push_back(row_of(st.value()));
        }
        if (rc != SQLITE_DONE && rc != SQLITE_ROW) return db.value()->error("latest_all");
      }
      continue;
    }
    auto e = collect(*db.value(),
                     "SELECT device_id, seq, tenant, max(time_ns), received_ns, protocol, metrics "
                     "FROM rows WHERE device_id BETWEEN ? AND ? GROUP BY device_id "
                     "ORDER BY device_id LIMIT ?");
    if (!e) return e.error();
  }
  // Unsigned device order, newest first within a device; keep one per device.
  std::sort(merged.begin(), merged.end(), [](const StoredReport& a, const StoredReport& b) {
    return a.device_id != b.device_id ? a.device_id < b.device_id : newer(a, b);
  });
  std::vector<StoredReport> out;
  for (auto& m : merged) {
    if (!out.empty() && out.back().device_id == m.device_id) continue;
    if (out.size() == limit) break;
    out.push_back(std::move(m));
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
    auto db = chunk_db(ch.id);
    if (!db) return db.error();
    if (db.value() == nullptr) continue;
    // Rows are only appended, so the largest rowid is the row count.
    auto n = db.value()->query_i64("SELECT max(rowid) FROM rows", 0);
    if (!n) return n.error();
    c.reports += static_cast<uint64_t>(n.value());
    // The writer keeps the number of devices it knows (latest table and open chunk) here.
    auto d = db.value()->query_i64("SELECT value FROM meta WHERE key = 'devices'", -1);
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
  auto chunks = list_chunks();
  if (!chunks) return chunks.error();
  uint64_t total = 0;
  for (const Chunk& c : chunks.value()) {
    if (c.state != ChunkState::kOpen && (c.max_time_ns < from_ns || c.min_time_ns > to_ns)) {
      continue;
    }
    auto db = chunk_db(c.id);
    if (!db) return db.error();
    if (db.value() == nullptr) continue;
    auto indexed = has_index(*db.value());
    if (!indexed) return indexed.error();
    if (!indexed.value()) {
      auto rs = RunSearch::open(*db.value());
      if (!rs) return rs.error();
      for (auto [first, last] : rs->runs()) {
        int64_t lo = rs->bound(first, last, device_id, from_ns, true);
        total += static_cast<uint64_t>(rs->bound(lo, last, device_id, to_ns, false) - lo);
      }
      continue;
    }
    auto st = db.value()->prepare(
        "SELECT count(*) FROM rows WHERE device_id = ? AND time_ns BETWEEN ? AND ?");
    if (!st) return st.error();
    st->bind_u64(1, device_id);
    st->bind(2, from_ns);
    st->bind(3, to_ns);
    if (st->step() != SQLITE_ROW) return db.value()->error("count");
    total += static_cast<uint64_t>(st->i64(0));
  }
  return total;
}

}  // namespace tianhe::sinks::store
