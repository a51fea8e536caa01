// The fleet's data contract as configured: device models (typed metrics with units and ranges),
// device ranges and what to do with unknown devices. Plain data; the registry (registry.h)
// is built from it and the validator enforces it.
#pragma once

#include <any>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/report.h"

namespace tianhe::pipeline {

/// One metric of a device model: a typed field with unit and range.
struct MetricSpec {
  std::string name;                                 ///< as devices send it; <= 64 bytes
  core::ValueType type = core::ValueType::kDouble;  ///< value type
  std::string unit;           ///< UCUM-style unit text, e.g. "Cel", "%", "hPa"; informational
  std::optional<double> min;  ///< inclusive lower bound (numeric types only)
  std::optional<double> max;  ///< inclusive upper bound (numeric types only)
  bool required = false;      ///< a report without it breaks the model
  /// What protocols say about it (`modbus = { ... }`): protocol name -> the struct its
  /// ProtocolSpec::metric_options table filled.
  std::vector<std::pair<std::string, std::any>> options;
};

/// A device model: the data contract its devices' reports must meet.
struct ModelSpec {
  std::string name;                    ///< unique, [a-z0-9_]
  std::vector<MetricSpec> metrics;     ///< at most 64
  bool allow_unknown_metrics = false;  ///< accept (and store) metrics the model does not list
  /// The payload codec of its devices on protocols that carry opaque payloads (MQTT-SN,
  /// LoRaWAN, MQTT): a registered codec's name ("json", "cayenne_lpp", "raw", "report");
  /// empty: the protocol's default.
  std::string codec;
};

/// A contiguous range of device ids sharing a tenant and model (`[[devices]]` with `count`).
struct DeviceRange {
  uint64_t first_id = 0;           ///< first device id (> 0)
  uint64_t count = 1;              ///< ids first_id .. first_id + count - 1
  std::string tenant = "default";  ///< owning tenant
  std::string model;               ///< name of a ModelSpec
};

/// What to do with a report from a device the registry does not know.
enum class UnknownDevicePolicy : uint8_t { kReject, kAutoRegister };

/// `[registry]`
struct RegistryConfig {
  UnknownDevicePolicy unknown_devices = UnknownDevicePolicy::kReject;  ///< reject or register
  std::string default_model;               ///< model for auto-registered devices
  std::string default_tenant = "default";  ///< tenant for auto-registered devices
};

}  // namespace tianhe::pipeline
