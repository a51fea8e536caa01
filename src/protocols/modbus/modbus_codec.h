// The Modbus TCP wire format as a client sees it: read requests (function codes 1-4) and the
// strict check of every response field (MODBUS Application Protocol v1.1b3, MODBUS Messaging on
// TCP/IP Implementation Guide v1.0b). Pure: bytes in, verdicts out; no I/O, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tianhe::protocols::modbus {

/// The four data tables a client reads.
enum class Table : uint8_t { kCoil = 0, kDiscrete, kHolding, kInput, kCount };

/// The table's config name ("coil", "discrete", "holding", "input").
std::string_view table_name(Table t) noexcept;

/// The read function code of a table (1 coils, 2 discrete inputs, 3 holding, 4 input registers).
constexpr uint8_t read_function(Table t) noexcept {
  return static_cast<uint8_t>(static_cast<uint8_t>(t) + 1);
}

/// Whether a table holds single bits (coils, discrete inputs) rather than 16-bit registers.
constexpr bool is_bit_table(Table t) noexcept {
  return t == Table::kCoil || t == Table::kDiscrete;
}

/// MBAP header bytes (transaction id, protocol id, length, unit id).
inline constexpr size_t kMbapBytes = 7;
/// Largest PDU (function code + data), §4.1 of the application protocol.
inline constexpr size_t kMaxPduBytes = 253;
/// Largest ADU on TCP: the MBAP header and a PDU.
inline constexpr size_t kMaxAduBytes = kMbapBytes + kMaxPduBytes;
/// Bytes of a read request ADU (MBAP + function, address, quantity).
inline constexpr size_t kReadRequestBytes = 12;
/// Most registers one read may ask for (FC 3/4: 0x7D).
inline constexpr uint16_t kMaxReadRegisters = 125;
/// Most bits one read may ask for (FC 1/2: 0x7D0).
inline constexpr uint16_t kMaxReadBits = 2000;

/// One read request.
struct ReadRequest {
  uint16_t transaction = 0;
  uint8_t unit = 0;
  Table table = Table::kHolding;
  uint16_t address = 0;   ///< first register or bit (0-based protocol address)
  uint16_t quantity = 0;  ///< registers or bits, 1..125 / 1..2000
};

/// Writes the request's ADU into `out` (kReadRequestBytes).
void encode_read_request(const ReadRequest& r, std::span<uint8_t, kReadRequestBytes> out) noexcept;

/// What checking a response found. Everything after kException is malformed: counted by that
/// reason, the response dropped and the connection reset.
enum class ResponseStatus : uint8_t {
  kOk = 0,              ///< a well-formed normal response: its data is in Response::data
  kNeedMore,            ///< the stream holds only part of an ADU
  kException,           ///< a well-formed exception response (Response::exception_code)
  kBadProtocolId,       ///< MBAP protocol identifier is not 0
  kBadLength,           ///< MBAP length below 3 or above 254 (no PDU fits)
  kUnknownTransaction,  ///< a transaction id no request in flight has
  kUnitMismatch,        ///< unit id is not the request's
  kFunctionMismatch,    ///< function code is neither the request's nor its exception
  kBadExceptionLength,  ///< an exception response that is not exactly function + code
  kByteCountMismatch,   ///< byte count is not what the requested quantity needs
  kLengthMismatch,      ///< MBAP length disagrees with the byte count
  kNonZeroPadding,      ///< FC 1/2: unused bits of the last byte are not zero
  kCount,
};

/// The snake_case name of a status (a metric label): "bad_protocol_id", ...
std::string_view response_status_name(ResponseStatus s) noexcept;

/// Whether a status is one of the malformed reasons.
constexpr bool is_malformed(ResponseStatus s) noexcept {
  return static_cast<uint8_t>(s) > static_cast<uint8_t>(ResponseStatus::kException);
}

/// A decoded MBAP header.
struct MbapHeader {
  uint16_t transaction = 0;
  uint16_t protocol = 0;
  uint16_t length = 0;  ///< bytes that follow the length field: unit id + PDU
  uint8_t unit = 0;
};

/// Splits the first ADU off the front of a received stream: kNeedMore (wait for more bytes),
/// kOk (`header` and `adu_bytes` set), kBadProtocolId or kBadLength.
ResponseStatus split_adu(std::span<const uint8_t> in, MbapHeader& header,
                         size_t& adu_bytes) noexcept;

/// What a response must echo: its request's unit, function and quantity.
struct Expected {
  uint8_t unit = 0;
  uint8_t function = 3;
  uint16_t quantity = 1;
};

/// A checked response.
struct Response {
  uint8_t exception_code = 0;     ///< kException: the code (0x01..0x0B in the spec)
  std::span<const uint8_t> data;  ///< kOk: the register bytes or packed bits
};

/// Checks an ADU split by split_adu() against its request: kOk, kException or a malformed reason.
ResponseStatus check_response(const MbapHeader& header, std::span<const uint8_t> adu,
                              const Expected& expected, Response& out) noexcept;

/// Exception codes counted one by one (0x01..0x0B); others count as "other" (slot 0).
inline constexpr size_t kExceptionSlots = 12;
/// The counter slot of an exception code.
constexpr size_t exception_slot(uint8_t code) noexcept {
  return code >= 1 && code <= 0x0B ? code : 0;
}
/// The label of an exception slot: "illegal_function", ..., "gateway_target_failed", "other".
std::string_view exception_name(size_t slot) noexcept;

}  // namespace tianhe::protocols::modbus
