#include "sinks/webhook/webhook_config.h"

#include <cstdlib>
#include <fstream>

namespace tianhe::sinks::webhook {
namespace {

using config::Field;
using config::Kind;
using config::kSec;
using P = config::Parsed;

constexpr Field<WebhookConfig> kFields[] = {
    {.key = "headers",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Extra request headers, \"Name: value\" pairs separated by ';' "
            "(\"X-Fleet: north; X-Env: prod\").",
     .set = [](WebhookConfig& c, const P& p) { c.headers = p.s; }},
    {.key = "secret_env",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "An environment variable holding the HMAC-SHA256 key that signs each request "
            "(X-Tianhe-Signature); empty: unsigned.",
     .set = [](WebhookConfig& c, const P& p) { c.secret_env = p.s; }},
    {.key = "secret_file",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Or a file holding the signing key (its first line).",
     .set = [](WebhookConfig& c, const P& p) { c.secret_file = p.s; }},
    {.key = "max_retry_after",
     .kind = Kind::kDuration,
     .default_text = "\"60s\"",
     .doc = "The longest Retry-After (on 408, 429, 5xx) the sink waits; a longer one is cut.",
     .set = [](WebhookConfig& c,
               const P& p) { c.max_retry_after = config::to_duration<std::chrono::seconds>(p.i); },
     .min = 0,
     .max = 3600 * kSec,
     .unit_ns = kSec},
};

constexpr SinkTableSpec kSpec = {
    .header = "sinks.webhook",
    .doc =
        "POSTs every report as JSON, in batches, to an HTTP(S) endpoint (at least once; "
        "see docs/sinks/webhook.md).",
    .url_default = "\"http://127.0.0.1:9000/ingest\"",
    .url_doc =
        "The endpoint: http://host:port/path or https://...; user:password@ sends HTTP "
        "Basic, a password without a user a Bearer token."};

constexpr std::string_view kSchemes[] = {"http", "https"};

// The headers the sink writes itself.
constexpr std::string_view kReserved[] = {
    "content-type",       "content-length",    "host",   "idempotency-key",
    "x-tianhe-signature", "transfer-encoding", "expect", "traceparent"};

bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

config::ConfigTable config_table() {
  return sink_table<WebhookConfig>(kSpec, kFields);
}

Result<std::vector<std::string>> parse_headers(std::string_view text, std::string_view key) {
  const std::string k(key);
  std::vector<std::string> out;
  while (!text.empty()) {
    const size_t semi = text.find(';');
    const std::string_view item = trim(text.substr(0, semi));
    text = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
    if (item.empty()) continue;
    const size_t colon = item.find(':');
    if (colon == std::string_view::npos) {
      return make_error(k + ": \"" + std::string(item) +
                        "\" is not a header; write \"Name: value\" pairs separated by ';'");
    }
    const std::string_view name = trim(item.substr(0, colon));
    const std::string_view value = trim(item.substr(colon + 1));
    if (name.empty()) return make_error(k + ": a header without a name before ':'");
    for (char c : name) {
      if (!is_token_char(c)) {
        return make_error(k + ": header name \"" + std::string(name) +
                          "\" holds a character HTTP does not allow in names");
      }
    }
    for (char c : value) {
      if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
        return make_error(k + ": the value of header \"" + std::string(name) +
                          "\" holds a control character");
      }
    }
    const std::string lname = lower(name);
    for (std::string_view r : kReserved) {
      if (lname == r) {
        return make_error(k + ": header \"" + std::string(name) +
                          "\" is set by the sink itself; remove it from headers");
      }
    }
    out.push_back(std::string(name) + ": " + std::string(value));
  }
  return out;
}

Result<std::string> resolve_secret(const WebhookConfig& c, std::string_view header) {
  const std::string h(header);
  if (!c.secret_env.empty()) {
    const char* v = std::getenv(c.secret_env.c_str());
    if (v == nullptr || *v == '\0') {
      return make_error(h + ".secret_env: the environment variable " + c.secret_env +
                        " is not set (or empty); export it before starting, or remove secret_env");
    }
    return std::string(v);
  }
  if (!c.secret_file.empty()) {
    std::ifstream in(c.secret_file);
    if (!in) {
      return make_error(h + ".secret_file: cannot read " + c.secret_file +
                        "; check the path and that the gateway may read it");
    }
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      return make_error(h + ".secret_file: " + c.secret_file +
                        " is empty; write the signing key on its first line");
    }
    return line;
  }
  return std::string();
}

Result<WebhookSettings> validate(const WebhookConfig& c, std::string_view header) {
  const std::string h(header);
  auto url = parse_url(c.sink.url, kSchemes, h + ".url");
  if (!url) return url.error();
  auto password = resolve_password(c.sink, url->password, header);
  if (!password) return password.error();
  auto headers = parse_headers(c.headers, h + ".headers");
  if (!headers) return headers.error();
  auto secret = resolve_secret(c, header);
  if (!secret) return secret.error();
  WebhookSettings s;
  // libcurl gets the URL without its userinfo: the credentials go through its auth options,
  // so they never appear in an error message that quotes the URL.
  s.url = url->scheme + "://";
  s.url += url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
  if (url->port != 0) s.url += ":" + std::to_string(url->port);
  s.url += "/" + url->path;
  if (!url->query.empty()) s.url += "?" + url->query;
  s.user = url->user;
  s.password = password.value();
  if (!s.password.empty()) {
    for (const std::string& line : headers.value()) {
      if (lower(line.substr(0, line.find(':'))) == "authorization") {
        return make_error(h +
                          ".headers: Authorization is set from the password (password_env, "
                          "password_file or the URL); remove one of the two");
      }
    }
  }
  s.headers = std::move(headers.value());
  s.secret = std::move(secret.value());
  s.timeout = c.sink.timeout;
  s.max_retry_after = c.max_retry_after;
  s.max_attempts = c.sink.max_attempts;
  return s;
}

}  // namespace tianhe::sinks::webhook
