// OTLP 1.x (opentelemetry-proto v1.11.0) ExportTraceServiceRequest from span records, written
// in the wire format (see below why); the receiver's answer is read with the generated classes
// of the official schema. Field meanings: trace/v1/trace.proto; attribute
// names: the OpenTelemetry semantic conventions (messaging, network, database).
#include "control/otlp/otlp_encoder.h"

#include <curl/curl.h>
#include <google/protobuf/arena.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

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
// sampling is most of the cost of tracing.
//
// One pass, straight into the request buffer, through a raw cursor: constant attribute keys
// are copied with their KeyValue/AnyValue heads as compile-time-sized blocks, a span's length
// goes into the two bytes reserved before it (a span is 128..16383 bytes, so its varint length
// is two bytes; the rare other case moves the span), and the request's own heads (resource,
// scope: the same for every request, written once) go into room kept before the first span.
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

constexpr char tag(uint32_t field, Wire wire) {
  return static_cast<char>(field << 3 | wire);  // every field written here is below 16
}

size_t varint_size(uint64_t v) noexcept {
  return static_cast<size_t>(std::bit_width(v | 1) + 6) / 7;
}

char* put_varint(char* p, uint64_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

char* put_raw(char* p, std::string_view bytes) noexcept {
  std::memcpy(p, bytes.data(), bytes.size());
  return p + bytes.size();
}

/// A length-delimited field (`field` below 16).
char* put_bytes(char* p, uint32_t field, std::string_view bytes) noexcept {
  *p++ = tag(field, kLen);
  p = put_varint(p, bytes.size());
  return put_raw(p, bytes);
}

/// A length-delimited field of exactly N bytes (N below 128): sizes known at compile time.
template <size_t N>
char* put_fixed_bytes(char* p, uint32_t field, const uint8_t* bytes) noexcept {
  static_assert(N < 128);
  *p++ = tag(field, kLen);
  *p++ = static_cast<char>(N);
  std::memcpy(p, bytes, N);
  return p + N;
}

template <size_t Width>
char* put_fixed(char* p, uint32_t field, uint64_t v) noexcept {
  *p++ = tag(field, Width == 8 ? kFixed64 : kFixed32);
  for (size_t i = 0; i < Width; ++i) *p++ = static_cast<char>(v >> (8 * i));  // little-endian
  return p;
}

/// A span attribute's key as the head of its KeyValue: `0a <len> key 12` (the AnyValue's tag
/// follows), built at compile time; keys are shorter than 128 bytes.
template <size_t N>
struct KeyHead {
  static_assert(N - 1 < 128);
  std::array<char, N + 2> bytes{};
  constexpr explicit KeyHead(const char (&key)[N]) {
    bytes[0] = tag(kKeyValueKey, kLen);
    bytes[1] = static_cast<char>(N - 1);
    for (size_t i = 0; i + 1 < N; ++i) bytes[i + 2] = key[i];
    bytes[N + 1] = tag(kKeyValueValue, kLen);
  }
  static constexpr size_t size() { return N + 2; }
};

/// An int attribute with a constant key (as field kSpanAttributes).
template <size_t N>
char* put_int_attr(char* p, const KeyHead<N>& head, int64_t value) noexcept {
  const uint64_t u = static_cast<uint64_t>(value);  // int64: two's complement, 10 bytes if < 0
  const size_t any = 1 + varint_size(u);
  *p++ = tag(kSpanAttributes, kLen);
  *p++ = static_cast<char>(head.size() + 1 + any);  // below 128: keys are short
  std::memcpy(p, head.bytes.data(), head.size());
  p += head.size();
  *p++ = static_cast<char>(any);
  *p++ = tag(kAnyInt, kVarint);
  return put_varint(p, u);
}

/// The head of a KeyValue as field `field` with key bytes `key_head` (`0a <len> key 12`) and a
/// string AnyValue `value_size` bytes long, up to the string's own bytes.
char* put_string_kv_head(char* p, uint32_t field, std::string_view key_head,
                         size_t value_size) noexcept {
  const size_t any = 1 + varint_size(value_size) + value_size;
  *p++ = tag(field, kLen);
  p = put_varint(p, key_head.size() + varint_size(any) + any);
  p = put_raw(p, key_head);
  p = put_varint(p, any);
  *p++ = tag(kAnyString, kLen);
  return put_varint(p, value_size);
}

/// A string attribute with a constant key (as field kSpanAttributes). AnyValue{string_value}
/// is written even when the string is empty: the value is set.
template <size_t N>
char* put_string_attr(char* p, const KeyHead<N>& head, std::string_view value) noexcept {
  p = put_string_kv_head(p, kSpanAttributes, {head.bytes.data(), head.size()}, value.size());
  return put_raw(p, value);
}

/// A string KeyValue whose key is known only at run time, as field `field`.
void append_string_kv(std::string& out, uint32_t field, std::string_view key,
                      std::string_view value) {
  std::string head;
  if (!key.empty()) {  // proto3: an empty key is left out
    head += tag(kKeyValueKey, kLen);
    char len[10];
    head.append(len, static_cast<size_t>(put_varint(len, key.size()) - len));
    head += key;
  }
  head += tag(kKeyValueValue, kLen);
  std::vector<char> buf(16 + head.size() + 2 * 10 + value.size());
  char* p = put_string_kv_head(buf.data(), field, head, value.size());
  p = put_raw(p, value);
  out.append(buf.data(), static_cast<size_t>(p - buf.data()));
}

constexpr KeyHead kDeviceId("tianhe.device.id");
constexpr KeyHead kSeq("tianhe.report.seq");
constexpr KeyHead kTenant("tianhe.tenant");
constexpr KeyHead kShard("tianhe.shard");
constexpr KeyHead kCount("tianhe.report.count");
constexpr KeyHead kProtocol("tianhe.protocol");
constexpr KeyHead kModel("tianhe.model");
constexpr KeyHead kSink("tianhe.sink");
constexpr KeyHead kReason("tianhe.reason");
constexpr KeyHead kTransport("network.transport");
constexpr KeyHead kProtocolName("network.protocol.name");

/// messaging.operation.type = "receive", the whole attribute (every report span has it).
constexpr KeyHead kOperationType("messaging.operation.type");
constexpr std::string_view kReceive = "receive";
constexpr auto kReceiveAttr = [] {
  std::array<char, 2 + kOperationType.size() + 3 + kReceive.size()> b{};
  b[0] = tag(kSpanAttributes, kLen);
  b[1] = static_cast<char>(kOperationType.size() + 3 + kReceive.size());
  size_t i = 2;
  for (char c : kOperationType.bytes) b[i++] = c;
  b[i++] = static_cast<char>(2 + kReceive.size());
  b[i++] = tag(kAnyString, kLen);
  b[i++] = static_cast<char>(kReceive.size());
  for (char c : kReceive) b[i++] = c;
  return b;
}();

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& id) noexcept {
  uint64_t any = 0;
  for (size_t i = 0; i < N; i += 8) {
    uint64_t w;
    std::memcpy(&w, id.data() + i, 8);
    any |= w;
  }
  return any == 0;
}

