// A plain HTTP/1.1 GET to a gateway's own HTTP port, for the commands that ask a running
// gateway (`tianhe sinks`, `tianhe bench`) and for tests. Not a general HTTP client: one
// request per connection, no TLS, no redirects, a bounded response.
#pragma once

#include <cstdint>
#include <string>

#include "core/result.h"

namespace tianhe::core {

struct HttpReply {
  int status = 0;
  std::string body;
};

/// GETs `path` from host:port (an IPv4 address or "localhost"), waiting at most `timeout_ms`
/// for connect and for each read; the response is cut at 64 MiB. An error names the cause.
Result<HttpReply> http_get(const std::string& host, uint16_t port, const std::string& path,
                           int timeout_ms = 10000);

}  // namespace tianhe::core
