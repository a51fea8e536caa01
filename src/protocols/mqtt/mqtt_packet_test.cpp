// The packet reader against a table of malformed vectors (each with the reason it must give),
// well-formed packets of both versions, streaming (every prefix needs more), and the encoders
// against bytes written out by hand from the specifications' figures.
#include "protocols/mqtt/mqtt_packet.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tianhe::protocols::mqtt {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr Version kV3 = Version::k311;
constexpr Version kV5 = Version::k5;

// Parses a copy kept until the next call: the packet's views stay valid for the checks.
ParseResult parse(const Bytes& b, Version v, Packet& p, uint32_t max = 1u << 18) {
  static Bytes kept;
  kept = b;
  ParserLimits l;
  l.version = v;
  l.max_packet_bytes = max;
  return parse_packet(kept, l, p);
}

struct Vector {
  const char* name;
  Version version;
  Bytes bytes;
  DropReason reason;
};

// Malformed packets a broker might send, and why each must be refused (MQTT 3.1.1 / 5.0
// section in the name).
const std::vector<Vector>& malformed() {
  static const std::vector<Vector> v = {
      {"reserved type 0 (§2.2.1)", kV5, {0x00, 0x00}, DropReason::kUnexpectedType},
      {"CONNECT is client to server", kV5, {0x10, 0x00}, DropReason::kUnexpectedType},
      {"SUBSCRIBE is client to server", kV3, {0x82, 0x00}, DropReason::kUnexpectedType},
      {"UNSUBSCRIBE is client to server", kV3, {0xA2, 0x00}, DropReason::kUnexpectedType},
      {"PINGREQ is client to server", kV5, {0xC0, 0x00}, DropReason::kUnexpectedType},
      {"PUBREC: never published QoS 2", kV5, {0x50, 0x02, 0x00, 0x01}, DropReason::kUnexpectedType},
      {"PUBREL: never subscribed QoS 2",
       kV5,
       {0x62, 0x02, 0x00, 0x01},
       DropReason::kUnexpectedType},
      {"PUBCOMP: never published QoS 2",
       kV3,
       {0x70, 0x02, 0x00, 0x01},
       DropReason::kUnexpectedType},
      {"UNSUBACK: never unsubscribed", kV3, {0xB0, 0x02, 0x00, 0x01}, DropReason::kUnexpectedType},
      {"AUTH: no authentication method", kV5, {0xF0, 0x00}, DropReason::kUnexpectedType},
      {"3.1.1 DISCONNECT from a server (§3.14)", kV3, {0xE0, 0x00}, DropReason::kUnexpectedType},
      {"remaining length of 5 bytes (§2.2.3)",
       kV5,
       {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01},
       DropReason::kBadRemainingLength},
      {"remaining length not minimal (5 §1.5.5)",
       kV5,
       {0xD0, 0x80, 0x00},
       DropReason::kBadRemainingLength},
      {"remaining length 0x80 0x80 0x00",
       kV3,
       {0x30, 0x80, 0x80, 0x00},
       DropReason::kBadRemainingLength},
      {"longer than max_packet_bytes", kV5, {0x30, 0xFF, 0xFF, 0xFF, 0x7F}, DropReason::kTooLarge},
      {"CONNACK flags (§2.2.2)", kV3, {0x21, 0x02, 0x00, 0x00}, DropReason::kBadFlags},
      {"3.1.1 CONNACK of 3 bytes", kV3, {0x20, 0x03, 0x00, 0x00, 0x00}, DropReason::kBadLength},
      {"3.1.1 CONNACK of 1 byte", kV3, {0x20, 0x01, 0x00}, DropReason::kBadLength},
      {"CONNACK reserved ack bits (§3.2.2.1)",
       kV3,
       {0x20, 0x02, 0x02, 0x00},
       DropReason::kBadConnack},
      {"3.1.1 CONNACK return code 6", kV3, {0x20, 0x02, 0x00, 0x06}, DropReason::kBadReasonCode},
      {"CONNACK session present with a refusal (§3.2.2.2)",
       kV3,
       {0x20, 0x02, 0x01, 0x05},
       DropReason::kBadConnack},
      {"5 CONNACK reason 0x01", kV5, {0x20, 0x03, 0x00, 0x01, 0x00}, DropReason::kBadReasonCode},
      {"5 CONNACK without property length",
       kV5,
       {0x20, 0x02, 0x00, 0x00},
       DropReason::kBadProperties},
      {"5 CONNACK property length past the end",
       kV5,
       {0x20, 0x03, 0x00, 0x00, 0x05},
       DropReason::kBadProperties},
      {"5 CONNACK property 0x7F undefined",
       kV5,
       {0x20, 0x05, 0x00, 0x00, 0x02, 0x7F, 0x00},
       DropReason::kUnknownProperty},
      {"5 CONNACK property 0x00 undefined",
       kV5,
       {0x20, 0x05, 0x00, 0x00, 0x02, 0x00, 0x00},
       DropReason::kUnknownProperty},
      {"5 CONNACK Topic Alias",
       kV5,
       {0x20, 0x06, 0x00, 0x00, 0x03, 0x23, 0x00, 0x01},
       DropReason::kPropertyNotAllowed},
      {"5 CONNACK Receive Maximum twice",
       kV5,
       {0x20, 0x09, 0x00, 0x00, 0x06, 0x21, 0x00, 0x05, 0x21, 0x00, 0x05},
       DropReason::kDuplicateProperty},
      {"5 CONNACK Receive Maximum 0 (§3.2.2.3.3)",
       kV5,
       {0x20, 0x06, 0x00, 0x00, 0x03, 0x21, 0x00, 0x00},
       DropReason::kBadProperties},
      {"5 CONNACK Maximum QoS 2",
       kV5,
       {0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02},
       DropReason::kBadProperties},
      {"5 CONNACK Retain Available 2",
       kV5,
       {0x20, 0x05, 0x00, 0x00, 0x02, 0x25, 0x02},
       DropReason::kBadProperties},
      {"5 CONNACK Maximum Packet Size 0",
       kV5,
       {0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0x00, 0x00, 0x00, 0x00},
       DropReason::kBadProperties},
      {"5 CONNACK Reason String not UTF-8",
       kV5,
       {0x20, 0x07, 0x00, 0x00, 0x04, 0x1F, 0x00, 0x01, 0xFF},
       DropReason::kBadUtf8},
      {"5 CONNACK Assigned Client Identifier with U+0000",
       kV5,
       {0x20, 0x07, 0x00, 0x00, 0x04, 0x12, 0x00, 0x01, 0x00},
       DropReason::kBadUtf8},
      {"5 CONNACK truncated Receive Maximum",
       kV5,
       {0x20, 0x05, 0x00, 0x00, 0x02, 0x21, 0x00},
       DropReason::kBadProperties},
      {"5 CONNACK Request Problem Information (client only)",
       kV5,
       {0x20, 0x05, 0x00, 0x00, 0x02, 0x17, 0x01},
       DropReason::kPropertyNotAllowed},
      {"5 CONNACK Will Delay Interval (client only)",
       kV5,
       {0x20, 0x08, 0x00, 0x00, 0x05, 0x18, 0x00, 0x00, 0x00, 0x01},
       DropReason::kPropertyNotAllowed},
      {"5 CONNACK a byte after the properties",
       kV5,
       {0x20, 0x04, 0x00, 0x00, 0x00, 0x00},
       DropReason::kBadLength},
      {"PUBLISH QoS 3 (§3.3.1.2)",
       kV3,
       {0x36, 0x05, 0x00, 0x01, 'a', 0x00, 0x01},
       DropReason::kBadQos},
      {"PUBLISH QoS 0 with DUP (§3.3.1.1)",
       kV3,
       {0x38, 0x05, 0x00, 0x03, 'a', '/', 'b'},
       DropReason::kDupQos0},
      {"3.1.1 PUBLISH with an empty topic", kV3, {0x30, 0x02, 0x00, 0x00}, DropReason::kBadTopic},
      {"PUBLISH topic with + (§4.7.3)",
       kV3,
       {0x30, 0x05, 0x00, 0x03, 'a', '/', '+'},
       DropReason::kBadTopic},
      {"PUBLISH topic with #", kV3, {0x30, 0x05, 0x00, 0x03, 'a', '/', '#'}, DropReason::kBadTopic},
      {"PUBLISH topic length past the end",
       kV3,
       {0x30, 0x03, 0x00, 0x05, 'a'},
       DropReason::kBadLength},
      {"PUBLISH without a topic length", kV3, {0x30, 0x01, 0x00}, DropReason::kBadLength},
      {"PUBLISH topic with U+0000 (§1.5.3)",
       kV3,
       {0x30, 0x04, 0x00, 0x02, 'a', 0x00},
       DropReason::kBadUtf8},
      {"PUBLISH topic with an overlong C0 80",
       kV3,
       {0x30, 0x04, 0x00, 0x02, 0xC0, 0x80},
       DropReason::kBadUtf8},
      {"PUBLISH topic with a surrogate ED A0 80",
       kV3,
       {0x30, 0x05, 0x00, 0x03, 0xED, 0xA0, 0x80},
       DropReason::kBadUtf8},
      {"PUBLISH topic above U+10FFFF (F5)",
       kV3,
       {0x30, 0x06, 0x00, 0x04, 0xF5, 0x80, 0x80, 0x80},
       DropReason::kBadUtf8},
      {"PUBLISH topic with a truncated sequence",
       kV3,
       {0x30, 0x04, 0x00, 0x02, 'a', 0xE2},
       DropReason::kBadUtf8},
      {"PUBLISH topic with an overlong E0 80 80",
       kV3,
       {0x30, 0x05, 0x00, 0x03, 0xE0, 0x80, 0x80},
       DropReason::kBadUtf8},
      {"PUBLISH QoS 1 packet id 0 (§2.3.1)",
       kV3,
       {0x32, 0x05, 0x00, 0x01, 'a', 0x00, 0x00},
       DropReason::kZeroPacketId},
      {"PUBLISH QoS 1 without packet id",
       kV3,
       {0x32, 0x04, 0x00, 0x01, 'a', 0x00},
       DropReason::kBadLength},
      {"5 PUBLISH without property length",
       kV5,
       {0x30, 0x03, 0x00, 0x01, 'a'},
       DropReason::kBadProperties},
      {"5 PUBLISH Topic Alias (we allow none)",
       kV5,
       {0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x23, 0x00, 0x01},
       DropReason::kTopicAlias},
      {"5 PUBLISH empty topic without alias",
       kV5,
       {0x30, 0x03, 0x00, 0x00, 0x00},
       DropReason::kBadTopic},
      {"5 PUBLISH Payload Format Indicator 2",
       kV5,
       {0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x01, 0x02},
       DropReason::kBadProperties},
      {"5 PUBLISH Message Expiry twice",
       kV5,
       {0x30, 0x0E, 0x00, 0x01, 'a', 0x0A, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1},
       DropReason::kDuplicateProperty},
      {"5 PUBLISH Subscription Identifier 0",
       kV5,
       {0x30, 0x06, 0x00, 0x01, 'a', 0x02, 0x0B, 0x00},
       DropReason::kBadProperties},
      {"5 PUBLISH Session Expiry (CONNECT/CONNACK only)",
       kV5,
       {0x30, 0x09, 0x00, 0x01, 'a', 0x05, 0x11, 0, 0, 0, 1},
       DropReason::kPropertyNotAllowed},
      {"5 PUBLISH Assigned Client Identifier",
       kV5,
       {0x30, 0x08, 0x00, 0x01, 'a', 0x04, 0x12, 0x00, 0x01, 'x'},
       DropReason::kPropertyNotAllowed},
      {"5 PUBLISH truncated User Property",
       kV5,
       {0x30, 0x09, 0x00, 0x01, 'a', 0x05, 0x26, 0x00, 0x01, 'k', 0x00},
       DropReason::kBadProperties},
      {"5 PUBLISH User Property key not UTF-8",
       kV5,
       {0x30, 0x0B, 0x00, 0x01, 'a', 0x07, 0x26, 0x00, 0x01, 0xFE, 0x00, 0x01, 'v'},
       DropReason::kBadUtf8},
      {"5 PUBLISH property id 0x80 (two-byte varint)",
       kV5,
       {0x30, 0x07, 0x00, 0x01, 'a', 0x03, 0x80, 0x01, 0x00},
       DropReason::kUnknownProperty},
      {"5 PUBLISH property length past the end",
       kV5,
       {0x30, 0x04, 0x00, 0x01, 'a', 0x09},
       DropReason::kBadProperties},
      {"5 PUBLISH Correlation Data overruns",
       kV5,
       {0x30, 0x08, 0x00, 0x01, 'a', 0x04, 0x09, 0x00, 0x05, 'x'},
       DropReason::kBadProperties},
      {"PUBACK flags", kV3, {0x42, 0x02, 0x00, 0x01}, DropReason::kBadFlags},
      {"3.1.1 PUBACK of 3 bytes", kV3, {0x40, 0x03, 0x00, 0x01, 0x00}, DropReason::kBadLength},
      {"PUBACK packet id 0", kV5, {0x40, 0x02, 0x00, 0x00}, DropReason::kZeroPacketId},
      {"5 PUBACK reason 0x01", kV5, {0x40, 0x03, 0x00, 0x01, 0x01}, DropReason::kBadReasonCode},
      {"5 PUBACK a byte after the properties",
       kV5,
       {0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00},
       DropReason::kBadLength},
      {"SUBACK flags", kV3, {0x92, 0x03, 0x00, 0x01, 0x00}, DropReason::kBadFlags},
      {"3.1.1 SUBACK without a code", kV3, {0x90, 0x02, 0x00, 0x01}, DropReason::kBadLength},
      {"3.1.1 SUBACK code 0x03", kV3, {0x90, 0x03, 0x00, 0x01, 0x03}, DropReason::kBadReasonCode},
      {"5 SUBACK code 0x11", kV5, {0x90, 0x04, 0x00, 0x01, 0x00, 0x11}, DropReason::kBadReasonCode},
      {"3.1.1 SUBACK code 0x87 (MQTT 5 only)",
       kV3,
       {0x90, 0x03, 0x00, 0x01, 0x87},
       DropReason::kBadReasonCode},
      {"SUBACK packet id 0", kV3, {0x90, 0x03, 0x00, 0x00, 0x00}, DropReason::kZeroPacketId},
      {"5 SUBACK Topic Alias property",
       kV5,
       {0x90, 0x07, 0x00, 0x01, 0x03, 0x23, 0x00, 0x01, 0x00},
       DropReason::kPropertyNotAllowed},
      {"PINGRESP with a body", kV3, {0xD0, 0x01, 0x00}, DropReason::kBadLength},
      {"PINGRESP flags", kV5, {0xD1, 0x00}, DropReason::kBadFlags},
      {"5 DISCONNECT flags", kV5, {0xE1, 0x00}, DropReason::kBadFlags},
      {"5 DISCONNECT reason 0x04 (client only)",
       kV5,
       {0xE0, 0x01, 0x04},
       DropReason::kBadReasonCode},
      {"5 DISCONNECT Session Expiry from a server (§3.14.2.2.2)",
       kV5,
       {0xE0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 1},
       DropReason::kPropertyNotAllowed},
      {"5 DISCONNECT property length past the end",
       kV5,
       {0xE0, 0x02, 0x8B, 0x04},
       DropReason::kBadProperties},
  };
  return v;
}

