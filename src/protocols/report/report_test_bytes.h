// Test helper: builds protobuf wire bytes by hand, including the malformed ones no encoder
// produces (wrong wire types, unknown fields, truncations). Tests only; allocates freely.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace tianhe::protocols::report::testing {

/// A growable byte string with protobuf field writers.
class Bytes {
 public:
  /// Appends raw bytes.
  Bytes& raw(std::initializer_list<uint8_t> b) {
    v_.insert(v_.end(), b);
    return *this;
  }
  /// Appends a varint.
  Bytes& varint(uint64_t x) {
    while (x >= 0x80) {
      v_.push_back(static_cast<uint8_t>(x | 0x80));
      x >>= 7;
    }
    v_.push_back(static_cast<uint8_t>(x));
    return *this;
  }
  /// Appends a tag.
  Bytes& tag(uint32_t field, uint8_t wire_type) {
    return varint((uint64_t{field} << 3) | wire_type);
  }
  /// Appends a varint field.
  Bytes& u(uint32_t field, uint64_t x) { return tag(field, 0).varint(x); }
  /// Appends a length-delimited field holding `s`.
  Bytes& str(uint32_t field, std::string_view s) {
    tag(field, 2).varint(s.size());
    v_.insert(v_.end(), s.begin(), s.end());
    return *this;
  }
  /// Appends a length-delimited field holding the message `m`.
  Bytes& msg(uint32_t field, const Bytes& m) {
    tag(field, 2).varint(m.v_.size());
    v_.insert(v_.end(), m.v_.begin(), m.v_.end());
    return *this;
  }
  /// Appends a fixed64 field.
  Bytes& f64(uint32_t field, uint64_t bits) {
    tag(field, 1);
    for (int i = 0; i < 8; ++i) v_.push_back(static_cast<uint8_t>(bits >> (8 * i)));
    return *this;
  }
  /// The bytes.
  const std::vector<uint8_t>& vec() const { return v_; }
  /// Number of bytes.
  size_t size() const { return v_.size(); }

 private:
  std::vector<uint8_t> v_;
};

/// A valid metric {name = `name`, flag = true}.
inline Bytes flag_metric(std::string_view name = "door") {
  Bytes m;
  m.str(1, name).u(5, 1);
  return m;
}

/// A valid report of device `device` with one metric.
inline Bytes simple_report(uint64_t device = 7) {
  Bytes r;
  r.u(1, device).u(2, 1).msg(4, flag_metric());
  return r;
}

/// A valid envelope (version 1) holding `report`.
inline Bytes envelope(const Bytes& report) {
  Bytes e;
  e.u(1, 1).msg(2, report);
  return e;
}

}  // namespace tianhe::protocols::report::testing