std::string_view text_of(const char* field, size_t n) noexcept {
  return {field, strnlen(field, n)};
}

/// What a span can take beyond its variable texts: ids, times, names, the tracestate, every
/// attribute head and integer (at most 10 bytes each), status and flags — under 512 bytes.
constexpr size_t kSpanFixedBound = 512;

/// The bytes span `r` may need at most (with its protocol name `protocol`).
size_t span_bound(std::string_view protocol) noexcept {
  return kSpanFixedBound + 2 * protocol.size() + sizeof(SpanRecord::model) +
         sizeof(SpanRecord::sink) + 2 * sizeof(SpanRecord::detail);
}

/// The network.transport of the protocol last asked about (spans of a batch mostly share one).
struct TransportCache {
  std::string_view protocol;
  std::string_view transport;
  std::string_view get(std::string_view p) noexcept {
    if (p.data() != protocol.data() || p.size() != protocol.size()) {
      protocol = p;
      transport = network_transport(p);
    }
    return transport;
  }
};

/// The Span message of `r` (its fields, without the outer tag and length) at `p`; returns the
/// end. `p` has room for span_bound() bytes.
char* write_span(const SpanRecord& r, std::string_view protocol, TransportCache& transports,
                 char* p) noexcept {
  p = put_fixed_bytes<16>(p, kSpanTraceId, r.trace_id.data());
  p = put_fixed_bytes<8>(p, kSpanSpanId, r.span_id.data());
  if (r.has_threshold) {
    std::array<char, 24> ts{};
    const size_t n = core::tracing::format_tracestate(r.threshold, ts);
    if (n > 0) p = put_bytes(p, kSpanTraceState, std::string_view(ts.data(), n));
  }
  const bool has_parent = !all_zero(r.parent_span_id);
  if (has_parent) p = put_fixed_bytes<8>(p, kSpanParentSpanId, r.parent_span_id.data());
  if (const std::string_view name = core::tracing::stage_name(r.stage); !name.empty()) {
    p = put_bytes(p, kSpanName, name);
  }
  if (const auto kind = static_cast<uint8_t>(r.kind); kind != 0) {
    *p++ = tag(kSpanKind, kVarint);
    p = put_varint(p, kind);
  }
  if (r.start_ns != 0) p = put_fixed<8>(p, kSpanStart, static_cast<uint64_t>(r.start_ns));
  if (r.end_ns != 0) p = put_fixed<8>(p, kSpanEnd, static_cast<uint64_t>(r.end_ns));

  // Ids are unsigned; OTLP has only int64, so a device id above 2^63 reads back negative.
  p = put_int_attr(p, kDeviceId, static_cast<int64_t>(r.device_id));
  p = put_int_attr(p, kSeq, r.seq);
  p = put_int_attr(p, kTenant, r.tenant);
  p = put_int_attr(p, kShard, r.shard);
  if (r.count > 1) p = put_int_attr(p, kCount, r.count);
  p = put_string_attr(p, kProtocol, protocol);
  const std::string_view model = text_of(r.model, sizeof r.model);
  if (!model.empty()) p = put_string_attr(p, kModel, model);
  const std::string_view sink =
      r.stage == Stage::kSink ? text_of(r.sink, sizeof r.sink) : std::string_view{};
  if (!sink.empty()) p = put_string_attr(p, kSink, sink);
  const std::string_view detail = text_of(r.detail, sizeof r.detail);
  if (!detail.empty()) p = put_string_attr(p, kReason, detail);
  if (r.stage == Stage::kReport) {
    p = put_raw(p, {kReceiveAttr.data(), kReceiveAttr.size()});
    const std::string_view transport = transports.get(protocol);
    if (!transport.empty()) p = put_string_attr(p, kTransport, transport);
    p = put_string_attr(p, kProtocolName, protocol);
  } else if (r.stage == Stage::kSink) {
    const SinkSystem system = sink_system(sink);
    if (!system.key.empty()) {
      // Both keys are 14 and 16 bytes: the KeyValue head is built here, still no allocation.
      std::array<char, 32> head{};
      head[0] = tag(kKeyValueKey, kLen);
      head[1] = static_cast<char>(system.key.size());
      std::memcpy(head.data() + 2, system.key.data(), system.key.size());
      head[2 + system.key.size()] = tag(kKeyValueValue, kLen);
      p = put_string_kv_head(p, kSpanAttributes, {head.data(), system.key.size() + 3},
                             system.value.size());
      p = put_raw(p, system.value);
    }
  }

  if (r.status != core::tracing::SpanStatus::kUnset) {
    const std::string_view message =
        r.status == core::tracing::SpanStatus::kError ? detail : std::string_view{};
    const auto code = static_cast<uint8_t>(r.status);
    *p++ = tag(kSpanStatus, kLen);
    p = put_varint(p, (message.empty() ? 0 : 1 + varint_size(message.size()) + message.size()) +
                          (code == 0 ? 0 : 2));
    if (!message.empty()) p = put_bytes(p, kStatusMessage, message);
    if (code != 0) {
      *p++ = tag(kStatusCode, kVarint);
      *p++ = static_cast<char>(code);
    }
  }
  // The low byte is the W3C trace flags; bit 8 says whether bit 9 (the parent is remote) is
  // known. Only the root's parent — the sender's span — is remote. Field 16: a two-byte tag.
  uint32_t flags = r.trace_flags | kFlagsHasIsRemote;
  if (has_parent && r.stage == Stage::kReport) flags |= kFlagsIsRemote;
  *p++ = static_cast<char>(0x80 | ((kSpanFlags << 3 | kFixed32) & 0x7f));
  *p++ = static_cast<char>((kSpanFlags << 3 | kFixed32) >> 7);
  for (size_t i = 0; i < 4; ++i) *p++ = static_cast<char>(flags >> (8 * i));
  return p;
}

}  // namespace

