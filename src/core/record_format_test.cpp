#include "core/record_format.h"

#include <gtest/gtest.h>

#include <vector>

namespace tianhe::core {
namespace {

void fill(ReportBatch& b) {
  Report* r = b.add_report();
  r->device_id = 42;
  r->seq = 7;
  r->tenant = 1;
  r->device_time_ns = 1'700'000'000'000'000'000;
  r->received_ns = 1'700'000'000'000'000'123;
  r->ack_requested = true;
  r->trace.present = true;
  r->trace.trace_id[0] = 0xAB;
  r->trace.span_id[7] = 0xCD;
  r->trace.flags = 1;
  Metric* m = b.add_metric(*r);
  m->name = "temperature";
  m->value.type = ValueType::kDouble;
  m->value.f64 = 21.5;
  m = b.add_metric(*r);
  m->id = 9;
  m->value.type = ValueType::kInt64;
  m->value.i64 = -5;
  m = b.add_metric(*r);
  m->name = "door";
  m->value.type = ValueType::kBool;
  m->value.b = true;
  m = b.add_metric(*r);
  m->name = "fw";
  m->value.type = ValueType::kString;
  m->value.str = "1.2.3";
  Report* r2 = b.add_report();
  r2->device_id = 43;
  r2->protocol = static_cast<Protocol>(2);
}

std::vector<uint8_t> encode(const ReportBatch& b) {
  std::vector<uint8_t> out(3);
  EXPECT_EQ(encode_payload_header(static_cast<uint16_t>(b.size()), out), 3u);
  for (const Report& r : b) {
    size_t n = encoded_report_size(b, r);
    size_t at = out.size();
    out.resize(at + n);
    EXPECT_EQ(encode_report(b, r, std::span<uint8_t>(out).subspan(at)), n);
  }
  return out;
}

TEST(ReportCodec, RoundTrip) {
  ReportBatch in(8, 64);
  fill(in);
  auto bytes = encode(in);
  ReportBatch out(8, 64);
  ASSERT_EQ(decode_payload(bytes, out), RecordStatus::kOk);
  ASSERT_EQ(out.size(), 2u);
  const Report& r = out[0];
  EXPECT_EQ(r.device_id, 42u);
  EXPECT_EQ(r.seq, 7u);
  EXPECT_EQ(r.tenant, 1u);
  EXPECT_TRUE(r.ack_requested);
  EXPECT_TRUE(r.trace.present);
  EXPECT_EQ(r.trace.trace_id[0], 0xAB);
  EXPECT_EQ(r.trace.span_id[7], 0xCD);
  auto ms = out.metrics(r);
  ASSERT_EQ(ms.size(), 4u);
  EXPECT_EQ(ms[0].name, "temperature");
  EXPECT_DOUBLE_EQ(ms[0].value.f64, 21.5);
  EXPECT_TRUE(ms[1].name.empty());
  EXPECT_EQ(ms[1].id, 9u);
  EXPECT_EQ(ms[1].value.i64, -5);
  EXPECT_TRUE(ms[2].value.b);
  EXPECT_EQ(ms[3].value.str, "1.2.3");
  EXPECT_EQ(out[1].protocol, static_cast<Protocol>(2));
  EXPECT_EQ(out[1].metric_count, 0u);

  // The raw metrics section decodes on its own (the store keeps it as a blob).
  ReportBatch again(1, 8);
  Report* x = again.add_report();
  ASSERT_EQ(decode_metrics(r.raw_metrics, again, *x), RecordStatus::kOk);
  EXPECT_EQ(x->metric_count, 4u);
}

TEST(ReportCodec, EveryTruncationIsMalformedAndLeavesBatchUnchanged) {
  ReportBatch in(8, 64);
  fill(in);
  auto bytes = encode(in);
  for (size_t n = 0; n < bytes.size(); ++n) {
    ReportBatch out(8, 64);
    EXPECT_EQ(decode_payload(std::span<const uint8_t>(bytes.data(), n), out),
              RecordStatus::kMalformed)
        << "length " << n;
    EXPECT_EQ(out.size(), 0u);
  }
}

TEST(ReportCodec, FullBatchIsReportedNotTruncated) {
  ReportBatch in(8, 64);
  fill(in);
  auto bytes = encode(in);
  ReportBatch out(1, 64);
  EXPECT_EQ(decode_payload(bytes, out), RecordStatus::kBatchFull);
  EXPECT_EQ(out.size(), 0u);
}

TEST(ReportCodec, EncodeRefusesWhatDoesNotFit) {
  ReportBatch in(8, 64);
  fill(in);
  std::vector<uint8_t> small(10);
  EXPECT_EQ(encode_report(in, in[0], small), 0u);
}

}  // namespace
}  // namespace tianhe::core
