// The record every sink delivers (docs/sinks/README.md): tenant, device_id, model, seq, device
// time, received time, protocol, the typed metrics, and the W3C traceparent when the report had
// one. One definition here, so a row in MySQL, an entry in a Redis stream, a NATS message and a
// webhook's JSON carry the same fields under the same names.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/report.h"
#include "core/trace_context.h"
#include "pipeline/registry.h"

namespace tianhe::sinks {

/// A report's identity and times, resolved through the registry (no allocation).
struct RecordFields {
  std::string_view tenant;  ///< the tenant's name ("" when the registry does not know it)
  uint64_t device_id = 0;
  std::string_view model;  ///< the device's model ("" when unknown)
  int model_index = -1;    ///< index in the registry, -1 when unknown
  uint32_t seq = 0;
  int64_t time_ns = 0;      ///< device time, ns since the Unix epoch
  int64_t received_ns = 0;  ///< gateway receive time
  std::string_view protocol;
  char traceparent_buf[core::kTraceparentLength] = {};
  size_t traceparent_len = 0;  ///< always set: the sender's, ours, or a derived root
  std::string_view traceparent() const noexcept { return {traceparent_buf, traceparent_len}; }
};

/// The fields of `r` (`registry` may be null: tenant and model stay empty).
RecordFields record_fields(const core::Report& r, const pipeline::Registry* registry) noexcept;

/// Decodes a report's typed metrics (Report::raw_metrics). Reused across reports: no
/// allocation in steady state. Views stay valid until the next decode().
class MetricDecoder {
 public:
  MetricDecoder();
  /// The metrics of `r`; empty (and ok() false) when its metrics section is malformed.
  std::span<const core::Metric> decode(const core::Report& r) noexcept;
  bool ok() const noexcept { return ok_; }

 private:
  core::ReportBatch batch_;
  bool ok_ = true;
};

/// The name a metric is delivered under: its name, or "#<id>" for one sent by id.
std::string metric_name(const core::Metric& m);

/// The record as one JSON object (no newline):
/// {"tenant":"acme","device_id":7,"model":"env_sensor","seq":12,"time_ns":...,
///  "received_ns":...,"protocol":"report","traceparent":"00-...","metrics":{"temperature":21.5}}
/// (tenant and model only when known).
std::string record_json(const core::Report& r, const pipeline::Registry* registry);
/// Appends the same to `out`.
void append_record_json(std::string& out, const core::Report& r,
                        const pipeline::Registry* registry);

}  // namespace tianhe::sinks
