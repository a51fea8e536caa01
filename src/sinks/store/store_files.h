// The store writer's files: chunk paths, the chunk schema, paced removal, fsync. Shared by
// store_writer.cpp (write, seal), store_merge.cpp (merge, index) and store_retention.cpp.
// Internal to the store.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace tianhe::sinks::store::files {

inline constexpr std::string_view kChunkSchema = R"sql(
-- One row per block of up to block_reports reports (store_block.h), sorted by (device, time)
-- within the block; the directory is apart from the bytes so that a search reads small rows.
CREATE TABLE IF NOT EXISTS blocks(
  id INTEGER PRIMARY KEY, first_device INTEGER NOT NULL, last_device INTEGER NOT NULL,
  min_time_ns INTEGER NOT NULL, max_time_ns INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS block_data(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cursors(shard INTEGER PRIMARY KEY, offset INTEGER NOT NULL);
-- One row per commit: blocks first_block..last_block are sorted by (device_id, time_ns), so a
-- reader binary-searches each run. Sealing merges the runs into one.
CREATE TABLE IF NOT EXISTS runs(
  first_block INTEGER PRIMARY KEY, last_block INTEGER NOT NULL, reports INTEGER NOT NULL);
-- The devices of each run of an open chunk (store_block.h, DeviceFilterBuilder), apart from
-- `runs` so that listing the runs reads small rows. None in merged chunks, nor for runs written
-- before filters existed (their chunk files gain the table when a writer reopens them).
CREATE TABLE IF NOT EXISTS run_filters(first_block INTEGER PRIMARY KEY, filter BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER);
)sql";

/// A reader lists a chunk and opens its file within one query (milliseconds); a replaced file
/// is kept this long after the catalog stops naming it.
inline constexpr int64_t kRetireDelayNs = 30'000'000'000;

/// The open chunk's file, and the merged file sealing writes, of chunk `id` in `dir`.
std::string path_of(const std::string& dir, int64_t id);
std::string merged_path_of(const std::string& dir, int64_t id);

/// Removes a SQLite database and its -wal, -shm and -journal files; a large file in pieces
/// (see store_files.cpp), at once when `hurry` is set (the writer is closing).
void unlink_db(const std::string& p, const std::atomic<bool>* hurry = nullptr);

/// Writes a file's data to the device (the merged file is written without a journal).
bool fsync_file(const std::string& p);

bool file_exists(const std::string& path);

}  // namespace tianhe::sinks::store::files
