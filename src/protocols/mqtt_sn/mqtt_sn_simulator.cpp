#include "protocols/mqtt_sn/mqtt_sn_simulator.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "core/config_table.h"
#include "protocols/mqtt_sn/mqtt_sn_parser.h"
#include "protocols/mqtt_sn/mqtt_sn_topics.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::mqtt_sn {
namespace {

// A client keeps at most this many QoS 1/2 messages unanswered (--window; below the gateway's
// default max_pending_per_session of 8).
constexpr uint32_t kWindow = 4;
constexpr int64_t kRetryNs = 1'000'000'000;  // an unanswered CONNECT/REGISTER is sent again
constexpr uint32_t kRecvBatch = 64;
constexpr uint32_t kSendBatch = 64;

enum class Phase : uint8_t { kIdle, kConnecting, kRegistering, kReady, kGaveUp };

struct InFlight {
  int64_t sent_ns = 0;
  uint16_t msg_id = 0;
  bool used = false;
};

struct Client {
  Phase phase = Phase::kIdle;
  int64_t retry_at_ns = 0;
  uint16_t topic_id = 0;
  uint16_t next_msg_id = 1;
  uint8_t inflight = 0;
  std::array<InFlight, kWindow> window{};
};

double percentile(std::vector<uint32_t>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i] / 1000.0;
}

class Fleet {
 public:
  Fleet(const MqttSnSimOptions& o, transports::PeerAddress target, TopicTemplate topics)
      : o_(o), target_(target), topics_(std::move(topics)), clients_(o.clients) {}

  Result<void> open() {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(o_.sockets, o_.clients));
    for (uint32_t i = 0; i < n; ++i) {
      auto any = transports::resolve("0.0.0.0", 0);
      if (!any.ok()) return any.error();
      auto s = transports::UdpSocket::bind(
          *any,
          {.reuse_port = false, .recv_buffer_bytes = 8u << 20, .send_buffer_bytes = 8u << 20});
      if (!s.ok()) return s.error();
      const int on = 1;
      // The destination of each reply says which client (source address) it is for.
      ::setsockopt(s->fd(), IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
      socks_.push_back(std::move(*s));
      out_.push_back(std::make_unique<OutBatch>());
    }
    return {};
  }

