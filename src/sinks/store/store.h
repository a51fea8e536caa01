// The embedded store: Tianhe's default sink keeps reports in time chunks of SQLite files under
// one directory (see docs/store.md). This header is the query side; store_writer.h writes and
// store_sink.h feeds the writer from the shard logs.
//
//   <dir>/catalog.db             chunks (id, state, time range, report count), latest report
//                                per device
//   <dir>/chunk-<id>.db          packed blocks of one time chunk (one sorted run per commit),
//                                the shard cursors committed with them
//   <dir>/chunk-<id>.merged.db   the same chunk once sealed: its runs merged into one
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/metrics_json.h"
#include "core/report.h"
#include "core/result.h"

namespace tianhe::sinks::store {

class BlockSearch;
struct RunCache;

class Db;

/// One report as stored.
struct StoredReport {
  uint64_t device_id = 0;
  uint32_t seq = 0;
  uint32_t tenant = 0;
  int64_t device_time_ns = 0;
  int64_t received_ns = 0;
  core::Protocol protocol = core::Protocol::kUnknown;
  std::vector<uint8_t> raw_metrics;  ///< the encoded metrics section (core/record_format.h)
};

/// A device's history over a device-time range [from_ns, to_ns], both inclusive.
struct HistoryQuery {
  uint64_t device_id = 0;
  /// Inclusive lower bound of device time.
  int64_t from_ns = std::numeric_limits<int64_t>::min();
  /// Inclusive upper bound of device time.
  int64_t to_ns = std::numeric_limits<int64_t>::max();
  uint32_t limit = 1000;
  bool newest_first = false;
};

/// Totals over the whole store.
struct StoreCounts {
  uint64_t reports = 0;
  uint64_t devices = 0;
  uint64_t chunks = 0;
  uint64_t bytes = 0;  ///< on disk, catalog and chunks with their WAL files
};

/// An encoded metrics section as a JSON object (core/metrics_json.h).
using core::metrics_json;

/// Chunk states in the catalog.
enum class ChunkState : int { kOpen = 0, kSealed = 1, kIndexed = 2 };

/// File name of chunk `id` inside the store directory ("chunk-000042.db").
std::string chunk_file_name(int64_t id);

/// The query side of the store. Opens the files read-mostly and may run in another process
/// while the gateway writes (SQLite WAL: readers see the last committed state). Not
/// thread-safe: one reader per thread.
class StoreReader {
 public:
  /// Opens the store in `dir`. Fails, naming the directory, when there is no store there.
  static Result<std::unique_ptr<StoreReader>> open(const std::string& dir);
  /// Closes every file.
  ~StoreReader();
  /// Reports of one device in a device-time range, ordered by device time.
  Result<std::vector<StoredReport>> history(const HistoryQuery& q);
  /// The report with the newest device time of one device, if any.
  Result<std::optional<StoredReport>> latest(uint64_t device_id);
  /// The latest report of each device with id > after_device_id, in device order (as unsigned
  /// numbers), at most `limit`. Pass the last id returned to get the next page.
  Result<std::vector<StoredReport>> latest_all(uint64_t after_device_id, uint32_t limit);
  /// Totals.
  Result<StoreCounts> counts();
  /// Reports of one device in a device-time range [from_ns, to_ns].
  Result<uint64_t> count_device(uint64_t device_id, int64_t from_ns, int64_t to_ns);

 private:
  struct Chunk {
    int64_t id;
    ChunkState state;
    int64_t min_time_ns;
    int64_t max_time_ns;
    int64_t reports;
  };
  /// Use open().
  explicit StoreReader(std::string dir);
  /// Whether chunk `c` may hold reports timed in [from_ns, to_ns] (an open chunk's range is not
  /// known until it is sealed).
  static bool may_hold(const Chunk& c, int64_t from_ns, int64_t to_ns);
  /// The catalog's chunks by id; drops connections to deleted chunks.
  Result<std::vector<Chunk>> list_chunks();
  /// A chunk file the reader keeps open: its connection and, for an unmerged chunk, its runs
  /// and the device filters read so far (a merged chunk has one run and no filters).
  struct ChunkFile {
    std::unique_ptr<Db> db;
    std::unique_ptr<RunCache> runs;
  };
  /// The kept file holding chunk `c` (the merged file once indexed), or nullptr when that file
  /// does not exist.
  Result<ChunkFile*> chunk_file(const Chunk& c);
  /// A block search over chunk `c` (one read transaction), or nothing when its file does not
  /// exist yet.
  Result<std::optional<BlockSearch>> search_chunk(const Chunk& c);
  /// Calls `fn` with a block search over every chunk whose device-time range meets
  /// [from_ns, to_ns] (the open chunk always), oldest first; stops at the first error.
  Result<void> for_each_chunk_in_range(int64_t from_ns, int64_t to_ns,
                                       const std::function<Result<void>(BlockSearch&)>& fn);

  std::string dir_;
  std::unique_ptr<Db> catalog_;
  std::map<std::string, ChunkFile> chunks_;  ///< by file name
};

}  // namespace tianhe::sinks::store
