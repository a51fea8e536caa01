#include "control/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"

namespace tianhe::control {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kDeadlineNs = 10'000'000'000;  // generous: sanitizer builds on 2 cores

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-case
  std::string body;
};

// A blocking test client over a real socket; every wait has a deadline.
class Client {
 public:
  explicit Client(uint16_t port, bool ipv6 = false) {
    fd_ = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ipv6) {
      sockaddr_in6 a{};
      a.sin6_family = AF_INET6;
      a.sin6_port = htons(port);
      a.sin6_addr = in6addr_loopback;
      connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    } else {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads one response (a HEAD response has no body whatever its Content-Length says).
  std::optional<Response> read(bool head = false) {
    const int64_t deadline = core::mono_ns() + kDeadlineNs;
    while (true) {
      const size_t end = buf_.find("\r\n\r\n");
      if (end != std::string::npos) {
        Response r;
        std::string_view head_text(buf_.data(), end);
        const size_t first = head_text.find("\r\n");
        const std::string_view status_line = head_text.substr(0, first);
        if (status_line.size() < 12 || status_line.substr(0, 9) != "HTTP/1.1 ") return {};
        r.status = std::stoi(std::string(status_line.substr(9, 3)));
        size_t pos = first == std::string_view::npos ? head_text.size() : first + 2;
        while (pos < head_text.size()) {
          size_t eol = head_text.find("\r\n", pos);
          if (eol == std::string_view::npos) eol = head_text.size();
          const std::string_view line = head_text.substr(pos, eol - pos);
          const size_t colon = line.find(':');
          std::string name(line.substr(0, colon));
          for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          std::string value(line.substr(colon + 1));
          while (!value.empty() && value.front() == ' ') value.erase(0, 1);
          r.headers[name] = value;
          pos = eol + 2;
        }
        size_t length = 0;
        if (!head && r.headers.count("content-length") != 0) {
          length = std::stoul(r.headers["content-length"]);
        }
        if (buf_.size() >= end + 4 + length) {
          r.body = buf_.substr(end + 4, length);
          buf_.erase(0, end + 4 + length);
          return r;
        }
      }
      if (!fill(deadline)) return {};
    }
  }

  // True when the server closes the connection (EOF or reset) before the deadline.
  bool wait_closed() {
    const int64_t deadline = core::mono_ns() + kDeadlineNs;
    while (fill(deadline)) {
    }
    return closed_;
  }

  // Bytes received but not consumed by read().
  const std::string& pending() const { return buf_; }

 private:
  bool fill(int64_t deadline) {
    while (true) {
      const int64_t left_ms = (deadline - core::mono_ns()) / 1'000'000;
      if (left_ms <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left_ms));
      if (r <= 0) continue;
      std::array<char, 65536> tmp{};
      const ssize_t n = ::recv(fd_, tmp.data(), tmp.size(), 0);
      if (n <= 0) {
        closed_ = true;
        return false;
      }
      buf_.append(tmp.data(), static_cast<size_t>(n));
      return true;
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string buf_;
};

// Waits for `cond` with a deadline instead of sleeping a fixed time.
template <typename F>
bool eventually(F cond) {
  const int64_t deadline = core::mono_ns() + kDeadlineNs;
  while (core::mono_ns() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return cond();
}

HttpResponse text(std::string body) {
  HttpResponse r;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.route("GET", "/", [](const HttpRequest&) { return text("hello tianhe\n"); });
    server_.route("GET", "/api/v1/devices/{id}/reports", [](const HttpRequest& r) {
      return text(r.param("id") + "|" + r.query_param("from") + "|" + r.query_param("name") + "|" +
                  r.query_param("missing", "dflt"));
    });
    server_.route("GET", "/api/v1/devices/count", [](const HttpRequest&) { return text("count"); });
    server_.route("POST", "/api/v1/echo", [](const HttpRequest& r) {
      HttpResponse resp = text(r.body);
      resp.headers.emplace_back("X-Method", r.method);
      return resp;
    });
    server_.route("GET", "/echo/{word}",
                  [](const HttpRequest& r) { return text(r.param("word")); });
    server_.route("GET", "/boom", [](const HttpRequest&) -> HttpResponse {
      throw std::runtime_error("registry \"unavailable\"");
    });
    server_.route("GET", "/big", [](const HttpRequest& r) {
      return text(std::string(std::stoul(r.query_param("n", "1")), 'x'));
    });
    server_.route("DELETE", "/api/v1/echo", [](const HttpRequest&) { return text("deleted"); });
    server_.route("GET", "/empty", [](const HttpRequest&) {
      HttpResponse r;
      r.status = 204;
      return r;
    });
  }
  void TearDown() override { server_.stop(); }

  void start(uint32_t max_connections = 256) {
    auto r = server_.start(Endpoint{"127.0.0.1", 0}, max_connections);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_NE(server_.port(), 0);
  }

  // One request on a fresh connection.
  std::optional<Response> get(std::string_view target) {
    Client c(server_.port());
    if (!c.send("GET " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n\r\n")) return {};
    return c.read();
  }

  HttpServer server_;
};

TEST_F(HttpServerTest, GetWithPathParamsAndPercentDecodedQuery) {
  start();
  auto r = get("/api/v1/devices/42/reports?from=10&name=a%20b+c%2B");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "42|10|a b c+|dflt");
  EXPECT_EQ(r->headers["content-type"], "text/plain");
  EXPECT_EQ(r->headers["content-length"], std::to_string(r->body.size()));
  EXPECT_EQ(r->headers["connection"], "keep-alive");
  EXPECT_FALSE(r->headers["date"].empty());
  // The literal route wins over the parameter route.
  r = get("/api/v1/devices/count/reports");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "count|||dflt");
  r = get("/api/v1/devices/count");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "count");
  r = get("/echo/caf%C3%A9%20x");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "caf\xC3\xA9 x");
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  start();
  Client c(server_.port());
  ASSERT_TRUE(c.send("GET /echo/one HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r1 = c.read();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->body, "one");
  ASSERT_TRUE(c.send("POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"));
  auto r2 = c.read();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body, "hello");
  EXPECT_EQ(r2->headers["x-method"], "POST");
  EXPECT_EQ(server_.stats().connections_accepted, 1u);
  // Connection: close is honoured after the response.
  ASSERT_TRUE(c.send("GET /echo/last HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  auto r3 = c.read();
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->headers["connection"], "close");
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start();
  Client c(server_.port());
  std::string batch;
  for (int i = 0; i < 20; ++i)
    batch += "GET /echo/r" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n";
  batch += "POST /api/v1/echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nend";
  ASSERT_TRUE(c.send(batch));
  for (int i = 0; i < 20; ++i) {
    auto r = c.read();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->body, "r" + std::to_string(i));
  }
  auto last = c.read();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->body, "end");
}

