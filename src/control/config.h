// Gateway configuration: one TOML file, validated fully before anything starts. Every error
// names the key path and the fix ("log.durability: expected one of sync, batch, none").
#pragma once

#include <any>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_table.h"
#include "core/report.h"
#include "core/result.h"
#include "log/log_config.h"
#include "pipeline/model_spec.h"

namespace tianhe::runtime {
class Extensions;
}

namespace tianhe::control {

// The fleet's data contract lives with the validator that enforces it (pipeline/).
using pipeline::DeviceRange;
using pipeline::MetricSpec;
using pipeline::ModelSpec;
using pipeline::RegistryConfig;
using pipeline::UnknownDevicePolicy;

using config::Endpoint;
using config::parse_endpoint;

/// `[http]`: API, /metrics, /debug.
struct HttpConfig {
  bool enabled = true;                                ///< serve the API, /metrics and /debug
  Endpoint listen{"127.0.0.1", 8080};                 ///< TCP address
  uint32_t max_connections = 256;                     ///< further connections are refused
  std::chrono::milliseconds idle_timeout{60'000};     ///< close connections quiet this long
  std::chrono::milliseconds request_timeout{10'000};  ///< 408 when a request takes longer
};

/// `[gateway]` and everything: the whole validated configuration (immutable once built).
struct GatewayConfig {
  std::string source;               ///< file it came from ("<string>" in tests)
  std::string data_dir = "./data";  ///< relative paths resolve against the working directory
  uint32_t shards = 0;              ///< 0 = "auto": one per core
  std::chrono::microseconds receive_window{400};  ///< see runtime::ShardOptions
  log::LogConfig log;                             ///< log.dir default: <data_dir>/log
  HttpConfig http;                                ///< `[http]`
  /// The tables of the extensions compiled in (`[protocols.<name>]`, `[sinks.<name>]`), by
  /// header ("protocols.report"): each holds the struct its extension declared, with defaults
  /// when the file has no such table.
  std::map<std::string, std::any, std::less<>> extensions;

  /// The parsed table `header` as its extension's struct; nullptr when no extension compiled in
  /// declares it (or `T` is not its struct).
  template <typename T>
  const T* extension(std::string_view header) const {
    auto it = extensions.find(header);
    return it == extensions.end() ? nullptr : std::any_cast<T>(&it->second);
  }
  template <typename T>
  T* extension(std::string_view header) {
    auto it = extensions.find(header);
    return it == extensions.end() ? nullptr : std::any_cast<T>(&it->second);
  }
  RegistryConfig registry;           ///< `[registry]`
  std::vector<ModelSpec> models;     ///< `[[models]]`, names unique
  std::vector<DeviceRange> devices;  ///< `[[devices]]`, disjoint ranges
};

/// Parses and validates TOML text. `origin` names the source in errors.
Result<GatewayConfig> parse_config(std::string_view toml, std::string_view origin = "<string>");
/// The same with the extensions to take tables from (the default is
/// runtime::builtin_extensions()) and, when not empty, a data directory replacing
/// gateway.data_dir (`--data-dir`: the directories that default to live under it follow).
Result<GatewayConfig> parse_config(std::string_view toml, std::string_view origin,
                                   const runtime::Extensions& extensions,
                                   std::string_view data_dir_override = {});
/// Reads and parses a file (see parse_config for `data_dir_override`).
Result<GatewayConfig> load_config(const std::string& path, std::string_view data_dir_override = {});
/// The configuration reference (every key, type, default, doc) as Markdown.
std::string config_reference_markdown();

}  // namespace tianhe::control
