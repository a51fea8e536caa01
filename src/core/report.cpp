#include "core/report.h"

namespace tianhe::core {

namespace {
// Names by id; written only while extensions register, before threads start.
std::array<std::string_view, 256> g_protocol_names{};
}  // namespace

void set_protocol_name(Protocol p, std::string_view name) noexcept {
  g_protocol_names[static_cast<uint8_t>(p)] = name;
}

std::string_view protocol_name(Protocol p) noexcept {
  const std::string_view n = g_protocol_names[static_cast<uint8_t>(p)];
  return n.empty() ? "unknown" : n;
}

std::string_view value_type_name(ValueType t) noexcept {
  switch (t) {
    case ValueType::kDouble: return "double";
    case ValueType::kInt64: return "int64";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
  }
  return "unknown";
}

ReportBatch::ReportBatch(uint32_t max_reports, uint32_t max_metrics)
    : reports_(std::make_unique<Report[]>(max_reports)),
      metrics_(std::make_unique<Metric[]>(max_metrics)),
      max_reports_(max_reports),
      max_metrics_(max_metrics) {}

}  // namespace tianhe::core
