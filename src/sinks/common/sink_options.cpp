#include "sinks/common/sink_options.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>

namespace tianhe::sinks {
namespace {

using config::Field;
using config::Kind;
using config::kMs;
using config::kSec;
using P = config::Parsed;

constexpr std::string_view kPolicies[] = {"block", "drop_oldest"};

constexpr Field<SinkOptions> kOptionFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Deliver every report to this sink.",
     .set = [](SinkOptions& o, const P& p) { o.enabled = p.b; }},
    {.key = "url",
     .kind = Kind::kString,
     .default_text = "",  // the sink's (SinkTableSpec::url_default)
     .doc = "",
     .set = [](SinkOptions& o, const P& p) { o.url = p.s; },
     .check = config::check_non_empty},
    {.key = "password_env",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "An environment variable holding the password (never write it in the file).",
     .set = [](SinkOptions& o, const P& p) { o.password_env = p.s; }},
    {.key = "password_file",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Or a file holding the password (its first line).",
     .set = [](SinkOptions& o, const P& p) { o.password_file = p.s; }},
    {.key = "batch_reports",
     .kind = Kind::kInt,
     .default_text = "5000",
     .doc = "Reports per write (one transaction, pipeline or request) at most.",
     .set = [](SinkOptions& o, const P& p) { o.batch_reports = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 1 << 20},
    {.key = "commit_interval",
     .kind = Kind::kDuration,
     .default_text = "\"50ms\"",
     .doc = "A partial batch waits this long to fill.",
     .set =
         [](SinkOptions& o, const P& p) {
           o.commit_interval = config::to_duration<std::chrono::milliseconds>(p.i);
         },
     .min = 0,
     .max = 10 * kSec,
     .unit_ns = kMs},
    {.key = "timeout",
     .kind = Kind::kDuration,
     .default_text = "\"10s\"",
     .doc = "Connect and per-request timeout.",
     .set = [](SinkOptions& o,
               const P& p) { o.timeout = config::to_duration<std::chrono::milliseconds>(p.i); },
     .min = 10 * kMs,
     .max = 600 * kSec,
     .unit_ns = kMs},
    {.key = "max_backlog_bytes",
     .kind = Kind::kSize,
     .default_text = "\"1GiB\"",
     .doc = "Log bytes this sink may fall behind (over all shards) before backlog_policy acts.",
     .set = [](SinkOptions& o, const P& p) { o.max_backlog_bytes = static_cast<uint64_t>(p.i); },
     .min = 1 << 20,
     .max = config::kTiB},
    {.key = "backlog_policy",
     .kind = Kind::kEnum,
     .default_text = "\"block\"",
     .doc = "At max_backlog_bytes: \"block\" (devices get BUSY; nothing is lost) or "
            "\"drop_oldest\" (the oldest undelivered reports are skipped, counted).",
     .set =
         [](SinkOptions& o, const P& p) {
           o.backlog_policy = p.s == "block" ? BacklogPolicy::kBlock : BacklogPolicy::kDropOldest;
         },
     .choices = kPolicies,
     .what = "a backlog policy"},
    {.key = "max_attempts",
     .kind = Kind::kInt,
     .default_text = "5",
     .doc = "Attempts before a record the destination refuses goes to the dead-letter file.",
     .set = [](SinkOptions& o, const P& p) { o.max_attempts = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 1000},
};

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

namespace detail {

std::span<const config::Field<SinkOptions>> option_fields() {
  return kOptionFields;
}

std::vector<config::FieldInfo> option_infos(const SinkTableSpec& spec) {
  std::vector<config::FieldInfo> out;
  for (const auto& f : kOptionFields) {
    config::FieldInfo info = f.info();
    if (info.key == "url") {
      info.default_text = spec.url_default;
      info.doc = spec.url_doc;
    }
    out.push_back(info);
  }
  return out;
}

}  // namespace detail

Result<std::string> resolve_password(const SinkOptions& o, std::string_view url_password,
                                     std::string_view header) {
  const std::string h(header);
  if (!o.password_env.empty()) {
    const char* v = std::getenv(o.password_env.c_str());
    if (v == nullptr) {
      return make_error(h + ".password_env: the environment variable " + o.password_env +
                        " is not set; export it before starting, or remove password_env");
    }
    return std::string(v);
  }
  if (!o.password_file.empty()) {
    std::ifstream in(o.password_file);
    if (!in) {
      return make_error(h + ".password_file: cannot read " + o.password_file +
                        "; check the path and that the gateway may read it");
    }
    std::string line;
    std::getline(in, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }
  return std::string(url_password);
}

Result<Url> parse_url(std::string_view text, std::span<const std::string_view> schemes,
                      std::string_view key) {
  const std::string k(key);
  std::string expected;
  for (std::string_view s : schemes)
    expected += (expected.empty() ? "" : " or ") + std::string(s) + "://";
  const size_t sep = text.find("://");
  if (sep == std::string_view::npos) {
    return make_error(k + ": \"" + std::string(text) + "\" is not a URL; write it as " + expected +
                      "host:port/...");
  }
  Url u;
  u.scheme = std::string(text.substr(0, sep));
  if (std::find(schemes.begin(), schemes.end(), u.scheme) == schemes.end()) {
    return make_error(k + ": scheme \"" + u.scheme + "\" is not supported here; use " + expected);
  }
  std::string_view rest = text.substr(sep + 3);
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    u.query = std::string(rest.substr(q + 1));
    rest = rest.substr(0, q);
  }
  std::string_view authority = rest;
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    authority = rest.substr(0, slash);
    u.path = std::string(rest.substr(slash + 1));
  }
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    std::string_view user = userinfo, pass;
    if (const size_t colon = userinfo.find(':'); colon != std::string_view::npos) {
      user = userinfo.substr(0, colon);
      pass = userinfo.substr(colon + 1);
    }
    if (!percent_decode(user, u.user) || !percent_decode(pass, u.password)) {
      return make_error(k + ": a bad %-escape in the user or password");
    }
  }
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return make_error(k + ": an IPv6 host without ']'");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return make_error(k + ": expected ':port' after ']'");
      port = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty())
    return make_error(k + ": the URL has no host; write " + expected + "127.0.0.1:...");
  u.host = std::string(host);
  if (!port.empty()) {
    uint32_t v = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || (v = v * 10 + static_cast<uint32_t>(c - '0')) > 65535) {
        return make_error(k + ": port \"" + std::string(port) + "\" is not a number in 1-65535");
      }
    }
    if (v == 0) return make_error(k + ": port 0 is not a server's port");
    u.port = static_cast<uint16_t>(v);
  }
  return u;
}

}  // namespace tianhe::sinks
