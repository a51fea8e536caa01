#include "protocols/report/report_encoder.h"

#include <bit>

#include "protocols/report/wire_format.h"

namespace tianhe::protocols::report {
namespace {

// Field numbers of proto/tianhe/v1/report.proto (see report_parser.cpp for the decoding side).
constexpr uint32_t kEnvVersion = 1;
constexpr uint32_t kEnvReports = 2;
constexpr uint32_t kRepDeviceId = 1;
constexpr uint32_t kRepSeq = 2;
constexpr uint32_t kRepTimeNs = 3;
constexpr uint32_t kRepMetrics = 4;
constexpr uint32_t kRepTraceparent = 5;
constexpr uint32_t kRepAck = 6;
constexpr uint32_t kMetName = 1;
constexpr uint32_t kMetId = 2;
constexpr uint32_t kMetF64 = 3;
constexpr uint32_t kMetI64 = 4;
constexpr uint32_t kMetFlag = 5;
constexpr uint32_t kMetStr = 6;
constexpr uint32_t kAckAcks = 1;
constexpr uint32_t kEntryDeviceId = 1;
constexpr uint32_t kEntrySeq = 2;
constexpr uint32_t kEntryStatus = 3;
constexpr uint32_t kEntryReason = 4;

// The version field every envelope starts with: tag (1, varint) and value 1.
constexpr size_t kVersionBytes = 2;

// Proto3 omits scalar fields holding their default value; members of a oneof are always written
// because they carry presence. Following both rules keeps our bytes identical to libprotobuf's.
size_t metric_body_size(const MetricIn& m) noexcept {
  size_t n = m.name.empty() ? wire::varint_field_size(kMetId, m.id)
                            : wire::len_field_size(kMetName, m.name.size());
  switch (m.value.type) {
    case core::ValueType::kDouble: n += wire::tag_size(kMetF64) + 8; break;
    case core::ValueType::kInt64:
      n += wire::varint_field_size(kMetI64, wire::zigzag_encode(m.value.i64));
      break;
    case core::ValueType::kBool: n += wire::varint_field_size(kMetFlag, m.value.b ? 1 : 0); break;
    case core::ValueType::kString: n += wire::len_field_size(kMetStr, m.value.str.size()); break;
  }
  return n;
}

size_t report_body_size(uint64_t device_id, uint32_t seq, int64_t time_ns, bool ack,
                        std::span<const MetricIn> metrics, std::string_view traceparent) noexcept {
  size_t n = 0;
  if (device_id != 0) n += wire::varint_field_size(kRepDeviceId, device_id);
  if (seq != 0) n += wire::varint_field_size(kRepSeq, seq);
  if (time_ns != 0) n += wire::varint_field_size(kRepTimeNs, static_cast<uint64_t>(time_ns));
  for (const MetricIn& m : metrics) n += wire::len_field_size(kRepMetrics, metric_body_size(m));
  if (!traceparent.empty()) n += wire::len_field_size(kRepTraceparent, traceparent.size());
  if (ack) n += wire::varint_field_size(kRepAck, 1);
  return n;
}

void write_metric(wire::Writer& w, const MetricIn& m) noexcept {
  w.len_header(kRepMetrics, metric_body_size(m));
  if (m.name.empty()) {
    w.varint_field(kMetId, m.id);
  } else {
    w.bytes_field(kMetName, m.name);
  }
  switch (m.value.type) {
    case core::ValueType::kDouble:
      w.fixed64_field(kMetF64, std::bit_cast<uint64_t>(m.value.f64));
      break;
    case core::ValueType::kInt64: w.varint_field(kMetI64, wire::zigzag_encode(m.value.i64)); break;
    case core::ValueType::kBool: w.varint_field(kMetFlag, m.value.b ? 1 : 0); break;
    case core::ValueType::kString: w.bytes_field(kMetStr, m.value.str); break;
  }
}

size_t entry_body_size(const AckEntry& e) noexcept {
  size_t n = 0;
  if (e.device_id != 0) n += wire::varint_field_size(kEntryDeviceId, e.device_id);
  if (e.seq != 0) n += wire::varint_field_size(kEntrySeq, e.seq);
  if (e.status != AckStatus::kOk) {
    n += wire::varint_field_size(kEntryStatus, static_cast<uint64_t>(e.status));
  }
  if (!e.reason.empty()) n += wire::len_field_size(kEntryReason, e.reason.size());
  return n;
}

#define TH_TRY(expr)                                                                           \
  do {                                                                                         \
    if (DropReason th_r_ = (expr); th_r_ != DropReason::kNone) return ParseStatus::kMalformed; \
  } while (0)

ParseStatus decode_entry(const uint8_t* p, const uint8_t* end, AckEntry& e) noexcept {
  e = AckEntry{};
  while (p != end) {
    uint32_t field = 0;
    uint8_t wt = 0;
    TH_TRY(wire::read_tag(p, end, field, wt));
    switch (field) {
      case kEntryDeviceId:
        if (wt != wire::kVarint) return ParseStatus::kMalformed;
        TH_TRY(wire::read_varint(p, end, e.device_id));
        break;
      case kEntrySeq:
        if (wt != wire::kVarint) return ParseStatus::kMalformed;
        TH_TRY(wire::read_varint32(p, end, e.seq));
        break;
      case kEntryStatus: {
        if (wt != wire::kVarint) return ParseStatus::kMalformed;
        uint64_t v = 0;
        TH_TRY(wire::read_varint(p, end, v));
        // proto3 enums are open, but a status this version cannot act on is an error here.
        if (v > static_cast<uint64_t>(AckStatus::kBusy)) return ParseStatus::kMalformed;
        e.status = static_cast<AckStatus>(v);
        break;
      }
      case kEntryReason: {
        if (wt != wire::kLen) return ParseStatus::kMalformed;
        const uint8_t* s = nullptr;
        size_t n = 0;
        TH_TRY(wire::read_len(p, end, s, n));
        e.reason = {reinterpret_cast<const char*>(s), n};
        if (!is_valid_utf8(e.reason)) return ParseStatus::kMalformed;
        break;
      }
      default: return ParseStatus::kMalformed;
    }
  }
  return ParseStatus::kComplete;
}

}  // namespace

EnvelopeEncoder::EnvelopeEncoder(std::span<uint8_t> buf) noexcept : buf_(buf) {
  reset();
}

void EnvelopeEncoder::reset() noexcept {
  size_ = 0;
  reports_ = 0;
  if (buf_.size() < kVersionBytes) return;
  wire::Writer w(buf_.data());
  w.varint_field(kEnvVersion, 1);
  size_ = kVersionBytes;
}

size_t EnvelopeEncoder::report_bytes(uint64_t device_id, uint32_t seq, int64_t time_ns, bool ack,
                                     std::span<const MetricIn> metrics,
                                     std::string_view traceparent) noexcept {
  return wire::len_field_size(kEnvReports,
                              report_body_size(device_id, seq, time_ns, ack, metrics, traceparent));
}

bool EnvelopeEncoder::add_report(uint64_t device_id, uint32_t seq, int64_t time_ns, bool ack,
                                 std::span<const MetricIn> metrics,
                                 std::string_view traceparent) noexcept {
  if (size_ == 0) return false;  // the buffer cannot even hold the version field
  const size_t body = report_body_size(device_id, seq, time_ns, ack, metrics, traceparent);
  if (wire::len_field_size(kEnvReports, body) > buf_.size() - size_) return false;
  wire::Writer w(buf_.data() + size_);
  w.len_header(kEnvReports, body);
  if (device_id != 0) w.varint_field(kRepDeviceId, device_id);
  if (seq != 0) w.varint_field(kRepSeq, seq);
  if (time_ns != 0) w.varint_field(kRepTimeNs, static_cast<uint64_t>(time_ns));
  for (const MetricIn& m : metrics) write_metric(w, m);
  if (!traceparent.empty()) w.bytes_field(kRepTraceparent, traceparent);
  if (ack) w.varint_field(kRepAck, 1);
  size_ = static_cast<size_t>(w.pos() - buf_.data());
  ++reports_;
  return true;
}

size_t max_ack_entry_bytes(size_t reason_len) noexcept {
  const size_t body = wire::tag_size(kEntryDeviceId) + wire::kMaxVarintBytes +  // device_id
                      wire::tag_size(kEntrySeq) + 5 +                           // seq
                      wire::tag_size(kEntryStatus) + 1 +                        // status
                      wire::len_field_size(kEntryReason, reason_len);
  return wire::len_field_size(kAckAcks, body);
}

size_t ack_bytes(std::span<const AckEntry> acks) noexcept {
  size_t n = 0;
  for (const AckEntry& e : acks) n += wire::len_field_size(kAckAcks, entry_body_size(e));
  return n;
}

size_t encode_ack(std::span<const AckEntry> acks, std::span<uint8_t> out) noexcept {
  const size_t total = ack_bytes(acks);
  if (total == 0 || total > out.size()) return 0;
  wire::Writer w(out.data());
  for (const AckEntry& e : acks) {
    w.len_header(kAckAcks, entry_body_size(e));
    if (e.device_id != 0) w.varint_field(kEntryDeviceId, e.device_id);
    if (e.seq != 0) w.varint_field(kEntrySeq, e.seq);
    if (e.status != AckStatus::kOk) w.varint_field(kEntryStatus, static_cast<uint64_t>(e.status));
    if (!e.reason.empty()) w.bytes_field(kEntryReason, e.reason);
  }
  return total;
}

ParseStatus decode_ack(std::span<const uint8_t> bytes, std::span<AckEntry> out,
                       size_t& count) noexcept {
  count = 0;
  if (bytes.empty()) return ParseStatus::kMalformed;
  const uint8_t* p = bytes.data();
  const uint8_t* end = p + bytes.size();
  size_t n = 0;
  while (p != end) {
    uint32_t field = 0;
    uint8_t wt = 0;
    TH_TRY(wire::read_tag(p, end, field, wt));
    if (field != kAckAcks || wt != wire::kLen) return ParseStatus::kMalformed;
    const uint8_t* s = nullptr;
    size_t len = 0;
    TH_TRY(wire::read_len(p, end, s, len));
    if (n == out.size()) return ParseStatus::kBatchFull;
    if (decode_entry(s, s + len, out[n]) != ParseStatus::kComplete) return ParseStatus::kMalformed;
    ++n;
  }
  count = n;
  return ParseStatus::kComplete;
}

#undef TH_TRY

}  // namespace tianhe::protocols::report
