#include "transports/udp_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace tianhe::transports {
namespace {

constexpr size_t kControlBytes = CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(timespec));

}  // namespace

std::string PeerAddress::to_string() const {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
  inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
  port = ntohs(a->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

Result<PeerAddress> resolve(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    return make_error("cannot resolve host '" + host + "': " + gai_strerror(rc) +
                      "; use a numeric address such as 127.0.0.1 or ::1");
  }
  PeerAddress p;
  std::memcpy(&p.addr, res->ai_addr, res->ai_addrlen);
  p.len = res->ai_addrlen;
  freeaddrinfo(res);
  return p;
}

UdpSocket::~UdpSocket() {
  if (fd_ >= 0) ::close(fd_);
}

UdpSocket::UdpSocket(UdpSocket&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

UdpSocket& UdpSocket::operator=(UdpSocket&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

static Result<int> make_socket(int family, const UdpOptions& o) {
  int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC | (o.nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return make_error("socket(): " + errno_text(errno));
  int one = 1;
  if (o.reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (o.recv_buffer_bytes) {
    int v = static_cast<int>(o.recv_buffer_bytes);
    // SO_RCVBUFFORCE passes the net.core.rmem_max cap when privileged; fall back otherwise.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) != 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
    }
  }
  if (o.send_buffer_bytes) {
    int v = static_cast<int>(o.send_buffer_bytes);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0) {
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
    }
  }
  return fd;
}

static uint16_t local_port_of(const PeerAddress& a) noexcept {
  if (a.addr.ss_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(&a.addr)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&a.addr)->sin6_port);
}

/// Whether a socket without SO_REUSEPORT can bind `local`: false (EADDRINUSE) when any socket,
/// even one of a SO_REUSEPORT group, holds it.
static Result<void> check_address_free(const PeerAddress& local) {
  const int fd = ::socket(local.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error("socket(): " + errno_text(errno));
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&local.addr), local.len);
  const int e = errno;
  ::close(fd);
  if (rc == 0) return {};
  return make_error("cannot bind UDP " + local.to_string() + ": " + errno_text(e) +
                    (e == EADDRINUSE ? "; another process holds the port (sharing it would split "
                                       "the datagrams between both): stop it or choose another "
                                       "port"
                                     : ""));
}

Result<UdpSocket> UdpSocket::bind(const PeerAddress& local, const UdpOptions& options) {
  if (options.reuse_port && options.exclusive && local_port_of(local) != 0) {
    if (auto free = check_address_free(local); !free.ok()) return free.error();
  }
  auto fd = make_socket(local.addr.ss_family, options);
  if (!fd.ok()) return fd.error();
  UdpSocket s(*fd);
  if (::bind(s.fd_, reinterpret_cast<const sockaddr*>(&local.addr), local.len) != 0) {
    int e = errno;
    return make_error("cannot bind UDP " + local.to_string() + ": " + errno_text(e) +
                      (e == EADDRINUSE ? "; another process holds the port: stop it or choose "
                                         "another port"
                                       : ""));
  }
  return s;
}

Result<UdpSocket> UdpSocket::open_for(const PeerAddress& peer, const UdpOptions& options) {
  auto fd = make_socket(peer.addr.ss_family, options);
  if (!fd.ok()) return fd.error();
  return UdpSocket(*fd);
}

uint16_t UdpSocket::local_port() const noexcept {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
}

uint32_t UdpSocket::recv_buffer_bytes() const noexcept {
  int v = 0;
  socklen_t len = sizeof v;
  getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &v, &len);
  return static_cast<uint32_t>(v);
}

uint32_t UdpSocket::send_buffer_bytes() const noexcept {
  int v = 0;
  socklen_t len = sizeof v;
  getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &v, &len);
  return static_cast<uint32_t>(v);
}

bool enable_drop_counter(int fd) noexcept {
  int one = 1;
  return setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) == 0;
}

bool enable_receive_timestamps(int fd) noexcept {
  int one = 1;
  return setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) == 0;
}

DatagramBatch::DatagramBatch(uint32_t capacity, uint32_t max_datagram_bytes)
    : capacity_(capacity),
      max_bytes_(max_datagram_bytes),
      buffers_(std::make_unique_for_overwrite<uint8_t[]>(size_t{capacity} * max_datagram_bytes)),
      hdrs_(std::make_unique<mmsghdr[]>(capacity)),
      iovs_(std::make_unique<iovec[]>(capacity)),
      addrs_(std::make_unique<sockaddr_storage[]>(capacity)),
      controls_(std::make_unique<uint8_t[]>(capacity * kControlBytes)),
      arrivals_(std::make_unique<int64_t[]>(capacity)) {}

DatagramBatch::~DatagramBatch() = default;

int DatagramBatch::receive(int fd) noexcept {
  for (uint32_t i = 0; i < capacity_; ++i) {
    iovs_[i].iov_base = buffers_.get() + size_t{i} * max_bytes_;
    iovs_[i].iov_len = max_bytes_;
    msghdr& h = hdrs_[i].msg_hdr;
    h.msg_name = &addrs_[i];
    h.msg_namelen = sizeof(sockaddr_storage);
    h.msg_iov = &iovs_[i];
    h.msg_iovlen = 1;
    h.msg_control = controls_.get() + size_t{i} * kControlBytes;
    h.msg_controllen = kControlBytes;
    h.msg_flags = 0;
  }
  int n = ::recvmmsg(fd, hdrs_.get(), capacity_, MSG_DONTWAIT, nullptr);
  if (n < 0) {
    count_ = 0;
    return -errno;
  }
  count_ = static_cast<uint32_t>(n);
  // The last datagram's control messages: the newest cumulative drop count (SO_RXQ_OVFL),
  // and whether this socket stamps arrivals (SO_TIMESTAMPNS). Only then are the others read.
  has_arrivals_ = n > 0 && read_controls(static_cast<uint32_t>(n - 1), true);
  if (has_arrivals_ && n > 1) {
    if (first_arrival_only_) {
      read_controls(0, false);
      for (int i = 1; i < n - 1; ++i) arrivals_[i] = 0;
      arrivals_[n - 1] = 0;
    } else {
      for (int i = 0; i < n - 1; ++i) read_controls(static_cast<uint32_t>(i), false);
    }
  }
  return n;
}

bool DatagramBatch::read_controls(uint32_t i, bool drops) noexcept {
  msghdr& h = hdrs_[i].msg_hdr;
  arrivals_[i] = 0;
  bool stamped = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SO_RXQ_OVFL && drops) {
      std::memcpy(&kernel_drops_, CMSG_DATA(c), sizeof(uint32_t));
    } else if (c->cmsg_type == SCM_TIMESTAMPNS) {
      timespec ts{};
      std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
      arrivals_[i] = int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
      stamped = true;
    }
  }
  return stamped;
}

std::span<const uint8_t> DatagramBatch::data(uint32_t i) const noexcept {
  size_t len = hdrs_[i].msg_len;
  if (len > max_bytes_) len = max_bytes_;
  return {buffers_.get() + size_t{i} * max_bytes_, len};
}

bool DatagramBatch::truncated(uint32_t i) const noexcept {
  return (hdrs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
}

int send_batch(int fd, mmsghdr* msgs, uint32_t count) noexcept {
  int n = ::sendmmsg(fd, msgs, count, MSG_DONTWAIT);
  return n < 0 ? -errno : n;
}

}  // namespace tianhe::transports
