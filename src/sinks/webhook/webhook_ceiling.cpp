#include "sinks/webhook/webhook_ceiling.h"

#include <algorithm>

#include "core/clock.h"
#include "core/record_format.h"
#include "sinks/webhook/webhook_message.h"
#include "sinks/webhook/webhook_writer.h"

namespace tianhe::sinks::webhook {
namespace {

// The report protocol's id (protocols/report), which the bench's devices speak.
constexpr auto kReportProtocol = static_cast<core::Protocol>(1);
// Devices the ceiling's records cycle through, at most.
constexpr size_t kCeilingDevices = 1000;

// The registry's first devices (ids from 1 up), at most `limit`.
std::vector<uint64_t> first_devices(const pipeline::Registry& registry, size_t limit) {
  std::vector<uint64_t> out;
  const size_t want = std::min(limit, registry.device_count());
  for (uint64_t id = 1; out.size() < want && id <= 100 * limit + want; ++id) {
    if (registry.find(id) != nullptr) out.push_back(id);
  }
  return out;
}

// `n` reports in the log's encoding, for devices[d...] cycling, with every metric of each
// device's model, decoded back so that their records are what the sink sends.
Result<void> make_reports(const pipeline::Registry& registry, std::span<const uint64_t> devices,
                          uint64_t first_seq, uint32_t n, std::vector<uint8_t>& payload,
                          core::ReportBatch& out) {
  core::ReportBatch batch(n, n * 64);
  payload.assign(3, 0);
  const int64_t now = core::wall_ns();
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t device = devices[(first_seq + i) % devices.size()];
    const pipeline::DeviceEntry* e = registry.find(device);
    core::Report* r = batch.add_report();
    r->device_id = device;
    r->seq = static_cast<uint32_t>((first_seq + i) / devices.size() + 1);
    r->tenant = e->tenant;
    r->device_time_ns = now + i;
    r->received_ns = now + i;
    r->protocol = kReportProtocol;
    for (const pipeline::ModelMetric& mm : registry.model(e->model).metrics()) {
      core::Metric* m = batch.add_metric(*r);
      m->name = mm.name;
      m->value.type = mm.type;
      switch (mm.type) {
        case core::ValueType::kDouble:
          m->value.f64 = mm.min > -1e300 && mm.max < 1e300 ? (mm.min + mm.max) / 2 : 20.5;
          break;
        case core::ValueType::kInt64: m->value.i64 = 3000; break;
        case core::ValueType::kBool: m->value.b = false; break;
        case core::ValueType::kString: m->value.str = "ok"; break;
      }
    }
    const size_t at = payload.size();
    payload.resize(at + core::encoded_report_size(batch, *r));
    payload.resize(at + core::encode_report(batch, *r, std::span(payload).subspan(at)));
  }
  core::encode_payload_header(static_cast<uint16_t>(n), payload);
  out.clear();
  if (core::decode_payload(payload, out) != core::RecordStatus::kOk) {
    return make_error("webhook ceiling: the generated reports do not decode");
  }
  return {};
}

}  // namespace

Result<double> ceiling(const WebhookConfig& config, const runtime::GatewayContext& gateway,
                       uint64_t reports) {
  auto settings = validate(config, "sinks.webhook");
  if (!settings) return settings.error();
  if (!gateway.registry || gateway.registry->device_count() == 0) {
    return make_error("webhook ceiling: the registry has no devices");
  }
  const std::vector<uint64_t> devices = first_devices(*gateway.registry, kCeilingDevices);
  if (devices.empty()) return make_error("webhook ceiling: no device found from id 1 up");
  HttpClient client(settings.value());
  if (std::string problem = client.probe(); !problem.empty()) {
    return make_error("webhook ceiling: " + problem);
  }
  // Records per POST: the sink's batch size, within one log record's 65535 reports.
  const uint32_t per_post = std::min<uint32_t>(config.sink.batch_reports, 65535);
  core::ReportBatch batch(per_post, per_post * 64);
  std::vector<uint8_t> payload;
  std::vector<uint32_t> indices;
  std::string body;
  uint64_t sent = 0;
  int64_t elapsed_ns = 0;
  while (sent < reports) {
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(per_post, reports - sent));
    if (auto r = make_reports(*gateway.registry, devices, sent, n, payload, batch); !r) {
      return r.error();
    }
    // Timed: what the sink does per batch (build the JSON, sign, POST, await the answer).
    const int64_t t0 = core::mono_ns();
    std::span<const core::Report> rows(batch.begin(), batch.size());
    indices.resize(n);
    for (uint32_t i = 0; i < n; ++i) indices[i] = i;
    body.clear();
    append_body(body, kCeilingSink, rows, indices, gateway.registry.get());
    const ReportPosition first{0, 0, sent}, last{0, n - 1, sent};
    const Response& resp = client.post(body, idempotency_key(kCeilingSink, first, last));
    elapsed_ns += core::mono_ns() - t0;
    if (!resp.transport_ok) return make_error("webhook ceiling: " + resp.error);
    if (classify(resp.status) != Outcome::kDelivered) {
      return make_error("webhook ceiling: " + settings->url + " answered HTTP " +
                        std::to_string(resp.status) + " " + resp.body);
    }
    sent += n;
  }
  if (elapsed_ns <= 0) return 0.0;
  return static_cast<double>(sent) * 1e9 / static_cast<double>(elapsed_ns);
}

}  // namespace tianhe::sinks::webhook
