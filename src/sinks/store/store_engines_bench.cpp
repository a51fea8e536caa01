// Compares storage engines for the embedded store (the figures in docs/store.md):
//   sqlite-index     one SQLite table with a (device_id, time_ns) index kept on every insert
//   rocksdb          RocksDB, WAL off, key = device BE | time BE | seq BE
//   generate         the workload generator alone (its CPU is in every figure)
//   blocks           the store: time-chunked SQLite, packed blocks of reports (one row per
//                    block), each sealed chunk's runs merged into one
// (The per-row chunked layout that `blocks` replaced is measured by this program as built from
// the revision before it: engine `chunked`; see docs/store.md.)
// Usage: store_engines_bench <engine> <dir> [reports=2000000] [devices=500000] [chunk=4194304]
//        [block_reports=256] [cold] [commit=N]  (commit: reports per write, default 65536)
// Prints one JSON line: insert rate, CPU seconds per million reports, history p50/p99 over
// 1000 random devices, time to list the latest report of every device; for `blocks`, also the
// other questions the store answers (a device's history over 10 s, its newest 10 reports, its
// latest report, its count over a range, the store's totals), each p50/p99 over random devices,
// and with `cold` (root: drops the page cache first) the first histories read from the disk.
// docs/store.md has the figures at 100 M reports: `make bench-store`.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/clock.h"
#include "sinks/store/sqlite_db.h"
#include "sinks/store/store.h"
#include "sinks/store/store_writer.h"

namespace store = tianhe::sinks::store;
namespace core = tianhe::core;

namespace {

constexpr int64_t kT0 = 1'700'000'000'000'000'000;
constexpr uint32_t kBatch = 65536;

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/// The workload: report i goes to a random device; device time advances 1 ms of fleet time
/// per 300 reports (300k reports/s).
struct Workload {
  uint64_t reports;
  uint64_t devices;
  std::mt19937_64 rng{42};
  std::vector<uint32_t> seqs;
  std::vector<uint8_t> metrics;  // 5 metrics by id, doubles: 71 bytes
  explicit Workload(uint64_t n, uint64_t d) : reports(n), devices(d), seqs(d, 0) {
    metrics.push_back(5);
    for (uint32_t m = 0; m < 5; ++m) {
      metrics.push_back(0);
      uint32_t id = m + 1;
      metrics.insert(metrics.end(), reinterpret_cast<uint8_t*>(&id),
                     reinterpret_cast<uint8_t*>(&id) + 4);
      metrics.push_back(0);  // double
      double v = 20.0 + m;
      metrics.insert(metrics.end(), reinterpret_cast<uint8_t*>(&v),
                     reinterpret_cast<uint8_t*>(&v) + 8);
    }
  }
  int64_t time_of(uint64_t i) const { return kT0 + static_cast<int64_t>(i) * 1'000'000 / 300; }
  void fill(uint64_t first, uint64_t n, std::vector<core::Report>& out) {
    out.clear();
    for (uint64_t i = first; i < first + n; ++i) {
      core::Report r;
      r.device_id = 1'000'000 + rng() % devices;
      r.seq = seqs[r.device_id - 1'000'000]++;
      r.tenant = 1;
      r.device_time_ns = time_of(i);
      r.received_ns = r.device_time_ns + 5'000'000;
      std::memcpy(metrics.data() + 7, &i, 4);  // vary a value
      r.raw_metrics = metrics;
      out.push_back(r);
    }
  }
};

struct Figures {
  double insert_s = 0, insert_cpu = 0, seal_s = 0, seal_cpu = 0;
  std::vector<double> history_us;
  double latest_all_s = 0;
  uint64_t bytes = 0;
  uint64_t rows_found = 0;
  /// Further figures of one engine, printed as extra JSON fields in this order.
  std::vector<std::pair<std::string, double>> extra;
};

/// Bytes on disk, without the per-commit chunk files that a merged file replaced (the store
/// deletes those a few seconds later, once no reader can still be opening them).
uint64_t dir_bytes(const std::string& dir) {
  uint64_t n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string p = e.path().string();
    auto at = p.rfind(".db");
    if (at != std::string::npos && p.find(".merged.db") == std::string::npos &&
        std::filesystem::exists(p.substr(0, at) + ".merged.db")) {
      continue;
    }
    n += e.file_size();
  }
  return n;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void be64(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i, v >>= 8) out[i] = static_cast<char>(v & 0xff);
}

