// The MQTT-SN v1.2 frame parser and the encoders of the gateway's replies. Pure (bytes in, one
// frame out), noexcept, no allocation: the frame's strings and payload are views into the
// datagram, which must outlive the frame. One datagram carries exactly one message (MQTT-SN
// v1.2 §5.2: the length field covers the whole message) and its length must equal the
// datagram's; a forwarder's encapsulation (§5.5) wraps exactly one such message, which fills
// the rest of the datagram. Safe on untrusted input (fuzzed: mqtt_sn_parser_fuzz).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/report.h"

namespace tianhe::protocols::mqtt_sn {

/// The MQTT-SN protocol's id, stored with each of its reports (see core::Protocol).
inline constexpr core::Protocol kProtocolId = static_cast<core::Protocol>(2);

/// Longest Wireless Node Id of an encapsulated message accepted (§5.5 allows any length; the
/// gateway keeps it inline in the client's address key, so it is bounded).
inline constexpr uint32_t kMaxNodeIdBytes = 16;

/// Message types (MQTT-SN v1.2 §5.3.3, table 3).
enum class MsgType : uint8_t {
  kAdvertise = 0x00,
  kSearchGw = 0x01,
  kGwInfo = 0x02,
  kConnect = 0x04,
  kConnack = 0x05,
  kWillTopicReq = 0x06,
  kWillTopic = 0x07,
  kWillMsgReq = 0x08,
  kWillMsg = 0x09,
  kRegister = 0x0A,
  kRegack = 0x0B,
  kPublish = 0x0C,
  kPuback = 0x0D,
  kPubcomp = 0x0E,
  kPubrec = 0x0F,
  kPubrel = 0x10,
  kSubscribe = 0x12,
  kSuback = 0x13,
  kUnsubscribe = 0x14,
  kUnsuback = 0x15,
  kPingReq = 0x16,
  kPingResp = 0x17,
  kDisconnect = 0x18,
  kWillTopicUpd = 0x1A,
  kWillTopicResp = 0x1B,
  kWillMsgUpd = 0x1C,
  kWillMsgResp = 0x1D,
  kEncapsulated = 0xFE,
};

/// Return codes (MQTT-SN v1.2 §5.3.10).
enum class ReturnCode : uint8_t {
  kAccepted = 0x00,
  kCongestion = 0x01,      ///< "rejected: congestion": retry later
  kInvalidTopicId = 0x02,  ///< "rejected: invalid topic ID"
  kNotSupported = 0x03,    ///< "rejected: not supported"
};

/// TopicIdType of the flags field (§5.3.4).
enum class TopicIdType : uint8_t { kNormal = 0, kPredefined = 1, kShort = 2 };

/// QoS as the flags field carries it (§5.3.4): 0b11 is QoS -1.
enum class Qos : uint8_t { kQos0 = 0, kQos1 = 1, kQos2 = 2, kQosMinus1 = 3 };

/// Outcome of parsing one datagram.
enum class ParseStatus : uint8_t {
  kComplete,   ///< one frame was read
  kMalformed,  ///< the datagram breaks the protocol or a limit
};

/// Why a datagram was dropped (a metric label; see drop_reason_name()).
enum class DropReason : uint8_t {
  kNone,              ///< not dropped
  kEmpty,             ///< zero-length datagram
  kOversized,         ///< longer than ParserLimits::max_frame_bytes
  kTruncatedHeader,   ///< too short for its length field and message type
  kBadLength,         ///< the length field is 0, below its header, or a 3-octet form < 256
  kLengthMismatch,    ///< the length field disagrees with the datagram's size
  kBadType,           ///< a reserved message type
  kUnsupportedType,   ///< a type only a gateway sends, or an encapsulated message
  kBadBody,           ///< the message's fields do not fit its length
  kBadFlags,          ///< a reserved TopicIdType (0b11)
  kBadProtocolId,     ///< CONNECT's ProtocolId is not 0x01
  kBadClientId,       ///< a client id that is empty (CONNECT) or longer than max_client_id_bytes
  kTopicTooLong,      ///< a topic name longer than ParserLimits::max_topic_bytes
  kBadTopicName,      ///< an empty topic name or a wildcard in REGISTER
  kBadEncapsulation,  ///< §5.5 header without a node id or message, reserved Ctrl bits, nested
  kNodeIdTooLong,     ///< a Wireless Node Id longer than ParserLimits::max_node_id_bytes
};

/// Number of DropReason values (to size per-reason counter arrays).
inline constexpr size_t kDropReasonCount = static_cast<size_t>(DropReason::kNodeIdTooLong) + 1;

/// The snake_case name of a drop reason, used as a metric label ("empty", "bad_length", ...).
std::string_view drop_reason_name(DropReason reason) noexcept;

/// Bounds on one datagram. Immutable once built from config; shared by all shards.
struct ParserLimits {
  uint32_t max_frame_bytes = 1024;               ///< largest message accepted (datagram size)
  uint32_t max_client_id_bytes = 23;             ///< §5.3.1: 1..23 characters
  uint32_t max_topic_bytes = 128;                ///< a REGISTER's or WILLTOPIC's topic name
  uint32_t max_node_id_bytes = kMaxNodeIdBytes;  ///< an encapsulation's Wireless Node Id (≤ it)
};

/// The flags field (§5.3.4), unpacked.
struct Flags {
  bool dup = false;
  Qos qos = Qos::kQos0;
  bool retain = false;
  bool will = false;
  bool clean_session = false;
  TopicIdType topic_id_type = TopicIdType::kNormal;
};

/// One message, as read. Which members are set depends on `type` (see each member).
struct Frame {
  MsgType type = MsgType::kAdvertise;
  Flags flags;                ///< CONNECT, WILLTOPIC(UPD), PUBLISH, SUBSCRIBE, UNSUBSCRIBE
  uint16_t duration = 0;      ///< CONNECT keep-alive, DISCONNECT sleep, ADVERTISE (seconds)
  bool has_duration = false;  ///< DISCONNECT: a sleep duration was present
  uint16_t topic_id = 0;      ///< REGISTER, REGACK, PUBLISH, PUBACK, SUBSCRIBE (predefined)
  uint16_t msg_id = 0;        ///< REGISTER, REGACK, PUBLISH, PUB*, SUBSCRIBE, UNSUBSCRIBE
  uint8_t gw_id = 0;          ///< ADVERTISE, GWINFO
  uint8_t radius = 0;         ///< SEARCHGW
  ReturnCode return_code = ReturnCode::kAccepted;  ///< REGACK, PUBACK from a client
  std::string_view client_id;                      ///< CONNECT, PINGREQ (empty: none)
  std::string_view topic;         ///< REGISTER topic name, WILLTOPIC, SUBSCRIBE name, short topic
  std::span<const uint8_t> data;  ///< PUBLISH data, WILLMSG, GWINFO address
  /// Encapsulated by a forwarder (§5.5): the Wireless Node Id of the client it came from;
  /// empty when the message came directly.
  std::span<const uint8_t> node_id;
  uint8_t ctrl = 0;  ///< encapsulated: the Ctrl octet (radius in bits 0-1)
};

/// What parse_frame() did with one datagram.
struct ParseResult {
  ParseStatus status = ParseStatus::kComplete;
  DropReason reason = DropReason::kNone;  ///< kNone when complete
};

/// Who sent the datagram: a gateway accepts only what clients send; a client (the simulator)
/// reads what gateways send.
enum class Sender : uint8_t { kClient, kGateway };

/// True when a client may send `type` to a gateway (§5.3.3; SEARCHGW and GWINFO both ways).
bool sent_by_client(MsgType type) noexcept;
/// True when a gateway may send `type` to a client.
bool sent_by_gateway(MsgType type) noexcept;

/// Parses one datagram from `sender` into `out`. Strings view into `bytes`. A type the other
/// side never sends is kUnsupportedType. An encapsulated message (§5.5) is unwrapped: `out` is
/// the message inside, with its node id and Ctrl.
ParseResult parse_frame(std::span<const uint8_t> bytes, const ParserLimits& limits, Frame& out,
                        Sender sender = Sender::kClient) noexcept;

/// Unpacks a flags octet (§5.3.4).
Flags decode_flags(uint8_t b) noexcept;
/// Packs flags into their octet.
uint8_t encode_flags(const Flags& f) noexcept;

/// Largest reply the encoders below write (GWINFO with a 255-byte address fits).
inline constexpr size_t kMaxReplyBytes = 300;

// Encoders of the messages the gateway sends. Each writes into `out` and returns the bytes
// written, or 0 when `out` is too small.

/// CONNACK (§5.4.6).
size_t encode_connack(ReturnCode rc, std::span<uint8_t> out) noexcept;
/// REGACK (§5.4.11).
size_t encode_regack(uint16_t topic_id, uint16_t msg_id, ReturnCode rc,
                     std::span<uint8_t> out) noexcept;
/// PUBACK (§5.4.13).
size_t encode_puback(uint16_t topic_id, uint16_t msg_id, ReturnCode rc,
                     std::span<uint8_t> out) noexcept;
/// PUBREC, PUBREL or PUBCOMP (§5.4.14): type and message id only.
size_t encode_msg_id_only(MsgType type, uint16_t msg_id, std::span<uint8_t> out) noexcept;
/// A message with no body: PINGRESP, WILLTOPICREQ, WILLMSGREQ, DISCONNECT without duration.
size_t encode_empty(MsgType type, std::span<uint8_t> out) noexcept;
/// A message whose body is one return code: WILLTOPICRESP, WILLMSGRESP.
size_t encode_return_code(MsgType type, ReturnCode rc, std::span<uint8_t> out) noexcept;
/// GWINFO as a gateway sends it (§5.4.3: no GwAdd).
size_t encode_gwinfo(uint8_t gw_id, std::span<uint8_t> out) noexcept;
/// ADVERTISE (§5.4.1).
size_t encode_advertise(uint8_t gw_id, uint16_t duration_s, std::span<uint8_t> out) noexcept;
/// SUBACK (§5.4.16).
size_t encode_suback(const Flags& flags, uint16_t topic_id, uint16_t msg_id, ReturnCode rc,
                     std::span<uint8_t> out) noexcept;
/// UNSUBACK (§5.4.18).
size_t encode_unsuback(uint16_t msg_id, std::span<uint8_t> out) noexcept;
/// Bytes an encapsulation header (§5.5) adds before a message, at most.
inline constexpr size_t kMaxEncapsulationBytes = 3 + kMaxNodeIdBytes;
/// `message` encapsulated for a forwarder (§5.5): Length, 0xFE, `ctrl`, `node_id` (1 to
/// kMaxNodeIdBytes octets), then the message; 0 when `out` is too small or the id is bad.
size_t encode_encapsulated(uint8_t ctrl, std::span<const uint8_t> node_id,
                           std::span<const uint8_t> message, std::span<uint8_t> out) noexcept;

// Encoders of what clients send (the simulator, tests and benchmarks).

/// CONNECT (§5.4.4).
size_t encode_connect(const Flags& flags, uint16_t keep_alive_s, std::string_view client_id,
                      std::span<uint8_t> out) noexcept;
/// REGISTER (§5.4.10) from a client (topic id 0).
size_t encode_register(uint16_t msg_id, std::string_view topic, std::span<uint8_t> out) noexcept;
/// PUBLISH (§5.4.12).
size_t encode_publish(const Flags& flags, uint16_t topic_id, uint16_t msg_id,
                      std::span<const uint8_t> data, std::span<uint8_t> out) noexcept;
/// PINGREQ (§5.4.19) with an optional client id (a sleeping client waking up).
size_t encode_pingreq(std::string_view client_id, std::span<uint8_t> out) noexcept;
/// DISCONNECT (§5.4.21); `sleep_s` > 0 adds the sleep duration.
size_t encode_disconnect(uint16_t sleep_s, std::span<uint8_t> out) noexcept;

}  // namespace tianhe::protocols::mqtt_sn
