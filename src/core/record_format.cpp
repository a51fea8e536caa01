#include "core/record_format.h"

#include <cstring>

namespace tianhe::core {
namespace {

class Writer {
 public:
  explicit Writer(std::span<uint8_t> out) : p_(out.data()), end_(out.data() + out.size()) {}
  bool put(const void* src, size_t n) noexcept {
    if (static_cast<size_t>(end_ - p_) < n) return ok_ = false;
    if (n) std::memcpy(p_, src, n);
    p_ += n;
    return true;
  }
  template <typename T>
  bool put(T v) noexcept {
    return put(&v, sizeof v);
  }
  uint8_t* pos() const noexcept { return p_; }
  bool ok() const noexcept { return ok_; }

 private:
  uint8_t* p_;
  uint8_t* end_;
  bool ok_ = true;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : p_(in.data()), end_(in.data() + in.size()) {}
  template <typename T>
  bool get(T& v) noexcept {
    if (static_cast<size_t>(end_ - p_) < sizeof v) return false;
    std::memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return true;
  }
  bool bytes(size_t n, const uint8_t*& out) noexcept {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    out = p_;
    p_ += n;
    return true;
  }
  const uint8_t* pos() const noexcept { return p_; }
  bool at_end() const noexcept { return p_ == end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

size_t metric_size(const Metric& m) noexcept {
  size_t n = 1 + m.name.size() + (m.name.empty() ? 4 : 0) + 1;
  switch (m.value.type) {
    case ValueType::kDouble:
    case ValueType::kInt64: return n + 8;
    case ValueType::kBool: return n + 1;
    case ValueType::kString: return n + 2 + m.value.str.size();
  }
  return n;
}

constexpr size_t kFixedReportBytes = 8 + 4 + 4 + 8 + 8 + 1 + 1;
constexpr size_t kTraceBytes = 16 + 8 + 1;

bool decode_metrics_into(Reader& rd, ReportBatch& out, Report& r) noexcept {
  uint8_t count = 0;
  if (!rd.get(count)) return false;
  for (uint8_t i = 0; i < count; ++i) {
    Metric* m = out.add_metric(r);
    if (m == nullptr) return false;
    uint8_t name_len = 0;
    const uint8_t* name = nullptr;
    if (!rd.get(name_len) || !rd.bytes(name_len, name)) return false;
    m->name = std::string_view(reinterpret_cast<const char*>(name), name_len);
    if (name_len == 0 && !rd.get(m->id)) return false;
    uint8_t type = 0;
    if (!rd.get(type)) return false;
    switch (static_cast<ValueType>(type)) {
      case ValueType::kDouble:
        m->value.type = ValueType::kDouble;
        if (!rd.get(m->value.f64)) return false;
        break;
      case ValueType::kInt64:
        m->value.type = ValueType::kInt64;
        if (!rd.get(m->value.i64)) return false;
        break;
      case ValueType::kBool: {
        uint8_t b = 0;
        if (!rd.get(b) || b > 1) return false;
        m->value.type = ValueType::kBool;
        m->value.b = b != 0;
        break;
      }
      case ValueType::kString: {
        uint16_t len = 0;
        const uint8_t* s = nullptr;
        if (!rd.get(len) || !rd.bytes(len, s)) return false;
        m->value.type = ValueType::kString;
        m->value.str = std::string_view(reinterpret_cast<const char*>(s), len);
        break;
      }
      default: return false;
    }
  }
  return true;
}

}  // namespace

size_t encoded_report_size(const ReportBatch& batch, const Report& r) noexcept {
  size_t n = kFixedReportBytes + (r.trace.present ? kTraceBytes : 0) + 1;
  for (const Metric& m : batch.metrics(r)) n += metric_size(m);
  return n;
}

size_t encode_payload_header(uint16_t count, std::span<uint8_t> out) noexcept {
  Writer w(out);
  w.put(kReportCodecVersion);
  w.put(count);
  return w.ok() ? 3 : 0;
}

size_t encode_report(const ReportBatch& batch, const Report& r, std::span<uint8_t> out) noexcept {
  auto metrics = batch.metrics(r);
  if (metrics.size() > kMaxMetricsPerReport) return 0;
  Writer w(out);
  w.put(r.device_id);
  w.put(r.tenant);
  w.put(r.seq);
  w.put(r.device_time_ns);
  w.put(r.received_ns);
  w.put(static_cast<uint8_t>(r.protocol));
  w.put(static_cast<uint8_t>((r.ack_requested ? 1 : 0) | (r.trace.present ? 2 : 0) |
                             (r.traced ? 4 : 0)));
  if (r.trace.present) {
    w.put(r.trace.trace_id.data(), 16);
    w.put(r.trace.span_id.data(), 8);
    w.put(r.trace.flags);
  }
  w.put(static_cast<uint8_t>(metrics.size()));
  for (const Metric& m : metrics) {
    if (m.name.size() > kMaxMetricNameBytes) return 0;
    w.put(static_cast<uint8_t>(m.name.size()));
    w.put(m.name.data(), m.name.size());
    if (m.name.empty()) w.put(m.id);
    w.put(static_cast<uint8_t>(m.value.type));
    switch (m.value.type) {
      case ValueType::kDouble: w.put(m.value.f64); break;
      case ValueType::kInt64: w.put(m.value.i64); break;
      case ValueType::kBool: w.put(static_cast<uint8_t>(m.value.b ? 1 : 0)); break;
      case ValueType::kString:
        if (m.value.str.size() > kMaxStringValueBytes) return 0;
        w.put(static_cast<uint16_t>(m.value.str.size()));
        w.put(m.value.str.data(), m.value.str.size());
        break;
    }
  }
  return w.ok() ? static_cast<size_t>(w.pos() - out.data()) : 0;
}

RecordStatus decode_payload(std::span<const uint8_t> payload, ReportBatch& out) noexcept {
  Reader rd(payload);
  uint8_t version = 0;
  uint16_t count = 0;
  if (!rd.get(version) || version != kReportCodecVersion || !rd.get(count)) {
    return RecordStatus::kMalformed;
  }
  const uint32_t first = out.size();
  auto fail = [&](RecordStatus s) {
    while (out.size() > first) out.pop_report();
    return s;
  };
  for (uint16_t i = 0; i < count; ++i) {
    Report* r = out.add_report();
    if (r == nullptr) return fail(RecordStatus::kBatchFull);
    uint8_t protocol = 0, flags = 0;
    if (!rd.get(r->device_id) || !rd.get(r->tenant) || !rd.get(r->seq) ||
        !rd.get(r->device_time_ns) || !rd.get(r->received_ns) || !rd.get(protocol) ||
        !rd.get(flags)) {
      return fail(RecordStatus::kMalformed);
    }
    // Any protocol id is valid: a log written while a protocol was compiled in stays readable
    // after it is compiled out (its reports then show as "unknown").
    if ((flags & ~7u) != 0) return fail(RecordStatus::kMalformed);
    r->protocol = static_cast<Protocol>(protocol);
    r->ack_requested = (flags & 1) != 0;
    r->traced = (flags & 4) != 0;
    if (flags & 2) {
      const uint8_t* t = nullptr;
      if (!rd.bytes(16 + 8, t) || !rd.get(r->trace.flags)) return fail(RecordStatus::kMalformed);
      std::memcpy(r->trace.trace_id.data(), t, 16);
      std::memcpy(r->trace.span_id.data(), t + 16, 8);
      r->trace.present = true;
    }
    const uint8_t* metrics_begin = rd.pos();
    if (!decode_metrics_into(rd, out, *r)) {
      return fail(out.metrics_free() == 0 ? RecordStatus::kBatchFull : RecordStatus::kMalformed);
    }
    r->raw_metrics = std::span<const uint8_t>(metrics_begin, rd.pos());
  }
  if (!rd.at_end()) return fail(RecordStatus::kMalformed);
  return RecordStatus::kOk;
}

RecordStatus decode_metrics(std::span<const uint8_t> raw, ReportBatch& out, Report& r) noexcept {
  Reader rd(raw);
  if (!decode_metrics_into(rd, out, r) || !rd.at_end()) return RecordStatus::kMalformed;
  r.raw_metrics = raw;
  return RecordStatus::kOk;
}

}  // namespace tianhe::core
