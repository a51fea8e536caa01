#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "log/segment_files.h"
#include "log/shard_log.h"

namespace tianhe::log {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// A fresh temporary directory, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "th-log-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// Waits until `cond` holds or the deadline passes; returns whether it held.
template <typename F>
bool wait_for(F cond, std::chrono::seconds deadline = 30s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!cond()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

/// The payload of record number i: its index, then a pattern of a size that varies with i.
std::vector<uint8_t> make_payload(uint32_t i, size_t size = 0) {
  if (size == 0) size = 4 + (i * 37) % 700;
  std::vector<uint8_t> p(std::max<size_t>(size, 4));
  std::memcpy(p.data(), &i, 4);
  for (size_t k = 4; k < p.size(); ++k) p[k] = static_cast<uint8_t>(i * 31 + k);
  return p;
}

/// Checks that `payload` is record number i as made by make_payload.
bool is_payload(std::span<const uint8_t> payload, uint32_t i) {
  if (payload.size() < 4) return false;
  uint32_t got = 0;
  std::memcpy(&got, payload.data(), 4);
  if (got != i) return false;
  for (size_t k = 4; k < payload.size(); ++k) {
    if (payload[k] != static_cast<uint8_t>(i * 31 + k)) return false;
  }
  return true;
}

LogConfig small_config(const std::string& dir, Durability d = Durability::kNone) {
  LogConfig c;
  c.dir = dir;
  c.durability = d;
  c.segment_bytes = 8 * 1024;
  c.max_record_bytes = 64 * 1024;
  return c;
}

std::unique_ptr<ShardLog> open_log(const LogConfig& c, LogStats* stats, uint32_t shard = 0) {
  auto r = ShardLog::open(c, shard, stats);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r.value()) : nullptr;
}

/// Appends records [first, first + n); returns the end offset after each.
std::vector<uint64_t> append_n(ShardLog& log, uint32_t first, uint32_t n) {
  std::vector<uint64_t> ends;
  for (uint32_t i = first; i < first + n; ++i) {
    auto p = make_payload(i);
    uint64_t end = 0;
    EXPECT_EQ(log.append(p, &end), AppendStatus::kOk) << "record " << i;
    ends.push_back(end);
  }
  return ends;
}

/// Reads every record from `offset` up to `limit`, checking they are records first, first+1...
/// Returns the count read; `status` gets the status that stopped the reading.
uint32_t read_all(const LogConfig& c, uint64_t offset, uint64_t limit, uint32_t first,
                  ReadStatus* status = nullptr, uint32_t shard = 0) {
  auto r = LogReader::open(c, shard, offset);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r.ok()) return 0;
  uint32_t n = 0;
  std::span<const uint8_t> payload;
  ReadStatus s;
  while ((s = (*r)->next(limit, payload)) == ReadStatus::kRecord) {
    EXPECT_TRUE(is_payload(payload, first + n)) << "record " << first + n;
    ++n;
  }
  if (status != nullptr) *status = s;
  return n;
}

std::vector<fs::path> segment_files(const std::string& dir, uint32_t shard = 0) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(detail::shard_dir(dir, shard))) {
    if (e.path().extension() == ".seg") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(LogFrame, RoundTripAndBounds) {
  const std::vector<uint8_t> p = {1, 2, 3, 4, 5};
  std::vector<uint8_t> frame(kRecordHeaderBytes + p.size());
  write_frame_header(p, frame.data());
  std::copy(p.begin(), p.end(), frame.begin() + kRecordHeaderBytes);
  std::span<const uint8_t> payload;
  size_t bytes = 0;
  ASSERT_EQ(parse_frame(frame, 100, payload, bytes), FrameStatus::kComplete);
  EXPECT_EQ(bytes, frame.size());
  EXPECT_TRUE(std::equal(payload.begin(), payload.end(), p.begin(), p.end()));
  for (size_t cut = 0; cut < frame.size(); ++cut) {
    EXPECT_EQ(parse_frame(std::span(frame).first(cut), 100, payload, bytes),
              FrameStatus::kNeedMore);
  }
  EXPECT_EQ(parse_frame(frame, 4, payload, bytes), FrameStatus::kMalformed);  // too long
  frame.back() ^= 1;
  EXPECT_EQ(parse_frame(frame, 100, payload, bytes), FrameStatus::kMalformed);  // bad CRC
  // A garbage length is rejected from its 4 bytes alone.
  const uint8_t huge[4] = {0xff, 0xff, 0xff, 0x7f};
  EXPECT_EQ(parse_frame(huge, 1 << 20, payload, bytes), FrameStatus::kMalformed);
  // An empty record is valid; all-zero bytes are not (a zero-filled tail is not a record).
  uint8_t empty[8];
  write_frame_header({}, empty);
  EXPECT_EQ(parse_frame(empty, 100, payload, bytes), FrameStatus::kComplete);
  EXPECT_EQ(bytes, 8u);
  const uint8_t zeros[8] = {};
  EXPECT_EQ(parse_frame(zeros, 100, payload, bytes), FrameStatus::kMalformed);
}

TEST(LogConfigNames, Durability) {
  for (Durability d : {Durability::kSync, Durability::kBatch, Durability::kNone}) {
    auto parsed = parse_durability(durability_name(d));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, d);
  }
  auto bad = parse_durability("fsync");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("log.durability"), std::string::npos);
}

