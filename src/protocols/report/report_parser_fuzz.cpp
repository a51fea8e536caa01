// Fuzz target: parse_datagram() and decode_ack() must never read out of bounds, crash or leave a
// partial datagram in the batch, on any bytes; whatever they accept must survive a round trip
// through the encoders unchanged.
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "protocols/report/report_encoder.h"
#include "protocols/report/report_parser.h"

namespace {

using namespace tianhe::protocols::report;  // NOLINT(google-build-using-namespace)
namespace core = tianhe::core;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool same_value(const core::Value& a, const core::Value& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case core::ValueType::kDouble:
      return std::bit_cast<uint64_t>(a.f64) == std::bit_cast<uint64_t>(b.f64);
    case core::ValueType::kInt64: return a.i64 == b.i64;
    case core::ValueType::kBool: return a.b == b.b;
    case core::ValueType::kString: return a.str == b.str;
  }
  return false;
}

void fuzz_datagram(const uint8_t* data, size_t size) {
  static core::ReportBatch batch(256, 256 * 64);
  static core::ReportBatch again(256, 256 * 64);
  static std::array<uint8_t, 1 << 17> buf;
  static std::array<MetricIn, 64> metrics;
  batch.clear();
  const ParserLimits limits;
  const ParseResult r = parse_datagram({data, size}, 1, 2, limits, batch);
  if (r.status != ParseStatus::kComplete) {
    check(batch.size() == 0 && batch.metrics_free() == 256 * 64 && r.reports == 0);
    check(r.reason != DropReason::kNone && r.reason != DropReason::kBatchFull);
    return;
  }
  check(r.reason == DropReason::kNone && r.reports == batch.size() && r.reports > 0);

  EnvelopeEncoder enc(buf);
  for (const core::Report& rep : batch) {
    check(rep.device_id != 0 && rep.peer == 1 && rep.received_ns == 2);
    auto ms = batch.metrics(rep);
    check(ms.size() <= limits.max_metrics_per_report);
    for (size_t i = 0; i < ms.size(); ++i) metrics[i] = MetricIn{ms[i].name, ms[i].id, ms[i].value};
    std::array<char, kTraceparentLength> tp{};
    const size_t tp_len = rep.trace.present ? format_traceparent(rep.trace, tp) : 0;
    check(enc.add_report(rep.device_id, rep.seq, rep.device_time_ns, rep.ack_requested,
                         {metrics.data(), ms.size()}, {tp.data(), tp_len}));
  }
  // The canonical re-encoding parses to the same reports.
  again.clear();
  const ParseResult r2 = parse_datagram(enc.bytes(), 1, 2, limits, again);
  check(r2.status == ParseStatus::kComplete && r2.reports == r.reports && r2.bad_traceparents == 0);
  for (uint32_t i = 0; i < batch.size(); ++i) {
    const core::Report& a = batch[i];
    const core::Report& b = again[i];
    check(a.device_id == b.device_id && a.seq == b.seq && a.device_time_ns == b.device_time_ns &&
          a.ack_requested == b.ack_requested && a.trace.present == b.trace.present &&
          a.trace.trace_id == b.trace.trace_id && a.trace.span_id == b.trace.span_id &&
          a.trace.flags == b.trace.flags && a.metric_count == b.metric_count);
    auto ma = batch.metrics(a);
    auto mb = again.metrics(b);
    for (size_t k = 0; k < ma.size(); ++k) {
      check(ma[k].name == mb[k].name && ma[k].id == mb[k].id &&
            same_value(ma[k].value, mb[k].value));
    }
  }
}

void fuzz_ack(const uint8_t* data, size_t size) {
  static std::array<AckEntry, 64> out;
  static std::array<AckEntry, 64> out2;
  static std::array<uint8_t, 1 << 17> buf;
  size_t count = 0;
  if (decode_ack({data, size}, out, count) != ParseStatus::kComplete) {
    check(count == 0);
    return;
  }
  check(count > 0 && count <= out.size());
  const size_t n = encode_ack({out.data(), count}, buf);
  check(n > 0 && n <= size);  // canonical form is never longer than what was accepted
  size_t count2 = 0;
  check(decode_ack({buf.data(), n}, out2, count2) == ParseStatus::kComplete && count2 == count);
  for (size_t i = 0; i < count; ++i) {
    check(out[i].device_id == out2[i].device_id && out[i].seq == out2[i].seq &&
          out[i].status == out2[i].status && out[i].reason == out2[i].reason);
  }
}

}  // namespace

// The same bytes as one Report message payload (the report_protobuf codec): all or nothing.
void fuzz_report_message(const uint8_t* data, size_t size) {
  core::ReportBatch batch(2, 64);
  core::Report* r = batch.add_report();
  r->device_id = 5;
  const uint32_t free_before = batch.metrics_free();
  const DropReason reason = parse_report_message({data, size}, ParserLimits{}, batch, *r);
  if (reason != DropReason::kNone) {
    // A failed parse leaves no metrics and the report as it was.
    check(batch.metrics_free() == free_before && r->metric_count == 0 && r->device_id == 5);
    return;
  }
  check(r->device_id != 0);  // the payload's device, or the one the transport named
  for (const core::Metric& m : batch.metrics(*r)) {
    check(m.name.empty() || is_valid_utf8(m.name));
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_datagram(data, size);
  fuzz_report_message(data, size);
  fuzz_ack(data, size);
  return 0;
}
