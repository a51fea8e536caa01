// The encoder's tables, the response and Retry-After decoders, and the sampling arithmetic of
// core/tracing.h; the encoding itself is checked field by field by an independent decoder in
// otlp_exporter_test.cpp (python3-protobuf), and byte for byte here against the same request
// built with the generated classes of the official schema.
#include "control/otlp/otlp_encoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "core/report.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace tianhe::control::otlp {
namespace {

using core::tracing::SpanRecord;
namespace pb = opentelemetry::proto::collector::trace::v1;

TEST(TracingTest, StageNames) {
  using core::tracing::Stage;
  EXPECT_EQ(core::tracing::stage_name(Stage::kReport), "tianhe.report");
  EXPECT_EQ(core::tracing::stage_name(Stage::kDecode), "tianhe.decode");
  EXPECT_EQ(core::tracing::stage_name(Stage::kValidate), "tianhe.validate");
  EXPECT_EQ(core::tracing::stage_name(Stage::kAppend), "tianhe.log.append");
  EXPECT_EQ(core::tracing::stage_name(Stage::kDurable), "tianhe.log.durable");
  EXPECT_EQ(core::tracing::stage_name(Stage::kSink), "tianhe.sink");
}

TEST(TracingTest, ThresholdAndTracestate) {
  using core::tracing::format_tracestate;
  using core::tracing::kMaxThreshold;
  using core::tracing::threshold_for_rate;
  EXPECT_EQ(threshold_for_rate(1.0), 0u);
  EXPECT_EQ(threshold_for_rate(0.0), kMaxThreshold);
  EXPECT_EQ(threshold_for_rate(-1.0), kMaxThreshold);
  // OpenTelemetry probability sampling examples: 50 % is th:8, 25 % th:c, 1 % th:fd70a3d70a3d7.
  EXPECT_EQ(threshold_for_rate(0.5), uint64_t{0x80000000000000});
  char buf[32];
  auto ts = [&](uint64_t t) { return std::string(buf, format_tracestate(t, buf)); };
  EXPECT_EQ(ts(threshold_for_rate(0.5)), "ot=th:8");
  EXPECT_EQ(ts(threshold_for_rate(0.25)), "ot=th:c");
  EXPECT_EQ(ts(threshold_for_rate(0.01)), "ot=th:fd70a3d70a3d71");
  EXPECT_EQ(ts(0), "ot=th:0");
  EXPECT_EQ(ts(kMaxThreshold - 1), "ot=th:ffffffffffffff");
  EXPECT_EQ(format_tracestate(kMaxThreshold, buf), 0u);
  char small[8];
  EXPECT_EQ(format_tracestate(1, small), 0u);
}

TEST(TracingTest, TraceRandomnessIsTheLastSevenBytes) {
  std::array<uint8_t, 16> id{};
  for (size_t i = 0; i < 16; ++i) id[i] = static_cast<uint8_t>(i + 1);
  EXPECT_EQ(core::tracing::trace_randomness(id), uint64_t{0x0a0b0c0d0e0f10});
}

TEST(OtlpEncoderTest, SemanticConventionTables) {
  EXPECT_EQ(network_transport("report"), "udp");
  EXPECT_EQ(network_transport("mqtt_sn"), "udp");
  EXPECT_EQ(network_transport("lorawan"), "udp");
  EXPECT_EQ(network_transport("modbus"), "tcp");
  EXPECT_EQ(network_transport("mqtt"), "tcp");
  EXPECT_EQ(network_transport("unknown"), "");
  EXPECT_EQ(sink_system("postgres").key, "db.system.name");
  EXPECT_EQ(sink_system("postgres").value, "postgresql");
  EXPECT_EQ(sink_system("mysql").value, "mysql");
  EXPECT_EQ(sink_system("nats").key, "messaging.system");
  EXPECT_EQ(sink_system("redis_streams").value, "redis");
  EXPECT_EQ(sink_system("store").key, "");
}

TEST(OtlpEncoderTest, EmptyBatchIsAValidRequest) {
  OtlpEncoder enc({"id-1", "host", "1.2.3"});
  std::string out;
  enc.encode({}, out);
  pb::ExportTraceServiceRequest req;
  ASSERT_TRUE(req.ParseFromString(out));
  ASSERT_EQ(req.resource_spans_size(), 1);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size(), 0);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).scope().version(), "1.2.3");
}