TEST_F(HttpServerTest, PipelinedLargeResponsesToASlowReader) {
  start();
  Client c(server_.port());
  constexpr int kRequests = 12;
  constexpr size_t kBody = 512 * 1024;  // 6 MiB in all: more than the output backlog limit
  std::string batch;
  for (int i = 0; i < kRequests; ++i) {
    batch += "GET /big?n=" + std::to_string(kBody) + " HTTP/1.1\r\nHost: t\r\n\r\n";
  }
  ASSERT_TRUE(c.send(batch));
  for (int i = 0; i < kRequests; ++i) {
    auto r = c.read();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->body.size(), kBody);
  }
}

TEST_F(HttpServerTest, RequestArrivingOneByteAtATime) {
  start();
  Client c(server_.port());
  const std::string req = "POST /api/v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd";
  for (const char ch : req) ASSERT_TRUE(c.send(std::string_view(&ch, 1)));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "abcd");
}

TEST_F(HttpServerTest, MalformedRequestIs400AndCloses) {
  start();
  for (const char* bad :
       {"GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost : t\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
        "GET /%zz HTTP/1.1\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00"}) {
    Client c(server_.port());
    ASSERT_TRUE(c.send(bad));
    auto r = c.read();
    ASSERT_TRUE(r) << bad;
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_EQ(r->headers["connection"], "close");
    EXPECT_EQ(r->body, "{\"error\":\"malformed HTTP request\"}");
    EXPECT_TRUE(c.wait_closed());
  }
  EXPECT_EQ(server_.stats().bad_requests, 5u);
}

