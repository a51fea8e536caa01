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
