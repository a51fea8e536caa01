// `[sinks.redis_streams]`: the common delivering-sink keys (url, password_env, batching, backlog,
// max_attempts) plus this sink's own (the stream key template and trimming), and the checked
// settings the writer connects with. Pure: nothing here connects.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_table.h"
#include "core/result.h"
#include "sinks/common/record.h"
#include "sinks/common/sink_options.h"

namespace tianhe::sinks::redis_streams {

/// The URL used when the table gives none.
inline constexpr std::string_view kDefaultUrl = "redis://127.0.0.1:6379/0";
/// The stream key template used when the table gives none.
inline constexpr std::string_view kDefaultStream = "tianhe:{tenant}:{model}";

/// `[sinks.redis_streams]` and each `[sinks.redis_streams.<name>]`, parsed once, immutable.
struct RedisStreamsConfig {
  SinkOptions sink{.url = std::string(kDefaultUrl)};
  std::string stream = std::string(kDefaultStream);  ///< key template: {tenant} {model} {device}
  uint64_t max_len = 0;                              ///< MAXLEN per XADD; 0: no trimming
  bool max_len_approximate = true;                   ///< MAXLEN ~ N (cheap) instead of exact
};

/// The table (SinkOptions keys, then the keys above).
config::ConfigTable config_table();

/// A parsed stream key template: literal text and the placeholders {tenant}, {model}, {device}.
class StreamTemplate {
 public:
  /// Parses `text`; errors name `key` and the fix (an unknown placeholder, a lone brace).
  static Result<StreamTemplate> parse(std::string_view text, std::string_view key);
  /// Writes the key of a record into `out` (replacing its contents). An unknown tenant or model
  /// becomes "unknown".
  void expand(const RecordFields& f, std::string& out) const;
  /// Whether the key depends on the device ({device} appears).
  bool per_device() const noexcept { return per_device_; }

 private:
  enum class Part : uint8_t { kLiteral, kTenant, kModel, kDevice };
  struct Piece {
    Part part = Part::kLiteral;
    std::string text;
  };
  std::vector<Piece> pieces_;
  bool per_device_ = false;
};

/// What the writer connects with: the config checked, the password resolved.
struct RedisSettings {
  std::string instance;  ///< "redis_streams" or "redis_streams.<name>"
  std::string header;    ///< "sinks.redis_streams[.<name>]": names keys in errors
  std::string host;
  uint16_t port = 6379;
  uint32_t database = 0;
  std::string user;      ///< ACL user (Redis 6+); "" for the default user
  std::string password;  ///< "" when the server has none
  StreamTemplate stream;
  uint64_t max_len = 0;
  bool max_len_approximate = true;
  int64_t timeout_ms = 10000;
  uint32_t max_attempts = 5;
  std::string cursor_key;  ///< tianhe:cursor:<instance>: shard -> log offset
  std::string seen_key;    ///< tianhe:seen:<instance>: "<device>:<shard>" -> "<seq> <time_ns>"
};

/// Checks `c` (URL, database, password source, template) without connecting. Errors name the
/// key under `header` and the fix.
Result<RedisSettings> make_settings(const RedisStreamsConfig& c, std::string_view instance,
                                    std::string_view header);

}  // namespace tianhe::sinks::redis_streams
