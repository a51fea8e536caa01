#include "sinks/common/record.h"

#include <cstdio>

#include "core/metrics_json.h"
#include "core/record_format.h"
#include "core/tracing.h"

namespace tianhe::sinks {

RecordFields record_fields(const core::Report& r, const pipeline::Registry* registry) noexcept {
  RecordFields f;
  f.device_id = r.device_id;
  f.seq = r.seq;
  f.time_ns = r.device_time_ns;
  f.received_ns = r.received_ns;
  f.protocol = core::protocol_name(r.protocol);
  if (registry != nullptr) {
    if (r.tenant < registry->tenant_count()) f.tenant = registry->tenant_name(r.tenant);
    if (const pipeline::DeviceEntry* d = registry->find(r.device_id); d != nullptr) {
      f.model_index = static_cast<int>(d->model);
      f.model = registry->model(d->model).name();
    }
  }
  // Downstream joins the report's trace (core/tracing.h outgoing_trace): the derived trace id
  // when the sender sent none is the one `tianhe trace` shows.
  f.traceparent_len = core::format_traceparent(core::tracing::outgoing_trace(r), f.traceparent_buf);
  return f;
}

MetricDecoder::MetricDecoder() : batch_(1, core::kMaxMetricsPerReport) {}

std::span<const core::Metric> MetricDecoder::decode(const core::Report& r) noexcept {
  batch_.clear();
  core::Report* out = batch_.add_report();
  ok_ = core::decode_metrics(r.raw_metrics, batch_, *out) == core::RecordStatus::kOk;
  if (!ok_) return {};
  return batch_.metrics(*out);
}

std::string metric_name(const core::Metric& m) {
  if (!m.name.empty()) return std::string(m.name);
  char id[16];
  const int len = std::snprintf(id, sizeof id, "#%u", m.id);
  return std::string(id, static_cast<size_t>(len));
}

void append_record_json(std::string& out, const core::Report& r,
                        const pipeline::Registry* registry) {
  const RecordFields f = record_fields(r, registry);
  out += '{';
  if (!f.tenant.empty()) {
    out += "\"tenant\":";
    core::append_json_string(out, f.tenant);
    out += ',';
  }
  out += "\"device_id\":" + std::to_string(f.device_id);
  if (!f.model.empty()) {
    out += ",\"model\":";
    core::append_json_string(out, f.model);
  }
  out += ",\"seq\":" + std::to_string(f.seq);
  out += ",\"time_ns\":" + std::to_string(f.time_ns);
  out += ",\"received_ns\":" + std::to_string(f.received_ns);
  out += ",\"protocol\":";
  core::append_json_string(out, f.protocol);
  if (f.traceparent_len > 0) {
    out += ",\"traceparent\":";
    core::append_json_string(out, f.traceparent());
  }
  out += ",\"metrics\":";
  out += core::metrics_json(r.raw_metrics);
  out += '}';
}

std::string record_json(const core::Report& r, const pipeline::Registry* registry) {
  std::string out;
  append_record_json(out, r, registry);
  return out;
}

}  // namespace tianhe::sinks