int run_sqlite_index(Workload& w, const std::string& dir, Figures& f) {
  auto db = store::Db::open(dir + "/one.db", true);
  if (!db) return std::fprintf(stderr, "%s\n", db.error().message.c_str()), 1;
  (void)db->exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-262144;"
      "CREATE TABLE rows(device_id INTEGER NOT NULL, seq INTEGER NOT NULL, time_ns INTEGER NOT "
      "NULL, received_ns INTEGER NOT NULL, tenant INTEGER NOT NULL, protocol INTEGER NOT NULL, "
      "metrics BLOB NOT NULL); CREATE INDEX rows_device_time ON rows(device_id, time_ns);");
  auto ins = db->prepare("INSERT INTO rows VALUES(?,?,?,?,?,?,?)");
  std::vector<core::Report> batch;
  double c0 = cpu_seconds();
  int64_t t0 = core::mono_ns();
  for (uint64_t i = 0; i < w.reports; i += kBatch) {
    w.fill(i, std::min<uint64_t>(kBatch, w.reports - i), batch);
    (void)db->exec("BEGIN");
    for (auto& r : batch) {
      ins->reset();
      ins->bind_u64(1, r.device_id);
      ins->bind(2, r.seq);
      ins->bind(3, r.device_time_ns);
      ins->bind(4, r.received_ns);
      ins->bind(5, r.tenant);
      ins->bind(6, 1);
      ins->bind_blob(7, r.raw_metrics);
      ins->step();
    }
    (void)db->exec("COMMIT");
  }
  f.insert_s = static_cast<double>(core::mono_ns() - t0) / 1e9;
  f.insert_cpu = cpu_seconds() - c0;
  std::mt19937_64 rng(7);
  int64_t from = w.time_of(w.reports / 4), to = w.time_of(w.reports * 3 / 4);
  for (int q = 0; q < 1000; ++q) {
    int64_t s = core::mono_ns();
    auto st = db->prepare(
        "SELECT device_id, seq, tenant, time_ns, received_ns, protocol, metrics FROM rows WHERE "
        "device_id = ? AND time_ns BETWEEN ? AND ? ORDER BY time_ns LIMIT 1000");
    st->bind_u64(1, 1'000'000 + rng() % w.devices);
    st->bind(2, from);
    st->bind(3, to);
    while (st->step() == SQLITE_ROW) ++f.rows_found;
    f.history_us.push_back(static_cast<double>(core::mono_ns() - s) / 1e3);
  }
  int64_t s = core::mono_ns();
  auto st = db->prepare(
      "SELECT device_id, seq, tenant, max(time_ns), received_ns, protocol, metrics FROM rows "
      "GROUP BY device_id");
  uint64_t n = 0;
  while (st->step() == SQLITE_ROW) ++n;
  f.latest_all_s = static_cast<double>(core::mono_ns() - s) / 1e9;
  return n == 0;
}