  MqttSnSimSummary run(const std::atomic<bool>* stop) {
    const int64_t start = core::mono_ns();
    const int64_t connect_deadline = start + static_cast<int64_t>(o_.connect_timeout_s * 1e9);
    int64_t last_progress = start;
    // Phase 1: every client connects and registers (a storm when they are many).
    while (connected_ + given_up_ < clients_.size() && core::mono_ns() < connect_deadline &&
           !(stop && stop->load())) {
      const int64_t now = core::mono_ns();
      uint32_t budget = 4096;  // sends per turn, so replies are read between bursts
      for (uint64_t k = 0; k < clients_.size() && budget > 0; ++k) {
        const uint64_t i = (cursor_ + k) % clients_.size();
        Client& c = clients_[i];
        if (c.phase == Phase::kReady || c.phase == Phase::kGaveUp || c.retry_at_ns > now) continue;
        if (c.phase == Phase::kRegistering) {
          send_register(i);
        } else {
          send_connect(i);
          c.phase = Phase::kConnecting;
        }
        c.retry_at_ns = now + kRetryNs;
        --budget;
      }
      cursor_ = (cursor_ + 4096) % clients_.size();
      receive(1);
      progress(last_progress, "connected");
    }
    sum_.connect_s = static_cast<double>(core::mono_ns() - start) / 1e9;
    // Phase 2: publish at the rate, round robin over the connected clients.
    const int64_t pub_start = core::mono_ns();
    const int64_t pub_end = pub_start + static_cast<int64_t>(o_.duration_s * 1e9);
    const bool acked = o_.qos == 1 || o_.qos == 2;
    // Send permissions: a client is queued once per free slot of its window (QoS 0: once, and
    // again after each send); an ack queues it again.
    for (uint32_t w = 0; w < (acked ? o_.window : 1); ++w) {
      for (uint64_t i = 0; i < clients_.size(); ++i) {
        if (clients_[i].phase == Phase::kReady) ready_.push_back(i);
      }
    }
    while (connected_ > 0 && core::mono_ns() < pub_end && !(stop && stop->load()) &&
           (o_.max_reports == 0 || sum_.sent < o_.max_reports)) {
      const int64_t now = core::mono_ns();
      // Rate 0: as fast as the clients' windows allow (each waits for its acks).
      const uint64_t due =
          o_.rate > 0 ? static_cast<uint64_t>(static_cast<double>(now - pub_start) / 1e9 * o_.rate)
                      : UINT64_MAX;
      uint32_t budget = 1024;
      while (sum_.sent < due && budget > 0 && !ready_.empty() &&
             (o_.max_reports == 0 || sum_.sent < o_.max_reports)) {
        const uint64_t i = ready_.front();
        ready_.pop_front();
        if (clients_[i].phase != Phase::kReady) continue;
        send_publish(i, now);
        if (!acked) ready_.push_back(i);
        --budget;
      }
      receive(sum_.sent < due && budget == 0 ? 0 : 1);
      progress(last_progress, "sent");
    }
    const int64_t pub_stop = core::mono_ns();
    // Phase 3: wait for what is still unanswered.
    const int64_t drain_end = pub_stop + static_cast<int64_t>(o_.drain_s * 1e9);
    while (outstanding() > 0 && core::mono_ns() < drain_end) receive(5);
    sum_.lost = outstanding();
    sum_.elapsed_s = static_cast<double>(pub_stop - pub_start) / 1e9;
    if (sum_.elapsed_s > 0) {
      sum_.rate = static_cast<double>(sum_.sent) / sum_.elapsed_s;
      sum_.acked_rate = static_cast<double>(sum_.acked_ok) / sum_.elapsed_s;
    }
    sum_.p50_ms = percentile(latency_us_, 0.5);
    sum_.p99_ms = percentile(latency_us_, 0.99);
    sum_.p999_ms = percentile(latency_us_, 0.999);
    sum_.max_ms = latency_us_.empty()
                      ? 0
                      : *std::max_element(latency_us_.begin(), latency_us_.end()) / 1000.0;
    return sum_;
  }

 private:
  uint64_t outstanding() const {
    uint64_t n = 0;
    for (const Client& c : clients_) n += c.inflight;
    return n;
  }

