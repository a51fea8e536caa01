// The shard log: the durability core. Each shard appends its accepted reports to its own
// sequence of segment files of CRC-framed records; a group commit makes them durable; sinks read
// them back from persisted cursors. See README.md in this folder for the on-disk format.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/counter.h"
#include "core/result.h"
#include "log/log_config.h"

namespace tianhe::log {

/// Outcome of an append (hot path; never throws).
enum class AppendStatus : uint8_t {
  kOk,
  kBacklogFull,  ///< max_backlog_bytes reached: push back (ack BUSY), nothing written
  kNoSpace,      ///< the disk is full (ENOSPC/EDQUOT): nothing written, log intact
  kIoError,      ///< another write error: nothing written, log intact
  kTooLarge,     ///< payload larger than max_record_bytes
};

/// Counters and latency histograms of one shard's log (read at scrape time, any thread).
struct LogStats {
  std::atomic<uint64_t> records_appended{0};  ///< appends that returned kOk
  std::atomic<uint64_t> bytes_appended{0};    ///< payload bytes of those records (no framing)
  std::atomic<uint64_t> append_errors{0};     ///< kNoSpace + kIoError
  std::atomic<uint64_t> backlog_full{0};      ///< appends refused with kBacklogFull
  std::atomic<uint64_t> syncs{0};             ///< successful fdatasync calls on segments
  std::atomic<uint64_t> sync_errors{0};  ///< failed fdatasync/fsync: the log then refuses appends
  std::atomic<uint64_t> segments_deleted{
      0};  ///< segments removed below every consumer (or recycled)
  std::atomic<uint64_t> torn_bytes_truncated{
      0};                                      ///< torn tail bytes zeroed at recovery (version 1)
  std::atomic<uint64_t> segments_created{0};   ///< segment files zero-filled and synced
  std::atomic<uint64_t> segments_recycled{0};  ///< spares made from a passed segment (no writes)
  std::atomic<uint64_t> segment_create_errors{0};  ///< failed segment creations (e.g. ENOSPC)
  /// Rollovers that found no spare segment ready and waited for (or made) one on the append path.
  std::atomic<uint64_t> segment_create_stalls{0};
  /// Background writebacks started (durability none: one per kNoneWritebackBytes written).
  std::atomic<uint64_t> writeback_kicks{0};
  /// Latency of one append (write) and of one fdatasync. The sync histogram is written by the
  /// owner (durability sync) or the group-commit thread, hence the shared adds.
  core::Log2Histogram append_latency;
  core::Log2Histogram sync_latency;
};

/// One shard's log writer. Owned by its shard thread: append() and end_offset() are called from
/// that thread only; the group-commit thread it starts (durability batch) runs fdatasync and
/// publishes durable_offset() (durability none: it only starts the writeback of what was written).
/// Offsets are byte positions in the shard's endless stream of records (a segment file is named
/// after the offset of its first byte).
class ShardLog {
 public:
  /// Opens (creating if needed) dir/shard-<shard>/, recovers the last segment (a torn or corrupt
  /// tail after the last valid record ends it there and the next segment starts at that offset;
  /// version-1 segments have the tail zeroed instead, counted in torn_bytes_truncated), starts
  /// the group-commit thread when durability is batch and the thread that prepares the next
  /// segment file. Errors name the path and the cause.
  static Result<std::unique_ptr<ShardLog>> open(const LogConfig& config, uint32_t shard,
                                                LogStats* stats);
  virtual ~ShardLog() = default;

