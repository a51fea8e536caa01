#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
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

/// Opens shard `shard`; a log already open on it must be destroyed first (its LOCK).
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

/// The bytes of file `path` in [pos, pos + len).
std::vector<uint8_t> read_bytes(const fs::path& path, uint64_t pos, size_t len) {
  std::vector<uint8_t> out(len);
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(pos));
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(len));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

/// Overwrites file `path` at `pos` with `bytes` (in place, the size unchanged unless past it).
void write_bytes(const fs::path& path, uint64_t pos, const std::vector<uint8_t>& bytes) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(pos));
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// True when every byte of `path` from `pos` to its end is zero.
bool zeros_from(const fs::path& path, uint64_t pos) {
  const auto rest = read_bytes(path, pos, static_cast<size_t>(fs::file_size(path) - pos));
  return std::all_of(rest.begin(), rest.end(), [](uint8_t b) { return b == 0; });
}

/// The spare segment file of shard 0 while it is written.
fs::path spare_file(const std::string& dir) {
  return detail::spare_path(detail::shard_dir(dir, 0));
}

/// The prepared (complete, synced) spare segment of shard 0.
fs::path ready_spare_file(const std::string& dir) {
  return detail::ready_spare_path(detail::shard_dir(dir, 0));
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
  // Each segment is preallocated to segment_bytes and named after its first byte: the next one
  // starts where its records end, and the rest of it is zeros.
  std::vector<uint64_t> starts;
  for (const auto& f : files) {
    uint64_t start = 0;
    ASSERT_TRUE(detail::parse_segment_name(f.filename().string(), start));
    starts.push_back(start);
    EXPECT_EQ(fs::file_size(f), c.segment_bytes);
  }
  EXPECT_EQ(starts.front(), 0u);
  for (size_t i = 0; i + 1 < starts.size(); ++i) {
    EXPECT_GT(starts[i + 1], starts[i] + kSegmentHeaderBytes);
    EXPECT_LE(starts[i + 1] - starts[i], c.segment_bytes);
    EXPECT_TRUE(zeros_from(files[i], starts[i + 1] - starts[i])) << files[i];
  }
  EXPECT_TRUE(zeros_from(files.back(), log->end_offset() - starts.back()));

  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 300u);
  // From a cursor in the middle (record 150 starts where record 149 ends).
  EXPECT_EQ(read_all(c, ends[149], log->end_offset(), 150), 150u);
  // `limit` is respected exactly.
  EXPECT_EQ(read_all(c, 0, ends[99], 0), 100u);
  EXPECT_EQ(read_all(c, 0, ends[99] - 1, 0), 99u);

  const uint64_t end = log->end_offset();
  log->close();
  log.reset();
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

TEST(ShardLog, RecoveryEndsTheSegmentAtARecordTornInTheMiddle) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  c.segment_bytes = 1 << 20;
  LogStats stats;
  auto log = open_log(c, &stats);
  auto ends = append_n(*log, 0, 20);
  log->close();
  log.reset();
  const auto seg = segment_files(tmp.path()).back();
  ASSERT_EQ(fs::file_size(seg), c.segment_bytes);
  // Record 19 reached the disk only in part: its second half is still zeros.
  const uint64_t cut = ends[18] + (ends[19] - ends[18]) / 2;
  write_bytes(seg, cut, std::vector<uint8_t>(ends[19] - cut, 0));
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  // The segment ends after record 18: the next one starts there, the torn bytes stay unread.
  const auto files = segment_files(tmp.path());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files.back().filename().string(), detail::segment_name(ends[18]));
  EXPECT_EQ(log->end_offset(), ends[18] + kSegmentHeaderBytes);
  EXPECT_EQ(fs::file_size(seg), c.segment_bytes);
  ReadStatus s;
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0, &s), 19u);
  EXPECT_EQ(s, ReadStatus::kEnd);
  append_n(*log, 19, 5);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0, &s), 24u);
  EXPECT_EQ(s, ReadStatus::kEnd);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 0u);  // version 1 only: nothing rewritten
}

