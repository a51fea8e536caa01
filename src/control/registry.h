// The registry: tenants, device models and devices, built from the config into an immutable,
// read-only snapshot shared by all shards (lookups are lock-free and allocation-free).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "control/config.h"
#include "core/hash.h"
#include "core/result.h"

namespace tianhe::control {

/// A model's metric, ready for validation.
struct ModelMetric {
  std::string name;                                 ///< as devices send it
  core::ValueType type = core::ValueType::kDouble;  ///< value type
  std::string unit;                                 ///< informational unit text
  double min = -1e308;                              ///< inclusive bounds; +-1e308 when unset
  double max = 1e308;
  bool required = false;  ///< bit set in Model::required_mask()
};

/// A compiled device model. find() maps a metric name to its index (or -1).
class Model {
 public:
  /// Compiles a model; at most 64 metrics (checked).
  Model(std::string name, std::vector<ModelMetric> metrics, bool allow_unknown_metrics);
  /// The model's name.
  const std::string& name() const noexcept { return name_; }
  /// Its metrics; a metric's index is its id within the model.
  const std::vector<ModelMetric>& metrics() const noexcept { return metrics_; }
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
  uint64_t required_mask_ = 0;
};

/// A registered device: 16 bytes in the registry's open-addressing table.
struct DeviceEntry {
  uint64_t id = 0;      ///< 0 marks an empty slot (device id 0 is not allowed)
  uint32_t model = 0;   ///< index for Registry::model()
  uint32_t tenant = 0;  ///< index for Registry::tenant_name()
};

/// The immutable registry snapshot.
class Registry {
 public:
  /// Builds from a validated config (models, device ranges, registry policy).
  static Result<std::shared_ptr<const Registry>> build(const GatewayConfig& config);

  /// The device, or nullptr when unknown. Lock-free, allocation-free.
  const DeviceEntry* find(uint64_t device_id) const noexcept;
  /// Starts loading the slot where find(device_id) looks first into the cache. The table is far
  /// larger than the cache and devices arrive in random order, so a lookup is a cache (and TLB)
  /// miss; a batch prefetches a few reports ahead of the one it validates. Always inlined: GCC
  /// deems an out-of-line function holding only a prefetch free of effects and drops its calls.
  [[gnu::always_inline]] void prefetch(uint64_t device_id) const noexcept {
    if (!slots_.empty()) __builtin_prefetch(&slots_[mix(device_id) & mask_]);
  }
  /// The hash that places a device id in the table.
  static uint64_t mix(uint64_t x) noexcept { return core::mix64(x); }
  /// Model by index (DeviceEntry::model, default_model()).
  const Model& model(uint32_t index) const noexcept { return models_[index]; }
  /// Number of models.
  size_t model_count() const noexcept { return models_.size(); }
  /// Tenant name by index (DeviceEntry::tenant, default_tenant()).
  const std::string& tenant_name(uint32_t index) const noexcept { return tenants_[index]; }
  /// Number of registered devices.
  size_t device_count() const noexcept { return device_count_; }
  /// Policy for unknown devices, and the model/tenant they get when auto-registered.
  UnknownDevicePolicy unknown_devices() const noexcept { return unknown_; }
  uint32_t default_model() const noexcept { return default_model_; }
  uint32_t default_tenant() const noexcept { return default_tenant_; }
  /// Heap bytes held by the device table (for the memory-per-device figure).
  size_t table_bytes() const noexcept { return slots_.size() * sizeof(DeviceEntry); }

 private:
  std::vector<Model> models_;
  std::vector<std::string> tenants_;
  std::vector<DeviceEntry> slots_;  ///< power-of-two open-addressing table
  uint64_t mask_ = 0;
  size_t device_count_ = 0;
  UnknownDevicePolicy unknown_ = UnknownDevicePolicy::kReject;
  uint32_t default_model_ = 0;
  uint32_t default_tenant_ = 0;
};

}  // namespace tianhe::control
