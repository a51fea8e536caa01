// The MySQL sink's writer: one connection (libmariadb), one table per device model, rows and
// cursors in one transaction. Lives on its log consumer's thread; collect() runs on the scrape
// thread and reads atomics only.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/metrics.h"
#include "core/result.h"
#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/record.h"
#include "sinks/mysql/mysql_config.h"
#include "sinks/mysql/mysql_sql.h"

struct st_mysql;

namespace tianhe::sinks::mysql {

/// The writer's own counters (tianhe_sink_*_total{sink}).
struct MysqlStats {
  std::atomic<uint64_t> rows_inserted{0};     ///< rows committed
  std::atomic<uint64_t> duplicates{0};        ///< rows the table already held (replays)
  std::atomic<uint64_t> statements{0};        ///< INSERT statements run
  std::atomic<uint64_t> transactions{0};      ///< transactions committed
  std::atomic<uint64_t> conflicts{0};         ///< lock waits, deadlocks, write conflicts retried
  std::atomic<uint64_t> refused_attempts{0};  ///< batches the engine refused a value of
  std::atomic<uint64_t> isolations{0};        ///< batches written row range by row range
  std::atomic<uint64_t> poison_rows{0};       ///< rows the engine refused for good
  std::atomic<uint64_t> unroutable{0};        ///< reports with no table (dead-lettered)
  std::atomic<uint64_t> columns_added{0};     ///< ALTER TABLE ... ADD COLUMN run
  std::atomic<uint64_t> tables_checked{0};    ///< tables created or checked
};

/// A connection to MySQL (RAII): mysql_init on construction, mysql_close on destruction.
class Connection {
 public:
  Connection() = default;
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Connects with the settings' timeouts and sets the session (strict sql_mode, UTC,
  /// autocommit off). The error says what failed and what to check.
  Result<void> connect(const MysqlSettings& s);
  /// Runs `sql`; false on error (code() and message() tell).
  bool query(std::string_view sql);
  /// Affected rows of the last statement.
  uint64_t affected_rows() const;
  /// The last error's code and text.
  unsigned code() const;
  std::string message() const;
  /// Runs a query and returns its rows as text (NULL as ""); an error in words.
  Result<std::vector<std::vector<std::string>>> select(std::string_view sql);
  void close() noexcept;
  bool open() const noexcept { return mysql_ != nullptr; }

 private:
  st_mysql* mysql_ = nullptr;
};

/// The writer on the shared log consumer.
class MysqlWriter final : public SinkWriter {
 public:
  MysqlWriter(MysqlSettings settings, std::shared_ptr<const pipeline::Registry> registry);
  ~MysqlWriter() override;
  Result<std::vector<uint64_t>> open(uint32_t shards) override;
  WriteStatus write(const Batch& batch, bool durable, std::string& error) override;
  void close() noexcept override;
  void collect(core::PromWriter& w, const core::Labels& sink) const override;
  const MysqlStats& stats() const noexcept { return stats_; }

 private:
  /// A destination table (one per model, or per tenant and model with {tenant}).
  struct Table {
    std::string name;
    uint32_t model = 0;
    std::string prefix;    ///< INSERT INTO `name` (cols) VALUES
    bool ensured = false;  ///< created and its columns checked on this connection
  };
  /// A row built for a report.
  struct Row {
    uint32_t report = 0;  ///< index in the batch
    uint32_t table = 0;
    size_t begin = 0, end = 0;  ///< its tuple in rows_
  };
  /// A run of rows_ of one table written by one INSERT: order_[lo, hi).
  struct Chunk {
    size_t lo = 0, hi = 0;
  };
  enum class Outcome : uint8_t { kDone, kData, kFail };

  /// The table of (tenant, model), created in tables_ on first use.
  uint32_t table_for(uint32_t tenant, uint32_t model);
  /// Builds rows_ and order_ for the batch; reports that cannot be rows go to dead_.
  void prepare(const Batch& batch);
  /// Creates the tables of this batch that this connection has not checked yet.
  Outcome ensure_tables(std::string& error);
  Outcome ensure_table(Table& t, std::string& error);
  /// Splits order_ into chunks under max_statement_bytes (each of one table).
  void plan_chunks();
  /// One attempt at the whole batch; `isolate`: a chunk the engine refuses is halved until
  /// the refused rows stand alone, and those are dead-lettered.
  Outcome attempt(const Batch& batch, bool isolate, std::string& error);
  /// Runs chunk `c` (rows order_[c.lo, c.hi)); counts its duplicates into pending_dups_.
  bool run_chunk(const Chunk& c);
  /// SQL bytes of chunk `c`.
  size_t chunk_bytes(const Chunk& c) const;
  /// Adds the committed transaction's rows to the stats.
  void count_commit();

  MysqlSettings settings_;
  std::shared_ptr<const pipeline::Registry> registry_;
  std::vector<TableLayout> layouts_;  ///< per model
  Connection conn_;
  std::vector<Table> tables_;
  std::unordered_map<uint64_t, uint32_t> table_index_;  ///< (tenant << 32 | model) -> tables_
  uint64_t statement_limit_ = 0;               ///< max_statement_bytes, below max_allowed_packet
  KeyOrder key_order_ = KeyOrder::kTimeFirst;  ///< of the tables it creates (by the server)

  // Per batch, reused.
  MetricDecoder decoder_;
  std::vector<const core::Value*> slots_;
  std::string rows_;
  std::vector<Row> row_list_;
  std::vector<size_t> order_;  ///< row_list_ indexes grouped by table, batch order within
  std::vector<Chunk> chunks_;
  std::vector<Chunk> work_;
  std::vector<std::pair<uint32_t, std::string>> dead_;    ///< report index, reason: no row
  std::vector<std::pair<uint32_t, std::string>> poison_;  ///< report index, engine's refusal
  std::vector<size_t> counts_;
  ErrorClass fail_class_ = ErrorClass::kOther;  ///< why the last attempt failed
  std::string sql_;
  std::string why_;
  uint64_t pending_dups_ = 0;
  uint64_t pending_rows_ = 0;

  // Attempts of the batch the engine refused a value of (identified by its first position
  // and size), across the consumer's re-offers.
  ReportPosition refused_at_{};
  size_t refused_size_ = 0;
  uint32_t refused_attempts_ = 0;

  MysqlStats stats_;
};

}  // namespace tianhe::sinks::mysql