namespace pbt = opentelemetry::proto::trace::v1;
namespace pbc = opentelemetry::proto::common::v1;
using core::tracing::SpanKind;
using core::tracing::SpanStatus;
using core::tracing::Stage;

void ref_string(google::protobuf::RepeatedPtrField<pbc::KeyValue>* attrs, std::string_view key,
                std::string_view value) {
  pbc::KeyValue* kv = attrs->Add();
  kv->set_key(std::string(key));
  kv->mutable_value()->set_string_value(std::string(value));
}

void ref_int(google::protobuf::RepeatedPtrField<pbc::KeyValue>* attrs, std::string_view key,
             int64_t value) {
  pbc::KeyValue* kv = attrs->Add();
  kv->set_key(std::string(key));
  kv->mutable_value()->set_int_value(value);
}

/// The request the encoder must write, built with the generated classes from what the
/// documentation of each field says (docs/observability.md, the semantic conventions).
std::string reference_request(const ResourceInfo& info, const std::vector<SpanRecord>& spans) {
  pb::ExportTraceServiceRequest req;
  pbt::ResourceSpans* rs = req.add_resource_spans();
  ref_string(rs->mutable_resource()->mutable_attributes(), "service.name", "tianhe");
  ref_string(rs->mutable_resource()->mutable_attributes(), "service.instance.id",
             info.service_instance_id);
  if (!info.host_name.empty()) {
    ref_string(rs->mutable_resource()->mutable_attributes(), "host.name", info.host_name);
  }
  pbt::ScopeSpans* ss = rs->add_scope_spans();
  ss->mutable_scope()->set_name("tianhe");
  ss->mutable_scope()->set_version(info.scope_version);
  for (const SpanRecord& r : spans) {
    pbt::Span* s = ss->add_spans();
    s->set_trace_id(std::string(reinterpret_cast<const char*>(r.trace_id.data()), 16));
    s->set_span_id(std::string(reinterpret_cast<const char*>(r.span_id.data()), 8));
    const bool root = std::all_of(r.parent_span_id.begin(), r.parent_span_id.end(),
                                  [](uint8_t b) { return b == 0; });
    if (!root) {
      s->set_parent_span_id(std::string(reinterpret_cast<const char*>(r.parent_span_id.data()), 8));
    }
    if (r.has_threshold) {
      std::array<char, 24> ts{};
      s->set_trace_state(std::string(ts.data(), core::tracing::format_tracestate(r.threshold, ts)));
    }
    uint32_t flags = r.trace_flags | pbt::SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK;
    if (!root && r.stage == Stage::kReport) flags |= pbt::SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK;
    s->set_flags(flags);
    s->set_name(std::string(core::tracing::stage_name(r.stage)));
    s->set_kind(static_cast<pbt::Span_SpanKind>(r.kind));
    s->set_start_time_unix_nano(static_cast<uint64_t>(r.start_ns));
    s->set_end_time_unix_nano(static_cast<uint64_t>(r.end_ns));
    const std::string detail(r.detail, strnlen(r.detail, sizeof r.detail));
    const std::string model(r.model, strnlen(r.model, sizeof r.model));
    const std::string sink(r.sink, strnlen(r.sink, sizeof r.sink));
    if (r.status != SpanStatus::kUnset) {
      s->mutable_status()->set_code(static_cast<pbt::Status_StatusCode>(r.status));
      if (r.status == SpanStatus::kError) s->mutable_status()->set_message(detail);
    }
    auto* a = s->mutable_attributes();
    ref_int(a, "tianhe.device.id", static_cast<int64_t>(r.device_id));
    ref_int(a, "tianhe.report.seq", r.seq);
    ref_int(a, "tianhe.tenant", r.tenant);
    ref_int(a, "tianhe.shard", r.shard);
    if (r.count > 1) ref_int(a, "tianhe.report.count", r.count);
    const std::string protocol(core::protocol_name(r.protocol));
    ref_string(a, "tianhe.protocol", protocol);
    if (!model.empty()) ref_string(a, "tianhe.model", model);
    if (r.stage == Stage::kSink && !sink.empty()) ref_string(a, "tianhe.sink", sink);
    if (!detail.empty()) ref_string(a, "tianhe.reason", detail);
    if (r.stage == Stage::kReport) {
      ref_string(a, "messaging.operation.type", "receive");
      if (!network_transport(protocol).empty()) {
        ref_string(a, "network.transport", network_transport(protocol));
      }
      ref_string(a, "network.protocol.name", protocol);
    } else if (r.stage == Stage::kSink && !sink_system(sink).key.empty()) {
      ref_string(a, sink_system(sink).key, sink_system(sink).value);
    }
  }
  return req.SerializeAsString();
}

