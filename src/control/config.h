// Gateway configuration: one TOML file, validated fully before anything starts. Every error
// names the key path and the fix ("log.durability: expected one of sync, batch, none").
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/report.h"
#include "core/result.h"
#include "log/shard_log.h"

namespace tianhe::control {

/// A host:port to listen on or send to.
struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
};

/// Parses "host:port" ("[::1]:7700" for IPv6). `key` names the config key in errors.
Result<Endpoint> parse_endpoint(std::string_view text, std::string_view key);

/// One metric of a device model: a typed field with unit and range.
struct MetricSpec {
  std::string name;
  core::ValueType type = core::ValueType::kDouble;
  std::string unit;  ///< UCUM-style unit text, e.g. "Cel", "%", "hPa"; informational
  std::optional<double> min;
  std::optional<double> max;
  bool required = false;
};

/// A device model: the data contract its devices' reports must meet.
struct ModelSpec {
  std::string name;
  std::vector<MetricSpec> metrics;
  bool allow_unknown_metrics = false;  ///< accept (and store) metrics the model does not list
};

/// A contiguous range of device ids sharing a tenant and model (`[[devices]]` with `count`).
struct DeviceRange {
  uint64_t first_id = 0;
  uint64_t count = 1;
  std::string tenant = "default";
  std::string model;
};

/// What to do with a report from a device the registry does not know.
enum class UnknownDevicePolicy : uint8_t { kReject, kAutoRegister };

/// `[registry]`
struct RegistryConfig {
  UnknownDevicePolicy unknown_devices = UnknownDevicePolicy::kReject;
  std::string default_model;             ///< model for auto-registered devices
  std::string default_tenant = "default";  ///< tenant for auto-registered devices
};

/// `[protocols.report]`: raw UDP reports (protobuf).
struct ReportProtocolConfig {
  bool enabled = true;
  Endpoint listen{"127.0.0.1", 7700};
  uint32_t recv_buffer_bytes = 32u << 20;  ///< SO_RCVBUF(FORCE) request per socket
  uint32_t send_buffer_bytes = 8u << 20;
  uint32_t recv_batch = 64;               ///< datagrams per recvmmsg
  uint32_t max_datagram_bytes = 65507;
};

/// `[http]`: API, /metrics, /debug.
struct HttpConfig {
  bool enabled = true;
  Endpoint listen{"127.0.0.1", 8080};
  uint32_t max_connections = 256;
};

/// `[sinks.store]`: the embedded store (default sink).
struct StoreConfig {
  bool enabled = true;
  std::string dir;                       ///< default: <data_dir>/store
  uint32_t batch_reports = 65536;        ///< reports per store transaction at most
  uint64_t chunk_reports = 4u << 20;     ///< a time chunk is sealed after this many reports
  std::chrono::seconds chunk_duration{3600};  ///< ... or after this long
  std::chrono::seconds retention{0};     ///< drop sealed chunks older than this; 0 = keep all
};

/// `[gateway]` and everything: the whole validated configuration (immutable once built).
struct GatewayConfig {
  std::string source;                 ///< file it came from ("<string>" in tests)
  std::string data_dir = "./data";
  uint32_t shards = 0;                ///< 0 = "auto": one per core
  log::LogConfig log;                 ///< log.dir default: <data_dir>/log
  ReportProtocolConfig report;
  HttpConfig http;
  StoreConfig store;
  RegistryConfig registry;
  std::vector<ModelSpec> models;
  std::vector<DeviceRange> devices;
};

/// Parses and validates TOML text. `origin` names the source in errors.
Result<GatewayConfig> parse_config(std::string_view toml, std::string_view origin = "<string>");
/// Reads and parses a file.
Result<GatewayConfig> load_config(const std::string& path);
/// The configuration reference (every key, type, default, doc) as Markdown.
std::string config_reference_markdown();

}  // namespace tianhe::control
