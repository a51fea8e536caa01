#include "tools/bench/udp_floor.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "transports/udp_socket.h"

namespace tianhe::tools::bench {
namespace {

constexpr uint32_t kBatch = 64;        ///< datagrams per recvmmsg / sendmmsg
constexpr size_t kMaxDatagram = 2048;  ///< request and reply sizes are clamped to this
constexpr int kStallMs = 50;           ///< a client socket silent this long sends its window again

/// A socket bound to 127.0.0.1:0 with large buffers, so the floor measures the kernel's path,
/// not a small buffer's drops.
Result<transports::UdpSocket> bind_loopback() {
  auto local = transports::resolve("127.0.0.1", 0);
  if (!local.ok()) return local.error();
  transports::UdpOptions opts;
  opts.reuse_port = false;
  opts.recv_buffer_bytes = 8u << 20;
  opts.send_buffer_bytes = 8u << 20;
  opts.nonblocking = false;
  return transports::UdpSocket::bind(*local, opts);
}

double thread_cpu_s() {
  rusage u{};
  ::getrusage(RUSAGE_THREAD, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// The answering side: every request read gets one reply to its sender, until `stop`.
void answer(int fd, uint32_t reply_bytes, const std::atomic<bool>& stop, double& cpu_s) {
  std::vector<std::array<uint8_t, kMaxDatagram>> in(kBatch);
  std::vector<sockaddr_in> from(kBatch);
  std::vector<iovec> in_iov(kBatch), out_iov(kBatch);
  std::vector<mmsghdr> in_msgs(kBatch), out_msgs(kBatch);
  std::vector<uint8_t> reply(reply_bytes, 0x40);
  for (uint32_t k = 0; k < kBatch; ++k) {
    in_iov[k] = {in[k].data(), in[k].size()};
    out_iov[k] = {reply.data(), reply.size()};
  }
  pollfd p{fd, POLLIN, 0};
  while (!stop.load(std::memory_order_relaxed)) {
    if (::poll(&p, 1, 20) <= 0) continue;
    for (uint32_t k = 0; k < kBatch; ++k) {
      in_msgs[k] = mmsghdr{};
      in_msgs[k].msg_hdr.msg_name = &from[k];
      in_msgs[k].msg_hdr.msg_namelen = sizeof from[k];
      in_msgs[k].msg_hdr.msg_iov = &in_iov[k];
      in_msgs[k].msg_hdr.msg_iovlen = 1;
    }
    const int got = ::recvmmsg(fd, in_msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (got <= 0) continue;
    for (int k = 0; k < got; ++k) {
      out_msgs[k] = mmsghdr{};
      out_msgs[k].msg_hdr.msg_name = &from[k];
      out_msgs[k].msg_hdr.msg_namelen = in_msgs[k].msg_hdr.msg_namelen;
      out_msgs[k].msg_hdr.msg_iov = &out_iov[k];
      out_msgs[k].msg_hdr.msg_iovlen = 1;
    }
    int done = 0;
    while (done < got) {
      const int n = ::sendmmsg(fd, &out_msgs[done], static_cast<unsigned>(got - done), 0);
      if (n <= 0) break;  // a full buffer: the rest are lost, the client's stall timer resends
      done += n;
    }
  }
  cpu_s = thread_cpu_s();
}

}  // namespace

UdpFloor probe_udp_request_reply(const UdpFloorOptions& o) {
  UdpFloor out;
  const uint32_t sockets = std::max<uint32_t>(o.sockets, 1);
  const uint32_t window = std::clamp<uint32_t>(o.window, 1, kBatch);
  const size_t request_bytes = std::clamp<size_t>(o.request_bytes, 1, kMaxDatagram);
  const uint32_t reply_bytes = std::clamp<uint32_t>(o.reply_bytes, 1, kMaxDatagram);

  auto server = bind_loopback();
  if (!server.ok()) {
    out.error = server.error().message;
    return out;
  }
  std::vector<transports::UdpSocket> clients;
  clients.reserve(sockets);
  for (uint32_t i = 0; i < sockets; ++i) {
    auto c = bind_loopback();
    if (!c.ok()) {
      out.error = c.error().message;
      return out;
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(server->local_port());
    if (::connect(c->fd(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      out.error = std::string("cannot connect a client UDP socket: ") + std::strerror(errno);
      return out;
    }
    clients.push_back(std::move(*c));
  }

  std::atomic<bool> stop{false};
  double server_cpu = 0;
  std::thread answering(answer, server->fd(), reply_bytes, std::cref(stop), std::ref(server_cpu));

  std::vector<uint8_t> request(request_bytes, 0x30);
  std::vector<iovec> iov(kBatch, iovec{request.data(), request.size()});
  std::vector<mmsghdr> msgs(kBatch);
  for (uint32_t k = 0; k < kBatch; ++k) {
    msgs[k].msg_hdr.msg_iov = &iov[k];
    msgs[k].msg_hdr.msg_iovlen = 1;
  }
  std::array<uint8_t, kMaxDatagram> sink{};
  std::vector<iovec> rx_iov(kBatch, iovec{sink.data(), sink.size()});
  std::vector<mmsghdr> rx(kBatch);
  // Sends `n` requests on client `c` (at most kBatch); returns how many left.
  auto send = [&](const transports::UdpSocket& c, uint32_t n) -> uint32_t {
    const int sent = ::sendmmsg(c.fd(), msgs.data(), std::min(n, kBatch), 0);
    return sent > 0 ? static_cast<uint32_t>(sent) : 0;
  };

  const double cpu0 = thread_cpu_s();
  std::vector<pollfd> fds;
  std::vector<int64_t> last_reply(sockets, 0);
  fds.reserve(sockets);
  const int64_t start = core::mono_ns();
  for (uint32_t i = 0; i < sockets; ++i) {
    fds.push_back({clients[i].fd(), POLLIN, 0});
    out.requests += send(clients[i], window);
    last_reply[i] = start;
  }
  const int64_t end = start + static_cast<int64_t>(o.seconds * 1e9);
  int64_t now = start;
  while (now < end) {
    const int ready = ::poll(fds.data(), fds.size(), kStallMs);
    now = core::mono_ns();
    for (uint32_t i = 0; i < sockets && ready > 0; ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      for (uint32_t k = 0; k < kBatch; ++k) {
        rx[k] = mmsghdr{};
        rx[k].msg_hdr.msg_iov = &rx_iov[k];
        rx[k].msg_hdr.msg_iovlen = 1;
      }
      const int got = ::recvmmsg(clients[i].fd(), rx.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (got <= 0) continue;
      out.exchanges += static_cast<uint64_t>(got);
      last_reply[i] = now;
      out.requests += send(clients[i], static_cast<uint32_t>(got));
    }
    // A socket whose replies stopped lost datagrams somewhere: it sends its window again.
    for (uint32_t i = 0; i < sockets; ++i) {
      if (now - last_reply[i] > int64_t{kStallMs} * 1'000'000) {
        out.requests += send(clients[i], window);
        last_reply[i] = now;
        ++out.resent_windows;
      }
    }
  }
  const double elapsed = static_cast<double>(core::mono_ns() - start) / 1e9;
  out.client_cpu_s = thread_cpu_s() - cpu0;
  stop.store(true, std::memory_order_relaxed);
  answering.join();
  out.server_cpu_s = server_cpu;
  out.exchanges_per_s = elapsed > 0 ? static_cast<double>(out.exchanges) / elapsed : 0;
  if (out.exchanges == 0) out.error = "no reply came back over loopback";
  return out;
}

}  // namespace tianhe::tools::bench
