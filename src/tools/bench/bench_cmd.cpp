// `tianhe bench`: the end-to-end benchmark. In one run it measures the raw loopback ceiling
// (a bare recvmmsg receiver that discards, fed by the same sender) and then the gateway serving
// the same load, and prints both with their ratio, as a table and as JSON.
#include "tools/bench/bench_cmd.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "core/http_get.h"
#include "protocols/report/report_simulator.h"
#include "runtime/extensions.h"
#include "runtime/totals.h"
#include "tools/bench/bench_gateway.h"
#include "tools/bench/disk_floor.h"
#include "tools/bench/storm_bench.h"
#include "transports/udp_socket.h"

namespace tianhe::tools::bench {

using core::Args;
using core::usage_error;
using protocols::report::run_simulator;
using protocols::report::SimulatorOptions;
using protocols::report::SimulatorSummary;
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

/// Counts of a log2 latency histogram: (upper bound in seconds, observations in that bucket).
using Buckets = std::vector<std::pair<double, double>>;

/// The per-bucket observations of a log2-microsecond histogram (runtime::Totals) in `after`
/// minus those in `before`; the last bucket's bound is open (1e300).
Buckets histogram_delta(const std::vector<uint64_t>& before, const std::vector<uint64_t>& after) {
  Buckets out;
  for (size_t i = 0; i < after.size(); ++i) {
    const double bound = i + 1 < after.size() ? std::ldexp(1e-6, static_cast<int>(i)) : 1e300;
    out.emplace_back(bound, static_cast<double>(after[i] - (i < before.size() ? before[i] : 0)));
  }
  return out;
}

/// Summary of fdatasync (or other) latencies: quantiles, the longest, and the share of the wall
/// time spent in calls longer than 2 ms (when acknowledgements wait on the disk).
struct SyncSummary {
  double count = 0;
  double over_2ms = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  double share_over_2ms = 0;  ///< of `seconds` of wall time
  Json json() const {
    return {{"count", count},   {"over_2ms", over_2ms},
            {"p99_ms", p99_ms}, {"p999_ms", p999_ms},
            {"max_ms", max_ms}, {"share_of_time_over_2ms", share_over_2ms}};
  }
};

/// From histogram buckets (upper bounds; a bucket's time is taken at its upper bound, so the share
/// is an upper estimate).
SyncSummary summarize(const Buckets& buckets, double seconds) {
  SyncSummary s;
  for (const auto& [bound, n] : buckets) s.count += n;
  double seen = 0, slow_s = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    const auto& [bound, n] = buckets[i];
    const double upper = bound < 1e300 ? bound : (i > 0 ? buckets[i - 1].first * 2 : 1);
    seen += n;
    if (s.p50_ms == 0 && seen >= 0.5 * s.count) s.p50_ms = upper * 1e3;
    if (s.p99_ms == 0 && seen >= 0.99 * s.count) s.p99_ms = upper * 1e3;
    if (s.p999_ms == 0 && seen >= 0.999 * s.count) s.p999_ms = upper * 1e3;
    if (n > 0) s.max_ms = upper * 1e3;
    if (i > 0 && buckets[i - 1].first >= 0.002) {
      s.over_2ms += n;
      slow_s += n * upper;
    }
  }
  s.share_over_2ms = seconds > 0 ? std::min(1.0, slow_s / seconds) : 0;
  return s;
}

/// The disk's own flush latency, measured the way the log syncs: 200-byte overwrites of a
/// preallocated, synced file, each followed by fdatasync, for `seconds`.
SyncSummary probe_fdatasync(const std::string& dir, double seconds) {
  const std::string path = dir + "/fdatasync-probe";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SyncSummary out;
  if (fd < 0) return out;
  constexpr size_t kFileBytes = 16u << 20;
  write_zeros_and_sync(fd, kFileBytes);
  std::vector<double> lat;
  char rec[200];
  std::memset(rec, 0x5a, sizeof rec);
  size_t off = 0;
  const int64_t end = core::mono_ns() + static_cast<int64_t>(seconds * 1e9);
  double slow_s = 0;
  while (core::mono_ns() < end) {
    const int64_t t0 = core::mono_ns();
    if (::pwrite(fd, rec, sizeof rec, static_cast<off_t>(off)) < 0 || ::fdatasync(fd) != 0) break;
    const double d = static_cast<double>(core::mono_ns() - t0) / 1e9;
    lat.push_back(d);
    if (d > 0.002) {
      ++out.over_2ms;
      slow_s += d;
    }
    off = (off + sizeof rec) % (kFileBytes - sizeof rec);
  }
  ::close(fd);
  ::unlink(path.c_str());
  if (lat.empty()) return out;
  std::sort(lat.begin(), lat.end());
  auto q = [&](double p) {
    return lat[static_cast<size_t>(p * static_cast<double>(lat.size() - 1))] * 1e3;
  };
  out.count = static_cast<double>(lat.size());
  out.p50_ms = q(0.5);
  out.p99_ms = q(0.99);
  out.p999_ms = q(0.999);
  out.max_ms = lat.back() * 1e3;
  out.share_over_2ms = slow_s / seconds;
  return out;
}

