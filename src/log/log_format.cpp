// Pure pieces of the shard log: record framing, segment headers and names, directory helpers.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/crc32c.h"
#include "log/segment_files.h"
#include "log/shard_log.h"

namespace tianhe::log {

Result<Durability> parse_durability(std::string_view s) {
  if (s == "sync") return Durability::kSync;
  if (s == "batch") return Durability::kBatch;
  if (s == "none") return Durability::kNone;
  return make_error("log.durability: \"" + std::string(s) +
                    "\" is not a durability mode: use \"sync\", \"batch\" or \"none\"");
}

std::string_view durability_name(Durability d) noexcept {
  switch (d) {
    case Durability::kSync: return "sync";
    case Durability::kBatch: return "batch";
    case Durability::kNone: return "none";
  }
  return "unknown";
}

uint32_t frame_seed(uint64_t segment_start, uint32_t version) noexcept {
  if (version < 2) return 0;
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(segment_start >> (8 * i));
  return core::crc32c(le, sizeof le);
}

FrameStatus parse_frame(std::span<const uint8_t> bytes, uint32_t max_record_bytes,
                        std::span<const uint8_t>& payload, size_t& frame_bytes,
                        uint32_t seed) noexcept {
  // The length is checked before anything else so a garbage length is rejected without waiting
  // for (or reading) up to 4 GiB of bytes that will never come.
  if (bytes.size() < 4) return FrameStatus::kNeedMore;
  const uint32_t len = detail::load_le32(bytes.data());
  if (len > max_record_bytes) return FrameStatus::kMalformed;
  if (bytes.size() < kRecordHeaderBytes) return FrameStatus::kNeedMore;
  const size_t total = kRecordHeaderBytes + static_cast<size_t>(len);
  if (bytes.size() < total) return FrameStatus::kNeedMore;
  uint32_t crc = core::crc32c(bytes.data(), 4, seed);
  crc = core::crc32c(bytes.data() + kRecordHeaderBytes, len, crc);
  if (crc != detail::load_le32(bytes.data() + 4)) return FrameStatus::kMalformed;
  payload = bytes.subspan(kRecordHeaderBytes, len);
  frame_bytes = total;
  return FrameStatus::kComplete;
}

void write_frame_header(std::span<const uint8_t> payload, uint8_t* out, uint32_t seed) noexcept {
  detail::store_le32(out, static_cast<uint32_t>(payload.size()));
  uint32_t crc = core::crc32c(out, 4, seed);
  crc = core::crc32c(payload.data(), payload.size(), crc);
  detail::store_le32(out + 4, crc);
}

std::vector<uint32_t> list_shards(const std::string& dir) {
  std::vector<uint32_t> shards;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return shards;
  while (dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    constexpr std::string_view kPrefix = "shard-";
    if (name.size() <= kPrefix.size() || name.substr(0, kPrefix.size()) != kPrefix) continue;
    std::string_view digits = name.substr(kPrefix.size());
    uint32_t n = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) continue;
    if (std::to_string(n) != digits) continue;  // "shard-007" is not ours
    struct stat st {};
    if (::stat((dir + "/" + std::string(name)).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    shards.push_back(n);
  }
  ::closedir(d);
  std::sort(shards.begin(), shards.end());
  return shards;
}

namespace detail {

std::string shard_dir(const std::string& dir, uint32_t shard) {
  return dir + "/shard-" + std::to_string(shard);
}

std::string segment_name(uint64_t start) {
  char buf[kSegmentNameBytes];
  format_segment_name(start, buf);
  return buf;
}

void format_segment_name(uint64_t start, char (&out)[kSegmentNameBytes]) noexcept {
  for (int i = 19; i >= 0; --i) {
    out[i] = static_cast<char>('0' + start % 10);
    start /= 10;
  }
  std::memcpy(out + 20, ".seg", 5);
}

std::string segment_path(const std::string& shard_dir, uint64_t start) {
  return shard_dir + "/" + segment_name(start);
}

bool parse_segment_name(std::string_view name, uint64_t& start) noexcept {
  if (name.size() != 24 || name.substr(20) != ".seg") return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 20; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - digit) / 10) return false;
    v = v * 10 + digit;
  }
  start = v;
  return true;
}

Result<std::vector<uint64_t>> list_segments(const std::string& shard_dir) {
  DIR* d = ::opendir(shard_dir.c_str());
  if (d == nullptr) {
    return make_error("cannot list log directory " + shard_dir + ": " + errno_text(errno));
  }
  std::vector<uint64_t> starts;
  while (dirent* e = ::readdir(d)) {
    uint64_t start = 0;
    if (parse_segment_name(e->d_name, start)) starts.push_back(start);
  }
  ::closedir(d);
  std::sort(starts.begin(), starts.end());
  return starts;
}

void write_segment_header(uint8_t* out) noexcept {
  std::memcpy(out, kSegmentMagic.data(), kSegmentMagic.size());
  store_le32(out + 8, kSegmentVersion);
  store_le32(out + 12, 0);
}

HeaderStatus check_segment_header(std::span<const uint8_t> bytes) noexcept {
  if (bytes.size() < kSegmentHeaderBytes) return HeaderStatus::kShort;
  if (std::memcmp(bytes.data(), kSegmentMagic.data(), kSegmentMagic.size()) != 0) {
    return HeaderStatus::kBadMagic;
  }
  const uint32_t version = load_le32(bytes.data() + 8);
  if (version < kMinSegmentVersion || version > kSegmentVersion) return HeaderStatus::kBadVersion;
  return HeaderStatus::kOk;
}

