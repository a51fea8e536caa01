// `tianhe bench --storm`: the classic failure of the reference design, reproduced on one
// machine. A fleet of MQTT-SN devices (the `tianhe simulate --protocol mqtt_sn` child) loses
// its link all at once and comes back within a second (the child is killed by its PID and a new
// one started with the same devices: every client sends CONNECT again from a new address and
// takes over its old session, allow_takeover on, as after a NAT rebinding), while the
// webhook sink's endpoint is down (its listening socket is closed: connection refused). The
// reference design fell over here: admission of the reconnects, the sink's growing backlog and
// its retries all landed on the same cores and the same memory at once. After --outage seconds
// the endpoint comes back; the bench waits (with a deadline) until the sink's backlog is
// delivered, then checks that every report the gateway accepted reached the endpoint.
//
// The endpoint is a small HTTP/1.1 server of this process (its own thread, 127.0.0.1, port 0):
// it answers 200 to each POST and keeps the (device_id, seq, time_ns) of every record, so
// duplicates (at-least-once delivery may repeat a batch) are counted apart from missing ones.
//
// What is sampled once a second, and why:
// - accepted reports/s (/debug/totals): whether ingest keeps going during the storm;
// - rejected and dropped reports and frames by reason (/metrics: tianhe_reports_rejected_total,
//   tianhe_protocol_mqtt_sn_rejects_total, ..._frames_dropped_total; the totals' input drops):
//   where the storm's load was refused, and whether that refusal was counted (congestion);
// - MQTT-SN sessions held and CONNECTs received/s (/metrics): the storm itself, and the stale
//   sessions of the old addresses that memory holds until their keep-alive expires;
// - the sink's backlog (lag reports and bytes), retries and deliveries (/debug/top's sinks):
//   the outage and the catch-up;
// - the gateway's RSS (/proc/PID/status VmRSS), heap in use (/debug/heap) and CPU (utime +
//   stime, /proc/PID/stat): where memory and time went;
// - shard busy % and log backlog (/debug/top's shards): whether the data plane itself was the
//   bottleneck.
// Over the storm (its start to the drained backlog) it also takes the CPU seconds of each
// gateway thread (/proc/PID/task/*/stat) and the growth of every *_seconds counter and
// histogram sum of /metrics (time spent per stage: decode, batches, fsync, sink writes).
#include "tools/bench/storm_bench.h"

#include <arpa/inet.h>
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
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "runtime/extensions.h"
#include "tools/bench/bench_gateway.h"

namespace tianhe::tools::bench {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

/// Set by SIGINT/SIGTERM: every wait gives up, and the children are ended by their PIDs.
std::atomic<bool> g_interrupted{false};

void on_interrupt(int) {
  g_interrupted.store(true);
}

double since_s(int64_t t0) {
  return static_cast<double>(core::mono_ns() - t0) / 1e9;
}

/// Sleeps `s` seconds, or less when interrupted; false when interrupted.
bool nap(double s) {
  const int64_t end = core::mono_ns() + static_cast<int64_t>(s * 1e9);
  while (core::mono_ns() < end) {
    if (g_interrupted.load()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(
        std::min<int64_t>(50, std::max<int64_t>(1, (end - core::mono_ns()) / 1'000'000))));
  }
  return !g_interrupted.load();
}

// ---------------------------------------------------------------------------------------------
// The webhook's endpoint.

/// (device_id, seq, time_ns) of a record: what makes a report unique. A batch sent again
/// carries the same three; (device_id, seq) alone is not enough, as a new session's seq may
/// start again at 1 (counted apart as seq_collisions: a report the endpoint could not tell
/// from an earlier one of its device).
struct RecordKey {
  uint64_t device = 0, seq = 0, time_ns = 0;
  bool operator==(const RecordKey&) const = default;
};
struct RecordKeyHash {
  size_t operator()(const RecordKey& k) const noexcept {
    return std::hash<uint64_t>{}((k.device * 0x9e3779b97f4a7c15ull ^ k.seq) * 31 + k.time_ns);
  }
};

/// A small HTTP/1.1 endpoint for the webhook sink: 127.0.0.1, port 0, one thread that owns its
/// sockets (poll, 50 ms turns). Each POST with a Content-Length body is answered 200 after its
/// records are counted (RFC 9110 §8.6; the sink never sends a chunked body); anything else it
/// cannot frame is answered and closed. Bounded: 16 KiB of header, 64 MiB of body, 64
/// connections. refuse() closes the listening socket and every connection (connection
/// refused), restore() listens on the same port again.
class Receiver {
 public:
  ~Receiver() { stop(); }

  /// Binds and starts the thread.
  Result<void> start() {
    auto fd = listen_on(0);
    if (!fd.ok()) return fd.error();
    listen_fd_ = *fd;
    listen_fd_state_.store(1);
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
    return {};
  }
  /// The port the sink's URL names.
  uint16_t port() const { return port_; }
  /// The outage: the listener and every connection closed (waits until they are).
  void refuse() { set_open(false); }
  /// The endpoint back on its port; an error when the port could not be bound again.
  Result<void> restore() {
    set_open(true);
    if (listen_fd_state_.load() < 0) {
      return make_error("the endpoint could not listen on 127.0.0.1:" + std::to_string(port_) +
                        " again: " + rebind_error_);
    }
    return {};
  }
  void stop() {
    stopping_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  uint64_t distinct() const { return distinct_.load(); }
  uint64_t records() const { return records_.load(); }
  uint64_t duplicates() const { return records_.load() - distinct_.load(); }
  uint64_t posts() const { return posts_.load(); }
  /// Distinct reports whose (device_id, seq) an earlier one of the same device had.
  uint64_t seq_collisions() const { return seq_collisions_.load(); }
  uint64_t bad_requests() const { return bad_.load(); }
  /// Connections the endpoint took (those made while it was down the kernel refused).
  uint64_t connections() const { return connections_.load(); }

 private:
  static constexpr size_t kMaxHeader = 16u << 10;
  static constexpr size_t kMaxBody = 64u << 20;
  static constexpr size_t kMaxConnections = 64;

  struct Conn {
    int fd = -1;
    std::string in;
  };

  Result<int> listen_on(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return make_error("the endpoint's socket: " + std::string(std::strerror(errno)));
    // The connections this endpoint closed sit in TIME_WAIT on its port: without SO_REUSEADDR
    // it could not listen there again after the outage.
    const int on = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      return make_error("the endpoint's listening socket: " + why);
    }
    return fd;
  }