int run_rocksdb(Workload& w, const std::string& dir, Figures& f) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.IncreaseParallelism(2);
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, dir + "/rocks", &raw);
  if (!s.ok()) return std::fprintf(stderr, "%s\n", s.ToString().c_str()), 1;
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;
  std::vector<core::Report> batch;
  double c0 = cpu_seconds();
  int64_t t0 = core::mono_ns();
  std::string value;
  for (uint64_t i = 0; i < w.reports; i += kBatch) {
    w.fill(i, std::min<uint64_t>(kBatch, w.reports - i), batch);
    rocksdb::WriteBatch wb;
    for (auto& r : batch) {
      char key[20];
      be64(r.device_id, key);
      be64(static_cast<uint64_t>(r.device_time_ns) ^ (1ull << 63), key + 8);
      for (int b = 0; b < 4; ++b) key[16 + b] = static_cast<char>(r.seq >> (24 - 8 * b));
      value.assign(reinterpret_cast<const char*>(&r.received_ns), 8);
      value.append(reinterpret_cast<const char*>(&r.tenant), 4);
      value.push_back(1);
      value.append(reinterpret_cast<const char*>(r.raw_metrics.data()), r.raw_metrics.size());
      wb.Put(rocksdb::Slice(key, 20), value);
    }
    db->Write(wo, &wb);
  }
  f.insert_s = static_cast<double>(core::mono_ns() - t0) / 1e9;
  f.insert_cpu = cpu_seconds() - c0;
  // Flush and let compaction settle: its CPU is part of the cost of ingest.
  int64_t t1 = core::mono_ns();
  double c1 = cpu_seconds();
  db->Flush(rocksdb::FlushOptions());
  for (;;) {
    uint64_t pending = 0, running = 0;
    db->GetIntProperty("rocksdb.compaction-pending", &pending);
    db->GetIntProperty("rocksdb.num-running-compactions", &running);
    if (pending == 0 && running == 0) break;
    timespec ts{0, 50'000'000};
    nanosleep(&ts, nullptr);
  }
  f.seal_s = static_cast<double>(core::mono_ns() - t1) / 1e9;
  f.seal_cpu = cpu_seconds() - c1;
  std::mt19937_64 rng(7);
  int64_t from = w.time_of(w.reports / 4), to = w.time_of(w.reports * 3 / 4);
  for (int q = 0; q < 1000; ++q) {
    int64_t st = core::mono_ns();
    uint64_t dev = 1'000'000 + rng() % w.devices;
    char lo[16], hi[16];
    be64(dev, lo);
    be64(static_cast<uint64_t>(from) ^ (1ull << 63), lo + 8);
    be64(dev, hi);
    be64(static_cast<uint64_t>(to) ^ (1ull << 63), hi + 8);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    int n = 0;
    for (it->Seek(rocksdb::Slice(lo, 16)); it->Valid() && n < 1000; it->Next(), ++n) {
      if (std::memcmp(it->key().data(), hi, 16) > 0) break;
      ++f.rows_found;
    }
    f.history_us.push_back(static_cast<double>(core::mono_ns() - st) / 1e3);
  }
  int64_t st = core::mono_ns();
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  uint64_t n = 0;
  for (uint64_t d = 0; d < w.devices; ++d) {
    char k[16];
    be64(1'000'000 + d, k);
    std::memset(k + 8, 0xff, 8);
    it->SeekForPrev(rocksdb::Slice(k, 16));
    if (it->Valid()) ++n;
  }
  f.latest_all_s = static_cast<double>(core::mono_ns() - st) / 1e9;
  return 0;
}

/// The workload generator alone: its CPU is part of every engine's figure above.
int run_generate(Workload& w, Figures& f) {
  std::vector<core::Report> batch;
  double c0 = cpu_seconds();
  int64_t t0 = core::mono_ns();
  for (uint64_t i = 0; i < w.reports; i += kBatch) {
    w.fill(i, std::min<uint64_t>(kBatch, w.reports - i), batch);
  }
  f.insert_s = static_cast<double>(core::mono_ns() - t0) / 1e9;
  f.insert_cpu = cpu_seconds() - c0;
  return 0;
}

