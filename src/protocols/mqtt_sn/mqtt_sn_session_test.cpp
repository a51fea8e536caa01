// The session table against a simple reference (std::map) under a seeded random sequence of
// adds and removes, stale references, and the sleep buffer pool.
#include "protocols/mqtt_sn/mqtt_sn_session.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <map>
#include <random>
#include <string>

namespace tianhe::protocols::mqtt_sn {
namespace {

PeerKey key(uint32_t n) {
  sockaddr_storage ss{};
  auto& a = reinterpret_cast<sockaddr_in&>(ss);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x7F000001 + (n >> 16));
  a.sin_port = htons(static_cast<uint16_t>(n));
  return peer_key(ss, sizeof a);
}

TEST(MqttSnSessions, MatchesAReferenceUnderRandomAddsAndRemoves) {
  constexpr uint32_t kCap = 500;
  SessionTable t(kCap);
  std::map<uint32_t, uint32_t> ref;  // peer number -> session index
  std::mt19937 rng(7);
  for (int step = 0; step < 20000; ++step) {
    const uint32_t peer = rng() % 1500;
    const std::string id = "c" + std::to_string(peer);
    const auto it = ref.find(peer);
    if (it == ref.end()) {
      ASSERT_EQ(t.find_peer(key(peer)), kNoSession);
      ASSERT_EQ(t.find_client(id), kNoSession);
      const uint32_t s = t.add(key(peer), id);
      if (ref.size() == kCap) {
        ASSERT_EQ(s, kNoSession);
      } else {
        ASSERT_NE(s, kNoSession);
        ref[peer] = s;
      }
    } else {
      ASSERT_EQ(t.find_peer(key(peer)), it->second);
      ASSERT_EQ(t.find_client(id), it->second);
      ASSERT_EQ(t.at(it->second).id(), id);
      if (rng() % 2 == 0) {
        const uint32_t r = t.ref(it->second);
        t.remove(it->second);
        ASSERT_EQ(t.resolve(r), kNoSession);  // a reference to an ended session goes stale
        ref.erase(it);
      }
    }
    ASSERT_EQ(t.size(), ref.size());
  }
  for (const auto& [peer, s] : ref) {
    EXPECT_EQ(t.resolve(t.ref(s)), s);
    EXPECT_LE(s, t.high_water());
  }
}

TEST(MqttSnSessions, Ipv6AndIpv4KeysDiffer) {
  sockaddr_storage ss{};
  auto& a = reinterpret_cast<sockaddr_in6&>(ss);
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  a.sin6_port = htons(1);
  const PeerKey k6 = peer_key(ss, sizeof a);
  EXPECT_EQ(k6.family, 6);
  EXPECT_FALSE(k6 == key(1));
  sockaddr_storage back{};
  socklen_t len = 0;
  peer_address(k6, back, len);
  EXPECT_EQ(len, sizeof(sockaddr_in6));
  EXPECT_EQ(peer_key(back, len), k6);
}

TEST(MqttSnSessions, ClientsBehindAForwarderAreKeyedByNodeId) {
  constexpr uint32_t kCap = 300;
  SessionTable t(kCap);
  const PeerKey fw = key(9);
  const uint8_t a[] = {0x01};
  const uint8_t b[] = {0x01, 0x00};  // differs from `a` only in its length
  const uint8_t c[kMaxNodeIdBytes] = {0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02};
  const PeerKey ka = forwarded_key(fw, a);
  const PeerKey kb = forwarded_key(fw, b);
  const PeerKey kc = forwarded_key(fw, c);
  EXPECT_FALSE(ka == kb);
  EXPECT_FALSE(ka == fw);
  EXPECT_EQ(kc.node_len, kMaxNodeIdBytes);
  const uint32_t sd = t.add(fw, "direct");
  const uint32_t sa = t.add(ka, "node-a");
  const uint32_t sb = t.add(kb, "node-b");
  const uint32_t sc = t.add(kc, "node-c");
  EXPECT_EQ(t.find_peer(fw), sd);
  EXPECT_EQ(t.find_peer(ka), sa);
  EXPECT_EQ(t.find_peer(kb), sb);
  EXPECT_EQ(t.find_peer(kc), sc);
  // Replies go to the forwarder's address.
  sockaddr_storage to{};
  socklen_t len = 0;
  peer_address(kc, to, len);
  EXPECT_EQ(peer_key(to, len), fw);
  t.remove(sa);
  EXPECT_EQ(t.find_peer(ka), kNoSession);
  EXPECT_EQ(t.find_peer(kb), sb);
  // Many node ids behind one forwarder: the index tells them apart.
  for (uint32_t i = 0; i < 200; ++i) {
    const uint8_t id[2] = {static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    ASSERT_NE(t.add(forwarded_key(key(10), id), "n" + std::to_string(i)), kNoSession);
  }
  for (uint32_t i = 0; i < 200; ++i) {
    const uint8_t id[2] = {static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    const uint32_t s = t.find_peer(forwarded_key(key(10), id));
    ASSERT_NE(s, kNoSession);
    EXPECT_EQ(t.at(s).id(), "n" + std::to_string(i));
  }
}

TEST(MqttSnSessions, ForwarderRules) {
  auto r = parse_forwarders(" 127.0.0.1, 10.0.0.6:1885 ,[::1]:7, fd00::2,");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 4u);
  EXPECT_TRUE((*r)[0].any_port);
  EXPECT_FALSE((*r)[1].any_port);
  EXPECT_TRUE(forwarder_allowed(*r, key(1)));  // 127.0.0.1, any port
  EXPECT_TRUE(forwarder_allowed(*r, key(65535)));
  EXPECT_FALSE(forwarder_allowed(*r, key(0x10000)));  // 127.0.0.2
  sockaddr_storage ss{};
  auto& a = reinterpret_cast<sockaddr_in&>(ss);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(0x0A000006);
  a.sin_port = htons(1885);
  EXPECT_TRUE(forwarder_allowed(*r, peer_key(ss, sizeof a)));
  a.sin_port = htons(1886);
  EXPECT_FALSE(forwarder_allowed(*r, peer_key(ss, sizeof a)));
  auto& a6 = reinterpret_cast<sockaddr_in6&>(ss);
  ss = sockaddr_storage{};
  a6.sin6_family = AF_INET6;
  a6.sin6_addr = in6addr_loopback;
  a6.sin6_port = htons(7);
  EXPECT_TRUE(forwarder_allowed(*r, peer_key(ss, sizeof a6)));
  a6.sin6_port = htons(8);
  EXPECT_FALSE(forwarder_allowed(*r, peer_key(ss, sizeof a6)));
  EXPECT_TRUE(parse_forwarders("").ok());
  EXPECT_TRUE(parse_forwarders("")->empty());
  for (const char* bad : {"host.example", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "[::1",
                          "[::1]x", "10.0.0.256", "*"}) {
    auto e = parse_forwarders(bad);
    ASSERT_FALSE(e.ok()) << bad;
    EXPECT_NE(e.error().message.find("protocols.mqtt_sn.forwarders"), std::string::npos);
  }
  std::string many;
  for (int i = 0; i < 65; ++i) many += "10.0.0." + std::to_string(i) + ",";
  EXPECT_FALSE(parse_forwarders(many).ok());
}

TEST(MqttSnSessions, SleepBuffersAreBounded) {
  SleepBuffers b(2, 64);
  const uint32_t x = b.take();
  const uint32_t y = b.take();
  EXPECT_NE(x, 0u);
  EXPECT_NE(y, 0u);
  EXPECT_NE(x, y);
  EXPECT_EQ(b.take(), 0u);
  EXPECT_EQ(b.data(x).size(), 64u);
  b.give_back(x);
  EXPECT_EQ(b.in_use(), 1u);
  EXPECT_EQ(b.take(), x);
  SleepBuffers none(0, 64);
  EXPECT_EQ(none.take(), 0u);
}

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string text(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

TEST(MqttSnWills, TopicAndMessageAreKeptWithinTheBuffer) {
  // A buffer for max_will_bytes = 16: topic and message together fit in 16 bytes.
  BufferPool pool(1, kWillHeaderBytes + 16);
  const uint32_t h = pool.take();
  ASSERT_NE(h, 0u);
  const std::span<uint8_t> buf = pool.data(h);
  std::fill(buf.begin(), buf.end(), 0xAB);  // a reused buffer holds old bytes
  will_reset(buf);
  WillView w = will_view(buf);
  EXPECT_TRUE(w.topic.empty());
  EXPECT_TRUE(w.message.empty());
  ASSERT_TRUE(will_set_topic(buf, 0x30, "a/1/t"));
  ASSERT_TRUE(will_set_message(buf, bytes("offline")));
  w = will_view(buf);
  EXPECT_EQ(w.flags, 0x30);
  EXPECT_EQ(w.topic, "a/1/t");
  EXPECT_EQ(text(w.message), "offline");
  // A longer topic moves the message behind it; a shorter one too.
  ASSERT_TRUE(will_set_topic(buf, 0x20, "a/12/tt"));
  w = will_view(buf);
  EXPECT_EQ(w.topic, "a/12/tt");
  EXPECT_EQ(text(w.message), "offline");
  ASSERT_TRUE(will_set_topic(buf, 0x20, "b"));
  EXPECT_EQ(text(will_view(buf).message), "offline");
  // 16 bytes exactly fit; one more is refused and leaves the will as it was.
  ASSERT_TRUE(will_set_message(buf, bytes("123456789012345")));  // 1 + 15
  EXPECT_FALSE(will_set_message(buf, bytes("1234567890123456")));
  EXPECT_FALSE(will_set_topic(buf, 0, "bb"));
  w = will_view(buf);
  EXPECT_EQ(w.topic, "b");
  EXPECT_EQ(text(w.message), "123456789012345");
  ASSERT_TRUE(will_set_message(buf, {}));
  EXPECT_TRUE(will_view(buf).message.empty());
  EXPECT_EQ(pool.take(), 0u);  // the pool is bounded
}

TEST(MqttSnWills, AnEmptyBufferHoldsNoWill) {
  EXPECT_FALSE(will_set_topic({}, 0, "t"));
  EXPECT_FALSE(will_set_message({}, bytes("m")));
  EXPECT_TRUE(will_view({}).topic.empty());
  uint8_t tiny[kWillHeaderBytes] = {};
  EXPECT_TRUE(will_set_topic(tiny, 0, ""));
  EXPECT_FALSE(will_set_topic(tiny, 0, "t"));
}

TEST(MqttSnSessions, SlotIsSmall) {
  // The memory budget is 512 bytes per idle session, indexes included (two 4-byte entries per
  // slot at load 1/2: 16 bytes).
  EXPECT_LE(sizeof(MqttSnSession) + 16, 512u);
}

}  // namespace
}  // namespace tianhe::protocols::mqtt_sn
