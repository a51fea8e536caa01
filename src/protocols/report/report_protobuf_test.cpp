// Cross-check against the reference implementation: libprotobuf's classes generated from
// proto/tianhe/v1/report.proto. (a) What libprotobuf serializes, our parser reads identically;
// (b) what our encoders write, libprotobuf parses to the same fields (and byte for byte the same
// serialization). Inputs are pseudo-random from fixed seeds, so every run checks the same cases.
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "protocols/report/report_encoder.h"
#include "protocols/report/report_parser.h"
#include "tianhe/v1/report.pb.h"

namespace tianhe::protocols::report {
namespace {

namespace pb = ::tianhe::v1;

constexpr int kCases = 300;

const std::array<std::string, 6> kNames = {"temperature",
                                           "h",
                                           "door_open",
                                           "\xE6\xB8\xA9\xE5\xBA\xA6",  // "温度"
                                           "rssi_dbm",
                                           std::string(64, 'n')};
const std::array<std::string, 5> kStrings = {"", "ok", "firmware 2.4.1",
                                             "\xF0\x9F\x94\xA5 overheat", std::string(1024, 's')};

// Draws integers with every varint length equally likely, not just huge ones.
uint64_t draw_u64(std::mt19937_64& rng) {
  const unsigned bits = static_cast<unsigned>(rng() % 65);
  return bits == 0 ? 0 : rng() >> (64 - bits);
}

std::string draw_traceparent(std::mt19937_64& rng) {
  switch (rng() % 4) {
    case 0: return {};
    case 1: return "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01";  // invalid: upper
    default: {
      core::TraceContext t;
      for (auto& b : t.trace_id) b = static_cast<uint8_t>(rng());
      for (auto& b : t.span_id) b = static_cast<uint8_t>(rng());
      t.trace_id[0] |= 1;
      t.span_id[0] |= 1;
      t.flags = static_cast<uint8_t>(rng());
      std::array<char, kTraceparentLength> out{};
      format_traceparent(t, out);
      return {out.data(), out.size()};
    }
  }
}

void fill_random(std::mt19937_64& rng, pb::Envelope& env) {
  env.set_version(static_cast<uint32_t>(rng() % 2));
  if (rng() % 4 == 0) {
    env.set_key_id(static_cast<uint32_t>(rng()));
    env.set_mac(std::string(16, '\x5A'));
  }
  const int reports = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < reports; ++i) {
    pb::Report* r = env.add_reports();
    r->set_device_id(draw_u64(rng) | 1);
    r->set_seq(static_cast<uint32_t>(draw_u64(rng)));
    r->set_time_ns(static_cast<int64_t>(draw_u64(rng)));
    r->set_ack(rng() % 2 == 0);
    r->set_traceparent(draw_traceparent(rng));
    const int metrics = static_cast<int>(rng() % 7);
    for (int k = 0; k < metrics; ++k) {
      pb::Metric* m = r->add_metrics();
      if (rng() % 2 == 0) {
        m->set_name(kNames[rng() % kNames.size()]);
      } else {
        m->set_id(static_cast<uint32_t>(draw_u64(rng)));
      }
      switch (rng() % 4) {
        case 0: m->set_f64(std::bit_cast<double>(rng())); break;
        case 1: m->set_i64(static_cast<int64_t>(draw_u64(rng))); break;
        case 2: m->set_flag(rng() % 2 == 0); break;
        default: m->set_str(kStrings[rng() % kStrings.size()]); break;
      }
    }
  }
}

// Expects our parse of a datagram (`batch`) to hold exactly the reports of `env`.
void expect_same(const pb::Envelope& env, const core::ReportBatch& batch, uint32_t bad_traces) {
  ASSERT_EQ(batch.size(), static_cast<uint32_t>(env.reports_size()));
  uint32_t bad = 0;
  for (int i = 0; i < env.reports_size(); ++i) {
    const pb::Report& want = env.reports(i);
    const core::Report& got = batch[static_cast<uint32_t>(i)];
    EXPECT_EQ(got.device_id, want.device_id());
    EXPECT_EQ(got.seq, want.seq());
    EXPECT_EQ(got.device_time_ns, want.time_ns());
    EXPECT_EQ(got.ack_requested, want.ack());
    core::TraceContext t;
    const bool valid = parse_traceparent(want.traceparent(), t);
    if (!want.traceparent().empty() && !valid) ++bad;
    EXPECT_EQ(got.trace.present, valid);
    if (valid) {
      std::array<char, kTraceparentLength> text{};
      format_traceparent(got.trace, text);
      EXPECT_EQ(std::string(text.data(), text.size()), want.traceparent());
    }
    const auto ms = batch.metrics(got);
    ASSERT_EQ(ms.size(), static_cast<size_t>(want.metrics_size()));
    for (int k = 0; k < want.metrics_size(); ++k) {
      const pb::Metric& wm = want.metrics(k);
      const core::Metric& gm = ms[static_cast<size_t>(k)];
      if (wm.key_case() == pb::Metric::kName) {
        EXPECT_EQ(gm.name, wm.name());
      } else {
        EXPECT_TRUE(gm.name.empty());
        EXPECT_EQ(gm.id, wm.id());
      }
      switch (wm.value_case()) {
        case pb::Metric::kF64:
          ASSERT_EQ(gm.value.type, core::ValueType::kDouble);
          EXPECT_EQ(std::bit_cast<uint64_t>(gm.value.f64), std::bit_cast<uint64_t>(wm.f64()));
          break;
        case pb::Metric::kI64:
          ASSERT_EQ(gm.value.type, core::ValueType::kInt64);
          EXPECT_EQ(gm.value.i64, wm.i64());
          break;
        case pb::Metric::kFlag:
          ASSERT_EQ(gm.value.type, core::ValueType::kBool);
          EXPECT_EQ(gm.value.b, wm.flag());
          break;
        case pb::Metric::kStr:
          ASSERT_EQ(gm.value.type, core::ValueType::kString);
          EXPECT_EQ(gm.value.str, wm.str());
          break;
        case pb::Metric::VALUE_NOT_SET: FAIL() << "generator bug"; break;
      }
    }
  }
  EXPECT_EQ(bad_traces, bad);
}

TEST(ProtobufCrossCheck, LibprotobufDatagramsParseIdentically) {
  std::mt19937_64 rng(20240611);
  core::ReportBatch batch(256, 256 * 64);
  for (int c = 0; c < kCases; ++c) {
    pb::Envelope env;
    fill_random(rng, env);
    const std::string bytes = env.SerializeAsString();
    batch.clear();
    const ParseResult r =
        parse_datagram({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, 0, 0,
                       ParserLimits{}, batch);
    ASSERT_EQ(r.status, ParseStatus::kComplete) << c << ": " << drop_reason_name(r.reason);
    expect_same(env, batch, r.bad_traceparents);
  }
}

TEST(ProtobufCrossCheck, OurEnvelopesParseWithLibprotobufToTheSameFields) {
  std::mt19937_64 rng(7);
  std::vector<uint8_t> buf(65507);
  core::ReportBatch batch(256, 256 * 64);
  for (int c = 0; c < kCases; ++c) {
    // Draw the content with libprotobuf's classes, then write it with our encoder.
    pb::Envelope want;
    fill_random(rng, want);
    want.set_version(1);  // our encoder always writes version 1 and never the reserved fields
    want.clear_key_id();
    want.clear_mac();
    EnvelopeEncoder enc(buf);
    for (const pb::Report& r : want.reports()) {
      std::vector<MetricIn> ms;
      for (const pb::Metric& m : r.metrics()) {
        MetricIn in;
        if (m.key_case() == pb::Metric::kName) {
          in.name = m.name();
        } else {
          in.id = m.id();
        }
        switch (m.value_case()) {
          case pb::Metric::kF64:
            in.value.type = core::ValueType::kDouble;
            in.value.f64 = m.f64();
            break;
          case pb::Metric::kI64:
            in.value.type = core::ValueType::kInt64;
            in.value.i64 = m.i64();
            break;
          case pb::Metric::kFlag:
            in.value.type = core::ValueType::kBool;
            in.value.b = m.flag();
            break;
          default:
            in.value.type = core::ValueType::kString;
            in.value.str = m.str();
            break;
        }
        ms.push_back(in);
      }
      ASSERT_TRUE(
          enc.add_report(r.device_id(), r.seq(), r.time_ns(), r.ack(), ms, r.traceparent()));
    }
    pb::Envelope got;
    ASSERT_TRUE(got.ParseFromArray(enc.bytes().data(), static_cast<int>(enc.size()))) << c;
    // Same fields, and our bytes are exactly libprotobuf's own serialization.
    EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString()) << c;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(enc.bytes().data()), enc.size()),
              want.SerializeAsString())
        << c;
    batch.clear();
    const ParseResult r = parse_datagram(enc.bytes(), 0, 0, ParserLimits{}, batch);
    ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
    expect_same(got, batch, r.bad_traceparents);
  }
}

