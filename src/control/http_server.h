// A small HTTP/1.1 server for the control plane (/api/v1, /metrics, /debug): one thread with
// epoll, keep-alive, bounded request size; never on the report path.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/config.h"
#include "core/http_api.h"
#include "core/metrics.h"
#include "core/result.h"

namespace tianhe::control {

using core::PromWriter;

using core::DeferredHandler;
using core::HttpHandler;
using core::HttpRequest;
using core::HttpResponder;
using core::HttpResponse;
using core::HttpRoutes;
using core::percent_decode;

/// Outcome of parsing bytes received on a connection.
/// kLengthRequired: a body framed by Transfer-Encoding (only Content-Length is supported: 411).
enum class HttpParseStatus : uint8_t {
  kComplete,
  kNeedMore,
  kMalformed,
  kTooLarge,
  kLengthRequired,
};

/// Limit on the request line and headers of one request.
inline constexpr size_t kMaxHttpHeaderBytes = 16 * 1024;
/// Limit on the body of one request.
inline constexpr size_t kMaxHttpBodyBytes = 1 << 20;
/// Limit on the number of header fields of one request.
inline constexpr size_t kMaxHttpHeaderFields = 100;

/// Parses one request at the start of `bytes` (pure; fuzzed). On kComplete sets `consumed`.
HttpParseStatus parse_http_request(std::span<const uint8_t> bytes, HttpRequest& out,
                                   size_t& consumed);

/// True when `s` is an HTTP token (RFC 9110 §5.6.2: a method, a header name).
bool is_http_token(std::string_view s);

/// Counters of one server (read from any thread).
struct HttpServerStats {
  uint64_t connections_accepted = 0;  ///< connections taken into service
  uint64_t connections_refused = 0;   ///< answered 503: max_connections reached
  uint64_t connections_open = 0;      ///< open now
  uint64_t responses = 0;             ///< responses sent, any status
  uint64_t bad_requests = 0;          ///< 400, 411, 413 (unparsable requests)
  uint64_t handler_errors = 0;        ///< handlers that threw (answered 500)
  uint64_t idle_closed = 0;           ///< connections closed after the idle timeout
  uint64_t request_timeouts = 0;      ///< 408: a request not complete within the request timeout
  uint64_t deferred = 0;              ///< requests handed to a deferred route
  uint64_t deferred_waiting = 0;      ///< deferred requests not answered by their handler yet
  uint64_t deferred_refused = 0;      ///< 503: the limit of waiting deferred requests reached
  uint64_t deferred_dropped = 0;      ///< deferred responses dropped: the client had gone, or
                                      ///< the server had stopped
  uint64_t deferred_abandoned = 0;    ///< responders destroyed without a response (answered 500)
};

/// Deferred requests that may wait for their response at once (across all connections).
inline constexpr uint32_t kDefaultMaxDeferred = 64;

/// The server: one thread, epoll, non-blocking sockets. Routes are added before start();
/// handlers run on the server thread (keep them short: they delay every other connection).
/// Work that takes long (a CPU profile) goes on a deferred route: its handler returns at once
/// and answers later from any thread through an HttpResponder, which reaches the server thread
/// through a bounded queue and its wake eventfd. A connection lives from accept until close,
/// idle timeout or stop(), only on that thread; one waiting for a deferred response reads no
/// further request, and is closed when the client closes (or half-closes) it meanwhile.
class HttpServer final : public HttpRoutes {
 public:
  /// A server with no routes, not started.
  HttpServer();
  /// Stops the server if it runs.
  ~HttpServer() override;
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Adds a route. `pattern` may hold {name} segments: "/api/v1/devices/{id}/reports" (a
  /// segment matches a non-empty path segment). The pattern with most literal segments wins;
  /// GET routes also answer HEAD. Known path, other method: 405 with Allow; else 404.
  void route(std::string method, std::string pattern, HttpHandler handler) override;
  /// Adds a deferred route (core::HttpRoutes::route_deferred); matched like route().
  void route_deferred(std::string method, std::string pattern, DeferredHandler handler) override;
  /// How many deferred requests may wait at once (default kDefaultMaxDeferred, at least 1);
  /// one more is answered 503 at once. Before start().
  void set_max_deferred(uint32_t max_waiting);
  /// Closes connections without traffic for this long (default 60 s); before start().
  void set_idle_timeout(std::chrono::milliseconds timeout);
  /// Answers 408 and closes when a request has not fully arrived this long after its first
  /// byte (default 10 s): a client trickling bytes never hits the idle timeout. Before start().
  void set_request_timeout(std::chrono::milliseconds timeout);
  /// Binds (port 0 picks a free port) and starts the server thread.
  Result<void> start(const Endpoint& listen, uint32_t max_connections = 256);
  /// The port actually bound.
  uint16_t port() const noexcept;
  /// Stops the thread and closes every connection; a request waiting for a deferred response
  /// is answered 503 (best effort, one non-blocking write), and its responder, called later,
  /// does nothing but count the dropped response.
  void stop() noexcept;
  /// A snapshot of the counters.
  HttpServerStats stats() const noexcept;
  /// Writes the counters as tianhe_http_* samples (a MetricsRegistry collector).
  void collect(PromWriter& w) const;

 private:
  struct Impl;                  ///< sockets, routes, connections, thread
  std::unique_ptr<Impl> impl_;  ///< never null
};

}  // namespace tianhe::control
