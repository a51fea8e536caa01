// Protobuf wire-format primitives shared by the report parser and encoders (internal to this
// folder). Encoding: https://protobuf.dev/programming-guides/encoding/. Every reader is bounded
// by `end` and reports a DropReason instead of reading past it.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "protocols/report/report_parser.h"

namespace tianhe::protocols::report::wire {

/// Protobuf wire types (3 and 4, the deprecated groups, are never valid here).
enum WireType : uint8_t { kVarint = 0, kI64 = 1, kLen = 2, kI32 = 5 };

/// Longest varint: 64 bits in 7-bit groups.
inline constexpr size_t kMaxVarintBytes = 10;

/// Reads a varint at `p` (advancing it); kTruncated or kBadVarint (over 10 bytes / 64 bits).
inline DropReason read_varint(const uint8_t*& p, const uint8_t* end, uint64_t& value) noexcept {
  uint64_t result = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (p == end) return DropReason::kTruncated;
    const uint8_t b = *p++;
    // The tenth byte holds only bit 63: anything more overflows 64 bits.
    if (shift == 63 && b > 1) return DropReason::kBadVarint;
    result |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      value = result;
      return DropReason::kNone;
    }
  }
  return DropReason::kBadVarint;
}

/// Reads a varint that must fit in 32 bits (uint32 fields, enums, lengths of nested messages).
inline DropReason read_varint32(const uint8_t*& p, const uint8_t* end, uint32_t& value) noexcept {
  uint64_t v = 0;
  if (DropReason r = read_varint(p, end, v); r != DropReason::kNone) return r;
  // protobuf would truncate silently; a truncated seq or id would mis-acknowledge, so reject.
  if (v > UINT32_MAX) return DropReason::kBadVarint;
  value = static_cast<uint32_t>(v);
  return DropReason::kNone;
}

/// Reads a field tag; kBadTag for field number 0, tags over 32 bits or wire types 6 and 7.
inline DropReason read_tag(const uint8_t*& p, const uint8_t* end, uint32_t& field,
                           uint8_t& wire_type) noexcept {
  uint64_t tag = 0;
  if (DropReason r = read_varint(p, end, tag); r != DropReason::kNone) return r;
  if (tag > UINT32_MAX || (tag >> 3) == 0 || (tag & 7) > 5) return DropReason::kBadTag;
  field = static_cast<uint32_t>(tag >> 3);
  wire_type = static_cast<uint8_t>(tag & 7);
  return DropReason::kNone;
}

/// Reads a length prefix and returns the bytes it covers (advancing `p` past them).
inline DropReason read_len(const uint8_t*& p, const uint8_t* end, const uint8_t*& begin,
                           size_t& size) noexcept {
  uint64_t n = 0;
  if (DropReason r = read_varint(p, end, n); r != DropReason::kNone) return r;
  if (n > static_cast<uint64_t>(end - p)) return DropReason::kTruncated;
  begin = p;
  size = static_cast<size_t>(n);
  p += size;
  return DropReason::kNone;
}

/// Reads a little-endian fixed64 (wire type I64).
inline DropReason read_fixed64(const uint8_t*& p, const uint8_t* end, uint64_t& value) noexcept {
  if (end - p < 8) return DropReason::kTruncated;
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  p += 8;
  value = v;
  return DropReason::kNone;
}

/// Zig-zag decoding of a sint64.
inline int64_t zigzag_decode(uint64_t v) noexcept {
  return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
}

/// Zig-zag encoding of a sint64.
inline uint64_t zigzag_encode(int64_t v) noexcept {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

/// Bytes a varint of `v` takes.
inline size_t varint_size(uint64_t v) noexcept {
  return static_cast<size_t>(std::bit_width(v | 1) + 6) / 7;
}

/// Bytes of a tag for `field` (any wire type).
inline size_t tag_size(uint32_t field) noexcept {
  return varint_size(uint64_t{field} << 3);
}

/// Bytes of a length-delimited field holding `len` bytes.
inline size_t len_field_size(uint32_t field, size_t len) noexcept {
  return tag_size(field) + varint_size(len) + len;
}

/// Bytes of a varint field holding `v`.
inline size_t varint_field_size(uint32_t field, uint64_t v) noexcept {
  return tag_size(field) + varint_size(v);
}

/// A bounds-unchecked writer; callers size the output first (the *_size helpers above).
class Writer {
 public:
  /// Writes from `p` on.
  explicit Writer(uint8_t* p) noexcept : p_(p) {}
  /// Appends a varint.
  void varint(uint64_t v) noexcept {
    while (v >= 0x80) {
      *p_++ = static_cast<uint8_t>(v | 0x80);
      v >>= 7;
    }
    *p_++ = static_cast<uint8_t>(v);
  }
  /// Appends a tag.
  void tag(uint32_t field, WireType wt) noexcept { varint((uint64_t{field} << 3) | wt); }
  /// Appends a varint field.
  void varint_field(uint32_t field, uint64_t v) noexcept {
    tag(field, kVarint);
    varint(v);
  }
  /// Appends a length-delimited field's tag and length (the caller writes the bytes).
  void len_header(uint32_t field, size_t len) noexcept {
    tag(field, kLen);
    varint(len);
  }
  /// Appends a length-delimited field holding `s`.
  void bytes_field(uint32_t field, std::string_view s) noexcept {
    len_header(field, s.size());
    if (!s.empty()) std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  /// Appends a little-endian fixed64 field.
  void fixed64_field(uint32_t field, uint64_t v) noexcept {
    tag(field, kI64);
    for (int i = 0; i < 8; ++i) *p_++ = static_cast<uint8_t>(v >> (8 * i));
  }
  /// The next byte to be written.
  uint8_t* pos() const noexcept { return p_; }

 private:
  uint8_t* p_;
};

}  // namespace tianhe::protocols::report::wire
