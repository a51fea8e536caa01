#include "core/metrics_json.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/record_format.h"

namespace tianhe::core {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

std::string metrics_json(std::span<const uint8_t> raw_metrics) {
  ReportBatch batch(1, kMaxMetricsPerReport);
  Report* r = batch.add_report();
  if (decode_metrics(raw_metrics, batch, *r) != RecordStatus::kOk) {
    return "{\"#malformed\":true}";
  }
  std::string out = "{";
  bool first = true;
  for (const Metric& m : batch.metrics(*r)) {
    if (!first) out += ',';
    first = false;
    if (m.name.empty()) {
      // Appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on "#" + to_string().
      char id[16];
      int len = std::snprintf(id, sizeof id, "#%u", m.id);
      append_json_string(out, std::string_view(id, static_cast<size_t>(len)));
    } else {
      append_json_string(out, m.name);
    }
    out += ':';
    switch (m.value.type) {
      case ValueType::kDouble: {
        if (!std::isfinite(m.value.f64)) {
          out += "null";
          break;
        }
        char buf[32];
        auto [end, ec] = std::to_chars(buf, buf + sizeof buf, m.value.f64);
        out.append(buf, ec == std::errc() ? end : buf);
        break;
      }
      case ValueType::kInt64: out += std::to_string(m.value.i64); break;
      case ValueType::kBool: out += m.value.b ? "true" : "false"; break;
      case ValueType::kString: append_json_string(out, m.value.str); break;
    }
  }
  out += '}';
  return out;
}

}  // namespace tianhe::core
