#include "core/http_get.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tianhe::core {
namespace {

constexpr size_t kMaxResponse = 64u << 20;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int n;
  do {
    n = ::poll(&p, 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

}  // namespace

Result<HttpReply> http_get(const std::string& host, uint16_t port, const std::string& path,
                           int timeout_ms) {
  const std::string where = host + ":" + std::to_string(port);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  const std::string ip = host == "localhost" ? "127.0.0.1" : host;
  if (::inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    return make_error("\"" + host + "\" is not an IPv4 address");
  }
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (fd.get() < 0) return make_error(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (errno != EINPROGRESS) {
      return make_error("cannot connect to " + where + ": " + std::strerror(errno));
    }
    if (!wait_for(fd.get(), POLLOUT, timeout_ms)) {
      return make_error("cannot connect to " + where + ": timed out");
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return make_error("cannot connect to " + where + ": " + std::strerror(err));
  }
  const std::string req =
      "GET " + path + " HTTP/1.1\r\nHost: " + where + "\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < req.size()) {
    if (!wait_for(fd.get(), POLLOUT, timeout_ms))
      return make_error("send to " + where + ": timed out");
    const ssize_t n = ::send(fd.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return make_error("send to " + where + ": " + std::strerror(errno));
    }
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string out;
  char buf[65536];
  for (;;) {
    if (!wait_for(fd.get(), POLLIN, timeout_ms)) {
      return make_error("no answer from " + where + " within " + std::to_string(timeout_ms) +
                        " ms");
    }
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return make_error("read from " + where + ": " + std::strerror(errno));
    }
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxResponse)
      return make_error("the response from " + where + " is over 64 MiB");
  }
  const size_t body = out.find("\r\n\r\n");
  if (out.rfind("HTTP/1.", 0) != 0 || out.size() < 12 || body == std::string::npos) {
    return make_error("not an HTTP response from " + where);
  }
  HttpReply r;
  r.status = std::atoi(out.c_str() + 9);
  r.body = out.substr(body + 4);
  return r;
}

}  // namespace tianhe::core
