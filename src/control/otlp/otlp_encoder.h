// The OTLP 1.x protobuf encoding of a batch of spans (an ExportTraceServiceRequest, from the
// official opentelemetry-proto schema in third_party/opentelemetry-proto), and the decoding of the
// receiver's answer (ExportTraceServiceResponse) and of its Retry-After header.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/tracing.h"

namespace tianhe::control::otlp {

/// Who exports: the resource and instrumentation scope every request carries.
struct ResourceInfo {
  std::string service_instance_id;  ///< resource attribute service.instance.id
  std::string host_name;            ///< resource attribute host.name
  std::string scope_version;        ///< InstrumentationScope.version (scope name "tianhe")
};

/// The network.transport semantic-convention value of a protocol name ("udp", "tcp"), or ""
/// when the protocol is not in the table.
std::string_view network_transport(std::string_view protocol) noexcept;

/// A sink's semantic-convention system attribute: key (db.system.name or messaging.system) and
/// value, both empty when the sink kind has none.
struct SinkSystem {
  std::string_view key;    ///< "db.system.name", "messaging.system" or ""
  std::string_view value;  ///< "postgresql", "mysql", "nats", "redis" or ""
};

/// The semantic-convention system of a sink kind name ("postgres" → db.system.name=postgresql).
SinkSystem sink_system(std::string_view sink) noexcept;

/// Encodes span batches into ExportTraceServiceRequest bytes. One per exporter thread (not
/// thread-safe); its buffer is reused, so a steady batch size allocates nothing.
class OtlpEncoder {
 public:
  /// An encoder whose requests carry `info` as resource and scope.
  explicit OtlpEncoder(ResourceInfo info);
  ~OtlpEncoder();
  OtlpEncoder(const OtlpEncoder&) = delete;
  OtlpEncoder& operator=(const OtlpEncoder&) = delete;

  /// The serialized request holding `first` then `second` (one ResourceSpans, one ScopeSpans),
  /// in the encoder's own buffer: valid until the next encode. Protocol names come from
  /// core::protocol_name. Allocates only to grow its buffer.
  std::string_view encode(std::span<const core::tracing::SpanRecord> first,
                          std::span<const core::tracing::SpanRecord> second = {}) noexcept;
  /// Replaces `out` with the serialized request holding `spans` (a copy of encode(spans)).
  void encode(std::span<const core::tracing::SpanRecord> spans, std::string& out) noexcept;

 private:
  struct Impl;                  ///< the request buffer and the pre-encoded resource and scope
  std::unique_ptr<Impl> impl_;  ///< never null
};

/// The largest response body the exporter keeps and decodes.
inline constexpr size_t kMaxResponseBytes = 64 * 1024;

/// What an ExportTraceServiceResponse says.
struct ExportResponse {
  uint64_t rejected_spans = 0;  ///< partial_success.rejected_spans (negative values read as 0)
  std::string error_message;    ///< partial_success.error_message (truncated to 256 bytes)
};

/// Outcome of decoding a response body.
enum class ResponseStatus : uint8_t { kOk, kMalformed, kTooLarge };

/// Decodes an ExportTraceServiceResponse body (pure; fuzzed). An empty body is a full success.
ResponseStatus parse_export_response(std::span<const uint8_t> body, ExportResponse& out) noexcept;

/// The delay a Retry-After header value asks for (RFC 9110 §10.2.3: delay-seconds or an
/// HTTP-date, relative to `now_unix_s`); nullopt when unreadable. Pure; fuzzed.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      int64_t now_unix_s) noexcept;

}  // namespace tianhe::control::otlp