  void set_open(bool open) {
    want_open_.store(open);
    // The thread acts within a turn (50 ms); a stuck thread is not worth waiting for long.
    const int64_t deadline = core::mono_ns() + 5'000'000'000;
    while (core::mono_ns() < deadline && (listen_fd_state_.load() != 0) != open &&
           !(open && listen_fd_state_.load() < 0)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void close_all() {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    for (Conn& c : conns_) ::close(c.fd);
    conns_.clear();
  }

  void run() {
    std::vector<pollfd> fds;
    std::vector<char> buf(64u << 10);
    while (!stopping_.load()) {
      if (!want_open_.load() && listen_fd_ >= 0) {
        close_all();
        listen_fd_state_.store(0);
      } else if (want_open_.load() && listen_fd_ < 0 && listen_fd_state_.load() == 0) {
        auto fd = listen_on(port_);
        if (fd.ok()) {
          listen_fd_ = *fd;
          listen_fd_state_.store(1);
        } else {
          rebind_error_ = fd.error().message;
          listen_fd_state_.store(-1);
        }
      }
      fds.clear();
      if (listen_fd_ >= 0) fds.push_back({listen_fd_, POLLIN, 0});
      for (const Conn& c : conns_) fds.push_back({c.fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      size_t i = 0;
      if (listen_fd_ >= 0) {
        if ((fds[0].revents & POLLIN) != 0) accept_some();
        i = 1;
      }
      // conns_ may have grown in accept_some(): only those polled are looked at.
      std::vector<int> closing;
      for (; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        Conn* c = find(fds[i].fd);
        if (c == nullptr) continue;
        const ssize_t n = ::recv(c->fd, buf.data(), buf.size(), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
          closing.push_back(c->fd);
          continue;
        }
        if (n > 0) c->in.append(buf.data(), static_cast<size_t>(n));
        if (!serve(*c)) closing.push_back(c->fd);
      }
      for (int fd : closing) {
        ::close(fd);
        std::erase_if(conns_, [fd](const Conn& c) { return c.fd == fd; });
      }
    }
    close_all();
  }

  Conn* find(int fd) {
    for (Conn& c : conns_) {
      if (c.fd == fd) return &c;
    }
    return nullptr;
  }

  void accept_some() {
    for (;;) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) return;
      if (conns_.size() >= kMaxConnections) {
        ::close(fd);
        continue;
      }
      connections_.fetch_add(1);
      conns_.push_back({fd, {}});
    }
  }

  /// Sends a short response whole (loopback: it fits the socket's buffer).
  static void reply(int fd, const char* status) {
    std::string r = std::string("HTTP/1.1 ") + status + "\r\nContent-Length: 0\r\n\r\n";
    size_t off = 0;
    const int64_t deadline = core::mono_ns() + 1'000'000'000;
    while (off < r.size() && core::mono_ns() < deadline) {
      const ssize_t n = ::send(fd, r.data() + off, r.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return;
      }
    }
  }

  /// Answers every complete request in `c.in`; false to close the connection.
  bool serve(Conn& c) {
    for (;;) {
      const size_t end = c.in.find("\r\n\r\n");
      if (end == std::string::npos) return c.in.size() <= kMaxHeader;
      if (end > kMaxHeader) {
        bad_.fetch_add(1);
        reply(c.fd, "431 Request Header Fields Too Large");
        return false;
      }
      // RFC 9112 §6: a body is framed by Content-Length here; Transfer-Encoding is refused.
      std::optional<size_t> length;
      bool chunked = false;
      std::istringstream head(c.in.substr(0, end));
      std::string line;
      std::getline(head, line);  // the request line
      while (std::getline(head, line)) {
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        if (name == "content-length") {
          char* stop = nullptr;
          const unsigned long long v = std::strtoull(line.c_str() + colon + 1, &stop, 10);
          length = static_cast<size_t>(std::min<unsigned long long>(v, kMaxBody + 1));
        } else if (name == "transfer-encoding") {
          chunked = true;
        }
      }
      if (chunked || !length) {
        bad_.fetch_add(1);
        reply(c.fd, "411 Length Required");
        return false;
      }
      if (*length > kMaxBody) {
        bad_.fetch_add(1);
        reply(c.fd, "413 Content Too Large");
        return false;
      }
      if (c.in.size() < end + 4 + *length) return true;
      const bool ok = count(std::string_view(c.in).substr(end + 4, *length));
      posts_.fetch_add(1);
      reply(c.fd, ok ? "200 OK" : "400 Bad Request");
      c.in.erase(0, end + 4 + *length);
    }
  }

  /// Counts the records of a body {"sink":...,"records":[{"device_id":..,"seq":..},...]}.
  bool count(std::string_view body) {
    const Json j = Json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("records") || !j["records"].is_array()) {
      bad_.fetch_add(1);
      return false;
    }
    for (const Json& r : j["records"]) {
      if (!r.is_object()) continue;
      const RecordKey k{r.value("device_id", uint64_t{0}), r.value("seq", uint64_t{0}),
                        r.value("time_ns", uint64_t{0})};
      records_.fetch_add(1);
      if (!seen_.insert(k).second) continue;
      distinct_.fetch_add(1);
      if (!seen_seq_.insert(RecordKey{k.device, k.seq, 0}).second) seq_collisions_.fetch_add(1);
    }
    return true;
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::vector<Conn> conns_;
  std::unordered_set<RecordKey, RecordKeyHash> seen_;      ///< the receiver thread's only
  std::unordered_set<RecordKey, RecordKeyHash> seen_seq_;  ///< (device, seq) of those
  std::string rebind_error_;
  std::atomic<bool> want_open_{true}, stopping_{false};
  std::atomic<int> listen_fd_state_{0};  ///< 1 listening, 0 refusing, -1 could not listen again
  std::atomic<uint64_t> distinct_{0}, records_{0}, posts_{0}, bad_{0}, connections_{0},
      seq_collisions_{0};
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// Samples.

uint64_t rss_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

/// CPU seconds of every live thread of `pid`, by thread name (proc(5): the command in field 2,
/// utime and stime in fields 14 and 15, counted after the last ')').
std::map<std::string, double> cpu_by_thread(pid_t pid) {
  std::map<std::string, double> out;
  std::error_code ec;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path().string() + "/stat");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t open = text.find('('), close = text.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    std::istringstream rest(text.substr(close + 1));
    std::string field;
    for (int i = 3; i < 14; ++i) rest >> field;
    unsigned long long utime = 0, stime = 0;
    if (!(rest >> utime >> stime)) continue;
    out[text.substr(open + 1, close - open - 1)] += static_cast<double>(utime + stime) / tick;
  }
  return out;
}

/// Every *_seconds_sum and *_seconds_total sample of a Prometheus page, summed by name.
std::map<std::string, double> seconds_counters(const std::string& page) {
  std::map<std::string, double> out;
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos) continue;
    const std::string name = line.substr(0, name_end);
    if (!name.ends_with("_seconds_sum") && !name.ends_with("_seconds_total")) continue;
    const size_t sp = line.rfind(' ');
    out[name] += std::strtod(line.c_str() + sp + 1, nullptr);
  }
  return out;
}

