// The keys file (mode, errors), the session table's indexes and the session journal: a restart
// keeps frame counters, DevNonces and joined sessions, and a torn tail is ignored.
#include "protocols/lorawan/lorawan_session.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

namespace tianhe::protocols::lorawan {
namespace {

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lorawan-session-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& text, mode_t mode = 0600) {
    std::string p = dir_ + "/keys.toml";
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  std::string dir_;
};

constexpr const char* kKeys = R"(
[[gateways]]
eui = "0102030405060708"
[[devices]]
dev_eui = "0000000000000001"
dev_addr = "26011bda"
nwk_s_key = "44024241ed4ce9a68c6a8bc055233fd3"
app_s_key = "ec925802ae430ca77fd3dd73cb2cc588"
[[devices]]
dev_eui = "0004a30b001c0530"
join_eui = "70b3d57ed0000001"
app_key = "2b7e151628aed2a6abf7158809cf4f3c"
)";

TEST_F(SessionTest, LoadsKeysFile) {
  auto k = load_keys_file(write(kKeys), "k");
  ASSERT_TRUE(k.ok()) << k.error().message;
  ASSERT_EQ(k->devices.size(), 2u);
  EXPECT_EQ(k->devices[0].dev_addr, 0x26011bdau);
  EXPECT_TRUE(k->devices[0].has_session);
  EXPECT_TRUE(k->devices[1].otaa);
  EXPECT_EQ(k->devices[1].join_eui, 0x70b3d57ed0000001ull);
  ASSERT_EQ(k->gateways.size(), 1u);
  EXPECT_EQ(k->gateways[0].eui, 0x0102030405060708ull);
}

TEST_F(SessionTest, RefusesOpenModeAndBadEntries) {
  auto k = load_keys_file(write(kKeys, 0644), "protocols.lorawan.keys_file");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.error().message.find("mode 0644"), std::string::npos) << k.error().message;
  EXPECT_NE(k.error().message.find("chmod 600"), std::string::npos);
  k = load_keys_file(write("[[devices]]\ndev_eui = \"01\"\n"), "k");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.error().message.find("devices[0].dev_eui"), std::string::npos);
  k = load_keys_file(
      write("[[devices]]\ndev_eui = \"0000000000000001\"\ndev_addr = \"01020304\"\n"), "k");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.error().message.find("nwk_s_key"), std::string::npos) << k.error().message;
  k = load_keys_file(write(std::string(kKeys) + "[[devices]]\ndev_eui = \"0000000000000001\"\n"
                                                "app_key = \"2b7e151628aed2a6abf7158809cf4f3c\"\n"),
                     "k");
  ASSERT_FALSE(k.ok());
  EXPECT_NE(k.error().message.find("listed twice"), std::string::npos);
  k = load_keys_file(dir_ + "/missing.toml", "k");
  EXPECT_FALSE(k.ok());
}

TEST_F(SessionTest, IndexesAndJoins) {
  auto k = load_keys_file(write(kKeys), "k");
  ASSERT_TRUE(k.ok());
  SessionTable t(k->devices);
  EXPECT_EQ(t.sessions(), 1u);
  EXPECT_EQ(t.find_eui(1), 0);
  EXPECT_EQ(t.find_eui(0x0004a30b001c0530ull), 1);
  EXPECT_EQ(t.find_eui(7), -1);
  EXPECT_EQ(t.find_addr(0x26011bda, [](uint32_t) { return true; }), 0);
  EXPECT_EQ(t.find_addr(0x26000001, [](uint32_t) { return true; }), -1);
  t.set_addr(1, 0x26000001);
  EXPECT_EQ(t.sessions(), 2u);
  EXPECT_EQ(t.find_addr(0x26000001, [](uint32_t) { return true; }), 1);
  // Many rejoins: the stale slots are reclaimed and lookups keep working.
  for (uint32_t i = 2; i < 200; ++i) t.set_addr(1, 0x26000000 + i);
  EXPECT_EQ(t.find_addr(0x26000000 + 199, [](uint32_t) { return true; }), 1);
  EXPECT_EQ(t.find_addr(0x26000001, [](uint32_t) { return true; }), -1);
  EXPECT_EQ(t.sessions(), 2u);
}

TEST_F(SessionTest, JournalSurvivesRestartAndTornTail) {
  auto k = load_keys_file(write(kKeys), "k");
  ASSERT_TRUE(k.ok());
  const std::string jdir = dir_ + "/lorawan";
  {
    SessionTable t(k->devices);
    auto j = SessionJournal::open(jdir, t, true);
    ASSERT_TRUE(j.ok()) << j.error().message;
    t[0].fcnt_up = 41;
    t[0].has_fcnt = true;
    j->uplink(t[0]);
    t[0].fcnt_up = 42;
    j->uplink(t[0]);
    Device& o = t[1];
    o.dev_nonce = 7;
    o.has_dev_nonce = true;
    o.join_nonce = 3;
    o.nwk_s_key[0] = 0xAB;
    t.set_addr(1, 0x26000005);
    j->join(o);
    ASSERT_TRUE(j->commit(t));
    t[0].fcnt_up = 43;
    j->uplink(t[0]);  // never committed: as if the process died before relying on it
  }
  {
    SessionTable t(k->devices);
    auto j = SessionJournal::open(jdir, t, true);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(t[0].fcnt_up, 42u);
    EXPECT_TRUE(t[0].has_fcnt);
    EXPECT_TRUE(t[1].has_session);
    EXPECT_EQ(t[1].dev_addr, 0x26000005u);
    EXPECT_EQ(t[1].dev_nonce, 7);
    EXPECT_EQ(t[1].join_nonce, 3u);
    EXPECT_EQ(t[1].nwk_s_key[0], 0xAB);
    EXPECT_EQ(t.find_addr(0x26000005, [](uint32_t) { return true; }), 1);
    t[0].fcnt_up = 50;
    j->uplink(t[0]);
    ASSERT_TRUE(j->commit(t));
  }
  // A torn record at the end (a crash mid-write) is ignored; what precedes it holds.
  {
    std::ofstream(jdir + "/sessions.journal", std::ios::app) << std::string("\x01\x0c\x01\x02", 4);
    SessionTable t(k->devices);
    auto j = SessionJournal::open(jdir, t, true);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(t[0].fcnt_up, 50u);
  }
}