TEST(OtlpEncoderTest, BytesEqualTheGeneratedClasses) {
  const std::vector<ResourceInfo> infos = {{"id-1", "host-a", "0.9"}, {"", "", ""}};
  std::vector<SpanRecord> spans;
  // Ids far from the registered ones: udp and tcp protocols, and one with no name.
  const core::Protocol protocols[] = {core::Protocol{250}, core::Protocol{251}, core::Protocol{252},
                                      core::Protocol::kUnknown};
  core::set_protocol_name(protocols[0], "report");
  core::set_protocol_name(protocols[1], "mqtt");
  core::set_protocol_name(protocols[2], "lorawan");
  const char* sinks[] = {"postgres", "nats", "store", ""};
  for (uint32_t i = 0; i < 96; ++i) {
    SpanRecord r;
    for (size_t b = 0; b < 16; ++b) r.trace_id[b] = static_cast<uint8_t>(i * 7 + b);
    for (size_t b = 0; b < 8; ++b) r.span_id[b] = static_cast<uint8_t>(i * 3 + b + 1);
    if (i % 3 != 0) r.parent_span_id[i % 8] = static_cast<uint8_t>(i + 1);
    r.start_ns = i % 11 == 0 ? 0 : 1'764'979'200'000'000'000 + i;
    r.end_ns = r.start_ns + i * 1000;
    r.device_id = i % 13 == 0 ? ~uint64_t{0} - i : i * 1'000'003;  // above 2^63: negative
    r.has_threshold = i % 4 == 0;
    r.threshold = i % 8 == 0 ? core::tracing::threshold_for_rate(0.01) : 0;
    r.seq = i % 5 == 0 ? 0xffffffffu - i : i;
    r.tenant = i % 6;
    r.count = i % 7 == 0 ? 32 : 1;
    r.shard = static_cast<uint16_t>(i % 3 == 0 ? 1000 : i % 2);
    r.stage = static_cast<Stage>(i % static_cast<uint32_t>(Stage::kCount));
    r.kind = static_cast<SpanKind>(i % 6);
    r.status = static_cast<SpanStatus>(i % 3);
    r.protocol = protocols[i % 4];
    r.trace_flags = static_cast<uint8_t>(i % 2);
    if (i % 2 == 0) core::tracing::set_text(r.model, i % 4 == 0 ? "env_sensor" : "m");
    core::tracing::set_text(r.sink, sinks[i % 4]);
    if (i % 5 != 1) core::tracing::set_text(r.detail, i % 10 == 0 ? "out_of_range" : "");
    if (i == 95) core::tracing::set_text(r.detail, std::string(200, 'x'));  // truncated to 47
    spans.push_back(r);
  }
  for (const ResourceInfo& info : infos) {
    OtlpEncoder enc(info);
    std::string out;
    for (size_t n : {size_t{0}, size_t{1}, size_t{17}, spans.size()}) {
      const std::vector<SpanRecord> part(spans.begin(), spans.begin() + static_cast<long>(n));
      enc.encode(part, out);
      EXPECT_EQ(out, reference_request(info, part)) << n << " spans";
    }
  }
}

