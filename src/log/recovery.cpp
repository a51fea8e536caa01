#include "log/recovery.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/crc32c.h"
#include "log/segment_files.h"

namespace tianhe::log::detail {
namespace {

// Recovery reads the segment in blocks of this size (or one record, when larger).
constexpr size_t kScanBlockBytes = 1u << 20;

/// One past the last non-zero byte of bytes[0..size), or 0 when they are all zero.
size_t nonzero_end(const uint8_t* bytes, size_t size) noexcept {
  size_t i = size;
  while (i >= 8) {
    uint64_t word = 0;
    std::memcpy(&word, bytes + i - 8, 8);
    if (word != 0) break;
    i -= 8;
  }
  while (i > 0 && bytes[i - 1] == 0) --i;
  return i;
}

/// Verifies the CRC of a record too large for the configured limit by streaming it from the
/// file, so that lowering max_record_bytes never makes recovery cut valid records.
bool streamed_crc_ok(int fd, uint64_t pos, uint32_t len, uint32_t want, uint8_t* buf,
                     size_t buf_size, uint32_t seed) noexcept {
  uint8_t len_bytes[4];
  detail::store_le32(len_bytes, len);
  uint32_t crc = core::crc32c(len_bytes, 4, seed);
  uint64_t left = len;
  uint64_t at = pos + kRecordHeaderBytes;
  while (left > 0) {
    const size_t want_now = static_cast<size_t>(std::min<uint64_t>(left, buf_size));
    const ssize_t n = detail::pread_full(fd, buf, want_now, at);
    if (n != static_cast<ssize_t>(want_now)) return false;
    crc = core::crc32c(buf, want_now, crc);
    left -= want_now;
    at += want_now;
  }
  return crc == want;
}

}  // namespace

Result<Recovered> recover_segment(int fd, const std::string& path, uint64_t start,
                                  uint32_t max_record_bytes, LogStats& stats) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return make_error("cannot stat " + path + ": " + errno_text(errno));
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < kSegmentHeaderBytes) {
    // A crash while the segment was being created: write its header again.
    uint8_t header[kSegmentHeaderBytes];
    detail::write_segment_header(header);
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, header, sizeof header, 0) != static_cast<ssize_t>(sizeof header) ||
        ::fdatasync(fd) != 0) {
      return make_error("cannot rewrite the torn header of " + path + ": " + errno_text(errno));
    }
    stats.torn_bytes_truncated.fetch_add(size, std::memory_order_relaxed);
    return Recovered{kSegmentHeaderBytes, kSegmentHeaderBytes};
  }
  std::vector<uint8_t> buf(std::max<size_t>(kScanBlockBytes, size_t{max_record_bytes} + 8));
  if (detail::pread_full(fd, buf.data(), kSegmentHeaderBytes, 0) !=
      static_cast<ssize_t>(kSegmentHeaderBytes)) {
    return make_error("cannot read " + path + ": " + errno_text(errno));
  }
  const auto hs = detail::check_segment_header({buf.data(), kSegmentHeaderBytes});
  if (hs != detail::HeaderStatus::kOk) return make_error(detail::header_error(hs, path));
  const uint32_t version = detail::header_version({buf.data(), kSegmentHeaderBytes});
  const uint32_t seed = frame_seed(start, version);

  uint64_t pos = kSegmentHeaderBytes;  // file position of the next frame
  uint64_t win_start = pos;            // file position of buf[0]
  size_t win_len = 0;
  while (pos < size) {
    const size_t skip = static_cast<size_t>(pos - win_start);
    std::span<const uint8_t> rest(buf.data() + skip, win_len - skip);
    std::span<const uint8_t> payload;
    size_t frame = 0;
    const FrameStatus fs = parse_frame(rest, max_record_bytes, payload, frame, seed);
    if (fs == FrameStatus::kComplete) {
      pos += frame;
      continue;
    }
    if (fs == FrameStatus::kMalformed) {
      const uint32_t len = detail::load_le32(rest.data());
      if (len > max_record_bytes && rest.size() >= kRecordHeaderBytes &&
          pos + kRecordHeaderBytes + len <= size &&
          streamed_crc_ok(fd, pos, len, detail::load_le32(rest.data() + 4), buf.data(), buf.size(),
                          seed)) {
        return make_error(path + ": holds a record of " + std::to_string(len) +
                          " bytes, more than log.max_record_bytes (" +
                          std::to_string(max_record_bytes) + "): raise log.max_record_bytes");
      }
      break;
    }
    // kNeedMore: read the rest of this frame (or the next block) unless the file ends first.
    const uint64_t need = rest.size() >= kRecordHeaderBytes
                              ? kRecordHeaderBytes + detail::load_le32(rest.data())
                              : kRecordHeaderBytes;
    if (pos + need > size) break;  // torn: the file ends inside this frame
    std::memmove(buf.data(), rest.data(), rest.size());
    win_start = pos;
    win_len = rest.size();
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(buf.size() - win_len, size - (win_start + win_len)));
    const ssize_t n = detail::pread_full(fd, buf.data() + win_len, want, win_start + win_len);
    if (n < 0) return make_error("cannot read " + path + ": " + errno_text(errno));
    if (n == 0) break;
    win_len += static_cast<size_t>(n);
  }
  // Find the end of the non-zero bytes after the last valid record (version 2: whether there is
  // any).
  uint64_t dirty_end = pos;
  for (uint64_t at = pos; at < size && !(version >= 2 && dirty_end > pos);) {
    const auto want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - at));
    const ssize_t n = detail::pread_full(fd, buf.data(), want, at);
    if (n < 0) return make_error("cannot read " + path + ": " + errno_text(errno));
    if (n == 0) break;
    const size_t nz = nonzero_end(buf.data(), static_cast<size_t>(n));
    if (nz > 0) dirty_end = at + nz;
    at += static_cast<uint64_t>(n);
  }
  const bool ended = version >= 2 && dirty_end > pos;
  if (dirty_end > pos && !ended) {
    // Zeroed rather than cut: the file keeps its preallocated blocks.
    if (!write_zeros(fd, pos, dirty_end - pos)) {
      return make_error("cannot clear the torn tail of " + path + ": " + errno_text(errno));
    }
    stats.torn_bytes_truncated.fetch_add(dirty_end - pos, std::memory_order_relaxed);
  }
  // Sync even when nothing was cleared: after a process crash under durability "none" the tail may
  // still be only in the page cache, and durable_offset() starts at the end.
  if (::fdatasync(fd) != 0) return make_error("cannot sync " + path + ": " + errno_text(errno));
  return Recovered{pos, size, version, ended};
}

}  // namespace tianhe::log::detail
