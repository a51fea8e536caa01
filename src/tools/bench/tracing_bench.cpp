// `tianhe bench --tracing`: what tracing costs. The same report-protocol load (acks on,
// durability batch, the store on) runs against gateways that differ only in their [tracing]
// table: no endpoint (no spans are recorded; fates are, as always), the default sample rate
// with an endpoint, and every report sampled. The endpoint is an OTLP/HTTP receiver this
// process runs, which answers 200 to every export and decodes nothing, so the receiver's own
// work does not land on the gateway's side of the ledger.
//
// Two figures per mode, because on a shared 2-core machine the simulator competes with the
// gateway: the acknowledged rate (what the issue's "maximum throughput" means, with the fleet
// as fast as it goes), and the gateway's CPU time per acknowledged report (every thread: the
// shards record spans, the exporter thread encodes and posts them). The cost of a span is the
// extra CPU per report divided by the spans exported per report (a dropped span is recorded but
// never sent: counting it would flatter the cost). Modes are interleaved over
// rounds and the best run of each kept, so a burst of noise does not land on one mode only.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/args.h"
#include "protocols/report/report_simulator.h"
#include "tools/bench/bench_cmd.h"
#include "tools/bench/bench_gateway.h"

namespace tianhe::tools::bench {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

/// An OTLP/HTTP receiver on 127.0.0.1 (port 0) that reads each request's head, discards its
/// body in the kernel (recv with MSG_TRUNC: the bytes are never copied out) and answers 200
/// with an empty body: the cheapest endpoint an exporter can have. Its thread's CPU time is
/// read so that the bench can say which part of the cost is the receiver's. Up to kMaxClients
/// connections (the exporter keeps one alive); one thread, poll().
class NullCollector {
 public:
  NullCollector() = default;
  NullCollector(const NullCollector&) = delete;
  NullCollector& operator=(const NullCollector&) = delete;
  ~NullCollector() { stop(); }

