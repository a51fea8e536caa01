// The pure parts of the Redis streams writer: one record as the arguments of an XADD, the
// per-device duplicate window with its committed seeds, and what a Redis error means for a
// batch. No I/O; the writer (redis_streams_writer.h) sends what these build.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/report.h"
#include "sinks/common/record.h"
#include "sinks/common/seq_window_table.h"

namespace tianhe::sinks::redis_streams {

/// Appends a metric value as text: doubles in the shortest form that reads back to the same
/// double ("21.5", "1e-07", "nan", "inf"), integers in decimal, "true"/"false", strings as they
/// are.
void append_value(std::string& out, const core::Value& v);

/// Whether a metric name would collide with a fixed field (device_id, seq, time_ns, ...), in
/// which case it is written as "m.<name>".
bool is_fixed_field(std::string_view name) noexcept;

/// Builds `XADD <key> [MAXLEN [~] N] * <field> <value> ...` for one record. Reused across
/// records: its buffers keep their capacity. The argument views stay valid until the next build().
class EntryBuilder {
 public:
  /// `max_len` 0: no MAXLEN.
  EntryBuilder(uint64_t max_len, bool approximate);
  /// The command of one record: the fixed fields, the traceparent when present, then one field
  /// per metric.
  void build(std::string_view key, const RecordFields& f, std::span<const core::Metric> metrics);
  int argc() const noexcept { return static_cast<int>(argv_.size()); }
  const char** argv() noexcept { return argv_.data(); }
  const size_t* argvlen() const noexcept { return lens_.data(); }
  /// Argument `i` as a view (tests).
  std::string_view arg(size_t i) const noexcept { return {argv_[i], lens_[i]}; }

 private:
  void add(std::string_view s);
  void add_number(int64_t v);
  void add_unsigned(uint64_t v);

  std::string max_len_;  ///< "" or its decimal text
  bool approximate_;
  std::string arena_;
  std::vector<std::pair<size_t, size_t>> spans_;  ///< offset, length in arena_
  std::vector<const char*> argv_;
  std::vector<size_t> lens_;
};

/// A device's newest report delivered from one shard: a field of the seen hash,
/// "<device_id>:<shard>" = "<seq> <time_ns>".
struct Seed {
  uint64_t device_id = 0;
  uint32_t shard = 0;
  uint32_t seq = 0;
  int64_t time_ns = 0;
};

/// The seen hash's field of a seed: "<device_id>:<shard>".
std::string format_seed_field(uint64_t device_id, uint32_t shard);
/// The seen hash's value of a seed: "<seq> <time_ns>".
std::string format_seed(uint32_t seq, int64_t time_ns);
/// Parses a field and value of the seen hash; false when malformed.
bool parse_seed(std::string_view field, std::string_view value, Seed& out);

/// Duplicate detection across batches and restarts. One SeqWindowTable per shard checks each
/// report against the device's earlier reports in that shard's log: a shard's log holds a
/// device's reports in arrival order, while the consumer hands over each shard's backlog in
/// turn, so across shards a device's reports come out of order by up to a batch, far more than
/// the 64-wide window. A retransmission from the device's socket reaches the shard of the
/// original (SO_REUSEPORT hashes the source address and port). The newest (seq, device time)
/// per device and shard moved by the batch being written is kept aside until the batch commits
/// (those seeds go into the same MULTI/EXEC), and a batch that does not commit is undone by
/// rebuilding the tables from the committed seeds. Owned by the writer's thread.
class SeenWindow {
 public:
  /// Starts over for `shards` shards from the seeds the destination holds (open()).
  void reset(uint32_t shards, std::span<const Seed> seeds);
  /// Starts a batch (forgets the previous batch's seeds).
  void begin();
  /// The verdict on one report read from `shard`; records it as seen for the rest of the batch.
  SeqVerdict check(uint32_t shard, uint64_t device_id, uint32_t seq, int64_t time_ns);
  /// The (device, shard) pairs whose newest report this batch moved, and where to.
  std::span<const Seed> batch_seeds() const noexcept { return batch_; }
  /// The batch was written: its seeds are now the committed ones.
  void commit();
  /// The batch was not written: the tables return to the committed seeds.
  void rollback();
  /// (device, shard) pairs known.
  size_t size() const noexcept { return committed_.size(); }

 private:
  using Key = std::pair<uint64_t, uint32_t>;  ///< device, shard
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept;
  };
  void rebuild();
  SeqWindowTable& table(uint32_t shard);

  uint32_t shards_ = 1;
  std::vector<SeqWindowTable> tables_;  ///< per shard
  std::unordered_map<Key, std::pair<uint32_t, int64_t>, KeyHash> committed_;
  std::vector<Seed> batch_;
  std::unordered_map<Key, size_t, KeyHash> batch_index_;  ///< -> index in batch_
  bool dirty_ = false;  ///< the tables hold checks of a batch that did not commit
};

/// What a Redis error reply means for the batch that got it.
enum class ErrorClass : uint8_t {
  kBlocked,  ///< refused for now (OOM, READONLY, MISCONF, LOADING, BUSY...): offer it again
  kRetry,    ///< the connection's state is wrong (NOAUTH, WRONGPASS...): reconnect
  kRefused,  ///< this command can never succeed as it is (ERR, WRONGTYPE): a poison record
};

/// The class of an error reply and a short reason for counters ("oom", "readonly", ...).
std::pair<ErrorClass, std::string_view> classify_error(std::string_view message) noexcept;
/// What an operator should check for an error of class kBlocked with `reason`.
std::string_view blocked_hint(std::string_view reason) noexcept;

}  // namespace tianhe::sinks::redis_streams