uint64_t sum_of(const std::map<std::string, uint64_t>& m) {
  uint64_t n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}

/// One sample of the gateway.
struct Sample {
  double t = 0;  ///< seconds since the gateway was up
  std::string phase;
  uint64_t accepted = 0, input_drops = 0, acks_dropped = 0;
  std::map<std::string, uint64_t> refused;  ///< "counter reason" -> cumulative count
  uint64_t sessions = 0, sessions_created = 0, connects = 0;
  uint64_t lag_reports = 0, lag_bytes = 0, retries = 0, delivered = 0;
  uint64_t post_failures = 0;  ///< webhook POSTs that got no answer (connection refused)
  std::string sink_state;
  uint64_t rss = 0, heap = 0, log_backlog = 0;
  double cpu_s = 0, busy_percent = 0;
  uint64_t received = 0;  ///< distinct records at the endpoint
};

/// The webhook sink's entry of a diagnosis (/debug/top), null when absent.
Json webhook_of(const Json& top) {
  if (!top.is_object() || !top.contains("sinks")) return nullptr;
  for (const Json& s : top["sinks"]) {
    if (s.value("name", "") == "webhook") return s;
  }
  return nullptr;
}

Sample take_sample(const Gw& gw, const Receiver& rx, double t, const std::string& phase) {
  Sample s;
  s.t = t;
  s.phase = phase;
  const std::string page = http_get(gw.http_port, "/metrics");
  for (const char* name : {"tianhe_reports_rejected_total", "tianhe_protocol_mqtt_sn_rejects_total",
                           "tianhe_protocol_mqtt_sn_frames_dropped_total"}) {
    std::string shortname = name;
    shortname = shortname.substr(7, shortname.size() - 7 - 6);  // no "tianhe_", no "_total"
    for (const auto& [reason, n] : counter_by_label(page, name, "reason")) {
      s.refused[shortname + " " + (reason.empty() ? "-" : reason)] += n;
    }
  }
  s.sessions = sum_of(counter_by_label(page, "tianhe_protocol_mqtt_sn_sessions", "shard"));
  s.sessions_created =
      sum_of(counter_by_label(page, "tianhe_protocol_mqtt_sn_sessions_created_total", "shard"));
  s.connects =
      counter_by_label(page, "tianhe_protocol_mqtt_sn_frames_received_total", "type")["connect"];
  s.post_failures =
      counter_by_label(page, "tianhe_sink_webhook_requests_total", "outcome")["failed"];
  const runtime::Totals totals = totals_of(gw.http_port);
  s.accepted = totals.reports_accepted;
  s.input_drops = totals.input_drops;
  s.acks_dropped = totals.acks_dropped;
  const Json top = Json::parse(http_get(gw.http_port, "/debug/top"), nullptr, false);
  if (!top.is_discarded() && top.contains("shards")) {
    double busy = 0;
    for (const Json& sh : top["shards"]) {
      busy += sh.value("busy_percent", 0.0);
      s.log_backlog += sh.value("log_backlog_bytes", uint64_t{0});
    }
    if (!top["shards"].empty()) busy /= static_cast<double>(top["shards"].size());
    s.busy_percent = busy;
  }
  if (const Json w = webhook_of(top); !w.is_null()) {
    s.lag_reports = w.value("lag_reports", uint64_t{0});
    s.lag_bytes = w.value("lag_bytes", uint64_t{0});
    s.retries = w.value("retries", uint64_t{0});
    s.delivered = w.value("delivered", uint64_t{0});
    s.sink_state = w.value("state", "");
  }
  const Json heap = Json::parse(http_get(gw.http_port, "/debug/heap"), nullptr, false);
  if (!heap.is_discarded() && heap.is_object()) {
    // Under a sanitizer malloc is the sanitizer's: its own count is the heap in use.
    if (heap.contains("sanitizer")) {
      s.heap = heap["sanitizer"].value("allocated_bytes", uint64_t{0});
    } else if (heap.contains("mallinfo2")) {
      s.heap = heap["mallinfo2"].value("in_use_bytes", uint64_t{0});
    }
  }
  s.rss = rss_of(gw.child.pid);
  s.cpu_s = cpu_times(gw.child.pid).process;
  s.received = rx.distinct();
  return s;
}

/// One row of the timeline: the rates between two samples.
Json row_of(const Sample& a, const Sample& b) {
  const double dt = std::max(1e-3, b.t - a.t);
  auto rate = [dt](uint64_t x, uint64_t y) {
    return y >= x ? static_cast<double>(y - x) / dt : 0.0;
  };
  Json refused = Json::object();
  double refused_total = 0;
  for (const auto& [k, n] : b.refused) {
    const auto was = a.refused.find(k);
    const uint64_t before = was == a.refused.end() ? 0 : was->second;
    if (n > before) {
      refused[k] = rate(before, n);
      refused_total += rate(before, n);
    }
  }
  const double drops = rate(a.input_drops, b.input_drops);
  return {{"t_s", b.t},
          {"phase", b.phase},
          {"accepted_per_s", rate(a.accepted, b.accepted)},
          {"refused_per_s", refused_total + drops},
          {"refused_by_reason_per_s", refused},
          {"input_drops_per_s", drops},
          {"acks_dropped_per_s", rate(a.acks_dropped, b.acks_dropped)},
          {"sessions", b.sessions},
          {"connects_per_s", rate(a.connects, b.connects)},
          {"sessions_created_per_s", rate(a.sessions_created, b.sessions_created)},
          {"sink_state", b.sink_state},
          {"sink_lag_reports", b.lag_reports},
          {"sink_lag_bytes", b.lag_bytes},
          {"sink_retries_per_s", rate(a.retries, b.retries)},
          {"sink_failed_posts_per_s", rate(a.post_failures, b.post_failures)},
          {"sink_delivered_per_s", rate(a.delivered, b.delivered)},
          {"received_per_s", rate(a.received, b.received)},
          {"rss_bytes", b.rss},
          {"heap_bytes", b.heap},
          {"log_backlog_bytes", b.log_backlog},
          {"cpu_percent", b.cpu_s >= 0 && a.cpu_s >= 0 ? 100.0 * (b.cpu_s - a.cpu_s) / dt : 0.0},
          {"shard_busy_percent", b.busy_percent}};
}