TEST(ShardLog, RecoveryOfAZeroPaddedSegmentCutsNothing) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  c.segment_bytes = 1 << 20;
  LogStats stats;
  auto log = open_log(c, &stats);
  auto ends = append_n(*log, 0, 30);
  log->close();
  log.reset();
  const auto seg = segment_files(tmp.path()).back();
  ASSERT_EQ(fs::file_size(seg), c.segment_bytes);
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 0u);
  EXPECT_EQ(log->end_offset(), ends.back());
  EXPECT_EQ(fs::file_size(seg), c.segment_bytes);
  append_n(*log, 30, 5);
  ReadStatus s;
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0, &s), 35u);
  EXPECT_EQ(s, ReadStatus::kEnd);
}

TEST(ShardLog, RecoveryNeverReadsPastGarbageEvenAValidLookingFrame) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  c.segment_bytes = 1 << 20;
  auto log = open_log(c, &stats);
  auto ends = append_n(*log, 0, 100);
  log->close();
  log.reset();
  const auto seg = segment_files(tmp.path()).back();
  uint64_t seg_start = 0;
  ASSERT_TRUE(detail::parse_segment_name(seg.filename().string(), seg_start));
  const uint64_t pos = ends.back() - seg_start;
  const uint64_t size = fs::file_size(seg);
  // A torn write right after the last record, and further on a stray frame valid for this very
  // segment (a later write that reached the disk when the ones before it did not).
  const std::string text = "not a record at all, just bytes that follow the last one";
  write_bytes(seg, pos, std::vector<uint8_t>(text.begin(), text.end()));
  const auto p = make_payload(500, 40);
  std::vector<uint8_t> stray(kRecordHeaderBytes + p.size());
  write_frame_header(p, stray.data(), frame_seed(seg_start, kSegmentVersion));
  std::copy(p.begin(), p.end(), stray.begin() + kRecordHeaderBytes);
  const uint64_t stray_at = pos + 1000;
  ASSERT_LT(stray_at + stray.size(), size);
  write_bytes(seg, stray_at, stray);
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->end_offset(), ends.back() + kSegmentHeaderBytes);
  EXPECT_EQ(segment_files(tmp.path()).back().filename().string(),
            detail::segment_name(ends.back()));
  // New records follow record 99 directly; the stray frame is never read.
  append_n(*log, 100, 10);
  ReadStatus s;
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0, &s), 110u);
  EXPECT_EQ(s, ReadStatus::kEnd);
  log->close();
  log.reset();
  // And again after another restart (the segment is trusted now).
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0, &s), 110u);
  EXPECT_EQ(s, ReadStatus::kEnd);
}

/// Writes records [0, n) as version-1 segments of `per_segment` records each, exact size (the
/// format before preallocation and seeded CRCs). Returns the end offset after each record.
std::vector<uint64_t> write_v1_log(const std::string& dir, uint32_t n, uint32_t per_segment) {
  const std::string shard = detail::shard_dir(dir, 0);
  fs::create_directories(shard);
  std::vector<uint64_t> ends;
  uint64_t offset = 0;
  for (uint32_t first = 0; first < n; first += per_segment) {
    std::vector<uint8_t> bytes(kSegmentHeaderBytes, 0);
    std::memcpy(bytes.data(), kSegmentMagic.data(), kSegmentMagic.size());
    bytes[8] = 1;  // version 1, little-endian
    const uint64_t start = offset;
    offset += kSegmentHeaderBytes;
    for (uint32_t i = first; i < std::min(n, first + per_segment); ++i) {
      const auto p = make_payload(i);
      uint8_t header[kRecordHeaderBytes];
      write_frame_header(p, header, frame_seed(start, 1));
      bytes.insert(bytes.end(), header, header + kRecordHeaderBytes);
      bytes.insert(bytes.end(), p.begin(), p.end());
      offset += kRecordHeaderBytes + p.size();
      ends.push_back(offset);
    }
    std::ofstream(detail::segment_path(shard, start), std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
  }
  return ends;
}

TEST(ShardLog, OldExactSizeSegmentsStayReadableAndWritable) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  EXPECT_EQ(frame_seed(12345, 1), 0u);  // version 1 records carry no seed
  const auto ends = write_v1_log(tmp.path(), 100, 25);
  ASSERT_EQ(segment_files(tmp.path()).size(), 4u);
  ReadStatus s;
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0, &s), 100u);
  EXPECT_EQ(s, ReadStatus::kEnd);
  EXPECT_EQ(read_all(c, ends[49], ends[79], 50), 30u);
  // A torn record at the end of an exact-size last segment is cleared (zeroed) too.
  const auto files = segment_files(tmp.path());
  {
    std::ofstream out(files.back(), std::ios::binary | std::ios::app);
    out << "torn";
  }
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 4u);
  EXPECT_EQ(log->end_offset(), ends.back());
  // Appends grow the old last segment (version 1 framing) until it rolls over into
  // preallocated version-2 segments.
  append_n(*log, 100, 100);
  EXPECT_GT(segment_files(tmp.path()).size(), 4u);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0, &s), 200u);
  EXPECT_EQ(s, ReadStatus::kEnd);
  log->close();
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 4u);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 200u);
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
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 4u);
  EXPECT_EQ(log->end_offset(), end + kSegmentHeaderBytes);
  append_n(*log, 10, 5);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 15u);
}

