#include "protocols/modbus/modbus_codec.h"

namespace tianhe::protocols::modbus {
namespace {

uint16_t be16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

void put16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

}  // namespace

std::string_view table_name(Table t) noexcept {
  switch (t) {
    case Table::kCoil: return "coil";
    case Table::kDiscrete: return "discrete";
    case Table::kHolding: return "holding";
    case Table::kInput: return "input";
    default: return "unknown";
  }
}

void encode_read_request(const ReadRequest& r, std::span<uint8_t, kReadRequestBytes> out) noexcept {
  // Messaging on TCP/IP §3.1.3: MBAP = transaction, protocol 0, length (unit + PDU), unit.
  put16(&out[0], r.transaction);
  put16(&out[2], 0);
  put16(&out[4], 6);
  out[6] = r.unit;
  out[7] = read_function(r.table);
  put16(&out[8], r.address);
  put16(&out[10], r.quantity);
}

std::string_view response_status_name(ResponseStatus s) noexcept {
  switch (s) {
    case ResponseStatus::kOk: return "ok";
    case ResponseStatus::kNeedMore: return "need_more";
    case ResponseStatus::kException: return "exception";
    case ResponseStatus::kBadProtocolId: return "bad_protocol_id";
    case ResponseStatus::kBadLength: return "bad_length";
    case ResponseStatus::kUnknownTransaction: return "unknown_transaction";
    case ResponseStatus::kUnitMismatch: return "unit_mismatch";
    case ResponseStatus::kFunctionMismatch: return "function_mismatch";
    case ResponseStatus::kBadExceptionLength: return "bad_exception_length";
    case ResponseStatus::kByteCountMismatch: return "byte_count_mismatch";
    case ResponseStatus::kLengthMismatch: return "length_mismatch";
    case ResponseStatus::kNonZeroPadding: return "non_zero_padding";
    default: return "unknown";
  }
}

ResponseStatus split_adu(std::span<const uint8_t> in, MbapHeader& header,
                         size_t& adu_bytes) noexcept {
  if (in.size() < kMbapBytes) return ResponseStatus::kNeedMore;
  header.transaction = be16(&in[0]);
  header.protocol = be16(&in[2]);
  header.length = be16(&in[4]);
  header.unit = in[6];
  // §3.1.3: protocol identifier 0 is MODBUS; anything else is not for us and the stream can
  // no longer be trusted to be framed.
  if (header.protocol != 0) return ResponseStatus::kBadProtocolId;
  // The shortest response PDU is an exception (function + code): length >= 1 + 2. The longest
  // PDU is 253 bytes: length <= 254. Checked before waiting for the body, so a bogus length
  // cannot make the client wait for bytes that never come.
  if (header.length < 3 || header.length > kMaxPduBytes + 1) return ResponseStatus::kBadLength;
  adu_bytes = 6 + static_cast<size_t>(header.length);
  if (in.size() < adu_bytes) return ResponseStatus::kNeedMore;
  return ResponseStatus::kOk;
}

ResponseStatus check_response(const MbapHeader& header, std::span<const uint8_t> adu,
                              const Expected& expected, Response& out) noexcept {
  // §4.4 of the implementation guide: the server echoes the unit identifier.
  if (header.unit != expected.unit) return ResponseStatus::kUnitMismatch;
  const uint8_t function = adu[kMbapBytes];
  const size_t pdu_bytes = adu.size() - kMbapBytes;
  if (function == (expected.function | 0x80)) {
    // Application protocol §7: an exception PDU is the function code + 0x80 and one code byte.
    if (pdu_bytes != 2) return ResponseStatus::kBadExceptionLength;
    out.exception_code = adu[kMbapBytes + 1];
    return ResponseStatus::kException;
  }
  if (function != expected.function) return ResponseStatus::kFunctionMismatch;
  // split_adu() let no length below 3 through: the PDU has its byte count.
  const uint8_t byte_count = adu[kMbapBytes + 1];
  // §6.1-6.4: FC 1/2 return ceil(quantity / 8) bytes of packed bits, FC 3/4 two bytes a
  // register.
  const bool bits = expected.function <= 2;
  const size_t want = bits ? (expected.quantity + 7u) / 8u : 2u * expected.quantity;
  if (byte_count != want) return ResponseStatus::kByteCountMismatch;
  if (pdu_bytes != 2 + static_cast<size_t>(byte_count)) return ResponseStatus::kLengthMismatch;
  out.data = adu.subspan(kMbapBytes + 2, byte_count);
  if (bits && (expected.quantity % 8) != 0) {
    // §6.1: "the remaining bits in the final data byte will be padded with zeros".
    const uint8_t unused = static_cast<uint8_t>(0xFFu << (expected.quantity % 8));
    if ((out.data[byte_count - 1] & unused) != 0) return ResponseStatus::kNonZeroPadding;
  }
  return ResponseStatus::kOk;
}

std::string_view exception_name(size_t slot) noexcept {
  switch (slot) {
    case 0x01: return "illegal_function";
    case 0x02: return "illegal_data_address";
    case 0x03: return "illegal_data_value";
    case 0x04: return "server_device_failure";
    case 0x05: return "acknowledge";
    case 0x06: return "server_device_busy";
    case 0x07: return "negative_acknowledge";
    case 0x08: return "memory_parity_error";
    case 0x09: return "code_09";
    case 0x0A: return "gateway_path_unavailable";
    case 0x0B: return "gateway_target_failed";
    default: return "other";
  }
}

}  // namespace tianhe::protocols::modbus
