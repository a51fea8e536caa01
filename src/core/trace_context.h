// W3C Trace Context (traceparent, version 00): strict parsing and formatting of the header a
// report carries (the report protocol's field, an MQTT 5 user property, a sink's header).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "core/report.h"

namespace tianhe::core {

/// Length of a version-00 traceparent ("00-" 32 hex "-" 16 hex "-" 2 hex).
inline constexpr size_t kTraceparentLength = 55;

/// Parses a W3C traceparent strictly (version 00, lowercase hex, non-zero ids); false if invalid.
bool parse_traceparent(std::string_view text, TraceContext& out) noexcept;

/// The most list members a tracestate has (W3C Trace Context §3.3.1.1); the parser stops there.
inline constexpr size_t kMaxTracestateMembers = 32;

/// Reads the OpenTelemetry entry (`ot=th:...;rv:...`) of a W3C tracestate into `trace`, whose
/// traceparent is already parsed: `threshold` (th, 1–14 lowercase hex digits) and `randomness`
/// (rv, exactly 14). A threshold the traceparent contradicts (sampled, but the randomness below
/// it; or not sampled) is left out, as the specification says. Bounded: at most
/// kMaxTracestateMembers members are looked at. False when the `ot` entry is malformed (then
/// neither value is set); a tracestate without one is fine.
bool parse_tracestate(std::string_view text, TraceContext& trace) noexcept;

/// Writes `trace` as a version-00 traceparent; returns 55, or 0 if `out` is shorter than that.
size_t format_traceparent(const TraceContext& trace, std::span<char> out) noexcept;

/// `trace` as a traceparent string (control plane and tests).
std::string traceparent_string(const TraceContext& trace);

}  // namespace tianhe::core
