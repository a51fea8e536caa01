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
  std::string host = "127.0.0.1";  ///< name or address; IPv6 without brackets
  uint16_t port = 0;               ///< 0 = any free port
};

/// Parses "host:port" ("[::1]:7700" for IPv6). `key` names the config key in errors.
Result<Endpoint> parse_endpoint(std::string_view text, std::string_view key);

/// One metric of a device model: a typed field with unit and range.
struct MetricSpec {
  std::string name;                                 ///< as devices send it; <= 64 bytes
  core::ValueType type = core::ValueType::kDouble;  ///< value type
  std::string unit;           ///< UCUM-style unit text, e.g. "Cel", "%", "hPa"; informational
  std::optional<double> min;  ///< inclusive lower bound (numeric types only)
  std::optional<double> max;  ///< inclusive upper bound (numeric types only)
  bool required = false;      ///< a report without it breaks the model
};

/// A device model: the data contract its devices' reports must meet.
struct ModelSpec {
  std::string name;                    ///< unique, [a-z0-9_]
  std::vector<MetricSpec> metrics;     ///< at most 64
  bool allow_unknown_metrics = false;  ///< accept (and store) metrics the model does not list
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

/// `[protocols.report]`: raw UDP reports (protobuf).
struct ReportProtocolConfig {
  bool enabled = true;                     ///< receive UDP reports
  Endpoint listen{"127.0.0.1", 7700};      ///< UDP address every shard binds (SO_REUSEPORT)
  uint32_t recv_buffer_bytes = 32u << 20;  ///< SO_RCVBUF(FORCE) request per socket
  uint32_t send_buffer_bytes = 8u << 20;   ///< SO_SNDBUF request per socket (acks)
  uint32_t recv_batch = 64;                ///< datagrams per recvmmsg
  uint32_t max_datagram_bytes = 65507;     ///< longer datagrams are dropped (counted)
};

/// `[http]`: API, /metrics, /debug.
struct HttpConfig {
  bool enabled = true;                                ///< serve the API, /metrics and /debug
  Endpoint listen{"127.0.0.1", 8080};                 ///< TCP address
  uint32_t max_connections = 256;                     ///< further connections are refused
  std::chrono::milliseconds idle_timeout{60'000};     ///< close connections quiet this long
  std::chrono::milliseconds request_timeout{10'000};  ///< 408 when a request takes longer
};

/// `[sinks.store]`: the embedded store (default sink).
struct StoreConfig {
  bool enabled = true;                            ///< deliver reports to the store
  std::string dir;                                ///< default: <data_dir>/store
  uint32_t batch_reports = 65536;                 ///< reports per store transaction at most
  std::chrono::milliseconds commit_interval{20};  ///< a transaction waits this long to fill
  uint64_t chunk_reports = 4u << 20;          ///< a time chunk is sealed after this many reports
  std::chrono::seconds chunk_duration{3600};  ///< ... or after this long
  std::chrono::seconds retention{0};          ///< drop sealed chunks older than this; 0 = keep all
};

/// `[gateway]` and everything: the whole validated configuration (immutable once built).
struct GatewayConfig {
  std::string source;               ///< file it came from ("<string>" in tests)
  std::string data_dir = "./data";  ///< relative paths resolve against the working directory
  uint32_t shards = 0;              ///< 0 = "auto": one per core
  std::chrono::microseconds receive_window{400};  ///< see runtime::ShardOptions
  log::LogConfig log;                             ///< log.dir default: <data_dir>/log
  ReportProtocolConfig report;                    ///< `[protocols.report]`
  HttpConfig http;                                ///< `[http]`
  StoreConfig store;                              ///< `[sinks.store]`
  RegistryConfig registry;                        ///< `[registry]`
  std::vector<ModelSpec> models;                  ///< `[[models]]`, names unique
  std::vector<DeviceRange> devices;               ///< `[[devices]]`, disjoint ranges
};

/// Parses and validates TOML text. `origin` names the source in errors.
Result<GatewayConfig> parse_config(std::string_view toml, std::string_view origin = "<string>");
/// Reads and parses a file.
Result<GatewayConfig> load_config(const std::string& path);
/// The configuration reference (every key, type, default, doc) as Markdown.
std::string config_reference_markdown();

}  // namespace tianhe::control
