// The registry: tenants, device models and devices, built from the config into an immutable,
// read-only snapshot shared by all shards (lookups are lock-free and allocation-free).
#pragma once

#include <any>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"
#include "pipeline/model_spec.h"

namespace tianhe::pipeline {

/// A model's metric, ready for validation.
struct ModelMetric {
  std::string name;                                 ///< as devices send it
  core::ValueType type = core::ValueType::kDouble;  ///< value type
  std::string unit;                                 ///< informational unit text
  double min = -1e308;                              ///< inclusive bounds; +-1e308 when unset
  double max = 1e308;
  bool required = false;  ///< bit set in Model::required_mask()
  /// Protocol name -> the struct its metric_options table filled (MetricSpec::options).
  std::vector<std::pair<std::string, std::any>> options;

  /// The parsed metric_options struct `protocol` gave this metric, or nullptr.
  const std::any* option(std::string_view protocol) const noexcept {
    for (const auto& [key, value] : options) {
      if (key == protocol) return &value;
    }
    return nullptr;
  }
};

/// A compiled device model. find() maps a metric name to its index (or -1).
class Model {
 public:
  /// Compiles a model; at most 64 metrics (checked).
  Model(std::string name, std::vector<ModelMetric> metrics, bool allow_unknown_metrics,
        std::string codec = {});
  /// The model's name.
  const std::string& name() const noexcept { return name_; }
  /// Its metrics; a metric's index is its id within the model.
  const std::vector<ModelMetric>& metrics() const noexcept { return metrics_; }
  /// The codec its devices' payloads are decoded with ("": the protocol's default).
  const std::string& codec() const noexcept { return codec_; }
  /// Whether metrics the model does not list are accepted.
  bool allow_unknown_metrics() const noexcept { return allow_unknown_; }
  /// Index of the metric called `name`, or -1.
  int find(std::string_view name) const noexcept;
  /// Bit i set when metric i is required (models have at most 64 metrics).
  uint64_t required_mask() const noexcept { return required_mask_; }

 private:
  std::string name_;
  std::vector<ModelMetric> metrics_;
  bool allow_unknown_;
  std::string codec_;
  uint64_t required_mask_ = 0;
};

/// A range of registered devices, ids first_id..last_id, sharing a model and a tenant: how
/// [[devices]] declares them (an id and a count). The registry keeps the ranges, not one entry
/// per device: a lookup is a binary search over a few cache-resident entries, where a table of
/// one entry per device (16 MiB for 500,000) cost a cache and TLB miss per report.
struct DeviceEntry {
  uint64_t first_id = 0;  ///< the range's first device id (ids start at 1)
  uint64_t last_id = 0;   ///< its last device id (inclusive)
  uint32_t model = 0;     ///< index for Registry::model()
  uint32_t tenant = 0;    ///< index for Registry::tenant_name()
};

/// The immutable registry snapshot.
class Registry {
 public:
  /// Builds from a validated config (models, device ranges, registry policy).
  static Result<std::shared_ptr<const Registry>> build(const RegistryConfig& config,
                                                       std::span<const ModelSpec> models,
                                                       std::span<const DeviceRange> devices);

  /// The range holding the device, or nullptr when it is unknown. Lock-free, allocation-free.
  const DeviceEntry* find(uint64_t device_id) const noexcept;
  /// Model by index (DeviceEntry::model, default_model()).
  const Model& model(uint32_t index) const noexcept { return models_[index]; }
  /// Number of models.
  size_t model_count() const noexcept { return models_.size(); }
  /// Tenant name by index (DeviceEntry::tenant, default_tenant()).
  const std::string& tenant_name(uint32_t index) const noexcept { return tenants_[index]; }
  /// Number of tenants (indexes of tenant_name()).
  size_t tenant_count() const noexcept { return tenants_.size(); }
  /// Number of registered devices.
  size_t device_count() const noexcept { return device_count_; }
  /// Policy for unknown devices, and the model/tenant they get when auto-registered.
  UnknownDevicePolicy unknown_devices() const noexcept { return unknown_; }
  uint32_t default_model() const noexcept { return default_model_; }
  uint32_t default_tenant() const noexcept { return default_tenant_; }
  /// Heap bytes held by the device table (for the memory-per-device figure).
  size_t table_bytes() const noexcept { return ranges_.size() * sizeof(DeviceEntry); }
  /// Number of ranges the devices are held in (adjacent ranges of one model and tenant merge).
  size_t range_count() const noexcept { return ranges_.size(); }

 private:
  std::vector<Model> models_;
  std::vector<std::string> tenants_;
  std::vector<DeviceEntry> ranges_;  ///< sorted by first_id, disjoint
  size_t device_count_ = 0;
  UnknownDevicePolicy unknown_ = UnknownDevicePolicy::kReject;
  uint32_t default_model_ = 0;
  uint32_t default_tenant_ = 0;
};

}  // namespace tianhe::pipeline
