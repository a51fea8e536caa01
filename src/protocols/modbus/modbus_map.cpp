#include "protocols/modbus/modbus_map.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <string>

namespace tianhe::protocols::modbus {

std::string_view data_type_name(DataType t) noexcept {
  switch (t) {
    case DataType::kBool: return "bool";
    case DataType::kInt16: return "int16";
    case DataType::kUint16: return "uint16";
    case DataType::kInt32: return "int32";
    case DataType::kUint32: return "uint32";
    case DataType::kFloat32: return "float32";
    case DataType::kInt64: return "int64";
    case DataType::kUint64: return "uint64";
    case DataType::kFloat64: return "float64";
    default: return "unknown";
  }
}

Result<Plan> plan_reads(std::vector<Point> points, const PlanLimits& limits) {
  Plan plan;
  for (const Point& p : points) {
    if (is_bit_table(p.table) && p.type != DataType::kBool) {
      return make_error("metric " + std::to_string(p.metric) + ": a " +
                        std::string(table_name(p.table)) + " holds one bit; use type = \"bool\"");
    }
    const uint32_t width = is_bit_table(p.table) ? 1u : data_words(p.type);
    if (p.address + width > 65536u) {
      return make_error("metric " + std::to_string(p.metric) + ": address " +
                        std::to_string(p.address) + " + " + std::to_string(width) +
                        " registers runs past 65535");
    }
  }
  std::stable_sort(points.begin(), points.end(), [](const Point& a, const Point& b) {
    return a.table != b.table ? a.table < b.table : a.address < b.address;
  });
  plan.points = std::move(points);
  // Greedy in address order: a point joins the open block when it is in the same table, the
  // unused addresses before it are at most the gap limit, and the block stays within one
  // request's quantity (application protocol §6.1-6.4: 2000 bits, 125 registers).
  uint32_t end = 0;  // exclusive end address of the open block
  for (uint32_t i = 0; i < plan.points.size(); ++i) {
    const Point& p = plan.points[i];
    const bool bits = is_bit_table(p.table);
    const uint32_t width = bits ? 1u : data_words(p.type);
    const uint32_t max_q = bits ? limits.max_bits : limits.max_registers;
    const uint32_t gap = bits ? limits.max_gap_bits : limits.max_gap_registers;
    if (!plan.blocks.empty()) {
      Block& b = plan.blocks.back();
      const uint32_t new_end = std::max(end, p.address + width);
      if (b.table == p.table && p.address <= end + gap && new_end - b.address <= max_q) {
        end = new_end;
        b.quantity = static_cast<uint16_t>(end - b.address);
        ++b.point_count;
        continue;
      }
    }
    if (width > max_q) {
      return make_error("metric " + std::to_string(p.metric) + ": spans " + std::to_string(width) +
                        " registers, more than one request may read");
    }
    plan.blocks.push_back(Block{p.table, p.address, static_cast<uint16_t>(width), i, 1});
    end = p.address + width;
  }
  return plan;
}

RawValue read_registers(const Point& p, std::span<const uint8_t> data) noexcept {
  // Application protocol §4.2: a register travels big-endian (high byte first). Multi-register
  // values have no standard order; word_order says which register holds the high word, and
  // byte_order whether a device swapped the bytes inside each register.
  const uint16_t n = data_words(p.type);
  uint64_t raw = 0;
  for (uint16_t k = 0; k < n; ++k) {
    const uint16_t w = p.word_order == Order::kBig ? k : static_cast<uint16_t>(n - 1 - k);
    uint16_t word = static_cast<uint16_t>((data[2u * w] << 8) | data[2u * w + 1]);
    if (p.byte_order == Order::kLittle) word = static_cast<uint16_t>((word >> 8) | (word << 8));
    raw = (raw << 16) | word;
  }
  RawValue v;
  switch (p.type) {
    case DataType::kBool:
      v.is_unsigned = true;
      v.u = raw != 0 ? 1 : 0;
      break;
    case DataType::kInt16: v.i = static_cast<int16_t>(raw); break;
    case DataType::kInt32: v.i = static_cast<int32_t>(raw); break;
    case DataType::kInt64: v.i = static_cast<int64_t>(raw); break;
    case DataType::kUint16:
    case DataType::kUint32:
    case DataType::kUint64:
      v.is_unsigned = true;
      v.u = raw;
      break;
    case DataType::kFloat32:
      v.is_float = true;
      v.f = std::bit_cast<float>(static_cast<uint32_t>(raw));
      break;
    case DataType::kFloat64:
      v.is_float = true;
      v.f = std::bit_cast<double>(raw);
      break;
    default: break;
  }
  return v;
}

DecodeStatus decode_point(const Point& p, const Block& b, std::span<const uint8_t> data,
                          core::Value& out) noexcept {
  const uint32_t at = static_cast<uint32_t>(p.address - b.address);
  RawValue raw;
  if (is_bit_table(p.table)) {
    // §6.1/6.2: bits are packed LSB first, the first requested address in bit 0 of byte 0.
    raw.is_unsigned = true;
    raw.u = (data[at / 8] >> (at % 8)) & 1u;
  } else {
    raw = read_registers(p, data.subspan(2u * at));
  }
  const bool plain = p.scale == 1 && p.offset == 0;
  if (p.out == core::ValueType::kBool) {
    out.type = core::ValueType::kBool;
    out.b = raw.is_float ? raw.f != 0 : raw.is_unsigned ? raw.u != 0 : raw.i != 0;
    return DecodeStatus::kOk;
  }
  if (p.out == core::ValueType::kInt64 && plain && !raw.is_float) {
    // Integers are kept exactly when neither scaled nor offset.
    if (raw.is_unsigned && raw.u > static_cast<uint64_t>(INT64_MAX)) {
      return DecodeStatus::kOutOfRange;
    }
    out.type = core::ValueType::kInt64;
    out.i64 = raw.is_unsigned ? static_cast<int64_t>(raw.u) : raw.i;
    return DecodeStatus::kOk;
  }
  const double x = raw.is_float      ? raw.f
                   : raw.is_unsigned ? static_cast<double>(raw.u)
                                     : static_cast<double>(raw.i);
  const double v = x * p.scale + p.offset;
  if (!std::isfinite(v)) return DecodeStatus::kNotFinite;
  if (p.out == core::ValueType::kInt64) {
    // 2^63 as a double: anything at or above it (or below -2^63) does not fit.
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) {
      return DecodeStatus::kOutOfRange;
    }
    out.type = core::ValueType::kInt64;
    out.i64 = std::llround(v);
    return DecodeStatus::kOk;
  }
  out.type = core::ValueType::kDouble;
  out.f64 = v;
  return DecodeStatus::kOk;
}

}  // namespace tianhe::protocols::modbus
