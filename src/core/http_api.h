// The HTTP API as modules see it: requests, responses, handlers and a place to add routes. The
// server (control/http_server.h) implements HttpRoutes; modules that own data (a sink's
// queries, the gateway's status) add their routes through it and never see the server.
#pragma once

#include <cstdint>
#include <functional>
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
};

}  // namespace tianhe::core
