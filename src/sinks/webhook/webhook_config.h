// The webhook sink's configuration: `[sinks.webhook]` (and its instances
// `[sinks.webhook.<name>]`), the common delivery keys (sink_options.h) followed by the sink's
// own: extra headers, the signing secret and the longest Retry-After honoured. Parsed once,
// checked by validate() without connecting, shared read-only by the writer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_table.h"
#include "core/result.h"
#include "sinks/common/sink_options.h"

namespace tianhe::sinks::webhook {

/// The default endpoint.
inline constexpr std::string_view kDefaultUrl = "http://127.0.0.1:9000/ingest";

/// `[sinks.webhook]`: what the TOML table fills.
struct WebhookConfig {
  SinkOptions sink{.url = "http://127.0.0.1:9000/ingest"};
  std::string headers;      ///< extra request headers: "Name: value; Name: value"
  std::string secret_env;   ///< environment variable holding the HMAC-SHA256 signing key
  std::string secret_file;  ///< or a file holding it (its first line)
  std::chrono::seconds max_retry_after{60};  ///< a longer Retry-After is cut to this
};

/// The `[sinks.webhook]` table (its instances share it).
config::ConfigTable config_table();

/// What the writer runs with: the configuration, checked and resolved (no I/O but reading the
/// secret and password sources). Immutable once built.
struct WebhookSettings {
  std::string url;                   ///< the endpoint without user:password
  std::vector<std::string> headers;  ///< "Name: value" lines sent with every request
  std::string user;                  ///< HTTP Basic user from the URL ("" when none)
  std::string password;              ///< Basic password, or the Bearer token when no user
  std::string secret;                ///< signing key ("" : requests are not signed)
  std::chrono::milliseconds timeout{10000};
  std::chrono::seconds max_retry_after{60};
  uint32_t max_attempts = 5;
};

/// Parses `headers` ("Name: value; Name: value"); an error names `key` and the fix. Names are
/// HTTP tokens; values hold no control characters; the headers the sink sets itself
/// (Content-Type, Content-Length, Host, Idempotency-Key, X-Tianhe-Signature, Authorization when
/// a password is configured) cannot be replaced.
Result<std::vector<std::string>> parse_headers(std::string_view text, std::string_view key);

/// The signing key: from secret_env (which must be set and not empty), else secret_file, else
/// "" (unsigned). An error names the key and the fix.
Result<std::string> resolve_secret(const WebhookConfig& c, std::string_view header);

/// Checks `c` (URL, headers, password and secret sources) for the table `header`
/// ("sinks.webhook.audit"); an error names the key and the fix.
Result<WebhookSettings> validate(const WebhookConfig& c, std::string_view header);

}  // namespace tianhe::sinks::webhook
