#include "protocols/mqtt_sn/mqtt_sn_parser.h"

#include <algorithm>
#include <cstring>

namespace tianhe::protocols::mqtt_sn {
namespace {

constexpr std::string_view kDropNames[] = {
    "none",           "empty",           "oversized",         "truncated_header",
    "bad_length",     "length_mismatch", "bad_type",          "unsupported_type",
    "bad_body",       "bad_flags",       "bad_protocol_id",   "bad_client_id",
    "topic_too_long", "bad_topic_name",  "bad_encapsulation", "node_id_too_long",
};
static_assert(std::size(kDropNames) == kDropReasonCount);

ParseResult fail(DropReason r) noexcept {
  return {ParseStatus::kMalformed, r};
}

uint16_t be16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

std::string_view text(std::span<const uint8_t> b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Writes the length header and type (§5.2.1: one octet up to 255, else 0x01 and two octets)
// and returns where the body starts, or nullptr when `out` cannot hold `body` bytes more.
uint8_t* header(MsgType type, size_t body, std::span<uint8_t> out, size_t& total) noexcept {
  total = body + 2;
  if (total > 255) total = body + 4;
  if (total > 65535 || total > out.size()) return nullptr;
  uint8_t* p = out.data();
  if (total <= 255) {
    *p++ = static_cast<uint8_t>(total);
  } else {
    *p++ = 0x01;
    *p++ = static_cast<uint8_t>(total >> 8);
    *p++ = static_cast<uint8_t>(total);
  }
  *p++ = static_cast<uint8_t>(type);
  return p;
}

uint8_t* put16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
  return p + 2;
}

bool known_type(uint8_t t) noexcept {
  return (t <= 0x1D && t != 0x03 && t != 0x11 && t != 0x19) || t == 0xFE;
}

// A topic name a client may REGISTER (§5.4.10: a topic name, not a filter; §5.3.8).
bool valid_topic_name(std::string_view t) noexcept {
  if (t.empty()) return false;
  for (char c : t) {
    if (c == '#' || c == '+' || c == '\0') return false;
  }
  return true;
}

}  // namespace

std::string_view drop_reason_name(DropReason reason) noexcept {
  const auto i = static_cast<size_t>(reason);
  return i < kDropReasonCount ? kDropNames[i] : "unknown";
}

Flags decode_flags(uint8_t b) noexcept {
  Flags f;
  f.dup = (b & 0x80) != 0;
  f.qos = static_cast<Qos>((b >> 5) & 0x03);
  f.retain = (b & 0x10) != 0;
  f.will = (b & 0x08) != 0;
  f.clean_session = (b & 0x04) != 0;
  f.topic_id_type = static_cast<TopicIdType>(b & 0x03);
  return f;
}

uint8_t encode_flags(const Flags& f) noexcept {
  return static_cast<uint8_t>((f.dup ? 0x80 : 0) | (static_cast<uint8_t>(f.qos) << 5) |
                              (f.retain ? 0x10 : 0) | (f.will ? 0x08 : 0) |
                              (f.clean_session ? 0x04 : 0) |
                              (static_cast<uint8_t>(f.topic_id_type) & 0x03));
}

bool sent_by_client(MsgType type) noexcept {
  switch (type) {
    case MsgType::kSearchGw:
    case MsgType::kGwInfo:
    case MsgType::kConnect:
    case MsgType::kWillTopic:
    case MsgType::kWillMsg:
    case MsgType::kRegister:
    case MsgType::kRegack:
    case MsgType::kPublish:
    case MsgType::kPuback:
    case MsgType::kPubrec:
    case MsgType::kPubrel:
    case MsgType::kPubcomp:
    case MsgType::kSubscribe:
    case MsgType::kUnsubscribe:
    case MsgType::kPingReq:
    case MsgType::kPingResp:
    case MsgType::kDisconnect:
    case MsgType::kWillTopicUpd:
    case MsgType::kWillMsgUpd: return true;
    default: return false;
  }
}

bool sent_by_gateway(MsgType type) noexcept {
  switch (type) {
    case MsgType::kConnect:
    case MsgType::kWillTopic:
    case MsgType::kWillMsg:
    case MsgType::kSubscribe:
    case MsgType::kUnsubscribe:
    case MsgType::kWillTopicUpd:
    case MsgType::kWillMsgUpd:
    case MsgType::kEncapsulated: return false;
    default: return true;
  }
}

namespace {

// Whether `b` starts with an encapsulation header (§5.5: its Length is always one octet).
bool encapsulated(std::span<const uint8_t> b) noexcept {
  return b.size() >= 2 && b[0] != 0x01 && b[1] == static_cast<uint8_t>(MsgType::kEncapsulated);
}

ParseResult parse_message(std::span<const uint8_t> bytes, const ParserLimits& limits, Frame& out,
                          Sender sender) noexcept;

// §5.5: Length (1 octet, counting up to the end of the Wireless Node Id), MsgType 0xFE, Ctrl
// (bits 7-2 reserved, 1-0 the radius), the Wireless Node Id (at least one octet), and then one
// MQTT-SN message that must fill the rest of the datagram exactly. One level only: a forwarder
// does not wrap an encapsulation.
ParseResult parse_encapsulated(std::span<const uint8_t> bytes, const ParserLimits& limits,
                               Frame& out, Sender sender) noexcept {
  const size_t n = bytes.size();
  if (n < 3) return fail(DropReason::kTruncatedHeader);
  const size_t head = bytes[0];
  if (head < 4) return fail(DropReason::kBadEncapsulation);  // no Wireless Node Id
  if (head - 3 > std::min<uint32_t>(limits.max_node_id_bytes, kMaxNodeIdBytes)) {
    return fail(DropReason::kNodeIdTooLong);
  }
  if (head >= n) return fail(DropReason::kBadEncapsulation);  // no message after it
  if ((bytes[2] & 0xFC) != 0) return fail(DropReason::kBadEncapsulation);
  const std::span<const uint8_t> inner = bytes.subspan(head);
  if (encapsulated(inner) || (inner.size() >= 4 && inner[0] == 0x01 &&
                              inner[3] == static_cast<uint8_t>(MsgType::kEncapsulated))) {
    return fail(DropReason::kBadEncapsulation);
  }
  const ParseResult r = parse_message(inner, limits, out, sender);
  if (r.status != ParseStatus::kComplete) return r;
  out.node_id = bytes.subspan(3, head - 3);
  out.ctrl = bytes[2];
  return r;
}

}  // namespace

ParseResult parse_frame(std::span<const uint8_t> bytes, const ParserLimits& limits, Frame& out,
                        Sender sender) noexcept {
  out = Frame{};
  if (bytes.empty()) return fail(DropReason::kEmpty);
  if (bytes.size() > limits.max_frame_bytes) return fail(DropReason::kOversized);
  if (encapsulated(bytes)) return parse_encapsulated(bytes, limits, out, sender);
  return parse_message(bytes, limits, out, sender);
}

namespace {

ParseResult parse_message(std::span<const uint8_t> bytes, const ParserLimits& limits, Frame& out,
                          Sender sender) noexcept {
  const size_t n = bytes.size();
  if (n == 0) return fail(DropReason::kEmpty);
  // §5.2.1: the first octet is the length, or 0x01 followed by a two-octet length.
  size_t len = 0;
  size_t head = 0;
  if (bytes[0] == 0x01) {
    if (n < 4) return fail(DropReason::kTruncatedHeader);
    len = be16(&bytes[1]);
    head = 4;
    // The three-octet form is for messages of 256 octets or more; a shorter message written
    // that way has two encodings, which a strict reader refuses.
    if (len < 256) return fail(DropReason::kBadLength);
  } else {
    if (n < 2) return fail(DropReason::kTruncatedHeader);
    len = bytes[0];
    head = 2;
    if (len < 2) return fail(DropReason::kBadLength);  // 0: no valid message is that short
  }
  // §5.2: one message per datagram, its length the datagram's; anything else is corrupt.
  if (len != n) return fail(DropReason::kLengthMismatch);
  const uint8_t t = bytes[head - 1];
  if (!known_type(t)) return fail(DropReason::kBadType);
  out.type = static_cast<MsgType>(t);
  // The three-octet length form is not an encapsulation's (§5.5: its Length is one octet).
  if (out.type == MsgType::kEncapsulated) return fail(DropReason::kBadEncapsulation);
  if (!(sender == Sender::kClient ? sent_by_client(out.type) : sent_by_gateway(out.type))) {
    return fail(DropReason::kUnsupportedType);
  }
  const std::span<const uint8_t> body = bytes.subspan(head);
  const size_t b = body.size();
  const uint8_t* p = body.data();
  auto exact = [&](size_t want) noexcept { return b == want; };
  switch (out.type) {
    case MsgType::kAdvertise:  // §5.4.1
      if (!exact(3)) return fail(DropReason::kBadBody);
      out.gw_id = p[0];
      out.duration = be16(p + 1);
      break;
    case MsgType::kSearchGw:  // §5.4.2
      if (!exact(1)) return fail(DropReason::kBadBody);
      out.radius = p[0];
      break;
    case MsgType::kGwInfo:  // §5.4.3: GwAdd only when a client answers
      if (b < 1) return fail(DropReason::kBadBody);
      out.gw_id = p[0];
      out.data = body.subspan(1);
      break;
    case MsgType::kConnect: {  // §5.4.4
      if (b < 4) return fail(DropReason::kBadBody);
      out.flags = decode_flags(p[0]);
      if (p[1] != 0x01) return fail(DropReason::kBadProtocolId);
      out.duration = be16(p + 2);
      out.client_id = text(body.subspan(4));
      if (out.client_id.empty() || out.client_id.size() > limits.max_client_id_bytes) {
        return fail(DropReason::kBadClientId);
      }
      break;
    }
    case MsgType::kConnack:
    case MsgType::kWillTopicResp:
    case MsgType::kWillMsgResp:
      if (!exact(1)) return fail(DropReason::kBadBody);
      out.return_code = static_cast<ReturnCode>(p[0]);
      break;
    case MsgType::kWillTopicReq:
    case MsgType::kWillMsgReq:
    case MsgType::kPingResp:
      if (!exact(0)) return fail(DropReason::kBadBody);
      break;
    case MsgType::kWillTopic:  // §5.4.7: an empty WILLTOPIC (no flags, no topic) is allowed
    case MsgType::kWillTopicUpd:
      if (b >= 1) {
        out.flags = decode_flags(p[0]);
        out.topic = text(body.subspan(1));
        if (out.topic.size() > limits.max_topic_bytes) return fail(DropReason::kTopicTooLong);
      }
      break;
    case MsgType::kWillMsg:
    case MsgType::kWillMsgUpd: out.data = body; break;
    case MsgType::kRegister:  // §5.4.10
      if (b < 5) return fail(DropReason::kBadBody);
      out.topic_id = be16(p);
      out.msg_id = be16(p + 2);
      out.topic = text(body.subspan(4));
      if (out.topic.size() > limits.max_topic_bytes) return fail(DropReason::kTopicTooLong);
      if (!valid_topic_name(out.topic)) return fail(DropReason::kBadTopicName);
      break;
    case MsgType::kRegack:  // §5.4.11
    case MsgType::kPuback:  // §5.4.13
      if (!exact(5)) return fail(DropReason::kBadBody);
      out.topic_id = be16(p);
      out.msg_id = be16(p + 2);
      out.return_code = static_cast<ReturnCode>(p[4]);
      break;
    case MsgType::kPublish:  // §5.4.12
      if (b < 5) return fail(DropReason::kBadBody);
      out.flags = decode_flags(p[0]);
      if (static_cast<uint8_t>(out.flags.topic_id_type) == 3) return fail(DropReason::kBadFlags);
      out.topic_id = be16(p + 1);
      if (out.flags.topic_id_type == TopicIdType::kShort) out.topic = text(body.subspan(1, 2));
      out.msg_id = be16(p + 3);
      out.data = body.subspan(5);
      break;
    case MsgType::kPubcomp:  // §5.4.14
    case MsgType::kPubrec:
    case MsgType::kPubrel:
    case MsgType::kUnsuback:
      if (!exact(2)) return fail(DropReason::kBadBody);
      out.msg_id = be16(p);
      break;
    case MsgType::kSubscribe:  // §5.4.15, §5.4.17
    case MsgType::kUnsubscribe: {
      if (b < 4) return fail(DropReason::kBadBody);
      out.flags = decode_flags(p[0]);
      out.msg_id = be16(p + 1);
      const auto tt = out.flags.topic_id_type;
      if (static_cast<uint8_t>(tt) == 3) return fail(DropReason::kBadFlags);
      if (tt == TopicIdType::kNormal) {
        out.topic = text(body.subspan(3));
        if (out.topic.size() > limits.max_topic_bytes) return fail(DropReason::kTopicTooLong);
      } else {
        if (!exact(5)) return fail(DropReason::kBadBody);
        out.topic_id = be16(p + 3);
        out.topic = text(body.subspan(3, 2));
      }
      break;
    }
    case MsgType::kSuback:
      if (!exact(6)) return fail(DropReason::kBadBody);
      out.flags = decode_flags(p[0]);
      out.topic_id = be16(p + 1);
      out.msg_id = be16(p + 3);
      out.return_code = static_cast<ReturnCode>(p[5]);
      break;
    case MsgType::kPingReq:  // §5.4.19: the client id only from a sleeping client
      out.client_id = text(body);
      if (out.client_id.size() > limits.max_client_id_bytes) {
        return fail(DropReason::kBadClientId);
      }
      break;
    case MsgType::kDisconnect:  // §5.4.21
      if (b == 2) {
        out.duration = be16(p);
        out.has_duration = true;
      } else if (b != 0) {
        return fail(DropReason::kBadBody);
      }
      break;
    case MsgType::kEncapsulated: return fail(DropReason::kBadEncapsulation);
  }
  return {};
}

}  // namespace

size_t encode_encapsulated(uint8_t ctrl, std::span<const uint8_t> node_id,
                           std::span<const uint8_t> message, std::span<uint8_t> out) noexcept {
  if (node_id.empty() || node_id.size() > kMaxNodeIdBytes) return 0;
  const size_t head = 3 + node_id.size();
  if (head + message.size() > out.size()) return 0;
  out[0] = static_cast<uint8_t>(head);
  out[1] = static_cast<uint8_t>(MsgType::kEncapsulated);
  out[2] = static_cast<uint8_t>(ctrl & 0x03);
  std::memcpy(out.data() + 3, node_id.data(), node_id.size());
  if (!message.empty()) std::memcpy(out.data() + head, message.data(), message.size());
  return head + message.size();
}

size_t encode_connack(ReturnCode rc, std::span<uint8_t> out) noexcept {
  return encode_return_code(MsgType::kConnack, rc, out);
}

size_t encode_return_code(MsgType type, ReturnCode rc, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(type, 1, out, total);
  if (p == nullptr) return 0;
  *p = static_cast<uint8_t>(rc);
  return total;
}

size_t encode_regack(uint16_t topic_id, uint16_t msg_id, ReturnCode rc,
                     std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kRegack, 5, out, total);
  if (p == nullptr) return 0;
  p = put16(put16(p, topic_id), msg_id);
  *p = static_cast<uint8_t>(rc);
  return total;
}