  void progress(int64_t& last, const char* what) {
    const int64_t now = core::mono_ns();
    if (!o_.progress || now - last < 1'000'000'000) return;
    last = now;
    std::fprintf(stderr, "  %s: connected %llu/%llu  congestion %llu  sent %llu  acked %llu\n",
                 what, static_cast<unsigned long long>(connected_),
                 static_cast<unsigned long long>(clients_.size()),
                 static_cast<unsigned long long>(sum_.congestion),
                 static_cast<unsigned long long>(sum_.sent),
                 static_cast<unsigned long long>(sum_.acked_ok));
  }

  // Datagrams waiting to leave one socket: sent with one sendmmsg when the batch fills or the
  // fleet is about to wait for replies (the fleet shares the cores with the gateway).
  struct OutBatch {
    std::array<std::array<uint8_t, 512>, kSendBatch> data{};
    std::array<std::array<char, CMSG_SPACE(sizeof(in_pktinfo))>, kSendBatch> control{};
    std::array<iovec, kSendBatch> iov{};
    std::array<mmsghdr, kSendBatch> msgs{};
    uint32_t count = 0;
  };

  // Client i speaks from 127.0.0.1 + (i / sockets) on socket i % sockets (IP_PKTINFO).
  void send_from(uint64_t i, const uint8_t* bytes, size_t n) {
    const size_t nsock = socks_.size();
    OutBatch& b = *out_[i % nsock];
    const uint32_t k = b.count++;
    std::memcpy(b.data[k].data(), bytes, std::min(n, b.data[k].size()));
    b.iov[k] = {b.data[k].data(), std::min(n, b.data[k].size())};
    msghdr& h = b.msgs[k].msg_hdr;
    h = msghdr{};
    h.msg_name = const_cast<sockaddr_storage*>(&target_.addr);
    h.msg_namelen = target_.len;
    h.msg_iov = &b.iov[k];
    h.msg_iovlen = 1;
    h.msg_control = b.control[k].data();
    h.msg_controllen = b.control[k].size();
    cmsghdr* cm = CMSG_FIRSTHDR(&h);
    cm->cmsg_level = IPPROTO_IP;
    cm->cmsg_type = IP_PKTINFO;
    cm->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo pi{};
    pi.ipi_spec_dst.s_addr = htonl(0x7F000001u + static_cast<uint32_t>(i / nsock));
    std::memcpy(CMSG_DATA(cm), &pi, sizeof pi);
    if (b.count == kSendBatch) flush(i % nsock);
  }

  void flush(size_t sock) {
    OutBatch& b = *out_[sock];
    uint32_t done = 0;
    while (done < b.count) {
      const int n = ::sendmmsg(socks_[sock].fd(), &b.msgs[done], b.count - done, 0);
      if (n <= 0) break;  // a full send buffer drops the rest: they count as lost
      done += static_cast<uint32_t>(n);
    }
    b.count = 0;
  }

  void flush_all() {
    for (size_t k = 0; k < out_.size(); ++k) {
      if (out_[k]->count > 0) flush(k);
    }
  }

  void send_connect(uint64_t i) {
    Flags f;
    f.clean_session = true;
    const std::string id = "sim-" + std::to_string(o_.first_device_id + i);
    const size_t n = encode_connect(f, o_.keep_alive_s, id, buf_);
    send_from(i, buf_.data(), n);
    ++sum_.connects_sent;
  }

  void send_register(uint64_t i) {
    const std::string t = topics_.render(o_.tenant, o_.first_device_id + i);
    const size_t n = encode_register(1, t, buf_);
    send_from(i, buf_.data(), n);
  }

  void send_publish(uint64_t i, int64_t now) {
    Client& c = clients_[i];
    Flags f;
    f.qos = o_.qos < 0 ? Qos::kQosMinus1 : static_cast<Qos>(o_.qos);
    uint16_t id = 0;
    if (o_.qos == 1 || o_.qos == 2) {
      id = c.next_msg_id++;
      if (c.next_msg_id == 0) c.next_msg_id = 1;
      for (InFlight& w : c.window) {
        if (!w.used) {
          w = {now, id, true};
          break;
        }
      }
      ++c.inflight;
      ++sum_.ack_requested;
    }
    const double t = 15.0 + static_cast<double>((sum_.sent * 7) % 200) / 10.0;
    uint8_t payload[64];
    size_t len = 0;
    if (o_.report_payload) {
      // tianhe.v1.Report { metrics { name: "temperature" f64: t } }
      const uint8_t head[] = {0x22, 22,  0x0a, 11,  't', 'e', 'm', 'p',
                              'e',  'r', 'a',  't', 'u', 'r', 'e', 0x19};
      std::memcpy(payload, head, sizeof head);
      std::memcpy(payload + sizeof head, &t, sizeof t);
      len = sizeof head + sizeof t;
    } else {
      // The example config's env_sensor requires temperature and humidity.
      const double h = 30.0 + static_cast<double>((sum_.sent * 3) % 400) / 10.0;
      len = static_cast<size_t>(std::snprintf(reinterpret_cast<char*>(payload), sizeof payload,
                                              R"({"temperature":%.2f,"humidity":%.1f})", t, h));
    }
    const size_t n = encode_publish(f, c.topic_id, id, {payload, len}, buf_);
    send_from(i, buf_.data(), n);
    ++sum_.sent;
  }

  void acked(uint64_t i, uint16_t msg_id, bool ok) {
    Client& c = clients_[i];
    for (InFlight& w : c.window) {
      if (w.used && w.msg_id == msg_id) {
        w.used = false;
        --c.inflight;
        ready_.push_back(i);
        if (ok) {
          ++sum_.acked_ok;
          latency_us_.push_back(static_cast<uint32_t>((core::mono_ns() - w.sent_ns) / 1000));
        } else {
          ++sum_.rejected;
        }
        return;
      }
    }
  }

  void on_reply(uint64_t i, std::span<const uint8_t> bytes) {
    Frame f;
    if (parse_frame(bytes, ParserLimits{}, f, Sender::kGateway).status != ParseStatus::kComplete) {
      return;
    }
    Client& c = clients_[i];
    const int64_t now = core::mono_ns();
    switch (f.type) {
      case MsgType::kConnack:
        if (c.phase != Phase::kConnecting) break;
        if (f.return_code == ReturnCode::kAccepted) {
          c.phase = Phase::kRegistering;
          send_register(i);
          c.retry_at_ns = now + kRetryNs;
        } else if (f.return_code != ReturnCode::kCongestion) {
          // Refused for good (a client id another address holds): not retried.
          ++sum_.refused;
          c.phase = Phase::kGaveUp;
          ++given_up_;
        } else {
          // "rejected: congestion": come back later, spread out (§6.3: T_WAIT).
          ++sum_.congestion;
          c.phase = Phase::kIdle;
          c.retry_at_ns = now + 100'000'000 + static_cast<int64_t>((i * 7919) % 400) * 1'000'000;
        }
        break;
      case MsgType::kRegack:
        if (c.phase != Phase::kRegistering) break;
        if (f.return_code == ReturnCode::kAccepted) {
          c.topic_id = f.topic_id;
          c.phase = Phase::kReady;
          ++connected_;
          ++sum_.connected;
        } else {
          ++sum_.refused;
          c.phase = Phase::kGaveUp;
          ++given_up_;
        }
        break;
      case MsgType::kPuback: acked(i, f.msg_id, f.return_code == ReturnCode::kAccepted); break;
      case MsgType::kPubrec: {  // §6.7: release it; PUBCOMP completes the exchange
        const size_t n = encode_msg_id_only(MsgType::kPubrel, f.msg_id, buf_);
        send_from(i, buf_.data(), n);
        break;
      }
      case MsgType::kPubcomp: acked(i, f.msg_id, true); break;
      case MsgType::kDisconnect:
        if (c.phase == Phase::kReady) --connected_;
        c.phase = Phase::kIdle;
        c.retry_at_ns = now;
        break;
      default: break;
    }
  }

  void receive(int timeout_ms) {
    flush_all();
    std::vector<pollfd> fds;
    fds.reserve(socks_.size());
    for (const auto& s : socks_) fds.push_back({s.fd(), POLLIN, 0});
    if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
    for (size_t k = 0; k < socks_.size(); ++k) {
      if ((fds[k].revents & POLLIN) == 0) continue;
      for (;;) {
        std::array<mmsghdr, kRecvBatch> msgs{};
        std::array<iovec, kRecvBatch> iovs{};
        for (uint32_t j = 0; j < kRecvBatch; ++j) {
          iovs[j] = {rx_[j].data(), rx_[j].size()};
          msgs[j].msg_hdr.msg_iov = &iovs[j];
          msgs[j].msg_hdr.msg_iovlen = 1;
          msgs[j].msg_hdr.msg_control = ctl_[j].data();
          msgs[j].msg_hdr.msg_controllen = ctl_[j].size();
        }
        const int got = ::recvmmsg(socks_[k].fd(), msgs.data(), kRecvBatch, MSG_DONTWAIT, nullptr);
        if (got <= 0) break;
        for (int j = 0; j < got; ++j) {
          msghdr& h = msgs[j].msg_hdr;
          uint32_t dst = 0;
          for (cmsghdr* cm = CMSG_FIRSTHDR(&h); cm != nullptr; cm = CMSG_NXTHDR(&h, cm)) {
            if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
              in_pktinfo pi{};
              std::memcpy(&pi, CMSG_DATA(cm), sizeof pi);
              dst = ntohl(pi.ipi_addr.s_addr);
            }
          }
          if (dst < 0x7F000001u) continue;
          const uint64_t i = static_cast<uint64_t>(dst - 0x7F000001u) * socks_.size() + k;
          if (i < clients_.size()) on_reply(i, {rx_[j].data(), msgs[j].msg_len});
        }
        if (got < static_cast<int>(kRecvBatch)) break;
      }
    }
  }

