#include "protocols/report/report_simulator.h"

#include <poll.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <thread>

#include "core/clock.h"
#include "protocols/report/report_encoder.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::report {
namespace {

using protocols::report::AckEntry;
using protocols::report::AckStatus;
using protocols::report::EnvelopeEncoder;
using protocols::report::MetricIn;

/// Log-linear latency histogram: 32 sub-buckets per power of two of microseconds.
class LatencyHistogram {
 public:
  void add(int64_t ns) {
    uint64_t us = ns > 0 ? static_cast<uint64_t>(ns) / 1000 : 0;
    counts_[index(us)]++;
    ++total_;
    max_us_ = std::max(max_us_, us);
  }
  double percentile_ms(double p) const {
    if (total_ == 0) return 0;
    uint64_t want = static_cast<uint64_t>(std::ceil(p * static_cast<double>(total_)));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= want) return static_cast<double>(upper(i)) / 1000.0;
    }
    return static_cast<double>(max_us_) / 1000.0;
  }
  double max_ms() const { return static_cast<double>(max_us_) / 1000.0; }

 private:
  static constexpr int kSub = 32;
  static size_t index(uint64_t us) {
    if (us < kSub) return us;
    int e = 63 - __builtin_clzll(us);  // us in [2^e, 2^(e+1))
    uint64_t sub = (us >> (e - 5)) & (kSub - 1);
    return static_cast<size_t>((e - 4) * kSub + sub);
  }
  static uint64_t upper(size_t i) {
    if (i < kSub) return i + 1;
    uint64_t e = i / kSub + 4, sub = i % kSub;
    return ((uint64_t{kSub} + sub + 1) << (e - 5));
  }
  std::vector<uint64_t> counts_ = std::vector<uint64_t>(64 * kSub, 0);
  uint64_t total_ = 0;
  uint64_t max_us_ = 0;
};

/// What the simulator tracks per device, together so that one cache miss fetches both (devices
/// are visited in random order; 500,000 of them do not fit in the caches).
struct DeviceState {
  int64_t last_send_ns = 0;  ///< when the last report was sent (CLOCK_REALTIME, ns)
  uint32_t next_seq = 0;     ///< seq of the next report
};

struct Fleet {
  std::vector<uint64_t> order;       // device indexes, shuffled
  std::vector<DeviceState> devices;  // per device index
};

}  // namespace

std::string SimulatorSummary::json() const {
  nlohmann::json j{
      {"sent", sent},
      {"datagrams", datagrams},
      {"ack_requested", ack_requested},
      {"acked", acked_ok},
      {"rejected", rejected},
      {"busy", busy},
      {"lost", lost},
      {"send_errors", send_errors},
      {"elapsed_s", elapsed_s},
      {"rate", rate},
      {"acked_rate", acked_rate},
      {"ack_latency_ms", {{"p50", p50_ms}, {"p99", p99_ms}, {"p999", p999_ms}, {"max", max_ms}}},
      {"ack_latency_read_ms",
       {{"p50", read_p50_ms}, {"p99", read_p99_ms}, {"p999", read_p999_ms}, {"max", read_max_ms}}}};
  return j.dump();
}

std::string SimulatorSummary::text() const {
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "sent          %llu reports in %llu datagrams over %.1f s (%.0f reports/s)\n"
                "acked         %llu OK (%.0f/s), %llu rejected, %llu busy\n"
                "lost          %llu (ack requested, never answered)\n"
                "send errors   %llu\n"
                "ack latency   p50 %.3f ms  p99 %.3f ms  p999 %.3f ms  max %.3f ms"
                "  (send to the ack's arrival at the socket)\n"
                "  as read     p50 %.3f ms  p99 %.3f ms  p999 %.3f ms  max %.3f ms"
                "  (send to the fleet's thread reading it)\n",
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(datagrams),
                elapsed_s, rate, static_cast<unsigned long long>(acked_ok), acked_rate,
                static_cast<unsigned long long>(rejected), static_cast<unsigned long long>(busy),
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(send_errors),
                p50_ms, p99_ms, p999_ms, max_ms, read_p50_ms, read_p99_ms, read_p999_ms,
                read_max_ms);
  return buf;
}

