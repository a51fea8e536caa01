// End-to-end benchmark of the poller: register-block reads per second decoded into durable
// reports, against the simulator's server on loopback, next to that server's own limit measured
// in the same run by a plain client (no decoding, no log) on the same connections count.
//
//   modbus_poll_bench [--devices 200] [--blocks 8] [--in-flight 8] [--seconds 5]
//                     [--shards 1] [--server-threads 1] [--json]
//
// One phase per function: the server, the plain client, the gateway (shards with real logs in
// batch durability, ModbusIngest on each), the table.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "log/shard_log.h"
#include "pipeline/registry.h"
#include "protocols/modbus/modbus_ingest.h"
#include "protocols/modbus/modbus_server.h"
#include "runtime/shard.h"

namespace {

using namespace tianhe;                     // NOLINT(google-build-using-namespace)
using namespace tianhe::protocols::modbus;  // NOLINT(google-build-using-namespace)

struct Options {
  uint64_t devices = 200;
  uint64_t blocks = 8;
  uint64_t in_flight = 8;
  double seconds = 5;
  uint64_t shards = 1;
  uint64_t server_threads = 1;
};

struct Figures {
  double plain_reads_per_s = 0;    ///< the server's limit: a plain client's responses/s
  double gateway_reads_per_s = 0;  ///< blocks answered and decoded per second
  double reports_per_s = 0;        ///< durable reports per second
  uint64_t malformed = 0, timeouts = 0, rejected = 0;
};

constexpr uint16_t kRegistersPerBlock = 2;  // as the gateway reads: one float32

// Phase 2: D connections, each with `in_flight` FC 3 reads of 2 registers outstanding, for
// `seconds`; every complete response is counted and the next request sent at once.
double plain_client(const Options& o, uint16_t port) {
  const int ep = epoll_create1(0);
  std::vector<int> fds;
  std::vector<std::vector<uint8_t>> bufs(o.devices);
  std::vector<size_t> lens(o.devices, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Requests answered by one read are replaced by one send, as the gateway does.
  uint8_t req[kMaxInFlight * kReadRequestBytes];
  auto send_many = [&](int fd, uint16_t first_tid, uint64_t count) {
    for (uint64_t k = 0; k < count; ++k) {
      encode_read_request(
          {.transaction = static_cast<uint16_t>(first_tid + k),
           .unit = 1,
           .table = Table::kHolding,
           .address = 0,
           .quantity = kRegistersPerBlock},
          std::span<uint8_t, kReadRequestBytes>(req + k * kReadRequestBytes, kReadRequestBytes));
    }
    const size_t bytes = count * kReadRequestBytes;
    return ::send(fd, req, bytes, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes);
  };
  for (uint64_t i = 0; i < o.devices; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      std::perror("plain client connect");
      return 0;
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    fds.push_back(fd);
    bufs[i].resize(8192);
    send_many(fd, 0, o.in_flight);
  }
  uint64_t responses = 0;
  const int64_t start = core::mono_ns();
  const int64_t end = start + static_cast<int64_t>(o.seconds * 1e9);
  epoll_event evs[256];
  while (core::mono_ns() < end) {
    const int n = epoll_wait(ep, evs, 256, 10);
    for (int e = 0; e < n; ++e) {
      const uint64_t i = evs[e].data.u64;
      const ssize_t r = ::recv(fds[i], bufs[i].data() + lens[i], bufs[i].size() - lens[i], 0);
      if (r <= 0) continue;
      lens[i] += static_cast<size_t>(r);
      size_t off = 0;
      uint64_t answered = 0;
      uint16_t last_tid = 0;
      for (;;) {
        MbapHeader h;
        size_t adu = 0;
        if (split_adu({bufs[i].data() + off, lens[i] - off}, h, adu) != ResponseStatus::kOk) break;
        off += adu;
        ++responses;
        ++answered;
        last_tid = h.transaction;
      }
      if (answered > 0) send_many(fds[i], static_cast<uint16_t>(last_tid + 1), answered);
      std::memmove(bufs[i].data(), bufs[i].data() + off, lens[i] - off);
      lens[i] -= off;
    }
  }
  const double elapsed = static_cast<double>(core::mono_ns() - start) / 1e9;
  for (int fd : fds) ::close(fd);
  ::close(ep);
  return static_cast<double>(responses) / elapsed;
}

// The model: `blocks` float32 metrics 20 registers apart (more than max_gap: one read each).
std::shared_ptr<const pipeline::Registry> registry(const Options& o) {
  pipeline::ModelSpec m;
  m.name = "bench_plc";
  for (uint64_t b = 0; b < o.blocks; ++b) {
    pipeline::MetricSpec s;
    s.name = "v" + std::to_string(b);
    ModbusMetricOptions opt;
    opt.table = Table::kHolding;
    opt.address = static_cast<uint32_t>(b * 20);
    opt.type = DataType::kFloat32;
    opt.has_type = true;
    s.options.emplace_back("modbus", std::any(opt));
    m.metrics.push_back(s);
  }
  pipeline::DeviceRange d{
      .first_id = 1, .count = o.devices, .tenant = "bench", .model = "bench_plc"};
  auto r = pipeline::Registry::build({}, std::span(&m, 1), std::span(&d, 1));
  if (!r.ok()) {
    std::fprintf(stderr, "registry: %s\n", r.error().message.c_str());
    std::exit(1);
  }
  return *r;
}

// Phase 3: the gateway's data plane (shards, logs, pollers) against the server.
Figures gateway(const Options& o, uint16_t port) {
  Figures f;
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("modbus-bench-" + std::to_string(getpid())))
          .string();
  auto reg = registry(o);
  ModbusConfig c;
  c.enabled = true;
  c.in_flight = static_cast<uint32_t>(o.in_flight);
  c.request_timeout_ns = 2 * config::kSec;
  for (uint64_t i = 0; i < o.devices; ++i) {
    ModbusDevice d;
    d.device = i + 1;
    d.address = {"127.0.0.1", port};
    d.interval_ns = config::kMs;  // shorter than a cycle takes: every device polls flat out
    c.devices.push_back(d);
  }
  auto shared = ModbusShared::build(c, reg);
  if (!shared.ok()) {
    std::fprintf(stderr, "modbus: %s\n", shared.error().message.c_str());
    std::exit(1);
  }
  log::LogConfig lc;
  lc.dir = dir;
  lc.durability = log::Durability::kBatch;
  std::vector<log::LogStats> log_stats(o.shards);
  std::vector<std::unique_ptr<ModbusStats>> stats;
  std::vector<std::unique_ptr<runtime::Shard>> shards;
  for (uint32_t s = 0; s < o.shards; ++s) {
    auto l = log::ShardLog::open(lc, s, &log_stats[s]);
    if (!l.ok()) {
      std::fprintf(stderr, "log: %s\n", l.error().message.c_str());
      std::exit(1);
    }
    shards.push_back(std::make_unique<runtime::Shard>(s, std::move(*l), reg));
    stats.push_back(std::make_unique<ModbusStats>());
    auto ing =
        ModbusIngest::create(*shared, s, static_cast<uint32_t>(o.shards), stats.back().get());
    shards.back()->add_ingest(std::move(*ing));
  }
  for (auto& s : shards) s->start();
  auto totals = [&](uint64_t& reads, uint64_t& durable) {
    reads = durable = 0;
    for (auto& s : stats) {
      reads += s->responses[static_cast<size_t>(Table::kHolding)].get();
      durable += s->reports_durable.get();
    }
  };
  std::this_thread::sleep_for(std::chrono::seconds(1));  // connect and warm up
  uint64_t r0 = 0, d0 = 0, r1 = 0, d1 = 0;
  totals(r0, d0);
  const int64_t t0 = core::mono_ns();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  totals(r1, d1);
  const double elapsed = static_cast<double>(core::mono_ns() - t0) / 1e9;
  for (auto& s : shards) s->stop();
  f.gateway_reads_per_s = static_cast<double>(r1 - r0) / elapsed;
  f.reports_per_s = static_cast<double>(d1 - d0) / elapsed;
  for (auto& s : stats) {
    for (const auto& m : s->malformed) f.malformed += m.get();
    f.timeouts += s->timeouts.get();
    for (const auto& r : s->pipeline.reports_rejected) f.rejected += r.get();
  }
  shards.clear();
  std::filesystem::remove_all(dir);
  return f;
}

void print(const Options& o, const Figures& f, bool json) {
  if (json) {
    std::printf(
        "{\"devices\":%llu,\"blocks_per_device\":%llu,\"in_flight\":%llu,\"shards\":%llu,"
        "\"server_threads\":%llu,\"server_limit_reads_per_s\":%.0f,\"gateway_reads_per_s\":%.0f,"
        "\"durable_reports_per_s\":%.0f,\"ratio\":%.3f,\"malformed\":%llu,\"timeouts\":%llu,"
        "\"rejected\":%llu}\n",
        static_cast<unsigned long long>(o.devices), static_cast<unsigned long long>(o.blocks),
        static_cast<unsigned long long>(o.in_flight), static_cast<unsigned long long>(o.shards),
        static_cast<unsigned long long>(o.server_threads), f.plain_reads_per_s,
        f.gateway_reads_per_s, f.reports_per_s,
        f.plain_reads_per_s > 0 ? f.gateway_reads_per_s / f.plain_reads_per_s : 0,
        static_cast<unsigned long long>(f.malformed), static_cast<unsigned long long>(f.timeouts),
        static_cast<unsigned long long>(f.rejected));
    return;
  }
  std::printf(
      "modbus poll bench: %llu devices x %llu blocks (one float32 read each), "
      "%llu in flight, %llu shard(s), %llu server thread(s)\n",
      static_cast<unsigned long long>(o.devices), static_cast<unsigned long long>(o.blocks),
      static_cast<unsigned long long>(o.in_flight), static_cast<unsigned long long>(o.shards),
      static_cast<unsigned long long>(o.server_threads));
  std::printf("  server limit (plain client)   %10.0f reads/s\n", f.plain_reads_per_s);
  std::printf("  gateway                       %10.0f reads/s decoded  (%.2fx the limit)\n",
              f.gateway_reads_per_s,
              f.plain_reads_per_s > 0 ? f.gateway_reads_per_s / f.plain_reads_per_s : 0);
  std::printf("  durable reports               %10.0f reports/s\n", f.reports_per_s);
  std::printf("  malformed %llu, timeouts %llu, rejected %llu\n",
              static_cast<unsigned long long>(f.malformed),
              static_cast<unsigned long long>(f.timeouts),
              static_cast<unsigned long long>(f.rejected));
}

}  // namespace