  MqttSnSimOptions o_;
  transports::PeerAddress target_;
  TopicTemplate topics_;
  std::vector<Client> clients_;
  std::vector<transports::UdpSocket> socks_;
  std::vector<std::unique_ptr<OutBatch>> out_;  ///< per socket
  std::array<uint8_t, 512> buf_{};
  std::array<std::array<uint8_t, 512>, kRecvBatch> rx_{};
  std::array<std::array<uint8_t, 64>, kRecvBatch> ctl_{};
  std::vector<uint32_t> latency_us_;
  std::deque<uint64_t> ready_;  ///< clients that may send (see run())
  uint64_t connected_ = 0;
  uint64_t given_up_ = 0;
  uint64_t cursor_ = 0;
  MqttSnSimSummary sum_;
};

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}

}  // namespace

std::string MqttSnSimSummary::json() const {
  // The report simulator's keys (tianhe bench reads acked_rate and ack_latency_ms), plus the
  // sessions'.
  char buf[1024];
  std::snprintf(
      buf, sizeof buf,
      R"({"sent":%llu,"ack_requested":%llu,"acked":%llu,"rejected":%llu,"lost":%llu,)"
      R"("elapsed_s":%.3f,"rate":%.1f,"acked_rate":%.1f,)"
      R"("ack_latency_ms":{"p50":%.3f,"p99":%.3f,"p999":%.3f,"max":%.3f},)"
      R"("connects_sent":%llu,"connected":%llu,"congestion":%llu,"refused":%llu,)"
      R"("connect_s":%.3f})",
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(ack_requested),
      static_cast<unsigned long long>(acked_ok), static_cast<unsigned long long>(rejected),
      static_cast<unsigned long long>(lost), elapsed_s, rate, acked_rate, p50_ms, p99_ms, p999_ms,
      max_ms, static_cast<unsigned long long>(connects_sent),
      static_cast<unsigned long long>(connected), static_cast<unsigned long long>(congestion),
      static_cast<unsigned long long>(refused), connect_s);
  return buf;
}

