// HTTP/1.1 (RFC 9110 semantics, RFC 9112 message syntax) for the control plane: one thread,
// level-triggered epoll, non-blocking sockets, Content-Length bodies only.
#include "control/http_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <exception>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <unordered_map>

#include "core/assert.h"
#include "core/clock.h"

namespace tianhe::control {

using core::iequals;

namespace {

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Status";
  }
}

// RFC 9110 §5.6.7: IMF-fixdate, independent of the C locale.
std::string http_date() {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const time_t now = time(nullptr);
  tm t{};
  gmtime_r(&now, &t);
  std::array<char, 40> buf{};
  std::snprintf(buf.data(), buf.size(), "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[t.tm_wday],
                t.tm_mday, kMonths[t.tm_mon], t.tm_year + 1900, t.tm_hour, t.tm_min, t.tm_sec);
  return buf.data();
}

bool safe_header_text(std::string_view s) {
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> segs;
  if (path.empty() || path.front() != '/') {
    segs.push_back(path);
    return segs;
  }
  path.remove_prefix(1);
  if (path.empty()) return segs;
  while (true) {
    const size_t slash = path.find('/');
    segs.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return segs;
}

// A request-bearing connection pauses parsing while this much response is unsent (pipelining
// back-pressure: a client that never reads cannot make us buffer without bound).
constexpr size_t kMaxOutputBacklog = 1 << 20;
constexpr size_t kMaxInputBytes = kMaxHttpHeaderBytes + kMaxHttpBodyBytes;
// Refused connections (503) live briefly beyond max_connections, capped by this.
constexpr size_t kMaxRefusedConnections = 64;
// How long a closing connection keeps reading (and discarding) after its last response, so
// that unread request bytes do not turn our close into a reset that destroys the response.
constexpr int64_t kLingerNs = 2'000'000'000;
constexpr uint64_t kWakeId = 0;
constexpr uint64_t kListenId = 1;
constexpr uint64_t kFirstConnId = 16;

// What a server shares with the responders of its deferred requests, which may outlive it:
// the completions not yet taken and the eventfd that wakes the server thread. Responders push
// from any thread; the server thread takes them all at once. Each waiting request has one
// responder that pushes once, so the queue never holds more than the server's limit of waiting
// requests: both vectors are reserved to it and a push never allocates.
class CompletionQueue final : public core::HttpCompletionSink {
 public:
  // One completion: a response, or a responder destroyed without one.
  struct Entry {
    uint64_t ticket = 0;
    bool abandoned = false;
    HttpResponse response;
  };

  CompletionQueue(Fd wake, size_t capacity) : wake_(std::move(wake)) { pending_.reserve(capacity); }

  void complete(uint64_t ticket, HttpResponse response) noexcept override {
    push(Entry{ticket, false, std::move(response)});
  }
  void abandon(uint64_t ticket) noexcept override { push(Entry{ticket, true, HttpResponse{}}); }

  // Moves every pending completion into `out` (emptied first; capacities are swapped, never
  // lost). `close`: completions pushed from now on are dropped and counted.
  void take(std::vector<Entry>& out, bool close) {
    out.clear();
    std::lock_guard<std::mutex> lock(mu_);
    if (out.capacity() < pending_.capacity()) out.reserve(pending_.capacity());
    pending_.swap(out);
    if (close) closed_ = true;
  }

  // Wakes the server thread's epoll_wait.
  void wake() const noexcept {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t r = ::write(wake_.get(), &one, sizeof one);
  }
  int fd() const noexcept { return wake_.get(); }
  uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  void push(Entry&& e) noexcept {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      TH_BUG(pending_.size() < pending_.capacity(), "one completion per waiting request");
      if (pending_.size() >= pending_.capacity()) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      pending_.push_back(std::move(e));
    }
    wake();
  }

  const Fd wake_;
  std::mutex mu_;
  std::vector<Entry> pending_;  // under mu_
  bool closed_ = false;         // under mu_: the server has stopped
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace

struct HttpServer::Impl {
  // One client connection. A connection is in one mode at a time: kHttp (request/response,
  // keep-alive, pipelining) or kLinger (responses sent, write side shut, discarding input until
  // EOF or the linger deadline). A long-lived stream (a WebSocket for the live view) becomes a
  // further mode that owns `out` and the write interest once the upgrade response is queued.
  struct Conn {
    enum class Mode : uint8_t { kHttp, kLinger };
    uint64_t id = 0;
    Fd fd;
    Mode mode = Mode::kHttp;
    std::string in;
    std::string out;
    size_t out_off = 0;
    int64_t last_active_ns = 0;
    int64_t request_started_ns = 0;  // first byte of the request now arriving; 0: none pending
    int64_t linger_until_ns = 0;
    bool close_after_write = false;  // Connection: close, HTTP/1.0, or an error response
    bool peer_eof = false;           // the client shut its write side
    bool refused = false;            // counted against kMaxRefusedConnections, not the limit
    // A deferred response is awaited (its ticket is the connection id): no further request is
    // parsed, and the client closing its side means it has gone.
    bool waiting = false;
    bool waiting_head = false;       // the awaited response is to a HEAD request
    bool waiting_keep_alive = true;  // and keeps the connection open
    std::string waiting_failure;     // the deferred handler threw: the 500's message
    uint32_t events = 0;             // epoll interest now registered
  };

  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;  // literal, or {name}
    int literals = 0;
    HttpHandler handler;       // one of the two is set
    DeferredHandler deferred;  // answered later through an HttpResponder
  };

  std::vector<Route> routes;
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds request_timeout{10'000};
  uint32_t max_connections = 256;
  uint32_t max_deferred = kDefaultMaxDeferred;

  Fd listen_fd;
  Fd epoll_fd;
  // Holds the wake eventfd (stop() and completions use it); responders share it.
  std::shared_ptr<CompletionQueue> completions;
  std::thread thread;
  std::atomic<bool> started{false};
  std::atomic<bool> stopping{false};
  std::atomic<uint16_t> port{0};

  // Server-thread state.
  std::unordered_map<uint64_t, std::unique_ptr<Conn>> conns;
  uint64_t next_id = kFirstConnId;
  size_t active = 0;
  size_t refused = 0;
  bool listen_paused = false;
  size_t waiting = 0;  // deferred requests whose responder has not completed
  std::vector<CompletionQueue::Entry> completed;
  std::array<char, 64 * 1024> read_buf{};

  // Counters, read by stats() from any thread.
  std::atomic<uint64_t> n_accepted{0};
  std::atomic<uint64_t> n_refused{0};
  std::atomic<uint64_t> n_open{0};
  std::atomic<uint64_t> n_requests{0};
  std::atomic<uint64_t> n_bad{0};
  std::atomic<uint64_t> n_handler_errors{0};
  std::atomic<uint64_t> n_idle_closed{0};
  std::atomic<uint64_t> n_request_timeouts{0};
  std::atomic<uint64_t> n_deferred{0};
  std::atomic<uint64_t> n_deferred_waiting{0};
  std::atomic<uint64_t> n_deferred_refused{0};
  std::atomic<uint64_t> n_deferred_dropped{0};
  std::atomic<uint64_t> n_deferred_abandoned{0};

  void run();
  void accept_all();
  void on_event(Conn& c, uint32_t events);
  void on_readable(Conn& c);
  void serve(Conn& c);
  bool process(Conn& c);
  void defer(Conn& c, const HttpRequest& req, const Route& r);
  void drain_completions(bool closing);
  void answer_waiting_at_stop();
  void flush(Conn& c);
  void update_interest(Conn& c);
  void close_conn(Conn& c);
  void sweep(int64_t now);
  const Route* find_route(HttpRequest& req, HttpResponse& otherwise);
  HttpResponse call(const Route& r, const HttpRequest& req);
  void queue_response(Conn& c, const HttpResponse& r, bool head, bool keep_alive);
  void queue_error(Conn& c, int status, std::string_view message);
};

void HttpServer::Impl::run() {
  pthread_setname_np(pthread_self(), "http");
  std::array<epoll_event, 64> events{};
  int64_t next_sweep = core::mono_ns();
  const int64_t sweep_every_ns = std::clamp<int64_t>(
      std::min(idle_timeout, request_timeout).count() * 1'000'000 / 4, 5'000'000, 1'000'000'000);
  while (!stopping.load(std::memory_order_acquire)) {
    const int64_t now0 = core::mono_ns();
    const int timeout_ms =
        static_cast<int>(std::max<int64_t>(0, (next_sweep - now0 + 999'999) / 1'000'000));
    const int n =
        epoll_wait(epoll_fd.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
    TH_CHECK(n >= 0 || errno == EINTR, "epoll_wait on a valid epoll fd");
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kWakeId) {
        uint64_t v = 0;
        [[maybe_unused]] const ssize_t r = ::read(completions->fd(), &v, sizeof v);
        drain_completions(false);
        continue;
      }
      if (id == kListenId) {
        accept_all();
        continue;
      }
      // An earlier event of this batch may have closed it; ids are never reused.
      const auto it = conns.find(id);
      if (it != conns.end()) on_event(*it->second, events[i].events);
    }
    const int64_t now = core::mono_ns();
    if (now >= next_sweep) {
      sweep(now);
      next_sweep = now + sweep_every_ns;
    }
  }
  answer_waiting_at_stop();
  conns.clear();
  n_open.store(0, std::memory_order_relaxed);
}

// Responses completed before stop() are still written; requests still waiting get 503. Each
// connection gets one non-blocking write: stop() never waits for a slow client.
void HttpServer::Impl::answer_waiting_at_stop() {
  drain_completions(true);
  for (auto& [id, c] : conns) {
    if (c->waiting) {
      c->waiting = false;
      queue_response(*c, HttpResponse::error(503, "the server is stopping; retry when it is back"),
                     c->waiting_head, false);
    }
    if (c->out_off < c->out.size()) {
      [[maybe_unused]] const ssize_t n =
          ::send(c->fd.get(), c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
    }
  }
  waiting = 0;
  n_deferred_waiting.store(0, std::memory_order_relaxed);
}

// Completions are taken in one batch. A ticket whose connection has closed (the client gave
// up) is dropped and counted; ids are never reused, so it cannot reach another client.
void HttpServer::Impl::drain_completions(bool closing) {
  completions->take(completed, closing);
  for (CompletionQueue::Entry& e : completed) {
    TH_BUG(waiting > 0, "a completion belongs to a waiting request");
    if (waiting > 0) --waiting;
    // Before the response is written: a client that reads it then sees the gauge agree.
    n_deferred_waiting.store(waiting, std::memory_order_relaxed);
    if (e.abandoned) n_deferred_abandoned.fetch_add(1, std::memory_order_relaxed);
    const auto it = conns.find(e.ticket);
    if (it == conns.end() || !it->second->waiting) {
      TH_BUG(it == conns.end(), "a connection waits for its one responder");
      n_deferred_dropped.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    Conn& c = *it->second;
    c.waiting = false;
    if (e.abandoned) {
      e.response = HttpResponse::error(
          500, c.waiting_failure.empty()
                   ? "the handler of this request ended without answering it (a server bug); "
                     "retry, and report it if it persists"
                   : c.waiting_failure);
      c.waiting_failure.clear();
    }
    const int64_t now = core::mono_ns();
    c.last_active_ns = now;
    // Pipelined bytes that arrived meanwhile start the next request's clock now.
    c.request_started_ns = c.in.empty() ? 0 : now;
    queue_response(c, e.response, c.waiting_head, c.waiting_keep_alive);
    if (!closing) serve(c);  // the requests pipelined after it, in order
  }
  completed.clear();
}

void HttpServer::Impl::accept_all() {
  while (true) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    const int fd = accept4(listen_fd.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: stop polling the listener until the next sweep instead of
        // spinning on a readable socket we cannot accept from.
        epoll_event ev{};
        ev.data.u64 = kListenId;
        epoll_ctl(epoll_fd.get(), EPOLL_CTL_MOD, listen_fd.get(), &ev);
        listen_paused = true;
      }
      return;
    }
    auto c = std::make_unique<Conn>();
    c->fd = Fd(fd);
    c->id = next_id++;
    c->last_active_ns = core::mono_ns();
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (active >= max_connections) {
      if (refused >= kMaxRefusedConnections) continue;  // Fd closes it
      c->refused = true;
      ++refused;
      n_refused.fetch_add(1, std::memory_order_relaxed);
      queue_error(*c, 503, "too many connections; retry later");
      c->close_after_write = true;
    } else {
      ++active;
      n_accepted.fetch_add(1, std::memory_order_relaxed);
      n_open.store(active, std::memory_order_relaxed);
    }
    epoll_event ev{};
    ev.data.u64 = c->id;
    ev.events = c->refused ? 0u : static_cast<uint32_t>(EPOLLIN);
    c->events = ev.events;
    TH_CHECK(epoll_ctl(epoll_fd.get(), EPOLL_CTL_ADD, fd, &ev) == 0, "adding a new socket");
    Conn& ref = *c;
    conns.emplace(c->id, std::move(c));
    if (ref.refused) {
      flush(ref);
      if (conns.count(ref.id) != 0) update_interest(ref);
    }
  }
}

void HttpServer::Impl::on_event(Conn& c, uint32_t events) {
  const uint64_t id = c.id;
  if ((events & EPOLLERR) != 0) {
    close_conn(c);
    return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) != 0) {
    on_readable(c);
    if (conns.count(id) == 0) return;
  }
  // The client closed while its response is being prepared: nobody will read it (a half-close
  // is taken as leaving too, as the peer's FIN cannot tell the two apart; Go's net/http does
  // the same). The completion, when it comes, is dropped and counted.
  if (c.waiting && (c.peer_eof || (events & EPOLLRDHUP) != 0)) {
    close_conn(c);
    return;
  }
  serve(c);
}

void HttpServer::Impl::serve(Conn& c) {
  const uint64_t id = c.id;
  while (true) {
    const bool held_back = c.mode == Conn::Mode::kHttp && !c.refused && process(c);
    flush(c);
    if (conns.count(id) == 0) return;
    // Writing everything frees room for requests held back by the output backlog.
    if (!held_back || c.out_off < c.out.size()) break;
  }
  update_interest(c);
}

void HttpServer::Impl::on_readable(Conn& c) {
  const size_t room = c.mode == Conn::Mode::kLinger
                          ? read_buf.size()
                          : std::min(read_buf.size(), kMaxInputBytes - c.in.size());
  if (room == 0) return;
  const ssize_t n = ::recv(c.fd.get(), read_buf.data(), room, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    close_conn(c);
    return;
  }
  c.last_active_ns = core::mono_ns();
  if (c.mode == Conn::Mode::kLinger) {
    if (n == 0) close_conn(c);
    return;
  }
  if (n == 0) {
    c.peer_eof = true;
  } else {
    if (c.in.empty()) c.request_started_ns = c.last_active_ns;
    c.in.append(read_buf.data(), static_cast<size_t>(n));
  }
}

// Parses and answers every complete request in the input buffer. Returns true when it
// stopped because of the output backlog (more requests may be waiting).
bool HttpServer::Impl::process(Conn& c) {
  while (!c.close_after_write && !c.waiting) {
    if (c.out.size() - c.out_off >= kMaxOutputBacklog) return true;
    HttpRequest req;
    size_t consumed = 0;
    const auto status = parse_http_request(
        {reinterpret_cast<const uint8_t*>(c.in.data()), c.in.size()}, req, consumed);
    switch (status) {
      case HttpParseStatus::kNeedMore:
        // A client that half-closed mid-request will never complete it.
        if (c.peer_eof) c.close_after_write = true;
        return false;
      case HttpParseStatus::kMalformed:
        n_bad.fetch_add(1, std::memory_order_relaxed);
        queue_error(c, 400, "malformed HTTP request");
        return false;
      case HttpParseStatus::kTooLarge:
        n_bad.fetch_add(1, std::memory_order_relaxed);
        queue_error(c, 413, "request too large: headers are limited to 16 KiB, bodies to 1 MiB");
        return false;
      case HttpParseStatus::kLengthRequired:
        n_bad.fetch_add(1, std::memory_order_relaxed);
        queue_error(c, 411, "Transfer-Encoding is not supported; send a Content-Length body");
        return false;
      case HttpParseStatus::kComplete: break;
    }
    c.in.erase(0, consumed);
    // Pipelined bytes already here start the next request's clock now.
    c.request_started_ns = c.in.empty() ? 0 : core::mono_ns();
    HttpResponse resp;
    const Route* r = find_route(req, resp);
    if (r != nullptr && r->deferred) {
      defer(c, req, *r);
      continue;
    }
    if (r != nullptr) resp = call(*r, req);
    queue_response(c, resp, req.method == "HEAD", req.keep_alive);
  }
  return false;
}

void HttpServer::Impl::defer(Conn& c, const HttpRequest& req, const Route& r) {
  const bool head = req.method == "HEAD";
  if (waiting >= max_deferred) {
    n_deferred_refused.fetch_add(1, std::memory_order_relaxed);
    const std::string why = "too many requests are waiting for a deferred response (" +
                            std::to_string(max_deferred) + "); retry when they are answered";
    queue_response(c, HttpResponse::error(503, why), head, req.keep_alive);
    return;
  }
  n_deferred.fetch_add(1, std::memory_order_relaxed);
  ++waiting;
  n_deferred_waiting.store(waiting, std::memory_order_relaxed);
  c.waiting = true;
  c.waiting_head = head;
  c.waiting_keep_alive = req.keep_alive;
  c.waiting_failure.clear();
  // A handler that answers at once (from this thread) only queues its completion: it is
  // written after the eventfd wakes the loop, never from inside the handler.
  try {
    r.deferred(req, HttpResponder(completions, c.id));
  } catch (const std::exception& e) {
    n_handler_errors.fetch_add(1, std::memory_order_relaxed);
    c.waiting_failure = e.what();
  } catch (...) {
    n_handler_errors.fetch_add(1, std::memory_order_relaxed);
    c.waiting_failure = "handler failed with a non-standard exception";
  }
}

HttpResponse HttpServer::Impl::call(const Route& r, const HttpRequest& req) {
  try {
    return r.handler(req);
  } catch (const std::exception& e) {
    n_handler_errors.fetch_add(1, std::memory_order_relaxed);
    return HttpResponse::error(500, e.what());
  } catch (...) {
    n_handler_errors.fetch_add(1, std::memory_order_relaxed);
    return HttpResponse::error(500, "handler failed with a non-standard exception");
  }
}

// Returns the route that answers `req` (its params set), or null with a 404 or 405 in
// `otherwise`.
const HttpServer::Impl::Route* HttpServer::Impl::find_route(HttpRequest& req,
                                                            HttpResponse& otherwise) {
  const std::vector<std::string_view> segs = split_path(req.path);
  const Route* best = nullptr;
  int best_score = -1;
  std::vector<std::pair<std::string, std::string>> best_params;
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<std::string_view> allowed;
  for (const Route& r : routes) {
    if (r.segments.size() != segs.size()) continue;
    params.clear();
    bool match = true;
    for (size_t i = 0; i < segs.size() && match; ++i) {
      const std::string& p = r.segments[i];
      if (p.size() >= 2 && p.front() == '{' && p.back() == '}') {
        if (segs[i].empty()) match = false;
        params.emplace_back(p.substr(1, p.size() - 2), std::string(segs[i]));
      } else {
        match = p == segs[i];
      }
    }
    if (!match) continue;
    allowed.push_back(r.method);
    if (r.method == "GET") allowed.push_back("HEAD");
    // RFC 9110 §9.3.2: HEAD is answered like GET without the body. A more literal pattern
    // wins over one with parameters ("/devices/count" over "/devices/{id}").
    const bool exact = r.method == req.method;
    if (!exact && !(req.method == "HEAD" && r.method == "GET")) continue;
    const int score = r.literals * 2 + (exact ? 1 : 0);
    if (score > best_score) {
      best = &r;
      best_score = score;
      best_params = params;
    }
  }
  if (best != nullptr) {
    req.params = std::move(best_params);
    return best;
  }
  if (allowed.empty()) {
    otherwise = HttpResponse::error(404, "no such path: " + req.path);
    return nullptr;
  }
  std::sort(allowed.begin(), allowed.end());
  allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
  std::string allow;
  for (const auto m : allowed) {
    if (!allow.empty()) allow += ", ";
    allow += m;
  }
  otherwise = HttpResponse::error(405, "method " + req.method + " not allowed; use " + allow);
  otherwise.headers.emplace_back("Allow", allow);
  return nullptr;
}

void HttpServer::Impl::queue_error(Conn& c, int status, std::string_view message) {
  queue_response(c, HttpResponse::error(status, message), false, false);
}

void HttpServer::Impl::queue_response(Conn& c, const HttpResponse& r, bool head, bool keep_alive) {
  n_requests.fetch_add(1, std::memory_order_relaxed);
  // RFC 9110 §8.6, §15.3.5: no Content-Length and no body with 1xx and 204; none with 304.
  const bool no_length = (r.status >= 100 && r.status < 200) || r.status == 204;
  const bool no_body = no_length || r.status == 304 || head;
  std::string& o = c.out;
  if (c.out_off == o.size()) {
    o.clear();
    c.out_off = 0;
  }
  o += "HTTP/1.1 ";
  o += std::to_string(r.status);
  o += ' ';
  o += reason_phrase(r.status);
  o += "\r\n";
  if (!r.content_type.empty() && !no_length && safe_header_text(r.content_type)) {
    o += "Content-Type: ";
    o += r.content_type;
    o += "\r\n";
  }
  if (!no_length) {
    o += "Content-Length: ";
    o += std::to_string(r.body.size());
    o += "\r\n";
  }
  o += "Date: ";
  o += http_date();
  o += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
  for (const auto& [k, v] : r.headers) {
    // The server owns framing; text that could split the response is dropped.
    if (!is_http_token(k) || !safe_header_text(v) || iequals(k, "content-length") ||
        iequals(k, "connection") || iequals(k, "date") || iequals(k, "transfer-encoding") ||
        iequals(k, "content-type")) {
      continue;
    }
    o += k;
    o += ": ";
    o += v;
    o += "\r\n";
  }
  o += "\r\n";
  if (!no_body) o += r.body;
  if (!keep_alive) c.close_after_write = true;
}

void HttpServer::Impl::flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    const ssize_t n =
        ::send(c.fd.get(), c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_conn(c);
      return;
    }
    c.out_off += static_cast<size_t>(n);
    c.last_active_ns = core::mono_ns();
  }
  c.out.clear();
  c.out_off = 0;
  if (c.close_after_write && c.mode == Conn::Mode::kHttp) {
    if (c.peer_eof) {
      close_conn(c);
      return;
    }
    // Lingering close (RFC 9112 §9.6): shut our side, then read until the client closes.
    ::shutdown(c.fd.get(), SHUT_WR);
    c.mode = Conn::Mode::kLinger;
    c.in.clear();
    c.linger_until_ns = core::mono_ns() + kLingerNs;
  }
}

void HttpServer::Impl::update_interest(Conn& c) {
  uint32_t want = 0;
  if (c.mode == Conn::Mode::kLinger) {
    want = EPOLLIN;
  } else {
    const bool backlog = c.out.size() - c.out_off >= kMaxOutputBacklog;
    if (!c.close_after_write && !c.peer_eof && !backlog && c.in.size() < kMaxInputBytes &&
        !c.refused) {
      want |= EPOLLIN;
    }
    // A full input buffer stops reading, but the client leaving must still be seen.
    if (c.waiting) want |= EPOLLRDHUP;
    if (c.out_off < c.out.size()) want |= EPOLLOUT;
  }
  if (want == c.events) return;
  epoll_event ev{};
  ev.data.u64 = c.id;
  ev.events = want;
  TH_CHECK(epoll_ctl(epoll_fd.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) == 0, "socket is registered");
  c.events = want;
}

void HttpServer::Impl::close_conn(Conn& c) {
  epoll_ctl(epoll_fd.get(), EPOLL_CTL_DEL, c.fd.get(), nullptr);
  if (c.refused) {
    --refused;
  } else {
    --active;
    n_open.store(active, std::memory_order_relaxed);
  }
  conns.erase(c.id);  // destroys c and closes the socket
}

void HttpServer::Impl::sweep(int64_t now) {
  const int64_t idle_ns = idle_timeout.count() * 1'000'000;
  const int64_t request_ns = request_timeout.count() * 1'000'000;
  std::vector<Conn*> expired;
  std::vector<Conn*> too_slow;
  for (auto& [id, c] : conns) {
    const bool lingering = c->mode == Conn::Mode::kLinger;
    // Waiting for its handler is not idleness, nor a slow request (the handler bounds it).
    if (!lingering && c->waiting) continue;
    if ((lingering && now >= c->linger_until_ns) ||
        (!lingering && now - c->last_active_ns >= idle_ns)) {
      expired.push_back(c.get());
    } else if (!lingering && !c->close_after_write && c->request_started_ns != 0 &&
               now - c->request_started_ns >= request_ns) {
      too_slow.push_back(c.get());
    }
  }
  // RFC 9110 §15.5.9: 408, then close; the partial request is dropped.
  for (Conn* c : too_slow) {
    n_request_timeouts.fetch_add(1, std::memory_order_relaxed);
    c->in.clear();
    c->request_started_ns = 0;
    queue_error(*c, 408, "the request did not arrive in time; send it whole and retry");
    c->close_after_write = true;
    const uint64_t id = c->id;
    flush(*c);  // may close c
    if (conns.count(id) != 0) update_interest(*c);
  }
  for (Conn* c : expired) {
    if (c->mode == Conn::Mode::kHttp) n_idle_closed.fetch_add(1, std::memory_order_relaxed);
    close_conn(*c);
  }
  if (listen_paused) {
    epoll_event ev{};
    ev.data.u64 = kListenId;
    ev.events = EPOLLIN;
    epoll_ctl(epoll_fd.get(), EPOLL_CTL_MOD, listen_fd.get(), &ev);
    listen_paused = false;
  }
}

HttpServer::HttpServer() : impl_(std::make_unique<Impl>()) {}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::route(std::string method, std::string pattern, HttpHandler handler) {
  TH_BUG(!impl_->started.load(), "routes are added before start()");
  if (impl_->started.load()) return;
  Impl::Route r;
  r.method = std::move(method);
  for (const auto seg : split_path(pattern)) {
    r.segments.emplace_back(seg);
    if (!(seg.size() >= 2 && seg.front() == '{' && seg.back() == '}')) ++r.literals;
  }
  r.pattern = std::move(pattern);
  r.handler = std::move(handler);
  impl_->routes.push_back(std::move(r));
}

void HttpServer::route_deferred(std::string method, std::string pattern, DeferredHandler handler) {
  TH_BUG(!impl_->started.load(), "routes are added before start()");
  if (impl_->started.load() || !handler) return;
  route(std::move(method), std::move(pattern), nullptr);
  impl_->routes.back().deferred = std::move(handler);
}

void HttpServer::set_max_deferred(uint32_t max_waiting) {
  TH_BUG(!impl_->started.load(), "the deferred limit is set before start()");
  if (!impl_->started.load()) impl_->max_deferred = std::max<uint32_t>(max_waiting, 1);
}

void HttpServer::set_request_timeout(std::chrono::milliseconds timeout) {
  TH_BUG(!impl_->started.load(), "the request timeout is set before start()");
  if (!impl_->started.load()) {
    impl_->request_timeout = std::max(timeout, std::chrono::milliseconds(1));
  }
}

void HttpServer::set_idle_timeout(std::chrono::milliseconds timeout) {
  TH_BUG(!impl_->started.load(), "the idle timeout is set before start()");
  if (!impl_->started.load()) impl_->idle_timeout = std::max(timeout, std::chrono::milliseconds(1));
}

Result<void> HttpServer::start(const Endpoint& listen, uint32_t max_connections) {
  Impl& s = *impl_;
  if (s.started.load()) return make_error("http: the server is already started");
  std::string host = listen.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                            std::to_string(listen.port);

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(listen.port);
  const int gai =
      getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &res);
  if (gai != 0) {
    return make_error("http.listen: cannot resolve " + where + ": " + gai_strerror(gai) +
                      " (use an IP address such as 127.0.0.1 or [::1])");
  }
  std::string last_error = "no address";
  Fd fd;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    Fd cand(::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol));
    if (cand.get() < 0) {
      last_error = errno_text(errno);
      continue;
    }
    const int one = 1;
    setsockopt(cand.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(cand.get(), a->ai_addr, a->ai_addrlen) != 0 || ::listen(cand.get(), 511) != 0) {
      last_error = errno_text(errno);
      continue;
    }
    fd = std::move(cand);
    break;
  }
  freeaddrinfo(res);
  if (fd.get() < 0) {
    return make_error("http.listen: cannot listen on " + where + ": " + last_error +
                      " (choose a free port, or 0 for any)");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  TH_CHECK(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) == 0,
           "getsockname on a bound socket");
  s.port.store(bound.ss_family == AF_INET6
                   ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
                   : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port));

  s.epoll_fd = Fd(epoll_create1(EPOLL_CLOEXEC));
  Fd wake(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (s.epoll_fd.get() < 0 || wake.get() < 0) {
    return make_error("http: cannot create epoll/eventfd: " + errno_text(errno));
  }
  s.completions = std::make_shared<CompletionQueue>(std::move(wake), s.max_deferred);
  s.completed.reserve(s.max_deferred);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  TH_CHECK(epoll_ctl(s.epoll_fd.get(), EPOLL_CTL_ADD, s.completions->fd(), &ev) == 0,
           "add eventfd");
  ev.data.u64 = kListenId;
  TH_CHECK(epoll_ctl(s.epoll_fd.get(), EPOLL_CTL_ADD, fd.get(), &ev) == 0, "add listener");
  s.listen_fd = std::move(fd);
  s.max_connections = std::max<uint32_t>(max_connections, 1);
  s.stopping.store(false);
  s.started.store(true);
  s.thread = std::thread([&s] { s.run(); });
  return {};
}

