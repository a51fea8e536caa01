// Packed blocks: the store writes reports in blocks of up to a few hundred, one SQLite row per
// block, instead of one row per report (see docs/store.md). A block holds reports sorted by
// (device id as unsigned, device time); its directory entry (first and last device, time range,
// count) lives in a small table that readers binary-search.
//
//   stored  := 0x00 0x01 zstd_frame (the raw block compressed; its frame records the size)
//            | block                   (uncompressed: older stores, or when zstd did not shrink it)
//   block   := varint count (>= 1), u64 first_device (LE), i64 first report's time (LE),
//              report*count
//   report  := varint device delta, zigzag varint time delta (from the previous report),
//              varint seq, varint tenant, zigzag varint (received - time), u8 protocol,
//              varint metrics_len, metrics[metrics_len] (core/record_format.h metrics section)
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/result.h"

struct ZSTD_CCtx_s;  // zstd's compression context (zstd.h: typedef struct ZSTD_CCtx_s ZSTD_CCtx)
#include "sinks/store/sqlite_db.h"
#include "sinks/store/store.h"

namespace tianhe::sinks::store {

/// File name of chunk `id` once sealed and merged ("chunk-000042.merged.db"); the catalog's
/// state `indexed` means this file holds the chunk.
std::string merged_chunk_file_name(int64_t id);

/// Reports per block unless configured otherwise (measured in docs/store.md).
inline constexpr uint32_t kDefaultBlockReports = 256;
/// zstd level of stored blocks: -3 (`zstd --fast=3`) compresses the simulator's blocks 2.68x
/// at twice the speed of level 1 (2.82x); see docs/store.md.
inline constexpr int kBlockZstdLevel = -3;
/// Largest raw block a compressed one may expand to; larger blocks are stored uncompressed.
inline constexpr size_t kMaxCompressedBlockBytes = 64u << 20;

/// One report decoded from a block; `metrics` points into the block's bytes.
struct PackedReport {
  uint64_t device_id = 0;
  uint32_t seq = 0;
  uint32_t tenant = 0;
  int64_t device_time_ns = 0;
  int64_t received_ns = 0;
  uint8_t protocol = 0;
  std::span<const uint8_t> metrics;
};

/// Copies a decoded report out of its block.
StoredReport to_stored(const PackedReport& p);

/// The directory entry of one block (a row of the `blocks` table).
struct BlockInfo {
  int64_t id = 0;
  uint64_t first_device = 0;
  uint64_t last_device = 0;
  int64_t min_time_ns = 0;
  int64_t max_time_ns = 0;
  uint32_t count = 0;
};

/// Builds one block from reports added in (device, time) order. Reused: clear() keeps storage.
class BlockEncoder {
 public:
  /// Starts an empty block.
  void clear() noexcept;
  /// Appends a report (must not sort before the previous one).
  void add(uint64_t device_id, uint32_t seq, uint32_t tenant, int64_t device_time_ns,
           int64_t received_ns, uint8_t protocol, std::span<const uint8_t> metrics);
  /// Appends a decoded report.
  void add(const PackedReport& p) {
    add(p.device_id, p.seq, p.tenant, p.device_time_ns, p.received_ns, p.protocol, p.metrics);
  }
  /// Reports added.
  uint32_t count() const noexcept { return info_.count; }
  /// The block as stored (compressed unless that does not shrink it); valid until the next
  /// add(), clear() or bytes().
  std::span<const uint8_t> bytes();
  /// The raw (uncompressed) block; valid until the next add(), clear() or bytes().
  std::span<const uint8_t> raw_bytes();
  /// The directory entry (id left 0).
  const BlockInfo& info() const noexcept { return info_; }

 private:
  struct ZstdFree {
    void operator()(ZSTD_CCtx_s* c) const noexcept;
  };
  std::vector<uint8_t> body_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> packed_;
  std::unique_ptr<ZSTD_CCtx_s, ZstdFree> zstd_;  ///< created at the first bytes()
  BlockInfo info_;
  uint64_t prev_device_ = 0;
  int64_t prev_time_ = 0;
  int64_t first_time_ = 0;
};

/// Decodes a whole raw block into `out` (cleared first); false when the bytes are malformed.
/// A stored block goes through unpack_block() first.
bool decode_block(std::span<const uint8_t> data, std::vector<PackedReport>& out);

/// Puts the raw block of a stored one into `raw` (decompressed, or copied when it is not
/// compressed); false when a compressed block is malformed or claims more than
/// kMaxCompressedBlockBytes.
bool unpack_block(std::span<const uint8_t> stored, std::vector<uint8_t>& raw);

/// The devices of one run, as a blocked Bloom filter: 16 bits per report, each device
/// setting 4 bits of one 64-bit word. A reader asks it before searching the run: "surely absent"
/// (then the run is skipped: no directory search, no block decoded) or "maybe present" (about
/// 0.4-0.5 % false positives with distinct devices). An open chunk written by a busy gateway holds
/// about a thousand runs, and a device is in a few of them.
///
///   filter := u8 version (1), u8 0, u64 word (LE) * n (n >= 1)
class DeviceFilterBuilder {
 public:
  /// Starts an empty filter sized for up to `reports` devices.
  void reset(size_t reports);
  /// Adds a device (a repeat of the previous one is skipped cheaply).
  void add(uint64_t device) noexcept;
  /// The filter as stored; valid until the next reset() or bytes().
  std::span<const uint8_t> bytes();