/// How long the machine takes the CPU away from a thread that wants it: one thread per core
/// reads the monotonic clock in a tight loop for `seconds`; a gap between two reads longer than
/// 200 µs is time the thread did not run (on a VM, mostly the host running something else on
/// that vCPU; the guest's steal counter may not see it). No gateway runs meanwhile, so this is
/// the floor under the ack latency: an ack due while its shard's vCPU is away waits that long.
struct StallSummary {
  double seconds = 0;         ///< probed per thread
  double gaps = 0;            ///< gaps > 200 µs, all threads
  double over_2ms = 0;        ///< of them, longer than 2 ms
  double share_lost = 0;      ///< of each thread's time, in gaps > 200 µs (mean over threads)
  double share_over_2ms = 0;  ///< of each thread's time, in gaps > 2 ms (mean over threads)
  double max_ms = 0;
  Json json() const {
    return {{"seconds", seconds},
            {"gaps_over_200us", gaps},
            {"gaps_over_2ms", over_2ms},
            {"share_of_time_lost", share_lost},
            {"share_of_time_in_gaps_over_2ms", share_over_2ms},
            {"max_ms", max_ms}};
  }
};

StallSummary probe_cpu_stalls(uint32_t threads, double seconds) {
  struct Local {
    double gaps = 0, over_2ms = 0, lost_ns = 0, lost_2ms_ns = 0, max_ns = 0;
  };
  std::vector<Local> locals(threads);
  std::vector<std::thread> pool;
  const int64_t end = core::mono_ns() + static_cast<int64_t>(seconds * 1e9);
  for (uint32_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Local l;
      int64_t last = core::mono_ns();
      while (last < end) {
        const int64_t now = core::mono_ns();
        const auto gap = static_cast<double>(now - last);
        if (gap > 200e3) {
          ++l.gaps;
          l.lost_ns += gap;
          l.max_ns = std::max(l.max_ns, gap);
          if (gap > 2e6) {
            ++l.over_2ms;
            l.lost_2ms_ns += gap;
          }
        }
        last = now;
      }
      locals[t] = l;
    });
  }
  for (auto& th : pool) th.join();
  StallSummary s;
  s.seconds = seconds;
  for (const Local& l : locals) {
    s.gaps += l.gaps;
    s.over_2ms += l.over_2ms;
    s.share_lost += l.lost_ns / (seconds * 1e9) / threads;
    s.share_over_2ms += l.lost_2ms_ns / (seconds * 1e9) / threads;
    s.max_ms = std::max(s.max_ms, l.max_ns / 1e6);
  }
  return s;
}

/// A run that failed after its options were accepted (exit status 1).
int failure(const std::string& message) {
  std::fprintf(stderr, "tianhe bench: %s\n", message.c_str());
  return 1;
}

}  // namespace

int cmd_bench_receiver(int argc, char** argv) {
  auto args = Args::parse(argc, argv, 2, {}, {"shards", "ready-file", "stats-file", "recv-buffer"});
  if (!args.ok()) return usage_error("bench-receiver", args.error().message);
  auto shards_arg = args->u64("shards", std::max(1u, std::thread::hardware_concurrency()), 1, 256);
  if (!shards_arg.ok()) return usage_error("bench-receiver", shards_arg.error().message);
  for (const char* name : {"ready-file", "stats-file"}) {
    if (args->str(name).empty()) {
      return usage_error("bench-receiver", std::string("--") + name + " FILE is required");
    }
  }
  const auto shards = static_cast<uint32_t>(*shards_arg);
  std::vector<transports::UdpSocket> socks;
  uint16_t port = 0;
  for (uint32_t i = 0; i < shards; ++i) {
    auto addr = transports::resolve("127.0.0.1", port);
    if (!addr.ok()) return usage_error("bench-receiver", addr.error().message);
    auto s = transports::UdpSocket::bind(
        *addr, transports::UdpOptions{.reuse_port = true, .recv_buffer_bytes = 32u << 20});
    if (!s.ok()) {
      std::fprintf(stderr, "tianhe bench-receiver: %s\n", s.error().message.c_str());
      return 1;
    }
    port = s->local_port();
    socks.push_back(std::move(*s));
  }
  static std::atomic<bool> stop{false};
  signal(SIGTERM, [](int) { stop = true; });
  std::atomic<uint64_t> total{0};
  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < shards; ++i) {
    threads.emplace_back([&, i] {
      transports::DatagramBatch rx(64, 2048);
      pollfd p{socks[i].fd(), POLLIN, 0};
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        int got = rx.receive(socks[i].fd());
        if (got > 0) {
          n += static_cast<uint64_t>(got);
        } else {
          poll(&p, 1, 50);
        }
      }
      total += n;
    });
  }
  const std::string ready = args->str("ready-file"), tmp = ready + ".tmp";
  bool written = false;
  {
    std::ofstream out(tmp);
    out << port << "\n";
    out.close();
    written = static_cast<bool>(out) && std::rename(tmp.c_str(), ready.c_str()) == 0;
  }
  if (!written) std::fprintf(stderr, "tianhe bench-receiver: cannot write %s\n", ready.c_str());
  for (auto& t : threads) t.join();
  std::ofstream stats(args->str("stats-file"));
  stats << total.load() << "\n";
  stats.close();
  if (!stats) {
    std::fprintf(stderr, "tianhe bench-receiver: cannot write %s\n",
                 args->str("stats-file").c_str());
    return 1;
  }
  return written ? 0 : 1;
}