uint16_t HttpServer::port() const noexcept {
  return impl_->port.load();
}

void HttpServer::stop() noexcept {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.stopping.store(true, std::memory_order_release);
  s.completions->wake();
  s.thread.join();
  s.listen_fd.reset();
  s.epoll_fd.reset();  // the eventfd lives on in the completion queue while responders hold it
}

HttpServerStats HttpServer::stats() const noexcept {
  const Impl& s = *impl_;
  HttpServerStats st;
  st.connections_accepted = s.n_accepted.load(std::memory_order_relaxed);
  st.connections_refused = s.n_refused.load(std::memory_order_relaxed);
  st.connections_open = s.n_open.load(std::memory_order_relaxed);
  st.responses = s.n_requests.load(std::memory_order_relaxed);
  st.bad_requests = s.n_bad.load(std::memory_order_relaxed);
  st.handler_errors = s.n_handler_errors.load(std::memory_order_relaxed);
  st.idle_closed = s.n_idle_closed.load(std::memory_order_relaxed);
  st.request_timeouts = s.n_request_timeouts.load(std::memory_order_relaxed);
  st.deferred = s.n_deferred.load(std::memory_order_relaxed);
  st.deferred_waiting = s.n_deferred_waiting.load(std::memory_order_relaxed);
  st.deferred_refused = s.n_deferred_refused.load(std::memory_order_relaxed);
  st.deferred_dropped = s.n_deferred_dropped.load(std::memory_order_relaxed);
  // Responders called after stop() count their dropped response in the queue they share.
  if (s.started.load()) st.deferred_dropped += s.completions->dropped();
  st.deferred_abandoned = s.n_deferred_abandoned.load(std::memory_order_relaxed);
  return st;
}

