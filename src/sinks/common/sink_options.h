// What every delivering sink is configured with (`[sinks.<kind>]` and its instances
// `[sinks.<kind>.<name>]`): enabled, url, where the password comes from, batching, the backlog
// limit and policy, and how often a refused record is retried before it is dead-lettered.
// A sink's own keys come after these in its table; sink_table() joins the two.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/config_table.h"
#include "core/result.h"

namespace tianhe::sinks {

/// What a sink does when its backlog reaches max_backlog_bytes.
enum class BacklogPolicy : uint8_t {
  kBlock,       ///< the log refuses appends beyond it: devices get BUSY, nothing is lost
  kDropOldest,  ///< the sink skips its oldest undelivered reports (counted exactly)
};

/// The keys every delivering sink has.
struct SinkOptions {
  bool enabled = false;
  std::string url;            ///< in its engine's usual form (mysql://user@host:3306/db)
  std::string password_env;   ///< name of an environment variable holding the password
  std::string password_file;  ///< or a file holding it (one line)
  uint32_t batch_reports = 5000;
  std::chrono::milliseconds commit_interval{50};
  std::chrono::milliseconds timeout{10000};  ///< connect and per-request timeout
  uint64_t max_backlog_bytes = 1ull << 30;
  BacklogPolicy backlog_policy = BacklogPolicy::kBlock;
  uint32_t max_attempts = 5;  ///< a record the destination refuses is dead-lettered after this
};

/// The keys of SinkOptions, for a sink's table: `url_default` and `url_doc` document its URL.
struct SinkTableSpec {
  std::string_view header;       ///< "sinks.mysql"
  std::string_view doc;          ///< what the sink does
  std::string_view url_default;  ///< "\"mysql://tianhe@127.0.0.1:3306/tianhe\""
  std::string_view url_doc;      ///< "The server: mysql://user@host:port/database."
};

/// The SinkOptions fields, then the sink's own (`own`), filling a `T` with a member
/// `SinkOptions sink`. The spec, `own` and the finish function must be statics.
template <typename T>
config::ConfigTable sink_table(const SinkTableSpec& spec, std::span<const config::Field<T>> own,
                               std::string (*finish)(T&, std::string_view data_dir) = nullptr);

/// The password: from password_env (which must be set), else password_file, else the URL's
/// (`user:password@`), else "". An error names the key and the fix.
Result<std::string> resolve_password(const SinkOptions& o, std::string_view url_password,
                                     std::string_view header);

/// Decodes %XX escapes of `in` into `out`; false on a bad escape (a URL's user, password or
/// query values).
bool percent_decode(std::string_view in, std::string& out);

/// A URL in its engine's usual form: scheme://[user[:password]@]host[:port][/path][?query].
struct Url {
  std::string scheme;
  std::string user;
  std::string password;
  std::string host;   ///< IPv6 without brackets
  uint16_t port = 0;  ///< 0 when absent
  std::string path;   ///< without the leading '/' ("tianhe"; "" when absent)
  std::string query;  ///< after '?', undecoded
};

/// Parses `text`; `schemes` lists the accepted schemes ("mysql", "tidb"); `key` names the
/// config key in errors ("sinks.mysql.url: ..."). Percent-escapes in user and password decode.
Result<Url> parse_url(std::string_view text, std::span<const std::string_view> schemes,
                      std::string_view key);

// ---- implementation of sink_table (a template) ----
namespace detail {
std::span<const config::Field<SinkOptions>> option_fields();
std::vector<config::FieldInfo> option_infos(const SinkTableSpec& spec);
}  // namespace detail

template <typename T>
config::ConfigTable sink_table(const SinkTableSpec& spec, std::span<const config::Field<T>> own,
                               std::string (*finish)(T&, std::string_view data_dir)) {
  config::ConfigTable t;
  t.section.header = spec.header;
  t.section.doc = spec.doc;
  t.section.fields = detail::option_infos(spec);
  const size_t common = t.section.fields.size();
  for (const config::Field<T>& f : own) t.section.fields.push_back(f.info());
  t.section.set = [own, common](void* target, size_t i, const config::Parsed& p) {
    T& c = *static_cast<T*>(target);
    if (i < common) {
      detail::option_fields()[i].set(c.sink, p);
    } else {
      own[i - common].set(c, p);
    }
  };
  t.make_default = [] { return std::any(T{}); };
  t.target = [](std::any& a) -> void* { return std::any_cast<T>(&a); };
  if (finish != nullptr) {
    t.finish = [finish](std::any& a, std::string_view dir) {
      return finish(*std::any_cast<T>(&a), dir);
    };
  }
  t.instances = true;
  return t;
}

}  // namespace tianhe::sinks
