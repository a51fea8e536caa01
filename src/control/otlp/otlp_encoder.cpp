// OTLP 1.x (opentelemetry-proto v1.11.0) ExportTraceServiceRequest from span records, written
// in the wire format (see below why); the receiver's answer is read with the generated classes
// of the official schema. Field meanings: trace/v1/trace.proto; attribute
// names: the OpenTelemetry semantic conventions (messaging, network, database).
#include "control/otlp/otlp_encoder.h"

#include <curl/curl.h>
#include <google/protobuf/arena.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "core/assert.h"
#include "core/report.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace tianhe::control::otlp {

namespace pb_collector = opentelemetry::proto::collector::trace::v1;
using core::tracing::SpanRecord;
using core::tracing::Stage;

std::string_view network_transport(std::string_view protocol) noexcept {
  // network.transport: the transport each protocol runs on (its README).
  struct Row {
    std::string_view protocol;
    std::string_view transport;
  };
  static constexpr std::array<Row, 5> kTable{{{"report", "udp"},
                                              {"mqtt_sn", "udp"},
                                              {"lorawan", "udp"},
                                              {"modbus", "tcp"},
                                              {"mqtt", "tcp"}}};
  for (const Row& r : kTable) {
    if (r.protocol == protocol) return r.transport;
  }
  return {};
}

SinkSystem sink_system(std::string_view sink) noexcept {
  // db.system.name (database semantic conventions) for SQL engines; messaging.system
  // (messaging semantic conventions) for the engines Tianhe publishes to.
  struct Row {
    std::string_view sink;
    SinkSystem system;
  };
  static constexpr std::array<Row, 5> kTable{{
      {"postgres", {"db.system.name", "postgresql"}},
      {"mysql", {"db.system.name", "mysql"}},
      {"nats", {"messaging.system", "nats"}},
      {"redis", {"messaging.system", "redis"}},
      {"redis_streams", {"messaging.system", "redis"}},
  }};
  for (const Row& r : kTable) {
    if (r.sink == sink) return r.system;
  }
  return {};
}