TEST(ProtobufCrossCheck, AcksAgreeBothWays) {
  std::mt19937_64 rng(99);
  const std::array<std::string, 3> reasons = {"", "unknown_device", "backlog_full"};
  std::array<AckEntry, 64> decoded{};
  std::vector<uint8_t> buf(64 * max_ack_entry_bytes(32));
  for (int c = 0; c < kCases; ++c) {
    pb::Ack ack;
    const int n = 1 + static_cast<int>(rng() % 64);
    std::vector<AckEntry> ours;
    for (int i = 0; i < n; ++i) {
      pb::AckEntry* e = ack.add_acks();
      e->set_device_id(draw_u64(rng));
      e->set_seq(static_cast<uint32_t>(draw_u64(rng)));
      e->set_status(static_cast<pb::AckEntry::Status>(rng() % 3));
      e->set_reason(reasons[rng() % reasons.size()]);
      ours.push_back(
          AckEntry{e->device_id(), e->seq(), static_cast<AckStatus>(e->status()), e->reason()});
    }
    // (a) libprotobuf's bytes decode to the same entries.
    const std::string bytes = ack.SerializeAsString();
    size_t count = 0;
    ASSERT_EQ(
        decode_ack({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, decoded, count),
        ParseStatus::kComplete);
    ASSERT_EQ(count, static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      const auto k = static_cast<size_t>(i);
      EXPECT_EQ(decoded[k].device_id, ack.acks(i).device_id());
      EXPECT_EQ(decoded[k].seq, ack.acks(i).seq());
      EXPECT_EQ(static_cast<int>(decoded[k].status), static_cast<int>(ack.acks(i).status()));
      EXPECT_EQ(decoded[k].reason, ack.acks(i).reason());
    }
    // (b) our bytes parse with libprotobuf, and are byte for byte its serialization.
    const size_t len = encode_ack(ours, buf);
    ASSERT_GT(len, 0u);
    pb::Ack got;
    ASSERT_TRUE(got.ParseFromArray(buf.data(), static_cast<int>(len)));
    EXPECT_EQ(got.SerializeAsString(), bytes);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), len), bytes);
  }
}

}  // namespace
}  // namespace tianhe::protocols::report
