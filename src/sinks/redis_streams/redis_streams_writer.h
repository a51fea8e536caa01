// The Redis streams writer: each batch is one pipelined round trip of MULTI, one XADD per new
// record, HSET of the instance's cursor hash (shard -> log offset, and the writing connection's
// id), HSET of its seen hash ("<device>:<shard>" -> newest delivered "<seq> <time_ns>"), EXEC.
// Entries, cursors and duplicate seeds therefore commit together: a crash replays from the
// cursors and adds nothing twice, and a device's retransmission at another log position is
// skipped by the seeded SeenWindow. Lives on the sink's log consumer thread; collect() runs on
// the scrape thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"
#include "sinks/redis_streams/redis_streams_config.h"
#include "sinks/redis_streams/redis_streams_entry.h"

struct redisContext;

namespace tianhe::sinks::redis_streams {

/// A connection to Redis (hiredis' synchronous context) with the connect and command timeout.
/// Closes on destruction.
class RedisConnection {
 public:
  /// Connects, authenticates and selects the database; an error says what to check.
  static Result<std::unique_ptr<RedisConnection>> open(const RedisSettings& s);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;
  redisContext* get() const noexcept { return ctx_; }
  /// The context's I/O error in words ("Connection reset by peer", "timeout").
  std::string io_error() const;

 private:
  explicit RedisConnection(redisContext* ctx) : ctx_(ctx) {}
  redisContext* ctx_;
};

/// Counters of the writer (written by the consumer thread, read by collect()).
struct RedisStreamsStats {
  std::atomic<uint64_t> entries_added{0};       ///< XADDs committed
  std::atomic<uint64_t> duplicates_skipped{0};  ///< reports already in the streams
  std::atomic<uint64_t> refused_attempts{0};    ///< writes refused because of given records
  std::atomic<uint64_t> refused_records{0};     ///< records isolated as refused for good
  std::atomic<uint64_t> blocked_oom{0};         ///< writes the server refused: out of memory
  std::atomic<uint64_t> blocked_other{0};       ///< READONLY, MISCONF, LOADING, BUSY, ...
};

/// The sink's writer. Not thread-safe: the consumer thread calls everything but collect().
class RedisStreamsWriter final : public SinkWriter {
 public:
  RedisStreamsWriter(RedisSettings settings, std::shared_ptr<const pipeline::Registry> registry);
  ~RedisStreamsWriter() override;
  Result<std::vector<uint64_t>> open(uint32_t shards) override;
  WriteStatus write(const Batch& batch, bool durable, std::string& error) override;
  void close() noexcept override;
  void collect(core::PromWriter& w, const core::Labels& sink) const override;
  const RedisStreamsStats& stats() const noexcept { return stats_; }

 private:
  /// One record of the batch to send: its index in the batch and its stream key's index.
  struct Item {
    size_t report = 0;
    uint32_t key = 0;
  };
  /// What one attempt at the transaction found.
  struct Outcome {
    WriteStatus status = WriteStatus::kAccepted;
    std::string error;
    /// Records the server refused (queue-time errors of their XADD): index, its words.
    std::vector<std::pair<size_t, std::string>> refused;
  };

  /// Kills the connection that wrote before this one (its id is the cursor hash's field
  /// "client"), so that nothing it sent can still run; records this connection's id.
  Result<void> fence_previous_connection();
  /// Reads the committed seeds (HSCAN of the seen hash).
  Result<std::vector<Seed>> load_seeds();
  /// Checks the reports against the window, builds items_ and the batch's stream keys.
  void prepare(const Batch& batch);
  /// Asks the server the type of each stream key not known to be a stream; records under a key
  /// of another type are refused.
  Outcome check_key_types();
  /// Sends MULTI, the XADDs, the HSETs and EXEC in one round trip and reads the replies.
  Outcome transact(const Batch& batch);
  /// Dead-letters the records refused in `o` that are not yet (after max_attempts).
  Result<void> isolate(const Batch& batch, const Outcome& o);
  void count_blocked(std::string_view reason);

  RedisSettings s_;
  std::shared_ptr<const pipeline::Registry> registry_;
  std::unique_ptr<RedisConnection> conn_;
  SeenWindow seen_;
  std::string client_id_;       ///< this connection's CLIENT ID
  std::string last_client_id_;  ///< the previous connection's (this process)
  EntryBuilder entry_;
  MetricDecoder decoder_;
  RedisStreamsStats stats_;

  // Reused across batches.
  std::vector<Item> items_;
  std::vector<std::string> keys_;  ///< the batch's distinct stream keys
  std::unordered_map<std::string, uint32_t> key_index_;
  std::string key_scratch_;
  std::vector<std::string> args_;  ///< the HSET arguments
  std::vector<const char*> argv_;
  std::vector<size_t> argvlen_;
  std::unordered_set<std::string> streams_;  ///< keys known to hold a stream (or nothing)
  size_t duplicates_ = 0;                    ///< in the batch being written

  // The batch being attempted: the same batch is offered again after kBlocked.
  uint64_t batch_id_ = 0;
  uint32_t attempts_ = 0;
  std::unordered_map<size_t, std::string> refused_;  ///< report index -> why (dead-lettered)
};

}  // namespace tianhe::sinks::redis_streams
