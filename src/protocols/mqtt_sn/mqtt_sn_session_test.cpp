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

TEST(MqttSnSessions, SlotIsSmall) {
  // The memory budget is 512 bytes per idle session, indexes included (two 4-byte entries per
  // slot at load 1/2: 16 bytes).
  EXPECT_LE(sizeof(MqttSnSession) + 16, 512u);
}

}  // namespace
}  // namespace tianhe::protocols::mqtt_sn