TEST(ShardLog, RoundTripAcrossSegmentsAndReopen) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->end_offset(), kSegmentHeaderBytes);
  auto ends = append_n(*log, 0, 300);
  EXPECT_EQ(log->durable_offset(), log->end_offset());
  EXPECT_EQ(stats.records_appended.load(), 300u);
  const auto files = segment_files(tmp.path());
  ASSERT_GT(files.size(), 5u);
  // Each segment is named after its first byte and stays within segment_bytes.
  uint64_t expect_start = 0;
  for (const auto& f : files) {
    uint64_t start = 0;
    ASSERT_TRUE(detail::parse_segment_name(f.filename().string(), start));
    EXPECT_EQ(start, expect_start);
    EXPECT_LE(fs::file_size(f), c.segment_bytes);
    expect_start += fs::file_size(f);
  }
  EXPECT_EQ(expect_start, log->end_offset());

  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 300u);
  // From a cursor in the middle (record 150 starts where record 149 ends).
  EXPECT_EQ(read_all(c, ends[149], log->end_offset(), 150), 150u);
  // `limit` is respected exactly.
  EXPECT_EQ(read_all(c, 0, ends[99], 0), 100u);
  EXPECT_EQ(read_all(c, 0, ends[99] - 1, 0), 99u);

  const uint64_t end = log->end_offset();
  log->close();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->end_offset(), end);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 0u);
  append_n(*log, 300, 50);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 350u);
  EXPECT_EQ(list_shards(tmp.path()), std::vector<uint32_t>{0});
}

TEST(ShardLog, ReaderFollowsTheWriterAndWaitsAtTheEnd) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  auto log = open_log(c, nullptr);
  ASSERT_NE(log, nullptr);
  auto reader = LogReader::open(c, 0, 0);
  ASSERT_TRUE(reader.ok());
  std::span<const uint8_t> payload;
  EXPECT_EQ((*reader)->next(log->durable_offset(), payload), ReadStatus::kEnd);
  uint32_t read = 0;
  for (uint32_t i = 0; i < 100; ++i) {
    append_n(*log, i, 1);
    while ((*reader)->next(log->durable_offset(), payload) == ReadStatus::kRecord) {
      EXPECT_TRUE(is_payload(payload, read));
      ++read;
    }
    EXPECT_EQ(read, i + 1);
  }
  EXPECT_EQ((*reader)->offset(), log->end_offset());
}

TEST(ShardLog, RecoveryCutsARecordTornInTheMiddle) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  c.segment_bytes = 1 << 20;
  LogStats stats;
  auto log = open_log(c, &stats);
  auto ends = append_n(*log, 0, 20);
  log->close();
  log.reset();
  const auto seg = segment_files(tmp.path()).back();
  // Cut record 19 in half.
  const uint64_t cut = ends[18] + (ends[19] - ends[18]) / 2;
  fs::resize_file(seg, cut);
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), cut - ends[18]);
  EXPECT_EQ(log->end_offset(), ends[18]);
  EXPECT_EQ(fs::file_size(seg), ends[18]);
  ReadStatus s;
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0, &s), 19u);
  EXPECT_EQ(s, ReadStatus::kEnd);
  // Appending continues right after the last complete record.
  append_n(*log, 19, 5);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 24u);
}

TEST(ShardLog, RecoveryCutsGarbageAfterTheLastRecord) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  auto log = open_log(c, &stats);
  auto ends = append_n(*log, 0, 100);  // several segments: only the last is scanned
  log->close();
  log.reset();
  const auto seg = segment_files(tmp.path()).back();
  const uint64_t before = fs::file_size(seg);
  {
    std::ofstream out(seg, std::ios::binary | std::ios::app);
    std::string garbage = "not a record at all, just bytes that follow the last one";
    garbage += std::string(300, '\0');  // and a zero-filled tail, as after a power loss
    out << garbage;
  }
  const uint64_t added = fs::file_size(seg) - before;
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), added);
  EXPECT_EQ(log->end_offset(), ends.back());
  EXPECT_EQ(fs::file_size(seg), before);
  ReadStatus s;
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0, &s), 100u);
  EXPECT_EQ(s, ReadStatus::kEnd);
}

