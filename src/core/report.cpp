#include "core/report.h"

namespace tianhe::core {

std::string_view protocol_name(Protocol p) noexcept {
  switch (p) {
    case Protocol::kReport: return "report";
    case Protocol::kMqttSn: return "mqtt_sn";
    case Protocol::kModbus: return "modbus";
    case Protocol::kLorawan: return "lorawan";
    case Protocol::kMqtt: return "mqtt";
  }
  return "unknown";
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
