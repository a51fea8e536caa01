// The frame parser against hand-written bytes of MQTT-SN v1.2 §5.4, every encoder through the
// parser, and the malformed cases each drop reason names.
#include "protocols/mqtt_sn/mqtt_sn_parser.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace tianhe::protocols::mqtt_sn {
namespace {

using Bytes = std::vector<uint8_t>;

ParseResult parse(const Bytes& b, Frame& f, Sender from = Sender::kClient) {
  return parse_frame(b, ParserLimits{}, f, from);
}

DropReason reason(const Bytes& b, Sender from = Sender::kClient) {
  Frame f;
  return parse(b, f, from).reason;
}

TEST(MqttSnParser, ConnectFromTheSpec) {
  // §5.4.4: length 0x0B, CONNECT, flags CleanSession, ProtocolId 1, duration 60, "client1".
  const Bytes b = {0x0B, 0x04, 0x04, 0x01, 0x00, 0x3C, 'c', 'l', 'i', 'e', 'n', 't', '1'};
  Frame f;
  Bytes fixed = b;
  fixed[0] = static_cast<uint8_t>(b.size());
  const ParseResult r = parse(fixed, f);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
  EXPECT_EQ(f.type, MsgType::kConnect);
  EXPECT_TRUE(f.flags.clean_session);
  EXPECT_FALSE(f.flags.will);
  EXPECT_EQ(f.duration, 60);
  EXPECT_EQ(f.client_id, "client1");
  EXPECT_EQ(reason(b), DropReason::kLengthMismatch);  // 0x0B disagrees with 13 bytes
}

TEST(MqttSnParser, PublishFlagsTopicTypesAndData) {
  std::array<uint8_t, 64> buf{};
  const std::array<uint8_t, 3> data = {'{', '}', 0};
  for (Qos q : {Qos::kQos0, Qos::kQos1, Qos::kQos2, Qos::kQosMinus1}) {
    for (TopicIdType t : {TopicIdType::kNormal, TopicIdType::kPredefined, TopicIdType::kShort}) {
      Flags fl;
      fl.qos = q;
      fl.topic_id_type = t;
      fl.dup = q == Qos::kQos1;
      fl.retain = true;
      const size_t n = encode_publish(fl, 0x6162, 0xBEEF, data, buf);
      ASSERT_EQ(n, 7u + data.size());
      Frame f;
      ASSERT_EQ(parse_frame({buf.data(), n}, {}, f).status, ParseStatus::kComplete);
      EXPECT_EQ(f.type, MsgType::kPublish);
      EXPECT_EQ(f.flags.qos, q);
      EXPECT_EQ(f.flags.topic_id_type, t);
      EXPECT_EQ(f.flags.dup, fl.dup);
      EXPECT_TRUE(f.flags.retain);
      EXPECT_EQ(f.topic_id, 0x6162);
      EXPECT_EQ(f.msg_id, 0xBEEF);
      EXPECT_EQ(f.data.size(), data.size());
      if (t == TopicIdType::kShort) {
        EXPECT_EQ(f.topic, "ab");
      }
    }
  }
  // TopicIdType 0b11 is reserved.
  EXPECT_EQ(reason({0x08, 0x0C, 0x03, 0, 1, 0, 1, 'x'}), DropReason::kBadFlags);
}

TEST(MqttSnParser, ThreeOctetLengthForLongMessages) {
  std::vector<uint8_t> data(300, 'x');
  std::vector<uint8_t> buf(400);
  const size_t n = encode_publish({}, 1, 2, data, buf);
  ASSERT_EQ(n, 4u + 5u + 300u);
  EXPECT_EQ(buf[0], 0x01);
  Frame f;
  ParserLimits big;
  big.max_frame_bytes = 512;
  ASSERT_EQ(parse_frame({buf.data(), n}, big, f).status, ParseStatus::kComplete);
  EXPECT_EQ(f.data.size(), 300u);
  // The same message over the default 1024-byte limit is fine; over a 256-byte one it is not.
  ParserLimits small;
  small.max_frame_bytes = 256;
  EXPECT_EQ(parse_frame({buf.data(), n}, small, f).reason, DropReason::kOversized);
  // A short message written in the three-octet form has two encodings: refused.
  EXPECT_EQ(reason({0x01, 0x00, 0x04, 0x16}), DropReason::kBadLength);
}

TEST(MqttSnParser, EveryGatewayEncoderParsesBackAsSent) {
  std::array<uint8_t, kMaxReplyBytes> b{};
  Frame f;
  auto back = [&](size_t n) {
    const ParseResult r = parse_frame({b.data(), n}, {}, f, Sender::kGateway);
    EXPECT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
  };
  back(encode_connack(ReturnCode::kCongestion, b));
  EXPECT_EQ(f.type, MsgType::kConnack);
  EXPECT_EQ(f.return_code, ReturnCode::kCongestion);
  back(encode_regack(7, 9, ReturnCode::kInvalidTopicId, b));
  EXPECT_EQ(f.type, MsgType::kRegack);
  EXPECT_EQ(f.topic_id, 7);
  EXPECT_EQ(f.msg_id, 9);
  EXPECT_EQ(f.return_code, ReturnCode::kInvalidTopicId);
  back(encode_puback(3, 4, ReturnCode::kAccepted, b));
  EXPECT_EQ(f.type, MsgType::kPuback);
  EXPECT_EQ(f.topic_id, 3);
  for (MsgType t : {MsgType::kPubrec, MsgType::kPubrel, MsgType::kPubcomp}) {
    back(encode_msg_id_only(t, 0xABCD, b));
    EXPECT_EQ(f.type, t);
    EXPECT_EQ(f.msg_id, 0xABCD);
  }
  for (MsgType t : {MsgType::kPingResp, MsgType::kWillTopicReq, MsgType::kWillMsgReq}) {
    back(encode_empty(t, b));
    EXPECT_EQ(f.type, t);
  }
  back(encode_return_code(MsgType::kWillTopicResp, ReturnCode::kAccepted, b));
  EXPECT_EQ(f.type, MsgType::kWillTopicResp);
  back(encode_gwinfo(42, b));
  EXPECT_EQ(f.type, MsgType::kGwInfo);
  EXPECT_EQ(f.gw_id, 42);
  back(encode_advertise(5, 900, b));
  EXPECT_EQ(f.type, MsgType::kAdvertise);
  EXPECT_EQ(f.gw_id, 5);
  EXPECT_EQ(f.duration, 900);
  back(encode_suback({}, 0, 11, ReturnCode::kNotSupported, b));
  EXPECT_EQ(f.type, MsgType::kSuback);
  EXPECT_EQ(f.msg_id, 11);
  back(encode_unsuback(12, b));
  EXPECT_EQ(f.type, MsgType::kUnsuback);
  back(encode_disconnect(0, b));
  EXPECT_EQ(f.type, MsgType::kDisconnect);
  EXPECT_FALSE(f.has_duration);
}

TEST(MqttSnParser, EveryClientEncoderParsesBackAsSent) {
  std::array<uint8_t, 128> b{};
  Frame f;
  Flags fl;
  fl.will = true;
  fl.clean_session = true;
  size_t n = encode_connect(fl, 30, "dev-17", b);
  ASSERT_EQ(parse_frame({b.data(), n}, {}, f).status, ParseStatus::kComplete);
  EXPECT_TRUE(f.flags.will);
  EXPECT_EQ(f.client_id, "dev-17");
  EXPECT_EQ(f.duration, 30);
  n = encode_register(5, "acme/17/telemetry", b);
  ASSERT_EQ(parse_frame({b.data(), n}, {}, f).status, ParseStatus::kComplete);
  EXPECT_EQ(f.topic, "acme/17/telemetry");
  EXPECT_EQ(f.msg_id, 5);
  n = encode_pingreq("dev-17", b);
  ASSERT_EQ(parse_frame({b.data(), n}, {}, f).status, ParseStatus::kComplete);
  EXPECT_EQ(f.client_id, "dev-17");
  n = encode_disconnect(600, b);
  ASSERT_EQ(parse_frame({b.data(), n}, {}, f).status, ParseStatus::kComplete);
  EXPECT_TRUE(f.has_duration);
  EXPECT_EQ(f.duration, 600);
}

TEST(MqttSnParser, DirectionOfTypes) {
  // A gateway never receives CONNACK; a client never receives CONNECT.
  EXPECT_EQ(reason({0x03, 0x05, 0x00}), DropReason::kUnsupportedType);
  EXPECT_EQ(reason({0x06, 0x04, 0x04, 0x01, 0x00, 0x3C}, Sender::kGateway),
            DropReason::kUnsupportedType);
  EXPECT_EQ(reason({0x05, 0x00, 0x01, 0x00, 0x3C}), DropReason::kUnsupportedType);  // ADVERTISE
  EXPECT_EQ(reason({0x03, 0xFE, 0x00}), DropReason::kBadEncapsulation);  // encapsulated, no node
}

TEST(MqttSnParser, MalformedDatagrams) {
  EXPECT_EQ(reason({}), DropReason::kEmpty);
  EXPECT_EQ(reason({0x02}), DropReason::kTruncatedHeader);
  EXPECT_EQ(reason({0x01, 0x01}), DropReason::kTruncatedHeader);
  EXPECT_EQ(reason({0x00, 0x16}), DropReason::kBadLength);
  EXPECT_EQ(reason({0x03, 0x16}), DropReason::kLengthMismatch);
  EXPECT_EQ(reason({0x02, 0x03}), DropReason::kBadType);
  EXPECT_EQ(reason({0x02, 0x11}), DropReason::kBadType);
  EXPECT_EQ(reason({0x02, 0x19}), DropReason::kBadType);
  EXPECT_EQ(reason({0x02, 0x1E}), DropReason::kBadType);
  EXPECT_EQ(reason({0x02, 0xFF}), DropReason::kBadType);
  EXPECT_EQ(reason({0x06, 0x04, 0x04, 0x02, 0x00, 0x3C}), DropReason::kBadProtocolId);
  EXPECT_EQ(reason({0x06, 0x04, 0x04, 0x01, 0x00, 0x3C}), DropReason::kBadClientId);  // empty
  Bytes long_id = {0, 0x04, 0x04, 0x01, 0x00, 0x3C};
  long_id.insert(long_id.end(), 24, 'a');
  long_id[0] = static_cast<uint8_t>(long_id.size());
  EXPECT_EQ(reason(long_id), DropReason::kBadClientId);
  EXPECT_EQ(reason({0x05, 0x04, 0x04, 0x01, 0x00}), DropReason::kBadBody);
  EXPECT_EQ(reason({0x06, 0x0A, 0, 0, 0, 1}), DropReason::kBadBody);  // REGISTER without name
  EXPECT_EQ(reason({0x08, 0x0A, 0, 0, 0, 1, 'a', '#'}), DropReason::kBadTopicName);
  EXPECT_EQ(reason({0x04, 0x10, 0x00}), DropReason::kLengthMismatch);
  EXPECT_EQ(reason({0x03, 0x10, 0x00}), DropReason::kBadBody);        // PUBREL: 1 byte of 2
  EXPECT_EQ(reason({0x05, 0x18, 0, 1, 2}), DropReason::kBadBody);     // DISCONNECT: 3 bytes
  EXPECT_EQ(reason({0x06, 0x0C, 0, 0, 1, 0}), DropReason::kBadBody);  // PUBLISH without msg id
}

// §5.5: Length, 0xFE, Ctrl, Wireless Node Id, then the message.
Bytes wrap(const Bytes& node, const Bytes& message, uint8_t ctrl = 0) {
  // Reserved up front: GCC 12 at -O3 misreads an insert into a 3-byte vector as out of bounds.
  Bytes b;
  b.reserve(3 + node.size() + message.size());
  b.push_back(static_cast<uint8_t>(3 + node.size()));
  b.push_back(0xFE);
  b.push_back(ctrl);
  b.insert(b.end(), node.begin(), node.end());
  b.insert(b.end(), message.begin(), message.end());
  return b;
}

TEST(MqttSnParser, EncapsulatedFromAForwarder) {
  // §5.5 figure: a forwarder wraps a client's PINGREQ ("c1" wakes up) with node id 0x0102.
  const Bytes b = {0x05, 0xFE, 0x01, 0x01, 0x02, 0x04, 0x16, 'c', '1'};
  Frame f;
  const ParseResult r = parse(b, f);
  ASSERT_EQ(r.status, ParseStatus::kComplete) << drop_reason_name(r.reason);
  EXPECT_EQ(f.type, MsgType::kPingReq);
  EXPECT_EQ(f.client_id, "c1");
  EXPECT_EQ(Bytes(f.node_id.begin(), f.node_id.end()), (Bytes{0x01, 0x02}));
  EXPECT_EQ(f.ctrl, 0x01);
  // A direct message has no node id.
  ASSERT_EQ(parse({0x02, 0x16}, f).status, ParseStatus::kComplete);
  EXPECT_TRUE(f.node_id.empty());
  // The longest node id accepted, and a long (three-octet) message inside.
  Bytes node(kMaxNodeIdBytes, 0xAA);
  Bytes publish = {0x01, 0x01, 0x2C, 0x0C, 0x00, 0x00, 0x01, 0x00, 0x00};
  publish.resize(300, 'x');
  ASSERT_EQ(parse(wrap(node, publish), f).status, ParseStatus::kComplete);
  EXPECT_EQ(f.type, MsgType::kPublish);
  EXPECT_EQ(f.node_id.size(), kMaxNodeIdBytes);
  EXPECT_EQ(f.data.size(), 291u);
}

TEST(MqttSnParser, MalformedEncapsulations) {
  const Bytes ping = {0x02, 0x16};
  EXPECT_EQ(reason({0x02, 0xFE}), DropReason::kTruncatedHeader);
  EXPECT_EQ(reason(wrap({}, ping)), DropReason::kBadEncapsulation);                  // no node id
  EXPECT_EQ(reason({0x04, 0xFE, 0x00, 0x01}), DropReason::kBadEncapsulation);        // no message
  EXPECT_EQ(reason({0x09, 0xFE, 0x00, 0x01, 0x02}), DropReason::kBadEncapsulation);  // past end
  EXPECT_EQ(reason(wrap(Bytes(kMaxNodeIdBytes + 1, 1), ping)), DropReason::kNodeIdTooLong);
  EXPECT_EQ(reason(wrap(Bytes(252, 1), ping)), DropReason::kNodeIdTooLong);
  EXPECT_EQ(reason(wrap({1}, ping, 0x04)), DropReason::kBadEncapsulation);  // reserved Ctrl bit
  EXPECT_EQ(reason(wrap({1}, wrap({2}, ping))), DropReason::kBadEncapsulation);  // nested
  EXPECT_EQ(reason(wrap({1}, {0x03, 0x16})), DropReason::kLengthMismatch);       // short of the end
  EXPECT_EQ(reason(wrap({1}, {0x02, 0x16, 0x00})), DropReason::kLengthMismatch);  // past it
  EXPECT_EQ(reason(wrap({1}, {0x02, 0x03})), DropReason::kBadType);
  EXPECT_EQ(reason(wrap({1}, {0x03, 0x05, 0x00})), DropReason::kUnsupportedType);  // CONNACK
  Bytes long_form = {0x01, 0x01, 0x00, 0xFE};
  long_form.resize(256, 0);
  EXPECT_EQ(reason(long_form), DropReason::kBadEncapsulation);  // Length is one octet (§5.5)
  ParserLimits tight;
  tight.max_node_id_bytes = 2;
  Frame f;
  EXPECT_EQ(parse_frame(wrap({1, 2, 3}, ping), tight, f).reason, DropReason::kNodeIdTooLong);
  EXPECT_EQ(parse_frame(wrap({1, 2}, ping), tight, f).status, ParseStatus::kComplete);
}

TEST(MqttSnParser, EncapsulationEncoderRoundTrips) {
  std::array<uint8_t, 64> b{};
  const Bytes msg = {0x03, 0x05, 0x00};  // CONNACK accepted, as the gateway answers
  const Bytes node = {0x0A, 0x0B, 0x0C};
  const size_t n = encode_encapsulated(0x02, node, msg, b);
  ASSERT_EQ(n, 9u);
  EXPECT_EQ(Bytes(b.begin(), b.begin() + static_cast<long>(n)),
            (Bytes{0x06, 0xFE, 0x02, 0x0A, 0x0B, 0x0C, 0x03, 0x05, 0x00}));
  Frame f;
  ASSERT_EQ(parse_frame({b.data(), n}, {}, f, Sender::kGateway).status, ParseStatus::kComplete);
  EXPECT_EQ(f.type, MsgType::kConnack);
  EXPECT_EQ(f.node_id.size(), 3u);
  EXPECT_EQ(encode_encapsulated(0, {}, msg, b), 0u);  // a node id is required
  EXPECT_EQ(encode_encapsulated(0, Bytes(kMaxNodeIdBytes + 1, 1), msg, b), 0u);
  EXPECT_EQ(encode_encapsulated(0, node, msg, std::span<uint8_t>(b.data(), 8)), 0u);
  EXPECT_EQ(encode_encapsulated(0xFF, node, msg, b), 9u);
  EXPECT_EQ(b[2], 0x03);  // only the radius bits are written
}

}  // namespace
}  // namespace tianhe::protocols::mqtt_sn
