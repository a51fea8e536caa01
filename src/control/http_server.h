// A small HTTP/1.1 server for the control plane (/api/v1, /metrics, /debug): one thread with
// epoll, keep-alive, bounded request size; never on the report path.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/config.h"
#include "core/result.h"

namespace tianhe::control {

/// A parsed request. Path parameters ({id}) fill `params`.
struct HttpRequest {
  std::string method;
  std::string path;   ///< decoded path, no query
  std::string query;  ///< raw query string (after '?')
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
  std::string body;
  std::vector<std::pair<std::string, std::string>> params;  ///< from the route pattern
  /// A query parameter (percent-decoded), or `fallback`.
  std::string query_param(std::string_view key, std::string_view fallback = "") const;
  /// A path parameter, or "".
  std::string param(std::string_view key) const;
  /// A header value (name lower-case), or "".
  std::string header(std::string_view name) const;
};

/// A response; the server adds Content-Length, Date and Connection.
struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  /// A JSON error body {"error": message} with `status`.
  static HttpResponse error(int status, std::string_view message);
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

/// Outcome of parsing bytes received on a connection.
enum class HttpParseStatus : uint8_t { kComplete, kNeedMore, kMalformed, kTooLarge };

/// Limits applied to every request.
inline constexpr size_t kMaxHttpHeaderBytes = 16 * 1024;
inline constexpr size_t kMaxHttpBodyBytes = 1 << 20;

/// Parses one request at the start of `bytes` (pure; fuzzed). On kComplete sets `consumed`.
HttpParseStatus parse_http_request(std::span<const uint8_t> bytes, HttpRequest& out,
                                   size_t& consumed);

/// The server. Routes are added before start(); handlers run on the server thread.
class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Adds a route. `pattern` may hold {name} segments: "/api/v1/devices/{id}/reports".
  void route(std::string method, std::string pattern, HttpHandler handler);
  /// Binds (port 0 picks a free port) and starts the server thread.
  Result<void> start(const Endpoint& listen, uint32_t max_connections = 256);
  /// The port actually bound.
  uint16_t port() const noexcept;
  /// Stops the thread and closes every connection.
  void stop() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tianhe::control
