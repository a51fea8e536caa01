// The raw codec: hex and size of any payload, limits, all-or-nothing, text reused after
// batch_done(), no allocation in steady state, and its registration.
#include "codecs/raw/raw_codec.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "runtime/alloc_counter.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::raw {
namespace {

using pipeline::DecodeStatus;

// Whether this build counts allocations (runtime/alloc_counter.cpp stands down under the
// sanitizers, which bring their own operator new): the release build runs the check.
bool counting_allocations() {
  const uint64_t before = runtime::thread_allocations();
  void* p = ::operator new(16);
  ::operator delete(p);
  return runtime::thread_allocations() != before;
}

TEST(RawCodec, StoresThePayloadAsLowerCaseHexAndItsSize) {
  RawCodec codec;
  core::ReportBatch batch(2, 8);
  core::Report* r = batch.add_report();
  const std::vector<uint8_t> payload = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  ASSERT_EQ(codec.decode(payload, {}, batch, *r), DecodeStatus::kOk);
  const auto ms = batch.metrics(*r);
  ASSERT_EQ(ms.size(), 2u);
  EXPECT_EQ(ms[0].name, "payload");
  EXPECT_EQ(ms[0].value.type, core::ValueType::kString);
  EXPECT_EQ(ms[0].value.str, "00017f80abff");
  EXPECT_EQ(ms[1].name, "payload_bytes");
  EXPECT_EQ(ms[1].value.type, core::ValueType::kInt64);
  EXPECT_EQ(ms[1].value.i64, 6);
  // Every byte value.
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  core::Report* r2 = batch.add_report();
  ASSERT_EQ(codec.decode(all, {}, batch, *r2), DecodeStatus::kOk);
  const std::string_view hex = batch.metrics(*r2)[0].value.str;
  ASSERT_EQ(hex.size(), 512u);
  for (int i = 0; i < 256; ++i) {
    char want[3];
    std::snprintf(want, sizeof want, "%02x", i);
    EXPECT_EQ(hex.substr(2 * i, 2), want);
  }
}

TEST(RawCodec, AnEmptyPayloadIsAnEmptyString) {
  RawCodec codec;
  core::ReportBatch batch(1, 2);
  core::Report* r = batch.add_report();
  ASSERT_EQ(codec.decode({}, {}, batch, *r), DecodeStatus::kOk);
  EXPECT_EQ(batch.metrics(*r)[0].value.str, "");
  EXPECT_EQ(batch.metrics(*r)[1].value.i64, 0);
}

TEST(RawCodec, LimitsAreCountedAndNothingIsAppended) {
  RawCodecLimits limits;
  limits.max_payload_bytes = 8;
  limits.text_bytes = 20;
  RawCodec codec(limits);
  core::ReportBatch batch(4, 8);
  const std::vector<uint8_t> nine(9, 1);
  const std::vector<uint8_t> eight(8, 1);
  core::Report* r = batch.add_report();
  EXPECT_EQ(codec.decode(nine, {}, batch, *r), DecodeStatus::kTooLarge);
  EXPECT_EQ(r->metric_count, 0u);
  ASSERT_EQ(codec.decode(eight, {}, batch, *r), DecodeStatus::kOk);  // 16 of 20 bytes
  core::Report* r2 = batch.add_report();
  EXPECT_EQ(codec.decode(eight, {}, batch, *r2), DecodeStatus::kTooLarge);
  EXPECT_EQ(codec.text_used(), 16u);
  codec.batch_done();
  EXPECT_EQ(codec.decode(eight, {}, batch, *r2), DecodeStatus::kOk);

  codec.batch_done();
  core::ReportBatch one(1, 1);
  core::Report* r3 = one.add_report();
  EXPECT_EQ(codec.decode(eight, {}, one, *r3), DecodeStatus::kTooManyMetrics);
  EXPECT_EQ(one.metrics_free(), 1u);
}

TEST(RawCodec, SteadyStateAllocatesNothing) {
  if (!counting_allocations()) GTEST_SKIP() << "allocations are not counted in this build";
  RawCodec codec;
  core::ReportBatch batch(64, 128);
  const std::vector<uint8_t> payload(51, 0xA5);
  const uint64_t start = runtime::thread_allocations();
  for (int round = 0; round < 4; ++round) {
    batch.clear();
    for (int i = 0; i < 64; ++i) {
      core::Report* r = batch.add_report();
      ASSERT_EQ(codec.decode(payload, {}, batch, *r), DecodeStatus::kOk);
    }
    codec.batch_done();
  }
  EXPECT_EQ(runtime::thread_allocations(), start);
}

TEST(RawCodec, IsRegistered) {
  const runtime::CodecSpec* spec = runtime::builtin_extensions().codec("raw");
  ASSERT_NE(spec, nullptr);
  auto codec = spec->create();
  core::ReportBatch batch(1, 2);
  core::Report* r = batch.add_report();
  const std::vector<uint8_t> payload = {0xde, 0xad};
  EXPECT_EQ(codec->decode(payload, {}, batch, *r), DecodeStatus::kOk);
  EXPECT_EQ(batch.metrics(*r)[0].value.str, "dead");
}

}  // namespace
}  // namespace tianhe::codecs::raw