 private:
  std::vector<uint64_t> words_;
  std::vector<uint8_t> out_;
  uint64_t last_ = 0;
  bool any_ = false;
};

/// False when `filter` proves `device` absent; true when it may be present, or when the bytes
/// are not a filter this version knows (empty: none was written), so that the caller searches.
bool filter_may_contain(std::span<const uint8_t> filter, uint64_t device) noexcept;

/// One commit's blocks: ids [first_block, last_block], sorted by (device, time).
struct BlockRun {
  int64_t first_block = 0;
  int64_t last_block = 0;
  int64_t reports = 0;
};

/// What a reader keeps of one unmerged chunk file across queries.
/// - The runs, as of a data version (SQLite's `PRAGMA data_version`, which changes whenever
///   another connection commits): listed again only after a commit, not on every query.
/// - Per run looked at, its device filter and its block directory. A run never changes once
///   written, and a first block is never reused in a file (new blocks take ids above every
///   kept one; a merge writes its run above the runs it replaces), so each is read once and
///   dropped when its run is merged away. An empty filter means the run has none (runs
///   written before filters existed); an empty directory, that it could not be read whole.
struct RunCache {
  struct Run {
    std::vector<uint8_t> filter;
    std::vector<BlockInfo> blocks;  ///< ids first_block.. in order, once read
    bool filter_read = false;
    bool blocks_read = false;
  };
  int64_t data_version = -1;  ///< the version `runs` were read at (-1: not read yet)
  std::vector<BlockRun> runs;
  std::unordered_map<int64_t, Run> by_first_block;  ///< node-based: entries do not move
  bool unsupported = false;  ///< the file has no run_filters table (written before filters)
};

/// A chunk's runs, by first block.
Result<std::vector<BlockRun>> read_runs(Db& db);

/// Reads one chunk's blocks: its runs, the directory binary search and block decoding. Holds a
/// read transaction on the chunk from open() to destruction, so the runs and blocks it sees
/// belong to one committed state (a seal merge may replace them meanwhile). One thread.
class BlockSearch {
 public:
  /// Starts the read transaction and loads the runs. With `cache` (owned by the caller, one per
  /// chunk file), the runs are taken from it unless the file changed since they were read, and
  /// may_hold_device() reads and keeps the runs' device filters there.
  static Result<BlockSearch> open(Db& db, RunCache* cache = nullptr);
  BlockSearch(BlockSearch&& o) noexcept;
  /// Not copyable or assignable.
  BlockSearch(const BlockSearch&) = delete;
  BlockSearch& operator=(const BlockSearch&) = delete;
  BlockSearch& operator=(BlockSearch&&) = delete;
  /// Ends the read transaction.
  ~BlockSearch();

  /// The chunk's runs in commit order.
  const std::vector<BlockRun>& runs() const noexcept { return runs_; }
  /// False when the run's device filter proves `device` absent from `run`; true otherwise
  /// (also without filters, or when the filter cannot be read).
  bool may_hold_device(const BlockRun& run, uint64_t device);
  /// First block of `run` whose last device is >= `device` (unsigned); last_block + 1 if none.
  int64_t lower_bound(const BlockRun& run, uint64_t device);
  /// The directory entry of block `id` of `run`; false when there is none. From memory when the
  /// search has a cache (the run's directory is read whole at its first use), else one lookup.
  bool info(const BlockRun& run, int64_t id, BlockInfo& out);
  /// Decodes block `id` into `out`; the reports point into a buffer reused by the next call.
  Result<void> decode(int64_t id, std::vector<PackedReport>& out);

 private:
  BlockSearch() = default;
  /// The cache's entry for `run` (created empty), or nullptr without a cache.
  RunCache::Run* cached(const BlockRun& run);
  /// The run's block directory, read into the cache at the first call; nullptr without a cache
  /// or when it cannot be read whole (the caller then looks blocks up one by one).
  const std::vector<BlockInfo>* directory(const BlockRun& run);
  /// One directory lookup in the file.
  bool probe(int64_t id, BlockInfo& out);

  Db* db_ = nullptr;
  std::vector<BlockRun> runs_;
  Stmt probe_;
  Stmt fetch_;
  RunCache* cache_ = nullptr;
  Stmt filter_;  ///< prepared at the first filter read
  Stmt dir_;     ///< prepared at the first directory read
  std::vector<uint8_t> buf_;
};

}  // namespace tianhe::sinks::store