TEST(ShardLog, SpareSegmentIsPreparedAheadAndRenamedAtRollover) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path(), Durability::kBatch);
  LogStats stats;
  // A spare left behind by an earlier run (half written) is dropped at open.
  fs::create_directories(detail::shard_dir(tmp.path(), 0));
  {
    std::ofstream out(spare_file(tmp.path()), std::ios::binary);
    out << "half a spare";
  }
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  // Segment 0 at open, then the spare in the background.
  ASSERT_TRUE(wait_for([&] { return stats.segments_created.load() == 2; }));
  EXPECT_FALSE(fs::exists(spare_file(tmp.path())));
  ASSERT_EQ(fs::file_size(ready_spare_file(tmp.path())), c.segment_bytes);
  {
    const auto header = read_bytes(ready_spare_file(tmp.path()), 0, kSegmentHeaderBytes);
    EXPECT_EQ(detail::check_segment_header(header), detail::HeaderStatus::kOk);
    EXPECT_TRUE(zeros_from(ready_spare_file(tmp.path()), kSegmentHeaderBytes));
  }
  // Fill segment 0 up to a rollover, waiting for each spare before the next rollover.
  uint32_t n = 0;
  for (uint64_t rolls = 1; rolls <= 3; ++rolls) {
    const size_t files_before = segment_files(tmp.path()).size();
    uint64_t prev_end = log->end_offset();
    while (segment_files(tmp.path()).size() == files_before) {
      prev_end = log->end_offset();
      append_n(*log, n++, 1);
    }
    // The new segment is the spare renamed to the offset where the previous one's records end.
    const auto files = segment_files(tmp.path());
    EXPECT_EQ(files.back().filename().string(), detail::segment_name(prev_end));
    EXPECT_EQ(fs::file_size(files.back()), c.segment_bytes);
    ASSERT_TRUE(wait_for([&] { return stats.segments_created.load() == 2 + rolls; }));
    EXPECT_TRUE(fs::exists(ready_spare_file(tmp.path())));
  }
  EXPECT_EQ(stats.segment_create_stalls.load(), 0u);
  EXPECT_EQ(stats.segment_create_errors.load(), 0u);
  ASSERT_TRUE(wait_for([&] { return log->durable_offset() == log->end_offset(); }));
  EXPECT_EQ(read_all(c, 0, log->durable_offset(), 0), n);
  // Rolling over without waiting for the spares stays correct (a rollover may stall).
  append_n(*log, n, 300);
  n += 300;
  log->close();
  EXPECT_FALSE(fs::exists(spare_file(tmp.path())));
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0), n);
}

