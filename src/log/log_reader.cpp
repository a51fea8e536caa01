// LogReader: sequential reads of one shard's log across segments, in large blocks.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "log/segment_files.h"
#include "log/shard_log.h"

namespace tianhe::log {
namespace {

constexpr size_t kReadBlockBytes = 1u << 20;

class LogReaderImpl final : public LogReader {
 public:
  LogReaderImpl(std::string dir, uint32_t max_record_bytes)
      : dir_(std::move(dir)), max_record_bytes_(max_record_bytes) {}

  ~LogReaderImpl() override {
    if (fd_ >= 0) ::close(fd_);
  }

  /// Positions the reader at `offset` inside the segment starting at `start` (already opened).
  void start(int fd, uint64_t start, uint64_t offset, uint32_t version) {
    fd_ = fd;
    seg_start_ = start;
    seed_ = frame_seed(start, version);
    offset_ = std::max(offset, start + kSegmentHeaderBytes);
    win_start_ = offset_;
    buf_.resize(std::min<size_t>(kReadBlockBytes, size_t{max_record_bytes_} + kRecordHeaderBytes));
    buf_.resize(std::max<size_t>(buf_.size(), 64 * 1024));
  }

  ReadStatus next(uint64_t limit, std::span<const uint8_t>& payload) noexcept override {
    if (corrupt_) return ReadStatus::kCorrupt;
    for (;;) {
      if (offset_ + kRecordHeaderBytes > limit) return end();
      const size_t skip = static_cast<size_t>(offset_ - win_start_);
      std::span<const uint8_t> rest(buf_.data() + skip, win_len_ - skip);
      size_t need = kRecordHeaderBytes;
      if (rest.size() >= kRecordHeaderBytes) {
        if (detail::all_zero(rest.data(), kRecordHeaderBytes)) {
          // The zero-filled tail of a preallocated segment: its records end here.
          if (ReadStatus s = cross(); s != ReadStatus::kRecord) return s;
          continue;
        }
        const uint32_t len = detail::load_le32(rest.data());
        if (len > max_record_bytes_) {
          if (ReadStatus s = not_a_record(ReadStatus::kCorrupt); s != ReadStatus::kRecord) return s;
          continue;
        }
        need = kRecordHeaderBytes + len;
        if (offset_ + need > limit) {
          if (ReadStatus s = not_a_record(ReadStatus::kEnd); s != ReadStatus::kRecord) return s;
          continue;
        }
        if (rest.size() >= need) {
          size_t frame = 0;
          if (parse_frame(rest, max_record_bytes_, payload, frame, seed_) !=
              FrameStatus::kComplete) {
            if (ReadStatus s = not_a_record(ReadStatus::kCorrupt); s != ReadStatus::kRecord) {
              return s;
            }
            continue;
          }
          offset_ += frame;
          return ReadStatus::kRecord;
        }
      }
      // The frame (or its header) lies below `limit` but is not in the buffer yet.
      switch (fill(need, limit)) {
        case Fill::kOk: continue;
        case Fill::kError: return end();
        case Fill::kEof: break;
      }
      const size_t left = win_len_ - static_cast<size_t>(offset_ - win_start_);
      if (detail::all_zero(buf_.data() + (offset_ - win_start_), left)) {
        // The file ends here (an exact-size segment) or within a few zeros of a preallocated
        // one: the records continue in the segment named offset_.
        if (ReadStatus s = cross(); s != ReadStatus::kRecord) return s;
        continue;
      }
      // The file ends inside a frame. If the next segment starts here, this one's records ended
      // (what follows is a recycled file's old contents); otherwise the frame should be complete:
      // if a later segment exists it never will be.
      switch (open_next()) {
        case Next::kOpened: continue;
        case Next::kBad: return corrupt();
        case Next::kMissing: break;
      }
      return later_segment_exists() ? corrupt() : end();
    }
  }

  uint64_t offset() const noexcept override { return offset_; }

 private:
  enum class Fill : uint8_t { kOk, kEof, kError };
  enum class Next : uint8_t { kOpened, kMissing, kBad };

  ReadStatus corrupt() noexcept {
    corrupt_ = true;
    return ReadStatus::kCorrupt;
  }

  /// No complete record yet. Buffered bytes from offset_ on are dropped: if they were read past
  /// the writer's end (a limit beyond it), they may be zeros that are about to be overwritten.
  ReadStatus end() noexcept {
    win_start_ = offset_;
    win_len_ = 0;
    return ReadStatus::kEnd;
  }

  /// At the end of the current segment's records: moves to the segment named offset_. Returns
  /// kRecord when it did (read on), else what next() returns.
  ReadStatus cross() noexcept {
    switch (open_next()) {
      case Next::kOpened: return ReadStatus::kRecord;
      case Next::kBad: return corrupt();
      case Next::kMissing: break;
    }
    // Not there (yet): the writer has not rolled over. If a later segment exists the log has a
    // gap that will never fill.
    return later_segment_exists() ? corrupt() : end();
  }

