#include "sinks/store/paced_vfs.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "sinks/store/sqlite_db.h"

namespace tianhe::sinks::store {
namespace {

class PacedVfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-paced-vfs-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

/// Writes `rows` blobs of `bytes` bytes (row i filled with i % 251) in one transaction.
void write_rows(Db& db, int rows, int bytes) {
  ASSERT_TRUE(db.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, data BLOB NOT NULL)"));
  ASSERT_TRUE(db.exec("BEGIN"));
  auto st = db.prepare("INSERT INTO t(id, data) VALUES(?, ?)");
  ASSERT_TRUE(st);
  std::vector<uint8_t> blob(static_cast<size_t>(bytes));
  for (int i = 0; i < rows; ++i) {
    std::fill(blob.begin(), blob.end(), static_cast<uint8_t>(i % 251));
    st->bind(1, i);
    st->bind_blob(2, blob);
    ASSERT_EQ(st->step(), SQLITE_DONE);
    st->reset();
  }
  ASSERT_TRUE(db.exec("COMMIT"));
}

TEST_F(PacedVfsTest, WritesThroughItStartWritebackEveryFewHundredKilobytesAndReadBackAnywhere) {
  const char* vfs = paced_vfs_name();
  ASSERT_NE(vfs, nullptr);
  EXPECT_EQ(paced_vfs_name(), vfs);  // registered once
  const std::string path = dir_ + "/paced.db";
  const uint64_t kicks_before = paced_vfs_kicks();
  constexpr int kRows = 512;
  constexpr int kBytes = 8192;  // 4 MiB in all, written to the WAL and then checkpointed
  {
    auto db = Db::open(path, true, vfs);
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE(db->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"));
    write_rows(*db, kRows, kBytes);
    ASSERT_TRUE(db->exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  // At least one kick per kPacedBytesPerSync of the WAL's 4 MiB (the checkpoint adds more).
  EXPECT_GE(paced_vfs_kicks() - kicks_before,
            static_cast<uint64_t>(kRows) * kBytes / kPacedBytesPerSync);

  // The file is an ordinary SQLite database: the default VFS reads every row back.
  auto db = Db::open(path, false);
  ASSERT_TRUE(db) << db.error().message;
  auto count = db->query_i64("SELECT count(*) FROM t", -1);
  ASSERT_TRUE(count);
  EXPECT_EQ(*count, kRows);
  auto st = db->prepare("SELECT id, data FROM t ORDER BY id");
  ASSERT_TRUE(st);
  int rows = 0;
  while (st->step() == SQLITE_ROW) {
    const auto blob = st->blob(1);
    ASSERT_EQ(blob.size(), static_cast<size_t>(kBytes));
    const auto want = static_cast<uint8_t>(st->i64(0) % 251);
    EXPECT_EQ(blob.front(), want);
    EXPECT_EQ(blob.back(), want);
    ++rows;
  }
  EXPECT_EQ(rows, kRows);
}

TEST_F(PacedVfsTest, AFailedOpenIsReportedWithThePath) {
  auto db = Db::open(dir_ + "/missing/x.db", true, paced_vfs_name());
  ASSERT_FALSE(db);
  EXPECT_NE(db.error().message.find("missing/x.db"), std::string::npos) << db.error().message;
  EXPECT_NE(db.error().message.find("cannot open"), std::string::npos) << db.error().message;
}

TEST_F(PacedVfsTest, AReaderOnTheDefaultVfsSeesCommitsOfAWriterOnThePacedOne) {
  const std::string path = dir_ + "/shared.db";
  auto writer = Db::open(path, true, paced_vfs_name());
  ASSERT_TRUE(writer) << writer.error().message;
  ASSERT_TRUE(writer->exec("PRAGMA journal_mode=WAL"));
  write_rows(*writer, 40, 100'000);  // 4 MB, still in the WAL (the shared-memory index)
  auto reader = Db::open(path, false);
  ASSERT_TRUE(reader) << reader.error().message;
  auto count = reader->query_i64("SELECT count(*) FROM t", -1);
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(*count, 40);
}

}  // namespace
}  // namespace tianhe::sinks::store
