#include "protocols/report/report_parser.h"

#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "protocols/report/report_encoder.h"
#include "protocols/report/report_test_bytes.h"

namespace tianhe::protocols::report {
namespace {

using testing::Bytes;
using testing::envelope;
using testing::flag_metric;
using testing::simple_report;

constexpr std::string_view kTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

core::Value f64(double x) {
  core::Value v;
  v.type = core::ValueType::kDouble;
  v.f64 = x;
  return v;
}
core::Value i64(int64_t x) {
  core::Value v;
  v.type = core::ValueType::kInt64;
  v.i64 = x;
  return v;
}
core::Value flag(bool x) {
  core::Value v;
  v.type = core::ValueType::kBool;
  v.b = x;
  return v;
}
core::Value text(std::string_view s) {
  core::Value v;
  v.type = core::ValueType::kString;
  v.str = s;
  return v;
}

ParseResult parse(std::span<const uint8_t> bytes, core::ReportBatch& out,
                  const ParserLimits& limits = {}) {
  return parse_datagram(bytes, 3, 1000, limits, out);
}

ParseResult parse(const Bytes& b, core::ReportBatch& out, const ParserLimits& limits = {}) {
  return parse(std::span<const uint8_t>(b.vec()), out, limits);
}

TEST(ReportParser, RoundTripsEveryFieldAndValueType) {
  std::array<uint8_t, 1024> buf{};
  EnvelopeEncoder enc(buf);
  const std::array<MetricIn, 4> m1 = {
      MetricIn{"temperature", 0, f64(-21.25)},
      MetricIn{{}, 42, i64(std::numeric_limits<int64_t>::min())},
      MetricIn{"door", 0, flag(true)},
      MetricIn{"fw", 0, text("1.2.3-\xC3\xA9")},
  };
  const std::array<MetricIn, 2> m2 = {
      MetricIn{{}, 0, i64(-1)},  // metric id 0 is a legal id
      MetricIn{"empty", 0, text("")},
  };
  ASSERT_TRUE(enc.add_report(0xFFFF'FFFF'FFFF'FFFFull, 0xFFFF'FFFFu, -5, true, m1, kTraceparent));
  ASSERT_TRUE(enc.add_report(1, 0, 1'700'000'000'123'456'789, false, m2));
  EXPECT_EQ(enc.report_count(), 2u);

  core::ReportBatch batch(8, 64);
  const ParseResult r = parse(enc.bytes(), batch);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
  EXPECT_EQ(r.reason, DropReason::kNone);
  EXPECT_EQ(r.reports, 2u);
  EXPECT_EQ(r.bad_traceparents, 0u);
  ASSERT_EQ(batch.size(), 2u);

  const core::Report& a = batch[0];
  EXPECT_EQ(a.device_id, 0xFFFF'FFFF'FFFF'FFFFull);
  EXPECT_EQ(a.seq, 0xFFFF'FFFFu);
  EXPECT_EQ(a.device_time_ns, -5);
  EXPECT_EQ(a.received_ns, 1000);
  EXPECT_EQ(a.peer, 3u);
  EXPECT_EQ(a.protocol, kProtocolId);
  EXPECT_TRUE(a.ack_requested);
  ASSERT_TRUE(a.trace.present);
  EXPECT_EQ(a.trace.trace_id[0], 0x0A);
  EXPECT_EQ(a.trace.trace_id[15], 0x9C);
  EXPECT_EQ(a.trace.span_id[0], 0xB7);
  EXPECT_EQ(a.trace.span_id[7], 0x31);
  EXPECT_EQ(a.trace.flags, 1);
  auto ma = batch.metrics(a);
  ASSERT_EQ(ma.size(), 4u);
  EXPECT_EQ(ma[0].name, "temperature");
  EXPECT_EQ(ma[0].value.type, core::ValueType::kDouble);
  EXPECT_EQ(ma[0].value.f64, -21.25);
  EXPECT_TRUE(ma[1].name.empty());
  EXPECT_EQ(ma[1].id, 42u);
  EXPECT_EQ(ma[1].value.type, core::ValueType::kInt64);
  EXPECT_EQ(ma[1].value.i64, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(ma[2].name, "door");
  EXPECT_EQ(ma[2].value.type, core::ValueType::kBool);
  EXPECT_TRUE(ma[2].value.b);
  EXPECT_EQ(ma[3].value.type, core::ValueType::kString);
  EXPECT_EQ(ma[3].value.str, "1.2.3-\xC3\xA9");
  // Names and strings are views into the datagram, not copies.
  const auto* lo = reinterpret_cast<const char*>(enc.bytes().data());
  EXPECT_GE(ma[0].name.data(), lo);
  EXPECT_LT(ma[0].name.data(), lo + enc.size());

  const core::Report& b = batch[1];
  EXPECT_EQ(b.device_id, 1u);
  EXPECT_EQ(b.seq, 0u);
  EXPECT_EQ(b.device_time_ns, 1'700'000'000'123'456'789);
  EXPECT_FALSE(b.ack_requested);
  EXPECT_FALSE(b.trace.present);
  auto mb = batch.metrics(b);
  ASSERT_EQ(mb.size(), 2u);
  EXPECT_EQ(mb[0].id, 0u);
  EXPECT_EQ(mb[0].value.i64, -1);
  EXPECT_EQ(mb[1].name, "empty");
  EXPECT_EQ(mb[1].value.type, core::ValueType::kString);
  EXPECT_TRUE(mb[1].value.str.empty());
}

TEST(ReportParser, DoubleKeepsEveryBitPattern) {
  for (double x : {0.0, -0.0, std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::max(),
                   std::numeric_limits<double>::quiet_NaN()}) {
    std::array<uint8_t, 64> buf{};
    EnvelopeEncoder enc(buf);
    const MetricIn m{"x", 0, f64(x)};
    ASSERT_TRUE(enc.add_report(9, 1, 1, false, {&m, 1}));
    core::ReportBatch batch(1, 1);
    ASSERT_EQ(parse(enc.bytes(), batch).status, ParseStatus::kComplete);
    EXPECT_EQ(std::bit_cast<uint64_t>(batch.metrics(batch[0])[0].value.f64),
              std::bit_cast<uint64_t>(x));
  }
}

TEST(ReportParser, AppendsAfterExistingReportsAndVersionZeroIsAccepted) {
  core::ReportBatch batch(4, 8);
  ASSERT_EQ(parse(envelope(simple_report(5)), batch).status, ParseStatus::kComplete);
  Bytes v0;  // version absent (0)
  v0.msg(2, simple_report(6));
  ASSERT_EQ(parse(v0, batch).status, ParseStatus::kComplete);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].device_id, 5u);
  EXPECT_EQ(batch[1].device_id, 6u);
  EXPECT_EQ(batch[1].metric_begin, 1u);
  EXPECT_EQ(batch.metrics(batch[1])[0].name, "door");
}

TEST(ReportParser, ReservedAuthFieldsAreParsedAndIgnored) {
  Bytes e;
  e.u(1, 1).u(14, 77).str(15, std::string(32, '\xAB')).msg(2, simple_report());
  core::ReportBatch batch(4, 8);
  const ParseResult r = parse(e, batch);
  EXPECT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.reports, 1u);
  Bytes bad;
  bad.u(1, 1).str(14, "x").msg(2, simple_report());  // key_id must be a varint
  EXPECT_EQ(parse(bad, batch).reason, DropReason::kBadWireType);
}

TEST(ReportParser, LastScalarWins) {
  Bytes m;
  m.str(1, "first").str(1, "second").u(5, 0).u(5, 7);  // same oneof member twice: last wins
  Bytes r;
  r.u(1, 1).u(2, 10).u(1, 99).u(2, 11).u(6, 1).u(6, 0).msg(4, m);
  r.str(5, "not a traceparent").str(5, kTraceparent);
  Bytes e;
  e.u(1, 9).u(1, 1).msg(2, r);  // version 9 then 1: the envelope is version 1
  core::ReportBatch batch(4, 8);
  const ParseResult res = parse(e, batch);
  ASSERT_EQ(res.status, ParseStatus::kComplete) << drop_reason_name(res.reason);
  EXPECT_EQ(res.bad_traceparents, 0u);
  EXPECT_EQ(batch[0].device_id, 99u);
  EXPECT_EQ(batch[0].seq, 11u);
  EXPECT_FALSE(batch[0].ack_requested);
  EXPECT_TRUE(batch[0].trace.present);
  EXPECT_EQ(batch.metrics(batch[0])[0].name, "second");
  EXPECT_TRUE(batch.metrics(batch[0])[0].value.b);
}

// A datagram cut short is malformed, except where the cut falls exactly between two top-level
// fields: the prefix is then itself a valid, shorter envelope (protobuf has no end marker; the
// UDP transport detects truncated datagrams with MSG_TRUNC).
TEST(ReportParser, EveryTruncationIsMalformedOrAShorterValidEnvelope) {
  std::array<uint8_t, 2048> buf{};
  EnvelopeEncoder enc(buf);
  std::set<size_t> boundaries = {enc.size()};
  const std::array<MetricIn, 5> ms = {
      MetricIn{"temperature", 0, f64(3.5)}, MetricIn{{}, 300, i64(-123456789)},
      MetricIn{"on", 0, flag(false)}, MetricIn{"state", 0, text("running")},
      MetricIn{{}, 0, f64(1e300)}};
  for (uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(enc.add_report(1000 + i, i + 1, -1, i % 2 == 0, ms, i == 1 ? kTraceparent : ""));
    boundaries.insert(enc.size());
  }
  const std::vector<uint8_t> full(enc.bytes().begin(), enc.bytes().end());
  for (size_t n = 0; n < full.size(); ++n) {
    core::ReportBatch batch(8, 64);
    ASSERT_EQ(parse(envelope(simple_report(1)), batch).status, ParseStatus::kComplete);
    // Exact-size heap copy: ASan flags any read past the cut.
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
    const ParseResult r = parse(cut, batch);
    if (boundaries.count(n) != 0 && n > 2) {
      EXPECT_EQ(r.status, ParseStatus::kComplete) << n;
      EXPECT_EQ(batch.size(), 1 + r.reports);
      continue;
    }
    EXPECT_EQ(r.status, ParseStatus::kMalformed) << "cut at " << n;
    EXPECT_EQ(r.reports, 0u);
    ASSERT_EQ(batch.size(), 1u) << "cut at " << n;
    EXPECT_EQ(batch.metrics_free(), 63u);
    EXPECT_EQ(batch[0].device_id, 1u);
    if (n == 0) {
      EXPECT_EQ(r.reason, DropReason::kEmpty);
    } else if (n == 2) {
      EXPECT_EQ(r.reason, DropReason::kNoReports);
    } else {
      EXPECT_NE(r.reason, DropReason::kNone);
    }
  }
}

struct DropCase {
  const char* what;
  Bytes bytes;
  DropReason reason;
  ParserLimits limits = {};
};

std::vector<DropCase> drop_cases() {
  std::vector<DropCase> cases;
  auto with_metric = [](const Bytes& m) {
    Bytes r;
    r.u(1, 7).msg(4, m);
    return envelope(r);
  };
  cases.push_back({"empty", Bytes{}, DropReason::kEmpty});
  {
    ParserLimits l;
    l.max_datagram_bytes = 8;
    cases.push_back({"oversized", envelope(simple_report()), DropReason::kOversized, l});
  }
  cases.push_back({"truncated varint", Bytes{}.raw({0x08, 0x80}), DropReason::kTruncated});
  cases.push_back({"truncated length", Bytes{}.raw({0x12, 0x05, 0x08}), DropReason::kTruncated});
  cases.push_back({"truncated fixed64", with_metric(Bytes{}.str(1, "x").raw({0x19, 1, 2, 3})),
                   DropReason::kTruncated});
  cases.push_back(
      {"11-byte varint",
       Bytes{}.raw({0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}),
       DropReason::kBadVarint});
  cases.push_back({"varint over 64 bits",
                   Bytes{}.raw({0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02}),
                   DropReason::kBadVarint});
  cases.push_back({"seq over 32 bits",
                   envelope(Bytes{}.u(1, 7).u(2, 1ull << 32).msg(4, flag_metric())),
                   DropReason::kBadVarint});
  cases.push_back({"field number 0", Bytes{}.raw({0x00, 0x01}), DropReason::kBadTag});
  cases.push_back({"wire type 7", Bytes{}.raw({0x0F, 0x01}), DropReason::kBadTag});
  cases.push_back({"version as string", Bytes{}.str(1, "1"), DropReason::kBadWireType});
  cases.push_back({"report as varint", Bytes{}.u(2, 1), DropReason::kBadWireType});
  cases.push_back({"device_id as fixed64", envelope(Bytes{}.f64(1, 7)), DropReason::kBadWireType});
  cases.push_back(
      {"f64 as varint", with_metric(Bytes{}.str(1, "x").u(3, 1)), DropReason::kBadWireType});
  cases.push_back(
      {"group on a known field", Bytes{}.tag(2, 3).tag(2, 4), DropReason::kBadWireType});
  cases.push_back(
      {"unknown envelope field", envelope(simple_report()).u(3, 1), DropReason::kUnknownField});
  cases.push_back(
      {"unknown report field", envelope(simple_report().str(7, "x")), DropReason::kUnknownField});
  cases.push_back(
      {"unknown metric field", with_metric(flag_metric().u(9, 1)), DropReason::kUnknownField});
  cases.push_back({"version 2", Bytes{}.u(1, 2).msg(2, simple_report()), DropReason::kBadVersion});
  cases.push_back({"no reports", Bytes{}.u(1, 1), DropReason::kNoReports});
  {
    ParserLimits l;
    l.max_reports = 2;
    Bytes e;
    e.msg(2, simple_report()).msg(2, simple_report()).msg(2, simple_report());
    cases.push_back({"too many reports", e, DropReason::kTooManyReports, l});
  }
  cases.push_back({"device_id 0", envelope(Bytes{}.u(1, 0).u(2, 1).msg(4, flag_metric())),
                   DropReason::kMissingDeviceId});
  cases.push_back(
      {"device_id absent", envelope(Bytes{}.msg(4, flag_metric())), DropReason::kMissingDeviceId});
  cases.push_back({"metric without key", with_metric(Bytes{}.u(5, 1)), DropReason::kMissingKey});
  cases.push_back(
      {"metric with empty name", with_metric(Bytes{}.str(1, "").u(5, 1)), DropReason::kMissingKey});
  cases.push_back({"metric with name and id", with_metric(Bytes{}.str(1, "a").u(2, 3).u(5, 1)),
                   DropReason::kConflictingKey});
  cases.push_back(
      {"metric without value", with_metric(Bytes{}.str(1, "a")), DropReason::kMissingValue});
  cases.push_back({"empty metric", with_metric(Bytes{}), DropReason::kMissingKey});
  cases.push_back({"metric with two values", with_metric(Bytes{}.u(2, 3).u(5, 1).u(4, 2)),
                   DropReason::kConflictingValue});
  {
    ParserLimits l;
    l.max_metrics_per_report = 2;
    Bytes r;
    r.u(1, 7).msg(4, flag_metric()).msg(4, flag_metric()).msg(4, flag_metric());
    cases.push_back({"too many metrics", envelope(r), DropReason::kTooManyMetrics, l});
  }
  cases.push_back(
      {"name too long", with_metric(flag_metric(std::string(65, 'n'))), DropReason::kNameTooLong});
  cases.push_back({"string too long", with_metric(Bytes{}.u(2, 1).str(6, std::string(1025, 's'))),
                   DropReason::kStringTooLong});
  cases.push_back({"name not UTF-8", with_metric(flag_metric("\xC0\xAF")), DropReason::kBadUtf8});
  cases.push_back({"string not UTF-8", with_metric(Bytes{}.u(2, 1).str(6, "ok\xED\xA0\x80")),
                   DropReason::kBadUtf8});
  return cases;
}

TEST(ReportParser, EachDropReasonIsReportedAndNothingIsAppended) {
  std::set<DropReason> seen;
  for (const DropCase& c : drop_cases()) {
    core::ReportBatch batch(8, 64);
    ASSERT_EQ(parse(envelope(simple_report(1)), batch).status, ParseStatus::kComplete);
    const ParseResult r = parse(c.bytes, batch, c.limits);
    EXPECT_EQ(r.status, ParseStatus::kMalformed) << c.what;
    EXPECT_EQ(r.reason, c.reason) << c.what << ": got " << drop_reason_name(r.reason);
    EXPECT_EQ(r.reports, 0u) << c.what;
    EXPECT_EQ(batch.size(), 1u) << c.what;
    EXPECT_EQ(batch.metrics_free(), 63u) << c.what;
    seen.insert(r.reason);
  }
  // Every reason except kNone and kBatchFull (tested below) has a case above.
  EXPECT_EQ(seen.size(), kDropReasonCount - 2);
}

TEST(ReportParser, DefaultLimitsAreInclusive) {
  core::ReportBatch batch(512, 512 * 64);
  Bytes r;  // 64 metrics, the longest name and the longest string
  r.u(1, 7)
      .msg(4, flag_metric(std::string(64, 'n')))
      .msg(4, Bytes{}.u(2, 1).str(6, std::string(1024, 's')));
  for (int i = 2; i < 64; ++i) r.msg(4, flag_metric());
  ParseResult res = parse(envelope(r), batch);
  ASSERT_EQ(res.status, ParseStatus::kComplete) << drop_reason_name(res.reason);
  EXPECT_EQ(batch.metrics(batch[0]).size(), 64u);

  Bytes many;  // 256 reports
  for (int i = 0; i < 256; ++i) many.msg(2, simple_report());
  res = parse(many, batch);
  ASSERT_EQ(res.status, ParseStatus::kComplete) << drop_reason_name(res.reason);
  EXPECT_EQ(res.reports, 256u);

  // The largest UDP payload, padded with the (ignored) mac field.
  const Bytes head = envelope(simple_report());
  const size_t pad = 65507 - head.size() - 1 - 3;  // tag + 3-byte length
  Bytes max = envelope(simple_report()).str(15, std::string(pad, 'm'));
  ASSERT_EQ(max.size(), 65507u);
  EXPECT_EQ(parse(max, batch).status, ParseStatus::kComplete);
  const Bytes over = envelope(simple_report()).str(15, std::string(pad + 1, 'm'));
  ASSERT_EQ(over.size(), 65508u);
  EXPECT_EQ(parse(over, batch).reason, DropReason::kOversized);
}

TEST(ReportParser, BatchFullBacksOutAndIsNotMalformed) {
  Bytes e;
  e.msg(2, simple_report(1)).msg(2, simple_report(2)).msg(2, simple_report(3));
  {
    core::ReportBatch batch(3, 64);  // room for 2 more reports only
    ASSERT_EQ(parse(envelope(simple_report(9)), batch).status, ParseStatus::kComplete);
    const ParseResult r = parse(e, batch);
    EXPECT_EQ(r.status, ParseStatus::kBatchFull);
    EXPECT_EQ(r.reason, DropReason::kBatchFull);
    EXPECT_EQ(batch.size(), 1u);
    batch.clear();
    EXPECT_EQ(parse(e, batch).status, ParseStatus::kComplete);  // after a flush it fits
  }
  {
    core::ReportBatch batch(8, 2);  // room for 2 metrics only
    const ParseResult r = parse(e, batch);
    EXPECT_EQ(r.status, ParseStatus::kBatchFull);
    EXPECT_EQ(batch.size(), 0u);
    EXPECT_EQ(batch.metrics_free(), 2u);
  }
}

TEST(ReportParser, InvalidTraceparentIsIgnoredAndCounted) {
  Bytes e;
  e.msg(2, simple_report(1).str(5, "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"));
  e.msg(2, simple_report(2).str(5, kTraceparent));
  e.msg(2, simple_report(3).str(5, "garbage\xFF"));
  e.msg(2, simple_report(4).str(5, ""));  // empty: absent, not invalid
  core::ReportBatch batch(8, 64);
  const ParseResult r = parse(e, batch);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.reports, 4u);
  EXPECT_EQ(r.bad_traceparents, 2u);
  EXPECT_FALSE(batch[0].trace.present);
  EXPECT_EQ(batch[0].trace.trace_id[0], 0);
  EXPECT_TRUE(batch[1].trace.present);
  EXPECT_FALSE(batch[2].trace.present);
  EXPECT_FALSE(batch[3].trace.present);
}

TEST(Traceparent, AcceptsOnlyStrictVersion00) {
  core::TraceContext t;
  ASSERT_TRUE(parse_traceparent(kTraceparent, t));
  EXPECT_TRUE(t.present);
  EXPECT_EQ(t.flags, 0x01);
  ASSERT_TRUE(parse_traceparent("00-00000000000000000000000000000001-0000000000000001-ff", t));
  EXPECT_EQ(t.trace_id[15], 1);
  EXPECT_EQ(t.span_id[7], 1);
  EXPECT_EQ(t.flags, 0xFF);

  const char* bad[] = {
      "",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",    // short
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",  // long
      "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   // other version
      "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   // forbidden version
      "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",   // upper-case trace-id
      "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",   // upper-case parent-id
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0F",   // upper-case flags
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",   // zero trace-id
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",   // zero parent-id
      "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",   // separator
      "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",   // separator
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01",   // separator
      "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",   // not hex
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333 -01",   // not hex
  };
  for (const char* s : bad) {
    core::TraceContext u;
    u.flags = 0x42;
    EXPECT_FALSE(parse_traceparent(s, u)) << s;
    EXPECT_EQ(u.flags, 0x42) << "output untouched on failure: " << s;
  }
}

TEST(Traceparent, FormatRoundTrips) {
  core::TraceContext t;
  ASSERT_TRUE(parse_traceparent(kTraceparent, t));
  std::array<char, kTraceparentLength> out{};
  ASSERT_EQ(format_traceparent(t, out), kTraceparentLength);
  EXPECT_EQ(std::string_view(out.data(), out.size()), kTraceparent);
  std::array<char, kTraceparentLength - 1> small{};
  EXPECT_EQ(format_traceparent(t, small), 0u);
}

TEST(Utf8, FollowsRfc3629) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9"));          // é
  EXPECT_TRUE(is_valid_utf8("\xE2\x82\xAC"));      // €
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80"));  // U+1F600
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_TRUE(is_valid_utf8(std::string_view("\0", 1)));
  EXPECT_FALSE(is_valid_utf8("\x80"));              // lone continuation
  EXPECT_FALSE(is_valid_utf8("\xC3"));              // truncated
  EXPECT_FALSE(is_valid_utf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(is_valid_utf8("\xE0\x9F\xBF"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF0\x8F\xBF\xBF"));  // overlong
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));      // truncated
  EXPECT_FALSE(is_valid_utf8("\xE2\x28\xA1"));  // bad continuation
  // Longer text, checked eight ASCII bytes at a time: errors after, inside and across words.
  EXPECT_TRUE(is_valid_utf8("temperature_celsius_average"));
  EXPECT_TRUE(
      is_valid_utf8("abcdefg\xE2\x82\xAC"
                    "abcdefgh"));  // € across a word boundary
  EXPECT_FALSE(is_valid_utf8("abcdefghijklmnop\x80"));
  EXPECT_FALSE(
      is_valid_utf8("abcdefgh\xC3"
                    "abcdefgh"));
  EXPECT_FALSE(
      is_valid_utf8("abcdefg\xED\xA0\x80"
                    "abcdefgh"));
}

TEST(DropReasonName, IsUniqueSnakeCase) {
  std::set<std::string_view> names;
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    const std::string_view n = drop_reason_name(static_cast<DropReason>(i));
    EXPECT_NE(n, "unknown");
    for (char c : n) EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') << n;
    names.insert(n);
  }
  EXPECT_EQ(names.size(), kDropReasonCount);
  EXPECT_EQ(drop_reason_name(DropReason::kBadWireType), "bad_wire_type");
  EXPECT_EQ(drop_reason_name(DropReason::kUnknownField), "unknown_field");
  EXPECT_EQ(drop_reason_name(static_cast<DropReason>(200)), "unknown");
}

}  // namespace
}  // namespace tianhe::protocols::report