size_t encode_puback(uint16_t topic_id, uint16_t msg_id, ReturnCode rc,
                     std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kPuback, 5, out, total);
  if (p == nullptr) return 0;
  p = put16(put16(p, topic_id), msg_id);
  *p = static_cast<uint8_t>(rc);
  return total;
}

size_t encode_msg_id_only(MsgType type, uint16_t msg_id, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(type, 2, out, total);
  if (p == nullptr) return 0;
  put16(p, msg_id);
  return total;
}

size_t encode_empty(MsgType type, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  return header(type, 0, out, total) == nullptr ? 0 : total;
}

size_t encode_gwinfo(uint8_t gw_id, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kGwInfo, 1, out, total);
  if (p == nullptr) return 0;
  *p = gw_id;
  return total;
}

size_t encode_advertise(uint8_t gw_id, uint16_t duration_s, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kAdvertise, 3, out, total);
  if (p == nullptr) return 0;
  *p++ = gw_id;
  put16(p, duration_s);
  return total;
}

size_t encode_suback(const Flags& flags, uint16_t topic_id, uint16_t msg_id, ReturnCode rc,
                     std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kSuback, 6, out, total);
  if (p == nullptr) return 0;
  *p++ = encode_flags(flags);
  p = put16(put16(p, topic_id), msg_id);
  *p = static_cast<uint8_t>(rc);
  return total;
}

