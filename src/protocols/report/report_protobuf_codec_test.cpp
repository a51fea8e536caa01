// The report_protobuf codec: a Report message as a payload becomes the report's metrics; a
// malformed one leaves the batch as it was; the registered codec is the same.
#include "protocols/report/report_protobuf_codec.h"

#include <gtest/gtest.h>

#include "protocols/report/report_encoder.h"
#include "runtime/extensions.h"

namespace tianhe::protocols::report {
namespace {

// One Report message, cut out of the Envelope the encoder writes.
std::vector<uint8_t> report_message(uint32_t seq) {
  std::vector<uint8_t> buf(512);
  EnvelopeEncoder enc(buf);
  MetricIn m[2];
  m[0].name = "temperature";
  m[0].value.f64 = 21.5;
  m[1].name = "battery_mv";
  m[1].value.type = core::ValueType::kInt64;
  m[1].value.i64 = 3300;
  EXPECT_TRUE(enc.add_report(42, seq, 1'700'000'000'000'000'000, false, m));
  const auto env = enc.bytes();
  // Envelope: version (08 01), then field 2 (tag 0x12), a varint length, the Report message.
  EXPECT_EQ(env[0], 0x08);
  size_t i = 2;
  EXPECT_EQ(env[i++], 0x12);
  size_t len = 0, shift = 0;
  for (; env[i] & 0x80; ++i, shift += 7) len |= static_cast<size_t>(env[i] & 0x7f) << shift;
  len |= static_cast<size_t>(env[i]) << shift;
  ++i;
  return {env.begin() + static_cast<std::ptrdiff_t>(i),
          env.begin() + static_cast<std::ptrdiff_t>(i + len)};
}

TEST(ReportProtobufCodec, DecodesMetricsSeqAndTime) {
  const auto payload = report_message(7);
  core::ReportBatch batch(4, 16);
  core::Report* r = batch.add_report();
  ReportProtobufCodec codec;
  ASSERT_EQ(codec.decode(payload, {.device_id = 42}, batch, *r), pipeline::DecodeStatus::kOk);
  EXPECT_EQ(r->seq, 7u);
  EXPECT_EQ(r->device_id, 42u);
  EXPECT_EQ(r->device_time_ns, 1'700'000'000'000'000'000);
  const auto metrics = batch.metrics(*r);
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_EQ(metrics[0].name, "temperature");
  EXPECT_EQ(metrics[0].value.f64, 21.5);
  EXPECT_EQ(metrics[1].value.i64, 3300);
}

TEST(ReportProtobufCodec, AMalformedPayloadAppendsNothing) {
  auto payload = report_message(7);
  payload.resize(payload.size() - 3);  // cut inside the last metric
  core::ReportBatch batch(4, 16);
  core::Report* r = batch.add_report();
  r->seq = 99;
  const uint32_t free_before = batch.metrics_free();
  ReportProtobufCodec codec;
  EXPECT_EQ(codec.decode(payload, {.device_id = 42}, batch, *r),
            pipeline::DecodeStatus::kMalformed);
  EXPECT_EQ(batch.metrics_free(), free_before);
  EXPECT_EQ(r->metric_count, 0u);
  EXPECT_EQ(r->seq, 99u);
}

TEST(ReportProtobufCodec, MoreMetricsThanTheBatchHoldsIsCountedNotTruncated) {
  const auto payload = report_message(1);
  core::ReportBatch batch(1, 1);
  core::Report* r = batch.add_report();
  ReportProtobufCodec codec;
  EXPECT_EQ(codec.decode(payload, {}, batch, *r), pipeline::DecodeStatus::kTooManyMetrics);
  EXPECT_EQ(batch.metrics_free(), 1u);
}

TEST(ReportProtobufCodec, IsRegistered) {
  const runtime::CodecSpec* spec = runtime::builtin_extensions().codec("report");
  ASSERT_NE(spec, nullptr);
  auto codec = spec->create();
  const auto payload = report_message(3);
  core::ReportBatch batch(1, 4);
  core::Report* r = batch.add_report();
  EXPECT_EQ(codec->decode(payload, {.device_id = 42}, batch, *r), pipeline::DecodeStatus::kOk);
  EXPECT_EQ(r->seq, 3u);
}

}  // namespace
}  // namespace tianhe::protocols::report