TEST(MqttPacket, MalformedVectors) {
  ASSERT_GE(malformed().size(), 60u);
  for (const Vector& v : malformed()) {
    Packet p;
    const ParseResult r = parse(v.bytes, v.version, p, 1u << 20);
    EXPECT_EQ(r.status, ParseStatus::kMalformed) << v.name;
    EXPECT_EQ(drop_reason_name(r.reason), drop_reason_name(v.reason)) << v.name;
  }
}

TEST(MqttPacket, NeedMore) {
  Packet p;
  EXPECT_EQ(parse({}, kV5, p).status, ParseStatus::kNeedMore);
  EXPECT_EQ(parse({0x30}, kV5, p).status, ParseStatus::kNeedMore);
  EXPECT_EQ(parse({0x30, 0x80}, kV5, p).status, ParseStatus::kNeedMore);
  EXPECT_EQ(parse({0x30, 0x05, 0x00, 0x01}, kV5, p).status, ParseStatus::kNeedMore);
  // A length beyond the limit is refused at once, not waited for.
  EXPECT_EQ(parse({0x30, 0x81, 0x01}, kV5, p, 100).reason, DropReason::kTooLarge);
}

TEST(MqttPacket, Connack) {
  Packet p;
  ParseResult r = parse({0x20, 0x02, 0x01, 0x00}, kV3, p);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(r.size, 4u);
  EXPECT_TRUE(p.session_present);
  EXPECT_EQ(p.reason, 0);
  // MQTT 5 with Receive Maximum 10, Server Keep Alive 20, Assigned Client Identifier "id",
  // Maximum QoS 1, a user property.
  const Bytes b5 = {0x20, 0x1A, 0x00, 0x00, 0x17, 0x21, 0x00, 0x0A, 0x13, 0x00,
                    0x14, 0x12, 0x00, 0x02, 'i',  'd',  0x24, 0x01, 0x26, 0x00,
                    0x01, 'k',  0x00, 0x02, 'v',  'w',  0x2A, 0x01};
  r = parse(b5, kV5, p);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
  EXPECT_EQ(p.receive_maximum, 10);
  EXPECT_EQ(p.server_keep_alive, 20);
  EXPECT_EQ(p.assigned_client_id, "id");
  EXPECT_EQ(p.maximum_qos, 1);
  r = parse({0x20, 0x03, 0x00, 0x87, 0x00}, kV5, p);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(p.reason, 0x87);
}

