// The configuration declared once: a table of fields {key, type, default, doc, check} per TOML
// table. It drives parsing, range checks, defaults (the doc's default column), error messages and
// the reference in docs/configuration.md. Used by config.cpp; exposed for tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "control/config.h"
#include "core/config_table.h"

namespace tianhe::control::config_fields {

using config::edit_distance;
using config::Field;
using config::format_bytes_approx;
using config::format_duration;
using config::format_size;
using config::Kind;
using config::kind_name;
using config::parse_duration;
using config::parse_size;
using config::Parsed;
using config::Section;

/// The scalar sections of GatewayConfig, in document order.
std::span<const Section<GatewayConfig>> gateway_sections() noexcept;
/// `[[models]]`.
const Section<ModelSpec>& model_section() noexcept;
/// `[[models.metrics]]`.
const Section<MetricSpec>& metric_section() noexcept;
/// `[[devices]]`.
const Section<DeviceRange>& device_section() noexcept;
/// `[codecs]`: the user codecs' budgets, parsed like an extension's table into a
/// runtime::CodecLimits under GatewayConfig::extensions["codecs"] (so it reaches the data plane
/// with the other tables).
const config::ConfigTable& codecs_table();
/// `[tracing]`: spans and fates, parsed the same way into a runtime::TracingOptions under
/// GatewayConfig::extensions["tracing"].
const config::ConfigTable& tracing_table();

/// Most devices a configuration may declare in all.
inline constexpr uint64_t kMaxDevices = 10'000'000;
/// Most metrics in one model (the registry keeps a 64-bit required mask).
inline constexpr size_t kMaxModelMetrics = 64;
/// Longest metric name in bytes.
inline constexpr size_t kMaxMetricNameBytes = 64;

}  // namespace tianhe::control::config_fields
