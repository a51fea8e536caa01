// Test helpers for the store: build encoded payloads and decoded reports.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/record_format.h"

namespace tianhe::sinks::store::testing {

/// A device time to start from (2023-11-14) and one second, in nanoseconds.
inline constexpr int64_t kT0 = 1'700'000'000'000'000'000;
inline constexpr int64_t kSec = 1'000'000'000;

/// One report to encode: device, seq, device time and a temperature metric.
struct Spec {
  uint64_t device_id;
  uint32_t seq;
  int64_t time_ns;
  double temperature = 20.0;
};

/// An encoded payload (as a log record holds it) and its decoded reports.
struct Encoded {
  std::vector<uint8_t> payload;
  std::unique_ptr<core::ReportBatch> batch;  ///< raw_metrics point into payload
  /// The decoded reports.
  std::vector<core::Report> reports() const {
    return std::vector<core::Report>(batch->begin(), batch->end());
  }
};

/// Encodes `specs` into one payload (tenant 1, protocol report, metrics temperature and
/// door_open and metric #9) and decodes it back.
inline Encoded encode(const std::vector<Spec>& specs) {
  core::ReportBatch in(static_cast<uint32_t>(specs.size() + 1),
                       static_cast<uint32_t>(specs.size() * 3 + 1));
  for (const Spec& s : specs) {
    core::Report* r = in.add_report();
    r->device_id = s.device_id;
    r->seq = s.seq;
    r->tenant = 1;
    r->device_time_ns = s.time_ns;
    r->received_ns = s.time_ns + 1000;
    core::Metric* m = in.add_metric(*r);
    m->name = "temperature";
    m->value.type = core::ValueType::kDouble;
    m->value.f64 = s.temperature;
    m = in.add_metric(*r);
    m->name = "door_open";
    m->value.type = core::ValueType::kBool;
    m->value.b = true;
    m = in.add_metric(*r);
    m->id = 9;
    m->value.type = core::ValueType::kInt64;
    m->value.i64 = 3;
  }
  Encoded e;
  e.payload.resize(3);
  core::encode_payload_header(static_cast<uint16_t>(specs.size()), e.payload);
  for (const core::Report& r : in) {
    size_t at = e.payload.size();
    e.payload.resize(at + core::encoded_report_size(in, r));
    core::encode_report(in, r, std::span<uint8_t>(e.payload).subspan(at));
  }
  e.batch = std::make_unique<core::ReportBatch>(static_cast<uint32_t>(specs.size() + 1),
                                                static_cast<uint32_t>(specs.size() * 3 + 1));
  core::decode_payload(e.payload, *e.batch);
  return e;
}

}  // namespace tianhe::sinks::store::testing
