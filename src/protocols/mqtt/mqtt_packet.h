// MQTT 3.1.1 (OASIS Standard, 29 Oct 2014) and MQTT 5.0 (OASIS Standard, 7 Mar 2019) control
// packets as a client sees them: a pure, bounded reader of the packets a broker sends (CONNACK,
// PUBLISH, PUBACK, SUBACK, PINGRESP, DISCONNECT) and encoders of the packets a client sends
// (CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ, DISCONNECT). No I/O, no allocation: a parsed
// packet views into the input bytes. Used by every shard's MqttIngest and by the simulator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tianhe::protocols::mqtt {

/// The protocol level a connection speaks (the CONNECT's Protocol Level byte).
enum class Version : uint8_t { k311 = 4, k5 = 5 };

/// Control packet types (§2.2.1 in both versions).
enum class PacketType : uint8_t {
  kReserved = 0,
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
  kAuth = 15,
};

/// Outcome of reading one packet from the front of a byte stream.
enum class ParseStatus : uint8_t {
  kComplete,   ///< one packet read (ParseResult::size bytes)
  kNeedMore,   ///< the bytes hold the start of a packet: read more
  kMalformed,  ///< the stream breaks the spec: close the connection (§4.8 / §4.13)
};

/// Why a packet was refused (a metric label; see drop_reason_name()).
enum class DropReason : uint8_t {
  kNone = 0,
  kBadRemainingLength,  ///< more than 4 length bytes, or a non-minimal encoding
  kTooLarge,            ///< longer than max_packet_bytes
  kUnexpectedType,      ///< a type a server never sends to a client (or reserved)
  kBadFlags,            ///< fixed-header flags a type forbids
  kBadLength,           ///< the remaining length disagrees with the packet's contents
  kBadConnack,          ///< CONNACK reserved flag bits set, or session present with a refusal
  kBadReasonCode,       ///< a return / reason code the packet may not carry
  kBadTopic,            ///< empty topic name, or one with a wildcard (+ #)
  kBadUtf8,             ///< a string that is not well-formed UTF-8, or holds U+0000
  kZeroPacketId,        ///< packet identifier 0 where one is required
  kBadQos,              ///< PUBLISH QoS 3
  kDupQos0,             ///< PUBLISH QoS 0 with DUP set (§3.3.1.1)
  kBadProperties,       ///< properties that overrun their length, or a bad value
  kDuplicateProperty,   ///< a single-valued property given twice
  kUnknownProperty,     ///< a property identifier MQTT 5 does not define
  kPropertyNotAllowed,  ///< a defined property this packet may not carry
  kTopicAlias,          ///< a Topic Alias (the client allows none: Topic Alias Maximum 0)
  kCount,
};

/// Number of DropReason values (counter arrays).
inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kCount);

/// The snake_case name of a drop reason ("bad_remaining_length", ...).
std::string_view drop_reason_name(DropReason r) noexcept;

/// The lower-case name of a packet type ("publish", ...).
std::string_view packet_type_name(PacketType t) noexcept;

/// What the reader accepts.
struct ParserLimits {
  Version version = Version::k5;         ///< the connection's protocol level
  uint32_t max_packet_bytes = 1u << 18;  ///< fixed header included
};

/// A packet read. Views point into the bytes given to parse_packet().
struct Packet {
  PacketType type = PacketType::kReserved;
  uint8_t flags = 0;       ///< low nibble of the first byte
  uint32_t size = 0;       ///< bytes of the whole packet
  uint16_t packet_id = 0;  ///< PUBLISH (QoS > 0), PUBACK, SUBACK
  uint8_t reason = 0;      ///< CONNACK return/reason code, PUBACK and DISCONNECT reason code
  // PUBLISH
  uint8_t qos = 0;
  bool dup = false;
  bool retain = false;
  std::string_view topic;
  std::span<const uint8_t> payload;
  std::string_view traceparent;  ///< MQTT 5 user property "traceparent" (empty: none)
  std::string_view tracestate;   ///< MQTT 5 user property "tracestate" (empty: none)
  // CONNACK
  bool session_present = false;
  uint16_t receive_maximum = 0;      ///< MQTT 5 (0: not given, 65535 applies)
  uint8_t maximum_qos = 2;           ///< MQTT 5 (2: not given)
  int32_t server_keep_alive = -1;    ///< MQTT 5 (-1: not given)
  uint32_t maximum_packet_size = 0;  ///< MQTT 5 (0: not given)
  std::string_view assigned_client_id;
  std::string_view reason_string;  ///< MQTT 5 Reason String, when given
  // SUBACK
  std::span<const uint8_t> reason_codes;  ///< one per topic filter
};

/// Result of parse_packet().
struct ParseResult {
  ParseStatus status = ParseStatus::kNeedMore;
  DropReason reason = DropReason::kNone;  ///< when kMalformed
  uint32_t size = 0;                      ///< when kComplete: bytes consumed
};

/// Reads one packet sent by a broker from the front of `in`. Pure, noexcept, bounded by
/// `limits.max_packet_bytes` (a length beyond it is refused as soon as the header is read).
ParseResult parse_packet(std::span<const uint8_t> in, const ParserLimits& limits,
                         Packet& out) noexcept;

/// Whether `s` is well-formed UTF-8 without U+0000 (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4).
bool valid_utf8(std::string_view s) noexcept;

/// What a CONNECT says.
struct ConnectOptions {
  Version version = Version::k5;
  std::string_view client_id;
  bool clean_start = false;
  uint16_t keep_alive_s = 30;
  uint32_t session_expiry_s = 0;     ///< MQTT 5 Session Expiry Interval
  uint16_t receive_maximum = 0;      ///< MQTT 5 Receive Maximum (0: not sent)
  uint32_t maximum_packet_size = 0;  ///< MQTT 5 Maximum Packet Size (0: not sent)
  std::string_view username;         ///< empty: none
  std::string_view password;         ///< empty: none
};

/// Encoders: each writes one packet into `out` and returns its size, 0 when `out` is too small
/// (or a string is longer than 65,535 bytes).
size_t encode_connect(const ConnectOptions& o, std::span<uint8_t> out) noexcept;
/// SUBSCRIBE of one filter at `qos` (MQTT 5: no local 0, retain as published 0, send retained).
size_t encode_subscribe(Version v, uint16_t packet_id, std::string_view filter, uint8_t qos,
                        std::span<uint8_t> out) noexcept;
/// PUBACK of `packet_id`; MQTT 5 with a reason code when it is not 0 (§3.4.2.1).
size_t encode_puback(Version v, uint16_t packet_id, uint8_t reason,
                     std::span<uint8_t> out) noexcept;
/// PUBLISH (simulator, tests); MQTT 5 with "traceparent" and "tracestate" user properties when
/// they are given.
size_t encode_publish(Version v, std::string_view topic, uint8_t qos, uint16_t packet_id, bool dup,
                      std::span<const uint8_t> payload, std::string_view traceparent,
                      std::string_view tracestate, std::span<uint8_t> out) noexcept;
/// PINGREQ (2 bytes).
size_t encode_pingreq(std::span<uint8_t> out) noexcept;
/// DISCONNECT, normal disconnection.
size_t encode_disconnect(Version v, std::span<uint8_t> out) noexcept;

/// Bytes of a PUBACK as encode_puback() writes it with reason 0 (4).
inline constexpr size_t kPubackBytes = 4;

}  // namespace tianhe::protocols::mqtt