/// Drops the kernel's page cache (root only) so that the next queries read from the disk.
bool drop_page_cache() {
  ::sync();
  FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("3\n", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

/// Times `n` calls of `fn(i)` (microseconds each) and adds their p50 and p99 to `f.extra`.
template <typename Fn>
int time_queries(const char* name, int n, Figures& f, Fn&& fn) {
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    const int64_t st = core::mono_ns();
    if (int rc = fn(i); rc != 0) return rc;
    us.push_back(static_cast<double>(core::mono_ns() - st) / 1e3);
  }
  f.extra.emplace_back(std::string(name) + "_p50_us", pct(us, 0.5));
  f.extra.emplace_back(std::string(name) + "_p99_us", pct(us, 0.99));
  return 0;
}

/// The questions the store must answer, asked of a store written by `run_blocks` and closed:
/// one device's history over half the time span (limit 1000) and over 10 s of fleet time, its
/// newest 10 reports, its latest report, its report count over half the span, the store's
/// totals, and the latest report of every device (paged, 10,000 a page). With `cold`, a first
/// round of device histories and latest reports is asked right after dropping the page cache.
int query_blocks(Workload& w, const std::string& store_dir, bool cold, Figures& f) {
  std::mt19937_64 rng(7);
  auto device = [&] { return 1'000'000 + rng() % w.devices; };
  const int64_t from = w.time_of(w.reports / 4), to = w.time_of(w.reports * 3 / 4);
  const int64_t span = w.time_of(w.reports - 1) - w.time_of(0);
  auto fail = [](const tianhe::Error& e) {
    return std::fprintf(stderr, "%s\n", e.message.c_str()), 1;
  };
  if (cold) {
    if (!drop_page_cache()) {
      std::fprintf(stderr, "cannot drop the page cache (needs root): cold figures skipped\n");
    } else {
      auto rd = store::StoreReader::open(store_dir);
      if (!rd) return fail(rd.error());
      int rc = time_queries("cold_history", 200, f, [&](int) {
        auto h = rd.value()->history(store::HistoryQuery{device(), from, to, 1000, false});
        return h ? 0 : fail(h.error());
      });
      if (rc == 0) {
        rc = time_queries("cold_latest", 200, f, [&](int) {
          auto l = rd.value()->latest(device());
          return l ? 0 : fail(l.error());
        });
      }
      if (rc != 0) return rc;
    }
  }
  int64_t st = core::mono_ns();
  auto rd = store::StoreReader::open(store_dir);
  if (!rd) return fail(rd.error());
  f.extra.emplace_back("open_ms", static_cast<double>(core::mono_ns() - st) / 1e6);
  for (int q = 0; q < 1000; ++q) {
    st = core::mono_ns();
    auto h = rd.value()->history(store::HistoryQuery{device(), from, to, 1000, false});
    if (!h) return fail(h.error());
    f.rows_found += h->size();
    f.history_us.push_back(static_cast<double>(core::mono_ns() - st) / 1e3);
  }
  uint64_t narrow_rows = 0;
  int rc = time_queries("history_10s", 1000, f, [&](int) {
    const int64_t at = w.time_of(0) + static_cast<int64_t>(rng() % static_cast<uint64_t>(span));
    auto h =
        rd.value()->history(store::HistoryQuery{device(), at, at + 10'000'000'000, 1000, false});
    if (!h) return fail(h.error());
    narrow_rows += h->size();
    return 0;
  });
  if (rc == 0) {
    rc = time_queries("newest_10", 1000, f, [&](int) {
      store::HistoryQuery q{device(), INT64_MIN, INT64_MAX, 10, true};
      auto h = rd.value()->history(q);
      return h ? 0 : fail(h.error());
    });
  }
  uint64_t latest_found = 0;
  if (rc == 0) {
    rc = time_queries("latest", 1000, f, [&](int) {
      auto l = rd.value()->latest(device());
      if (!l) return fail(l.error());
      latest_found += l->has_value() ? 1 : 0;
      return 0;
    });
  }
  if (rc == 0) {
    rc = time_queries("count_device", 200, f, [&](int) {
      auto c = rd.value()->count_device(device(), from, to);
      return c ? 0 : fail(c.error());
    });
  }
  if (rc != 0) return rc;
  st = core::mono_ns();
  auto counts = rd.value()->counts();
  if (!counts) return fail(counts.error());
  f.extra.emplace_back("counts_ms", static_cast<double>(core::mono_ns() - st) / 1e6);
  f.extra.emplace_back("counted_reports", static_cast<double>(counts->reports));
  f.extra.emplace_back("counted_devices", static_cast<double>(counts->devices));
  f.extra.emplace_back("chunks", static_cast<double>(counts->chunks));
  f.extra.emplace_back("history_10s_rows_avg", static_cast<double>(narrow_rows) / 1000);
  f.extra.emplace_back("latest_found_of_1000", static_cast<double>(latest_found));
  st = core::mono_ns();
  uint64_t after = 0, n = 0;
  for (;;) {
    auto page = rd.value()->latest_all(after, 10000);
    if (!page) return fail(page.error());
    if (page->empty()) break;
    n += page->size();
    after = page->back().device_id;
  }
  f.latest_all_s = static_cast<double>(core::mono_ns() - st) / 1e9;
  f.extra.emplace_back("latest_all_devices", static_cast<double>(n));
  if (counts->reports != w.reports) {
    std::fprintf(stderr, "the store counts %llu reports, %llu were written\n",
                 static_cast<unsigned long long>(counts->reports),
                 static_cast<unsigned long long>(w.reports));
    return 1;
  }
  return 0;
}

int run_blocks(Workload& w, const std::string& dir, uint32_t block, uint64_t chunk, bool cold,
               uint64_t commit, Figures& f) {
  store::StoreWriterOptions o;
  o.dir = dir + "/store";
  o.chunk_reports = chunk;
  o.block_reports = block;
  auto wr = store::StoreWriter::open(o);
  if (!wr) return std::fprintf(stderr, "%s\n", wr.error().message.c_str()), 1;
  std::vector<core::Report> batch;
  double c0 = cpu_seconds();
  int64_t t0 = core::mono_ns();
  uint64_t offset = 0;
  for (uint64_t i = 0; i < w.reports; i += commit) {
    w.fill(i, std::min<uint64_t>(commit, w.reports - i), batch);
    store::ShardCursor c[] = {{0, offset += 4096}, {1, offset}};
    auto r = wr.value()->write(batch, c, (i / commit) % 4 == 0);
    if (!r) return std::fprintf(stderr, "%s\n", r.error().message.c_str()), 1;
  }
  f.insert_s = static_cast<double>(core::mono_ns() - t0) / 1e9;
  f.insert_cpu = cpu_seconds() - c0;
  int64_t t1 = core::mono_ns();
  wr.value()->wait_idle();
  f.seal_s = static_cast<double>(core::mono_ns() - t1) / 1e9;
  f.seal_cpu = cpu_seconds() - c0 - f.insert_cpu;
  wr.value().reset();  // closed, as after a restart: the reader sees what is on disk
  return query_blocks(w, o.dir, cold, f);
}

int run_main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: %s sqlite-index|rocksdb|blocks|generate <dir> [reports] [devices] "
                 "[chunk_reports] [block_reports] [cold] [commit=N]\n",
                 argv[0]);
    return 2;
  }
  std::string engine = argv[1], dir = argv[2];
  uint64_t n = argc > 3 ? std::stoull(argv[3]) : 2'000'000;
  uint64_t d = argc > 4 ? std::stoull(argv[4]) : 500'000;
  uint64_t chunk = argc > 5 ? std::stoull(argv[5]) : 4u << 20;
  auto block = static_cast<uint32_t>(argc > 6 ? std::stoul(argv[6]) : 256);
  // Flags after the numbers: "cold" (also time queries on a dropped page cache) and
  // "commit=N" (reports per write, one run each; the gateway's store sink commits every 20 ms).
  bool cold = false;
  uint64_t commit = kBatch;
  for (int i = 7; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "cold") {
      cold = true;
    } else if (a.rfind("commit=", 0) == 0 && std::stoull(a.substr(7)) > 0) {
      commit = std::stoull(a.substr(7));
    } else {
      std::fprintf(stderr, "%s: unknown flag %s (expected cold or commit=N)\n", argv[0], a.c_str());
      return 2;
    }
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  if (d == 0 || n < d) {
    std::fprintf(stderr, "%s: need at least one device and as many reports as devices\n", argv[0]);
    return 2;
  }
  Workload w(n, d);
  Figures f;
  int rc = 2;
  if (engine == "sqlite-index")
    rc = run_sqlite_index(w, dir, f);
  else if (engine == "rocksdb")
    rc = run_rocksdb(w, dir, f);
  else if (engine == "generate")
    rc = run_generate(w, f);
  else if (engine == "blocks")
    rc = run_blocks(w, dir, block, chunk, cold, commit, f);
  if (rc != 0) return rc;
  f.bytes = dir_bytes(dir);
  double mrows = static_cast<double>(n) / 1e6;
  std::printf(
      "{\"engine\":\"%s\",\"reports\":%llu,\"devices\":%llu,\"insert_rows_per_s\":%.0f,"
      "\"insert_cpu_s_per_m\":%.3f,\"insert_cores\":%.2f,\"after_insert_s\":%.2f,"
      "\"after_insert_cpu_s\":%.2f,\"total_cpu_s_per_m\":%.3f,\"history_p50_us\":%.0f,"
      "\"history_p99_us\":%.0f,\"history_rows\":%llu,\"latest_all_s\":%.2f,\"bytes_per_report\":"
      "%.0f",
      engine.c_str(), static_cast<unsigned long long>(n), static_cast<unsigned long long>(d),
      static_cast<double>(n) / f.insert_s, f.insert_cpu / mrows, f.insert_cpu / f.insert_s,
      f.seal_s, f.seal_cpu, (f.insert_cpu + f.seal_cpu) / mrows, pct(f.history_us, 0.5),
      pct(f.history_us, 0.99), static_cast<unsigned long long>(f.rows_found), f.latest_all_s,
      static_cast<double>(f.bytes) / static_cast<double>(n));
  for (const auto& [name, value] : f.extra) std::printf(",\"%s\":%.6g", name.c_str(), value);
  std::printf("}\n");
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s (check the numbers given)\n", argv[0], e.what());
    return 2;
  }
}
