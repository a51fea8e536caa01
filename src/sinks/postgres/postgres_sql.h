// The pure parts of the PostgreSQL sink: the table layout of a device model, the SQL that
// creates, migrates and fills it, the binary COPY encoding of a row (PostgreSQL manual, COPY,
// "Binary Format"), and what an SQLSTATE means for a batch. No I/O.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/report.h"
#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/record.h"

namespace tianhe::sinks::postgres {

/// The columns every table starts with, in order (the documented record).
inline constexpr std::string_view kFixedColumns[] = {
    "tenant", "device_id", "seq", "time_ns", "time", "received_ns", "protocol", "traceparent"};
/// The column of metrics the model does not list (models that allow unknown metrics).
inline constexpr std::string_view kExtraColumn = "extra";
/// The staging tables' row number column (for isolating refused rows).
inline constexpr std::string_view kOrdColumn = "ord";

/// The SQL type of a metric's column: double precision, bigint, boolean, text.
std::string_view sql_type(core::ValueType t) noexcept;

/// "name" with embedded quotes doubled (an SQL identifier).
std::string quote_ident(std::string_view name);
/// 'text' with embedded quotes doubled (an SQL string literal; standard_conforming_strings).
std::string quote_literal(std::string_view text);

/// One metric column.
struct MetricColumn {
  std::string name;
  core::ValueType type = core::ValueType::kDouble;
};

/// The table of one model: the fixed columns, one per metric, then `extra` when the model
/// allows unknown metrics.
struct TableLayout {
  std::string schema;  ///< unquoted
  std::string table;   ///< unquoted
  std::vector<MetricColumn> metrics;
  bool extra = false;
  /// "schema"."table"
  std::string qualified() const;
};

/// The layout of `model` as table `table` in `schema`.
TableLayout table_layout(const pipeline::Model& model, std::string_view schema,
                         std::string_view table);

/// CREATE TABLE IF NOT EXISTS with the primary key (time_ns, device_id, seq).
std::string create_table_sql(const TableLayout& t);
/// ALTER TABLE ... ADD COLUMN IF NOT EXISTS for each column of `t` not in `existing`
/// (an adopted table keeps its own columns and types); empty when nothing is missing.
std::vector<std::string> add_column_sql(const TableLayout& t,
                                        const std::set<std::string>& existing);
/// The names of the columns of `t` in order (without ord).
std::vector<std::string> column_names(const TableLayout& t);
/// A session's staging table for `t`: ord, then the same columns with the canonical types,
/// emptied at each commit.
std::string create_staging_sql(const TableLayout& t, std::string_view staging);
/// INSERT INTO t SELECT ... FROM staging [WHERE ord in [lo, hi)] ON CONFLICT DO NOTHING;
/// lo == hi == 0 takes every staged row.
std::string insert_sql(const TableLayout& t, std::string_view staging, int32_t lo = 0,
                       int32_t hi = 0);

/// CREATE TABLE IF NOT EXISTS "schema".tianhe_cursors (...).
std::string create_cursor_table_sql(std::string_view schema);
/// SELECT shard, log_offset of sink $1.
std::string select_cursors_sql(std::string_view schema);
/// The upsert of `cursors` for sink `sink`.
std::string upsert_cursors_sql(std::string_view schema, std::string_view sink,
                               std::span<const ShardCursor> cursors);

/// What an error means for the batch.
enum class ErrorClass : uint8_t {
  kConnection,  ///< the connection is gone or unusable (class 08, 57P): reopen
  kConflict,    ///< serialization failure or deadlock (40001, 40P01): run the batch again
  kRefused,     ///< particular rows refused for good (class 22, 23502, 23514): isolate them
  kFull,        ///< disk full or out of memory (53100, 53200, 53xxx): offer the batch later
  kOther,       ///< anything else (a dropped table, a permission): reopen, which recreates
};

/// The class of an SQLSTATE ("" when the server sent none: a lost connection).
ErrorClass classify_sqlstate(std::string_view sqlstate) noexcept;
/// The snake_case name of a class ("refused").
std::string_view error_class_name(ErrorClass c) noexcept;

/// Microseconds since 2000-01-01 (a timestamptz's binary value) of ns since the Unix epoch,
/// rounded down.
int64_t pg_timestamp_us(int64_t unix_ns) noexcept;

/// The binary COPY stream of one batch, in a buffer reused across batches.
class CopyEncoder {
 public:
  /// Bytes of the stream's header (signature, flags, extension length).
  static constexpr size_t kHeaderBytes = 19;

  /// Starts a stream: signature, flags, header extension length.
  void begin();
  /// Starts a row of `fields` fields.
  void row(uint16_t fields);
  void null();
  void int4(int32_t v);
  void int8(int64_t v);
  void float8(double v);
  void boolean(bool v);
  void text(std::string_view v);
  /// A jsonb value: version 1, then the JSON text.
  void jsonb(std::string_view json);
  /// Ends the stream (the trailer).
  void end();
  const std::string& data() const noexcept { return buf_; }
  /// Bytes so far (a row's start, taken before row()).
  size_t size() const noexcept { return buf_.size(); }
  /// The stream of rows [first, last) of this one, whose row starts are `starts` (one more
  /// entry: the end of the last row), into `out`.
  void slice(std::span<const size_t> starts, size_t first, size_t last, std::string& out) const;
  size_t rows() const noexcept { return rows_; }

 private:
  void be16(uint16_t v);
  void be32(uint32_t v);
  void be64(uint64_t v);
  std::string buf_;
  size_t rows_ = 0;
};

/// Writes one row of report `r`: ord (when `ord` >= 0: a staging row), the record, the model's
/// metrics, extra. Without ord it is a row of the table itself.
/// Scratch buffers are reused; metrics that the model does not list (or whose type no longer
/// matches its column) go to `extra` when the table has it and are counted in `unmapped`
/// otherwise.
class RowEncoder {
 public:
  void encode(CopyEncoder& out, int32_t ord, const RecordFields& f,
              std::span<const core::Metric> metrics, const pipeline::Model& model,
              const TableLayout& t, uint64_t& unmapped);

 private:
  std::vector<const core::Metric*> slots_;
  std::string extra_;
};

}  // namespace tianhe::sinks::postgres
