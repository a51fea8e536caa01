// Internal helpers of the shard log: segment file names, listing, headers, fsync of directories.
// Used by the writer (shard_log.cpp) and the reader (log_reader.cpp); not part of the interface.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace tianhe::log::detail {

/// Reads a little-endian u32 from p[0..4).
inline uint32_t load_le32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

/// Writes `v` little-endian to p[0..4).
inline void store_le32(uint8_t* p, uint32_t v) noexcept {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

/// True when bytes[0..size) are all zero (a segment's zero-filled, not yet written tail).
inline bool all_zero(const uint8_t* bytes, size_t size) noexcept {
  for (size_t i = 0; i < size; ++i) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

/// The directory of shard `shard` under the log root `dir` ("dir/shard-N").
std::string shard_dir(const std::string& dir, uint32_t shard);

/// The file name of the segment whose first byte is at offset `start` ("<20 digits>.seg").
std::string segment_name(uint64_t start);

/// Bytes of a segment name and its terminating NUL.
inline constexpr size_t kSegmentNameBytes = 25;

/// Writes segment_name(start) and a NUL to `out` without allocating.
void format_segment_name(uint64_t start, char (&out)[kSegmentNameBytes]) noexcept;

/// The path of a segment inside a shard directory.
std::string segment_path(const std::string& shard_dir, uint64_t start);

/// Parses a segment file name; false when `name` is not exactly "<20 digits>.seg".
bool parse_segment_name(std::string_view name, uint64_t& start) noexcept;

/// Start offsets of the segments in `shard_dir`, ascending. Errors name the directory.
Result<std::vector<uint64_t>> list_segments(const std::string& shard_dir);

/// Writes the segment header (kSegmentHeaderBytes) to out.
void write_segment_header(uint8_t* out) noexcept;

/// Outcome of checking a segment header.
enum class HeaderStatus : uint8_t { kOk, kShort, kBadMagic, kBadVersion };

/// Checks the segment header at the start of `bytes`.
HeaderStatus check_segment_header(std::span<const uint8_t> bytes) noexcept;

/// The format version in a header that check_segment_header() accepted.
uint32_t header_version(std::span<const uint8_t> bytes) noexcept;

/// A sentence describing a header problem, naming `path`.
std::string header_error(HeaderStatus status, const std::string& path);

/// The path of the spare segment while it is prepared (spare.tmp) in a shard directory.
std::string spare_path(const std::string& shard_dir);

/// The path of the prepared, synced spare segment (spare.ready) in a shard directory.
std::string ready_spare_path(const std::string& shard_dir);

/// The name of recycled-segment slot `slot` ("spare.recycled", "spare.recycled.1", ...), written
/// into `out` (at least kRecycledNameBytes); returns it.
inline constexpr size_t kRecycledNameBytes = 32;
const char* recycled_spare_name(uint32_t slot, char* out) noexcept;

/// The path of recycled-segment slot `slot` in a shard directory.
std::string recycled_spare_path(const std::string& shard_dir, uint32_t slot = 0);

/// Creates the segment file `path` at `bytes` bytes: the header, then zeros written for real (so
/// that later overwrites need no allocation or size change), fsyncs it and the directory
/// `shard_dir`. Stops early when *cancel becomes true (may be null). On failure removes the
/// partial file and returns -errno (ECANCELED when cancelled); else returns the open fd.
/// While *urgent is false (may be null: always urgent), the zeros are written at a paced rate so
/// that their writeback does not queue ahead of the active segment's fdatasync.
int create_segment_file(const std::string& shard_dir, const std::string& path, uint64_t bytes,
                        const std::atomic<bool>* cancel,
                        const std::atomic<bool>* urgent = nullptr) noexcept;

/// fsyncs the directory at `path`; returns 0 or the errno.
int fsync_dir(const std::string& path) noexcept;

/// Creates `path` and its missing parents (mode 0755); returns 0 or the errno. Sets *created when
/// the last component did not exist before.
int make_dirs(const std::string& path, bool* created) noexcept;

/// pread() that retries on EINTR and short reads; returns bytes read (short only at EOF) or -1.
ssize_t pread_full(int fd, uint8_t* buf, size_t size, uint64_t pos) noexcept;

/// Writes `len` zero bytes at `pos`; false on any error.
bool write_zeros(int fd, uint64_t pos, uint64_t len) noexcept;

}  // namespace tianhe::log::detail
