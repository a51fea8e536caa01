#include "protocols/mqtt/mqtt_packet.h"

#include <array>
#include <cstring>

namespace tianhe::protocols::mqtt {
namespace {

// MQTT 5 §2.2.2.2: the data type of each property.
enum class PropType : uint8_t { kNone, kByte, kTwo, kFour, kVarint, kUtf8, kBinary, kPair };

constexpr uint16_t bit(PacketType t) {
  return static_cast<uint16_t>(1u << static_cast<uint8_t>(t));
}
constexpr uint16_t kP = bit(PacketType::kPublish);
constexpr uint16_t kCa = bit(PacketType::kConnack);
constexpr uint16_t kPa = bit(PacketType::kPuback);
constexpr uint16_t kSa = bit(PacketType::kSuback);
constexpr uint16_t kD = bit(PacketType::kDisconnect);

struct PropInfo {
  PropType type = PropType::kNone;
  uint16_t allowed = 0;  // packet types (as sent by a server) that may carry it
  bool multiple = false;
};

// The MQTT 5 property table (§2.2.2.2), restricted to what a server may send a client:
// client-only properties (Request Problem / Response Information, Will Delay) are defined
// but allowed nowhere here.
constexpr std::array<PropInfo, 43> kProps = [] {
  std::array<PropInfo, 43> t{};
  t[0x01] = {PropType::kByte, kP};
  t[0x02] = {PropType::kFour, kP};
  t[0x03] = {PropType::kUtf8, kP};
  t[0x08] = {PropType::kUtf8, kP};
  t[0x09] = {PropType::kBinary, kP};
  t[0x0B] = {PropType::kVarint, kP, true};
  t[0x11] = {PropType::kFour, kCa};  // §3.14.2.2.2: never in a server's DISCONNECT
  t[0x12] = {PropType::kUtf8, kCa};
  t[0x13] = {PropType::kTwo, kCa};
  t[0x15] = {PropType::kUtf8, kCa};
  t[0x16] = {PropType::kBinary, kCa};
  t[0x17] = {PropType::kByte, 0};
  t[0x18] = {PropType::kFour, 0};
  t[0x19] = {PropType::kByte, 0};
  t[0x1A] = {PropType::kUtf8, kCa};
  t[0x1C] = {PropType::kUtf8, kCa | kD};
  t[0x1F] = {PropType::kUtf8, kCa | kPa | kSa | kD};
  t[0x21] = {PropType::kTwo, kCa};
  t[0x22] = {PropType::kTwo, kCa};
  t[0x23] = {PropType::kTwo, kP};
  t[0x24] = {PropType::kByte, kCa};
  t[0x25] = {PropType::kByte, kCa};
  t[0x26] = {PropType::kPair, kCa | kP | kPa | kSa | kD, true};
  t[0x27] = {PropType::kFour, kCa};
  t[0x28] = {PropType::kByte, kCa};
  t[0x29] = {PropType::kByte, kCa};
  t[0x2A] = {PropType::kByte, kCa};
  return t;
}();

// Reason codes a server may send in each packet (MQTT 5 §3.2.2.2, §3.4.2.1, §3.9.3, §3.14.2.1).
struct CodeSet {
  std::array<uint64_t, 4> bits{};
  constexpr CodeSet(std::initializer_list<uint8_t> codes) {
    for (uint8_t c : codes) bits[c >> 6] |= uint64_t{1} << (c & 63);
  }
  constexpr bool has(uint8_t c) const { return (bits[c >> 6] >> (c & 63)) & 1; }
};
constexpr CodeSet kConnack5 = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                               0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
constexpr CodeSet kPuback5 = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
constexpr CodeSet kSuback311 = {0x00, 0x01, 0x02, 0x80};
constexpr CodeSet kSuback5 = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                              0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
constexpr CodeSet kDisconnect5 = {0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E,
                                  0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A,
                                  0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};

// A bounded cursor over a packet's body; every read checks the bounds.
struct Reader {
  const uint8_t* p;
  size_t n;
  size_t at = 0;
  size_t left() const { return n - at; }
  bool u8(uint8_t& v) {
    if (left() < 1) return false;
    v = p[at++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (left() < 2) return false;
    v = static_cast<uint16_t>((p[at] << 8) | p[at + 1]);
    at += 2;
    return true;
  }
  bool u32(uint32_t& v) {
    if (left() < 4) return false;
    v = (uint32_t{p[at]} << 24) | (uint32_t{p[at + 1]} << 16) | (uint32_t{p[at + 2]} << 8) |
        p[at + 3];
    at += 4;
    return true;
  }
  // §1.5.5 (MQTT 5) / §2.2.3 (3.1.1): at most four bytes, the minimum number of them.
  bool varint(uint32_t& v, bool& bad) {
    v = 0;
    for (int i = 0; i < 4; ++i) {
      if (left() < 1) return false;
      const uint8_t b = p[at++];
      if (i > 0 && b == 0) {
        bad = true;  // a trailing zero group: not the minimal encoding
        return false;
      }
      v |= uint32_t{b & 0x7Fu} << (7 * i);
      if ((b & 0x80) == 0) return true;
    }
    bad = true;
    return false;
  }
  bool bytes(size_t len, std::span<const uint8_t>& out) {
    if (left() < len) return false;
    out = {p + at, len};
    at += len;
    return true;
  }
  bool binary(std::span<const uint8_t>& out) {
    uint16_t len = 0;
    return u16(len) && bytes(len, out);
  }
};

std::string_view as_text(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Reads a length-prefixed string; `reason` says why it failed.
bool read_string(Reader& r, std::string_view& out, DropReason& reason, DropReason overrun) {
  std::span<const uint8_t> b;
  if (!r.binary(b)) {
    reason = overrun;
    return false;
  }
  out = as_text(b);
  if (!valid_utf8(out)) {
    reason = DropReason::kBadUtf8;
    return false;
  }
  return true;
}

// MQTT 5 §2.2.2: Property Length, then the properties of packet `type`.
DropReason read_properties(Reader& r, PacketType type, Packet& out) {
  uint32_t len = 0;
  bool bad = false;
  if (!r.varint(len, bad) || len > r.left()) return DropReason::kBadProperties;
  Reader pr{r.p + r.at, len};
  r.at += len;
  uint64_t seen = 0;
  while (pr.left() > 0) {
    uint8_t id = 0;
    pr.u8(id);
    // Identifiers are one-byte varints here: every defined one is below 0x80.
    if (id >= kProps.size() || kProps[id].type == PropType::kNone) {
      return DropReason::kUnknownProperty;
    }
    const PropInfo& info = kProps[id];
    if ((info.allowed & bit(type)) == 0) return DropReason::kPropertyNotAllowed;
    if (!info.multiple) {
      if ((seen >> id) & 1) return DropReason::kDuplicateProperty;
      seen |= uint64_t{1} << id;
    }
    uint8_t b = 0;
    uint16_t two = 0;
    uint32_t four = 0;
    std::string_view s, v;
    std::span<const uint8_t> bin;
    DropReason why = DropReason::kNone;
    switch (info.type) {
      case PropType::kByte:
        if (!pr.u8(b)) return DropReason::kBadProperties;
        // Payload Format Indicator, Maximum QoS and the *Available flags are 0 or 1.
        if (b > 1) return DropReason::kBadProperties;
        if (id == 0x24) out.maximum_qos = b;
        break;
      case PropType::kTwo:
        if (!pr.u16(two)) return DropReason::kBadProperties;
        if (id == 0x23) return DropReason::kTopicAlias;  // we allowed none (§3.3.2.3.4)
        if (id == 0x21) {
          if (two == 0) return DropReason::kBadProperties;  // §3.2.2.3.3
          out.receive_maximum = two;
        }
        if (id == 0x13) out.server_keep_alive = two;
        break;
      case PropType::kFour:
        if (!pr.u32(four)) return DropReason::kBadProperties;
        if (id == 0x27) {
          if (four == 0) return DropReason::kBadProperties;  // §3.2.2.3.6
          out.maximum_packet_size = four;
        }
        break;
      case PropType::kVarint:
        bad = false;
        if (!pr.varint(four, bad) || four == 0) return DropReason::kBadProperties;
        break;
      case PropType::kUtf8:
        if (!read_string(pr, s, why, DropReason::kBadProperties)) return why;
        if (id == 0x12) out.assigned_client_id = s;
        if (id == 0x1F) out.reason_string = s;
        break;
      case PropType::kBinary:
        if (!pr.binary(bin)) return DropReason::kBadProperties;
        break;
      case PropType::kPair:
        if (!read_string(pr, s, why, DropReason::kBadProperties)) return why;
        if (!read_string(pr, v, why, DropReason::kBadProperties)) return why;
        // W3C Trace Context over MQTT: the traceparent and tracestate user properties (the
        // first of each wins).
        if (type == PacketType::kPublish && s == "traceparent" && out.traceparent.empty()) {
          out.traceparent = v;
        }
        if (type == PacketType::kPublish && s == "tracestate" && out.tracestate.empty()) {
          out.tracestate = v;
        }
        break;
      case PropType::kNone: return DropReason::kUnknownProperty;
    }
  }
  return DropReason::kNone;
}

bool has_wildcard(std::string_view t) {
  return t.find_first_of("+#") != std::string_view::npos;
}

DropReason parse_body(PacketType type, uint8_t flags, Reader& r, const ParserLimits& lim,
                      Packet& out) {
  const bool v5 = lim.version == Version::k5;
  DropReason why = DropReason::kNone;
  switch (type) {
    case PacketType::kConnack: {
      if (flags != 0) return DropReason::kBadFlags;
      uint8_t ack = 0;
      if (!r.u8(ack) || !r.u8(out.reason)) return DropReason::kBadLength;
      if ((ack & 0xFE) != 0) return DropReason::kBadConnack;  // §3.2.2.1: reserved bits
      out.session_present = (ack & 1) != 0;
      if (v5 ? !kConnack5.has(out.reason) : out.reason > 5) return DropReason::kBadReasonCode;
      // §3.2.2.2: a refusal never reports a session.
      if (out.reason != 0 && out.session_present) return DropReason::kBadConnack;
      if (v5 && (why = read_properties(r, type, out)) != DropReason::kNone) return why;
      return r.left() == 0 ? DropReason::kNone : DropReason::kBadLength;
    }
    case PacketType::kPublish: {
      out.qos = (flags >> 1) & 3;
      out.dup = (flags & 8) != 0;
      out.retain = (flags & 1) != 0;
      if (out.qos == 3) return DropReason::kBadQos;              // §3.3.1.2
      if (out.qos == 0 && out.dup) return DropReason::kDupQos0;  // §3.3.1.1
      if (!read_string(r, out.topic, why, DropReason::kBadLength)) return why;
      if (out.qos > 0) {
        if (!r.u16(out.packet_id)) return DropReason::kBadLength;
        if (out.packet_id == 0) return DropReason::kZeroPacketId;  // §2.3.1
      }
      if (v5 && (why = read_properties(r, type, out)) != DropReason::kNone) return why;
      // §4.7.3: a topic name holds no wildcard; empty only with a Topic Alias, which we refuse.
      if (out.topic.empty() || has_wildcard(out.topic)) return DropReason::kBadTopic;
      out.payload = {r.p + r.at, r.left()};
      return DropReason::kNone;
    }
    case PacketType::kPuback: {
      if (flags != 0) return DropReason::kBadFlags;
      if (!r.u16(out.packet_id)) return DropReason::kBadLength;
      if (out.packet_id == 0) return DropReason::kZeroPacketId;
      if (!v5) return r.left() == 0 ? DropReason::kNone : DropReason::kBadLength;
      if (r.left() == 0) return DropReason::kNone;  // §3.4.2.1: success, no properties
      r.u8(out.reason);
      if (!kPuback5.has(out.reason)) return DropReason::kBadReasonCode;
      if (r.left() == 0) return DropReason::kNone;
      if ((why = read_properties(r, type, out)) != DropReason::kNone) return why;
      return r.left() == 0 ? DropReason::kNone : DropReason::kBadLength;
    }
    case PacketType::kSuback: {
      if (flags != 0) return DropReason::kBadFlags;
      if (!r.u16(out.packet_id)) return DropReason::kBadLength;
      if (out.packet_id == 0) return DropReason::kZeroPacketId;
      if (v5 && (why = read_properties(r, type, out)) != DropReason::kNone) return why;
      if (r.left() == 0) return DropReason::kBadLength;  // one code per filter, at least one
      out.reason_codes = {r.p + r.at, r.left()};
      for (uint8_t c : out.reason_codes) {
        if (!(v5 ? kSuback5 : kSuback311).has(c)) return DropReason::kBadReasonCode;
      }
      return DropReason::kNone;
    }
    case PacketType::kPingresp:
      if (flags != 0) return DropReason::kBadFlags;
      return r.left() == 0 ? DropReason::kNone : DropReason::kBadLength;
    case PacketType::kDisconnect: {
      // 3.1.1 §3.14: only a client sends DISCONNECT.
      if (!v5) return DropReason::kUnexpectedType;
      if (flags != 0) return DropReason::kBadFlags;
      if (r.left() == 0) return DropReason::kNone;  // §3.14.2.1: 0x00, no properties
      r.u8(out.reason);
      if (!kDisconnect5.has(out.reason)) return DropReason::kBadReasonCode;
      if (r.left() == 0) return DropReason::kNone;
      if ((why = read_properties(r, type, out)) != DropReason::kNone) return why;
      return r.left() == 0 ? DropReason::kNone : DropReason::kBadLength;
    }
    default:
      // CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ go to servers; PUBREC/PUBREL/PUBCOMP answer
      // QoS 2, UNSUBACK an UNSUBSCRIBE and AUTH an authentication method, none of which this
      // client ever uses.
      return DropReason::kUnexpectedType;
  }
}

// A bounded writer; `ok` turns false on the first write that does not fit.
struct Writer {
  uint8_t* p;
  size_t n;
  size_t at = 0;
  bool ok = true;
  void u8(uint8_t v) {
    if (at + 1 > n) {
      ok = false;
      return;
    }
    p[at++] = v;
  }
  void u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
  }
  void u32(uint32_t v) {
    u16(static_cast<uint16_t>(v >> 16));
    u16(static_cast<uint16_t>(v));
  }
  void varint(uint32_t v) {
    do {
      uint8_t b = v & 0x7F;
      v >>= 7;
      if (v != 0) b |= 0x80;
      u8(b);
    } while (v != 0 && ok);
  }
  void raw(const void* d, size_t len) {
    if (at + len > n) {
      ok = false;
      return;
    }
    if (len > 0) std::memcpy(p + at, d, len);
    at += len;
  }
  void str(std::string_view s) {
    if (s.size() > 0xFFFF) {
      ok = false;
      return;
    }
    u16(static_cast<uint16_t>(s.size()));
    raw(s.data(), s.size());
  }
};

size_t varint_size(uint32_t v) {
  return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

// Writes the fixed header for a body of `body` bytes, then `fill` writes the body.
template <typename F>
size_t packet(std::span<uint8_t> out, uint8_t first, size_t body, F&& fill) {
  if (body > 268'435'455) return 0;
  Writer w{out.data(), out.size()};
  w.u8(first);
  w.varint(static_cast<uint32_t>(body));
  const size_t start = w.at;
  fill(w);
  if (!w.ok || w.at - start != body) return 0;
  return w.at;
}

}  // namespace

std::string_view drop_reason_name(DropReason r) noexcept {
  constexpr std::string_view kNames[] = {"none",
                                         "bad_remaining_length",
                                         "too_large",
                                         "unexpected_type",
                                         "bad_flags",
                                         "bad_length",
                                         "bad_connack",
                                         "bad_reason_code",
                                         "bad_topic",
                                         "bad_utf8",
                                         "zero_packet_id",
                                         "bad_qos",
                                         "dup_qos0",
                                         "bad_properties",
                                         "duplicate_property",
                                         "unknown_property",
                                         "property_not_allowed",
                                         "topic_alias"};
  static_assert(std::size(kNames) == kDropReasonCount);
  const auto i = static_cast<size_t>(r);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

std::string_view packet_type_name(PacketType t) noexcept {
  constexpr std::string_view kNames[] = {"reserved",  "connect",  "connack",     "publish",
                                         "puback",    "pubrec",   "pubrel",      "pubcomp",
                                         "subscribe", "suback",   "unsubscribe", "unsuback",
                                         "pingreq",   "pingresp", "disconnect",  "auth"};
  const auto i = static_cast<size_t>(t);
  return i < std::size(kNames) ? kNames[i] : "unknown";
}

bool valid_utf8(std::string_view s) noexcept {
  // RFC 3629 §4: the well-formed byte sequences (no overlongs, no surrogates, <= U+10FFFF);
  // MQTT also forbids U+0000.
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
      continue;
    }
    size_t len = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + len > n) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

ParseResult parse_packet(std::span<const uint8_t> in, const ParserLimits& limits,
                         Packet& out) noexcept {
  ParseResult res;
  if (in.empty()) return res;
  out = Packet{};
  out.type = static_cast<PacketType>(in[0] >> 4);
  out.flags = in[0] & 0x0F;
  auto malformed = [&](DropReason why) {
    res.status = ParseStatus::kMalformed;
    res.reason = why;
    return res;
  };
  switch (out.type) {
    case PacketType::kConnack:
    case PacketType::kPublish:
    case PacketType::kPuback:
    case PacketType::kSuback:
    case PacketType::kPingresp:
    case PacketType::kDisconnect: break;
    default: return malformed(DropReason::kUnexpectedType);
  }
  Reader h{in.data(), in.size(), 1};
  uint32_t remaining = 0;
  bool bad = false;
  if (!h.varint(remaining, bad)) {
    return bad ? malformed(DropReason::kBadRemainingLength) : res;
  }
  const uint64_t total = h.at + uint64_t{remaining};
  if (total > limits.max_packet_bytes) return malformed(DropReason::kTooLarge);
  if (in.size() < total) return res;
  Reader body{in.data() + h.at, remaining};
  const DropReason why = parse_body(out.type, out.flags, body, limits, out);
  if (why != DropReason::kNone) return malformed(why);
  out.size = static_cast<uint32_t>(total);
  res.status = ParseStatus::kComplete;
  res.size = out.size;
  return res;
}

size_t encode_connect(const ConnectOptions& o, std::span<uint8_t> out) noexcept {
  const bool v5 = o.version == Version::k5;
  // MQTT 5 §3.1.2.11: the CONNECT properties this client sends.
  size_t props = 0;
  if (v5) {
    if (o.session_expiry_s != 0) props += 5;
    if (o.receive_maximum != 0) props += 3;
    if (o.maximum_packet_size != 0) props += 5;
  }
  const bool user = !o.username.empty();
  const bool pass = user && !o.password.empty();  // 3.1.1 §3.1.2.9: no password without user
  size_t body = 10 + o.client_id.size() + 2;
  if (v5) body += varint_size(static_cast<uint32_t>(props)) + props;
  if (user) body += 2 + o.username.size();
  if (pass) body += 2 + o.password.size();
  const uint8_t flags =
      static_cast<uint8_t>((user ? 0x80 : 0) | (pass ? 0x40 : 0) | (o.clean_start ? 0x02 : 0));
  return packet(out, 0x10, body, [&](Writer& w) {
    w.str("MQTT");
    w.u8(static_cast<uint8_t>(o.version));
    w.u8(flags);
    w.u16(o.keep_alive_s);
    if (v5) {
      w.varint(static_cast<uint32_t>(props));
      if (o.session_expiry_s != 0) {
        w.u8(0x11);
        w.u32(o.session_expiry_s);
      }
      if (o.receive_maximum != 0) {
        w.u8(0x21);
        w.u16(o.receive_maximum);
      }
      if (o.maximum_packet_size != 0) {
        w.u8(0x27);
        w.u32(o.maximum_packet_size);
      }
    }
    w.str(o.client_id);
    if (user) w.str(o.username);
    if (pass) w.str(o.password);
  });
}

size_t encode_subscribe(Version v, uint16_t packet_id, std::string_view filter, uint8_t qos,
                        std::span<uint8_t> out) noexcept {
  const bool v5 = v == Version::k5;
  const size_t body = 2 + (v5 ? 1 : 0) + 2 + filter.size() + 1;
  // §3.8.1: SUBSCRIBE's fixed-header flags are 0b0010.
  return packet(out, 0x82, body, [&](Writer& w) {
    w.u16(packet_id);
    if (v5) w.u8(0);  // no properties
    w.str(filter);
    w.u8(qos & 3);  // MQTT 5: No Local 0 (§3.8.3.1: required for shared subscriptions)
  });
}

size_t encode_puback(Version v, uint16_t packet_id, uint8_t reason,
                     std::span<uint8_t> out) noexcept {
  const bool with_reason = v == Version::k5 && reason != 0;
  return packet(out, 0x40, with_reason ? 3 : 2, [&](Writer& w) {
    w.u16(packet_id);
    if (with_reason) w.u8(reason);
  });
}

size_t encode_publish(Version v, std::string_view topic, uint8_t qos, uint16_t packet_id, bool dup,
                      std::span<const uint8_t> payload, std::string_view traceparent,
                      std::string_view tracestate, std::span<uint8_t> out) noexcept {
  const bool v5 = v == Version::k5;
  size_t props = 0;
  if (v5 && !traceparent.empty()) props += 1 + 2 + 11 + 2 + traceparent.size();
  if (v5 && !tracestate.empty()) props += 1 + 2 + 10 + 2 + tracestate.size();
  size_t body = 2 + topic.size() + (qos > 0 ? 2 : 0) + payload.size();
  if (v5) body += varint_size(static_cast<uint32_t>(props)) + props;
  const uint8_t first = static_cast<uint8_t>(0x30 | (dup && qos > 0 ? 0x08 : 0) | ((qos & 3) << 1));
  return packet(out, first, body, [&](Writer& w) {
    w.str(topic);
    if (qos > 0) w.u16(packet_id);
    if (v5) {
      w.varint(static_cast<uint32_t>(props));
      if (!traceparent.empty()) {
        w.u8(0x26);  // User Property (§3.3.2.3.7)
        w.str("traceparent");
        w.str(traceparent);
      }
      if (!tracestate.empty()) {
        w.u8(0x26);
        w.str("tracestate");
        w.str(tracestate);
      }
    }
    w.raw(payload.data(), payload.size());
  });
}

size_t encode_pingreq(std::span<uint8_t> out) noexcept {
  return packet(out, 0xC0, 0, [](Writer&) {});
}

size_t encode_disconnect(Version v, std::span<uint8_t> out) noexcept {
  (void)v;  // MQTT 5 §3.14.2.1: remaining length 0 means reason 0x00, no properties
  return packet(out, 0xE0, 0, [](Writer&) {});
}

}  // namespace tianhe::protocols::mqtt