TEST(ShardLog, RecoveryRewritesATornSegmentHeader) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  auto log = open_log(c, &stats);
  append_n(*log, 0, 10);
  const uint64_t end = log->end_offset();
  log->close();
  log.reset();
  // A crash just after the next segment's file was created, before its header was complete.
  const std::string next = detail::segment_path(detail::shard_dir(tmp.path(), 0), end);
  {
    std::ofstream out(next, std::ios::binary);
    out << "THLO";
  }
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 4u);
  EXPECT_EQ(log->end_offset(), end + kSegmentHeaderBytes);
  append_n(*log, 10, 5);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 15u);
}

TEST(ShardLog, RecoveryRejectsAForeignFile) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  fs::create_directories(detail::shard_dir(tmp.path(), 0));
  const std::string path = detail::segment_path(detail::shard_dir(tmp.path(), 0), 0);
  {
    std::ofstream out(path, std::ios::binary);
    out << "this is not a segment file of any kind";
  }
  auto r = ShardLog::open(c, 0, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("bad magic"), std::string::npos) << r.error().message;
}

TEST(ShardLog, ReaderDetectsACorruptRecordInTheMiddle) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  c.segment_bytes = 1 << 20;
  auto log = open_log(c, nullptr);
  auto ends = append_n(*log, 0, 50);
  // Flip one payload byte of record 20 (it starts at ends[19]).
  const auto seg = segment_files(tmp.path()).back();
  {
    std::fstream f(seg, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<std::streamoff>(ends[19] + kRecordHeaderBytes + 2));
    f.put('\x5a' ^ static_cast<char>(make_payload(20)[2]));
  }
  auto reader = LogReader::open(c, 0, 0);
  ASSERT_TRUE(reader.ok());
  std::span<const uint8_t> payload;
  for (uint32_t i = 0; i < 20; ++i) {
    ASSERT_EQ((*reader)->next(log->end_offset(), payload), ReadStatus::kRecord);
    EXPECT_TRUE(is_payload(payload, i));
  }
  EXPECT_EQ((*reader)->next(log->end_offset(), payload), ReadStatus::kCorrupt);
  EXPECT_EQ((*reader)->offset(), ends[19]);
  EXPECT_EQ((*reader)->next(log->end_offset(), payload), ReadStatus::kCorrupt);  // it stays
  // Below the corrupt record's end, it is not judged yet: the writer may still be writing it.
  auto reader2 = LogReader::open(c, 0, ends[19]);
  ASSERT_TRUE(reader2.ok());
  EXPECT_EQ((*reader2)->next(ends[20] - 1, payload), ReadStatus::kEnd);
}

TEST(ShardLog, SyncAndNoneDurabilityPublishAtOnce) {
  for (Durability d : {Durability::kSync, Durability::kNone}) {
    TempDir tmp;
    LogStats stats;
    auto log = open_log(small_config(tmp.path(), d), &stats);
    const uint64_t syncs_at_open = stats.syncs.load();
    auto ends = append_n(*log, 0, 5);
    EXPECT_EQ(log->durable_offset(), ends.back()) << durability_name(d);
    EXPECT_EQ(stats.syncs.load() - syncs_at_open, d == Durability::kSync ? 5u : 0u);
  }
}

TEST(ShardLog, GroupCommitMakesEveryAppendDurable) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path(), Durability::kBatch);
  c.segment_bytes = 256 * 1024;
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  auto ends = append_n(*log, 0, 2000);
  ASSERT_TRUE(wait_for([&] { return log->durable_offset() >= ends.back(); }));
  EXPECT_EQ(log->durable_offset(), log->end_offset());
  const uint64_t syncs = stats.syncs.load();
  EXPECT_GE(syncs, 1u);
  EXPECT_LE(syncs, 2000u + 16u);  // group commit: never more than one per append (+ rolls)
  uint64_t hist = 0;
  for (auto& b : stats.sync_us_buckets) hist += b.load();
  EXPECT_EQ(hist, syncs);
  uint64_t appends = 0;
  for (auto& b : stats.append_us_buckets) appends += b.load();
  EXPECT_EQ(appends, 2000u);
  // Data arriving after the sync thread went idle is synced too.
  auto more = append_n(*log, 2000, 1);
  ASSERT_TRUE(wait_for([&] { return log->durable_offset() >= more.back(); }));
  log->close();
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0), 2001u);
}

