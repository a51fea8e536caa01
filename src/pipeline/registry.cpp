#include "pipeline/registry.h"

#include <algorithm>
#include <string>

#include "core/assert.h"

namespace tianhe::pipeline {
Model::Model(std::string name, std::vector<ModelMetric> metrics, bool allow_unknown_metrics,
             std::string codec)
    : name_(std::move(name)),
      metrics_(std::move(metrics)),
      allow_unknown_(allow_unknown_metrics),
      codec_(std::move(codec)) {
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

Result<std::shared_ptr<const Registry>> Registry::build(const RegistryConfig& rc,
                                                        std::span<const ModelSpec> models,
                                                        std::span<const DeviceRange> devices) {
  auto reg = std::shared_ptr<Registry>(new Registry());
  reg->models_.reserve(models.size());
  for (const ModelSpec& spec : models) {
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
                                    .required = m.required,
                                    .options = m.options});
    }
    reg->models_.emplace_back(spec.name, std::move(metrics), spec.allow_unknown_metrics,
                              spec.codec);
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

  // Each declared range as it is, with the index it has in the config (for errors); sorted by
  // first id, then checked to be disjoint and merged where adjacent ranges share model and
  // tenant.
  struct Declared {
    DeviceEntry entry;
    size_t index;
  };
  std::vector<Declared> declared;
  declared.reserve(devices.size());
  size_t total = 0;
  for (size_t i = 0; i < devices.size(); ++i) {
    const DeviceRange& d = devices[i];
    const std::string path = "devices[" + std::to_string(i) + "]";
    const int64_t m = model_index(d.model);
    if (m < 0) return make_error(path + ".model: \"" + d.model + "\" is not a model");
    if (d.first_id == 0 || d.count == 0 || d.first_id + d.count - 1 < d.first_id) {
      return make_error(path + ": ids must be 1 or more and the range must not wrap around");
    }
    declared.push_back({DeviceEntry{.first_id = d.first_id,
                                    .last_id = d.first_id + (d.count - 1),
                                    .model = static_cast<uint32_t>(m),
                                    .tenant = intern(d.tenant)},
                        i});
    total += d.count;
  }
  std::sort(declared.begin(), declared.end(), [](const Declared& a, const Declared& b) {
    return a.entry.first_id < b.entry.first_id;
  });
  reg->ranges_.reserve(declared.size());
  const Declared* widest = nullptr;  // the range reaching furthest so far
  for (const Declared& d : declared) {
    if (widest != nullptr && d.entry.first_id <= widest->entry.last_id) {
      const size_t later = std::max(d.index, widest->index);
      return make_error("devices[" + std::to_string(later) + "]: device " +
                        std::to_string(d.entry.first_id) +
                        " is declared twice; make the ranges disjoint");
    }
    if (widest == nullptr || d.entry.last_id > widest->entry.last_id) widest = &d;
    if (!reg->ranges_.empty()) {
      DeviceEntry& last = reg->ranges_.back();
      if (last.last_id + 1 == d.entry.first_id && last.model == d.entry.model &&
          last.tenant == d.entry.tenant) {
        last.last_id = d.entry.last_id;
        continue;
      }
    }
    reg->ranges_.push_back(d.entry);
  }
  reg->device_count_ = total;
  return std::shared_ptr<const Registry>(std::move(reg));
}

const DeviceEntry* Registry::find(uint64_t device_id) const noexcept {
  const DeviceEntry* r = ranges_.data();
  size_t n = ranges_.size();
  if (n == 0) return nullptr;
  // The last range whose first id is at or below device_id: a binary search without branches
  // on the data (the ranges are few and stay in the cache).
  size_t lo = 0;
  while (n > 1) {
    const size_t half = n / 2;
    lo = r[lo + half].first_id <= device_id ? lo + half : lo;
    n -= half;
  }
  const DeviceEntry& e = r[lo];
  return device_id >= e.first_id && device_id <= e.last_id ? &e : nullptr;
}

}  // namespace tianhe::pipeline