// ---------------------------------------------------------------------------------------------
// The run.

struct StormOptions {
  uint64_t devices = 20000;
  double rate = 2000;    ///< PUBLISHes per second over the fleet
  double duration = 40;  ///< seconds of load after the fleet connected
  double steady = 10;    ///< of which before the storm
  double outage = 15;    ///< seconds the endpoint refuses, from the storm
  double drain_deadline = 120;
  uint64_t connect_rate = 2000;  ///< the gateway's mqtt_sn.connect_rate (its default)
  uint32_t shards = 1;
  bool json_only = false, keep = false, remove_work = false;
  std::string work;
};

constexpr const char* kHelp =
    R"(tianhe bench --storm — a reconnect storm and a sink outage at the same time

Starts one gateway (MQTT-SN ingest, the store, a webhook sink posting to an HTTP endpoint this
command runs on 127.0.0.1) and an MQTT-SN device fleet (`tianhe simulate --protocol mqtt_sn`,
QoS 1, a child process). Phases, printed as they start:
  connect   the fleet connects (admitted at mqtt_sn.connect_rate)
  steady    steady load
  storm     the fleet's process is killed and a new one started at once with the same devices
            (every session reconnects from a new address; allow_takeover is on), and the
            endpoint stops listening (connection refused)
            for --outage seconds
  recovery  the endpoint is back; the load goes on to the end of --duration
  drain     the load stops; waits until the sink's backlog is delivered (with a deadline)
Samples the gateway every second (accepted and refused reports by reason, sessions, connects,
the sink's backlog and retries, RSS, heap, CPU, shard busy %) and prints the timeline and a
summary: peak RSS against idle and what held it, the peak backlog and the time from the
endpoint's return to an empty backlog, the reconnect rate, CPU by thread and time by stage over
the storm, and the at-least-once check (every accepted report reached the endpoint).

Options:
  --devices N        devices in the fleet (default 20000)
  --rate R           PUBLISHes per second over the fleet (default 2000)
  --duration S       seconds of load after the fleet connected (default 40)
  --steady S         of which before the storm (default: a quarter, at most 10)
  --outage S         seconds the endpoint refuses connections, from the storm (default 15)
  --connect-rate N   the gateway's mqtt_sn.connect_rate (default 2000, its own default)
  --drain-deadline S longest wait for the backlog after the load (default 120)
  --shards N         gateway shards (default 1)
  --work DIR         where the gateway keeps its data and logs (default: a new directory under
                     /tmp, removed at the end unless --keep)
  --keep             keep the work directory (its path is printed)
  --json             print the result as one JSON object (progress goes to stderr))";

int storm_options(int argc, char** argv, StormOptions& o) {
  if (core::wants_help(argc, argv)) {
    std::puts(kHelp);
    return 0;
  }
  auto args = core::Args::parse(argc, argv, 2, {"storm", "json", "keep"},
                                {"devices", "rate", "duration", "steady", "outage", "connect-rate",
                                 "drain-deadline", "shards", "work", "work-dir"});
  if (!args.ok()) return core::usage_error("bench", args.error().message);
  auto devices = args->u64("devices", 20000, 1, 1'000'000);
  auto connect_rate = args->u64("connect-rate", 2000, 1, 10'000'000);
  auto shards = args->u64("shards", 1, 1, 256);
  auto duration = args->seconds("duration", 40, 3);
  auto outage = args->seconds("outage", 15, 0.5);
  auto deadline = args->seconds("drain-deadline", 120, 1);
  for (const auto* r : {&devices, &connect_rate, &shards}) {
    if (!r->ok()) return core::usage_error("bench", r->error().message);
  }
  for (const auto* r : {&duration, &outage, &deadline}) {
    if (!r->ok()) return core::usage_error("bench", r->error().message);
  }
  o.devices = *devices;
  o.connect_rate = *connect_rate;
  o.shards = static_cast<uint32_t>(*shards);
  o.duration = *duration;
  o.outage = *outage;
  o.drain_deadline = *deadline;
  auto steady = args->seconds("steady", std::min(10.0, o.duration / 4), 0.5);
  if (!steady.ok()) return core::usage_error("bench", steady.error().message);
  o.steady = *steady;
  if (args->has("rate")) {
    const std::string r = args->str("rate");
    char* end = nullptr;
    o.rate = std::strtod(r.c_str(), &end);
    if (end == r.c_str() || *end != '\0' || !(o.rate > 0)) {
      return core::usage_error("bench", "--rate: give PUBLISHes per second, a number above 0");
    }
  }
  if (o.steady + o.outage + 1 > o.duration) {
    return core::usage_error("bench",
                             "--duration must leave a second of recovery after "
                             "--steady and --outage (steady + outage + 1 <= duration)");
  }
  o.json_only = args->has("json");
  o.keep = args->has("keep");
  o.work = args->has("work") ? args->str("work") : args->str("work-dir");
  if (!o.work.empty()) {
    std::error_code ec;
    fs::create_directories(o.work, ec);
    if (ec)
      return core::usage_error("bench", "--work: cannot create " + o.work + ": " + ec.message());
  } else {
    char tmpl[] = "/tmp/tianhe-bench-storm-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      return core::usage_error("bench", "cannot create a work directory under /tmp");
    }
    o.work = tmpl;
    o.remove_work = !o.keep;
  }
  return -1;
}

/// What this build lacks for the storm ("" when nothing).
std::string missing_parts() {
  const runtime::Extensions& ext = runtime::builtin_extensions();
  bool mqtt_sn = false, webhook = false;
  for (const auto& p : ext.protocols()) mqtt_sn = mqtt_sn || p.name == "mqtt_sn";
  for (const auto& s : ext.sinks()) webhook = webhook || s.name == "webhook";
  std::string why;
  if (!mqtt_sn) why += "the MQTT-SN protocol (protocols/mqtt_sn) is compiled out";
  if (!webhook) {
    if (!why.empty()) why += " and ";
    why += "the webhook sink (sinks/webhook) is compiled out";
  }
  if (!why.empty()) why += "; build with both listed in src/extensions.cmake";
  return why;
}