  /// Binds and starts the thread.
  Result<void> start() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) return make_error("the OTLP receiver: socket: " + errno_text(errno));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return make_error("the OTLP receiver: bind 127.0.0.1:0: " + errno_text(errno));
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
    if (pthread_getcpuclockid(thread_.native_handle(), &clock_) != 0) clock_ = -1;
    return {};
  }
  /// Stops the thread and closes every socket.
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    for (auto& c : clients_) ::close(c.fd);
    clients_.clear();
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
  }
  uint16_t port() const { return port_; }
  /// Export requests answered so far.
  uint64_t requests() const { return requests_.load(); }
  /// Their body bytes.
  uint64_t body_bytes() const { return bytes_.load(); }
  /// The CPU time its thread has used so far, seconds (0 when it cannot be read).
  double cpu_s() const {
    timespec ts{};
    if (clock_ == -1 || ::clock_gettime(clock_, &ts) != 0) return 0;
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
  }

 private:
  static constexpr size_t kMaxClients = 16;
  static constexpr uint64_t kMaxRequest = 64u << 20;  // the exporter's batches are far smaller
  static constexpr size_t kMaxHead = 64u << 10;

  struct Client {
    int fd = -1;
    std::string in;          ///< the request head read so far
    uint64_t body_left = 0;  ///< body bytes still to discard
    bool in_body = false;    ///< the head is read; discarding the body
    bool continued = false;  ///< "100 Continue" sent for the request in progress
  };

  void run() {
    std::vector<pollfd> fds;
    while (!stop_.load()) {
      fds.clear();
      fds.push_back({listen_fd_, POLLIN, 0});
      for (const auto& c : clients_) fds.push_back({c.fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
      if ((fds[0].revents & POLLIN) != 0) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0 && clients_.size() < kMaxClients) {
          clients_.push_back({fd, {}, 0, false, false});
        } else if (fd >= 0) {
          ::close(fd);
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        auto it = std::find_if(clients_.begin(), clients_.end(),
                               [&](const Client& c) { return c.fd == fds[i].fd; });
        if (it != clients_.end() && !serve(*it)) {
          ::close(it->fd);
          clients_.erase(it);
        }
      }
    }
  }

  /// Reads what `c` sent and answers every whole request in it; false when it is done with.
  bool serve(Client& c) {
    if (c.in_body) {
      // The body, discarded by the kernel (tcp(7): MSG_TRUNC) without a copy.
      const ssize_t n = ::recv(c.fd, nullptr, std::min<uint64_t>(c.body_left, 1u << 30),
                               MSG_TRUNC | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n <= 0) return false;
      c.body_left -= static_cast<uint64_t>(n);
      return c.body_left > 0 || answer(c);
    }
    // The head: read in small pieces, so that little of the body after it is copied.
    char buf[4096];
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;
    c.in.append(buf, static_cast<size_t>(n));
    for (;;) {
      const size_t head_end = c.in.find("\r\n\r\n");
      if (head_end == std::string::npos) return c.in.size() < kMaxHead;
      std::string head = c.in.substr(0, head_end);
      std::transform(head.begin(), head.end(), head.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      uint64_t body = 0;
      if (const size_t at = head.find("\ncontent-length:"); at != std::string::npos) {
        body = std::strtoull(head.c_str() + at + 16, nullptr, 10);
      }
      if (body > kMaxRequest) return false;
      const size_t have = c.in.size() - (head_end + 4);
      if (have < body) {
        // libcurl waits for this before a large body (RFC 9110 §10.1.1).
        if (!c.continued && head.find("\nexpect: 100-continue") != std::string::npos) {
          c.continued = true;
          if (!send_all(c.fd, "HTTP/1.1 100 Continue\r\n\r\n")) return false;
        }
        c.in.clear();
        c.in_body = true;
        c.body_left = body - have;
        bytes_.fetch_add(body);
        return true;
      }
      c.in.erase(0, head_end + 4 + body);
      bytes_.fetch_add(body);
      if (!answer(c)) return false;
    }
  }

  /// Answers the request whose body has been read.
  bool answer(Client& c) {
    c.in_body = false;
    c.continued = false;
    requests_.fetch_add(1);
    return send_all(c.fd,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                    "Content-Length: 0\r\n\r\n");
  }

  static bool send_all(int fd, const char* text) {
    const size_t len = std::strlen(text);
    for (size_t done = 0; done < len;) {
      const ssize_t n = ::send(fd, text + done, len - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::vector<Client> clients_;
  std::atomic<uint64_t> requests_{0}, bytes_{0};
  clockid_t clock_ = -1;
};

/// What the command line asked for.
struct TracingBenchOptions {
  double seconds = 5;
  uint64_t devices = 10000;
  uint32_t shards = 1, cores = 1, rounds = 2, batch = 32;
  bool json_only = false, remove_work = false;
  std::string work;
};

constexpr const char* kHelp =
    R"(tianhe bench --tracing — what tracing costs, per report and per span

Runs the report protocol's simulator as fast as it goes (acks on, durability batch, the store
on) against gateways that differ only in [tracing]:
  off      no endpoint: no spans are recorded (report fates are kept, as always)
  default  an endpoint and the default sample_rate (0.01)
  all      an endpoint and sample_rate = 1.0, no span limit
The endpoint is an OTLP/HTTP receiver this command runs on loopback (it answers 200 and decodes
nothing). Each mode runs with single-report datagrams and with batches of --batch reports, in
--rounds interleaved rounds; the best run of each is kept. For each it prints the acknowledged
rate, the gateway's CPU time per report (every thread), the spans exported per report and the
share dropped on the way, and the cost against "off": the throughput lost, the CPU added, and
the CPU per exported span; then that CPU split by thread (shards, exporter) and the OTLP
receiver's own CPU.
Targets (issue 21): default ≤ 3 %, all ≤ 15 % of the throughput without tracing.

Options:
  --duration S     each run's length (default 5 s)
  --rounds N       interleaved rounds (default 2)
  --batch N        reports per datagram of the batched load (default 32; 1: single only)
  --devices N      registered devices (default 10000)
  --shards N       the gateway's shards (default: cores - 1, at least 1)
  --work-dir DIR   where the gateways keep their data (default: a temporary directory, removed)
  --json           print one JSON object (progress goes to stderr)
)";

/// Parses the command line into `o`; returns -1 to go on, else the exit status.
int tracing_options(int argc, char** argv, TracingBenchOptions& o) {
  if (core::wants_help(argc, argv)) {
    std::puts(kHelp);
    return 0;
  }
  auto args = core::Args::parse(argc, argv, 2, {"tracing", "json"},
                                {"duration", "devices", "shards", "rounds", "batch", "work-dir"});
  if (!args.ok()) return core::usage_error("bench", args.error().message);
  o.cores = std::max(1u, std::thread::hardware_concurrency());
  auto duration = args->seconds("duration", 5, 0.5);
  auto devices = args->u64("devices", 10000, 1, 100'000'000);
  auto shards = args->u64("shards", std::max(1u, o.cores - 1), 1, 1024);
  auto rounds = args->u64("rounds", 2, 1, 100);
  auto batch = args->u64("batch", 32, 1, 1000);
  for (const auto* r : {&devices, &shards, &rounds, &batch}) {
    if (!r->ok()) return core::usage_error("bench", r->error().message);
  }
  if (!duration.ok()) return core::usage_error("bench", duration.error().message);
  o.seconds = *duration;
  o.devices = *devices;
  o.shards = static_cast<uint32_t>(*shards);
  o.rounds = static_cast<uint32_t>(*rounds);
  o.batch = static_cast<uint32_t>(*batch);
  o.json_only = args->has("json");
  o.work = args->str("work-dir");
  o.remove_work = o.work.empty();
  if (o.work.empty()) {
    char tmpl[] = "/tmp/tianhe-bench-tracing-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return core::usage_error("bench", "cannot make a work dir");
    o.work = tmpl;
  }
  return -1;
}

/// One mode's [tracing] table.
struct Mode {
  const char* name;
  const char* what;
  std::string toml;
};

/// One run: a mode under a load.
struct Run {
  double acked_rate = 0;
  uint64_t acked = 0, lost = 0;
  double gateway_cpu_s = 0, shard_cpu_s = 0, exporter_cpu_s = 0;
  double receiver_cpu_s = 0;                   ///< the OTLP receiver's thread (in this process)
  double fleet_cpu_s = 0;                      ///< this process less the receiver: the simulator
  std::map<std::string, double> thread_cpu_s;  ///< the gateway's threads by name, over the run
  uint64_t traced = 0, exported = 0, dropped = 0;  ///< reports traced; spans exported, dropped
  std::string error;
  double cpu_ns_per_report() const {
    return acked > 0 ? gateway_cpu_s * 1e9 / static_cast<double>(acked) : 0;
  }
  /// `cpu_s` per acknowledged report, ns.
  double per_report_ns(double cpu_s) const {
    return acked > 0 ? cpu_s * 1e9 / static_cast<double>(acked) : 0;
  }
  /// Spans the receiver got per acknowledged report: the cost per span is over these, as a
  /// span dropped on the way (a full ring or queue) is recorded but never encoded or sent.
  double spans_per_report() const {
    return acked > 0 ? static_cast<double>(exported) / static_cast<double>(acked) : 0;
  }
  /// Of the spans recorded, the share dropped before the receiver.
  double dropped_share() const {
    return exported + dropped > 0
               ? static_cast<double>(dropped) / static_cast<double>(exported + dropped)
               : 0;
  }
  Json json() const {
    Json j = {{"acked_rate", acked_rate},
              {"acked", acked},
              {"lost", lost},
              {"gateway_cpu_s", gateway_cpu_s},
              {"shard_cpu_s", shard_cpu_s},
              {"exporter_cpu_s", exporter_cpu_s},
              {"receiver_cpu_s", receiver_cpu_s},
              {"fleet_cpu_s", fleet_cpu_s},
              {"cpu_ns_per_report", cpu_ns_per_report()},
              {"reports_traced", traced},
              {"spans_exported", exported},
              {"spans_dropped", dropped},
              {"spans_per_report", spans_per_report()}};
    for (const auto& [thread, cpu] : thread_cpu_s) j["thread_cpu_s"][thread] = cpu;
    if (!error.empty()) j["error"] = error;
    return j;
  }
};

/// This process's CPU time so far (every thread), seconds.
double own_cpu_s() {
  timespec ts{};
  if (::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

uint64_t counter(const std::string& page, const std::string& name) {
  uint64_t sum = 0;
  for (const auto& [label, n] : counter_by_label(page, name, "reason")) sum += n;
  return sum;
}

/// Runs `mode` once: a fresh gateway, the simulator for o.seconds, then a wait for the
/// exporter to post what the run recorded (its CPU counts).
Run run_mode(const TracingBenchOptions& o, const Mode& mode, uint32_t batch,
             const std::string& name, const NullCollector& collector) {
  Run r;
  Gw gw;
  if (auto s = start_gateway(gw, o.work, name, o.devices, o.shards, "batch", mode.toml); !s.ok()) {
    r.error = s.error().message;
    return r;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const CpuTimes before = cpu_times(gw.child.pid);
  const double receiver_before = collector.cpu_s();
  const double self_before = own_cpu_s();
  auto s =
      protocols::report::run_simulator(sim(gw.report_port, o.devices, 0, o.seconds, batch, true));
  const CpuTimes shards_after = cpu_times(gw.child.pid);
  if (!s.ok()) {
    r.error = s.error().message;
    return r;
  }
  // The exporter posts at least once per export_interval (1 s): wait for the spans of the
  // run to leave, so their encoding and posting are counted.
  std::string page;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    page = http_get(gw.http_port, "/metrics");
    if (counter(page, "tianhe_tracing_queue_spans") == 0 &&
        counter(page, "tianhe_tracing_ring_spans") == 0 && i >= 12) {
      break;
    }
  }
  const CpuTimes after = cpu_times(gw.child.pid);
  r.receiver_cpu_s = collector.cpu_s() - receiver_before;
  r.fleet_cpu_s = own_cpu_s() - self_before - r.receiver_cpu_s;
  r.exporter_cpu_s = after.exporter - before.exporter;
  for (const auto& [thread, cpu] : after.threads) {
    const auto it = before.threads.find(thread);
    r.thread_cpu_s[thread] = cpu - (it != before.threads.end() ? it->second : 0);
  }
  r.acked = s->acked_ok;
  r.lost = s->lost;
  r.acked_rate = s->acked_rate;
  r.gateway_cpu_s = after.process - before.process;
  r.shard_cpu_s = shards_after.shards - before.shards;
  r.traced = counter(page, "tianhe_tracing_reports_traced_total");
  r.exported = counter(page, "tianhe_tracing_spans_exported_total");
  r.dropped = counter(page, "tianhe_tracing_spans_dropped_total");
  gw.child.terminate();
  std::error_code ec;
  fs::remove_all(o.work + "/" + name, ec);
  return r;
}

/// The best of a mode's runs: the highest acked rate, and separately the least CPU per report.
struct Best {
  Run rate;  ///< the run with the highest acked rate
  Run cpu;   ///< the run with the least CPU per report
};

Best best_of(const std::vector<Run>& runs) {
  Best b;
  for (const auto& r : runs) {
    if (!r.error.empty() || r.acked == 0) continue;
    if (b.rate.acked == 0 || r.acked_rate > b.rate.acked_rate) b.rate = r;
    if (b.cpu.acked == 0 || r.cpu_ns_per_report() < b.cpu.cpu_ns_per_report()) b.cpu = r;
  }
  return b;
}

/// The CPU ledger of one mode against "off" (per report, ns; `b` and `off`: least-CPU runs):
/// where tracing's CPU goes, and the throughput cost the receiver's CPU alone accounts for.
struct Ledger {
  double shard_ns_per_span = 0;     ///< the shard threads' added CPU over the spans
  double exporter_ns_per_span = 0;  ///< the exporter thread's CPU over the spans
  double receiver_ns_per_report = 0;
  double receiver_floor = 0;  ///< receiver CPU / (off's gateway + fleet CPU + receiver CPU)
};

Ledger ledger(const Run& b, const Run& off) {
  Ledger g;
  const double spans = b.spans_per_report();
  if (spans > 0) {
    g.shard_ns_per_span =
        (b.per_report_ns(b.shard_cpu_s) - off.per_report_ns(off.shard_cpu_s)) / spans;
    g.exporter_ns_per_span = b.per_report_ns(b.exporter_cpu_s) / spans;
  }
  g.receiver_ns_per_report = b.per_report_ns(b.receiver_cpu_s);
  // With every core busy the rate is about cores / (CPU per report): a receiver sharing the
  // cores costs this share of the throughput however cheap the gateway's tracing becomes.
  const double total = off.per_report_ns(off.gateway_cpu_s + off.fleet_cpu_s);
  if (total > 0) g.receiver_floor = g.receiver_ns_per_report / (total + g.receiver_ns_per_report);
  return g;
}

}  // namespace

int cmd_bench_tracing(int argc, char** argv) {
  TracingBenchOptions o;
  if (const int status = tracing_options(argc, argv, o); status >= 0) return status;
  auto say = [&](const std::string& s) {
    std::fprintf(o.json_only ? stderr : stdout, "%s\n", s.c_str());
    std::fflush(o.json_only ? stderr : stdout);
  };
  NullCollector collector;
  if (auto s = collector.start(); !s.ok()) {
    std::fprintf(stderr, "tianhe bench: %s\n", s.error().message.c_str());
    return 1;
  }
  const std::string endpoint =
      "endpoint = \"http://127.0.0.1:" + std::to_string(collector.port()) + "/v1/traces\"\n";
  const std::vector<Mode> modes = {
      {"off", "no endpoint (no spans; fates kept)", ""},
      {"default", "sample_rate 0.01", "[tracing]\n" + endpoint},
      {"all", "sample_rate 1.0, no span limit",
       "[tracing]\n" + endpoint +
           "sample_rate = 1.0\nmax_spans_per_second = 100000000\nring_spans = 1048576\n"},
  };
  std::vector<uint32_t> loads = {1};
  if (o.batch > 1) loads.push_back(o.batch);

  Json result;
  result["machine"] = {{"cores", o.cores}};
  result["shards"] = o.shards;
  result["devices"] = o.devices;
  result["duration_s"] = o.seconds;
  result["rounds"] = o.rounds;
  // runs[load][mode]
  std::vector<std::vector<std::vector<Run>>> runs(loads.size(),
                                                  std::vector<std::vector<Run>>(modes.size()));
  const size_t total = loads.size() * modes.size() * o.rounds;
  size_t step = 0;
  char line[256];
  for (uint32_t round = 0; round < o.rounds; ++round) {
    for (size_t l = 0; l < loads.size(); ++l) {
      for (size_t m = 0; m < modes.size(); ++m) {
        ++step;
        std::snprintf(line, sizeof line, "[%zu/%zu] tracing %s (%s), %s, %g s ...", step, total,
                      modes[m].name, modes[m].what,
                      loads[l] == 1 ? "single-report datagrams"
                                    : (std::to_string(loads[l]) + " reports a datagram").c_str(),
                      o.seconds);
        say(line);
        const std::string name = std::string("gateway-") + modes[m].name + "-" +
                                 std::to_string(loads[l]) + "-" + std::to_string(round);
        runs[l][m].push_back(run_mode(o, modes[m], loads[l], name, collector));
        if (!runs[l][m].back().error.empty()) say("      " + runs[l][m].back().error);
      }
    }
  }
  collector.stop();

  std::string table =
      "\nload      mode     acked/s    CPU/report  spans/report  dropped  throughput cost  CPU "
      "cost  "
      "CPU/span\n";
  std::string split =
      "\nload      mode     shard CPU/span  exporter CPU/span  receiver CPU/report  "
      "receiver floor\n";
  bool failed = false;
  for (size_t l = 0; l < loads.size(); ++l) {
    const std::string load = loads[l] == 1 ? "single" : "batch " + std::to_string(loads[l]);
    const Best off = best_of(runs[l][0]);
    Json& jl = result["loads"][load];
    jl["reports_per_datagram"] = loads[l];
    for (size_t m = 0; m < modes.size(); ++m) {
      const Best b = best_of(runs[l][m]);
      Json jm;
      for (const auto& r : runs[l][m]) jm["runs"].push_back(r.json());
      if (b.rate.acked == 0 || off.rate.acked == 0) {
        failed = true;
        jm["error"] = "no run of this mode was measured";
        jl["modes"][modes[m].name] = jm;
        continue;
      }
      const double tput_cost = 1 - b.rate.acked_rate / off.rate.acked_rate;
      const double cpu_cost = b.cpu.cpu_ns_per_report() / off.cpu.cpu_ns_per_report() - 1;
      const double spans = b.cpu.spans_per_report();
      const double ns_per_span =
          spans > 0 ? (b.cpu.cpu_ns_per_report() - off.cpu.cpu_ns_per_report()) / spans : 0;
      jm["acked_rate"] = b.rate.acked_rate;
      jm["cpu_ns_per_report"] = b.cpu.cpu_ns_per_report();
      jm["spans_per_report"] = spans;
      jm["spans_dropped"] = b.cpu.dropped;
      jm["spans_dropped_share"] = b.cpu.dropped_share();
      if (m > 0) {
        jm["throughput_cost"] = tput_cost;
        jm["cpu_cost"] = cpu_cost;
        jm["cpu_ns_per_span"] = ns_per_span;
        const Ledger g = ledger(b.cpu, off.cpu);
        jm["shard_cpu_ns_per_span"] = g.shard_ns_per_span;
        jm["exporter_cpu_ns_per_span"] = g.exporter_ns_per_span;
        jm["receiver_cpu_ns_per_report"] = g.receiver_ns_per_report;
        jm["receiver_throughput_floor"] = g.receiver_floor;
        char srow[160];
        std::snprintf(srow, sizeof srow, "%-9s %-8s %11.0f ns  %14.0f ns  %16.0f ns  %13.1f%%\n",
                      load.c_str(), modes[m].name, g.shard_ns_per_span, g.exporter_ns_per_span,
                      g.receiver_ns_per_report, g.receiver_floor * 100);
        split += srow;
        const double target = m == 1 ? 0.03 : 0.15;
        jm["target"] = target;
        jm["throughput_target_met"] = tput_cost <= target;
      }
      jl["modes"][modes[m].name] = jm;
      char row[256];
      if (m == 0) {
        std::snprintf(row, sizeof row, "%-9s %-8s %9.0f  %8.0f ns  %12.4f\n", load.c_str(),
                      modes[m].name, b.rate.acked_rate, b.cpu.cpu_ns_per_report(), spans);
      } else {
        std::snprintf(row, sizeof row,
                      "%-9s %-8s %9.0f  %8.0f ns  %12.4f  %6.1f%%  %+14.1f%%  %+7.1f%%  %6.0f ns\n",
                      load.c_str(), modes[m].name, b.rate.acked_rate, b.cpu.cpu_ns_per_report(),
                      spans, b.cpu.dropped_share() * 100, tput_cost * 100, cpu_cost * 100,
                      ns_per_span);
      }
      table += row;
    }
  }
  result["otlp_receiver"] = {{"requests", collector.requests()},
                             {"body_bytes", collector.body_bytes()}};
  if (o.remove_work) {
    std::error_code ec;
    fs::remove_all(o.work, ec);
  }
  if (o.json_only) {
    std::printf("%s\n", result.dump().c_str());
  } else {
    table += split;
    table +=
        "\nthroughput cost: the acked rate lost against \"off\" (targets: default 3 %, all 15 %);"
        "\nCPU cost: the gateway's CPU per report added; CPU/span: that CPU over the spans "
        "exported\n(dropped: the share of recorded spans lost on the way, a full ring or queue; "
        "they "
        "cost\nrecording only).\nOn a shared machine the fleet competes with the gateway for the "
        "cores: the "
        "CPU\ncolumns are the steadier figure. The OTLP receiver answered " +
        std::to_string(collector.requests()) + " exports (" +
        std::to_string(collector.body_bytes() >> 10) +
        " KiB).\nshard and exporter CPU/span: the gateway's shard threads (added CPU) and its "
        "exporter\nthread; receiver CPU/report: the OTLP receiver this command runs (it discards "
        "bodies\nin the kernel); receiver floor: the throughput share its CPU takes from the "
        "shared cores\nwhatever the gateway does (receiver / (off's gateway + fleet + "
        "receiver CPU)).\n";
    std::fputs(table.c_str(), stdout);
  }
  return failed ? 1 : 0;
}

}  // namespace tianhe::tools::bench
