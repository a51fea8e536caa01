#include "protocols/report/report_parser.h"

#include <bit>
#include <cstring>

#include "protocols/report/wire_format.h"

namespace tianhe::protocols::report {
namespace {

using wire::kI64;
using wire::kLen;
using wire::kVarint;

// Field numbers of proto/tianhe/v1/report.proto.
enum EnvelopeField : uint32_t { kEnvVersion = 1, kEnvReports = 2, kEnvKeyId = 14, kEnvMac = 15 };
enum ReportField : uint32_t {
  kRepDeviceId = 1,
  kRepSeq = 2,
  kRepTimeNs = 3,
  kRepMetrics = 4,
  kRepTraceparent = 5,
  kRepAck = 6,
};
enum MetricField : uint32_t {
  kMetName = 1,
  kMetId = 2,
  kMetF64 = 3,
  kMetI64 = 4,
  kMetFlag = 5,
  kMetStr = 6,
};

// Everything one datagram's parse needs, passed down the nested message parsers.
struct Context {
  const ParserLimits& limits;
  core::ReportBatch& out;
  uint32_t peer;
  int64_t received_ns;
  uint32_t bad_traceparents = 0;
};

#define TH_TRY(expr)                                                         \
  do {                                                                       \
    if (DropReason th_r_ = (expr); th_r_ != DropReason::kNone) return th_r_; \
  } while (0)

std::string_view as_view(const uint8_t* p, size_t n) noexcept {
  return {reinterpret_cast<const char*>(p), n};
}

DropReason parse_metric(const uint8_t* p, const uint8_t* end, Context& ctx,
                        core::Report& r) noexcept {
  core::Metric* m = ctx.out.add_metric(r);
  if (m == nullptr) return DropReason::kBatchFull;
  uint32_t key_field = 0;    // the member of `oneof key` seen, 0 for none
  uint32_t value_field = 0;  // the member of `oneof value` seen, 0 for none
  while (p != end) {
    uint32_t field = 0;
    uint8_t wt = 0;
    TH_TRY(wire::read_tag(p, end, field, wt));
    switch (field) {
      case kMetName:
      case kMetId:
        // Both oneof members in one message is legal protobuf (last wins) but no encoder we
        // support produces it; it is far more likely a sender bug, so reject.
        if (key_field != 0 && key_field != field) return DropReason::kConflictingKey;
        key_field = field;
        break;
      case kMetF64:
      case kMetI64:
      case kMetFlag:
      case kMetStr:
        if (value_field != 0 && value_field != field) return DropReason::kConflictingValue;
        value_field = field;
        break;
      default: return DropReason::kUnknownField;
    }
    switch (field) {
      case kMetName: {
        if (wt != kLen) return DropReason::kBadWireType;
        const uint8_t* s = nullptr;
        size_t n = 0;
        TH_TRY(wire::read_len(p, end, s, n));
        if (n > ctx.limits.max_name_bytes) return DropReason::kNameTooLong;
        m->name = as_view(s, n);
        if (!is_valid_utf8(m->name)) return DropReason::kBadUtf8;
        break;
      }
      case kMetId:
        if (wt != kVarint) return DropReason::kBadWireType;
        TH_TRY(wire::read_varint32(p, end, m->id));
        break;
      case kMetF64: {
        if (wt != kI64) return DropReason::kBadWireType;
        uint64_t bits = 0;
        TH_TRY(wire::read_fixed64(p, end, bits));
        m->value.type = core::ValueType::kDouble;
        m->value.f64 = std::bit_cast<double>(bits);
        break;
      }
      case kMetI64: {
        if (wt != kVarint) return DropReason::kBadWireType;
        uint64_t v = 0;
        TH_TRY(wire::read_varint(p, end, v));
        m->value.type = core::ValueType::kInt64;
        m->value.i64 = wire::zigzag_decode(v);
        break;
      }
      case kMetFlag: {
        if (wt != kVarint) return DropReason::kBadWireType;
        uint64_t v = 0;
        TH_TRY(wire::read_varint(p, end, v));
        m->value.type = core::ValueType::kBool;
        m->value.b = v != 0;  // protobuf: any non-zero varint is true
        break;
      }
      case kMetStr: {
        if (wt != kLen) return DropReason::kBadWireType;
        const uint8_t* s = nullptr;
        size_t n = 0;
        TH_TRY(wire::read_len(p, end, s, n));
        if (n > ctx.limits.max_string_bytes) return DropReason::kStringTooLong;
        m->value.type = core::ValueType::kString;
        m->value.str = as_view(s, n);
        if (!is_valid_utf8(m->value.str)) return DropReason::kBadUtf8;
        break;
      }
      default: break;
    }
  }
  // An empty name would be indistinguishable from "metric id 0" downstream.
  if (key_field == 0 || (key_field == kMetName && m->name.empty())) return DropReason::kMissingKey;
  if (value_field == 0) return DropReason::kMissingValue;
  return DropReason::kNone;
}

// The fields of one Report message into `rep` (the last report of ctx.out).
DropReason parse_report_fields(const uint8_t* p, const uint8_t* end, Context& ctx,
                               core::Report& rep) noexcept {
  core::Report* r = &rep;
  std::string_view traceparent;
  while (p != end) {
    uint32_t field = 0;
    uint8_t wt = 0;
    TH_TRY(wire::read_tag(p, end, field, wt));
    switch (field) {
      case kRepDeviceId:
        if (wt != kVarint) return DropReason::kBadWireType;
        TH_TRY(wire::read_varint(p, end, r->device_id));
        break;
      case kRepSeq:
        if (wt != kVarint) return DropReason::kBadWireType;
        TH_TRY(wire::read_varint32(p, end, r->seq));
        break;
      case kRepTimeNs: {
        if (wt != kVarint) return DropReason::kBadWireType;
        uint64_t v = 0;
        TH_TRY(wire::read_varint(p, end, v));
        r->device_time_ns = static_cast<int64_t>(v);  // int64: two's complement, 10 bytes if < 0
        break;
      }
      case kRepMetrics: {
        if (wt != kLen) return DropReason::kBadWireType;
        const uint8_t* s = nullptr;
        size_t n = 0;
        TH_TRY(wire::read_len(p, end, s, n));
        if (r->metric_count >= ctx.limits.max_metrics_per_report) {
          return DropReason::kTooManyMetrics;
        }
        TH_TRY(parse_metric(s, s + n, ctx, *r));
        break;
      }
      case kRepTraceparent: {
        if (wt != kLen) return DropReason::kBadWireType;
        const uint8_t* s = nullptr;
        size_t n = 0;
        TH_TRY(wire::read_len(p, end, s, n));
        traceparent = as_view(s, n);  // last one wins; validated once below
        break;
      }
      case kRepAck: {
        if (wt != kVarint) return DropReason::kBadWireType;
        uint64_t v = 0;
        TH_TRY(wire::read_varint(p, end, v));
        r->ack_requested = v != 0;
        break;
      }
      default: return DropReason::kUnknownField;
    }
  }
  // W3C Trace Context §4.3: a vendor that cannot parse traceparent must ignore it (and start a
  // new trace); it is no reason to refuse the report.
  if (!traceparent.empty() && !parse_traceparent(traceparent, r->trace)) {
    r->trace = core::TraceContext{};
    ++ctx.bad_traceparents;
  }
  return DropReason::kNone;
}

DropReason parse_report(const uint8_t* p, const uint8_t* end, Context& ctx) noexcept {
  core::Report* r = ctx.out.add_report();
  if (r == nullptr) return DropReason::kBatchFull;
  r->protocol = kProtocolId;
  r->peer = ctx.peer;
  r->received_ns = ctx.received_ns;
  TH_TRY(parse_report_fields(p, end, ctx, *r));
  if (r->device_id == 0) return DropReason::kMissingDeviceId;
  return DropReason::kNone;
}

DropReason parse_envelope(const uint8_t* p, const uint8_t* end, Context& ctx,
                          uint32_t& reports) noexcept {
  uint32_t version = 0;
  while (p != end) {
    uint32_t field = 0;
    uint8_t wt = 0;
    TH_TRY(wire::read_tag(p, end, field, wt));
    switch (field) {
      case kEnvVersion:
        if (wt != kVarint) return DropReason::kBadWireType;
        TH_TRY(wire::read_varint32(p, end, version));
        break;
      case kEnvReports: {
        if (wt != kLen) return DropReason::kBadWireType;
        const uint8_t* s = nullptr;
        size_t n = 0;
        TH_TRY(wire::read_len(p, end, s, n));
        if (reports >= ctx.limits.max_reports) return DropReason::kTooManyReports;
        TH_TRY(parse_report(s, s + n, ctx));
        ++reports;
        break;
      }
      case kEnvKeyId: {
        // Reserved for per-device authentication: parsed for validity, ignored for now.
        if (wt != kVarint) return DropReason::kBadWireType;
        uint32_t key_id = 0;
        TH_TRY(wire::read_varint32(p, end, key_id));
        break;
      }
      case kEnvMac: {
        if (wt != kLen) return DropReason::kBadWireType;
        const uint8_t* s = nullptr;
        size_t n = 0;
        TH_TRY(wire::read_len(p, end, s, n));
        break;
      }
      default: return DropReason::kUnknownField;
    }
  }
  if (version > 1) return DropReason::kBadVersion;
  if (reports == 0) return DropReason::kNoReports;
  return DropReason::kNone;
}

#undef TH_TRY

}  // namespace

std::string_view drop_reason_name(DropReason reason) noexcept {
  switch (reason) {
    case DropReason::kNone: return "none";
    case DropReason::kEmpty: return "empty";
    case DropReason::kOversized: return "oversized";
    case DropReason::kTruncated: return "truncated";
    case DropReason::kBadVarint: return "bad_varint";
    case DropReason::kBadTag: return "bad_tag";
    case DropReason::kBadWireType: return "bad_wire_type";
    case DropReason::kUnknownField: return "unknown_field";
    case DropReason::kBadVersion: return "bad_version";
    case DropReason::kNoReports: return "no_reports";
    case DropReason::kTooManyReports: return "too_many_reports";
    case DropReason::kMissingDeviceId: return "missing_device_id";
    case DropReason::kMissingKey: return "missing_key";
    case DropReason::kConflictingKey: return "conflicting_key";
    case DropReason::kMissingValue: return "missing_value";
    case DropReason::kConflictingValue: return "conflicting_value";
    case DropReason::kTooManyMetrics: return "too_many_metrics";
    case DropReason::kNameTooLong: return "name_too_long";
    case DropReason::kStringTooLong: return "string_too_long";
    case DropReason::kBadUtf8: return "bad_utf8";
    case DropReason::kBatchFull: return "batch_full";
  }
  return "unknown";
}

ParseResult parse_datagram(std::span<const uint8_t> bytes, uint32_t peer, int64_t received_ns,
                           const ParserLimits& limits, core::ReportBatch& out) noexcept {
  ParseResult result;
  DropReason reason = DropReason::kNone;
  uint32_t reports = 0;
  const uint32_t before = out.size();
  Context ctx{limits, out, peer, received_ns};
  if (bytes.empty()) {
    reason = DropReason::kEmpty;
  } else if (bytes.size() > limits.max_datagram_bytes) {
    reason = DropReason::kOversized;
  } else {
    reason = parse_envelope(bytes.data(), bytes.data() + bytes.size(), ctx, reports);
  }
  if (reason != DropReason::kNone) {
    while (out.size() > before) out.pop_report();
    result.status =
        reason == DropReason::kBatchFull ? ParseStatus::kBatchFull : ParseStatus::kMalformed;
    result.reason = reason;
    return result;
  }
  result.reports = reports;
  result.bad_traceparents = ctx.bad_traceparents;
  return result;
}

DropReason parse_report_message(std::span<const uint8_t> bytes, const ParserLimits& limits,
                                core::ReportBatch& out, core::Report& r) noexcept {
  if (bytes.size() > limits.max_datagram_bytes) return DropReason::kOversized;
  const core::Report before = r;
  Context ctx{limits, out, r.peer, r.received_ns};
  const DropReason reason = parse_report_fields(bytes.data(), bytes.data() + bytes.size(), ctx, r);
  if (reason != DropReason::kNone) {
    // All or nothing: the report as it was, its metrics gone again.
    out.truncate_metrics(r);
    r = before;
    return reason;
  }
  if (r.device_id == 0) r.device_id = before.device_id;  // the transport named the device
  return DropReason::kNone;
}

bool is_valid_utf8(std::string_view text) noexcept {
  // RFC 3629 §4 (the UTF8-octets grammar): rejects overlong forms, surrogates, > U+10FFFF.
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  const uint8_t* end = p + text.size();
  while (p != end) {
    // Metric names and most strings are ASCII: skip eight such bytes at a time.
    if (end - p >= 8) {
      uint64_t word = 0;
      std::memcpy(&word, p, 8);
      if ((word & 0x8080808080808080ull) == 0) {
        p += 8;
        continue;
      }
    }
    const uint8_t c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    size_t n = 0;
    uint8_t lo = 0x80;
    uint8_t hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - p) <= n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (size_t k = 2; k <= n; ++k) {
      if (p[k] < 0x80 || p[k] > 0xBF) return false;
    }
    p += n + 1;
  }
  return true;
}

}  // namespace tianhe::protocols::report