namespace {

// The request is written straight in the protobuf wire format (protobuf encoding guide:
// varints, tags = field << 3 | wire type, length-delimited submessages), fields in number
// order and proto3 defaults left out, as the generated classes write them: the tests compare
// the bytes with theirs. By hand because the generated classes cost about 1.4 µs a span (a
// message, six to ten KeyValue and AnyValue objects and their strings), which at 100 %
// sampling is most of the cost of tracing; this writer costs a tenth of that.
enum Wire : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

// Field numbers (trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto,
// collector/trace/v1/trace_service.proto of opentelemetry-proto v1.11.0).
constexpr uint32_t kRequestResourceSpans = 1;
constexpr uint32_t kResourceSpansResource = 1, kResourceSpansScopeSpans = 2;
constexpr uint32_t kResourceAttributes = 1;
constexpr uint32_t kScopeSpansScope = 1, kScopeSpansSpans = 2;
constexpr uint32_t kScopeName = 1, kScopeVersion = 2;
constexpr uint32_t kSpanTraceId = 1, kSpanSpanId = 2, kSpanTraceState = 3, kSpanParentSpanId = 4,
                   kSpanName = 5, kSpanKind = 6, kSpanStart = 7, kSpanEnd = 8, kSpanAttributes = 9,
                   kSpanStatus = 15, kSpanFlags = 16;
constexpr uint32_t kStatusMessage = 2, kStatusCode = 3;
constexpr uint32_t kKeyValueKey = 1, kKeyValueValue = 2;
constexpr uint32_t kAnyString = 1, kAnyInt = 3;
// trace.proto SpanFlags.
constexpr uint32_t kFlagsHasIsRemote = 0x100, kFlagsIsRemote = 0x200;

size_t varint_size(uint64_t v) noexcept {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

template <class Out>
void put_varint(Out& out, uint64_t v) {
  char buf[10];
  size_t n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  out.append(buf, n);
}

template <class Out>
void put_tag(Out& out, uint32_t field, Wire wire) {
  put_varint(out, uint64_t{field} << 3 | wire);
}

template <class Out>
void put_bytes(Out& out, uint32_t field, std::string_view bytes) {
  put_tag(out, field, kLen);
  put_varint(out, bytes.size());
  out.append(bytes);
}

/// A bytes/string field, left out when empty (proto3).
template <class Out>
void put_nonempty(Out& out, uint32_t field, std::string_view bytes) {
  if (!bytes.empty()) put_bytes(out, field, bytes);
}

template <class Out>
void put_fixed(Out& out, uint32_t field, uint64_t v, size_t width) {
  put_tag(out, field, width == 8 ? kFixed64 : kFixed32);
  char buf[8];
  for (size_t i = 0; i < width; ++i) buf[i] = static_cast<char>(v >> (8 * i));  // little-endian
  out.append(buf, width);
}

/// The head of a KeyValue as field `field` whose AnyValue is `any` bytes long: its tag and
/// length, the key, and the AnyValue's tag and length (the caller writes the value's field).
template <class Out>
void put_kv_head(Out& out, uint32_t field, std::string_view key, size_t any) {
  const size_t kv =
      (key.empty() ? 0 : 1 + varint_size(key.size()) + key.size()) + 1 + varint_size(any) + any;
  put_tag(out, field, kLen);
  put_varint(out, kv);
  put_nonempty(out, kKeyValueKey, key);
  put_tag(out, kKeyValueValue, kLen);
  put_varint(out, any);
}

/// A KeyValue with a string AnyValue as field `field`.
template <class Out>
void put_string_kv(Out& out, uint32_t field, std::string_view key, std::string_view value) {
  // AnyValue{string_value} is written even when the string is empty: the value is set.
  put_kv_head(out, field, key, 1 + varint_size(value.size()) + value.size());
  put_bytes(out, kAnyString, value);
}

/// A KeyValue with an int AnyValue as field `field`.
template <class Out>
void put_int_kv(Out& out, uint32_t field, std::string_view key, int64_t value) {
  const uint64_t u = static_cast<uint64_t>(value);  // int64: two's complement, 10 bytes if < 0
  put_kv_head(out, field, key, 1 + varint_size(u));
  put_tag(out, kAnyInt, kVarint);
  put_varint(out, u);
}

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& id) {
  return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; });
}

template <size_t N>
std::string_view id_bytes(const std::array<uint8_t, N>& id) {
  return {reinterpret_cast<const char*>(id.data()), N};
}

std::string_view text_of(const char* field, size_t n) {
  return {field, strnlen(field, n)};
}

/// One span's message: a fixed buffer, far larger than the largest span (ids, times and at
/// most 15 attributes of bounded text: under 1.5 KiB), so appends need no capacity check.
struct SpanBuffer {
  std::array<char, 4096> data;
  size_t size = 0;
  void append(const char* p, size_t n) noexcept {
    TH_ASSERT(size + n <= data.size(), "a span larger than its buffer");
    std::memcpy(data.data() + size, p, n);
    size += n;
  }
  void append(std::string_view v) noexcept { append(v.data(), v.size()); }
  std::string_view view() const noexcept { return {data.data(), size}; }
};