struct OtlpEncoder::Impl {
  ResourceInfo info;
  std::string resource_field;   ///< ResourceSpans.resource, tag and length included
  std::string scope_field;      ///< ScopeSpans.scope, tag and length included
  size_t head_room = 0;         ///< bytes kept before the first span for the request's heads
  std::unique_ptr<char[]> buf;  ///< the request being written (grown, never shrunk)
  size_t cap = 0;
  size_t used = 0;  ///< head_room + the spans written so far

  /// Room for `n` more bytes after `used`.
  void reserve(size_t n) {
    if (used + n <= cap) return;
    const size_t want = std::max(cap * 2, used + n);
    auto bigger = std::make_unique_for_overwrite<char[]>(want);
    if (used > 0) std::memcpy(bigger.get(), buf.get(), used);
    buf = std::move(bigger);
    cap = want;
  }

  void add(std::span<const SpanRecord> spans, TransportCache& transports) {
    for (const SpanRecord& r : spans) {
      const std::string_view protocol = core::protocol_name(r.protocol);
      reserve(3 + span_bound(protocol));
      char* const at = buf.get() + used;  // tag, two length bytes, the span
      char* const body = at + 3;
      char* const end = write_span(r, protocol, transports, body);
      const auto len = static_cast<size_t>(end - body);
      TH_ASSERT(len <= span_bound(protocol), "a span larger than its bound");
      at[0] = tag(kScopeSpansSpans, kLen);
      if (len >= 128 && len < 16384) {
        at[1] = static_cast<char>(len | 0x80);
        at[2] = static_cast<char>(len >> 7);
        used += 3 + len;
      } else {
        // Not seen in practice (a span is at least ~190 bytes): a one-byte length.
        at[1] = static_cast<char>(len);
        std::memmove(at + 2, body, len);
        used += 2 + len;
      }
    }
  }