/// The JSON summary the simulator child printed last in its log (null when none).
Json simulator_summary(const std::string& log) {
  std::ifstream in(log);
  Json last = nullptr;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    Json j = Json::parse(line, nullptr, false);
    if (j.is_object()) last = std::move(j);
  }
  return last;
}

/// Whether the child has exited (reaps it).
bool exited(Child& c) {
  int status = 0;
  if (c.pid > 0 && waitpid(c.pid, &status, WNOHANG) == c.pid) {
    c.pid = -1;
    return true;
  }
  return c.pid <= 0;
}

/// The run itself: fills `result`; an error says what failed and where its log is.
class Storm {
 public:
  Storm(const StormOptions& o, Json& result) : o_(o), result_(result) {}
  ~Storm() { stop_sampler(); }

  Result<void> run();

 private:
  void say(const std::string& s) const {
    std::fprintf(o_.json_only ? stderr : stdout, "%s\n", s.c_str());
    std::fflush(o_.json_only ? stderr : stdout);
  }
  void phase(const std::string& name, const std::string& what) {
    {
      std::lock_guard lock(mu_);
      phase_ = name;
    }
    phases_.push_back({{"name", name}, {"start_s", since_s(t0_)}});
    say("[" + name + "] " + what);
  }
  std::string current_phase() {
    std::lock_guard lock(mu_);
    return phase_;
  }
  Result<pid_t> start_fleet(const std::string& log) const;
  /// A quick read of the figures the phases wait on (sessions created, the sink's backlog).
  struct Quick {
    uint64_t sessions_created = 0, lag_reports = 0, lag_bytes = 0;
    bool sink_seen = false;
  };
  Quick quick() const;
  void start_sampler();
  void stop_sampler() {
    sampling_.store(false);
    if (sampler_.joinable()) sampler_.join();
  }
  void summarize(const Json& fleet2, double storm_span_s, const std::map<std::string, double>& cpu0,
                 const std::map<std::string, double>& cpu1,
                 const std::map<std::string, double>& time0,
                 const std::map<std::string, double>& time1);

  const StormOptions& o_;
  Json& result_;
  Receiver rx_;
  Gw gw_;
  int64_t t0_ = 0;
  std::mutex mu_;
  std::string phase_ = "idle";
  Json phases_ = Json::array();
  std::vector<Sample> samples_;  ///< the sampler's; read after it stopped
  std::thread sampler_;
  std::atomic<bool> sampling_{false};
  Sample idle_;
  // Figures the phases measure themselves (at 100 ms).
  double storm_at_s_ = 0, return_at_s_ = 0;
  std::optional<double> reconnect_s_, catch_up_s_, drain_s_;
  uint64_t steady_lag_max_ = 0;
};

Result<pid_t> Storm::start_fleet(const std::string& log) const {
  char rate[32];
  std::snprintf(rate, sizeof rate, "%g", o_.rate);
  // An hour: the fleet runs until this command ends it by its PID (SIGKILL for the storm,
  // SIGTERM at the end, after which it prints its summary).
  return spawn({"tianhe",
                "simulate",
                "--protocol",
                "mqtt_sn",
                "--target",
                "127.0.0.1:" + std::to_string(gw_.ports.at("mqtt_sn")),
                "--clients",
                std::to_string(o_.devices),
                "--tenant",
                "bench",
                "--qos",
                "1",
                "--rate",
                rate,
                "--duration",
                "3600s",
                "--connect-timeout",
                "120",
                "--json",
                "--quiet"},
               log);
}

Storm::Quick Storm::quick() const {
  Quick q;
  const std::string page = http_get(gw_.http_port, "/metrics");
  q.sessions_created =
      sum_of(counter_by_label(page, "tianhe_protocol_mqtt_sn_sessions_created_total", "shard"));
  const auto lag = counter_by_label(page, "tianhe_sink_lag_reports", "sink");
  const auto bytes = counter_by_label(page, "tianhe_sink_lag_bytes", "sink");
  if (const auto it = lag.find("webhook"); it != lag.end()) {
    q.sink_seen = true;
    q.lag_reports = it->second;
  }
  if (const auto it = bytes.find("webhook"); it != bytes.end()) q.lag_bytes = it->second;
  return q;
}