TEST(ShardLog, ConsumersDriveSegmentDeletion) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  auto log = open_log(c, &stats);
  auto ends = append_n(*log, 0, 200);
  const size_t files = segment_files(tmp.path()).size();
  ASSERT_GT(files, 4u);
  // Without consumers everything is kept; a consumer at 0 keeps everything too.
  const uint32_t a = log->add_consumer(0);
  const uint32_t b = log->add_consumer(0);
  log->set_consumer_offset(a, log->end_offset());
  EXPECT_EQ(segment_files(tmp.path()).size(), files);
  EXPECT_EQ(log->backlog_bytes(), log->end_offset());
  // b passes record 99: segments ending at or before it go.
  log->set_consumer_offset(b, ends[99]);
  EXPECT_EQ(log->backlog_bytes(), log->end_offset() - ends[99]);
  const auto left = segment_files(tmp.path());
  EXPECT_LT(left.size(), files);
  EXPECT_EQ(stats.segments_deleted.load(), files - left.size());
  uint64_t oldest = 0;
  ASSERT_TRUE(detail::parse_segment_name(left.front().filename().string(), oldest));
  EXPECT_LE(oldest, ends[99]);
  EXPECT_EQ(read_all(c, ends[99], log->end_offset(), 100), 100u);
  // Reading from a deleted offset is an error naming the oldest segment.
  auto gone = LogReader::open(c, 0, 0);
  ASSERT_FALSE(gone.ok());
  EXPECT_NE(gone.error().message.find(left.front().filename().string()), std::string::npos);
  // Both at the end: every segment but the active one goes.
  log->set_consumer_offset(b, log->end_offset());
  EXPECT_EQ(segment_files(tmp.path()).size(), 1u);
  append_n(*log, 200, 3);
  EXPECT_EQ(read_all(c, ends.back(), log->end_offset(), 200), 3u);
}

TEST(ShardLog, BacklogLimitPushesBack) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  c.max_backlog_bytes = 10000;
  c.segment_bytes = 1 << 20;  // no rollover: a new segment's header would count as backlog too
  LogStats stats;
  auto log = open_log(c, &stats);
  const uint32_t cons = log->add_consumer(log->end_offset());
  const auto p = make_payload(1, 992);  // 1000-byte frames
  uint64_t end = 0;
  for (int i = 0; i < 10; ++i) ASSERT_EQ(log->append(p, &end), AppendStatus::kOk);
  EXPECT_EQ(log->backlog_bytes(), 10000u);
  const uint64_t before = log->end_offset();
  EXPECT_EQ(log->append(p, &end), AppendStatus::kBacklogFull);
  EXPECT_EQ(log->end_offset(), before);
  EXPECT_EQ(stats.backlog_full.load(), 1u);
  log->set_consumer_offset(cons, log->end_offset() - 5000);
  EXPECT_EQ(log->append(p, &end), AppendStatus::kOk);
}

TEST(ShardLog, TooLargeIsRefused) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  c.max_record_bytes = 100;
  auto log = open_log(c, nullptr);
  std::vector<uint8_t> big(101);
  uint64_t end = 0;
  EXPECT_EQ(log->append(big, &end), AppendStatus::kTooLarge);
  EXPECT_EQ(log->end_offset(), kSegmentHeaderBytes);
  big.resize(100);
  EXPECT_EQ(log->append(big, &end), AppendStatus::kOk);
}

/// A directory on a 1 MiB tmpfs (a real full disk); unmounted at the end.
class TinyDisk {
 public:
  TinyDisk() {
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, "size=1m") == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~TinyDisk() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return dir_.path(); }

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string error_;
};

