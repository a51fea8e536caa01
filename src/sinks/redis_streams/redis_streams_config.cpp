#include "sinks/redis_streams/redis_streams_config.h"

#include <charconv>

namespace tianhe::sinks::redis_streams {
namespace {

using config::Field;
using config::Kind;
using P = config::Parsed;

std::string check_stream(const P& p) {
  auto t = StreamTemplate::parse(p.s, "stream");
  if (t.ok()) return "";
  // The parser names the key already; the config reader prefixes it again.
  const std::string& m = t.error().message;
  return m.substr(m.find(": ") + 2);
}

constexpr Field<RedisStreamsConfig> kFields[] = {
    {.key = "stream",
     .kind = Kind::kString,
     .default_text = "\"tianhe:{tenant}:{model}\"",
     .doc = "The stream key of each record: a template of {tenant}, {model} and {device}.",
     .set = [](RedisStreamsConfig& c, const P& p) { c.stream = p.s; },
     .check = check_stream},
    {.key = "max_len",
     .kind = Kind::kInt,
     .default_text = "0",
     .doc = "Entries a stream keeps at most (XADD MAXLEN); 0 keeps every entry.",
     .set = [](RedisStreamsConfig& c, const P& p) { c.max_len = static_cast<uint64_t>(p.i); },
     .min = 0,
     .max = INT64_MAX},
    {.key = "max_len_approximate",
     .kind = Kind::kBool,
     .default_text = "true",
     .doc = "Trim with MAXLEN ~ (whole nodes, cheap; keeps somewhat more) rather than exactly.",
     .set = [](RedisStreamsConfig& c, const P& p) { c.max_len_approximate = p.b; }},
};

constexpr SinkTableSpec kSpec = {
    .header = "sinks.redis_streams",
    .doc =
        "Every report as an entry of a Redis stream (XADD), exactly once (docs/sinks/"
        "redis_streams.md).",
    .url_default = "\"redis://127.0.0.1:6379/0\"",
    .url_doc = "The server: redis://[user:password@]host:port/database (TLS is not supported)."};

}  // namespace

config::ConfigTable config_table() {
  return sink_table<RedisStreamsConfig>(kSpec, kFields);
}

Result<StreamTemplate> StreamTemplate::parse(std::string_view text, std::string_view key) {
  const std::string k(key);
  if (text.empty()) {
    return make_error(k + ": the stream key template is empty; write one such as \"" +
                      std::string(kDefaultStream) + "\"");
  }
  StreamTemplate t;
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) t.pieces_.push_back({Part::kLiteral, std::move(literal)});
    literal.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '}') {
      return make_error(k + ": a '}' without its '{' in \"" + std::string(text) +
                        "\"; placeholders are {tenant}, {model} and {device}");
    }
    if (c != '{') {
      literal += c;
      continue;
    }
    const size_t close = text.find('}', i);
    if (close == std::string_view::npos) {
      return make_error(k + ": a '{' without its '}' in \"" + std::string(text) +
                        "\"; placeholders are {tenant}, {model} and {device}");
    }
    const std::string_view name = text.substr(i + 1, close - i - 1);
    Part part;
    if (name == "tenant") {
      part = Part::kTenant;
    } else if (name == "model") {
      part = Part::kModel;
    } else if (name == "device") {
      part = Part::kDevice;
      t.per_device_ = true;
    } else {
      return make_error(k + ": unknown placeholder {" + std::string(name) + "} in \"" +
                        std::string(text) + "\"; use {tenant}, {model} or {device}");
    }
    flush();
    t.pieces_.push_back({part, {}});
    i = close;
  }
  flush();
  return t;
}

void StreamTemplate::expand(const RecordFields& f, std::string& out) const {
  out.clear();
  for (const Piece& p : pieces_) {
    switch (p.part) {
      case Part::kLiteral: out += p.text; break;
      case Part::kTenant: out += f.tenant.empty() ? std::string_view("unknown") : f.tenant; break;
      case Part::kModel: out += f.model.empty() ? std::string_view("unknown") : f.model; break;
      case Part::kDevice: {
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, f.device_id);
        out.append(buf, r.ptr);
        break;
      }
    }
  }
}

Result<RedisSettings> make_settings(const RedisStreamsConfig& c, std::string_view instance,
                                    std::string_view header) {
  const std::string h(header);
  const std::string url_key = h + ".url";
  if (c.sink.url.starts_with("rediss://")) {
    return make_error(url_key +
                      ": TLS (rediss://) is not supported yet; use redis:// on a trusted network "
                      "(loopback, a private link) or a local TLS tunnel such as stunnel");
  }
  if (c.sink.url.starts_with("unix://") || c.sink.url.starts_with("/")) {
    return make_error(url_key + ": Unix sockets are not supported yet; use redis://host:port/db");
  }
  static constexpr std::string_view kSchemes[] = {"redis"};
  auto url = parse_url(c.sink.url, kSchemes, url_key);
  if (!url) return url.error();
  RedisSettings s;
  s.instance = std::string(instance);
  s.header = h;
  s.host = url->host;
  s.port = url->port == 0 ? 6379 : url->port;
  if (!url->query.empty()) {
    return make_error(url_key + ": URL options (\"?" + url->query +
                      "\") are not supported; remove them (timeouts are the key `timeout`)");
  }
  if (!url->path.empty()) {
    uint32_t db = 0;
    const char* end = url->path.data() + url->path.size();
    const auto r = std::from_chars(url->path.data(), end, db);
    if (r.ec != std::errc() || r.ptr != end || db > 1'000'000) {
      return make_error(url_key +
                        ": the path is the database number (redis://host:6379/0), not \"" +
                        url->path + "\"");
    }
    s.database = db;
  }
  auto password = resolve_password(c.sink, url->password, h);
  if (!password) return password.error();
  s.password = std::move(password.value());
  s.user = url->user;
  if (!s.user.empty() && s.password.empty()) {
    return make_error(url_key + ": the user \"" + s.user +
                      "\" has no password; give it with password_env or password_file, or drop "
                      "the user to use the server's default one");
  }
  auto stream = StreamTemplate::parse(c.stream, h + ".stream");
  if (!stream) return stream.error();
  s.stream = std::move(stream.value());
  s.max_len = c.max_len;
  s.max_len_approximate = c.max_len_approximate;
  s.timeout_ms = c.sink.timeout.count();
  s.max_attempts = c.sink.max_attempts;
  s.cursor_key = "tianhe:cursor:" + s.instance;
  s.seen_key = "tianhe:seen:" + s.instance;
  return s;
}

}  // namespace tianhe::sinks::redis_streams
