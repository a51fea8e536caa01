#include "control/registry.h"

#include <algorithm>
#include <bit>
#include <string>

#include "core/assert.h"

namespace tianhe::control {
namespace {

// Slots for `n` devices: a power of two keeping the load factor at or below 0.7 (linear probing
// stays short), at least 16 so an empty registry still has a valid mask.
size_t capacity_for(size_t n) {
  size_t want = n + n * 3 / 7 + 1;  // n / 0.7, rounded up
  return std::bit_ceil(std::max<size_t>(16, want));
}

}  // namespace

Model::Model(std::string name, std::vector<ModelMetric> metrics, bool allow_unknown_metrics)
    : name_(std::move(name)), metrics_(std::move(metrics)), allow_unknown_(allow_unknown_metrics) {
  TH_CHECK(metrics_.size() <= 64, "required_mask_ has one bit per metric");
  for (size_t i = 0; i < metrics_.size(); ++i) {
    if (metrics_[i].required) required_mask_ |= uint64_t{1} << i;
  }
}

int Model::find(std::string_view name) const noexcept {
  // At most 64 metrics: a scan comparing lengths first beats hashing the name.
  for (size_t i = 0; i < metrics_.size(); ++i) {
    const std::string& m = metrics_[i].name;
    if (m.size() == name.size() &&
        std::char_traits<char>::compare(m.data(), name.data(), name.size()) == 0) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

Result<std::shared_ptr<const Registry>> Registry::build(const GatewayConfig& config) {
  auto reg = std::shared_ptr<Registry>(new Registry());
  reg->models_.reserve(config.models.size());
  for (const ModelSpec& spec : config.models) {
    if (spec.metrics.size() > 64) {
      return make_error("models." + spec.name + ": " + std::to_string(spec.metrics.size()) +
                        " metrics; a model has at most 64");
    }
    std::vector<ModelMetric> metrics;
    metrics.reserve(spec.metrics.size());
    for (const MetricSpec& m : spec.metrics) {
      metrics.push_back(ModelMetric{.name = m.name,
                                    .type = m.type,
                                    .unit = m.unit,
                                    .min = m.min.value_or(-1e308),
                                    .max = m.max.value_or(1e308),
                                    .required = m.required});
    }
    reg->models_.emplace_back(spec.name, std::move(metrics), spec.allow_unknown_metrics);
  }
  auto model_index = [&](const std::string& name) -> int64_t {
    for (size_t i = 0; i < reg->models_.size(); ++i) {
      if (reg->models_[i].name() == name) return static_cast<int64_t>(i);
    }
    return -1;
  };
  // Tenants are few; a linear intern per range (not per device) keeps the build simple.
  auto intern = [&](const std::string& tenant) {
    auto it = std::find(reg->tenants_.begin(), reg->tenants_.end(), tenant);
    if (it != reg->tenants_.end()) return static_cast<uint32_t>(it - reg->tenants_.begin());
    reg->tenants_.push_back(tenant);
    return static_cast<uint32_t>(reg->tenants_.size() - 1);
  };

  const RegistryConfig& rc = config.registry;
  reg->unknown_ = rc.unknown_devices;
  reg->default_tenant_ = intern(rc.default_tenant);
  if (!rc.default_model.empty()) {
    int64_t m = model_index(rc.default_model);
    if (m < 0) {
      return make_error("registry.default_model: \"" + rc.default_model +
                        "\" is not a model; define it with [[models]]");
    }
    reg->default_model_ = static_cast<uint32_t>(m);
  } else if (rc.unknown_devices == UnknownDevicePolicy::kAutoRegister) {
    return make_error(
        "registry.default_model: missing; unknown_devices = \"auto_register\" needs one");
  }

  size_t total = 0;
  for (const DeviceRange& d : config.devices) total += d.count;
  reg->slots_.assign(capacity_for(total), DeviceEntry{});
  reg->mask_ = reg->slots_.size() - 1;
  DeviceEntry* slots = reg->slots_.data();
  const uint64_t mask = reg->mask_;
  for (size_t i = 0; i < config.devices.size(); ++i) {
    const DeviceRange& d = config.devices[i];
    std::string path = "devices[" + std::to_string(i) + "]";
    int64_t m = model_index(d.model);
    if (m < 0) return make_error(path + ".model: \"" + d.model + "\" is not a model");
    if (d.first_id == 0 || d.count == 0 || d.first_id + d.count - 1 < d.first_id) {
      return make_error(path + ": ids must be 1 or more and the range must not wrap around");
    }
    uint32_t tenant = intern(d.tenant);
    for (uint64_t id = d.first_id, end = d.first_id + d.count; id != end; ++id) {
      uint64_t s = Registry::mix(id) & mask;
      while (slots[s].id != 0) {
        if (slots[s].id == id) {
          return make_error(path + ": device " + std::to_string(id) +
                            " is declared twice; make the ranges disjoint");
        }
        s = (s + 1) & mask;
      }
      slots[s] = DeviceEntry{.id = id, .model = static_cast<uint32_t>(m), .tenant = tenant};
    }
  }
  reg->device_count_ = total;
  return std::shared_ptr<const Registry>(std::move(reg));
}

const DeviceEntry* Registry::find(uint64_t device_id) const noexcept {
  if (device_id == 0 || slots_.empty()) return nullptr;  // 0 marks empty slots
  const DeviceEntry* slots = slots_.data();
  uint64_t s = mix(device_id) & mask_;
  // Terminates: the load factor is at most 0.7, so an empty slot always exists.
  while (true) {
    const DeviceEntry& e = slots[s];
    if (e.id == device_id) return &e;
    if (e.id == 0) return nullptr;
    s = (s + 1) & mask_;
  }
}

}  // namespace tianhe::control
