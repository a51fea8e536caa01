// A report's encoded metrics section (core/record_format.h) as a JSON object, for every output
// that shows reports as JSON (the store's API and `tianhe query`, the JSON-lines sink).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace tianhe::core {

/// Renders an encoded metrics section as a JSON object: {"temperature":21.5,"door_open":true,
/// "#9":3} (a metric sent by id is named "#<id>"; a non-finite double is null). Malformed input
/// yields {"#malformed":true}.
std::string metrics_json(std::span<const uint8_t> raw_metrics);

/// Appends `s` as a JSON string (quoted, escaped) to `out`.
void append_json_string(std::string& out, std::string_view s);

}  // namespace tianhe::core
