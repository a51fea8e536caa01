// The codec's checks, field by field, and the planner and value decoding against hand-worked
// layouts (every type in every word and byte order).
#include "protocols/modbus/modbus_codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "protocols/modbus/modbus_map.h"

namespace tianhe::protocols::modbus {
namespace {

using S = ResponseStatus;

std::vector<uint8_t> adu(uint16_t tid, uint16_t pid, uint8_t unit, std::vector<uint8_t> pdu,
                         int length_delta = 0) {
  const uint16_t len = static_cast<uint16_t>(pdu.size() + 1 + length_delta);
  std::vector<uint8_t> v = {static_cast<uint8_t>(tid >> 8),
                            static_cast<uint8_t>(tid),
                            static_cast<uint8_t>(pid >> 8),
                            static_cast<uint8_t>(pid),
                            static_cast<uint8_t>(len >> 8),
                            static_cast<uint8_t>(len),
                            unit};
  v.insert(v.end(), pdu.begin(), pdu.end());
  return v;
}

S check(const std::vector<uint8_t>& bytes, Expected e, Response* out = nullptr) {
  MbapHeader h;
  size_t n = 0;
  const S s = split_adu(bytes, h, n);
  if (s != S::kOk) return s;
  Response r;
  const S c = check_response(h, std::span(bytes).first(n), e, r);
  if (out != nullptr) *out = r;
  return c;
}

TEST(ModbusCodec, EncodesAReadRequest) {
  uint8_t out[kReadRequestBytes];
  encode_read_request({.transaction = 0x1234,
                       .unit = 7,
                       .table = Table::kInput,
                       .address = 0x0102,
                       .quantity = 125},
                      out);
  const uint8_t want[] = {0x12, 0x34, 0, 0, 0, 6, 7, 4, 0x01, 0x02, 0, 125};
  EXPECT_EQ(std::memcmp(out, want, sizeof want), 0);
}

TEST(ModbusCodec, AcceptsRegistersAndBits) {
  Response r;
  const auto regs = adu(1, 0, 1, {3, 4, 0, 1, 0, 2});
  EXPECT_EQ(check(regs, {1, 3, 2}, &r), S::kOk);
  ASSERT_EQ(r.data.size(), 4u);
  EXPECT_EQ(r.data[3], 2);
  EXPECT_EQ(check(adu(1, 0, 1, {1, 2, 0xFF, 0x03}), {1, 1, 10}, &r), S::kOk);
  EXPECT_EQ(check(adu(1, 0, 1, {2, 1, 0xFF}), {1, 2, 8}), S::kOk);
}

TEST(ModbusCodec, ChecksEveryField) {
  EXPECT_EQ(check(adu(1, 0, 1, {3, 2, 0}, 1), {1, 3, 1}), S::kNeedMore);
  EXPECT_EQ(check(adu(1, 1, 1, {3, 2, 0, 0}), {1, 3, 1}), S::kBadProtocolId);
  EXPECT_EQ(check(adu(1, 0, 1, {3}, 0), {1, 3, 1}), S::kBadLength);
  EXPECT_EQ(check(adu(1, 0, 2, {3, 2, 0, 0}), {1, 3, 1}), S::kUnitMismatch);
  EXPECT_EQ(check(adu(1, 0, 1, {4, 2, 0, 0}), {1, 3, 1}), S::kFunctionMismatch);
  EXPECT_EQ(check(adu(1, 0, 1, {0x84, 2}), {1, 3, 1}), S::kFunctionMismatch);
  EXPECT_EQ(check(adu(1, 0, 1, {0x83, 2, 0}), {1, 3, 1}), S::kBadExceptionLength);
  EXPECT_EQ(check(adu(1, 0, 1, {3, 4, 0, 0}), {1, 3, 1}), S::kByteCountMismatch);
  EXPECT_EQ(check(adu(1, 0, 1, {3, 2, 0, 0, 9}), {1, 3, 1}), S::kLengthMismatch);
  EXPECT_EQ(check(adu(1, 0, 1, {1, 2, 0xFF, 0x07}), {1, 1, 10}), S::kNonZeroPadding);
  Response r;
  const auto ex = adu(1, 0, 1, {0x83, 0x0B});
  EXPECT_EQ(check(ex, {1, 3, 1}, &r), S::kException);
  EXPECT_EQ(r.exception_code, 0x0B);
  EXPECT_EQ(exception_slot(0x0B), 0x0Bu);
  EXPECT_EQ(exception_name(exception_slot(0x0B)), "gateway_target_failed");
  EXPECT_EQ(exception_slot(0x40), 0u);
}

TEST(ModbusCodec, SplitsAStreamOfAdus) {
  auto a = adu(1, 0, 1, {3, 2, 0, 7});
  auto b = adu(2, 0, 1, {3, 2, 0, 8});
  a.insert(a.end(), b.begin(), b.end());
  MbapHeader h;
  size_t n = 0;
  ASSERT_EQ(split_adu(a, h, n), S::kOk);
  EXPECT_EQ(h.transaction, 1);
  EXPECT_EQ(n, 11u);
  ASSERT_EQ(split_adu(std::span(a).subspan(n), h, n), S::kOk);
  EXPECT_EQ(h.transaction, 2);
}

Point reg(uint16_t address, DataType t, Order wo = Order::kBig, Order bo = Order::kBig) {
  return Point{
      .table = Table::kHolding, .address = address, .type = t, .word_order = wo, .byte_order = bo};
}

TEST(ModbusMap, CoalescesAdjacentRegistersWithinLimits) {
  PlanLimits lim;
  lim.max_gap_registers = 2;
  std::vector<Point> pts = {reg(0, DataType::kFloat32), reg(2, DataType::kUint16),
                            reg(5, DataType::kInt16), reg(9, DataType::kInt16),
                            reg(200, DataType::kFloat64)};
  pts.push_back(Point{.table = Table::kCoil, .address = 3, .type = DataType::kBool});
  for (uint32_t i = 0; i < pts.size(); ++i) pts[i].metric = i;
  auto plan = plan_reads(pts, lim);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_EQ(plan->blocks.size(), 4u);
  EXPECT_EQ(plan->blocks[0].table, Table::kCoil);
  EXPECT_EQ(plan->blocks[1].address, 0);
  EXPECT_EQ(plan->blocks[1].quantity, 6);  // 0..5: the gap of 2 at 3..4 is read through
  EXPECT_EQ(plan->blocks[2].address, 9);   // the gap 6..8 is 3 > 2
  EXPECT_EQ(plan->blocks[3].quantity, 4);
  // 125 registers at most: 130 adjacent registers take two requests.
  std::vector<Point> many;
  for (uint16_t a = 0; a < 130; ++a) many.push_back(reg(a, DataType::kUint16));
  auto p2 = plan_reads(many, {});
  ASSERT_TRUE(p2.ok());
  ASSERT_EQ(p2->blocks.size(), 2u);
  EXPECT_EQ(p2->blocks[0].quantity, 125);
  std::vector<Point> bits;
  for (uint16_t a = 0; a < 2001; ++a) {
    bits.push_back(Point{.table = Table::kDiscrete, .address = a, .type = DataType::kBool});
  }
  auto p3 = plan_reads(bits, {});
  ASSERT_TRUE(p3.ok());
  EXPECT_EQ(p3->blocks.size(), 2u);
  EXPECT_EQ(p3->blocks[0].quantity, 2000);
}

TEST(ModbusMap, RefusesMisplacedPoints) {
  EXPECT_FALSE(plan_reads({Point{.table = Table::kCoil, .type = DataType::kInt16}}, {}).ok());
  EXPECT_FALSE(plan_reads({reg(65535, DataType::kInt32)}, {}).ok());
}

double decode(const Point& p, std::vector<uint8_t> data) {
  Block b{p.table, p.address, data_words(p.type), 0, 1};
  core::Value v;
  EXPECT_EQ(decode_point(p, b, data, v), DecodeStatus::kOk);
  return v.type == core::ValueType::kInt64 ? static_cast<double>(v.i64) : v.f64;
}

TEST(ModbusMap, DecodesEveryTypeInEveryOrder) {
  // 0x41C80000 = 25.0f; big-endian words 0x41C8 0x0000.
  EXPECT_EQ(decode(reg(0, DataType::kFloat32), {0x41, 0xC8, 0, 0}), 25.0);
  EXPECT_EQ(decode(reg(0, DataType::kFloat32, Order::kLittle), {0, 0, 0x41, 0xC8}), 25.0);
  EXPECT_EQ(decode(reg(0, DataType::kFloat32, Order::kBig, Order::kLittle), {0xC8, 0x41, 0, 0}),
            25.0);
  EXPECT_EQ(decode(reg(0, DataType::kFloat32, Order::kLittle, Order::kLittle), {0, 0, 0xC8, 0x41}),
            25.0);
  EXPECT_EQ(decode(reg(0, DataType::kInt16), {0xFF, 0xFE}), -2);
  EXPECT_EQ(decode(reg(0, DataType::kUint16), {0xFF, 0xFE}), 65534);
  EXPECT_EQ(decode(reg(0, DataType::kInt32, Order::kLittle), {0xFF, 0xFE, 0xFF, 0xFF}), -2);
  EXPECT_EQ(decode(reg(0, DataType::kUint32), {0x00, 0x01, 0x00, 0x02}), 65538);
  EXPECT_EQ(decode(reg(0, DataType::kInt64), {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFD}), -3);
  EXPECT_EQ(decode(reg(0, DataType::kUint64, Order::kLittle), {0, 5, 0, 0, 0, 0, 0, 1}),
            281474976710661.0);  // 0x0001_0000_0000_0005
  // 1.5 as a double is 0x3FF8000000000000.
  EXPECT_EQ(decode(reg(0, DataType::kFloat64), {0x3F, 0xF8, 0, 0, 0, 0, 0, 0}), 1.5);
  Point scaled = reg(0, DataType::kInt16);
  scaled.scale = 0.1;
  scaled.offset = -40;
  EXPECT_NEAR(decode(scaled, {0x01, 0xF4}), 10.0, 1e-9);  // 500 * 0.1 - 40
  Point as_int = reg(0, DataType::kUint16);
  as_int.out = core::ValueType::kInt64;
  EXPECT_EQ(decode(as_int, {0x12, 0x34}), 0x1234);
  Point bit{
      .table = Table::kCoil, .address = 10, .type = DataType::kBool, .out = core::ValueType::kBool};
  Block b{Table::kCoil, 0, 16, 0, 1};
  core::Value v;
  const uint8_t bits[] = {0x00, 0x04};  // address 10 = byte 1 bit 2
  ASSERT_EQ(decode_point(bit, b, bits, v), DecodeStatus::kOk);
  EXPECT_TRUE(v.b);
  Point big = reg(0, DataType::kUint64);
  big.out = core::ValueType::kInt64;
  const uint8_t ones[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  Block b4{Table::kHolding, 0, 4, 0, 1};
  EXPECT_EQ(decode_point(big, b4, ones, v), DecodeStatus::kOutOfRange);
  Point nan = reg(0, DataType::kFloat32);
  const uint8_t nan_bytes[] = {0x7F, 0xC0, 0, 0};
  Block b2{Table::kHolding, 0, 2, 0, 1};
  EXPECT_EQ(decode_point(nan, b2, nan_bytes, v), DecodeStatus::kNotFinite);
}

}  // namespace
}  // namespace tianhe::protocols::modbus