Result<SimulatorSummary> run_simulator(const SimulatorOptions& o, const std::atomic<bool>* stop) {
  if (o.devices == 0) return make_error("--devices must be at least 1");
  if (o.batch == 0 || o.batch > 256) return make_error("--batch must be between 1 and 256");
  auto target = transports::resolve(o.host, o.port);
  if (!target.ok()) return make_error("--target: " + target.error().message);
  const uint32_t nsock = std::max<uint32_t>(1, o.sockets);
  std::vector<transports::UdpSocket> socks;
  for (uint32_t i = 0; i < nsock; ++i) {
    auto s = transports::UdpSocket::open_for(
        *target,
        transports::UdpOptions{
            .reuse_port = false, .recv_buffer_bytes = 4u << 20, .send_buffer_bytes = 4u << 20});
    if (!s.ok()) return s.error();
    // connect() fixes the peer so the kernel skips the route lookup per datagram.
    if (::connect(s->fd(), reinterpret_cast<const sockaddr*>(&target->addr), target->len) != 0) {
      return make_error("cannot connect a UDP socket to " + target->to_string());
    }
    socks.push_back(std::move(*s));
  }

  Fleet fleet;
  fleet.order.resize(o.devices);
  std::iota(fleet.order.begin(), fleet.order.end(), uint64_t{0});
  std::mt19937_64 rng(o.seed);
  std::shuffle(fleet.order.begin(), fleet.order.end(), rng);
  fleet.devices.assign(o.devices, DeviceState{});

  std::atomic<uint64_t> acked_ok{0}, rejected{0}, busy{0};
  std::atomic<bool> sending_done{false};
  std::atomic<uint64_t> total_requested{UINT64_MAX};
  LatencyHistogram latency;       // to the ack's arrival at the socket
  LatencyHistogram latency_read;  // to the receiving thread's read
  std::vector<std::pair<uint64_t, uint32_t>> acked_pairs;
  const bool keep_pairs = !o.acked_out.empty();

  // Ack receiver: one thread, epoll over every socket, recvmmsg batches.
  std::thread receiver;
  int ep = -1;
  if (o.ack) {
    ep = epoll_create1(EPOLL_CLOEXEC);
    for (uint32_t i = 0; i < nsock; ++i) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = i;
      epoll_ctl(ep, EPOLL_CTL_ADD, socks[i].fd(), &ev);
      transports::enable_receive_timestamps(socks[i].fd());
    }
    receiver = std::thread([&] {
      transports::DatagramBatch rx(64, 65536);
      std::vector<AckEntry> entries(512);
      epoll_event events[64];
      int64_t quiet_since = 0;
      while (true) {
        int n = epoll_wait(ep, events, 64, 20);
        const int64_t now = core::mono_ns();
        if (n <= 0) {
          if (sending_done.load()) {
            if (quiet_since == 0) quiet_since = now;
            if (now - quiet_since > static_cast<int64_t>(o.drain_s * 1e9)) break;
            if (acked_ok + rejected + busy >= total_requested.load()) break;
          }
          continue;
        }
        quiet_since = 0;
        for (int e = 0; e < n; ++e) {
          int fd = socks[events[e].data.u32].fd();
          while (rx.receive(fd) > 0) {
            for (uint32_t i = 0; i < rx.size(); ++i) {
              size_t count = 0;
              if (protocols::report::decode_ack(rx.data(i), entries, count) !=
                  protocols::report::ParseStatus::kComplete) {
                continue;
              }
              // One receive time per datagram; the devices' states fetched before they are used.
              // Wall clock on both ends: the kernel stamps arrivals with CLOCK_REALTIME.
              const int64_t read = core::wall_ns();
              const int64_t arrived = rx.arrival_wall_ns(i) != 0 ? rx.arrival_wall_ns(i) : read;
              for (size_t k = 0; k < count; ++k) {
                const uint64_t idx = entries[k].device_id - o.first_device_id;
                if (idx < o.devices) __builtin_prefetch(&fleet.devices[idx]);
              }
              uint64_t ok = 0, rej = 0, bsy = 0;
              for (size_t k = 0; k < count; ++k) {
                const AckEntry& a = entries[k];
                if (a.status == AckStatus::kOk) {
                  ++ok;
                  if (keep_pairs) acked_pairs.emplace_back(a.device_id, a.seq);
                } else if (a.status == AckStatus::kRejected) {
                  ++rej;
                } else {
                  ++bsy;
                }
                const uint64_t idx = a.device_id - o.first_device_id;
                if (idx < o.devices &&
                    __atomic_load_n(&fleet.devices[idx].next_seq, __ATOMIC_RELAXED) == a.seq + 1) {
                  const int64_t sent_at =
                      __atomic_load_n(&fleet.devices[idx].last_send_ns, __ATOMIC_RELAXED);
                  latency.add(arrived - sent_at);
                  latency_read.add(read - sent_at);
                }
              }
              acked_ok.fetch_add(ok, std::memory_order_relaxed);
              rejected.fetch_add(rej, std::memory_order_relaxed);
              busy.fetch_add(bsy, std::memory_order_relaxed);
            }
          }
        }
      }
    });
  }

  // Sender: paced by a clock; sendmmsg of up to 64 datagrams per socket per round.
  constexpr uint32_t kPerCall = 64;
  constexpr uint64_t kPrefetchAhead = 8;
  const size_t dgram_cap = 64 + static_cast<size_t>(o.batch) * 96;
  std::vector<uint8_t> bufs(kPerCall * dgram_cap);
  std::vector<mmsghdr> msgs(kPerCall);
  std::vector<iovec> iovs(kPerCall);
  SimulatorSummary sum;
  const int64_t start = core::mono_ns();
  const int64_t end = start + static_cast<int64_t>(o.duration_s * 1e9);
  int64_t next_progress = start + 1'000'000'000;
  uint64_t cursor = 0;  // position in the shuffled device order
  uint64_t report_no = 0;
  uint32_t sock_rr = 0;
  uint64_t last_progress_sent = 0;
  std::uniform_real_distribution<double> temp(15, 30), hum(30, 70), pres(950, 1050);
  std::uniform_int_distribution<int64_t> batt(3000, 4200);
  // The metrics of every report: names and types are fixed, only the values change.
  MetricIn m[5];
  m[0].name = "temperature";
  m[0].value.type = core::ValueType::kDouble;
  m[1].name = "humidity";
  m[1].value.type = core::ValueType::kDouble;
  m[2].name = "pressure";
  m[2].value.type = core::ValueType::kDouble;
  m[3].name = "battery_mv";
  m[3].value.type = core::ValueType::kInt64;
  m[4].name = "door_open";
  m[4].value.type = core::ValueType::kBool;
  while (true) {
    const int64_t now = core::mono_ns();
    if (now >= end || (stop && stop->load())) break;
    uint64_t due = o.rate > 0 ? static_cast<uint64_t>((now - start) * 1e-9 * o.rate) : UINT64_MAX;
    if (o.max_reports > 0) {
      if (sum.sent + sum.send_errors >= o.max_reports) break;
      due = std::min(due, o.max_reports - sum.send_errors);
    }
    if (sum.sent >= due) {
      // Ahead of schedule: sleep a little (coarse pacing keeps the sender cheap).
      const timespec w{0, 200'000};
      ppoll(nullptr, 0, &w, nullptr);
      continue;
    }
    uint64_t want_reports = std::min<uint64_t>(due - sum.sent, uint64_t{kPerCall} * o.batch);
    uint32_t ndg = static_cast<uint32_t>((want_reports + o.batch - 1) / o.batch);
    const int64_t wall = core::wall_ns();
    // Every report of this call counts as sent at `wall`, before it is encoded: the latency
    // measured includes the call's encoding (microseconds), never less than the real one.
    uint64_t reports_in_call = 0;
    // With max_reports the last datagram may carry fewer than `batch` reports.
    const uint64_t call_cap = o.max_reports > 0 ? want_reports : UINT64_MAX;
    for (uint32_t d = 0; d < ndg; ++d) {
      EnvelopeEncoder enc(std::span<uint8_t>(bufs.data() + d * dgram_cap, dgram_cap));
      for (uint32_t k = 0; k < o.batch && reports_in_call < call_cap; ++k) {
        uint64_t idx = fleet.order[cursor];
        cursor = cursor + 1 == o.devices ? 0 : cursor + 1;
        // The state of the device a few reports ahead, fetched while this one is encoded.
        const uint64_t ahead = cursor + kPrefetchAhead;
        __builtin_prefetch(
            &fleet.devices[fleet.order[ahead < o.devices ? ahead : ahead % o.devices]], 1);
        ++report_no;
        m[0].value.f64 = temp(rng);
        if (o.invalid_every && report_no % o.invalid_every == 0) m[0].value.f64 = 1000;
        m[1].value.f64 = hum(rng);
        m[2].value.f64 = pres(rng);
        m[3].value.i64 = batt(rng);
        m[4].value.b = (report_no & 7) == 0;
        DeviceState& dev = fleet.devices[idx];
        const uint32_t seq = dev.next_seq;
        if (!enc.add_report(o.first_device_id + idx, seq, wall, o.ack, m)) break;
        __atomic_store_n(&dev.last_send_ns, wall, __ATOMIC_RELAXED);
        __atomic_store_n(&dev.next_seq, seq + 1, __ATOMIC_RELAXED);
        ++reports_in_call;
      }
      iovs[d].iov_base = bufs.data() + d * dgram_cap;
      iovs[d].iov_len = enc.size();
      msgs[d].msg_hdr = msghdr{};
      msgs[d].msg_hdr.msg_iov = &iovs[d];
      msgs[d].msg_hdr.msg_iovlen = 1;
    }
    int fd = socks[sock_rr++ % nsock].fd();
    uint32_t done = 0;
    while (done < ndg) {
      int n = transports::send_batch(fd, msgs.data() + done, ndg - done);
      if (n <= 0) {
        // The socket buffer is full: wait for room (blocking senders would do the same).
        pollfd p{fd, POLLOUT, 0};
        poll(&p, 1, 10);
        if (core::mono_ns() >= end) break;
        continue;
      }
      done += static_cast<uint32_t>(n);
    }
    uint64_t sent_reports = std::min<uint64_t>(reports_in_call, uint64_t{done} * o.batch);
    sum.send_errors += reports_in_call - sent_reports;
    sum.sent += sent_reports;
    sum.datagrams += done;
    if (o.ack) sum.ack_requested += sent_reports;
    if (o.progress && now >= next_progress) {
      char line[256];
      std::snprintf(line, sizeof line,
                    "[%4.0fs] sent %llu (%.0f/s)  acked %llu  rejected %llu  busy %llu",
                    (now - start) / 1e9, static_cast<unsigned long long>(sum.sent),
                    static_cast<double>(sum.sent - last_progress_sent),
                    static_cast<unsigned long long>(acked_ok.load()),
                    static_cast<unsigned long long>(rejected.load()),
                    static_cast<unsigned long long>(busy.load()));
      last_progress_sent = sum.sent;
      if (o.progress_sink) o.progress_sink(line);
      next_progress += 1'000'000'000;
    }
  }
  sum.elapsed_s = (core::mono_ns() - start) / 1e9;
  total_requested = sum.ack_requested;
  sending_done = true;
  if (receiver.joinable()) receiver.join();
  if (ep >= 0) ::close(ep);
  sum.acked_ok = acked_ok;
  sum.rejected = rejected;
  sum.busy = busy;
  const uint64_t answered = sum.acked_ok + sum.rejected + sum.busy;
  sum.lost = sum.ack_requested > answered ? sum.ack_requested - answered : 0;
  sum.rate = sum.sent / std::max(sum.elapsed_s, 1e-9);
  sum.acked_rate = sum.acked_ok / std::max(sum.elapsed_s, 1e-9);
  sum.p50_ms = latency.percentile_ms(0.50);
  sum.p99_ms = latency.percentile_ms(0.99);
  sum.p999_ms = latency.percentile_ms(0.999);
  sum.max_ms = latency.max_ms();
  sum.read_p50_ms = latency_read.percentile_ms(0.50);
  sum.read_p99_ms = latency_read.percentile_ms(0.99);
  sum.read_p999_ms = latency_read.percentile_ms(0.999);
  sum.read_max_ms = latency_read.max_ms();
  if (keep_pairs) {
    std::ofstream out(o.acked_out);
    if (!out) return make_error("--acked-out: cannot write " + o.acked_out);
    for (auto& [d, s] : acked_pairs) out << d << ' ' << s << '\n';
  }
  return sum;
}

}  // namespace tianhe::protocols::report
