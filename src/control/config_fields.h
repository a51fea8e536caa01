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

namespace tianhe::control::config_fields {

/// How a field's TOML value is read and checked.
enum class Kind : uint8_t {
  kBool,       ///< true / false
  kString,     ///< any string (a check may restrict it)
  kInt,        ///< integer in [min, max]
  kIntOrAuto,  ///< "auto" (read as 0) or an integer in [min, max]
  kSize,       ///< byte count: integer or "64MiB"; in [min, max]
  kDuration,   ///< "500us", "1ms", "2s", "1h", "30d" or "0"; nanoseconds in [min, max]
  kEndpoint,   ///< "host:port"
  kEnum,       ///< one of `choices`
  kNumber,     ///< integer or float
};

/// The user-facing name of a kind ("size", "duration", ...), used in docs and errors.
std::string_view kind_name(Kind kind) noexcept;

/// A value read from TOML; the member matching the field's kind is set.
struct Parsed {
  bool b = false;
  int64_t i = 0;  ///< kInt, kIntOrAuto, kSize; nanoseconds for kDuration
  double d = 0;   ///< kNumber
  std::string s;  ///< kString, kEnum
  Endpoint ep;    ///< kEndpoint
};

/// One key of a TOML table that fills a `T`.
template <typename T>
struct Field {
  std::string_view key;                      ///< key inside its table, e.g. "flush_interval"
  Kind kind = Kind::kString;                 ///< how the value is read
  std::string_view default_text;             ///< default as documented ("1ms"); empty when required
  std::string_view doc;                      ///< one sentence for the reference
  void (*set)(T&, const Parsed&) = nullptr;  ///< stores a checked value
  std::string (*check)(const Parsed&) = nullptr;   ///< extra check: "" or the problem + fix
  int64_t min = 0;                                 ///< kInt/kIntOrAuto/kSize/kDuration
  int64_t max = INT64_MAX;                         ///< ditto (inclusive)
  std::span<const std::string_view> choices = {};  ///< kEnum
  std::string_view what = "a valid value";         ///< kEnum: "a type", "a policy"
  bool required = false;                           ///< must be present
  int64_t unit_ns = 1;  ///< kDuration: the value must be a whole multiple of this
};

/// A TOML table and its fields. `header` is how it is written ("log", "[models]").
template <typename T>
struct Section {
  std::string_view header;                           ///< "log", "protocols.report", "[models]"
  std::string_view doc;                              ///< what the table configures
  std::span<const Field<T>> fields;                  ///< its keys
  std::span<const std::string_view> subtables = {};  ///< keys holding nested tables
};

/// The scalar sections of GatewayConfig, in document order.
std::span<const Section<GatewayConfig>> gateway_sections() noexcept;
/// `[[models]]`.
const Section<ModelSpec>& model_section() noexcept;
/// `[[models.metrics]]`.
const Section<MetricSpec>& metric_section() noexcept;
/// `[[devices]]`.
const Section<DeviceRange>& device_section() noexcept;

/// Formats a byte count with the largest exact binary unit ("64MiB", "1000").
std::string format_size(int64_t bytes);
/// Formats a byte count for people, to one decimal in the largest binary unit it reaches
/// ("512 B", "25.2 MiB", "1.5 GiB").
std::string format_bytes_approx(uint64_t bytes);
/// Formats nanoseconds with the largest exact unit ("1ms", "90s").
std::string format_duration(int64_t ns);
/// Parses a size ("64MiB", "4096", "10MB"); "" on success, else the problem.
std::string parse_size(std::string_view text, int64_t& bytes);
/// Parses a duration ("500us", "2s", "0"); "" on success, else the problem.
std::string parse_duration(std::string_view text, int64_t& ns);
/// Levenshtein distance (for "did you mean" suggestions).
size_t edit_distance(std::string_view a, std::string_view b);

/// Most devices a configuration may declare in all.
inline constexpr uint64_t kMaxDevices = 10'000'000;
/// Most metrics in one model (the registry keeps a 64-bit required mask).
inline constexpr size_t kMaxModelMetrics = 64;
/// Longest metric name in bytes.
inline constexpr size_t kMaxMetricNameBytes = 64;

}  // namespace tianhe::control::config_fields