/// What the table of `tianhe bench` shows (the JSON holds the same and more).
struct Figures {
  uint32_t shards = 0;
  uint32_t cores = 0;
  double raw_rate = 0;
  const SimulatorSummary& single;
  const SimulatorSummary* per_core = nullptr;  ///< when the per-core phase ran
  const SimulatorSummary& batched;
  const SimulatorSummary& half;
  const SimulatorSummary* half_none = nullptr;  ///< when the durability-none phase ran
  const SimulatorSummary* lag = nullptr;        ///< when the lag phase ran
  const SyncSummary& inside;
  const SyncSummary& log_syncs;
  const DiskFloor& floor;
  const SyncSummary& disk;
  const StallSummary& stalls;
  double max_lag = 0;
  double drain_s = 0;
  uint64_t rss_idle = 0;
  uint64_t devices = 0;
  double allocs = 0;
  double accepted = 0;
};

/// "kernel/acks" drops of one phase's gateway_drops object.
std::string drops_text(const Json& j) {
  char b[64];
  std::snprintf(b, sizeof b, "%.0f/%.0f", j["kernel_receive_drops"].get<double>(),
                j["acks_not_queued"].get<double>());
  return b;
}

/// Prints the table, then the JSON on one line.
void print_table(const Figures& f, const Json& result) {
  std::printf("\n%-58s %14s\n", "measure", "value");
  auto row = [](const std::string& k, const std::string& v) {
    std::printf("%-58s %14s\n", k.c_str(), v.c_str());
  };
  auto num = [](double v, int prec = 0) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    return std::string(b);
  };
  row("gateway shards (bare receiver sockets) / machine cores",
      std::to_string(f.shards) + " / " + std::to_string(f.cores));
  row("raw loopback ceiling (datagrams/s received)", num(f.raw_rate));
  row("single-report: acked reports/s", num(f.single.acked_rate));
  row("single-report: ratio to raw ceiling (target >= 0.6)",
      num(f.single.acked_rate / f.raw_rate, 2));
  if (f.per_core != nullptr) {
    row("  with one shard per core (" + std::to_string(f.cores) + "): acked reports/s, ratio",
        num(f.per_core->acked_rate) + ", " + num(f.per_core->acked_rate / f.raw_rate, 2));
  }
  row("batched x32: acked reports/s (target >= 1,000,000)", num(f.batched.acked_rate));
  row("ack latency p99 at half rate, ms (target <= 2)", num(f.half.p99_ms, 3));
  row("ack latency p50 / p999 at half rate, ms",
      num(f.half.p50_ms, 3) + " / " + num(f.half.p999_ms, 3));
  row("  the same, read by the fleet's thread: p99 / p999, ms",
      num(f.half.read_p99_ms, 3) + " / " + num(f.half.read_p999_ms, 3));
  row("  inside the gateway, receive to ack sent: p50 / p99, ms",
      num(f.inside.p50_ms, 3) + " / " + num(f.inside.p99_ms, 3));
  row("  log fdatasync in that phase: p99 / max, ms (bucket bounds)",
      num(f.log_syncs.p99_ms, 3) + " / " + num(f.log_syncs.max_ms, 0));
  row("  share of that phase in fdatasyncs > 2 ms (upper bound)",
      num(100 * f.log_syncs.share_over_2ms, 2) + " %");
  row("  disk floor at the log's " + num(f.floor.bytes_per_s / 1e6, 1) + " MB/s: ack p50 / p99, ms",
      num(f.floor.p50_ms, 3) + " / " + num(f.floor.p99_ms, 3));
  row("  disk floor: share of time in fdatasyncs > 2 ms / longest, ms",
      num(100 * f.floor.share_over_2ms, 2) + " % / " + num(f.floor.max_flush_ms, 1));
  row("  bare disk probe: fdatasync p99 / max, ms",
      num(f.disk.p99_ms, 3) + " / " + num(f.disk.max_ms, 0));
  row("  bare disk probe: share of time in fdatasyncs > 2 ms",
      num(100 * f.disk.share_over_2ms, 2) + " %");
  row("  bare CPU probe: stalls > 2 ms per s and core / longest, ms",
      num(f.stalls.over_2ms / f.stalls.seconds / f.cores, 2) + " / " + num(f.stalls.max_ms, 1));
  row("  bare CPU probe: share of time in stalls > 2 ms",
      num(100 * f.stalls.share_over_2ms, 2) + " %");
  row("  same rate, durability none: ack p99 / p999, ms",
      f.half_none != nullptr ? num(f.half_none->p99_ms, 3) + " / " + num(f.half_none->p999_ms, 3)
                             : std::string("-"));
  row("store lag max over the lag phase, s (target <= 1)", num(f.max_lag, 2));
  row("  lag p50 / p90 of the 250 ms samples, s",
      num(result["store_lag"]["p50_lag_s"].get<double>(), 2) + " / " +
          num(result["store_lag"]["p90_lag_s"].get<double>(), 2));
  row("  lag phase: reports/s sent / acked",
      f.lag != nullptr ? num(f.lag->rate) + " / " + num(f.lag->acked_rate) : std::string("-"));
  row("store drain after the batched phase, s", num(f.drain_s, 1));
  row("gateway RSS idle / registered device, bytes (target <= 256)",
      num(static_cast<double>(f.rss_idle) / f.devices, 1));
  row("heap allocations per report, shard threads (target 0)",
      num(f.accepted > 0 ? f.allocs / f.accepted : 0, 6));
  row("lost acks (single / batched / half / lag)",
      std::to_string(f.single.lost) + "/" + std::to_string(f.batched.lost) + "/" +
          std::to_string(f.half.lost) + "/" + std::to_string(f.lag != nullptr ? f.lag->lost : 0));
  row("  gateway drops, datagrams/acks: single batched lag",
      drops_text(result["single"]["gateway_drops"]) + " " +
          drops_text(result["batched"]["gateway_drops"]) + " " +
          drops_text(result["store_lag"]["gateway_drops"]));
  std::printf("\n%s\n", result.dump().c_str());
}