TEST(ShardLog, ReadySpareIsReusedAfterRestartUnlessItsSizeChanged) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path(), Durability::kBatch);
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_TRUE(wait_for([&] { return stats.segments_created.load() == 2; }));
  append_n(*log, 0, 10);
  log->close();
  log.reset();
  ASSERT_TRUE(fs::exists(ready_spare_file(tmp.path())));

  // Reopened with the same segment size: the ready spare is taken as it is, and the next
  // rollover renames it (no segment is written at open).
  LogStats again;
  log.reset();
  log = open_log(c, &again);
  ASSERT_NE(log, nullptr);
  const size_t files_before = segment_files(tmp.path()).size();
  uint32_t n = 10;
  while (segment_files(tmp.path()).size() == files_before) append_n(*log, n++, 1);
  EXPECT_EQ(again.segment_create_stalls.load(), 0u);
  ASSERT_TRUE(wait_for([&] { return again.segments_created.load() == 1; }));  // the next spare
  log->close();
  log.reset();
  EXPECT_EQ(read_all(c, 0, UINT64_MAX, 0), n);

  // Reopened with another segment size: the old spare is replaced by one of the new size.
  c.segment_bytes *= 2;
  LogStats resized;
  log.reset();
  log = open_log(c, &resized);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(wait_for([&] { return resized.segments_created.load() == 1; }));
  EXPECT_EQ(fs::file_size(ready_spare_file(tmp.path())), c.segment_bytes);
  log->close();

  // A file that is not a segment under the ready name is replaced too.
  {
    std::ofstream out(ready_spare_file(tmp.path()), std::ios::binary | std::ios::trunc);
    out << std::string(c.segment_bytes, 'x');
  }
  LogStats foreign;
  log.reset();
  log = open_log(c, &foreign);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(wait_for([&] { return foreign.segments_created.load() == 1; }));
  EXPECT_TRUE(zeros_from(ready_spare_file(tmp.path()), kSegmentHeaderBytes));
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), n);
}

TEST(ShardLog, ReaderCrossesPreallocatedSegmentsBehindTheWriter) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  auto log = open_log(c, nullptr);
  ASSERT_NE(log, nullptr);
  // No limit at all: the reader sees the zeros past the writer's end, must take them for "no
  // record yet" and read the records written over them later.
  auto reader = LogReader::open(c, 0, 0);
  ASSERT_TRUE(reader.ok());
  std::span<const uint8_t> payload;
  uint32_t read = 0;
  for (uint32_t i = 0; i < 200; i += 5) {
    append_n(*log, i, 5);
    ReadStatus s;
    while ((s = (*reader)->next(UINT64_MAX, payload)) == ReadStatus::kRecord) {
      EXPECT_TRUE(is_payload(payload, read)) << read;
      ++read;
    }
    EXPECT_EQ(s, ReadStatus::kEnd);
    EXPECT_EQ(read, i + 5);
    EXPECT_EQ((*reader)->offset(), log->end_offset());
  }
  EXPECT_GT(segment_files(tmp.path()).size(), 5u);
  // From a cursor at every segment boundary.
  for (const auto& f : segment_files(tmp.path())) {
    uint64_t start = 0;
    ASSERT_TRUE(detail::parse_segment_name(f.filename().string(), start));
    auto r = LogReader::open(c, 0, start);
    ASSERT_TRUE(r.ok());
    ReadStatus s;
    uint32_t count = 0;
    while ((s = (*r)->next(log->end_offset(), payload)) == ReadStatus::kRecord) ++count;
    EXPECT_EQ(s, ReadStatus::kEnd);
    EXPECT_GT(count, 0u);
  }
}

TEST(ShardLog, ARecordLargerThanASegmentGetsAGrownSegmentOfItsOwn) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  auto log = open_log(c, &stats);
  append_n(*log, 0, 3);
  auto big = make_payload(3, 20000);  // > segment_bytes (8 KiB)
  uint64_t end = 0;
  ASSERT_EQ(log->append(big, &end), AppendStatus::kOk);
  const auto files = segment_files(tmp.path());
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(fs::file_size(files.back()), kSegmentHeaderBytes + kRecordHeaderBytes + big.size());
  append_n(*log, 4, 3);
  EXPECT_EQ(segment_files(tmp.path()).size(), 3u);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0), 7u);
  const uint64_t at = log->end_offset();
  log->close();
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->end_offset(), at);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 0u);
  EXPECT_EQ(read_all(c, 0, at, 0), 7u);
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
    EXPECT_EQ(log->durable_event_fd(), -1) << "nothing happens in the background to signal";
  }
}