size_t encode_unsuback(uint16_t msg_id, std::span<uint8_t> out) noexcept {
  return encode_msg_id_only(MsgType::kUnsuback, msg_id, out);
}

size_t encode_connect(const Flags& flags, uint16_t keep_alive_s, std::string_view client_id,
                      std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kConnect, 4 + client_id.size(), out, total);
  if (p == nullptr) return 0;
  *p++ = encode_flags(flags);
  *p++ = 0x01;
  p = put16(p, keep_alive_s);
  if (!client_id.empty()) std::memcpy(p, client_id.data(), client_id.size());
  return total;
}

size_t encode_register(uint16_t msg_id, std::string_view topic, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kRegister, 4 + topic.size(), out, total);
  if (p == nullptr) return 0;
  p = put16(put16(p, 0), msg_id);
  if (!topic.empty()) std::memcpy(p, topic.data(), topic.size());
  return total;
}

size_t encode_publish(const Flags& flags, uint16_t topic_id, uint16_t msg_id,
                      std::span<const uint8_t> data, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kPublish, 5 + data.size(), out, total);
  if (p == nullptr) return 0;
  *p++ = encode_flags(flags);
  p = put16(put16(p, topic_id), msg_id);
  if (!data.empty()) std::memcpy(p, data.data(), data.size());
  return total;
}

size_t encode_pingreq(std::string_view client_id, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kPingReq, client_id.size(), out, total);
  if (p == nullptr) return 0;
  if (!client_id.empty()) std::memcpy(p, client_id.data(), client_id.size());
  return total;
}

size_t encode_disconnect(uint16_t sleep_s, std::span<uint8_t> out) noexcept {
  size_t total = 0;
  uint8_t* p = header(MsgType::kDisconnect, sleep_s > 0 ? 2 : 0, out, total);
  if (p == nullptr) return 0;
  if (sleep_s > 0) put16(p, sleep_s);
  return total;
}

}  // namespace tianhe::protocols::mqtt_sn
