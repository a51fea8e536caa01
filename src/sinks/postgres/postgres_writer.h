// The PostgreSQL sink's writer on the shared log consumer. Each batch is one transaction: binary
// COPY into a session's staging table per target table, INSERT ... SELECT ... ON CONFLICT DO
// NOTHING into the model's table (its primary key (time_ns, device_id, seq) drops a reading the
// table already holds), the upsert of the sink's cursors in tianhe_cursors, COMMIT. A crash at
// any point leaves either the whole batch with its cursors or none of it.
//
// Lives on the consumer's thread (every call but collect(), which reads atomics on the scrape
// thread). Its buffers (COPY streams, row scratch) are reused across batches.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"
#include "sinks/postgres/pg_connection.h"
#include "sinks/postgres/postgres_config.h"
#include "sinks/postgres/postgres_sql.h"

namespace tianhe::sinks::postgres {

/// The writer's own counters (tianhe_sink_*_total{sink}); the consumer has the common ones.
struct PostgresStats {
  std::atomic<uint64_t> duplicates{0};        ///< rows the primary key already held
  std::atomic<uint64_t> direct_batches{0};    ///< batches COPYed straight into the tables
  std::atomic<uint64_t> direct_fallbacks{0};  ///< of those tried, batches that went staged
  std::atomic<uint64_t> refused{0};           ///< rows refused for good, dead-lettered
  std::atomic<uint64_t> isolations{0};        ///< batches isolated row by row
  std::atomic<uint64_t> conflict_retries{0};  ///< transactions run again (40001, 40P01)
  std::atomic<uint64_t> tables_created{0};
  std::atomic<uint64_t> columns_added{0};
  std::atomic<uint64_t> unmapped_metrics{0};  ///< metrics with no column and no extra
  std::atomic<uint64_t> unroutable{0};        ///< reports with no model, dead-lettered
};

/// Whether a refused batch is retried or isolated: the attempts made on the same batch.
class AttemptCounter {
 public:
  /// Records a failed attempt of the batch starting at `first` with `size` reports; returns
  /// the attempts made on it so far (a different batch starts again at 1).
  uint32_t fail(const ReportPosition& first, size_t size) noexcept;
  /// The batch went through: forget it.
  void reset() noexcept { attempts_ = 0; }

 private:
  ReportPosition first_{};
  size_t size_ = 0;
  uint32_t attempts_ = 0;
};

class PostgresWriter final : public SinkWriter {
 public:
  /// `cursor_name`: the cursors' key in tianhe_cursors ("<instance>@<log id>"; empty: the
  /// instance).
  PostgresWriter(PostgresConfig config, ConnectSpec spec, std::string instance,
                 std::shared_ptr<const pipeline::Registry> registry, std::string cursor_name = "");
  ~PostgresWriter() override;
  Result<std::vector<uint64_t>> open(uint32_t shards) override;
  WriteStatus write(const Batch& batch, bool durable, std::string& error) override;
  void close() noexcept override;
  void collect(core::PromWriter& w, const core::Labels& sink) const override;
  const PostgresStats& stats() const noexcept { return stats_; }

 private:
  /// One destination table of this connection and its staging table.
  struct Target {
    TableLayout layout;
    uint32_t model = 0;
    std::string staging;  ///< the session's temporary table
    bool ready = false;   ///< created/migrated and staged on this connection
    /// Batches go straight into the table by COPY (no staging). Off for good once the table
    /// refuses the canonical binary types (an adopted table whose columns differ).
    bool direct = true;
    std::string direct_sql;      ///< COPY <table> (<columns>) FROM STDIN (FORMAT binary)
    CopyEncoder copy;            ///< this batch's rows
    std::vector<uint32_t> rows;  ///< batch index of each staged row (by ord)
    std::vector<size_t> starts;  ///< where each row starts in `copy`, then its end
  };
  /// The target of a report, or null (and `why`) when it has no model.
  Target* route(const RecordFields& f, std::string& why);
  /// Creates or migrates the table and creates the staging table (own transaction).
  bool ensure(Target& t, PgError& err);
  /// Routes and encodes the batch's rows into their targets' streams, with ord (staging rows)
  /// or without (the tables' own rows); kAccepted when done, else why not in `error`.
  WriteStatus encode(const Batch& batch, bool with_ord, std::string& error);
  /// The batch by COPY straight into the tables, with the cursors, in one transaction. False
  /// with err.cls kRefused when a table refused it (a duplicate key after a replay, a value it
  /// cannot hold): the caller goes the staging way.
  bool attempt_direct(const Batch& batch, bool durable, PgError& err);
  /// Writes the refused and unroutable rows to the dead-letter file and syncs it; false (and
  /// err) when it cannot.
  bool dead_letter(const Batch& batch, uint32_t attempts, PgError& err);
  /// One try of the batch; `isolate`: row ranges under savepoints, refused rows dead-lettered.
  bool attempt(const Batch& batch, bool durable, bool isolate, uint32_t attempts, PgError& err);
  /// Isolates the refused rows of `t` in [lo, hi) by bisection under savepoints.
  bool isolate(Target& t, int32_t lo, int32_t hi, PgError& err);
  void rollback() noexcept;

  PostgresConfig config_;
  ConnectSpec spec_;
  std::string instance_;
  std::string cursor_name_;  ///< the cursors' key
  std::shared_ptr<const pipeline::Registry> registry_;
  PgConnection conn_;
  bool per_tenant_ = false;                                     ///< the table template has {tenant}
  std::map<std::string, std::unique_ptr<Target>> targets_;      ///< by table name
  std::map<std::pair<int, std::string_view>, Target*> routes_;  ///< (model, tenant) -> target
  std::vector<Target*> active_;                                 ///< targets with rows in this batch
  uint32_t next_staging_ = 0;
  RowEncoder rows_;
  MetricDecoder decoder_;
  AttemptCounter attempts_;
  /// Rows refused for good in this attempt: batch index and the server's words.
  std::vector<std::pair<uint32_t, std::string>> refused_;
  std::vector<std::pair<uint32_t, std::string>> unroutable_;
  uint64_t staged_ = 0;
  uint64_t inserted_ = 0;
  bool direct_tried_ = false;  ///< this batch was tried directly first
  std::string sql_;
  std::string slice_;
  std::vector<uint64_t> affected_;
  PostgresStats stats_;
};

/// `tianhe bench --sinks`: COPY binary of batch_reports rows at a time into a scratch table of
/// the first device's model, dropped afterwards; rows per second.
Result<double> ceiling(const PostgresConfig& config, const ConnectSpec& spec,
                       const pipeline::Registry& registry, uint64_t reports);

}  // namespace tianhe::sinks::postgres