std::string MqttSnSimSummary::text() const {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "sessions      %llu connected in %.1f s (%llu CONNECTs, %llu \"rejected: "
                "congestion\" and retried, %llu refused)\n"
                "sent          %llu PUBLISHes over %.1f s (%.0f/s)\n"
                "acked         %llu OK (%.0f/s), %llu rejected\n"
                "lost          %llu (ack requested, never answered)\n"
                "ack latency   p50 %.3f ms  p99 %.3f ms  p999 %.3f ms  max %.3f ms"
                "  (send to the fleet reading the PUBACK/PUBCOMP)\n",
                static_cast<unsigned long long>(connected), connect_s,
                static_cast<unsigned long long>(connects_sent),
                static_cast<unsigned long long>(congestion),
                static_cast<unsigned long long>(refused), static_cast<unsigned long long>(sent),
                elapsed_s, rate, static_cast<unsigned long long>(acked_ok), acked_rate,
                static_cast<unsigned long long>(rejected), static_cast<unsigned long long>(lost),
                p50_ms, p99_ms, p999_ms, max_ms);
  return buf;
}

Result<MqttSnSimSummary> run_mqtt_sn_simulator(const MqttSnSimOptions& o,
                                               const std::atomic<bool>* stop) {
  if (o.clients == 0) return make_error("--clients must be at least 1");
  if (o.qos < -1 || o.qos > 2) return make_error("--qos must be -1, 0, 1 or 2");
  if (o.window < 1 || o.window > kWindow) return make_error("--window must be 1..4");
  if (o.qos == -1) {
    return make_error("--qos -1 needs predefined topics per device; use 0, 1 or 2");
  }
  const uint64_t per_socket = (o.clients + o.sockets - 1) / std::max<uint32_t>(o.sockets, 1);
  if (per_socket > 0xFFFFFF) return make_error("--clients: too many for --sockets; add sockets");
  auto target = transports::resolve(o.host, o.port);
  if (!target.ok()) return make_error("--target: " + target.error().message);
  auto topics = TopicTemplate::parse(o.topics);
  if (!topics.ok()) return make_error("--topics: " + topics.error().message);
  Fleet fleet(o, *target, std::move(*topics));
  if (auto r = fleet.open(); !r.ok()) return r.error();
  return fleet.run(stop);
}