void HttpServer::collect(PromWriter& w) const {
  const HttpServerStats st = stats();
  auto d = [](uint64_t v) { return static_cast<double>(v); };
  w.counter("tianhe_http_connections_accepted_total", "HTTP connections taken into service.", {},
            d(st.connections_accepted));
  w.counter("tianhe_http_connections_refused_total",
            "HTTP connections refused with 503 because max_connections was reached.", {},
            d(st.connections_refused));
  w.gauge("tianhe_http_connections_open", "HTTP connections open now.", {}, d(st.connections_open));
  w.counter("tianhe_http_responses_total", "HTTP responses sent, any status.", {}, d(st.responses));
  w.counter("tianhe_http_bad_requests_total",
            "HTTP requests refused as malformed or too large (400, 411, 413).", {},
            d(st.bad_requests));
  w.counter("tianhe_http_handler_errors_total", "HTTP handlers that threw (answered 500).", {},
            d(st.handler_errors));
  w.counter("tianhe_http_idle_closed_connections_total",
            "HTTP connections closed after the idle timeout.", {}, d(st.idle_closed));
  w.counter("tianhe_http_request_timeouts_total",
            "HTTP requests answered 408 because they did not arrive whole within the request "
            "timeout.",
            {}, d(st.request_timeouts));
  w.counter("tianhe_http_deferred_requests_total",
            "HTTP requests handed to a deferred route (answered later, off the server thread).", {},
            d(st.deferred));
  w.gauge("tianhe_http_deferred_waiting", "Deferred HTTP requests waiting for their response now.",
          {}, d(st.deferred_waiting));
  w.counter("tianhe_http_deferred_refused_total",
            "Deferred HTTP requests answered 503 because the limit of waiting ones was reached.",
            {}, d(st.deferred_refused));
  w.counter("tianhe_http_deferred_dropped_total",
            "Deferred HTTP responses dropped because the client had gone or the server stopped.",
            {}, d(st.deferred_dropped));
  w.counter("tianhe_http_deferred_abandoned_total",
            "Deferred HTTP requests whose handler never answered (answered 500).", {},
            d(st.deferred_abandoned));
}

}  // namespace tianhe::control
