// The Semtech UDP packet forwarder protocol, version 2 (Semtech lora_gateway/packet_forwarder
// PROTOCOL.TXT, "protocol version 2"): a pure, bounded parser of the datagrams a gateway sends
// (PUSH_DATA with its `rxpk`/`stat` JSON, PULL_DATA, TX_ACK) and encoders of the answers
// (PUSH_ACK, PULL_ACK, PULL_RESP with a `txpk`). No I/O, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tianhe::protocols::lorawan {

/// The identifier byte of a datagram (PROTOCOL.TXT §3-§6).
enum class SemtechType : uint8_t {
  kPushData = 0,
  kPushAck = 1,
  kPullData = 2,
  kPullResp = 3,
  kPullAck = 4,
  kTxAck = 5,
};

/// Protocol version 2 (the only one PROTOCOL.TXT v2 describes).
inline constexpr uint8_t kSemtechVersion = 2;
/// Header of the datagrams a gateway sends: version, token (2), identifier, gateway EUI (8).
inline constexpr size_t kSemtechHeaderBytes = 12;

/// Why a datagram was not read.
enum class SemtechStatus : uint8_t {
  kOk = 0,
  kTooShort,       ///< fewer than 4 bytes, or fewer than 12 for a type that carries the EUI
  kBadVersion,     ///< version byte is not 2
  kUnknownType,    ///< identifier above 5
  kServerType,     ///< PUSH_ACK / PULL_ACK / PULL_RESP: only a server sends those
  kTrailingBytes,  ///< PULL_DATA longer than its 12 bytes
  kNoJson,         ///< PUSH_DATA without a JSON object after the header
  kCount,
};

/// Snake-case name of a status (a metric label).
std::string_view semtech_status_name(SemtechStatus s) noexcept;

/// A parsed datagram from a gateway. Views into the input.
struct SemtechDatagram {
  SemtechType type = SemtechType::kPushData;
  uint16_t token = 0;  ///< as sent (bytes 1..2, echoed in the answer)
  uint64_t gateway_eui = 0;
  std::span<const uint8_t> json;  ///< PUSH_DATA: the JSON object; TX_ACK: the optional JSON
};

/// Parses a datagram's header. Pure and bounded.
SemtechStatus parse_semtech(std::span<const uint8_t> bytes, SemtechDatagram& out) noexcept;

/// Writes PUSH_ACK or PULL_ACK (4 bytes: version, token, identifier); returns 4, or 0.
size_t encode_semtech_ack(SemtechType type, uint16_t token, std::span<uint8_t> out) noexcept;

/// Radio metadata and payload of one `rxpk` entry (PROTOCOL.TXT §4).
struct Rxpk {
  uint32_t tmst = 0;  ///< concentrator counter at RX end, microseconds
  bool has_tmst = false;
  double freq_mhz = 0;
  uint8_t rfch = 0;
  int8_t stat = 1;        ///< CRC status: 1 OK, -1 bad, 0 none
  bool lora = true;       ///< modu "LORA" (else "FSK")
  std::string_view datr;  ///< "SF7BW125" (LoRa) or the bit rate text (FSK)
  std::string_view codr;  ///< "4/5"
  double rssi = 0;
  double lsnr = 0;
  uint32_t size = 0;              ///< payload bytes as the gateway claims
  std::span<const uint8_t> data;  ///< the decoded PHYPayload (in the caller's buffer)
};

/// Why an rxpk entry (or a whole PUSH_DATA JSON) was not read.
enum class RxpkStatus : uint8_t {
  kOk = 0,
  kBadJson,       ///< not a JSON object, or syntax the scanner refuses
  kMissingField,  ///< no `data` or no `size`
  kBadField,      ///< a field of the wrong type or out of range
  kBadBase64,     ///< `data` is not base64 of at most 255 bytes
  kSizeMismatch,  ///< `size` disagrees with the decoded `data`
  kTooMany,       ///< more rxpk entries than the limit
  kCount,
};