/// The Span message of `r` (its fields, without the outer tag and length) into `s`.
void write_span(const SpanRecord& r, SpanBuffer& s) {
  put_bytes(s, kSpanTraceId, id_bytes(r.trace_id));
  put_bytes(s, kSpanSpanId, id_bytes(r.span_id));
  if (r.has_threshold) {
    std::array<char, 24> ts{};
    const size_t n = core::tracing::format_tracestate(r.threshold, ts);
    put_nonempty(s, kSpanTraceState, std::string_view(ts.data(), n));
  }
  const bool has_parent = !all_zero(r.parent_span_id);
  if (has_parent) put_bytes(s, kSpanParentSpanId, id_bytes(r.parent_span_id));
  put_nonempty(s, kSpanName, core::tracing::stage_name(r.stage));
  if (const auto kind = static_cast<uint64_t>(r.kind); kind != 0) {
    put_tag(s, kSpanKind, kVarint);
    put_varint(s, kind);
  }
  if (r.start_ns != 0) put_fixed(s, kSpanStart, static_cast<uint64_t>(r.start_ns), 8);
  if (r.end_ns != 0) put_fixed(s, kSpanEnd, static_cast<uint64_t>(r.end_ns), 8);

  // Ids are unsigned; OTLP has only int64, so a device id above 2^63 reads back negative.
  put_int_kv(s, kSpanAttributes, "tianhe.device.id", static_cast<int64_t>(r.device_id));
  put_int_kv(s, kSpanAttributes, "tianhe.report.seq", r.seq);
  put_int_kv(s, kSpanAttributes, "tianhe.tenant", r.tenant);
  put_int_kv(s, kSpanAttributes, "tianhe.shard", r.shard);
  if (r.count > 1) put_int_kv(s, kSpanAttributes, "tianhe.report.count", r.count);
  const std::string_view protocol = core::protocol_name(r.protocol);
  put_string_kv(s, kSpanAttributes, "tianhe.protocol", protocol);
  const std::string_view model = text_of(r.model, sizeof r.model);
  if (!model.empty()) put_string_kv(s, kSpanAttributes, "tianhe.model", model);
  const std::string_view sink = text_of(r.sink, sizeof r.sink);
  if (r.stage == Stage::kSink && !sink.empty()) {
    put_string_kv(s, kSpanAttributes, "tianhe.sink", sink);
  }
  const std::string_view detail = text_of(r.detail, sizeof r.detail);
  if (!detail.empty()) put_string_kv(s, kSpanAttributes, "tianhe.reason", detail);
  if (r.stage == Stage::kReport) {
    put_string_kv(s, kSpanAttributes, "messaging.operation.type", "receive");
    const std::string_view transport = network_transport(protocol);
    if (!transport.empty()) put_string_kv(s, kSpanAttributes, "network.transport", transport);
    put_string_kv(s, kSpanAttributes, "network.protocol.name", protocol);
  } else if (r.stage == Stage::kSink) {
    const SinkSystem system = sink_system(sink);
    if (!system.key.empty()) put_string_kv(s, kSpanAttributes, system.key, system.value);
  }

  if (r.status != core::tracing::SpanStatus::kUnset) {
    const std::string_view message =
        r.status == core::tracing::SpanStatus::kError ? detail : std::string_view{};
    const auto code = static_cast<uint64_t>(r.status);
    const size_t len = (message.empty() ? 0 : 1 + varint_size(message.size()) + message.size()) +
                       (code == 0 ? 0 : 1 + varint_size(code));
    put_tag(s, kSpanStatus, kLen);
    put_varint(s, len);
    put_nonempty(s, kStatusMessage, message);
    if (code != 0) {
      put_tag(s, kStatusCode, kVarint);
      put_varint(s, code);
    }
  }
  // The low byte is the W3C trace flags; bit 8 says whether bit 9 (the parent is remote) is
  // known. Only the root's parent — the sender's span — is remote.
  uint32_t flags = r.trace_flags | kFlagsHasIsRemote;
  if (has_parent && r.stage == Stage::kReport) flags |= kFlagsIsRemote;
  put_fixed(s, kSpanFlags, flags, 4);
}

}  // namespace

struct OtlpEncoder::Impl {
  ResourceInfo info;
  SpanBuffer span;       ///< one span's message
  std::string scope;     ///< the InstrumentationScope message, reused
  std::string spans;     ///< the ScopeSpans' spans, reused
  std::string resource;  ///< the Resource message, reused
};

