// Validation of reports against their device's model (the data contract): known device, known
// metrics, types, ranges, required metrics. Runs on the shard thread; allocation-free.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/report.h"
#include "pipeline/registry.h"

namespace tianhe::pipeline {

/// Why a report was rejected (the `reason` label of tianhe_reports_rejected_total).
enum class RejectReason : uint8_t {
  kNone = 0,
  kUnknownDevice,
  kUnknownMetric,
  kWrongType,
  kOutOfRange,
  kMissingRequired,
  kDuplicateMetric,
  kBadMetricId,
  kCount,  ///< number of reasons (array size)
};

/// The snake_case name of a reason ("unknown_device", ...).
std::string_view reject_reason_name(RejectReason r) noexcept;

/// Validates reports against the registry snapshot it holds. One per shard; not thread-safe.
class Validator {
 public:
  explicit Validator(std::shared_ptr<const pipeline::Registry> registry);

  /// Validates `r` in place: sets r.tenant, turns metric ids into the model's names, converts
  /// int64 values of double metrics to double. Returns kNone when the report meets its model;
  /// otherwise the first reason it breaks it (the report must then not be stored).
  /// `auto_registered` is set when the device was unknown and got the default model.
  RejectReason validate(core::ReportBatch& batch, core::Report& r,
                        bool& auto_registered) const noexcept;

  /// The registry in use.
  const pipeline::Registry& registry() const noexcept { return *registry_; }

 private:
  std::shared_ptr<const pipeline::Registry> registry_;
};

}  // namespace tianhe::pipeline
