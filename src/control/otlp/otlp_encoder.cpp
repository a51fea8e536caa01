// OTLP 1.x (opentelemetry-proto v1.11.0) ExportTraceServiceRequest from span records, with the
// generated classes of the official schema. Field meanings: trace/v1/trace.proto; attribute
// names: the OpenTelemetry semantic conventions (messaging, network, database).
#include "control/otlp/otlp_encoder.h"

#include <curl/curl.h>
#include <google/protobuf/arena.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>

#include "core/report.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace tianhe::control::otlp {

namespace pb_collector = opentelemetry::proto::collector::trace::v1;
namespace pb_trace = opentelemetry::proto::trace::v1;
namespace pb_common = opentelemetry::proto::common::v1;
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

/// The arena's first block, kept between batches: a batch of 512 spans fits without malloc
/// for the messages themselves.
constexpr size_t kArenaBlockBytes = size_t{1} << 20;

void add_string(google::protobuf::RepeatedPtrField<pb_common::KeyValue>* attrs,
                std::string_view key, std::string_view value) {
  pb_common::KeyValue* kv = attrs->Add();
  kv->mutable_key()->assign(key.data(), key.size());
  kv->mutable_value()->mutable_string_value()->assign(value.data(), value.size());
}

void add_int(google::protobuf::RepeatedPtrField<pb_common::KeyValue>* attrs, std::string_view key,
             int64_t value) {
  pb_common::KeyValue* kv = attrs->Add();
  kv->mutable_key()->assign(key.data(), key.size());
  kv->mutable_value()->set_int_value(value);
}

template <size_t N>
bool all_zero(const std::array<uint8_t, N>& id) {
  return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; });
}

std::string_view text_of(const char* field, size_t n) {
  return {field, strnlen(field, n)};
}

void fill_span(const SpanRecord& r, pb_trace::Span* s) {
  s->mutable_trace_id()->assign(reinterpret_cast<const char*>(r.trace_id.data()),
                                r.trace_id.size());
  s->mutable_span_id()->assign(reinterpret_cast<const char*>(r.span_id.data()), r.span_id.size());
  const bool has_parent = !all_zero(r.parent_span_id);
  if (has_parent) {
    s->mutable_parent_span_id()->assign(reinterpret_cast<const char*>(r.parent_span_id.data()),
                                        r.parent_span_id.size());
  }
  if (r.has_threshold) {
    std::array<char, 24> ts{};
    const size_t n = core::tracing::format_tracestate(r.threshold, ts);
    if (n != 0) s->mutable_trace_state()->assign(ts.data(), n);
  }
  // trace.proto SpanFlags: the low byte is the W3C trace flags; bit 8 says whether bit 9 (the
  // parent is remote) is known. Only the root's parent — the sender's span — is remote.
  uint32_t flags = r.trace_flags | pb_trace::SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK;
  if (has_parent && r.stage == Stage::kReport) flags |= pb_trace::SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK;
  s->set_flags(flags);
  const std::string_view name = core::tracing::stage_name(r.stage);
  s->mutable_name()->assign(name.data(), name.size());
  s->set_kind(static_cast<pb_trace::Span_SpanKind>(r.kind));
  s->set_start_time_unix_nano(static_cast<uint64_t>(r.start_ns));
  s->set_end_time_unix_nano(static_cast<uint64_t>(r.end_ns));

  const std::string_view detail = text_of(r.detail, sizeof r.detail);
  if (r.status != core::tracing::SpanStatus::kUnset) {
    pb_trace::Status* st = s->mutable_status();
    st->set_code(static_cast<pb_trace::Status_StatusCode>(r.status));
    if (r.status == core::tracing::SpanStatus::kError && !detail.empty()) {
      st->mutable_message()->assign(detail.data(), detail.size());
    }
  }

  auto* attrs = s->mutable_attributes();
  // Ids are unsigned; OTLP has only int64, so a device id above 2^63 reads back negative.
  add_int(attrs, "tianhe.device.id", static_cast<int64_t>(r.device_id));
  add_int(attrs, "tianhe.report.seq", r.seq);
  add_int(attrs, "tianhe.tenant", r.tenant);
  add_int(attrs, "tianhe.shard", r.shard);
  if (r.count > 1) add_int(attrs, "tianhe.report.count", r.count);
  const std::string_view protocol = core::protocol_name(r.protocol);
  add_string(attrs, "tianhe.protocol", protocol);
  const std::string_view model = text_of(r.model, sizeof r.model);
  if (!model.empty()) add_string(attrs, "tianhe.model", model);
  const std::string_view sink = text_of(r.sink, sizeof r.sink);
  if (r.stage == Stage::kSink && !sink.empty()) add_string(attrs, "tianhe.sink", sink);
  if (!detail.empty()) add_string(attrs, "tianhe.reason", detail);

  if (r.stage == Stage::kReport) {
    add_string(attrs, "messaging.operation.type", "receive");
    const std::string_view transport = network_transport(protocol);
    if (!transport.empty()) add_string(attrs, "network.transport", transport);
    add_string(attrs, "network.protocol.name", protocol);
  } else if (r.stage == Stage::kSink) {
    const SinkSystem system = sink_system(sink);
    if (!system.key.empty()) add_string(attrs, system.key, system.value);
  }
}

}  // namespace

struct OtlpEncoder::Impl {
  ResourceInfo info;
  std::unique_ptr<char[]> block = std::make_unique<char[]>(kArenaBlockBytes);
};

OtlpEncoder::OtlpEncoder(ResourceInfo info) : impl_(std::make_unique<Impl>()) {
  impl_->info = std::move(info);
}

OtlpEncoder::~OtlpEncoder() = default;

void OtlpEncoder::encode(std::span<const SpanRecord> spans, std::string& out) noexcept {
  // One arena per batch over a kept first block: the messages are freed at once, and a batch
  // that fits the block needs no allocation for them (strings longer than the SSO still do).
  google::protobuf::ArenaOptions options;
  options.initial_block = impl_->block.get();
  options.initial_block_size = kArenaBlockBytes;
  google::protobuf::Arena arena(options);
  auto* request =
      google::protobuf::Arena::CreateMessage<pb_collector::ExportTraceServiceRequest>(&arena);
  pb_trace::ResourceSpans* rs = request->add_resource_spans();
  auto* resource_attrs = rs->mutable_resource()->mutable_attributes();
  add_string(resource_attrs, "service.name", "tianhe");
  add_string(resource_attrs, "service.instance.id", impl_->info.service_instance_id);
  if (!impl_->info.host_name.empty()) {
    add_string(resource_attrs, "host.name", impl_->info.host_name);
  }
  pb_trace::ScopeSpans* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("tianhe");
  ss->mutable_scope()->set_version(impl_->info.scope_version);
  ss->mutable_spans()->Reserve(static_cast<int>(spans.size()));
  for (const SpanRecord& r : spans) fill_span(r, ss->add_spans());
  out.clear();
  request->AppendToString(&out);
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
