// A SQLite VFS that paces the store's writeback so that it does not stall the shard logs'
// fdatasync calls on the same disk (see docs/performance.md, "The store's writes and the ack
// tail").
//
// SQLite writes a WAL commit, a checkpoint or a merged chunk into the page cache and leaves it
// there until its next fsync (or the kernel's background writeback) sends megabytes to the disk
// in one burst; a log flush issued meanwhile waits behind the whole burst. This VFS is the
// platform's default VFS with one change, the idea of RocksDB's `bytes_per_sync`: every
// `kPacedBytesPerSync` bytes written to a file start their writeback at once
// (sync_file_range(SYNC_FILE_RANGE_WRITE)), after waiting for the previous piece's writeback to
// end, so the store's data reaches the disk in small pieces spread over time and each fsync
// SQLite makes has little left to write. Durability is unchanged: it only starts writeback
// earlier; SQLite still syncs as it always does.
#pragma once

#include <cstdint>

namespace tianhe::sinks::store {

/// Bytes written to one file between two writeback kicks (128 KiB to 2 MiB measured alike;
/// the smallest had the fewest slow log flushes).
inline constexpr int64_t kPacedBytesPerSync = 128 * 1024;

/// Registers the paced VFS once (thread-safe) and returns its name for sqlite3_open_v2, or
/// nullptr (the default VFS) when SQLite has no default VFS to wrap or registration failed.
const char* paced_vfs_name() noexcept;

/// Writeback kicks made by the paced VFS since start (all files).
uint64_t paced_vfs_kicks() noexcept;

}  // namespace tianhe::sinks::store