OtlpEncoder::OtlpEncoder(ResourceInfo info) : impl_(std::make_unique<Impl>()) {
  impl_->info = std::move(info);
}

OtlpEncoder::~OtlpEncoder() = default;

void OtlpEncoder::encode(std::span<const SpanRecord> spans, std::string& out) noexcept {
  Impl& m = *impl_;
  m.spans.clear();
  for (const SpanRecord& r : spans) {
    m.span.size = 0;
    write_span(r, m.span);
    put_bytes(m.spans, kScopeSpansSpans, m.span.view());
  }
  // ScopeSpans = scope, spans; ResourceSpans = resource, scope_spans; the request = it.
  std::string& scope = m.scope;
  scope.clear();
  put_nonempty(scope, kScopeName, "tianhe");
  put_nonempty(scope, kScopeVersion, m.info.scope_version);
  std::string& resource = m.resource;
  resource.clear();
  put_string_kv(resource, kResourceAttributes, "service.name", "tianhe");
  put_string_kv(resource, kResourceAttributes, "service.instance.id", m.info.service_instance_id);
  if (!m.info.host_name.empty()) {
    put_string_kv(resource, kResourceAttributes, "host.name", m.info.host_name);
  }
  const size_t scope_spans_len = 1 + varint_size(scope.size()) + scope.size() + m.spans.size();
  const size_t resource_spans_len = 1 + varint_size(resource.size()) + resource.size() + 1 +
                                    varint_size(scope_spans_len) + scope_spans_len;
  out.clear();
  out.reserve(resource_spans_len + 16);
  put_tag(out, kRequestResourceSpans, kLen);
  put_varint(out, resource_spans_len);
  put_bytes(out, kResourceSpansResource, resource);
  put_tag(out, kResourceSpansScopeSpans, kLen);
  put_varint(out, scope_spans_len);
  put_bytes(out, kScopeSpansScope, scope);
  out.append(m.spans);
}

ResponseStatus parse_export_response(std::span<const uint8_t> body, ExportResponse& out) noexcept {
  out = ExportResponse{};
  if (body.size() > kMaxResponseBytes) return ResponseStatus::kTooLarge;
  if (body.empty()) return ResponseStatus::kOk;
  // Bounded: the body is at most kMaxResponseBytes and libprotobuf limits nesting depth (100).
  google::protobuf::Arena arena;
  auto* response =
      google::protobuf::Arena::CreateMessage<pb_collector::ExportTraceServiceResponse>(&arena);
  if (!response->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
    return ResponseStatus::kMalformed;
  }
  if (response->has_partial_success()) {
    const auto& ps = response->partial_success();
    out.rejected_spans = ps.rejected_spans() > 0 ? static_cast<uint64_t>(ps.rejected_spans()) : 0;
    const std::string& msg = ps.error_message();
    out.error_message.assign(msg, 0, std::min<size_t>(msg.size(), 256));
  }
  return ResponseStatus::kOk;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      int64_t now_unix_s) noexcept {
  // RFC 9110 §10.2.3: Retry-After = HTTP-date / delay-seconds (optional whitespace around it).
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' ||
                            value.back() == '\n')) {
    value.remove_suffix(1);
  }
  if (value.empty() || value.size() > 64) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t s = 0;
    for (const char c : value) {
      s = s * 10 + (c - '0');
      if (s > 86400) return std::chrono::seconds(86400);  // a day: more is not meant
    }
    return std::chrono::seconds(s);
  }
  // An HTTP-date (IMF-fixdate and the obsolete forms, which curl_getdate reads).
  char buf[65];
  std::memcpy(buf, value.data(), value.size());
  buf[value.size()] = '\0';
  const time_t at = curl_getdate(buf, nullptr);
  if (at == -1) return std::nullopt;
  const int64_t delta = static_cast<int64_t>(at) - now_unix_s;
  return std::chrono::seconds(std::clamp<int64_t>(delta, 0, 86400));
}

}  // namespace tianhe::control::otlp