TEST(ShardLog, NoneDurabilityWritesBackInTheBackground) {
  // Without background writeback a whole segment stayed dirty until the rollover's fdatasync
  // wrote it on the owner's thread; now the writeback starts every MiB written.
  TempDir tmp;
  LogStats stats;
  LogConfig c = small_config(tmp.path(), Durability::kNone);
  c.segment_bytes = 4u << 20;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  const uint32_t n = 3 * 1024;  // 3 MiB of 1 KiB records: at least two writebacks
  std::vector<uint64_t> ends;
  for (uint32_t i = 0; i < n; ++i) {
    auto p = make_payload(i, 1024);
    uint64_t end = 0;
    ASSERT_EQ(log->append(p, &end), AppendStatus::kOk);
    ends.push_back(end);
  }
  EXPECT_EQ(log->durable_offset(), ends.back());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (stats.writeback_kicks.load() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GE(stats.writeback_kicks.load(), 2u);
  log->close();
  EXPECT_EQ(read_all(c, 0, ends.back(), 0), n);
}

TEST(ShardLog, GroupCommitSignalsTheOwnerWhenRecordsBecomeDurable) {
  TempDir tmp;
  auto log = open_log(small_config(tmp.path(), Durability::kBatch), nullptr);
  ASSERT_NE(log, nullptr);
  const int efd = log->durable_event_fd();
  ASSERT_GE(efd, 0);
  uint64_t drained = 0;
  while (::read(efd, &drained, sizeof drained) > 0) {
  }
  // Each round: append, then sleep in poll() as a shard with pending acks does; the wake-up
  // must come with the record durable, never before.
  for (uint32_t round = 0; round < 20; ++round) {
    auto ends = append_n(*log, round, 1);
    bool durable = false;
    for (int attempt = 0; attempt < 100 && !durable; ++attempt) {
      pollfd p{efd, POLLIN, 0};
      ASSERT_EQ(::poll(&p, 1, 10'000), 1) << "no signal within 10 s, round " << round;
      uint64_t signals = 0;
      ASSERT_EQ(::read(efd, &signals, sizeof signals), static_cast<ssize_t>(sizeof signals));
      EXPECT_GE(signals, 1u);
      durable = log->durable_offset() >= ends.back();
    }
    EXPECT_TRUE(durable) << "round " << round;
  }
  log->close();
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
  for (int b = 0; b < core::Log2Histogram::kBuckets; ++b) hist += stats.sync_latency.bucket(b);
  EXPECT_EQ(hist, syncs);
  uint64_t appends = 0;
  for (int b = 0; b < core::Log2Histogram::kBuckets; ++b) {
    appends += stats.append_latency.bucket(b);
  }
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
  const uint32_t a = log->add_consumer("a", 0);
  const uint32_t b = log->add_consumer("b", 0);
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

TEST(ShardLog, AConsumerRegisteredAgainByNameTakesItsSlotBack) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  auto log = open_log(c, &stats);
  auto ends = append_n(*log, 0, 200);
  const uint32_t store = log->add_consumer("store", 0);
  EXPECT_EQ(log->backlog_bytes(), log->end_offset());
  // The same sink, restarted in this process, resumes at its cursor: same slot, moved.
  EXPECT_EQ(log->add_consumer("store", ends[99]), store);
  EXPECT_EQ(log->backlog_bytes(), log->end_offset() - ends[99]);
  log->set_consumer_offset(store, log->end_offset());
  EXPECT_EQ(log->backlog_bytes(), 0u);
  EXPECT_EQ(segment_files(tmp.path()).size(), 1u);  // no stale consumer pins a segment
  // Another sink is another consumer.
  EXPECT_NE(log->add_consumer("redis", log->end_offset()), store);
}

TEST(ShardLog, PassedSegmentsAreRecycledAndTheirOldRecordsNeverReappear) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path(), Durability::kBatch);
  LogStats stats;
  auto log = open_log(c, &stats);
  uint32_t consumer = log->add_consumer("sink", log->end_offset());
  // A consumer like the store's: reads what is durable, checks every record is the next one,
  // reports its cursor, which lets the log recycle the segments behind it.
  uint32_t appended = 0, read = 0;
  auto reader = LogReader::open(c, 0, 0);
  ASSERT_TRUE(reader.ok());
  auto consume = [&] {
    ASSERT_TRUE(wait_for([&] { return log->durable_offset() == log->end_offset(); }));
    std::span<const uint8_t> payload;
    ReadStatus s;
    while ((s = (*reader)->next(log->durable_offset(), payload)) == ReadStatus::kRecord) {
      ASSERT_TRUE(is_payload(payload, read)) << "record " << read;
      ++read;
    }
    std::string files;
    for (const auto& f : segment_files(tmp.path())) files += f.filename().string() + " ";
    ASSERT_EQ(s, ReadStatus::kEnd)
        << "at " << (*reader)->offset() << " after " << read << " records, durable "
        << log->durable_offset() << ", segments " << files;
    ASSERT_EQ(read, appended);
    log->set_consumer_offset(consumer, (*reader)->offset());
  };
  for (int round = 0; round < 120; ++round) {
    append_n(*log, appended, 10);  // about half a segment
    appended += 10;
    consume();
    if (round == 60) {
      // Restart: the active segment may be a recycled file, full of its old records past the
      // new ones. Recovery ends it there and starts the next segment; nothing old is read.
      log->close();
      log.reset();
      log = open_log(c, &stats);
      ASSERT_NE(log, nullptr);
      consumer = log->add_consumer("sink", (*reader)->offset());
      auto again = LogReader::open(c, 0, (*reader)->offset());
      ASSERT_TRUE(again.ok());
      reader = std::move(again);
    }
  }
  // Most spares were passed segments renamed, not new files written.
  EXPECT_GT(stats.segments_recycled.load(), 20u);
  EXPECT_LT(stats.segments_created.load(), stats.segments_recycled.load() / 4);
  EXPECT_LE(segment_files(tmp.path()).size(), 3u);
}

TEST(ShardLog, UpToRecycleSegmentsPassedSegmentsAreKeptAndReused) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path(), Durability::kBatch);
  c.recycle_segments = 3;
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  const std::string shard = tmp.path() + "/shard-0";
  auto slot_exists = [&](uint32_t slot) {
    return std::filesystem::exists(detail::recycled_spare_path(shard, slot));
  };
  auto kept = [&] {
    uint32_t n = 0;
    for (uint32_t slot = 0; slot < kMaxRecycledSegments; ++slot) n += slot_exists(slot);
    return n;
  };
  const uint32_t consumer = log->add_consumer("sink", log->end_offset());
  auto ends = append_n(*log, 0, 200);  // about ten segments
  ASSERT_TRUE(wait_for([&] { return log->durable_offset() == ends.back(); }));
  ASSERT_GT(segment_files(tmp.path()).size(), 6u);
  // Every segment but the active one is passed: three are kept (the preparer may already have
  // taken one as its next spare), the others deleted, and no slot past the third is used.
  log->set_consumer_offset(consumer, ends.back());
  EXPECT_EQ(segment_files(tmp.path()).size(), 1u);
  EXPECT_GE(kept(), 2u);
  EXPECT_LE(kept(), 3u);
  EXPECT_FALSE(slot_exists(3));
  // The next rollovers take their spares from the kept segments instead of writing new files.
  const uint64_t created = stats.segments_created.load();
  const uint64_t recycled = stats.segments_recycled.load();
  ends = append_n(*log, 200, 50);  // two to three rollovers
  ASSERT_TRUE(wait_for([&] { return log->durable_offset() == ends.back(); }));
  EXPECT_GE(stats.segments_recycled.load() - recycled, 2u);
  EXPECT_LE(stats.segments_created.load() - created, 1u);
  // A restart keeps the slots still configured and deletes the others.
  log->set_consumer_offset(consumer, ends.back());
  ASSERT_GE(kept(), 1u);
  log->close();
  log.reset();
  c.recycle_segments = 1;
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  for (uint32_t slot = 1; slot < kMaxRecycledSegments; ++slot) {
    EXPECT_FALSE(slot_exists(slot)) << "slot " << slot;
  }
  EXPECT_GE(log->end_offset(), ends.back());
  log->close();
}