// Many uplinks: the journal is compacted while running whenever it outgrows its threshold, stays
// bounded, and a reload gives the same counters and join state.
TEST_F(SessionTest, JournalCompactsWhileRunning) {
  auto k = load_keys_file(write(kKeys), "k");
  ASSERT_TRUE(k.ok());
  const std::string jdir = dir_ + "/lorawan";
  constexpr uint64_t kCompact = 2048;
  uint64_t largest = 0;
  {
    SessionTable t(k->devices);
    auto j = SessionJournal::open(jdir, t, true, kCompact);
    ASSERT_TRUE(j.ok()) << j.error().message;
    Device& o = t[1];
    o.dev_nonce = 9;
    o.has_dev_nonce = true;
    o.join_nonce = 4;
    o.app_s_key[3] = 0x5A;
    t.set_addr(1, 0x26000009);
    j->join(o);
    ASSERT_TRUE(j->commit(t));
    for (uint32_t c = 1; c <= 2000; ++c) {
      t[0].fcnt_up = c;
      t[0].has_fcnt = true;
      j->uplink(t[0]);
      if (c % 7 == 0) {
        t[1].fcnt_down = c / 7;
        j->downlink(t[1]);
      }
      if (c % 10 == 0) {
        ASSERT_TRUE(j->commit(t));
        largest = std::max(largest, j->file_bytes());
        EXPECT_EQ(j->file_bytes(), std::filesystem::file_size(jdir + "/sessions.journal"));
      }
    }
    // 2000 uplinks of 18 bytes (36,000 bytes) through a 2 KiB threshold.
    EXPECT_GE(j->compactions(), 10u);
    EXPECT_LE(largest, kCompact);
    EXPECT_FALSE(std::filesystem::exists(jdir + "/sessions.journal.tmp"));
  }
  SessionTable t(k->devices);
  auto j = SessionJournal::open(jdir, t, true, kCompact);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(t[0].fcnt_up, 2000u);
  EXPECT_TRUE(t[0].has_fcnt);
  EXPECT_EQ(t[1].fcnt_down, 2000u / 7);
  EXPECT_TRUE(t[1].has_session);
  EXPECT_EQ(t[1].dev_addr, 0x26000009u);
  EXPECT_EQ(t[1].dev_nonce, 9);
  EXPECT_EQ(t[1].join_nonce, 4u);
  EXPECT_EQ(t[1].app_s_key[3], 0x5A);
  EXPECT_EQ(t.find_addr(0x26000009, [](uint32_t) { return true; }), 1);
}

// A crash during a compaction leaves the old journal (the temporary file, complete or not, is
// ignored) or the new one; a crash during an append leaves a truncated tail, which replay
// stops before.
TEST_F(SessionTest, JournalCrashDuringCompactionOrAppend) {
  auto k = load_keys_file(write(kKeys), "k");
  ASSERT_TRUE(k.ok());
  const std::string jdir = dir_ + "/lorawan";
  const std::string journal = jdir + "/sessions.journal";
  {
    SessionTable t(k->devices);
    auto j = SessionJournal::open(jdir, t, true);
    ASSERT_TRUE(j.ok());
    t[0].fcnt_up = 70;
    t[0].has_fcnt = true;
    j->uplink(t[0]);
    ASSERT_TRUE(j->commit(t));
  }
  // 1. Died mid-compaction, before the rename: a partial temporary file with a higher counter
  // (never relied on: compact() had not returned).
  {
    SessionTable t(k->devices);
    t[0].fcnt_up = 999;
    t[0].has_fcnt = true;
    auto j = SessionJournal::open(dir_ + "/other", t, true);
    ASSERT_TRUE(j.ok());
    std::filesystem::copy_file(dir_ + "/other/sessions.journal", journal + ".tmp");
    std::ofstream(journal + ".tmp", std::ios::app) << std::string("\x03\x3b\x01", 3);  // torn
  }
  {
    SessionTable t(k->devices);
    auto j = SessionJournal::open(jdir, t, true);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(t[0].fcnt_up, 70u);
    // 2. Compacted now (the temporary file was replaced and renamed), then appends of which the
    // last is cut short by the crash.
    EXPECT_FALSE(std::filesystem::exists(journal + ".tmp"));
    for (uint32_t c = 71; c <= 73; ++c) {
      t[0].fcnt_up = c;
      j->uplink(t[0]);
      ASSERT_TRUE(j->commit(t));
    }
  }
  std::filesystem::resize_file(journal, std::filesystem::file_size(journal) - 5);
  {
    SessionTable t(k->devices);
    auto j = SessionJournal::open(jdir, t, true);
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(t[0].fcnt_up, 72u);
    // 3. An explicit compaction, then the same file reloaded.
    ASSERT_TRUE(j->compact(t));
    EXPECT_EQ(j->compactions(), 1u);
    EXPECT_EQ(j->file_bytes(), std::filesystem::file_size(journal));
  }
  SessionTable t(k->devices);
  auto j = SessionJournal::open(jdir, t, true);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(t[0].fcnt_up, 72u);
  EXPECT_TRUE(t[0].has_fcnt);
}

}  // namespace
}  // namespace tianhe::protocols::lorawan
