#include "pipeline/validator.h"

#include <cmath>

namespace tianhe::pipeline {

std::string_view reject_reason_name(RejectReason r) noexcept {
  switch (r) {
    case RejectReason::kNone: return "none";
    case RejectReason::kUnknownDevice: return "unknown_device";
    case RejectReason::kUnknownMetric: return "unknown_metric";
    case RejectReason::kWrongType: return "wrong_type";
    case RejectReason::kOutOfRange: return "out_of_range";
    case RejectReason::kMissingRequired: return "missing_required";
    case RejectReason::kDuplicateMetric: return "duplicate_metric";
    case RejectReason::kBadMetricId: return "bad_metric_id";
    case RejectReason::kCount: break;
  }
  return "unknown";
}

Validator::Validator(std::shared_ptr<const pipeline::Registry> registry)
    : registry_(std::move(registry)) {}

RejectReason Validator::validate(core::ReportBatch& batch, core::Report& r,
                                 bool& auto_registered) const noexcept {
  auto_registered = false;
  uint32_t model_index = 0;
  if (const pipeline::DeviceEntry* d = registry_->find(r.device_id)) {
    model_index = d->model;
    r.tenant = d->tenant;
  } else if (registry_->unknown_devices() == UnknownDevicePolicy::kAutoRegister) {
    model_index = registry_->default_model();
    r.tenant = registry_->default_tenant();
    auto_registered = true;
  } else {
    return RejectReason::kUnknownDevice;
  }
  const pipeline::Model& model = registry_->model(model_index);
  const auto& specs = model.metrics();
  uint64_t seen = 0;
  for (core::Metric& m : batch.metrics(r)) {
    int index = -1;
    if (m.name.empty()) {
      // A metric id is the index of the metric in its model's list (0-based).
      if (m.id >= specs.size()) return RejectReason::kBadMetricId;
      index = static_cast<int>(m.id);
      m.name = specs[m.id].name;  // the registry outlives every batch
    } else {
      index = model.find(m.name);
    }
    if (index < 0) {
      if (model.allow_unknown_metrics()) continue;
      return RejectReason::kUnknownMetric;
    }
    const uint64_t bit = uint64_t{1} << index;
    if (seen & bit) return RejectReason::kDuplicateMetric;
    seen |= bit;
    const pipeline::ModelMetric& spec = specs[static_cast<size_t>(index)];
    double numeric = 0;
    switch (spec.type) {
      case core::ValueType::kDouble:
        if (m.value.type == core::ValueType::kInt64) {
          m.value.f64 = static_cast<double>(m.value.i64);
          m.value.type = core::ValueType::kDouble;
        }
        if (m.value.type != core::ValueType::kDouble) return RejectReason::kWrongType;
        if (std::isnan(m.value.f64)) return RejectReason::kOutOfRange;
        numeric = m.value.f64;
        break;
      case core::ValueType::kInt64:
        if (m.value.type != core::ValueType::kInt64) return RejectReason::kWrongType;
        numeric = static_cast<double>(m.value.i64);
        break;
      case core::ValueType::kBool:
      case core::ValueType::kString:
        if (m.value.type != spec.type) return RejectReason::kWrongType;
        continue;
    }
    if (numeric < spec.min || numeric > spec.max) return RejectReason::kOutOfRange;
  }
  if ((seen & model.required_mask()) != model.required_mask()) {
    return RejectReason::kMissingRequired;
  }
  return RejectReason::kNone;
}

}  // namespace tianhe::pipeline
