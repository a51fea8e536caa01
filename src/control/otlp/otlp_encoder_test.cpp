// The encoder's tables, the response and Retry-After decoders, and the sampling arithmetic of
// core/tracing.h; the encoding itself is checked field by field by an independent decoder in
// otlp_exporter_test.cpp (python3-protobuf).
#include "control/otlp/otlp_encoder.h"

#include <gtest/gtest.h>

#include <string>

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