TEST(MqttPacket, Publish) {
  Packet p;
  const Bytes b3 = {0x33, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'x', 'y', 'z'};
  ParseResult r = parse(b3, kV3, p);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_EQ(p.qos, 1);
  EXPECT_TRUE(p.retain);
  EXPECT_FALSE(p.dup);
  EXPECT_EQ(p.topic, "a/b");
  EXPECT_EQ(p.packet_id, 0x1234);
  EXPECT_EQ(std::string(p.payload.begin(), p.payload.end()), "xyz");
  // QoS 0, empty payload.
  r = parse({0x30, 0x03, 0x00, 0x01, 'a'}, kV3, p);
  ASSERT_EQ(r.status, ParseStatus::kComplete);
  EXPECT_TRUE(p.payload.empty());
}

TEST(MqttPacket, PublishRoundTripWithTraceparent) {
  const std::string tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const std::string payload = "{\"temperature\": 21.5}";
  uint8_t buf[256];
  for (Version v : {kV3, kV5}) {
    const size_t n = encode_publish(
        v, "acme/7/telemetry", 1, 77, true,
        {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, tp, "", buf);
    ASSERT_GT(n, 0u);
    Packet p;
    const ParseResult r = parse(Bytes(buf, buf + n), v, p);
    ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
    EXPECT_EQ(r.size, n);
    EXPECT_EQ(p.topic, "acme/7/telemetry");
    EXPECT_EQ(p.packet_id, 77);
    EXPECT_TRUE(p.dup);
    EXPECT_EQ(std::string(p.payload.begin(), p.payload.end()), payload);
    EXPECT_EQ(p.traceparent, v == kV5 ? tp : "");
    EXPECT_EQ(p.tracestate, "");
  }
}

TEST(MqttPacket, PublishTracestateUserProperty) {
  const std::string tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  const std::string ts = "vendor=x,ot=th:8;rv:9b8233f7e3a151";
  uint8_t buf[256];
  size_t n = encode_publish(kV5, "acme/7/telemetry", 0, 0, false, {}, tp, ts, buf);
  ASSERT_GT(n, 0u);
  Packet p;
  ParseResult r = parse(Bytes(buf, buf + n), kV5, p);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
  EXPECT_EQ(p.traceparent, tp);
  EXPECT_EQ(p.tracestate, ts);
  // Alone, and a second tracestate property ignored (the first wins), as a client may send.
  const Bytes two = {0x30, 0x27, 0x00, 0x01, 't',  0x23, 0x26, 0x00, 0x0A, 't',  'r',
                     'a',  'c',  'e',  's',  't',  'a',  't',  'e',  0x00, 0x04, 'o',
                     't',  '=',  'a',  0x26, 0x00, 0x0A, 't',  'r',  'a',  'c',  'e',
                     's',  't',  'a',  't',  'e',  0x00, 0x01, 'b'};
  r = parse(two, kV5, p);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
  EXPECT_EQ(p.tracestate, "ot=a");
  EXPECT_EQ(p.traceparent, "");
  // MQTT 3.1.1 has no properties: nothing is written.
  n = encode_publish(kV3, "t", 0, 0, false, {}, tp, ts, buf);
  ASSERT_EQ(parse(Bytes(buf, buf + n), kV3, p).status, ParseStatus::kComplete);
  EXPECT_EQ(p.tracestate, "");
}

TEST(MqttPacket, SubackPingrespDisconnectPuback) {
  Packet p;
  ASSERT_EQ(parse({0x90, 0x03, 0x00, 0x01, 0x01}, kV3, p).status, ParseStatus::kComplete);
  EXPECT_EQ(p.reason_codes.size(), 1u);
  EXPECT_EQ(p.reason_codes[0], 0x01);
  ASSERT_EQ(parse({0x90, 0x04, 0x00, 0x01, 0x00, 0x87}, kV5, p).status, ParseStatus::kComplete);
  EXPECT_EQ(p.reason_codes[0], 0x87);
  ASSERT_EQ(parse({0xD0, 0x00}, kV3, p).status, ParseStatus::kComplete);
  EXPECT_EQ(p.type, PacketType::kPingresp);
  ASSERT_EQ(parse({0xE0, 0x00}, kV5, p).status, ParseStatus::kComplete);
  EXPECT_EQ(p.reason, 0);
  ASSERT_EQ(parse({0xE0, 0x01, 0x8B}, kV5, p).status, ParseStatus::kComplete);
  EXPECT_EQ(p.reason, 0x8B);
  ASSERT_EQ(parse({0x40, 0x02, 0x00, 0x09}, kV5, p).status, ParseStatus::kComplete);
  EXPECT_EQ(p.packet_id, 9);
  ASSERT_EQ(parse({0x40, 0x08, 0x00, 0x09, 0x10, 0x04, 0x1F, 0x00, 0x01, 'r'}, kV5, p).status,
            ParseStatus::kComplete);
  EXPECT_EQ(p.reason, 0x10);
  EXPECT_EQ(p.reason_string, "r");
}

TEST(MqttPacket, StreamOfPackets) {
  // Three packets back to back: every strict prefix of each needs more.
  uint8_t buf[128];
  Bytes s;
  size_t n = encode_publish(kV5, "t/1", 1, 5, false, {}, "", "", buf);
  s.insert(s.end(), buf, buf + n);
  s.insert(s.end(), {0xD0, 0x00});
  n = encode_publish(kV5, "t/2", 0, 0, false, {}, "", "", buf);
  s.insert(s.end(), buf, buf + n);
  size_t at = 0;
  int packets = 0;
  while (at < s.size()) {
    Packet p;
    ParseResult r;
    size_t len = 1;
    for (; at + len <= s.size(); ++len) {
      r = parse(Bytes(s.begin() + static_cast<long>(at), s.begin() + static_cast<long>(at + len)),
                kV5, p);
      if (r.status != ParseStatus::kNeedMore) break;
    }
    ASSERT_EQ(r.status, ParseStatus::kComplete);
    EXPECT_EQ(r.size, len);
    at += r.size;
    ++packets;
  }
  EXPECT_EQ(packets, 3);
}

TEST(MqttPacket, EncodeConnect311) {
  // MQTT 3.1.1 §3.1: "MQTT", level 4, clean session + user + password, keep alive 60.
  ConnectOptions o;
  o.version = kV3;
  o.client_id = "c1";
  o.clean_start = true;
  o.keep_alive_s = 60;
  o.username = "u";
  o.password = "p";
  uint8_t buf[64];
  const size_t n = encode_connect(o, buf);
  const Bytes want = {0x10, 0x14, 0x00, 0x04, 'M', 'Q',  'T',  'T', 0x04, 0xC2, 0x00,
                      0x3C, 0x00, 0x02, 'c',  '1', 0x00, 0x01, 'u', 0x00, 0x01, 'p'};
  EXPECT_EQ(Bytes(buf, buf + n), want);
}

TEST(MqttPacket, EncodeConnect5) {
  ConnectOptions o;
  o.version = kV5;
  o.client_id = "c";
  o.keep_alive_s = 30;
  o.session_expiry_s = 3600;
  o.receive_maximum = 1024;
  o.maximum_packet_size = 65536;
  uint8_t buf[64];
  const size_t n = encode_connect(o, buf);
  const Bytes want = {0x10, 0x1B, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x05, 0x00,
                      0x00, 0x1E, 0x0D, 0x11, 0x00, 0x00, 0x0E, 0x10, 0x21, 0x04,
                      0x00, 0x27, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 'c'};
  EXPECT_EQ(Bytes(buf, buf + n), want);
  // Too small a buffer: nothing.
  EXPECT_EQ(encode_connect(o, std::span<uint8_t>(buf, 10)), 0u);
}

TEST(MqttPacket, EncodeSubscribePubackPing) {
  uint8_t buf[64];
  size_t n = encode_subscribe(kV3, 1, "+/+/telemetry", 1, buf);
  Bytes want = {0x82, 0x12, 0x00, 0x01, 0x00, 0x0D};
  for (char c : std::string("+/+/telemetry")) want.push_back(static_cast<uint8_t>(c));
  want.push_back(0x01);
  EXPECT_EQ(Bytes(buf, buf + n), want);
  n = encode_subscribe(kV5, 1, "a", 1, buf);
  EXPECT_EQ(Bytes(buf, buf + n), (Bytes{0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x01}));
  n = encode_puback(kV5, 0x0102, 0, buf);
  EXPECT_EQ(Bytes(buf, buf + n), (Bytes{0x40, 0x02, 0x01, 0x02}));
  EXPECT_EQ(n, kPubackBytes);
  n = encode_puback(kV5, 0x0102, 0x90, buf);
  EXPECT_EQ(Bytes(buf, buf + n), (Bytes{0x40, 0x03, 0x01, 0x02, 0x90}));
  n = encode_puback(kV3, 0x0102, 0x90, buf);  // 3.1.1 has no reason code
  EXPECT_EQ(Bytes(buf, buf + n), (Bytes{0x40, 0x02, 0x01, 0x02}));
  n = encode_pingreq(buf);
  EXPECT_EQ(Bytes(buf, buf + n), (Bytes{0xC0, 0x00}));
  n = encode_disconnect(kV5, buf);
  EXPECT_EQ(Bytes(buf, buf + n), (Bytes{0xE0, 0x00}));
}

TEST(MqttPacket, Utf8) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(valid_utf8(std::string_view("a\0b", 3)));
  EXPECT_FALSE(valid_utf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(valid_utf8("\xF0\x8F\xBF\xBF"));  // overlong 4-byte
  EXPECT_FALSE(valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\x80"));              // lone continuation
}

}  // namespace
}  // namespace tianhe::protocols::mqtt
