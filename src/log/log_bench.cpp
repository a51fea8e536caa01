// Shard-log micro-benchmarks. TH_LOG_BENCH_DIR picks the disk (default: the temp directory).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/clock.h"
#include "log/shard_log.h"

namespace {

using namespace tianhe::log;
namespace fs = std::filesystem;

/// A fresh directory on the benchmark disk, removed afterwards.
struct BenchDir {
  BenchDir() {
    const char* base = std::getenv("TH_LOG_BENCH_DIR");
    std::string tmpl = (base != nullptr ? std::string(base) : fs::temp_directory_path().string()) +
                       "/th-log-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path = tmpl;
  }
  ~BenchDir() { fs::remove_all(path); }
  std::string path;
};

/// Sets p50_us/p99_us/p999_us counters from latencies in microseconds.
void report_percentiles(benchmark::State& state, std::vector<double>& us) {
  if (us.empty()) return;
  std::sort(us.begin(), us.end());
  const auto at = [&](size_t per_mille) {
    return us[std::min(us.size() - 1, us.size() * per_mille / 1000)];
  };
  state.counters["p50_us"] = at(500);
  state.counters["p99_us"] = at(990);
  state.counters["p999_us"] = at(999);
}

/// Appends 1 KiB records with the durability given as the argument (0 none, 1 batch, 2 sync);
/// batch measures the append path while the group-commit thread syncs behind it. Per-append
/// latency percentiles include rollovers (and any wait for a spare segment: create_stalls).
void BM_Append1KiB(benchmark::State& state) {
  BenchDir dir;
  LogConfig c;
  c.dir = dir.path;
  c.durability = state.range(0) == 0   ? Durability::kNone
                 : state.range(0) == 1 ? Durability::kBatch
                                       : Durability::kSync;
  c.segment_bytes = 64ull << 20;
  LogStats stats;
  auto log = ShardLog::open(c, 0, &stats);
  if (!log.ok()) {
    state.SkipWithError(log.error().message.c_str());
    return;
  }
  std::vector<uint8_t> payload(1024, 0x5a);
  uint64_t end = 0;
  std::vector<double> us;
  us.reserve(1 << 20);
  for (auto _ : state) {
    const int64_t t0 = tianhe::core::mono_ns();
    if ((*log)->append(payload, &end) != AppendStatus::kOk) {
      state.SkipWithError("append failed");
      break;
    }
    if (us.size() < us.capacity()) {
      us.push_back(static_cast<double>(tianhe::core::mono_ns() - t0) / 1000.0);
    }
  }
  (*log)->close();
  report_percentiles(state, us);
  state.counters["create_stalls"] = static_cast<double>(stats.segment_create_stalls.load());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 1024);
  state.SetLabel(std::string(durability_name(c.durability)));
  state.counters["syncs"] = static_cast<double>(stats.syncs.load());
}
BENCHMARK(BM_Append1KiB)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

/// The cost of durability on this disk: a 100-byte write followed by fdatasync, as the sync
/// mode (and each group commit) does. Argument 0: the file grows with every write (the format
/// before preallocation: each fdatasync commits the new size through the journal); 1: the writes
/// overwrite a file of zeros written and synced beforehand (preallocated segments). Reports
/// percentiles of the fdatasync alone in microseconds.
void BM_FdatasyncSmallAppend(benchmark::State& state) {
  BenchDir dir;
  const bool prealloc = state.range(0) == 1;
  const std::string path = dir.path + "/probe";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    state.SkipWithError("cannot create probe file");
    return;
  }
  constexpr uint64_t kFileBytes = 64ull << 20;
  if (prealloc) {
    std::vector<uint8_t> zeros(1 << 20, 0);
    for (uint64_t pos = 0; pos < kFileBytes; pos += zeros.size()) {
      if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(pos)) !=
          static_cast<ssize_t>(zeros.size())) {
        std::abort();
      }
    }
    if (::fsync(fd) != 0) std::abort();
  }
  std::vector<uint8_t> rec(100, 0x42);
  std::vector<double> us;
  us.reserve(100000);
  uint64_t pos = 0;
  for (auto _ : state) {
    if (prealloc && pos + rec.size() > kFileBytes) pos = 0;
    if (::pwrite(fd, rec.data(), rec.size(), static_cast<off_t>(pos)) !=
        static_cast<ssize_t>(rec.size())) {
      std::abort();
    }
    pos += rec.size();
    const int64_t t0 = tianhe::core::mono_ns();
    if (::fdatasync(fd) != 0) std::abort();
    us.push_back(static_cast<double>(tianhe::core::mono_ns() - t0) / 1000.0);
  }
  ::close(fd);
  state.SetLabel(prealloc ? "preallocated" : "growing");
  report_percentiles(state, us);
}
BENCHMARK(BM_FdatasyncSmallAppend)->Arg(0)->Arg(1)->UseRealTime();

}  // namespace