TEST_F(HttpServerTest, OversizedBodyAndHeadersAre413) {
  start();
  {
    Client c(server_.port());
    ASSERT_TRUE(c.send("POST /api/v1/echo HTTP/1.1\r\nContent-Length: " +
                       std::to_string(kMaxHttpBodyBytes + 1) + "\r\n\r\n"));
    // The client keeps sending its body; the response must still reach it.
    ASSERT_TRUE(c.send(std::string(64 * 1024, 'b')));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_TRUE(c.wait_closed());
  }
  {
    Client c(server_.port());
    ASSERT_TRUE(
        c.send("GET / HTTP/1.1\r\nX-Big: " + std::string(kMaxHttpHeaderBytes, 'h') + "\r\n\r\n"));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
  }
  {
    // The largest body allowed is served.
    Client c(server_.port());
    ASSERT_TRUE(c.send(
        "POST /api/v1/echo HTTP/1.1\r\nContent-Length: " + std::to_string(kMaxHttpBodyBytes) +
        "\r\n\r\n" + std::string(kMaxHttpBodyBytes, 'z')));
    auto r = c.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body.size(), kMaxHttpBodyBytes);
  }
}

TEST_F(HttpServerTest, ChunkedRequestBodyIs411) {
  start();
  Client c(server_.port());
  ASSERT_TRUE(
      c.send("POST /api/v1/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n0\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 411);
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, UnknownPathIs404) {
  start();
  for (const char* path : {"/nope", "/api/v1/devices//reports", "/echo/a/b", "/echo/"}) {
    auto r = get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_EQ(r->headers["content-type"], "application/json");
  }
}

TEST_F(HttpServerTest, WrongMethodIs405WithAllow) {
  start();
  Client c(server_.port());
  ASSERT_TRUE(c.send("PUT /api/v1/echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->headers["allow"], "DELETE, POST");
  ASSERT_TRUE(c.send("POST /echo/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(r->headers["allow"], "GET, HEAD");
}

TEST_F(HttpServerTest, HeadAnswersLikeGetWithoutBody) {
  start();
  Client c(server_.port());
  ASSERT_TRUE(c.send("HEAD /big?n=1000 HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r = c.read(/*head=*/true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers["content-length"], "1000");
  // No body bytes followed: the next response starts right after the HEAD response.
  ASSERT_TRUE(c.send("GET /echo/after HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r2 = c.read();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body, "after");
  EXPECT_EQ(c.pending(), "");
  // 204 carries neither a body nor a Content-Length.
  ASSERT_TRUE(c.send("GET /empty HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r3 = c.read();
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->status, 204);
  EXPECT_EQ(r3->headers.count("content-length"), 0u);
}

TEST_F(HttpServerTest, HandlerExceptionIs500WithJsonMessage) {
  start();
  Client c(server_.port());
  ASSERT_TRUE(c.send("GET /boom HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body, R"({"error":"registry \"unavailable\""})");
  // The connection survives a handler failure.
  ASSERT_TRUE(c.send("GET /echo/ok HTTP/1.1\r\nHost: t\r\n\r\n"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "ok");
  EXPECT_EQ(server_.stats().handler_errors, 1u);
}

TEST_F(HttpServerTest, ManyConcurrentConnections) {
  start();
  constexpr int kClients = 200;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(server_.port()));
    ASSERT_TRUE(clients.back()->connected());
  }
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(clients[i]->send("GET /echo/c" + std::to_string(i) + " HTTP/1.1\r\n\r\n"));
  }
  for (int i = kClients - 1; i >= 0; --i) {
    auto r = clients[i]->read();
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->body, "c" + std::to_string(i));
  }
  EXPECT_EQ(server_.stats().connections_open, static_cast<uint64_t>(kClients));
  clients.clear();
  EXPECT_TRUE(eventually([&] { return server_.stats().connections_open == 0; }));
}

TEST_F(HttpServerTest, ClientThreadsInParallel) {
  start();
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Client c(server_.port());
      for (int i = 0; i < 25; ++i) {
        const std::string word = "t" + std::to_string(t) + "i" + std::to_string(i);
        if (!c.send("GET /echo/" + word + " HTTP/1.1\r\n\r\n")) return;
        auto r = c.read();
        if (r && r->body == word) ok.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST_F(HttpServerTest, MaxConnectionsRefusesWith503) {
  start(/*max_connections=*/4);
  std::vector<std::unique_ptr<Client>> held;
  for (int i = 0; i < 4; ++i) {
    held.push_back(std::make_unique<Client>(server_.port()));
    ASSERT_TRUE(held.back()->send("GET /echo/x HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(held.back()->read());
  }
  {
    Client extra(server_.port());
    ASSERT_TRUE(extra.send("GET /echo/x HTTP/1.1\r\n\r\n"));
    auto r = extra.read();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503);
    EXPECT_TRUE(extra.wait_closed());
  }
  EXPECT_EQ(server_.stats().connections_refused, 1u);
  held.pop_back();
  ASSERT_TRUE(eventually([&] { return server_.stats().connections_open == 3; }));
  auto r = get("/echo/again");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpServerTest, IdleConnectionsAreClosed) {
  server_.set_idle_timeout(100ms);
  start();
  Client c(server_.port());
  ASSERT_TRUE(c.send("GET /echo/x HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(c.read());
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(server_.stats().idle_closed, 1u);
  Client partial(server_.port());
  ASSERT_TRUE(partial.send("GET /echo/x HTTP/1.1\r\nHost:"));
  EXPECT_TRUE(partial.wait_closed());
}

TEST_F(HttpServerTest, ARequestTricklingInPastTheRequestTimeoutGets408) {
  server_.set_idle_timeout(5s);
  server_.set_request_timeout(300ms);
  start();
  // A byte every 50 ms keeps the connection active, but the request never completes.
  Client slow(server_.port());
  ASSERT_TRUE(slow.send("GET /echo/x HTTP/1.1\r\n"));
  bool sent = true;
  for (int i = 0; i < 20 && sent; ++i) {
    std::this_thread::sleep_for(50ms);
    sent = slow.send("X");  // fails once the server has answered and closed
  }
  auto r = slow.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 408);
  EXPECT_TRUE(slow.wait_closed());
  EXPECT_EQ(server_.stats().request_timeouts, 1u);
  EXPECT_EQ(server_.stats().idle_closed, 0u);
  // Complete requests on a kept-alive connection never count against it.
  Client steady(server_.port());
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(steady.send("GET /echo/x HTTP/1.1\r\n\r\n"));
    auto ok = steady.read();
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200);
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(server_.stats().request_timeouts, 1u);
}

TEST_F(HttpServerTest, StopClosesOpenConnections) {
  start();
  Client idle(server_.port());
  ASSERT_TRUE(idle.send("GET /echo/x HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(idle.read());
  Client partial(server_.port());
  ASSERT_TRUE(partial.send("POST /api/v1/echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nab"));
  Client fresh(server_.port());
  ASSERT_TRUE(eventually([&] { return server_.stats().connections_open == 3; }));
  server_.stop();
  EXPECT_TRUE(idle.wait_closed());
  EXPECT_TRUE(partial.wait_closed());
  EXPECT_TRUE(fresh.wait_closed());
  server_.stop();  // idempotent
  Client after(server_.port());
  EXPECT_FALSE(after.connected());
}

TEST_F(HttpServerTest, Http10ClosesUnlessKeepAlive) {
  start();
  Client c(server_.port());
  ASSERT_TRUE(c.send("GET /echo/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers["connection"], "keep-alive");
  ASSERT_TRUE(c.send("GET /echo/b HTTP/1.0\r\n\r\n"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "b");
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, HalfClosedClientStillGetsItsResponses) {
  start();
  Client c(server_.port());
  ASSERT_TRUE(c.send("GET /echo/a HTTP/1.1\r\n\r\nGET /echo/b HTTP/1.1\r\n\r\n"));
  // Like `printf ... | nc`: the client closes its write side right after the requests.
  c.shutdown_write();
  auto a = c.read();
  auto b = c.read();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->body + b->body, "ab");
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpServerTest, MetricsCollectorReportsServerCounters) {
  core::MetricsRegistry reg;
  reg.add([this](PromWriter& w) { server_.collect(w); });
  server_.route("GET", "/metrics", [&reg](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = reg.render();
    return r;
  });
  start();
  ASSERT_TRUE(get("/nope"));
  auto r = get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r->body.find("\ntianhe_http_responses_total 1\n"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("\ntianhe_http_connections_accepted_total 2\n"), std::string::npos)
      << r->body;
}

TEST_F(HttpServerTest, CurlGetsTheBody) {
  if (access("/usr/bin/curl", X_OK) != 0) GTEST_SKIP() << "/usr/bin/curl is missing; skipped";
  start();
  const std::string cmd =
      "/usr/bin/curl -sS --max-time 20 -H 'Accept: text/plain' http://127.0.0.1:" +
      std::to_string(server_.port()) + "/ 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_EQ(out, "hello tianhe\n");
}

TEST(HttpServer, Ipv6Loopback) {
  HttpServer server;
  server.route("GET", "/", [](const HttpRequest&) { return text("v6"); });
  auto r = server.start(Endpoint{"::1", 0});
  if (!r.ok()) GTEST_SKIP() << "no IPv6 loopback here: " << r.error().message;
  Client c(server.port(), /*ipv6=*/true);
  ASSERT_TRUE(c.connected());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n"));
  auto resp = c.read();
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->body, "v6");
  server.stop();
}

TEST(HttpServer, BindErrorsNameTheKeyAndTheFix) {
  HttpServer a;
  ASSERT_TRUE(a.start(Endpoint{"127.0.0.1", 0}).ok());
  HttpServer b;
  auto r = b.start(Endpoint{"127.0.0.1", a.port()});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("http.listen: cannot listen on 127.0.0.1:"), std::string::npos)
      << r.error().message;
  HttpServer c;
  auto bad = c.start(Endpoint{"not-an-address.invalid", 0});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("http.listen"), std::string::npos);
  EXPECT_FALSE(a.start(Endpoint{"127.0.0.1", 0}).ok());  // already started
}

// Responders kept by a deferred route until the test answers them (the route runs on the
// server thread, the test on its own: a mutex between them).
class Parked {
 public:
  void add(HttpResponder r) {
    std::lock_guard<std::mutex> lock(mu_);
    responders_.push_back(std::move(r));
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return responders_.size();
  }
  HttpResponder take() {
    std::lock_guard<std::mutex> lock(mu_);
    HttpResponder r = std::move(responders_.front());
    responders_.erase(responders_.begin());
    return r;
  }

 private:
  std::mutex mu_;
  std::vector<HttpResponder> responders_;
};

// Answers `r` from a thread of its own, as a profiler's callback would.
void answer_from_another_thread(HttpResponder r, std::string body) {
  std::thread t([r = std::move(r), body = std::move(body)]() mutable { r(text(body)); });
  t.join();
}

class DeferredHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_->route("GET", "/metrics", [](const HttpRequest&) { return text("metrics\n"); });
    server_->route("GET", "/echo/{word}",
                   [](const HttpRequest& r) { return text(r.param("word")); });
    // Keeps the responder for the test to answer.
    server_->route_deferred("GET", "/slow/{name}", [this](const HttpRequest&, HttpResponder r) {
      parked_->add(std::move(r));
    });
    // Answers from inside the handler, on the server thread.
    server_->route_deferred("GET", "/now/{word}", [](const HttpRequest& req, HttpResponder r) {
      r(text("now " + req.param("word")));
    });
    // Forgets to answer: the responder ends with the call.
    server_->route_deferred("GET", "/forgets", [](const HttpRequest&, HttpResponder) {});
    server_->route_deferred("GET", "/throws", [](const HttpRequest&, HttpResponder) {
      throw std::runtime_error("profiler \"unavailable\"");
    });
  }
  void TearDown() override {
    if (server_) server_->stop();
  }

  void start() {
    auto r = server_->start(Endpoint{"127.0.0.1", 0});
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  uint16_t port() const { return server_->port(); }
  HttpServerStats stats() const { return server_->stats(); }

  std::shared_ptr<Parked> parked_ = std::make_shared<Parked>();
  std::unique_ptr<HttpServer> server_ = std::make_unique<HttpServer>();
};

TEST_F(DeferredHttpTest, OtherConnectionsAreServedWhileOneWaitsThenItIsAnsweredFromAThread) {
  start();
  Client slow(port());
  ASSERT_TRUE(slow.send("GET /slow/a HTTP/1.1\r\nHost: t\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return parked_->size() == 1; }));
  EXPECT_EQ(stats().deferred_waiting, 1u);
  // The server thread is free: a scrape on another connection is answered meanwhile.
  for (int i = 0; i < 3; ++i) {
    Client scrape(port());
    ASSERT_TRUE(scrape.send("GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto m = scrape.read();
    ASSERT_TRUE(m);
    EXPECT_EQ(m->body, "metrics\n");
  }
  answer_from_another_thread(parked_->take(), "late");
  auto r = slow.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "late");
  EXPECT_EQ(r->headers["connection"], "keep-alive");
  // The connection is kept alive and serves the next request.
  ASSERT_TRUE(slow.send("GET /echo/next HTTP/1.1\r\n\r\n"));
  auto next = slow.read();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "next");
  const HttpServerStats st = stats();
  EXPECT_EQ(st.deferred, 1u);
  EXPECT_EQ(st.deferred_waiting, 0u);
  EXPECT_EQ(st.deferred_dropped + st.deferred_abandoned + st.deferred_refused, 0u);
}

TEST_F(DeferredHttpTest, PipelinedRequestsAfterAWaitingOneAreAnsweredInOrder) {
  start();
  Client c(port());
  ASSERT_TRUE(
      c.send("GET /slow/a HTTP/1.1\r\n\r\nGET /echo/b HTTP/1.1\r\n\r\nGET /slow/c HTTP/1.1\r\n\r\n"
             "GET /now/d HTTP/1.1\r\n\r\nGET /echo/e HTTP/1.1\r\nConnection: close\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return parked_->size() == 1; }));
  // Responses come in request order: b's cannot come first, as b is parsed only after a.
  answer_from_another_thread(parked_->take(), "a");
  auto a = c.read();
  auto b = c.read();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->body + b->body, "ab");
  ASSERT_TRUE(eventually([&] { return parked_->size() == 1; }));
  answer_from_another_thread(parked_->take(), "c");
  std::string bodies;
  for (int i = 0; i < 3; ++i) {
    auto r = c.read();
    ASSERT_TRUE(r) << i;
    bodies += r->body + "|";
  }
  EXPECT_EQ(bodies, "c|now d|e|");
  EXPECT_TRUE(c.wait_closed());  // e asked for Connection: close
  EXPECT_EQ(stats().deferred, 3u);
}

TEST_F(DeferredHttpTest, AnsweredSynchronouslyFromTheHandler) {
  start();
  Client c(port());
  ASSERT_TRUE(c.send("GET /now/x HTTP/1.1\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "now x");
  // HEAD on a deferred GET route: the same headers, no body.
  ASSERT_TRUE(c.send("HEAD /now/y HTTP/1.1\r\n\r\n"));
  auto h = c.read(/*head=*/true);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->headers["content-length"], "5");
  ASSERT_TRUE(c.send("GET /echo/after HTTP/1.1\r\n\r\n"));
  auto after = c.read();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "after");  // the HEAD response carried no body bytes
  EXPECT_EQ(stats().deferred_waiting, 0u);
}

TEST_F(DeferredHttpTest, AResponderDroppedUnansweredIs500) {
  start();
  Client c(port());
  ASSERT_TRUE(c.send("GET /forgets HTTP/1.1\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("ended without answering"), std::string::npos) << r->body;
  // A handler that throws before answering: 500 with its message.
  ASSERT_TRUE(c.send("GET /throws HTTP/1.1\r\n\r\n"));
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body, R"({"error":"profiler \"unavailable\""})");
  // A responder kept, then destroyed on another thread without an answer.
  ASSERT_TRUE(c.send("GET /slow/z HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return parked_->size() == 1; }));
  std::thread([r = parked_->take()] {}).join();
  r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 500);
  const HttpServerStats st = stats();
  EXPECT_EQ(st.deferred_abandoned, 3u);
  EXPECT_EQ(st.handler_errors, 1u);
  EXPECT_EQ(st.deferred_waiting, 0u);
}

TEST_F(DeferredHttpTest, AClientLeavingBeforeTheAnswerIsCountedAndTheAnswerDropped) {
  start();
  {
    Client gone(port());
    ASSERT_TRUE(gone.send("GET /slow/a HTTP/1.1\r\n\r\n"));
    ASSERT_TRUE(eventually([&] { return parked_->size() == 1; }));
  }  // closed
  // The server sees the close while the request waits and closes its side.
  ASSERT_TRUE(eventually([&] { return stats().connections_open == 0; }));
  EXPECT_EQ(stats().deferred_waiting, 1u);  // the handler's work still counts against the limit
  answer_from_another_thread(parked_->take(), "nobody reads this");
  ASSERT_TRUE(eventually([&] { return stats().deferred_dropped == 1; }));
  EXPECT_TRUE(eventually([&] { return stats().deferred_waiting == 0; }));
  // The server carries on.
  Client c(port());
  ASSERT_TRUE(c.send("GET /echo/fine HTTP/1.1\r\n\r\n"));
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "fine");
}

TEST_F(DeferredHttpTest, BeyondTheLimitOfWaitingRequestsIs503AtOnce) {
  server_->set_max_deferred(2);
  start();
  Client a(port());
  Client b(port());
  ASSERT_TRUE(a.send("GET /slow/a HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(b.send("GET /slow/b HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return parked_->size() == 2; }));
  Client c(port());
  ASSERT_TRUE(c.send("GET /slow/c HTTP/1.1\r\n\r\nGET /now/c HTTP/1.1\r\n\r\n"));
  auto refused = c.read();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_NE(refused->body.find("too many requests are waiting for a deferred response (2)"),
            std::string::npos)
      << refused->body;
  // A deferred route answering at once is refused as well while the limit is reached.
  auto refused2 = c.read();
  ASSERT_TRUE(refused2);
  EXPECT_EQ(refused2->status, 503);
  EXPECT_EQ(stats().deferred_refused, 2u);
  // Normal routes are not limited.
  ASSERT_TRUE(c.send("GET /metrics HTTP/1.1\r\n\r\n"));
  auto m = c.read();
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  answer_from_another_thread(parked_->take(), "a");
  answer_from_another_thread(parked_->take(), "b");
  auto ra = a.read();
  auto rb = b.read();
  ASSERT_TRUE(ra && rb);
  EXPECT_EQ(ra->body + rb->body, "ab");
  // Room again.
  ASSERT_TRUE(c.send("GET /now/again HTTP/1.1\r\n\r\n"));
  auto again = c.read();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, "now again");
}

TEST_F(DeferredHttpTest, StopAnswersAWaitingRequest503AndALaterResponderIsHarmless) {
  start();
  Client c(port());
  ASSERT_TRUE(c.send("GET /slow/a HTTP/1.1\r\n\r\n"));
  Client d(port());
  ASSERT_TRUE(d.send("GET /slow/b HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return parked_->size() == 2; }));
  server_->stop();
  auto r = c.read();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_NE(r->body.find("stopping"), std::string::npos) << r->body;
  EXPECT_EQ(r->headers["connection"], "close");
  EXPECT_TRUE(c.wait_closed());
  // Answered after stop(), from another thread: dropped and counted.
  answer_from_another_thread(parked_->take(), "too late");
  EXPECT_EQ(stats().deferred_dropped, 1u);
  // And after the server is gone altogether: the responder holds what it needs.
  HttpResponder last = parked_->take();
  server_.reset();
  answer_from_another_thread(std::move(last), "much too late");
  HttpResponder empty;
  EXPECT_FALSE(empty.pending());
}

TEST_F(DeferredHttpTest, MetricsCollectorReportsDeferredCounters) {
  start();
  Client c(port());
  ASSERT_TRUE(c.send("GET /slow/a HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(eventually([&] { return parked_->size() == 1; }));
  core::MetricsRegistry reg;
  reg.add([this](PromWriter& w) { server_->collect(w); });
  const std::string text = reg.render();
  EXPECT_NE(text.find("\ntianhe_http_deferred_requests_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntianhe_http_deferred_waiting 1\n"), std::string::npos) << text;
  answer_from_another_thread(parked_->take(), "a");
  ASSERT_TRUE(c.read());
}

// parse_http_request on its own: pure bytes in, request out.
HttpParseStatus parse(std::string_view text, HttpRequest& req, size_t& consumed) {
  return parse_http_request({reinterpret_cast<const uint8_t*>(text.data()), text.size()}, req,
                            consumed);
}

TEST(ParseHttpRequest, CompleteRequestFields) {
  HttpRequest req;
  size_t consumed = 0;
  const std::string text =
      "\r\nPOST /a%20b/c?x=1&y=%41 HTTP/1.1\r\nHost: h\r\nX-Token:  abc \t\r\n"
      "Content-Length: 3\r\n\r\nxyzGET";
  ASSERT_EQ(parse(text, req, consumed), HttpParseStatus::kComplete);
  EXPECT_EQ(consumed, text.size() - 3);
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.path, "/a b/c");
  EXPECT_EQ(req.query, "x=1&y=%41");
  EXPECT_EQ(req.query_param("y"), "A");
  EXPECT_EQ(req.header("x-token"), "abc");
  EXPECT_EQ(req.header("X-Token"), "abc");
  EXPECT_EQ(req.body, "xyz");
  EXPECT_TRUE(req.keep_alive);
}

TEST(ParseHttpRequest, EveryPrefixNeedsMore) {
  const std::string text = "POST /x HTTP/1.1\r\nContent-Length: 2\r\n\r\nok";
  for (size_t n = 0; n < text.size(); ++n) {
    HttpRequest req;
    size_t consumed = 0;
    EXPECT_EQ(parse(text.substr(0, n), req, consumed), HttpParseStatus::kNeedMore) << n;
  }
}

TEST(ParseHttpRequest, RejectsWhatRfc9112Rejects) {
  struct Case {
    const char* text;
    HttpParseStatus want;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n", HttpParseStatus::kMalformed},
      {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", HttpParseStatus::kMalformed},
      {"GET /  HTTP/1.1\r\n\r\n", HttpParseStatus::kMalformed},
      {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", HttpParseStatus::kMalformed},
      {"GET /a#frag HTTP/1.1\r\n\r\n", HttpParseStatus::kMalformed},
      {"GET relative HTTP/1.1\r\n\r\n", HttpParseStatus::kMalformed},
      {"GET ?x=1 HTTP/1.1\r\n\r\n", HttpParseStatus::kMalformed},
      {"GET /%00 HTTP/1.1\r\n\r\n", HttpParseStatus::kMalformed},
      {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
       HttpParseStatus::kMalformed},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HttpParseStatus::kMalformed},
      {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
       HttpParseStatus::kTooLarge},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HttpParseStatus::kLengthRequired},
      {"\x01GET", HttpParseStatus::kMalformed},
  };
  for (const auto& c : cases) {
    HttpRequest req;
    size_t consumed = 0;
    EXPECT_EQ(parse(c.text, req, consumed), c.want) << c.text;
    EXPECT_EQ(consumed, 0u);
  }
  HttpRequest req;
  size_t consumed = 0;
  // Identical repeated lengths are one length; absolute-form targets are accepted.
  EXPECT_EQ(parse("POST http://h:1/p?q=1 HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na", req, consumed),
            HttpParseStatus::kComplete);
  EXPECT_EQ(req.path, "/p");
  EXPECT_EQ(req.query, "q=1");
  std::string many = "GET / HTTP/1.1\r\n";
  for (size_t i = 0; i <= kMaxHttpHeaderFields; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(parse(many + "\r\n", req, consumed), HttpParseStatus::kTooLarge);
}

TEST(PercentDecode, DecodesAndRejectsBadEscapes) {
  std::string out;
  EXPECT_TRUE(percent_decode("a%2Fb+c", false, out));
  EXPECT_EQ(out, "a/b+c");
  EXPECT_TRUE(percent_decode("a%2fb+c", true, out));
  EXPECT_EQ(out, "a/b c");
  EXPECT_FALSE(percent_decode("%", false, out));
  EXPECT_FALSE(percent_decode("%4", false, out));
  EXPECT_FALSE(percent_decode("%G0", false, out));
  HttpRequest r;
  r.query = "a=1&bad=%zz&flag&a=2";
  EXPECT_EQ(r.query_param("a"), "1");
  EXPECT_EQ(r.query_param("bad"), "%zz");
  EXPECT_EQ(r.query_param("flag", "x"), "");
  EXPECT_EQ(r.query_param("none", "x"), "x");
}

}  // namespace
}  // namespace tianhe::control