  std::string_view finish() noexcept {
    // ScopeSpans = scope, spans; ResourceSpans = resource, scope_spans; the request = it,
    // written backwards into the room before the first span.
    const size_t spans_len = used - head_room;
    const size_t scope_spans_len = scope_field.size() + spans_len;
    const size_t resource_spans_len =
        resource_field.size() + 1 + varint_size(scope_spans_len) + scope_spans_len;
    std::array<char, 32> lens{};
    char* p = lens.data();
    *p++ = tag(kRequestResourceSpans, kLen);
    p = put_varint(p, resource_spans_len);
    const size_t first = static_cast<size_t>(p - lens.data());
    *p++ = tag(kResourceSpansScopeSpans, kLen);
    p = put_varint(p, scope_spans_len);
    const size_t second = static_cast<size_t>(p - lens.data()) - first;
    const size_t head = first + resource_field.size() + second + scope_field.size();
    TH_ASSERT(head <= head_room, "request heads larger than their room");
    char* out = buf.get() + head_room - head;
    char* q = out;
    q = put_raw(q, {lens.data(), first});
    q = put_raw(q, resource_field);
    q = put_raw(q, {lens.data() + first, second});
    put_raw(q, scope_field);
    return {out, used - (head_room - head)};
  }
};

OtlpEncoder::OtlpEncoder(ResourceInfo info) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.info = std::move(info);
  // The scope message: name "tianhe", version when set.
  std::string scope;
  scope += tag(kScopeName, kLen);
  scope += static_cast<char>(6);
  scope += "tianhe";
  if (!m.info.scope_version.empty()) {
    char len[10];
    scope += tag(kScopeVersion, kLen);
    scope.append(len, static_cast<size_t>(put_varint(len, m.info.scope_version.size()) - len));
    scope += m.info.scope_version;
  }
  std::string resource;
  append_string_kv(resource, kResourceAttributes, "service.name", "tianhe");
  append_string_kv(resource, kResourceAttributes, "service.instance.id",
                   m.info.service_instance_id);
  if (!m.info.host_name.empty()) {
    append_string_kv(resource, kResourceAttributes, "host.name", m.info.host_name);
  }
  auto field = [](uint32_t number, const std::string& message) {
    std::string f;
    f += tag(number, kLen);
    char len[10];
    f.append(len, static_cast<size_t>(put_varint(len, message.size()) - len));
    f += message;
    return f;
  };
  m.resource_field = field(kResourceSpansResource, resource);
  m.scope_field = field(kScopeSpansScope, scope);
  m.head_room = 32 + m.resource_field.size() + m.scope_field.size();
}

OtlpEncoder::~OtlpEncoder() = default;

std::string_view OtlpEncoder::encode(std::span<const SpanRecord> first,
                                     std::span<const SpanRecord> second) noexcept {
  Impl& m = *impl_;
  m.used = 0;
  m.reserve(m.head_room);
  m.used = m.head_room;
  TransportCache transports;
  m.add(first, transports);
  m.add(second, transports);
  return m.finish();
}

void OtlpEncoder::encode(std::span<const SpanRecord> spans, std::string& out) noexcept {
  out.assign(encode(spans, {}));
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
