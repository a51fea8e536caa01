#include "sinks/nats/nats_config.h"

#include <charconv>

namespace tianhe::sinks::nats {
namespace {

using config::Field;
using config::Kind;
using config::kMs;
using config::kSec;
using P = config::Parsed;

std::string check_stream(const P& p) {
  return check_stream_name(p.s);
}

std::string check_subject(const P& p) {
  auto t = SubjectTemplate::parse(p.s, "");
  return t.ok() ? "" : t.error().message;
}

constexpr Field<NatsConfig> kFields[] = {
    {.key = "stream",
     .kind = Kind::kString,
     .default_text = "\"TIANHE\"",
     .doc = "The JetStream stream; created (file storage) when missing, else used as it is.",
     .set = [](NatsConfig& c, const P& p) { c.stream = p.s; },
     .check = check_stream},
    {.key = "subject",
     .kind = Kind::kString,
     .default_text = "\"tianhe.{tenant}.{model}.{device}\"",
     .doc = "Subject of each message: literal tokens and {tenant}, {model}, {device}; a created "
            "stream captures its leading literal tokens + \".>\".",
     .set = [](NatsConfig& c, const P& p) { c.subject = p.s; },
     .check = check_subject},
    {.key = "duplicate_window",
     .kind = Kind::kDuration,
     .default_text = "\"2m\"",
     .doc = "The stream's duplicate window when the sink creates it: must exceed the longest "
            "time from a failed delivery to its replay (outage, restart).",
     .set =
         [](NatsConfig& c, const P& p) {
           c.duplicate_window = config::to_duration<std::chrono::milliseconds>(p.i);
         },
     .min = 1 * kSec,
     .max = 7 * config::kDay,
     .unit_ns = kMs},
};

constexpr SinkTableSpec kSpec = {
    .header = "sinks.nats",
    .doc = "Every report as a message on a NATS JetStream stream (docs/sinks/nats.md).",
    .url_default = "\"nats://127.0.0.1:4222\"",
    .url_doc = "The servers: nats://[user@]host:port, several separated by commas.",
};

constexpr std::string_view kSchemes[] = {"nats"};  // TLS is not configurable yet

bool bad_subject_char(char c) {
  return c == '*' || c == '>' || c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
         static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

template <typename N>
void append_number(std::string& out, N v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

config::ConfigTable config_table() {
  return sink_table<NatsConfig>(kSpec, kFields);
}

Result<NatsServers> parse_servers(const SinkOptions& options, std::string_view header) {
  const std::string key = std::string(header) + ".url";
  NatsServers out;
  std::string url_user, url_password;
  std::string_view rest = options.url;
  for (;;) {
    const size_t comma = rest.find(',');
    const std::string one = trim(rest.substr(0, comma));
    if (one.empty()) {
      return make_error(key + ": an empty server in \"" + options.url +
                        "\"; separate servers with single commas: nats://a:4222,nats://b:4222");
    }
    auto u = parse_url(one, kSchemes, key);
    if (!u) return u.error();
    if (!u->path.empty() || !u->query.empty()) {
      std::string e = key;
      e += ": \"";
      e += one;
      e += "\" has a path or query; NATS takes only nats://[user@]host:port";
      return make_error(e);
    }
    if (!u->user.empty() || !u->password.empty()) {
      if (!url_user.empty() && (u->user != url_user || u->password != url_password)) {
        return make_error(key + ": the servers carry different credentials; give them once");
      }
      url_user = u->user;
      url_password = u->password;
    }
    const bool v6 = u->host.find(':') != std::string::npos;
    out.urls.push_back(u->scheme + "://" + (v6 ? "[" + u->host + "]" : u->host) + ":" +
                       std::to_string(u->port == 0 ? 4222 : u->port));
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  auto password = resolve_password(options, url_password, header);
  if (!password) return password.error();
  if (!url_user.empty() && !password->empty()) {
    out.user = url_user;
    out.password = *password;
  } else if (!password->empty()) {
    out.token = *password;  // no user: the secret is a token
  } else if (!url_user.empty()) {
    out.token = url_user;  // nats://<token>@host, the NATS convention
  }
  return out;
}

std::string check_stream_name(std::string_view name) {
  if (name.empty()) return "the stream name is empty; use e.g. \"TIANHE\"";
  if (name.size() > 255) return "the stream name is longer than 255 bytes";
  for (char c : name) {
    if (c == '.' || c == '/' || c == '\\' || bad_subject_char(c)) {
      return "the stream name \"" + std::string(name) +
             "\" has a character JetStream refuses ('.', '*', '>', '/', '\\\\', whitespace); "
             "use letters, digits, '-' and '_'";
    }
  }
  return "";
}

Result<SubjectTemplate> SubjectTemplate::parse(std::string_view text, std::string_view key) {
  const std::string k = key.empty() ? std::string() : std::string(key) + ": ";
  SubjectTemplate t;
  if (text.empty()) return make_error(k + "the subject is empty; use e.g. \"tianhe.{tenant}\"");
  // Tokens are split on '.'; each is literal text and placeholders.
  bool placeholder_seen = false;
  std::string literal_prefix;
  size_t token_start = 0;
  bool token_has_placeholder = false;
  auto end_token = [&](size_t end) -> std::string {
    if (end == token_start) {
      return k + "\"" + std::string(text) + "\" has an empty token (\"..\" or a '.' at an end)";
    }
    if (!token_has_placeholder && !placeholder_seen) {
      if (!literal_prefix.empty()) literal_prefix += '.';
      literal_prefix += text.substr(token_start, end - token_start);
    }
    placeholder_seen |= token_has_placeholder;
    token_has_placeholder = false;
    return "";
  };
  std::string literal;
  auto flush_literal = [&] {
    if (!literal.empty()) t.parts_.push_back({Kind::kLiteral, literal});
    literal.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{') {
      const size_t close = text.find('}', i);
      if (close == std::string_view::npos) {
        return make_error(k + "'{' without '}' in \"" + std::string(text) + "\"");
      }
      const std::string_view name = text.substr(i + 1, close - i - 1);
      Kind kind;
      if (name == "tenant") {
        kind = Kind::kTenant;
      } else if (name == "model") {
        kind = Kind::kModel;
      } else if (name == "device") {
        kind = Kind::kDevice;
      } else {
        return make_error(k + "unknown placeholder {" + std::string(name) +
                          "}; use {tenant}, {model} or {device}");
      }
      flush_literal();
      t.parts_.push_back({kind, {}});
      token_has_placeholder = true;
      i = close;
      continue;
    }
    if (c == '}') return make_error(k + "'}' without '{' in \"" + std::string(text) + "\"");
    if (bad_subject_char(c)) {
      return make_error(k + "\"" + std::string(text) +
                        "\" has a wildcard or whitespace; a subject to publish on has neither");
    }
    if (c == '.') {
      if (auto e = end_token(i); !e.empty()) return make_error(e);
      token_start = i + 1;
    }
    literal += c;
  }
  if (auto e = end_token(text.size()); !e.empty()) return make_error(e);
  flush_literal();
  if (!placeholder_seen) {
    t.stream_subject_ = std::string(text);
  } else if (literal_prefix.empty()) {
    return make_error(k + "\"" + std::string(text) +
                      "\" starts with a placeholder; begin with a literal token such as "
                      "\"tianhe.\" so the stream captures only these subjects");
  } else {
    t.stream_subject_ = literal_prefix + ".>";
  }
  return t;
}

void SubjectTemplate::render(const RecordFields& f, std::string& out) const {
  for (const Part& p : parts_) {
    switch (p.kind) {
      case Kind::kLiteral: out += p.text; break;
      case Kind::kTenant: append_subject_token(out, f.tenant); break;
      case Kind::kModel: append_subject_token(out, f.model); break;
      case Kind::kDevice: append_number(out, f.device_id); break;
    }
  }
}

void append_subject_token(std::string& out, std::string_view value) {
  if (value.empty()) {
    out += "unknown";
    return;
  }
  for (char c : value) out += (c == '.' || bad_subject_char(c)) ? '_' : c;
}

void append_msg_id(std::string& out, uint64_t device_id, uint32_t seq, int64_t time_ns) {
  append_number(out, device_id);
  out += '-';
  append_number(out, seq);
  out += '-';
  append_number(out, time_ns);
}

void append_log_position(std::string& out, const ReportPosition& p) {
  append_number(out, p.shard);
  out += '/';
  append_number(out, p.offset);
  out += '/';
  append_number(out, p.index);
}

void build_message(const SubjectTemplate& subject, const core::Report& r, const ReportPosition& pos,
                   const pipeline::Registry* registry, MessageParts& out) {
  const RecordFields f = record_fields(r, registry);
  out.subject.clear();
  subject.render(f, out.subject);
  out.body.clear();
  append_record_json(out.body, r, registry);
  out.msg_id.clear();
  append_msg_id(out.msg_id, f.device_id, f.seq, f.time_ns);
  out.position.clear();
  append_log_position(out.position, pos);
  out.traceparent.assign(f.traceparent());
}

Refusal classify_refusal(int js_code) noexcept {
  switch (js_code) {
    case 10023:  // insufficient resources
    case 10028:  // insufficient memory resources
    case 10047:  // insufficient storage resources
    case 10053:  // stream limits exceeded
    case 10077:  // storing failed: maximum messages or bytes exceeded (discard new)
      return Refusal::kBlocked;
    case 10054:  // message size exceeds the stream's maximum
      return Refusal::kPoison;
    default: return Refusal::kRetry;
  }
}

}  // namespace tianhe::sinks::nats