/// Snake-case name of a status (a metric label).
std::string_view rxpk_status_name(RxpkStatus s) noexcept;

/// Decodes standard base64 (with '=' padding, no whitespace) into `out`; returns the byte count,
/// or -1 when `text` is not valid base64 or does not fit.
int decode_base64(std::string_view text, std::span<uint8_t> out) noexcept;
/// Encodes `in` as base64 into `out`; returns the characters written or 0 when it does not fit.
size_t encode_base64(std::span<const uint8_t> in, std::span<char> out) noexcept;

/// What a `txpk` downlink says (PROTOCOL.TXT §6), written by encode_pull_resp().
struct Txpk {
  bool immediate = false;
  uint32_t tmst = 0;  ///< when to send, concentrator microseconds
  double freq_mhz = 0;
  uint8_t rfch = 0;
  int powe = 14;
  std::string_view datr;
  std::string_view codr;
  bool ipol = true;  ///< inverted polarity: downlinks to devices
  std::span<const uint8_t> data;
};

/// What a TX_ACK reports (PROTOCOL.TXT v2 §5: `txpk_ack.error`).
enum class TxAckError : uint8_t {
  kNone = 0,         ///< sent (no JSON, or "NONE")
  kTooLate,          ///< "TOO_LATE": the PULL_RESP came too late for its tmst
  kTooEarly,         ///< "TOO_EARLY": too far ahead for the gateway to schedule
  kCollisionPacket,  ///< "COLLISION_PACKET": another downlink takes that time
  kCollisionBeacon,  ///< "COLLISION_BEACON": a class B beacon takes that time
  kTxFreq,           ///< "TX_FREQ": frequency not supported by the radio
  kTxPower,          ///< "TX_POWER": power not supported
  kGpsUnlocked,      ///< "GPS_UNLOCKED": a GPS-timed downlink without GPS
  kOther,            ///< an error string not above, or JSON that is not a txpk_ack
  kCount,
};

/// Snake-case name of a TX_ACK error (a metric label): "too_late".
std::string_view tx_ack_error_name(TxAckError e) noexcept;

/// Reads a TX_ACK's optional JSON (empty: kNone). Pure and bounded.
TxAckError parse_tx_ack(std::span<const uint8_t> json) noexcept;

/// Whether a downlink refused for RX1 with `e` may go in RX2 (another time, frequency and data
/// rate): the timing, collision, frequency and power errors.
bool rx2_may_help(TxAckError e) noexcept;

/// Writes PULL_RESP (version, token, 3, {"txpk":{...}}) into `out`; returns its length or 0.
size_t encode_pull_resp(uint16_t token, const Txpk& t, std::span<uint8_t> out) noexcept;

}  // namespace tianhe::protocols::lorawan

namespace tianhe::protocols::lorawan {

/// Most rxpk entries read from one PUSH_DATA (the reference forwarder sends at most 8).
inline constexpr uint32_t kMaxRxpk = 16;

/// The readable content of one PUSH_DATA JSON object.
struct PushData {
  uint32_t count = 0;                ///< rxpk entries seen (at most kMaxRxpk are kept)
  Rxpk rxpk[kMaxRxpk];               ///< entries; valid where status[i] == kOk
  RxpkStatus status[kMaxRxpk] = {};  ///< per entry
  bool has_stat = false;             ///< a `stat` object was present (gateway status)
  uint8_t data[kMaxRxpk][256];       ///< decoded payload bytes of each entry
};

/// Reads a PUSH_DATA's JSON object: its `rxpk` array (each entry checked on its own) and
/// whether a `stat` object is present (its fields are skipped). Returns kOk, kBadJson (the text
/// is not one valid JSON object: nothing of it is used) or kTooMany (entries beyond kMaxRxpk
/// are counted in `count` but not read). Pure and bounded.
RxpkStatus parse_push_data(std::span<const uint8_t> json, PushData& out) noexcept;

}  // namespace tianhe::protocols::lorawan
