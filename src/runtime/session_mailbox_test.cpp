#include "runtime/session_mailbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace tianhe::runtime {
namespace {

using std::chrono::milliseconds;

// A "shard" of 2,500 sessions numbered 1..2500, paged by cursor = last number listed.
void fill(uint64_t after, uint32_t limit, SessionPage& page) {
  constexpr uint64_t kSessions = 2500;
  uint64_t i = after;
  while (i < kSessions && page.sessions.size() < limit) {
    ++i;
    page.sessions.push_back("{\"n\":" + std::to_string(i) + "}");
  }
  page.next = i;
  page.more = i < kSessions;
  page.total = kSessions;
}

TEST(SessionMailbox, TheShardThreadAnswersEveryPage) {
  SessionMailbox box;
  EXPECT_GE(box.fd(), 0);
  std::atomic<bool> stop{false};
  std::thread shard([&] {
    while (!stop.load()) {
      box.serve(fill);
      std::this_thread::yield();
    }
  });
  uint64_t after = 0, seen = 0;
  bool more = true;
  while (more) {
    auto page = box.ask(after, 700, milliseconds(10'000));
    ASSERT_TRUE(page.ok()) << page.error().message;
    for (const std::string& s : page->sessions) {
      EXPECT_EQ(s, "{\"n\":" + std::to_string(++seen) + "}");
    }
    EXPECT_EQ(page->total, 2500u);
    after = page->next;
    more = page->more;
  }
  EXPECT_EQ(seen, 2500u);
  // The page size is clamped to kMaxSessionPage.
  auto big = box.ask(0, 1'000'000, milliseconds(10'000));
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->sessions.size(), kMaxSessionPage);
  stop = true;
  shard.join();
}

TEST(SessionMailbox, AnUnansweredQuestionTimesOutAndALateServeFindsNone) {
  SessionMailbox box;
  auto page = box.ask(0, 10, milliseconds(20));
  ASSERT_FALSE(page.ok());
  EXPECT_NE(page.error().message.find("did not answer"), std::string::npos);
  bool called = false;
  box.serve([&](uint64_t, uint32_t, SessionPage&) { called = true; });
  EXPECT_FALSE(called);
}

TEST(SessionMailbox, ServeWithoutAQuestionDoesNothing) {
  SessionMailbox box;
  bool called = false;
  box.serve([&](uint64_t, uint32_t, SessionPage&) { called = true; });
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace tianhe::runtime