void Storm::start_sampler() {
  sampling_.store(true);
  sampler_ = std::thread([this] {
    // On the second: a row per second, whatever a sample cost.
    int64_t next = core::mono_ns();
    while (sampling_.load() && !g_interrupted.load()) {
      samples_.push_back(take_sample(gw_, rx_, since_s(t0_), current_phase()));
      next += 1'000'000'000;
      while (sampling_.load() && core::mono_ns() < next) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  });
}

Result<void> Storm::run() {
  if (auto r = rx_.start(); !r.ok()) return r.error();
  std::ostringstream toml;
  // The MQTT-SN ingest with the gateway's default admission (the storm meets it as shipped, or
  // as --connect-rate says), and the webhook sink in batches the endpoint takes whole.
  toml << "[protocols.mqtt_sn]\nenabled = true\nlisten = \"127.0.0.1:0\"\n"
       << "connect_rate = " << o_.connect_rate << "\nconnect_burst = " << o_.connect_rate
       << "\n"
       // The new process's clients come from new addresses (a NAT rebinding after the outage):
       // each CONNECT takes over its client id's old session (docs/protocols/mqtt_sn.md).
       << "allow_takeover = true\n"
       << "[sinks.webhook]\nenabled = true\nurl = \"http://127.0.0.1:" << rx_.port()
       << "/ingest\"\nbatch_reports = 1000\n";
  say("[start] gateway (MQTT-SN, store, webhook to 127.0.0.1:" + std::to_string(rx_.port()) +
      ") in " + o_.work + " ...");
  if (auto r = start_gateway(gw_, o_.work, "gateway", o_.devices, o_.shards, "batch", toml.str());
      !r.ok()) {
    return r.error();
  }
  if (gw_.ports.count("mqtt_sn") == 0 || gw_.ports["mqtt_sn"] == 0) {
    return make_error("the gateway did not start its MQTT-SN ingest; see " + o_.work +
                      "/gateway/serve.log");
  }
  t0_ = core::mono_ns();
  // Idle: the gateway up, nothing connected. Its RSS and heap are the baseline of the summary.
  for (int i = 0; i < 100 && !quick().sink_seen; ++i) nap(0.05);
  idle_ = take_sample(gw_, rx_, 0, "idle");
  start_sampler();

  const std::string dir = o_.work + "/gateway";
  phase("connect", std::to_string(o_.devices) + " MQTT-SN devices connect (connect_rate " +
                       std::to_string(o_.connect_rate) + "/s) ...");
  auto pid1 = start_fleet(dir + "/fleet-1.log");
  if (!pid1.ok()) return pid1.error();
  Child fleet1{*pid1};
  const int64_t connect_deadline = core::mono_ns() + 180'000'000'000;
  while (quick().sessions_created < o_.devices) {
    if (exited(fleet1)) return make_error("the fleet exited early; see " + dir + "/fleet-1.log");
    if (core::mono_ns() > connect_deadline || g_interrupted.load()) {
      return make_error("the fleet did not connect within 180 s; see " + dir + "/fleet-1.log");
    }
    nap(0.1);
  }

  char line[200];
  std::snprintf(line, sizeof line, "steady load, %g PUBLISHes/s (QoS 1), %g s ...", o_.rate,
                o_.steady);
  phase("steady", line);
  const int64_t load_start = core::mono_ns();
  const int64_t steady_end = load_start + static_cast<int64_t>(o_.steady * 1e9);
  while (core::mono_ns() < steady_end) {
    steady_lag_max_ = std::max(steady_lag_max_, quick().lag_reports);
    if (!nap(0.1)) return make_error("interrupted");
  }

  // The storm: the fleet's process dies at once (SIGKILL: no DISCONNECT, the old sessions are
  // left to their keep-alive) and a new one starts with the same devices, while the endpoint
  // goes down.
  const auto cpu0 = cpu_by_thread(gw_.child.pid);
  const auto time0 = seconds_counters(http_get(gw_.http_port, "/metrics"));
  const uint64_t created0 = quick().sessions_created;
  const int64_t storm_start = core::mono_ns();
  storm_at_s_ = since_s(t0_);
  std::snprintf(line, sizeof line,
                "the fleet (PID %d) is killed and started again with the same %llu devices; the "
                "endpoint refuses connections for %g s ...",
                static_cast<int>(fleet1.pid), static_cast<unsigned long long>(o_.devices),
                o_.outage);
  phase("storm", line);
  kill(fleet1.pid, SIGKILL);
  int status = 0;
  waitpid(fleet1.pid, &status, 0);
  fleet1.pid = -1;
  auto pid2 = start_fleet(dir + "/fleet-2.log");
  if (!pid2.ok()) return pid2.error();
  Child fleet2{*pid2};
  rx_.refuse();
  const int64_t outage_end = storm_start + static_cast<int64_t>(o_.outage * 1e9);
  auto watch_reconnect = [&](const Quick& q) {
    if (!reconnect_s_ && q.sessions_created >= created0 + o_.devices) {
      reconnect_s_ = since_s(storm_start);
    }
  };
  while (core::mono_ns() < outage_end) {
    watch_reconnect(quick());
    if (exited(fleet2)) return make_error("the fleet exited early; see " + dir + "/fleet-2.log");
    if (!nap(0.1)) return make_error("interrupted");
  }

  phase("recovery", "the endpoint listens again; the load goes on ...");
  if (auto r = rx_.restore(); !r.ok()) return r.error();
  const int64_t back = core::mono_ns();
  return_at_s_ = since_s(t0_);
  const int64_t load_end = load_start + static_cast<int64_t>(o_.duration * 1e9);
  while (core::mono_ns() < load_end) {
    const Quick q = quick();
    watch_reconnect(q);
    if (!catch_up_s_ && q.lag_reports <= std::max<uint64_t>(steady_lag_max_, 1)) {
      catch_up_s_ = since_s(back);
    }
    if (exited(fleet2)) return make_error("the fleet exited early; see " + dir + "/fleet-2.log");
    if (!nap(0.1)) return make_error("interrupted");
  }

  phase("drain", "the load stops; waiting for the sink's backlog to be delivered ...");
  kill(fleet2.pid, SIGTERM);
  const int64_t fleet_deadline = core::mono_ns() + 30'000'000'000;
  while (!exited(fleet2) && core::mono_ns() < fleet_deadline) nap(0.05);
  if (fleet2.pid > 0) fleet2.terminate();
  const Json fleet_summary = simulator_summary(dir + "/fleet-2.log");
  const uint64_t accepted = totals_of(gw_.http_port).reports_accepted;
  const int64_t drain_deadline = core::mono_ns() + static_cast<int64_t>(o_.drain_deadline * 1e9);
  while (core::mono_ns() < drain_deadline && !g_interrupted.load()) {
    const Quick q = quick();
    if (!catch_up_s_ && q.lag_reports <= std::max<uint64_t>(steady_lag_max_, 1)) {
      catch_up_s_ = since_s(back);
    }
    if (q.lag_reports == 0 && q.lag_bytes == 0 && rx_.distinct() >= accepted) {
      drain_s_ = since_s(back);
      break;
    }
    nap(0.1);
  }
  const double span = since_s(storm_start);
  const auto cpu1 = cpu_by_thread(gw_.child.pid);
  const auto time1 = seconds_counters(http_get(gw_.http_port, "/metrics"));
  // One more second: the last row shows the drained state.
  nap(1.0);
  stop_sampler();
  summarize(fleet_summary, span, cpu0, cpu1, time0, time1);
  gw_.child.terminate();
  rx_.stop();
  return {};
}

void Storm::summarize(const Json& fleet2, double storm_span_s,
                      const std::map<std::string, double>& cpu0,
                      const std::map<std::string, double>& cpu1,
                      const std::map<std::string, double>& time0,
                      const std::map<std::string, double>& time1) {
  Json timeline = Json::array();
  for (size_t i = 1; i < samples_.size(); ++i)
    timeline.push_back(row_of(samples_[i - 1], samples_[i]));
  result_["phases"] = phases_;
  result_["timeline"] = timeline;
  Json s;
  // Memory: the peak against idle, and what the gateway held at that moment.
  const Sample* peak = &idle_;
  for (const Sample& x : samples_) {
    if (x.rss > peak->rss) peak = &x;
  }
  s["memory"] = {{"idle_rss_bytes", idle_.rss},
                 {"peak_rss_bytes", peak->rss},
                 {"peak_rss_at_s", peak->t},
                 {"peak_rss_phase", peak->phase},
                 {"idle_heap_bytes", idle_.heap},
                 {"heap_at_peak_bytes", peak->heap},
                 {"sessions_at_peak", peak->sessions},
                 {"sink_lag_bytes_at_peak", peak->lag_bytes},
                 {"log_backlog_bytes_at_peak", peak->log_backlog}};
  // The backlog.
  const Sample* lag = &idle_;
  uint64_t outage_lag_max = 0;
  for (const Sample& x : samples_) {
    if (x.lag_reports > lag->lag_reports) lag = &x;
    if (x.phase == "storm") outage_lag_max = std::max(outage_lag_max, x.lag_reports);
  }
  const uint64_t final_lag = samples_.empty() ? 0 : samples_.back().lag_reports;
  s["backlog"] = {{"peak_reports", lag->lag_reports},
                  {"peak_bytes", lag->lag_bytes},
                  {"peak_at_s", lag->t},
                  {"peak_during_outage_reports", outage_lag_max},
                  {"steady_max_reports", steady_lag_max_},
                  {"endpoint_back_at_s", return_at_s_},
                  {"catch_up_s", catch_up_s_ ? Json(*catch_up_s_) : Json(nullptr)},
                  {"drained_s", drain_s_ ? Json(*drain_s_) : Json(nullptr)},
                  {"drained", drain_s_.has_value()},
                  {"final_reports", final_lag}};
  // The storm's connects.
  uint64_t connects = 0, congestion = 0, sessions_peak = 0;
  const Sample* before = nullptr;
  const Sample* last = nullptr;
  for (const Sample& x : samples_) {
    if (x.t <= storm_at_s_) before = &x;
    if (x.t >= storm_at_s_) last = &x;
    sessions_peak = std::max(sessions_peak, x.sessions);
  }
  if (before != nullptr && last != nullptr) {
    connects = last->connects - before->connects;
    for (const auto& [k, n] : last->refused) {
      if (k.find("congestion") == std::string::npos) continue;
      const auto b = before->refused.find(k);
      congestion += n - (b == before->refused.end() ? 0 : b->second);
    }
  }
  s["storm"] = {
      {"devices", o_.devices},
      {"connect_rate_configured", o_.connect_rate},
      {"all_reconnected_s", reconnect_s_ ? Json(*reconnect_s_) : Json(nullptr)},
      {"reconnects_per_s",
       reconnect_s_ && *reconnect_s_ > 0 ? Json(o_.devices / *reconnect_s_) : Json(nullptr)},
      {"connect_frames", connects},
      {"congestion_refusals", congestion},
      {"sessions_peak", sessions_peak},
      {"fleet_connect_s", fleet2.is_object() ? fleet2.value("connect_s", 0.0) : 0.0}};
  // CPU by thread, and time by stage, over the storm (start to drained backlog).
  Json by_thread = Json::object();
  std::vector<std::pair<double, std::string>> threads;
  double total = 0;
  for (const auto& [name, s1] : cpu1) {
    const auto b = cpu0.find(name);
    const double d = s1 - (b == cpu0.end() ? 0 : b->second);
    total += d;
    threads.emplace_back(d, name);
  }
  std::sort(threads.rbegin(), threads.rend());
  for (const auto& [d, name] : threads) {
    if (d > 0) by_thread[name] = d;
  }
  Json by_stage = Json::object();
  for (const auto& [name, v1] : time1) {
    const auto b = time0.find(name);
    const double d = v1 - (b == time0.end() ? 0 : b->second);
    if (d > 0 && name != "process_cpu_seconds_total") by_stage[name] = d;
  }
  s["cpu_over_storm"] = {{"span_s", storm_span_s},
                         {"live_threads_cpu_s", total},
                         {"by_thread_s", by_thread},
                         {"seconds_counters_growth", by_stage}};
  // At least once: every report the gateway accepted reached the endpoint.
  const uint64_t accepted = samples_.empty() ? 0 : samples_.back().accepted;
  const uint64_t got = rx_.distinct();
  const std::string page = http_get(gw_.http_port, "/metrics");
  s["at_least_once"] = {
      {"accepted", accepted},
      {"received_distinct", got},
      {"received_records", rx_.records()},
      {"duplicates_at_endpoint", rx_.duplicates()},
      {"endpoint_posts", rx_.posts()},
      {"endpoint_bad_requests", rx_.bad_requests()},
      {"endpoint_connections", rx_.connections()},
      {"seq_collisions", rx_.seq_collisions()},
      {"missing", accepted > got ? accepted - got : 0},
      {"sink_dead_lettered",
       counter_by_label(page, "tianhe_sink_dead_lettered_reports_total", "sink")["webhook"]},
      {"sink_dropped",
       counter_by_label(page, "tianhe_sink_dropped_reports_total", "sink")["webhook"]},
      {"fleet_after_storm_sent", fleet2.is_object() ? fleet2.value("sent", uint64_t{0}) : 0},
      {"fleet_after_storm_acked", fleet2.is_object() ? fleet2.value("acked", uint64_t{0}) : 0},
      {"fleet_after_storm_lost", fleet2.is_object() ? fleet2.value("lost", uint64_t{0}) : 0}};
  result_["summary"] = s;
}

std::string mib(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(b) / (1 << 20));
  return buf;
}