/// Fills the disk until appends fail, then checks the log is intact and resumes once space
/// comes back. `free_space` makes room again.
void fill_and_recover(const LogConfig& c, const std::function<void()>& free_space) {
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  uint32_t n = 0;
  AppendStatus s = AppendStatus::kOk;
  uint64_t end = 0;
  for (; n < 100000; ++n) {
    auto p = make_payload(n, 1000 + n % 97);
    s = log->append(p, &end);
    if (s != AppendStatus::kOk) break;
  }
  ASSERT_EQ(s, AppendStatus::kNoSpace);
  EXPECT_EQ(stats.append_errors.load(), 1u);
  ASSERT_GT(n, 10u);
  const uint64_t end_before = log->end_offset();
  // The failed record left nothing behind: the files add up to exactly the appended stream.
  uint64_t total = 0;
  for (const auto& f : segment_files(c.dir)) total += fs::file_size(f);
  EXPECT_EQ(total, end_before);
  // Still full: the next attempt fails the same way and changes nothing.
  auto p = make_payload(n, 1000 + n % 97);
  EXPECT_EQ(log->append(p, &end), AppendStatus::kNoSpace);
  EXPECT_EQ(log->end_offset(), end_before);
  EXPECT_EQ(stats.append_errors.load(), 2u);
  ASSERT_TRUE(wait_for([&] { return log->durable_offset() == end_before; }));
  ReadStatus rs;
  EXPECT_EQ(read_all(c, 0, log->durable_offset(), 0, &rs), n);
  EXPECT_EQ(rs, ReadStatus::kEnd);

  free_space();
  ASSERT_EQ(log->append(p, &end), AppendStatus::kOk);  // ingest resumes
  ++n;
  log->close();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 0u);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0, &rs), n);
  EXPECT_EQ(rs, ReadStatus::kEnd);
}

TEST(ShardLog, FullDiskLeavesTheLogIntactAndIngestResumes) {
  TinyDisk disk;
  if (disk.mounted()) {
    // Ballast takes part of the disk; deleting it is "space returns".
    const std::string ballast = disk.path() + "/ballast";
    {
      std::ofstream out(ballast, std::ios::binary);
      out << std::string(256 * 1024, 'b');
    }
    LogConfig c = small_config(disk.path() + "/log", Durability::kBatch);
    c.segment_bytes = 64 * 1024;
    fill_and_recover(c, [&] { fs::remove(ballast); });
    return;
  }
  // No mount permission: a file-size limit makes write(2) fail with EFBIG instead.
  TempDir tmp;
  LogConfig c = small_config(tmp.path(), Durability::kBatch);
  c.segment_bytes = 4 << 20;
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit lim = old;
  lim.rlim_cur = 300 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0) << "tmpfs mount failed: " << disk.error();
  fill_and_recover(c, [&] { ::setrlimit(RLIMIT_FSIZE, &old); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
}

TEST(ShardLog, ConcurrentAppendGroupCommitAndReader) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path(), Durability::kBatch);
  c.segment_bytes = 64 * 1024;  // several rollovers while the sync thread runs
  c.flush_interval = std::chrono::microseconds(200);
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  constexpr uint32_t kRecords = 3000;
  std::atomic<uint32_t> read{0};
  std::atomic<bool> reader_ok{true};
  std::atomic<bool> stop{false};
  ShardLog* shared = log.get();
  std::thread reader([&] {
    auto r = LogReader::open(c, 0, 0);
    if (!r.ok()) {
      reader_ok = false;
      return;
    }
    std::span<const uint8_t> payload;
    while (!stop.load() && read.load() < kRecords) {
      const ReadStatus s = (*r)->next(shared->durable_offset(), payload);
      if (s == ReadStatus::kRecord) {
        if (!is_payload(payload, read.load())) reader_ok = false;
        read.fetch_add(1);
      } else if (s == ReadStatus::kCorrupt) {
        reader_ok = false;
        return;
      } else {
        std::this_thread::yield();
      }
    }
  });
  std::thread writer([&] {
    for (uint32_t i = 0; i < kRecords; ++i) {
      auto p = make_payload(i);
      uint64_t end = 0;
      if (log->append(p, &end) != AppendStatus::kOk) reader_ok = false;
    }
  });
  writer.join();
  const bool all_read = wait_for([&] { return read.load() == kRecords || !reader_ok.load(); });
  stop = true;
  reader.join();
  EXPECT_TRUE(all_read);
  EXPECT_TRUE(reader_ok.load());
  EXPECT_EQ(read.load(), kRecords);
  EXPECT_EQ(log->durable_offset(), log->end_offset());
  EXPECT_GE(stats.syncs.load(), 1u);
}

TEST(ListShards, FindsShardDirectoriesInOrder) {
  TempDir tmp;
  EXPECT_TRUE(list_shards(tmp.path() + "/missing").empty());
  LogConfig c = small_config(tmp.path());
  for (uint32_t s : {3u, 0u, 12u}) ASSERT_NE(open_log(c, nullptr, s), nullptr);
  fs::create_directories(tmp.path() + "/shard-x");
  fs::create_directories(tmp.path() + "/other");
  EXPECT_EQ(list_shards(tmp.path()), (std::vector<uint32_t>{0, 3, 12}));
}

}  // namespace
}  // namespace tianhe::log