  /// The frame at offset_ is not a record (bad length or CRC, or it would end past `limit`). If
  /// the next segment starts here, this segment's records ended: the bytes are what its file held
  /// before (a recycled segment) or a tail abandoned at recovery. Otherwise `otherwise`: kCorrupt
  /// for a frame that should be complete, kEnd for one the writer may still be writing. Returns
  /// kRecord after moving to the next segment (read on). Checked only off the common path.
  ReadStatus not_a_record(ReadStatus otherwise) noexcept {
    switch (open_next()) {
      case Next::kOpened: return ReadStatus::kRecord;
      case Next::kBad: return corrupt();
      case Next::kMissing: break;
    }
    return otherwise == ReadStatus::kCorrupt ? corrupt() : end();
  }

  /// Makes at least `need` bytes from offset_ available in buf_, reading in large blocks but
  /// never past `limit` (bytes past it may still change: a failed append is cut back).
  Fill fill(size_t need, uint64_t limit) noexcept {
    const size_t skip = static_cast<size_t>(offset_ - win_start_);
    const size_t keep = win_len_ - skip;
    if (keep > 0 && skip > 0) std::memmove(buf_.data(), buf_.data() + skip, keep);
    win_start_ = offset_;
    win_len_ = keep;
    if (need > buf_.size()) buf_.resize(need);  // need <= max_record_bytes + 8
    while (win_len_ < need) {
      const uint64_t file_end = win_start_ + win_len_;
      const size_t room = buf_.size() - win_len_;
      const auto want = static_cast<size_t>(std::min<uint64_t>(room, limit - file_end));
      const ssize_t n =
          ::pread(fd_, buf_.data() + win_len_, want, static_cast<off_t>(file_end - seg_start_));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fill::kError;
      }
      if (n == 0) return Fill::kEof;
      win_len_ += static_cast<size_t>(n);
    }
    return Fill::kOk;
  }

  /// Moves to the segment that starts at offset_, if it exists.
  Next open_next() noexcept {
    const std::string path = detail::segment_path(dir_, offset_);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Next::kMissing;
    uint8_t header[kSegmentHeaderBytes];
    const ssize_t n = detail::pread_full(fd, header, sizeof header, 0);
    if (n != static_cast<ssize_t>(sizeof header)) {
      ::close(fd);
      return Next::kMissing;  // still being created
    }
    if (detail::check_segment_header({header, sizeof header}) != detail::HeaderStatus::kOk) {
      ::close(fd);
      return Next::kBad;
    }
    ::close(fd_);
    fd_ = fd;
    seg_start_ = offset_;
    seed_ = frame_seed(seg_start_, detail::header_version({header, sizeof header}));
    offset_ += kSegmentHeaderBytes;
    win_start_ = offset_;
    win_len_ = 0;
    return Next::kOpened;
  }

  bool later_segment_exists() const {
    auto segments = detail::list_segments(dir_);
    if (!segments.ok()) return false;
    return std::any_of(segments->begin(), segments->end(),
                       [this](uint64_t s) { return s > seg_start_; });
  }

  const std::string dir_;
  const uint32_t max_record_bytes_;
  int fd_ = -1;
  uint64_t seg_start_ = 0;
  uint32_t seed_ = 0;  // CRC seed of this segment's records (its version and start)
  uint64_t offset_ = 0;
  std::vector<uint8_t> buf_;  // file bytes [win_start_, win_start_ + win_len_) of this segment
  uint64_t win_start_ = 0;
  size_t win_len_ = 0;
  bool corrupt_ = false;
};

}  // namespace

Result<std::unique_ptr<LogReader>> LogReader::open(const LogConfig& config, uint32_t shard,
                                                   uint64_t offset) {
  const std::string dir = detail::shard_dir(config.dir, shard);
  auto segments = detail::list_segments(dir);
  if (!segments.ok()) return segments.error();
  if (segments->empty()) return make_error("no log segments in " + dir + ": open the log first");
  if (offset < segments->front()) {
    return make_error("offset " + std::to_string(offset) + " is below the oldest segment " +
                      detail::segment_path(dir, segments->front()) +
                      ": those records were deleted after every consumer passed them");
  }
  const uint64_t start = *(std::upper_bound(segments->begin(), segments->end(), offset) - 1);
  const std::string path = detail::segment_path(dir, start);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("cannot open " + path + ": " + errno_text(errno));
  uint8_t header[kSegmentHeaderBytes];
  const ssize_t n = detail::pread_full(fd, header, sizeof header, 0);
  const auto hs = n < 0 ? detail::HeaderStatus::kShort
                        : detail::check_segment_header({header, static_cast<size_t>(n)});
  if (hs != detail::HeaderStatus::kOk) {
    ::close(fd);
    return make_error(detail::header_error(hs, path));
  }
  auto reader = std::make_unique<LogReaderImpl>(dir, config.max_record_bytes);
  reader->start(fd, start, offset, detail::header_version({header, sizeof header}));
  return std::unique_ptr<LogReader>(std::move(reader));
}

}  // namespace tianhe::log