/// The "a 3, b 1" text of a refused_by_reason object.
std::string reasons_text(const Json& r) {
  std::string out;
  for (auto it = r.begin(); it != r.end(); ++it) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s%s %.0f", out.empty() ? "" : ", ", it.key().c_str(),
                  it->get<double>());
    out += buf;
  }
  return out;
}

void print_text(const Json& r) {
  std::printf("\n%6s %-9s %8s %7s %7s %7s %8s %9s %7s %8s %8s %7s %7s %6s\n", "t s", "phase",
              "acc/s", "ref/s", "sess", "conn/s", "lag rep", "lag MiB", "retr/s", "deliv/s",
              "RSS MiB", "heap", "CPU %", "busy%");
  for (const Json& row : r["timeline"]) {
    std::printf("%6.1f %-9s %8.0f %7.0f %7llu %7.0f %8llu %9s %7.1f %8.0f %8s %7s %7.0f %6.1f\n",
                row["t_s"].get<double>(), row["phase"].get<std::string>().c_str(),
                row["accepted_per_s"].get<double>(), row["refused_per_s"].get<double>(),
                static_cast<unsigned long long>(row["sessions"].get<uint64_t>()),
                row["connects_per_s"].get<double>(),
                static_cast<unsigned long long>(row["sink_lag_reports"].get<uint64_t>()),
                mib(row["sink_lag_bytes"].get<uint64_t>()).c_str(),
                row["sink_retries_per_s"].get<double>(), row["sink_delivered_per_s"].get<double>(),
                mib(row["rss_bytes"].get<uint64_t>()).c_str(),
                mib(row["heap_bytes"].get<uint64_t>()).c_str(), row["cpu_percent"].get<double>(),
                row["shard_busy_percent"].get<double>());
    if (!row["refused_by_reason_per_s"].empty()) {
      std::printf("%16s refused: %s\n", "", reasons_text(row["refused_by_reason_per_s"]).c_str());
    }
  }
  const Json& s = r["summary"];
  const Json& m = s["memory"];
  std::printf(
      "\nmemory: idle RSS %s MiB, peak %s MiB at %.0f s (%s); heap in use %s -> %s MiB, "
      "%llu sessions held, sink backlog %s MiB of log, log backlog %s MiB\n",
      mib(m["idle_rss_bytes"].get<uint64_t>()).c_str(),
      mib(m["peak_rss_bytes"].get<uint64_t>()).c_str(), m["peak_rss_at_s"].get<double>(),
      m["peak_rss_phase"].get<std::string>().c_str(),
      mib(m["idle_heap_bytes"].get<uint64_t>()).c_str(),
      mib(m["heap_at_peak_bytes"].get<uint64_t>()).c_str(),
      static_cast<unsigned long long>(m["sessions_at_peak"].get<uint64_t>()),
      mib(m["sink_lag_bytes_at_peak"].get<uint64_t>()).c_str(),
      mib(m["log_backlog_bytes_at_peak"].get<uint64_t>()).c_str());
  const Json& b = s["backlog"];
  auto secs = [](const Json& v) {
    if (v.is_null()) return std::string("not reached");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", v.get<double>());
    return std::string(buf);
  };
  std::printf(
      "backlog: peak %llu reports (%s MiB) at %.0f s; endpoint back at %.0f s; caught up "
      "to the steady level (%llu) after %s, empty after %s\n",
      static_cast<unsigned long long>(b["peak_reports"].get<uint64_t>()),
      mib(b["peak_bytes"].get<uint64_t>()).c_str(), b["peak_at_s"].get<double>(),
      b["endpoint_back_at_s"].get<double>(),
      static_cast<unsigned long long>(b["steady_max_reports"].get<uint64_t>()),
      secs(b["catch_up_s"]).c_str(), secs(b["drained_s"]).c_str());
  const Json& st = s["storm"];
  std::printf(
      "storm: %llu devices reconnected in %s (%s/s; connect_rate %llu), %llu CONNECT "
      "frames, %llu refused for congestion, at most %llu sessions held\n",
      static_cast<unsigned long long>(st["devices"].get<uint64_t>()),
      secs(st["all_reconnected_s"]).c_str(),
      st["reconnects_per_s"].is_null()
          ? "-"
          : std::to_string(static_cast<long long>(st["reconnects_per_s"].get<double>())).c_str(),
      static_cast<unsigned long long>(st["connect_rate_configured"].get<uint64_t>()),
      static_cast<unsigned long long>(st["connect_frames"].get<uint64_t>()),
      static_cast<unsigned long long>(st["congestion_refusals"].get<uint64_t>()),
      static_cast<unsigned long long>(st["sessions_peak"].get<uint64_t>()));
  const Json& c = s["cpu_over_storm"];
  std::printf("CPU over the storm (%.1f s, %.2f CPU-s in live threads):", c["span_s"].get<double>(),
              c["live_threads_cpu_s"].get<double>());
  for (auto it = c["by_thread_s"].begin(); it != c["by_thread_s"].end(); ++it) {
    std::printf(" %s %.2f", it.key().c_str(), it->get<double>());
  }
  std::printf("\ntime by stage over the storm (growth of *_seconds counters):");
  for (auto it = c["seconds_counters_growth"].begin(); it != c["seconds_counters_growth"].end();
       ++it) {
    std::printf("\n  %-56s %9.3f s", it.key().c_str(), it->get<double>());
  }
  const Json& a = s["at_least_once"];
  std::printf(
      "\nat least once: %llu accepted, %llu distinct at the endpoint (%llu duplicates), "
      "%llu missing; the sink dead-lettered %llu and dropped %llu; %llu reports reused "
      "an earlier (device_id, seq) of their device\n",
      static_cast<unsigned long long>(a["accepted"].get<uint64_t>()),
      static_cast<unsigned long long>(a["received_distinct"].get<uint64_t>()),
      static_cast<unsigned long long>(a["duplicates_at_endpoint"].get<uint64_t>()),
      static_cast<unsigned long long>(a["missing"].get<uint64_t>()),
      static_cast<unsigned long long>(a["sink_dead_lettered"].get<uint64_t>()),
      static_cast<unsigned long long>(a["sink_dropped"].get<uint64_t>()),
      static_cast<unsigned long long>(a["seq_collisions"].get<uint64_t>()));
}

}  // namespace