int main(int argc, char** argv) {
  auto args =
      core::Args::parse(argc, argv, 1, {"json"},
                        {"devices", "blocks", "in-flight", "seconds", "shards", "server-threads"});
  if (!args.ok()) {
    std::fprintf(stderr, "modbus_poll_bench: %s\n", args.error().message.c_str());
    return 2;
  }
  Options o;
  auto devices = args->u64("devices", o.devices, 1, 20000);
  auto blocks = args->u64("blocks", o.blocks, 1, 64);
  auto in_flight = args->u64("in-flight", o.in_flight, 1, kMaxInFlight);
  auto shards = args->u64("shards", o.shards, 1, 64);
  auto threads = args->u64("server-threads", o.server_threads, 1, 64);
  auto seconds = args->seconds("seconds", o.seconds, 0.1);
  for (const auto* r : {&devices, &blocks, &in_flight, &shards, &threads}) {
    if (!r->ok()) {
      std::fprintf(stderr, "modbus_poll_bench: %s\n", r->error().message.c_str());
      return 2;
    }
  }
  if (!seconds.ok()) return 2;
  o.devices = *devices;
  o.blocks = *blocks;
  o.in_flight = *in_flight;
  o.shards = *shards;
  o.server_threads = *threads;
  o.seconds = *seconds;
  auto server = ModbusServer::start({.threads = static_cast<uint32_t>(o.server_threads)});
  if (!server.ok()) {
    std::fprintf(stderr, "modbus_poll_bench: %s\n", server.error().message.c_str());
    return 1;
  }
  Figures f = gateway(o, (*server)->port());
  f.plain_reads_per_s = plain_client(o, (*server)->port());
  print(o, f, args->has("json"));
  return 0;
}
