// Fuzz target: segment bytes from disk are untrusted. parse_frame must stay in bounds, and
// recovery plus LogReader over the same bytes as a segment file (exact-size, or followed by a
// zero-filled preallocated tail) must never crash, must keep exactly the valid prefix of frames,
// clear (zero) everything after it and read it back unchanged; an append after recovery must be
// read back too.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "log/segment_files.h"
#include "log/shard_log.h"

namespace {

using namespace tianhe::log;

constexpr uint32_t kMaxRecord = 64 * 1024;

/// A scratch directory for the whole run (tmpfs when available: recovery calls fsync).
const std::string& scratch() {
  // Never destroyed: the exit handler that removes it runs after static destructors would.
  static const std::string* dir = new std::string([] {
    std::string base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/th-log-fuzz-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) __builtin_trap();
    std::atexit([] { std::filesystem::remove_all(scratch()); });
    return tmpl;
  }());
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A segment file: the input as is when it starts with the magic, else behind a valid header.
  std::vector<uint8_t> seg;
  const bool has_magic = size >= kSegmentMagic.size() &&
                         std::memcmp(data, kSegmentMagic.data(), kSegmentMagic.size()) == 0;
  if (!has_magic) {
    seg.resize(kSegmentHeaderBytes);
    detail::write_segment_header(seg.data());
  }
  if (size > 0) seg.insert(seg.end(), data, data + size);
  // Every third input also as a preallocated segment: the same bytes, then zeros.
  if (size % 3 == 1) seg.resize(seg.size() + 1000, 0);

  // 1. The frames of the segment's body, as the writer would have left them.
  std::vector<std::vector<uint8_t>> frames;
  size_t valid = kSegmentHeaderBytes;
  const bool header_ok = detail::check_segment_header(seg) == detail::HeaderStatus::kOk;
  const uint32_t version = header_ok ? detail::header_version(seg) : 0;
  const uint32_t seed = frame_seed(0, version);  // the segment starts at offset 0
  if (header_ok) {
    std::span<const uint8_t> rest(seg);
    rest = rest.subspan(kSegmentHeaderBytes);
    for (;;) {
      std::span<const uint8_t> payload;
      size_t frame = 0;
      if (parse_frame(rest, kMaxRecord, payload, frame, seed) != FrameStatus::kComplete) break;
      if (frame < kRecordHeaderBytes || frame > rest.size()) __builtin_trap();
      frames.emplace_back(payload.begin(), payload.end());
      rest = rest.subspan(frame);
      valid += frame;
    }
  }

  // 2. Recovery and a reader over the same bytes.
  namespace fs = std::filesystem;
  const std::string& root = scratch();
  fs::remove_all(root + "/shard-0");
  fs::create_directories(root + "/shard-0");
  {
    std::ofstream out(detail::segment_path(root + "/shard-0", 0), std::ios::binary);
    out.write(reinterpret_cast<const char*>(seg.data()), static_cast<std::streamsize>(seg.size()));
  }
  LogConfig config;
  config.dir = root;
  config.durability = Durability::kNone;
  config.max_record_bytes = kMaxRecord;
  config.segment_bytes = 64 * 1024;
  LogStats stats;
  auto log = ShardLog::open(config, 0, &stats);
  if (!log.ok()) {
    // Only a foreign header (or an oversized but valid record) may refuse to open.
    if (header_ok && seg.size() - valid < kRecordHeaderBytes) __builtin_trap();
    return 0;
  }
  if (!header_ok && seg.size() >= kSegmentHeaderBytes) __builtin_trap();
  const uint64_t end = (*log)->end_offset();
  // Torn: from the end of the valid prefix to the last non-zero byte after it.
  size_t dirty_end = seg.size();
  while (dirty_end > valid && seg[dirty_end - 1] == 0) --dirty_end;
  // Version 2 leaves such bytes and ends the segment there: the next one starts at `valid`.
  const bool ended = header_ok && version >= 2 && dirty_end > valid;
  if (header_ok && end != (ended ? valid + kSegmentHeaderBytes : valid)) __builtin_trap();
  if (ended && !std::filesystem::exists(detail::segment_path(root + "/shard-0", valid))) {
    __builtin_trap();
  }
  const size_t cleared = ended ? 0 : dirty_end - valid;
  if (header_ok && stats.torn_bytes_truncated.load() != cleared) __builtin_trap();
  if (header_ok && !ended) {
    std::ifstream in(detail::segment_path(root + "/shard-0", 0), std::ios::binary);
    std::vector<char> after((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (after.size() != seg.size()) __builtin_trap();  // cleared in place, never cut
    for (size_t i = valid; i < after.size(); ++i) {
      if (after[i] != 0) __builtin_trap();
    }
  }
  auto reader = LogReader::open(config, 0, 0);
  if (!reader.ok()) __builtin_trap();
  std::span<const uint8_t> payload;
  size_t n = 0;
  ReadStatus s;
  while ((s = (*reader)->next(UINT64_MAX, payload)) == ReadStatus::kRecord) {
    if (n >= frames.size() && header_ok) __builtin_trap();
    if (header_ok && (payload.size() != frames[n].size() ||
                      !std::equal(payload.begin(), payload.end(), frames[n].begin()))) {
      __builtin_trap();
    }
    ++n;
  }
  if (s != ReadStatus::kEnd || (header_ok && n != frames.size())) __builtin_trap();
  // Appending writes over the cleared tail (or rolls over); the same reader reads it next.
  const uint8_t rec[3] = {1, 2, 3};
  uint64_t rec_end = 0;
  if ((*log)->append(rec, &rec_end) != AppendStatus::kOk) __builtin_trap();
  if ((*reader)->next(UINT64_MAX, payload) != ReadStatus::kRecord || payload.size() != 3 ||
      payload[2] != 3 || (*reader)->offset() != rec_end) {
    __builtin_trap();
  }
  if ((*reader)->next(UINT64_MAX, payload) != ReadStatus::kEnd) __builtin_trap();
  return 0;
}