int cmd_bench_storm(int argc, char** argv) {
  StormOptions o;
  if (const int status = storm_options(argc, argv, o); status >= 0) return status;
  if (const std::string why = missing_parts(); !why.empty()) {
    if (o.remove_work) fs::remove_all(o.work);
    std::fprintf(stderr, "tianhe bench --storm: %s\n", why.c_str());
    return 1;
  }
  // Interrupted, the run ends its children by their PIDs on the way out.
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  Json result;
  result["options"] = {{"devices", o.devices},     {"rate", o.rate},
                       {"duration_s", o.duration}, {"steady_s", o.steady},
                       {"outage_s", o.outage},     {"connect_rate", o.connect_rate},
                       {"shards", o.shards},       {"work", o.work}};
  Result<void> r = make_error("not run");
  {
    Storm storm(o, result);
    r = storm.run();
  }  // the gateway, the fleet and the endpoint are gone here, on every path
  // A failed run keeps its directory (the error names the log to read there); an interrupted
  // one does not.
  if (o.remove_work && (r.ok() || g_interrupted.load())) {
    fs::remove_all(o.work);
  } else {
    std::fprintf(o.json_only ? stderr : stdout, "work directory kept: %s\n", o.work.c_str());
  }
  if (!r.ok()) {
    std::fprintf(stderr, "tianhe bench --storm: %s\n", r.error().message.c_str());
    return 1;
  }
  if (o.json_only) {
    std::printf("%s\n", result.dump().c_str());
  } else {
    print_text(result);
  }
  return 0;
}

}  // namespace tianhe::tools::bench
