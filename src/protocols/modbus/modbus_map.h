// A device model's register map: where each metric lives (table, address, type, word and byte
// order, scale, offset), the read plan that covers them in as few requests as the limits allow
// (adjacent registers coalesced, gaps up to max_gap read through), and the decoding of a
// response's bytes into each metric's value. Pure; built on the control plane, read-only after.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/report.h"
#include "core/result.h"
#include "protocols/modbus/modbus_codec.h"

namespace tianhe::protocols::modbus {

/// How a value is laid out in its registers (or one bit).
enum class DataType : uint8_t {
  kBool = 0,  ///< one coil or discrete input; in a register table: the register is non-zero
  kInt16,
  kUint16,
  kInt32,
  kUint32,
  kFloat32,
  kInt64,
  kUint64,
  kFloat64,
  kCount,
};

/// The config name of a type ("bool", "int16", ..., "float64").
std::string_view data_type_name(DataType t) noexcept;

/// Registers a type spans (1 for bool and 16-bit types, 2 for 32-bit, 4 for 64-bit).
constexpr uint16_t data_words(DataType t) noexcept {
  switch (t) {
    case DataType::kInt32:
    case DataType::kUint32:
    case DataType::kFloat32: return 2;
    case DataType::kInt64:
    case DataType::kUint64:
    case DataType::kFloat64: return 4;
    default: return 1;
  }
}

/// Word or byte order: big (most significant first, the Modbus default) or little.
enum class Order : uint8_t { kBig = 0, kLittle };

/// One metric's place in the device.
struct Point {
  Table table = Table::kHolding;
  uint16_t address = 0;
  DataType type = DataType::kUint16;
  Order word_order = Order::kBig;  ///< for types of more than one register
  Order byte_order = Order::kBig;  ///< within each register
  double scale = 1;                ///< value = raw * scale + offset
  double offset = 0;
  core::ValueType out = core::ValueType::kDouble;  ///< the model metric's type
  uint32_t metric = 0;                             ///< the metric's index in its model
};

/// One read request of a plan and the points it covers.
struct Block {
  Table table = Table::kHolding;
  uint16_t address = 0;
  uint16_t quantity = 0;     ///< registers or bits
  uint32_t first_point = 0;  ///< Plan::points[first_point, first_point + point_count)
  uint32_t point_count = 0;
};

/// Request size limits: at most max_registers / max_bits a request, and gaps of up to
/// max_gap_registers / max_gap_bits unused addresses read through to save a request.
struct PlanLimits {
  uint16_t max_registers = kMaxReadRegisters;
  uint16_t max_bits = kMaxReadBits;
  uint16_t max_gap_registers = 8;
  uint16_t max_gap_bits = 64;
};

/// The requests that read a model's points, in table and address order.
struct Plan {
  std::vector<Point> points;  ///< sorted by (table, address)
  std::vector<Block> blocks;
};

/// Plans the reads of `points`; an error names the overlapping or misplaced metric by index.
Result<Plan> plan_reads(std::vector<Point> points, const PlanLimits& limits);

/// Why a point's value could not be decoded.
enum class DecodeStatus : uint8_t {
  kOk = 0,
  kNotFinite,   ///< a float that is NaN or infinite (left out of the report)
  kOutOfRange,  ///< does not fit the metric's int64 (left out of the report)
};

/// Decodes point `p` of block `b` from the block's response data into `out`.
DecodeStatus decode_point(const Point& p, const Block& b, std::span<const uint8_t> data,
                          core::Value& out) noexcept;

/// The raw number a point holds (before scale and offset), as the widest type: the value of an
/// integer type exactly as int64 or uint64 (`is_unsigned`), a float's as `f`.
struct RawValue {
  bool is_float = false;
  bool is_unsigned = false;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
};

/// The raw value of a register point from its words (data points at its first register).
RawValue read_registers(const Point& p, std::span<const uint8_t> data) noexcept;

}  // namespace tianhe::protocols::modbus