/// What `tianhe bench` was asked to do.
struct BenchOptions {
  double duration = 10, lag_duration = 60, latency_duration = 30;
  uint64_t devices = 500'000;
  uint32_t cores = 1, shards = 1;
  bool json_only = false;
  std::string work;          ///< where gateways keep data
  bool remove_work = false;  ///< a directory of our own, removed at the end
};

/// Parses the options and makes the work directory: -1 to go on, else the exit status (0 after
/// --help, 2 for a bad value, 1 when the work directory cannot be made).
int bench_options(int argc, char** argv, BenchOptions& o) {
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help")) {
      std::puts(R"(tianhe bench — end-to-end benchmark on this machine

Runs, in one go: the raw loopback ceiling (bare recvmmsg receiver, same sender), the disk's own
fdatasync latency and the CPU's own stalls (bare probes, before any gateway runs: a spinning
thread per core shows how often and how long the machine takes a core away), the gateway with
single-report datagrams (acks on, durability batch, store on), batched datagrams (32 reports),
ack latency at half the single-report rate (after the store has caught up and merged; first,
with the gateway idle, the disk's floor under it: a bare group-commit loop writing what the log
would write at that rate, and the ack latency its flushes alone give), store lag at the
single-report rate, ack latency again with durability none (the same path without
waiting for the disk), memory per registered device and heap allocations per report; last,
when --shards is below the core count, the single-report phase again with one shard per core,
for comparison.
Prints a table, or JSON with --json.

The load generator runs on the same machine and needs a core of its own, so by default the
gateway gets one shard fewer than there are cores (at least one), and the bare receiver of the
raw phase listens on as many sockets.

Options:
  --duration S        seconds per throughput phase and of the disk probe (default 10; the CPU
                      probe runs half as long, at least 3 s)
  --latency-duration S  seconds of the ack-latency phase (default 30)
  --lag-duration S    seconds of the store-lag phase (default 60)
  --devices N         registered and simulated devices (default 500000)
  --shards N          the gateway's shards and the bare receiver's sockets (default: cores - 1,
                      at least 1)
  --work-dir DIR      where gateways keep data (default: a new directory under /tmp, removed)
  --keep              keep the default work directory (its path is printed)
  --json              JSON only

Other benchmarks (each has its own --help):
  tianhe bench --sinks      each sink's delivery rate next to its engine's own ceiling
  tianhe bench --protocols  each protocol's rate next to the report protocol's
  tianhe bench --tracing    what tracing costs, per report and per span
  tianhe bench --storm      a reconnect storm and a sink outage at once)");
      return 0;
    }
  }
  auto args = Args::parse(
      argc, argv, 2, {"json", "keep"},
      {"duration", "latency-duration", "lag-duration", "devices", "shards", "work-dir"});
  if (!args.ok()) return usage_error("bench", args.error().message);
  // Every phase divides by its duration: a tenth of a second is the least that means anything.
  auto duration_arg = args->seconds("duration", 10, 0.1);
  auto lag_duration_arg = args->seconds("lag-duration", 60, 0.1);
  auto latency_duration_arg = args->seconds("latency-duration", 30, 0.1);
  auto devices_arg = args->u64("devices", 500'000, 1, UINT32_MAX);
  const uint32_t cores = std::max(1u, std::thread::hardware_concurrency());
  auto shards_arg = args->u64("shards", std::max(1u, cores - 1), 1, 256);
  for (const auto* r : {&duration_arg, &lag_duration_arg, &latency_duration_arg}) {
    if (!r->ok()) return usage_error("bench", r->error().message);
  }
  for (const auto* r : {&devices_arg, &shards_arg}) {
    if (!r->ok()) return usage_error("bench", r->error().message);
  }
  o.duration = *duration_arg;
  o.lag_duration = *lag_duration_arg;
  o.latency_duration = *latency_duration_arg;
  o.devices = *devices_arg;
  o.cores = cores;
  o.shards = static_cast<uint32_t>(*shards_arg);
  o.json_only = args->has("json");
  std::string& work = o.work;
  work = args->str("work-dir");
  if (args->has("work-dir")) {
    std::error_code ec;
    if (!work.empty()) fs::create_directories(work, ec);
    if (work.empty() || ec) {
      return usage_error("bench", "--work-dir: cannot create \"" + work + "\"" +
                                      (ec ? ": " + ec.message() : std::string()) +
                                      "; give a directory you can write");
    }
  } else {
    char tmpl[] = "/tmp/tianhe-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return failure(std::string("cannot create a work directory under /tmp: ") +
                     errno_text(errno) + "; pass --work-dir DIR");
    }
    work = tmpl;
    o.remove_work = !args->has("keep");
    if (!o.remove_work) std::fprintf(stderr, "tianhe bench: work directory %s\n", work.c_str());
  }
  return -1;
}

