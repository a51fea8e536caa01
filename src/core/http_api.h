// The HTTP API as modules see it: requests, responses, handlers and a place to add routes. The
// server (control/http_server.h) implements HttpRoutes; modules that own data (a sink's
// queries, the gateway's status) add their routes through it and never see the server.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace tianhe::core {

/// A parsed request. Path parameters ({id}) fill `params`.
struct HttpRequest {
  std::string method;  ///< as sent (case-sensitive token), e.g. "GET"
  std::string path;    ///< decoded path, no query
  std::string query;   ///< raw query string (after '?')
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
  std::string body;                                          ///< exactly Content-Length bytes
  std::vector<std::pair<std::string, std::string>> params;   ///< from the route pattern
  /// Whether the connection stays open after the response (HTTP version, Connection header).
  bool keep_alive = true;
  /// A query parameter (percent-decoded), or `fallback`.
  std::string query_param(std::string_view key, std::string_view fallback = "") const;
  /// A path parameter, or "".
  std::string param(std::string_view key) const;
  /// A header value (name lower-case), or "".
  std::string header(std::string_view name) const;
};

/// A response; the server adds Content-Length, Date and Connection.
struct HttpResponse {
  int status = 200;                               ///< HTTP status code
  std::string content_type = "application/json";  ///< empty: no Content-Type header
  std::string body;                               ///< not sent for HEAD, 204 and 304
  /// Extra headers; the server's own (Content-Length, Connection, Date) are not overridable.
  std::vector<std::pair<std::string, std::string>> headers;
  /// A JSON error body {"error": message} with `status`.
  static HttpResponse error(int status, std::string_view message);
};

/// Handles one request on the server thread; may throw (answered with 500).
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

/// Where the responses of deferred requests go: the server implements it. Both calls may come
/// from any thread, exactly once per ticket, and must not block on the server.
class HttpCompletionSink {
 public:
  virtual ~HttpCompletionSink() = default;
  /// Hands over the response to request `ticket`.
  virtual void complete(uint64_t ticket, HttpResponse response) noexcept = 0;
  /// Request `ticket` will never be answered by its handler (the server answers 500).
  virtual void abandon(uint64_t ticket) noexcept = 0;
};

/// The completion of one deferred request: call it once, from any thread, with the response.
/// Movable, not copyable (wrap it in a std::shared_ptr to capture it in a std::function).
/// Destroyed without being called, it abandons the request, which the server answers with 500,
/// so no connection waits for ever. It keeps the server's completion state alive on its own:
/// calling it after the server stopped is harmless (the response is dropped and counted).
class HttpResponder {
 public:
  /// A responder answering nothing (pending() is false).
  HttpResponder() noexcept = default;
  /// The responder of request `ticket` of `sink` (made by the server).
  HttpResponder(std::shared_ptr<HttpCompletionSink> sink, uint64_t ticket) noexcept;
  /// Takes over `other`'s request; `other` is left answering nothing.
  HttpResponder(HttpResponder&& other) noexcept;
  /// Abandons the request this one holds (500), then takes over `other`'s.
  HttpResponder& operator=(HttpResponder&& other) noexcept;
  HttpResponder(const HttpResponder&) = delete;
  HttpResponder& operator=(const HttpResponder&) = delete;
  /// Abandons the request if it was not answered (the server answers 500).
  ~HttpResponder();
  /// Sends `response`; a second call does nothing (a bug, counted by TH_BUG).
  void operator()(HttpResponse response) noexcept;
  /// True until called (or moved from).
  bool pending() const noexcept { return sink_ != nullptr; }

 private:
  std::shared_ptr<HttpCompletionSink> sink_;  ///< null once answered or moved from
  uint64_t ticket_ = 0;                       ///< the server's name for the request
};

/// Handles one request on the server thread without answering it there: the handler keeps
/// `respond` (moving it to another thread, a callback) and calls it when the response is ready.
/// The request is valid only during the call (copy what is needed later). May throw (the
/// server answers 500 unless the responder was kept and is called later).
using DeferredHandler = std::function<void(const HttpRequest&, HttpResponder respond)>;

/// Percent-decodes `text` ('+' is a space when `plus_is_space`); false on a bad escape.
bool percent_decode(std::string_view text, bool plus_is_space, std::string& out);

/// The path parameter `name` as a positive integer; the error names it as `what` ("device id
/// 'x' is not a positive integer").
Result<uint64_t> positive_id_param(const HttpRequest& req, std::string_view name,
                                   std::string_view what);

/// ASCII case-insensitive equality (header names, tokens).
bool iequals(std::string_view a, std::string_view b);

/// Where routes are added (before the server starts).
class HttpRoutes {
 public:
  virtual ~HttpRoutes() = default;
  /// Adds a route. `pattern` may hold {name} segments: "/api/v1/devices/{id}/reports" (a
  /// segment matches a non-empty path segment). The pattern with most literal segments wins;
  /// GET routes also answer HEAD. Known path, other method: 405 with Allow; else 404.
  virtual void route(std::string method, std::string pattern, HttpHandler handler) = 0;
  /// Adds a route answered later: like route(), but `handler` returns at once and answers
  /// through its HttpResponder from any thread. The connection waits (its pipelined requests
  /// after it too, in order) while other connections are served; a bounded number of requests
  /// wait at once, beyond which the server answers 503.
  virtual void route_deferred(std::string method, std::string pattern, DeferredHandler handler) = 0;
};

}  // namespace tianhe::core
