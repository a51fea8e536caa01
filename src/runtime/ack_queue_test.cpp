#include "runtime/ack_queue.h"

#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <vector>

namespace tianhe::runtime {
namespace {

sockaddr_in peer(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  return a;
}

TEST(AckQueue, FifoWithBytesAndPeers) {
  AckQueue q(4, 64);
  for (uint8_t i = 0; i < 3; ++i) {
    uint8_t* p = q.reserve(10);
    ASSERT_NE(p, nullptr);
    std::memset(p, i, 10);
    auto a = peer(1000 + i);
    q.commit(10, 100 * i, 0, &a, sizeof a);
  }
  ASSERT_EQ(q.size(), 3u);
  for (uint8_t i = 0; i < 3; ++i) {
    const PendingAck& e = q.at(i);
    EXPECT_EQ(e.durable_at, 100u * i);
    EXPECT_EQ(q.bytes(e)[9], i);
    EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&e.peer)->sin_port), 1000 + i);
  }
  q.pop(3);
  EXPECT_TRUE(q.empty());
}

TEST(AckQueue, BoundedByEntriesAndBytes) {
  AckQueue q(2, 64);
  auto a = peer(1);
  ASSERT_NE(q.reserve(8), nullptr);
  q.commit(8, 1, 0, &a, sizeof a);
  ASSERT_NE(q.reserve(8), nullptr);
  q.commit(8, 2, 0, &a, sizeof a);
  EXPECT_EQ(q.reserve(8), nullptr);  // entries full
  q.pop(2);
  AckQueue small(8, 32);
  ASSERT_NE(small.reserve(20), nullptr);
  small.commit(20, 1, 0, &a, sizeof a);
  EXPECT_EQ(small.reserve(20), nullptr);  // bytes full
}

// Random reserve/commit/pop against a model: bytes never overlap a live entry.
TEST(AckQueue, RandomizedAgainstModel) {
  AckQueue q(16, 200);
  std::deque<std::vector<uint8_t>> model;
  std::mt19937 rng(7);
  auto a = peer(1);
  uint8_t next = 0;
  for (int step = 0; step < 20000; ++step) {
    if (rng() % 2 == 0) {
      uint32_t size = 1 + rng() % 60;
      uint8_t* p = q.reserve(size);
      if (p == nullptr) continue;
      std::vector<uint8_t> v(size, next++);
      std::memcpy(p, v.data(), size);
      q.commit(size, 0, 0, &a, sizeof a);
      model.push_back(v);
    } else if (!q.empty()) {
      uint32_t n = 1 + rng() % q.size();
      for (uint32_t i = 0; i < n; ++i) {
        auto b = q.bytes(q.at(i));
        ASSERT_EQ(std::vector<uint8_t>(b.begin(), b.end()), model[i]) << "step " << step;
      }
      q.pop(n);
      model.erase(model.begin(), model.begin() + n);
    }
    ASSERT_EQ(q.size(), model.size());
  }
}

}  // namespace
}  // namespace tianhe::runtime
