#include "protocols/report/report_encoder.h"

#include <gtest/gtest.h>

#include <array>
#include <limits>
#include <string>
#include <vector>

#include "protocols/report/report_test_bytes.h"

namespace tianhe::protocols::report {
namespace {

using testing::Bytes;

core::Value flag(bool x) {
  core::Value v;
  v.type = core::ValueType::kBool;
  v.b = x;
  return v;
}

TEST(EnvelopeEncoder, RefusesWhatDoesNotFitAndLeavesBytesUnchanged) {
  const MetricIn m{"door", 0, flag(true)};
  const size_t one = EnvelopeEncoder::report_bytes(7, 1, 0, true, {&m, 1});
  std::vector<uint8_t> buf(2 + one + one - 1);
  EnvelopeEncoder enc(buf);
  EXPECT_EQ(enc.size(), 2u);  // the version field
  ASSERT_TRUE(enc.add_report(7, 1, 0, true, {&m, 1}));
  EXPECT_EQ(enc.size(), 2 + one);
  const std::vector<uint8_t> before(enc.bytes().begin(), enc.bytes().end());
  EXPECT_FALSE(enc.add_report(7, 2, 0, true, {&m, 1}));
  EXPECT_EQ(enc.size(), 2 + one);
  EXPECT_EQ(enc.report_count(), 1u);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), enc.bytes().begin()));
  enc.reset();
  EXPECT_EQ(enc.size(), 2u);
  EXPECT_EQ(enc.report_count(), 0u);

  std::array<uint8_t, 1> tiny{};
  EnvelopeEncoder none(tiny);
  EXPECT_EQ(none.size(), 0u);
  EXPECT_FALSE(none.add_report(7, 1, 0, false, {}));
}

TEST(EnvelopeEncoder, WritesProto3DefaultsAsAbsent) {
  std::array<uint8_t, 64> buf{};
  EnvelopeEncoder enc(buf);
  ASSERT_TRUE(enc.add_report(1, 0, 0, false, {}));
  // version=1, then reports (field 2) holding only device_id=1.
  const std::vector<uint8_t> want = {0x08, 0x01, 0x12, 0x02, 0x08, 0x01};
  EXPECT_EQ(std::vector<uint8_t>(enc.bytes().begin(), enc.bytes().end()), want);
}

TEST(Ack, RoundTripsEveryStatus) {
  const std::array<AckEntry, 4> acks = {
      AckEntry{1, 1, AckStatus::kOk, {}},
      AckEntry{std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint32_t>::max(),
               AckStatus::kRejected, "unknown_device"},
      AckEntry{42, 0, AckStatus::kBusy, {}},
      AckEntry{0, 0, AckStatus::kOk, {}},  // all defaults: an empty entry
  };
  std::array<uint8_t, 256> buf{};
  const size_t n = encode_ack(acks, buf);
  ASSERT_GT(n, 0u);
  EXPECT_EQ(n, ack_bytes(acks));
  size_t bound = 0;
  for (const AckEntry& a : acks) bound += max_ack_entry_bytes(a.reason.size());
  EXPECT_LE(n, bound);

  std::array<AckEntry, 4> out{};
  size_t count = 99;
  ASSERT_EQ(decode_ack({buf.data(), n}, out, count), ParseStatus::kComplete);
  ASSERT_EQ(count, 4u);
  for (size_t i = 0; i < count; ++i) {
    EXPECT_EQ(out[i].device_id, acks[i].device_id) << i;
    EXPECT_EQ(out[i].seq, acks[i].seq) << i;
    EXPECT_EQ(out[i].status, acks[i].status) << i;
    EXPECT_EQ(out[i].reason, acks[i].reason) << i;
  }
}

TEST(Ack, MaxEntryBytesBoundsTheWorstCase) {
  const std::string reason(300, 'r');  // a two-byte length prefix
  const AckEntry worst{std::numeric_limits<uint64_t>::max(), std::numeric_limits<uint32_t>::max(),
                       AckStatus::kBusy, reason};
  EXPECT_EQ(ack_bytes({&worst, 1}), max_ack_entry_bytes(reason.size()));
  std::vector<uint8_t> buf(max_ack_entry_bytes(reason.size()));
  EXPECT_EQ(encode_ack({&worst, 1}, buf), buf.size());
  buf.pop_back();
  EXPECT_EQ(encode_ack({&worst, 1}, buf), 0u);
  EXPECT_EQ(encode_ack({}, buf), 0u);
}

TEST(Ack, DecodeIsStrictAndBounded) {
  std::array<AckEntry, 2> out{};
  size_t count = 7;
  auto decode = [&](const Bytes& b) { return decode_ack(b.vec(), out, count); };
  Bytes entry;
  entry.u(1, 5).u(2, 6).u(3, 1).str(4, "bad");

  EXPECT_EQ(decode(Bytes{}), ParseStatus::kMalformed);
  EXPECT_EQ(count, 0u);
  const Bytes one = Bytes{}.msg(1, entry);  // outlives the reason views decoded from it
  EXPECT_EQ(decode(one), ParseStatus::kComplete);
  EXPECT_EQ(count, 1u);
  EXPECT_EQ(out[0].reason, "bad");
  EXPECT_EQ(decode(Bytes{}.msg(1, entry).msg(1, entry).msg(1, entry)), ParseStatus::kBatchFull);
  EXPECT_EQ(count, 0u);
  EXPECT_EQ(decode(Bytes{}.msg(1, entry).u(2, 1)), ParseStatus::kMalformed);    // unknown field
  EXPECT_EQ(decode(Bytes{}.u(1, 1)), ParseStatus::kMalformed);                  // wire type
  EXPECT_EQ(decode(Bytes{}.msg(1, Bytes{}.u(3, 3))), ParseStatus::kMalformed);  // status 3
  EXPECT_EQ(decode(Bytes{}.msg(1, Bytes{}.u(2, 1ull << 32))), ParseStatus::kMalformed);
  EXPECT_EQ(decode(Bytes{}.msg(1, Bytes{}.str(4, "\xFF"))), ParseStatus::kMalformed);
  EXPECT_EQ(decode(Bytes{}.msg(1, Bytes{}.u(5, 0))), ParseStatus::kMalformed);
  EXPECT_EQ(decode(Bytes{}.msg(1, Bytes{}.str(1, "x"))), ParseStatus::kMalformed);

  // Every strict prefix of a valid ack either ends between entries or is malformed.
  Bytes two;
  two.msg(1, entry).msg(1, entry);
  const std::vector<uint8_t>& full = two.vec();
  const size_t first = full.size() / 2;
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
    const ParseStatus s = decode_ack(cut, out, count);
    if (n == first) {
      EXPECT_EQ(s, ParseStatus::kComplete);
      EXPECT_EQ(count, 1u);
    } else {
      EXPECT_EQ(s, ParseStatus::kMalformed) << n;
      EXPECT_EQ(count, 0u);
    }
  }
}

}  // namespace
}  // namespace tianhe::protocols::report