/// Phase 1, the raw loopback ceiling: a bare recvmmsg receiver fed by the same sender; its
/// datagrams/s (an error names what failed).
Result<double> raw_ceiling(const BenchOptions& o, Json& result) {
  const std::string& work = o.work;
  Child rx;
  const std::string ready = work + "/raw.ready", stats = work + "/raw.stats";
  auto pid = spawn({"tianhe", "bench-receiver", "--shards", std::to_string(o.shards),
                    "--ready-file", ready, "--stats-file", stats},
                   work + "/raw.log");
  if (!pid.ok()) return make_error("raw ceiling: " + pid.error().message);
  rx.pid = *pid;
  auto ports = wait_ready(ready, *pid, 10);
  if (!ports.ok()) {
    return make_error("raw ceiling: the bare receiver did not start (" + ports.error().message +
                      "): see " + work + "/raw.log");
  }
  auto s =
      run_simulator(sim(static_cast<uint16_t>((*ports)[0]), o.devices, 0, o.duration, 1, false));
  rx.terminate();
  if (!s.ok()) return make_error("raw ceiling: the sender failed: " + s.error().message);
  uint64_t received = 0;
  if (!(std::ifstream(stats) >> received)) {
    return make_error("raw ceiling: the bare receiver left no count in " + stats + ": see " + work +
                      "/raw.log");
  }
  const double raw_rate = static_cast<double>(received) / s->elapsed_s;
  result["raw"] = {{"sent_per_s", s->rate}, {"received_per_s", raw_rate}};
  return raw_rate;
}

// Where a phase's lost acks went, by the gateway's own counters: datagrams the kernel dropped
// from the shards' full receive buffers (a batched datagram carries many reports), and acks the
// gateway had no room to queue (their reports are stored).
struct Drops {
  double kernel = 0, acks_not_queued = 0;
};

Drops drops_in(const runtime::Totals& t) {
  return Drops{static_cast<double>(t.input_drops), static_cast<double>(t.acks_dropped)};
}

Drops drops_now(const Gw& gw) {
  return drops_in(totals_of(gw.http_port));
}

Json drops_json(const Drops& a, const Drops& b) {
  return Json{{"kernel_receive_drops", b.kernel - a.kernel},
              {"acks_not_queued", b.acks_not_queued - a.acks_not_queued}};
}

