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