TEST(OtlpEncoderTest, ReusedEncoderGivesEqualBytes) {
  OtlpEncoder enc({"id-1", "host", "1"});
  std::vector<SpanRecord> spans(300);
  for (size_t i = 0; i < spans.size(); ++i) spans[i].seq = static_cast<uint32_t>(i);
  std::string a;
  std::string b;
  enc.encode(spans, a);
  enc.encode(std::span<const SpanRecord>(spans).first(10), b);
  enc.encode(spans, b);
  EXPECT_EQ(a, b);
}

// A batch given in two parts (the exporter's queue wrapping) encodes as the same batch whole.
TEST(OtlpEncoderTest, TwoPartsEqualTheWholeBatch) {
  OtlpEncoder enc({"id-1", "host", "1"});
  std::vector<SpanRecord> spans(50);
  for (size_t i = 0; i < spans.size(); ++i) {
    spans[i].seq = static_cast<uint32_t>(i);
    spans[i].device_id = i * 1'000'003;
  }
  std::string whole;
  enc.encode(spans, whole);
  const std::span<const SpanRecord> all(spans);
  for (size_t cut : {size_t{0}, size_t{1}, size_t{23}, spans.size()}) {
    EXPECT_EQ(enc.encode(all.first(cut), all.subspan(cut)), whole) << cut;
  }
}

TEST(OtlpResponseTest, PartialSuccessAndErrors) {
  ExportResponse r;
  EXPECT_EQ(parse_export_response({}, r), ResponseStatus::kOk);
  EXPECT_EQ(r.rejected_spans, 0u);
  pb::ExportTraceServiceResponse resp;
  resp.mutable_partial_success()->set_rejected_spans(7);
  resp.mutable_partial_success()->set_error_message("too old");
  const std::string bytes = resp.SerializeAsString();
  auto as_span = [](const std::string& s) {
    return std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  ASSERT_EQ(parse_export_response(as_span(bytes), r), ResponseStatus::kOk);
  EXPECT_EQ(r.rejected_spans, 7u);
  EXPECT_EQ(r.error_message, "too old");
  resp.mutable_partial_success()->set_rejected_spans(-5);
  ASSERT_EQ(parse_export_response(as_span(resp.SerializeAsString()), r), ResponseStatus::kOk);
  EXPECT_EQ(r.rejected_spans, 0u);
  EXPECT_EQ(parse_export_response(as_span("\xff\xff\xff"), r), ResponseStatus::kMalformed);
  EXPECT_EQ(parse_export_response(as_span(std::string(kMaxResponseBytes + 1, '\0')), r),
            ResponseStatus::kTooLarge);
}

TEST(OtlpResponseTest, RetryAfter) {
  constexpr int64_t kNow = 1'445'412'480;  // Wed, 21 Oct 2015 07:28:00 GMT
  EXPECT_EQ(parse_retry_after("120", kNow), std::chrono::seconds(120));
  EXPECT_EQ(parse_retry_after(" 0 \r\n", kNow), std::chrono::seconds(0));
  EXPECT_EQ(parse_retry_after("999999999999", kNow), std::chrono::seconds(86400));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", kNow), std::chrono::seconds(30));
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", kNow), std::chrono::seconds(0));
  EXPECT_EQ(parse_retry_after("", kNow), std::nullopt);
  EXPECT_EQ(parse_retry_after("-1", kNow), std::nullopt);
  EXPECT_EQ(parse_retry_after("soon", kNow), std::nullopt);
}

}  // namespace
}  // namespace tianhe::control::otlp