int cmd_simulate(int argc, char** argv) {
  if (core::wants_help(argc, argv)) {
    std::puts(R"(tianhe simulate --protocol mqtt_sn — a fleet of MQTT-SN clients over UDP

Each client CONNECTs (retrying after "rejected: congestion"), REGISTERs the topic of its device
(--topics with {tenant} and {device}) and PUBLISHes JSON readings. Clients are source addresses
127.0.0.1, 127.0.0.2, ... on --sockets local ports.

Options:
  --target HOST:PORT   gateway MQTT-SN endpoint (default 127.0.0.1:1884)
  --clients N          sessions (default 1000); device ids start at --first-device (1)
  --tenant T           {tenant} of the topic (default demo)
  --topics TEMPLATE    topic template (default {tenant}/{device}/telemetry)
  --qos Q              0, 1 or 2 (default 1)
  --payload F          json (default) or report (tianhe.v1.Report, for models with codec "report")
  --rate R             PUBLISHes per second in all (default 1000; 0: as fast as acks allow)
  --duration S         seconds to publish (default 10)
  --max-reports N      stop after N PUBLISHes
  --window N           QoS 1/2 messages a client has unanswered, 1..4 (default 1: MQTT-SN
                       clients keep one message in flight)
  --keep-alive S       CONNECT duration (default 60)
  --sockets N          local ports (default 64)
  --connect-timeout S  how long clients retry CONNECT (default 30)
  --drain S            wait this long for outstanding acks (default 2s)
  --json               print the summary as JSON
  --quiet              no progress lines
Example:
  tianhe simulate --protocol mqtt_sn --target 127.0.0.1:1884 --clients 10000 --rate 20000 --qos 1)");
    return 0;
  }
  auto args = core::Args::parse(
      argc, argv, 2, {"json", "quiet"},
      {"target", "clients", "tenant", "topics", "qos", "rate", "duration", "max-reports",
       "keep-alive", "sockets", "connect-timeout", "drain", "first-device", "payload", "window"});
  if (!args.ok()) return core::usage_error("simulate", args.error().message);
  MqttSnSimOptions o;
  auto ep = config::parse_endpoint(args->str("target", "127.0.0.1:1884"), "--target");
  if (!ep.ok()) return core::usage_error("simulate", ep.error().message);
  o.host = ep->host;
  o.port = ep->port;
  auto clients = args->u64("clients", 1000, 1);
  auto qos = args->u64("qos", 1, 0, 2);
  auto rate = args->f64("rate", 1000, 0);
  auto duration = args->seconds("duration", 10);
  auto max_reports = args->u64("max-reports", 0);
  auto keep_alive = args->u64("keep-alive", 60, 1, 65535);
  auto window = args->u64("window", 1, 1, kWindow);
  auto sockets = args->u64("sockets", 64, 1, 4096);
  auto connect_timeout = args->seconds("connect-timeout", 30);
  auto drain = args->seconds("drain", 2);
  auto first = args->u64("first-device", 1, 1);
  for (const auto* r : {&clients, &qos, &max_reports, &keep_alive, &sockets, &first, &window}) {
    if (!r->ok()) return core::usage_error("simulate", r->error().message);
  }
  for (const auto* r : {&rate, &duration, &connect_timeout, &drain}) {
    if (!r->ok()) return core::usage_error("simulate", r->error().message);
  }
  o.clients = *clients;
  o.qos = static_cast<int>(*qos);
  o.rate = *rate;
  o.duration_s = *duration;
  o.max_reports = *max_reports;
  o.keep_alive_s = static_cast<uint16_t>(*keep_alive);
  o.window = static_cast<uint32_t>(*window);
  o.sockets = static_cast<uint32_t>(*sockets);
  o.connect_timeout_s = *connect_timeout;
  o.drain_s = *drain;
  o.first_device_id = *first;
  o.tenant = args->str("tenant", "demo");
  o.topics = args->str("topics", "{tenant}/{device}/telemetry");
  o.progress = !args->has("quiet");
  const std::string payload = args->str("payload", "json");
  if (payload != "json" && payload != "report") {
    return core::usage_error("simulate", "--payload: use json or report");
  }
  o.report_payload = payload == "report";
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  auto sum = run_mqtt_sn_simulator(o, &g_stop);
  if (!sum.ok()) {
    std::fprintf(stderr, "tianhe simulate: %s\n", sum.error().message.c_str());
    return 1;
  }
  if (args->has("json")) {
    std::printf("%s\n", sum->json().c_str());
  } else {
    std::printf("%s", sum->text().c_str());
  }
  return 0;
}

}  // namespace tianhe::protocols::mqtt_sn
