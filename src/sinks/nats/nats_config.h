// The NATS JetStream sink's configuration and the pure parts of its layout: the servers and
// credentials of `url`, the subject template, the message id that identifies a reading, the log
// position header and how a refused PubAck is handled. No I/O here (nats_writer.h talks to the
// server), so every decision is unit-tested without one.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_table.h"
#include "core/result.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/record.h"
#include "sinks/common/sink_options.h"

namespace tianhe::sinks::nats {

/// `[sinks.nats]` (and each `[sinks.nats.<name>]`): parsed once, shared read-only.
struct NatsConfig {
  SinkOptions sink{.url = "nats://127.0.0.1:4222"};
  std::string stream = "TIANHE";                             ///< the JetStream stream
  std::string subject = "tianhe.{tenant}.{model}.{device}";  ///< subject of each message
  /// The stream's duplicate window, set when the sink creates the stream.
  std::chrono::milliseconds duplicate_window{std::chrono::minutes(2)};
};

/// The `[sinks.nats]` table (SinkOptions keys, then stream, subject, duplicate_window).
config::ConfigTable config_table();

/// Where to connect and as whom, from `url` and the password's source.
struct NatsServers {
  std::vector<std::string> urls;  ///< "nats://host:port" each, without credentials
  std::string user;               ///< "" when none
  std::string password;           ///< with `user`
  std::string token;              ///< when there is a password but no user (or a bare user)
};

/// Parses `url`: one or more comma-separated `nats://[user[:password]@]host[:port]` (port 4222
/// when absent). Errors name `<header>.url`. The password comes from
/// resolve_password() (password_env, password_file, else the URL).
Result<NatsServers> parse_servers(const SinkOptions& options, std::string_view header);

/// Checks a stream name (JetStream: no whitespace, '.', '*', '>', path separators); "" or the
/// problem.
std::string check_stream_name(std::string_view name);

/// A subject template such as "tianhe.{tenant}.{model}.{device}".
class SubjectTemplate {
 public:
  /// Parses and checks `text`: placeholders {tenant}, {model}, {device}; literal text without
  /// whitespace, '*' or '>'; no empty token; at least one literal token before the first
  /// placeholder (the stream's subject filter is built from it). `key` names it in errors.
  static Result<SubjectTemplate> parse(std::string_view text, std::string_view key);
  /// Appends the subject of a record to `out` (tenant and model made subject-safe).
  void render(const RecordFields& f, std::string& out) const;
  /// The subject filter a stream created for this template captures ("tianhe.>").
  const std::string& stream_subject() const noexcept { return stream_subject_; }

 private:
  enum class Kind : uint8_t { kLiteral, kTenant, kModel, kDevice };
  struct Part {
    Kind kind = Kind::kLiteral;
    std::string text;  ///< kLiteral only
  };
  std::vector<Part> parts_;
  std::string stream_subject_;
};

/// Appends `value` as one subject token: '.', '*', '>', whitespace and control bytes become
/// '_'; an empty value is "unknown".
void append_subject_token(std::string& out, std::string_view value);

/// Appends the Nats-Msg-Id of a reading: "<device_id>-<seq>-<time_ns>". The reading's identity,
/// not its log position: a device's retransmission (stored at another position) has the same id,
/// so JetStream drops it like a replay of the same position.
void append_msg_id(std::string& out, uint64_t device_id, uint32_t seq, int64_t time_ns);

/// Appends the Tianhe-Log-Position header value: "<shard>/<offset>/<index>".
void append_log_position(std::string& out, const ReportPosition& p);

/// One message of a report, in buffers reused from message to message.
struct MessageParts {
  std::string subject;      ///< the rendered subject template
  std::string body;         ///< the record as JSON (record_json)
  std::string msg_id;       ///< Nats-Msg-Id
  std::string position;     ///< Tianhe-Log-Position
  std::string traceparent;  ///< "" when the report carried none
};

/// Fills `out` with the message of report `r` at log position `pos`.
void build_message(const SubjectTemplate& subject, const core::Report& r, const ReportPosition& pos,
                   const pipeline::Registry* registry, MessageParts& out);

/// What a failed PubAck means for its batch.
enum class Refusal : uint8_t {
  kRetry,    ///< no answer, a lost connection, or an error about the setup: reconnect, replay
  kBlocked,  ///< the stream or the server is out of room: offer the batch again later
  kPoison,   ///< this record can never be stored (larger than the stream's max message size)
};

/// The refusal of a PubAck error with JetStream error code `js_code` (0: no JetStream error,
/// such as a timeout or no stream listening).
Refusal classify_refusal(int js_code) noexcept;

}  // namespace tianhe::sinks::nats