/// Waits until the gateway's sinks have written everything and finished their background work
/// (the store's merges), at most `timeout_s`; returns how long it took.
double wait_caught_up(const Gw& gw, double timeout_s) {
  const int64_t t0 = core::mono_ns();
  while ((core::mono_ns() - t0) / 1e9 < timeout_s) {
    const runtime::Totals t = totals_of(gw.http_port);
    if (t.sink_lag_bytes == 0 && t.sink_background_work == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return (core::mono_ns() - t0) / 1e9;
}

/// Phase 5: ack latency at half the single-report rate, with what the log's syncs and the
/// gateway itself saw meanwhile, and the heap allocations per report.
struct LatencyPhase {
  SimulatorSummary half;
  SyncSummary log_syncs, inside;
  double allocs = 0, accepted = 0;
};

Result<LatencyPhase> latency_phase(const BenchOptions& o, const Gw& gw, double rate, Json& result) {
  LatencyPhase p;
  const runtime::Totals before = totals_of(gw.http_port);
  auto half = run_simulator(sim(gw.report_port, o.devices, rate, o.latency_duration, 1, true));
  if (!half.ok()) return make_error("ack-latency phase: " + half.error().message);
  p.half = *half;
  const runtime::Totals after = totals_of(gw.http_port);
  p.log_syncs =
      summarize(histogram_delta(before.log_fsync_us, after.log_fsync_us), half->elapsed_s);
  // The gateway's own view: from the receive to the ack's send, per ack datagram.
  p.inside =
      summarize(histogram_delta(before.ack_latency_us, after.ack_latency_us), half->elapsed_s);
  p.allocs = static_cast<double>(after.heap_allocations - before.heap_allocations);
  p.accepted = static_cast<double>(after.reports_accepted - before.reports_accepted);
  result["latency"] = Json::parse(half->json());
  result["latency"]["log_fdatasync"] = p.log_syncs.json();
  result["latency"]["gateway_receive_to_ack_ms"] = {
      {"p50", p.inside.p50_ms}, {"p99", p.inside.p99_ms}, {"p999", p.inside.p999_ms}};
  result["allocations"] = {{"shard_heap_allocations", p.allocs},
                           {"reports", p.accepted},
                           {"per_report", p.accepted > 0 ? p.allocs / p.accepted : 0}};
  return p;
}

/// Phase 6: store lag at `rate`, sampled every 250 ms; the simulator's summary (an error when
/// it failed) and the largest lag seen.
struct LagPhase {
  Result<SimulatorSummary> lag = make_error("not run");
  double max_lag = 0;
};

LagPhase lag_phase(const BenchOptions& o, const Gw& gw, double rate, Json& result) {
  LagPhase p;
  std::atomic<bool> sampling{true};
  std::vector<double> lag_samples;
  lag_samples.reserve(static_cast<size_t>(o.lag_duration * 4) + 64);
  std::thread sampler([&] {
    while (sampling) {
      const double l = totals_of(gw.http_port).sink_lag_seconds;
      p.max_lag = std::max(p.max_lag, l);
      lag_samples.push_back(l);
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });
  const Drops d0 = drops_now(gw);
  p.lag = run_simulator(sim(gw.report_port, o.devices, rate, o.lag_duration, 1, true));
  sampling = false;
  sampler.join();
  const Drops d1 = drops_now(gw);
  result["store_lag"] = {{"target_rate", rate},
                         {"sent_rate", p.lag.ok() ? p.lag->rate : 0},
                         {"rate", p.lag.ok() ? p.lag->acked_rate : 0},
                         {"max_lag_s", p.max_lag}};
  // How the lag was spread over the phase: one long stall and a steady backlog look alike in
  // the maximum alone.
  std::sort(lag_samples.begin(), lag_samples.end());
  auto lag_quantile = [&](double q) {
    return lag_samples.empty()
               ? 0.0
               : lag_samples[static_cast<size_t>(q * static_cast<double>(lag_samples.size() - 1))];
  };
  result["store_lag"]["gateway_drops"] = drops_json(d0, d1);
  result["store_lag"]["p50_lag_s"] = lag_quantile(0.5);
  result["store_lag"]["p90_lag_s"] = lag_quantile(0.9);
  result["store_lag"]["samples_over_1s"] =
      std::count_if(lag_samples.begin(), lag_samples.end(), [](double l) { return l > 1.0; });
  return p;
}

/// Phases 7 and 8, each on a gateway of its own: the latency phase with durability none (the
/// software path without the disk wait) and, when the gateway ran with fewer shards than cores,
/// the single-report phase with one shard per core. Each summary is an error when not run.
struct ComparisonPhases {
  Result<SimulatorSummary> half_none = make_error("not run");
  Result<SimulatorSummary> per_core = make_error("not run");
};

Result<ComparisonPhases> comparison_phases(const BenchOptions& o, double single_rate,
                                           double raw_rate, const std::string& of,
                                           const std::function<void(const std::string&)>& say,
                                           Json& result) {
  ComparisonPhases p;
  say("[7" + of + "ack latency at half rate, durability none (no disk wait), " +
      std::to_string(static_cast<int>(o.duration)) + " s ...");
  {
    Gw none;
    if (auto r = start_gateway(none, o.work, "gateway-none", o.devices, o.shards, "none");
        !r.ok()) {
      return r.error();
    }
    p.half_none =
        run_simulator(sim(none.report_port, o.devices, single_rate / 2, o.duration, 1, true));
    if (p.half_none.ok()) result["latency_durability_none"] = Json::parse(p.half_none->json());
  }
  if (o.shards != o.cores) {
    say("[8" + of + "gateway with one shard per core (" + std::to_string(o.cores) +
        "), single-report datagrams, " + std::to_string(static_cast<int>(o.duration)) + " s ...");
    Gw all;
    if (auto r = start_gateway(all, o.work, "gateway-per-core", o.devices, o.cores); !r.ok()) {
      return r.error();
    }
    p.per_core = run_simulator(sim(all.report_port, o.devices, 0, o.duration, 1, true));
    if (p.per_core.ok()) {
      result["single_per_core"] = Json::parse(p.per_core->json());
      result["single_per_core"]["shards"] = o.cores;
      result["single_per_core"]["ratio_to_raw"] = p.per_core->acked_rate / raw_rate;
    }
  }
  return p;
}

int cmd_bench(int argc, char** argv, const runtime::CommandContext& context) {
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--sinks") == 0) return cmd_bench_sinks(argc, argv, context);
    if (std::strcmp(argv[i], "--protocols") == 0) return cmd_bench_protocols(argc, argv);
    if (std::strcmp(argv[i], "--tracing") == 0) return cmd_bench_tracing(argc, argv);
    if (std::strcmp(argv[i], "--storm") == 0) return cmd_bench_storm(argc, argv);
  }
  BenchOptions o;
  if (const int status = bench_options(argc, argv, o); status >= 0) return status;
  const double duration = o.duration, lag_duration = o.lag_duration,
               latency_duration = o.latency_duration;
  const uint64_t devices = o.devices;
  const uint32_t shards = o.shards, cores = o.cores;
  const bool json_only = o.json_only, remove_work = o.remove_work;
  const std::string& work = o.work;
  const bool compare_per_core = shards != cores;
  const std::string of = "/" + std::to_string(compare_per_core ? 8 : 7) + "] ";
  auto say = [&](const std::string& s) {
    if (!json_only) {
      std::printf("%s\n", s.c_str());
      std::fflush(stdout);
    } else {
      std::fprintf(stderr, "%s\n", s.c_str());
    }
  };
  Json result;
  result["machine"] = {{"cores", cores}};
  result["shards"] = shards;
  result["devices"] = devices;

  // 1. Raw ceiling.
  say("[1" + of + "raw loopback ceiling: bare recvmmsg receiver, single-report datagrams, " +
      std::to_string(static_cast<int>(duration)) + " s ...");
  auto raw = raw_ceiling(o, result);
  if (!raw.ok()) return failure(raw.error().message);
  const double raw_rate = *raw;

  // 2. The disk alone, before any gateway writes to it (a gateway's background work, such as
  // merging sealed store chunks, would be measured too).
  say("[2" + of + "the disk's own fdatasync latency: a bare probe for " +
      std::to_string(static_cast<int>(duration)) + " s ...");
  const SyncSummary disk = probe_fdatasync(work, duration);
  result["disk_probe"] = disk.json();
  const double stall_s = std::max(3.0, duration / 2);
  say("      and the CPU's own stalls: a spinning thread per core for " +
      std::to_string(static_cast<int>(stall_s)) + " s ...");
  const StallSummary stalls = probe_cpu_stalls(cores, stall_s);
  result["cpu_stall_probe"] = stalls.json();

  // 3..6: one gateway, 500k registered devices.
  Gw gw;
  if (auto r = start_gateway(gw, work, "gateway", devices, shards); !r.ok()) {
    return failure(r.error().message);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const uint64_t rss_idle = rss_bytes(gw.child.pid);
  result["memory"] = {{"rss_idle_bytes", rss_idle},
                      {"bytes_per_registered_device", static_cast<double>(rss_idle) / devices}};

  say("[3" + of + "gateway, single-report datagrams, acks on, durability batch, store on ...");
  Drops d0 = drops_now(gw);
  auto single = run_simulator(sim(gw.report_port, devices, 0, duration, 1, true));
  if (!single.ok()) return failure("single-report phase: " + single.error().message);
  // Also what the log writes per report, for the disk floor of the latency phase.
  double log_bytes_per_report = 0;
  Drops d1;
  {
    const runtime::Totals t = totals_of(gw.http_port);
    d1 = drops_in(t);
    if (t.reports_accepted > 0) {
      log_bytes_per_report =
          static_cast<double>(t.log_appended_bytes) / static_cast<double>(t.reports_accepted);
    }
  }
  result["single"] = Json::parse(single->json());
  result["single"]["gateway_drops"] = drops_json(d0, d1);
  result["single"]["ratio_to_raw"] = single->acked_rate / raw_rate;

  say("[4" + of + "gateway, batched datagrams (32 reports each), acks on ...");
  d0 = drops_now(gw);
  auto batched = run_simulator(sim(gw.report_port, devices, 0, duration, 32, true));
  if (!batched.ok()) return failure("batched phase: " + batched.error().message);
  d1 = drops_now(gw);
  result["batched"] = Json::parse(batched->json());
  result["batched"]["gateway_drops"] = drops_json(d0, d1);

  // The batched phase outruns the store on purpose; let it drain (and merge the chunks it
  // sealed) before measuring latency and lag, so each phase starts from a caught-up gateway.
  // The drain time is reported.
  const double drain_s = wait_caught_up(gw, 300);
  result["batched"]["store_drain_s"] = drain_s;
  say("      store drained (and merged) the batched backlog in " + std::to_string(drain_s) + " s");

  // The disk alone under the log's write rate of the latency phase, with the gateway idle
  // (caught up): the floor under that phase's ack latency.
  say("      the disk's floor under it: group commit at the log's write rate for " +
      std::to_string(static_cast<int>(duration)) + " s, no load ...");
  const DiskFloor floor =
      probe_disk_floor(work, single->acked_rate / 2 * log_bytes_per_report, duration);
  result["disk_floor"] = {{"log_bytes_per_report", log_bytes_per_report},
                          {"bytes_per_s", floor.bytes_per_s},
                          {"flushes", floor.flushes},
                          {"ack_floor_p50_ms", floor.p50_ms},
                          {"ack_floor_p99_ms", floor.p99_ms},
                          {"ack_floor_p999_ms", floor.p999_ms},
                          {"share_of_time_over_2ms", floor.share_over_2ms},
                          {"max_flush_ms", floor.max_flush_ms}};

  say("[5" + of + "ack latency at half the single-report rate for " +
      std::to_string(static_cast<int>(latency_duration)) + " s ...");
  auto latency = latency_phase(o, gw, single->acked_rate / 2, result);
  if (!latency.ok()) return failure(latency.error().message);
  const LatencyPhase& lat = *latency;

  wait_caught_up(gw, 300);
  say("[6" + of + "store lag at the single-report rate for " +
      std::to_string(static_cast<int>(lag_duration)) + " s ...");
  const LagPhase lag = lag_phase(o, gw, single->acked_rate, result);
  const uint64_t rss_end = rss_bytes(gw.child.pid);
  result["memory"]["rss_end_bytes"] = rss_end;
  gw.child.terminate();

  auto comparison = comparison_phases(o, single->acked_rate, raw_rate, of, say, result);
  if (!comparison.ok()) return failure(comparison.error().message);

  if (remove_work) fs::remove_all(work);

  if (json_only) {
    std::printf("%s\n", result.dump(2).c_str());
    return 0;
  }
  print_table({.shards = shards,
               .cores = cores,
               .raw_rate = raw_rate,
               .single = *single,
               .per_core = comparison->per_core.ok() ? &*comparison->per_core : nullptr,
               .batched = *batched,
               .half = lat.half,
               .half_none = comparison->half_none.ok() ? &*comparison->half_none : nullptr,
               .lag = lag.lag.ok() ? &*lag.lag : nullptr,
               .inside = lat.inside,
               .log_syncs = lat.log_syncs,
               .floor = floor,
               .disk = disk,
               .stalls = stalls,
               .max_lag = lag.max_lag,
               .drain_s = drain_s,
               .rss_idle = rss_idle,
               .devices = devices,
               .allocs = lat.allocs,
               .accepted = lat.accepted},
              result);
  return 0;
}

void register_extension(runtime::Extensions& extensions) {
  extensions.add_command(
      {.name = "bench",
       .summary = "measure the raw loopback ceiling and the gateway under the same load",
       .run = [](int argc, char** argv, const runtime::CommandContext& context) {
         return cmd_bench(argc, argv, context);
       }});
  // Hidden (no summary): a bare recvmmsg receiver that discards, the raw loopback ceiling.
  extensions.add_command({.name = "bench-receiver",
                          .summary = {},
                          .run = [](int argc, char** argv, const runtime::CommandContext&) {
                            return cmd_bench_receiver(argc, argv);
                          }});
}

}  // namespace tianhe::tools::bench