  /// Appends one record. On kOk, *end_offset is the offset just past it: the record is durable
  /// once durable_offset() >= *end_offset. Never blocks on fsync in batch/none mode; in sync
  /// mode it syncs before returning. Nothing is written unless kOk.
  virtual AppendStatus append(std::span<const uint8_t> payload, uint64_t* end_offset) noexcept = 0;
  /// Offset up to which every record is durable under the configured durability
  /// (batch: synced; sync: synced; none: written). Any thread.
  virtual uint64_t durable_offset() const noexcept = 0;
  /// Offset just past the last appended record. Owner thread.
  virtual uint64_t end_offset() const noexcept = 0;
  /// A non-blocking eventfd that becomes readable each time the group-commit thread advances
  /// durable_offset() (durability batch), so that the owner can sleep in poll() until acks may
  /// go out; read it to clear. -1 when durable_offset() advances only inside append() (sync,
  /// none). Owned by the log; valid until it is destroyed.
  virtual int durable_event_fd() const noexcept = 0;
  /// Sinks report how far they have safely consumed (their persisted cursor); the log deletes
  /// segments entirely below the minimum of all registered consumers and computes backlog from
  /// it. Any thread.
  virtual void set_consumer_offset(uint32_t consumer, uint64_t offset) noexcept = 0;
  /// Registers the consumer `name` (a sink) at `start_offset` and returns its index. A name
  /// registered already keeps its index and moves to `start_offset`: a sink stopped and started
  /// again in the same process takes its place back instead of leaving a stale consumer that
  /// would pin the log at its last offset. `max_lag`: appends that would put this consumer
  /// more than that many bytes behind end_offset() are refused with kBacklogFull (a sink's own
  /// backlog limit; the log's max_backlog_bytes applies to every consumer). Any thread.
  virtual uint32_t add_consumer(std::string_view name, uint64_t start_offset,
                                uint64_t max_lag = UINT64_MAX) = 0;
  /// Bytes between the slowest consumer and end_offset(). Any thread.
  virtual uint64_t backlog_bytes() const noexcept = 0;
  /// Flushes and syncs everything, stops the group-commit thread.
  virtual void close() noexcept = 0;
};

/// Outcome of reading the next record.
enum class ReadStatus : uint8_t {
  kRecord,   ///< a record was read
  kEnd,      ///< no complete record yet (the writer may append more): try again later
  kCorrupt,  ///< a bad record (CRC, length) before the end: the reader stops here
};

/// Sequential reader of one shard's log, used by sinks (any thread, one reader per thread).
/// Reads only what is durable: it never passes `limit` given to next().
class LogReader {
 public:
  /// Opens dir/shard-<shard>/ for reading from `offset` (a record boundary: a cursor; an offset
  /// inside a segment header means that segment's first record). An offset below the oldest
  /// segment (deleted) is an error that names the oldest segment.
  static Result<std::unique_ptr<LogReader>> open(const LogConfig& config, uint32_t shard,
                                                 uint64_t offset);
  virtual ~LogReader() = default;
  /// Reads the record at offset() if it ends at or before `limit`. On kRecord, `payload` views
  /// the record's bytes (valid until the next call) and offset() moves past it.
  virtual ReadStatus next(uint64_t limit, std::span<const uint8_t>& payload) noexcept = 0;
  /// The offset of the next record to read.
  virtual uint64_t offset() const noexcept = 0;
};

/// The name of the segment being prepared ahead of the next rollover, inside the shard directory
/// (not part of the log: a leftover is deleted at open).
inline constexpr std::string_view kSpareSegmentName = "spare.tmp";
/// The name of the prepared spare once it is complete and synced; the next rollover renames it to
/// the new segment's name. Kept across restarts (reused at open when its size still matches).
inline constexpr std::string_view kReadySpareName = "spare.ready";
/// A segment every consumer has passed, kept to become a later spare instead of writing a new
/// one (its old records cannot pass for new ones: see kSegmentVersion). Slot 0 has this name,
/// slot N > 0 "spare.recycled.N"; LogConfig::recycle_segments slots per shard.
inline constexpr std::string_view kRecycledSpareName = "spare.recycled";

/// Every segment file starts with this header; offsets count its bytes too, so the first record
/// of the segment named S starts at S + kSegmentHeaderBytes.
/// header := "THLOG001" | u32 version (LE) | u32 reserved (0)
inline constexpr size_t kSegmentHeaderBytes = 16;
/// The magic bytes that open every segment file.
inline constexpr std::string_view kSegmentMagic = "THLOG001";
/// The segment format version written. Version 2 seeds each record's CRC with the segment's
/// start offset, so the records a recycled segment file still holds from its earlier life never
/// pass for records of its new one. Version 1 (no seed) is still read and appended to.
inline constexpr uint32_t kSegmentVersion = 2;
/// The oldest segment format version accepted.
inline constexpr uint32_t kMinSegmentVersion = 1;

/// Record framing (pure; exposed for the fuzzer and tests).
/// record := u32 payload_len | u32 crc | payload
///   version 2: crc = crc32c(segment start offset as u64 LE ++ payload_len LE ++ payload)
///   version 1: crc = crc32c(payload_len LE ++ payload)
/// A segment's records end at the first frame that is not valid (in a new segment file, an
/// all-zero header: its tail is preallocated zeros), at the end of the file, or where the next
/// segment starts.
inline constexpr size_t kRecordHeaderBytes = 8;

/// The CRC seed of the records of a segment of `version` starting at offset `segment_start`
/// (0 for version 1). Pass it to parse_frame() and write_frame_header().
uint32_t frame_seed(uint64_t segment_start, uint32_t version) noexcept;

/// Outcome of parsing one frame.
enum class FrameStatus : uint8_t { kComplete, kNeedMore, kMalformed };

/// Parses one record frame at the start of `bytes`. On kComplete sets `payload` and `frame_bytes`.
/// kNeedMore: `bytes` ends inside the frame. kMalformed: bad length or CRC.
FrameStatus parse_frame(std::span<const uint8_t> bytes, uint32_t max_record_bytes,
                        std::span<const uint8_t>& payload, size_t& frame_bytes,
                        uint32_t seed = 0) noexcept;

/// Writes the frame header for `payload` into out[0..8).
void write_frame_header(std::span<const uint8_t> payload, uint8_t* out, uint32_t seed = 0) noexcept;

/// Lists the shard directories present under `dir` (shard numbers, ascending).
std::vector<uint32_t> list_shards(const std::string& dir);

}  // namespace tianhe::log