TEST(ShardLog, BacklogLimitPushesBack) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  c.max_backlog_bytes = 10000;
  c.segment_bytes = 1 << 20;  // no rollover: a new segment's header would count as backlog too
  LogStats stats;
  auto log = open_log(c, &stats);
  const uint32_t cons = log->add_consumer("sink", log->end_offset());
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

/// Fills the free space of the filesystem holding `path` with a file; returns it.
fs::path fill_disk(const std::string& dir) {
  fs::path filler = fs::path(dir) / "filler";
  std::ofstream out(filler, std::ios::binary);
  const std::string block(4096, 'f');
  while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) out.flush();
  return filler;
}

TEST(ShardLog, FullDiskLeavesTheLogIntactAndIngestResumes) {
  TinyDisk disk;
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.error();
  LogConfig c = small_config(disk.path() + "/log", Durability::kBatch);
  c.segment_bytes = 64 * 1024;
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(wait_for([&] { return stats.segments_created.load() == 2; }));  // + the spare
  // The disk fills up; the current segment and the spare were allocated before.
  const fs::path filler = fill_disk(disk.path());
  uint32_t n = 0;
  AppendStatus s = AppendStatus::kOk;
  uint64_t end = 0;
  for (; n < 100000; ++n) {
    auto p = make_payload(n, 1000 + n % 97);
    s = log->append(p, &end);
    if (s != AppendStatus::kOk) break;
  }
  // Both preallocated segments took records; the segment after them could not be created.
  ASSERT_EQ(s, AppendStatus::kNoSpace);
  EXPECT_EQ(stats.append_errors.load(), 1u);
  EXPECT_GE(stats.segment_create_errors.load(), 1u);
  ASSERT_GT(n, 100u);
  EXPECT_EQ(segment_files(c.dir).size(), 2u);
  const uint64_t end_before = log->end_offset();
  // No partial spare is left behind.
  EXPECT_FALSE(fs::exists(spare_file(c.dir)));
  // Still full: the next attempt fails the same way and changes nothing.
  auto p = make_payload(n, 1000 + n % 97);
  EXPECT_EQ(log->append(p, &end), AppendStatus::kNoSpace);
  EXPECT_EQ(log->end_offset(), end_before);
  EXPECT_EQ(stats.append_errors.load(), 2u);
  ASSERT_TRUE(wait_for([&] { return log->durable_offset() == end_before; }));
  ReadStatus rs;
  EXPECT_EQ(read_all(c, 0, log->durable_offset(), 0, &rs), n);
  EXPECT_EQ(rs, ReadStatus::kEnd);

  fs::remove(filler);
  const uint64_t stalls = stats.segment_create_stalls.load();
  ASSERT_EQ(log->append(p, &end), AppendStatus::kOk);  // ingest resumes at once
  ++n;
  EXPECT_GT(stats.segment_create_stalls.load(), stalls);  // that rollover made its own segment
  EXPECT_EQ(segment_files(c.dir).size(), 3u);
  append_n(*log, n, 100);
  n += 100;
  log->close();
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(stats.torn_bytes_truncated.load(), 0u);
  EXPECT_EQ(read_all(c, 0, log->end_offset(), 0, &rs), n);
  EXPECT_EQ(rs, ReadStatus::kEnd);
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

TEST(ShardLog, ASecondWriterOnTheSameShardIsRefusedAndTouchesNothing) {
  TempDir tmp;
  LogConfig c = small_config(tmp.path());
  LogStats stats;
  auto log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  append_n(*log, 0, 10);
  // A second open would recover this shard as if its writer had crashed: cut the tail it is
  // writing and write over it. It is refused before it reads or changes anything.
  auto second = ShardLog::open(c, 0, nullptr);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("shard-0 (log shard 0) is in use by this process"),
            std::string::npos)
      << second.error().message;
  const auto more = append_n(*log, 10, 10);
  EXPECT_EQ(read_all(c, 0, more.back(), 0), 20u);
  // Another shard of the same directory is free; the first reopens once its log is gone.
  EXPECT_NE(open_log(c, nullptr, 1), nullptr);
  log.reset();
  log = open_log(c, &stats);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->end_offset(), more.back());
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
