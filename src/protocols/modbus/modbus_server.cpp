#include "protocols/modbus/modbus_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <unordered_map>

#include "transports/udp_socket.h"

namespace tianhe::protocols::modbus {

namespace {

constexpr size_t kConnBytes = 8192;

uint16_t be16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

uint32_t now_tick() noexcept {
  return static_cast<uint32_t>(::time(nullptr));
}

}  // namespace

uint16_t simulated_register(uint8_t unit, Table table, uint16_t address, uint32_t tick) noexcept {
  return static_cast<uint16_t>(address * 31u + unit * 7u + static_cast<uint32_t>(table) * 1000u +
                               tick);
}

bool simulated_bit(uint8_t unit, Table table, uint16_t address, uint32_t tick) noexcept {
  return ((address + unit + static_cast<uint32_t>(table) + tick) & 1u) != 0;
}

long serve_requests(const uint8_t* in, size_t len, uint8_t* out, size_t out_cap, size_t& out_len,
                    uint32_t tick, uint64_t& answered) noexcept {
  size_t off = 0;
  while (len - off >= kMbapBytes) {
    const uint8_t* h = in + off;
    const uint16_t length = be16(h + 4);
    if (be16(h + 2) != 0 || length < 2 || length > kMaxPduBytes + 1) return -1;
    if (len - off < 6u + length) break;
    if (out_cap - out_len < kMaxAduBytes) break;  // answer the rest after this batch is sent
    uint8_t* o = out + out_len;
    std::memcpy(o, h, 4);  // transaction and protocol ids
    o[6] = h[6];           // unit
    const uint8_t fc = h[7];
    size_t pdu = 0;
    auto exception = [&](uint8_t code) {
      o[7] = static_cast<uint8_t>(fc | 0x80);
      o[8] = code;
      pdu = 2;
    };
    if (fc < 1 || fc > 4) {
      exception(0x01);
    } else if (length != 6) {
      exception(0x03);
    } else {
      const uint16_t address = be16(h + 8);
      const uint16_t quantity = be16(h + 10);
      const Table t = static_cast<Table>(fc - 1);
      const bool bits = is_bit_table(t);
      if (quantity == 0 || quantity > (bits ? kMaxReadBits : kMaxReadRegisters)) {
        exception(0x03);
      } else if (address + static_cast<uint32_t>(quantity) > 65536u) {
        exception(0x02);
      } else {
        o[7] = fc;
        const size_t bytes = bits ? (quantity + 7u) / 8u : 2u * quantity;
        o[8] = static_cast<uint8_t>(bytes);
        uint8_t* d = o + 9;
        if (bits) {
          std::memset(d, 0, bytes);
          for (uint16_t i = 0; i < quantity; ++i) {
            if (simulated_bit(h[6], t, static_cast<uint16_t>(address + i), tick)) {
              d[i / 8] = static_cast<uint8_t>(d[i / 8] | (1u << (i % 8)));
            }
          }
        } else {
          for (uint16_t i = 0; i < quantity; ++i) {
            const uint16_t v =
                simulated_register(h[6], t, static_cast<uint16_t>(address + i), tick);
            d[2 * i] = static_cast<uint8_t>(v >> 8);
            d[2 * i + 1] = static_cast<uint8_t>(v);
          }
        }
        pdu = 2 + bytes;
      }
    }
    o[4] = static_cast<uint8_t>((pdu + 1) >> 8);
    o[5] = static_cast<uint8_t>(pdu + 1);
    out_len += kMbapBytes + pdu;
    off += 6u + length;
    ++answered;
  }
  return static_cast<long>(off);
}

struct ModbusServer::Worker {
  int listen_fd = -1;
  int epoll_fd = -1;
  std::atomic<uint64_t> requests{0};
  struct Conn {
    size_t len = 0;
    uint8_t in[kConnBytes];
  };
  std::unordered_map<int, std::unique_ptr<Conn>> conns;
  ~Worker() {
    for (auto& [fd, c] : conns) ::close(fd);
    if (listen_fd >= 0) ::close(listen_fd);
    if (epoll_fd >= 0) ::close(epoll_fd);
  }
};

Result<std::unique_ptr<ModbusServer>> ModbusServer::start(const ServerOptions& options) {
  auto addr = transports::resolve(options.host, options.port);
  if (!addr.ok()) return make_error("--listen: " + addr.error().message);
  std::unique_ptr<ModbusServer> s(new ModbusServer());
  for (uint32_t i = 0; i < std::max<uint32_t>(1, options.threads); ++i) {
    auto w = std::make_unique<Worker>();
    w->listen_fd = ::socket(addr->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(w->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(w->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_storage a = addr->addr;
    if (i > 0) {
      // The first listener picked the port; the others join it.
      if (a.ss_family == AF_INET) reinterpret_cast<sockaddr_in&>(a).sin_port = htons(s->port_);
      if (a.ss_family == AF_INET6) reinterpret_cast<sockaddr_in6&>(a).sin6_port = htons(s->port_);
    }
    if (::bind(w->listen_fd, reinterpret_cast<sockaddr*>(&a), addr->len) != 0 ||
        ::listen(w->listen_fd, 4096) != 0) {
      return make_error("--listen " + addr->to_string() + ": " + strerror(errno));
    }
    if (i == 0) {
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      ::getsockname(w->listen_fd, reinterpret_cast<sockaddr*>(&bound), &len);
      s->port_ =
          ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                            : reinterpret_cast<sockaddr_in&>(bound).sin_port);
    }
    w->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = w->listen_fd;
    ::epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->listen_fd, &ev);
    s->workers_.push_back(std::move(w));
  }
  for (auto& w : s->workers_) {
    Worker* wp = w.get();
    s->threads_.emplace_back([srv = s.get(), wp] { srv->run(*wp); });
    pthread_setname_np(s->threads_.back().native_handle(), "modbus-sim");
  }
  return s;
}

ModbusServer::~ModbusServer() {
  stop();
}

uint64_t ModbusServer::requests() const noexcept {
  uint64_t n = 0;
  for (const auto& w : workers_) n += w->requests.load(std::memory_order_relaxed);
  return n;
}

void ModbusServer::stop() noexcept {
  stop_.store(true, std::memory_order_relaxed);
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void ModbusServer::run(Worker& w) noexcept {
  epoll_event events[256];
  static thread_local uint8_t out[64 * 1024];
  uint64_t answered = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    const int n = ::epoll_wait(w.epoll_fd, events, 256, 50);
    const uint32_t tick = now_tick();
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == w.listen_fd) {
        for (;;) {
          const int c = ::accept4(w.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;
          const int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = c;
          ::epoll_ctl(w.epoll_fd, EPOLL_CTL_ADD, c, &ev);
          w.conns[c] = std::make_unique<Worker::Conn>();
        }
        continue;
      }
      auto it = w.conns.find(fd);
      if (it == w.conns.end()) continue;
      Worker::Conn& c = *it->second;
      const ssize_t r = ::recv(fd, c.in + c.len, kConnBytes - c.len, 0);
      bool close_it = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
      if (r > 0) {
        c.len += static_cast<size_t>(r);
        size_t out_len = 0;
        const long used = serve_requests(c.in, c.len, out, sizeof out, out_len, tick, answered);
        if (used < 0) {
          close_it = true;
        } else {
          std::memmove(c.in, c.in + used, c.len - static_cast<size_t>(used));
          c.len -= static_cast<size_t>(used);
          // A client that does not read its responses for a second is dropped.
          size_t sent = 0;
          while (sent < out_len) {
            const ssize_t s = ::send(fd, out + sent, out_len - sent, MSG_NOSIGNAL);
            if (s <= 0) {
              pollfd p{fd, POLLOUT, 0};
              if (s < 0 && errno == EAGAIN && ::poll(&p, 1, 1000) == 1) continue;
              close_it = true;
              break;
            }
            sent += static_cast<size_t>(s);
          }
        }
      }
      if (close_it) {
        ::close(fd);
        w.conns.erase(it);
      }
    }
    w.requests.store(answered, std::memory_order_relaxed);
  }
}

}  // namespace tianhe::protocols::modbus