uint32_t header_version(std::span<const uint8_t> bytes) noexcept {
  return bytes.size() >= kSegmentHeaderBytes ? load_le32(bytes.data() + 8) : 0;
}

std::string header_error(HeaderStatus status, const std::string& path) {
  switch (status) {
    case HeaderStatus::kOk: return path + ": header is valid";
    case HeaderStatus::kShort: return path + ": segment header is truncated";
    case HeaderStatus::kBadMagic:
      return path + ": not a log segment (bad magic): move the file out of the log directory";
    case HeaderStatus::kBadVersion:
      return path + ": unsupported segment version: written by a newer release";
  }
  return path + ": bad header";
}

std::string spare_path(const std::string& shard_dir) {
  return shard_dir + "/" + std::string(kSpareSegmentName);
}

std::string ready_spare_path(const std::string& shard_dir) {
  return shard_dir + "/" + std::string(kReadySpareName);
}

const char* recycled_spare_name(uint32_t slot, char* out) noexcept {
  if (slot == 0) {
    std::snprintf(out, kRecycledNameBytes, "%s", kRecycledSpareName.data());
  } else {
    std::snprintf(out, kRecycledNameBytes, "%s.%u", kRecycledSpareName.data(), slot);
  }
  return out;
}

std::string recycled_spare_path(const std::string& shard_dir, uint32_t slot) {
  char name[kRecycledNameBytes];
  return shard_dir + "/" + recycled_spare_name(slot, name);
}

int create_segment_file(const std::string& shard_dir, const std::string& path, uint64_t bytes,
                        const std::atomic<bool>* cancel, const std::atomic<bool>* urgent) noexcept {
  constexpr size_t kChunkBytes = 1u << 20;
  constexpr size_t kPacedChunkBytes = 256u << 10;
  static const std::vector<uint8_t> zeros(kChunkBytes, 0);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  const auto fail = [&](int err) noexcept {
    ::close(fd);
    ::unlink(path.c_str());
    return -err;
  };
  bytes = std::max<uint64_t>(bytes, kSegmentHeaderBytes);
  // Refuse early when the file cannot fit: on a nearly full disk every retry would otherwise write
  // up to a whole segment before failing. (f_blocks == 0: the filesystem reports no figures.)
  struct statvfs vfs {};
  if (::fstatvfs(fd, &vfs) == 0 && vfs.f_blocks != 0 &&
      static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize < bytes) {
    return fail(ENOSPC);
  }
  uint8_t header[kSegmentHeaderBytes];
  write_segment_header(header);
  if (::pwrite(fd, header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) {
    return fail(errno != 0 ? errno : ENOSPC);
  }
  // Real zeros, not fallocate/ftruncate: unwritten extents or holes would turn every later
  // overwrite into a metadata change that fdatasync must commit through the journal.
  uint64_t pos = kSegmentHeaderBytes;
  while (pos < bytes) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) return fail(ECANCELED);
    // Paced, the zeros go out in small pieces: a log fdatasync issued meanwhile queues behind
    // at most one of them (about 0.2 ms of device time) instead of a whole MiB.
    const bool paced = urgent != nullptr && !urgent->load(std::memory_order_relaxed);
    const size_t chunk = paced ? kPacedChunkBytes : kChunkBytes;
    const auto want = static_cast<size_t>(std::min<uint64_t>(chunk, bytes - pos));
    const ssize_t n = ::pwrite(fd, zeros.data(), want, static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(n < 0 ? errno : ENOSPC);
    // Write each chunk back before the next: a whole segment of dirty pages flushed at once
    // would queue ahead of the active segment's fdatasync and stall acknowledgements.
    if (::sync_file_range(fd, static_cast<off_t>(pos), n,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER) != 0 &&
        errno != ENOSYS && errno != ESPIPE && errno != EINVAL) {
      return fail(errno);
    }
    pos += static_cast<uint64_t>(n);
    if (paced) {
      // About 25 MiB/s, 2.6 s for a 64 MiB segment (far ahead of need at gateway rates; the
      // writer marks it urgent once its segment is half full).
      const timespec pause{0, 10'000'000};
      ::nanosleep(&pause, nullptr);
    }
  }
  if (::fsync(fd) != 0) return fail(errno);
  if (int err = fsync_dir(shard_dir); err != 0) return fail(err);
  return fd;
}

int fsync_dir(const std::string& path) noexcept {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  const int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

int make_dirs(const std::string& path, bool* created) noexcept {
  if (created != nullptr) *created = false;
  if (path.empty()) return ENOENT;
  std::string partial;
  partial.reserve(path.size());
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    partial = path.substr(0, next);
    pos = next + 1;
    if (partial.empty()) continue;  // leading '/'
    if (::mkdir(partial.c_str(), 0755) == 0) {
      if (next == path.size() && created != nullptr) *created = true;
    } else if (errno != EEXIST) {
      return errno;
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno;
  return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

ssize_t pread_full(int fd, uint8_t* buf, size_t size, uint64_t pos) noexcept {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, buf + done, size - done, static_cast<off_t>(pos + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

bool write_zeros(int fd, uint64_t pos, uint64_t len) noexcept {
  static constexpr size_t kZeroBytes = 64 * 1024;
  static const uint8_t zeros[kZeroBytes] = {};
  while (len > 0) {
    const auto want = static_cast<size_t>(std::min<uint64_t>(len, kZeroBytes));
    const ssize_t n = ::pwrite(fd, zeros, want, static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    pos += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace detail
}  // namespace tianhe::log
