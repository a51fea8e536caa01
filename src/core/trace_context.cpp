#include "core/trace_context.h"

#include <cstdint>

namespace tianhe::core {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // W3C Trace Context: HEXDIGLC only, upper case is invalid
}

// Decodes 2 * out.size() lowercase hex digits; false on a bad digit or an all-zero value.
bool decode_hex_id(std::string_view text, std::span<uint8_t> out) noexcept {
  uint8_t any = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_value(text[2 * i]);
    const int lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
    any |= out[i];
  }
  return any != 0;
}

}  // namespace

bool parse_traceparent(std::string_view text, TraceContext& out) noexcept {
  // W3C Trace Context §3.2: version "00" is exactly version-trace_id-parent_id-flags.
  if (text.size() != kTraceparentLength) return false;
  if (text[0] != '0' || text[1] != '0' || text[2] != '-' || text[35] != '-' || text[52] != '-') {
    return false;
  }
  TraceContext t;
  // §3.2.2.3/§3.2.2.4: all-zero trace-id and parent-id are invalid.
  if (!decode_hex_id(text.substr(3, 32), t.trace_id)) return false;
  if (!decode_hex_id(text.substr(36, 16), t.span_id)) return false;
  const int hi = hex_value(text[53]);
  const int lo = hex_value(text[54]);
  if (hi < 0 || lo < 0) return false;
  t.flags = static_cast<uint8_t>((hi << 4) | lo);
  t.present = true;
  out = t;
  return true;
}

namespace {

/// 1..`max` lowercase hex digits as a 56-bit value, the digits being its most significant ones
/// (OpenTelemetry tracestate: th "0c" is 0x0c000000000000); false if malformed.
bool hex56(std::string_view v, size_t min, uint64_t& out) noexcept {
  if (v.size() < min || v.size() > 14) return false;
  uint64_t x = 0;
  for (const char c : v) {
    const int d = hex_value(c);
    if (d < 0) return false;
    x = x << 4 | static_cast<uint64_t>(d);
  }
  out = x << (4 * (14 - v.size()));
  return true;
}

std::string_view trim_ows(std::string_view s) noexcept {
  // W3C Trace Context §3.3.1.2: list members are separated by "," with optional spaces/tabs.
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool parse_tracestate(std::string_view text, TraceContext& trace) noexcept {
  trace.threshold = kNoTraceValue;
  trace.randomness = kNoTraceValue;
  std::string_view ot;
  bool found = false;
  for (size_t members = 0; !text.empty() && members < kMaxTracestateMembers; ++members) {
    const size_t comma = text.find(',');
    const std::string_view member = trim_ows(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (member.starts_with("ot=")) {
      ot = member.substr(3);
      found = true;
      break;  // keys are unique in a tracestate (§3.3.1.3.1)
    }
  }
  if (!found) return true;
  // OpenTelemetry "TraceState handling": the ot value is sub-keys `key:value` joined by ";".
  uint64_t th = kNoTraceValue, rv = kNoTraceValue;
  for (bool more = !ot.empty(); more;) {
    const size_t semi = ot.find(';');
    const std::string_view entry = ot.substr(0, semi);
    more = semi != std::string_view::npos;  // then an entry must follow (no trailing ";")
    ot = more ? ot.substr(semi + 1) : std::string_view{};
    const size_t colon = entry.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    const std::string_view key = entry.substr(0, colon), value = entry.substr(colon + 1);
    if (key == "th" && !hex56(value, 1, th)) return false;
    if (key == "rv" && !hex56(value, 14, rv)) return false;
  }
  trace.randomness = rv;
  // A threshold only means something for a sampled trace whose randomness reaches it; else
  // the specification has it erased.
  const uint64_t r = rv != kNoTraceValue ? rv : [&] {
    uint64_t x = 0;
    for (size_t i = 9; i < 16; ++i) x = x << 8 | trace.trace_id[i];
    return x;
  }();
  if (th != kNoTraceValue && (trace.flags & 1) != 0 && r >= th) trace.threshold = th;
  return true;
}

size_t format_traceparent(const TraceContext& trace, std::span<char> out) noexcept {
  if (out.size() < kTraceparentLength) return 0;
  constexpr char kHex[] = "0123456789abcdef";
  size_t i = 0;
  auto put_hex = [&](uint8_t b) {
    out[i++] = kHex[b >> 4];
    out[i++] = kHex[b & 0xF];
  };
  out[i++] = '0';
  out[i++] = '0';
  out[i++] = '-';
  for (uint8_t b : trace.trace_id) put_hex(b);
  out[i++] = '-';
  for (uint8_t b : trace.span_id) put_hex(b);
  out[i++] = '-';
  put_hex(trace.flags);
  return i;
}

std::string traceparent_string(const TraceContext& trace) {
  char buf[kTraceparentLength];
  return std::string(buf, format_traceparent(trace, buf));
}

}  // namespace tianhe::core
