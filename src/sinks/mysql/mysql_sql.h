// The SQL the MySQL sink speaks, as pure functions (no connection, no I/O): identifier and
// string quoting, the table layout of a device model, CREATE/ALTER statements, one row of the
// documented record as a VALUES tuple, and what a server error code means for a batch. Kept to
// SQL that MySQL, MariaDB and TiDB all run: no triggers, no stored procedures, explicit primary
// keys, plain text statements.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/report.h"
#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/record.h"

namespace tianhe::sinks::mysql {

/// The cursor table: (sink, shard) -> log_offset, updated in the rows' transaction.
inline constexpr std::string_view kCursorTable = "tianhe_cursors";

/// MySQL's limit on identifier length (table and column names), in characters.
inline constexpr size_t kMaxIdentifier = 64;

/// Appends `name` as a quoted identifier (`name`, backticks doubled).
void append_identifier(std::string& out, std::string_view name);

/// Appends `s` as a quoted string literal ('...'), escaped the way mysql_real_escape_string
/// does for utf8mb4 with NO_BACKSLASH_ESCAPES off (the session's sql_mode): \0 \n \r \\ \' \"
/// and \Z (0x1a).
void append_string(std::string& out, std::string_view s);

/// Appends a double as its shortest round-trip decimal text ("21.5", "1e+300"). Non-finite
/// values have no SQL literal: NULL.
void append_double(std::string& out, double v);

/// Appends device time `time_ns` as a DATETIME(6) literal body, UTC, truncated to the
/// microsecond toward the past ("2023-11-14 22:13:20.000001"); false when the year falls outside
/// DATETIME's 1000-9999 (nothing is appended then).
bool append_datetime(std::string& out, int64_t time_ns);

/// The SQL type of a model metric's column: DOUBLE, BIGINT, BOOLEAN or TEXT.
std::string_view column_type(core::ValueType t) noexcept;

/// A column of a sink table.
struct Column {
  std::string name;
  std::string type;  ///< "BIGINT UNSIGNED NOT NULL", "DOUBLE NULL", ...
};

/// The layout of one model's table: the fixed columns, a column per model metric (in model
/// order), then `extra`. A metric whose name cannot be a column of its own (it would collide
/// with a fixed column or an earlier metric, compared as MySQL does, without case; it is longer
/// than 64 characters; it has characters other than [A-Za-z0-9_$]) is kept in `extra` instead.
struct TableLayout {
  std::vector<Column> columns;     ///< every column, in table order
  std::vector<int> metric_column;  ///< per model metric: its index in columns, or -1 (extra)
  size_t first_metric_column = 0;  ///< columns[first_metric_column..] are the metrics'
  std::string column_list;         ///< "(`tenant`,`device_id`,...,`extra`)"
};

/// The fixed columns, in table order (tenant ... traceparent); `extra` comes last.
std::span<const Column> fixed_columns();

/// The layout of `model`'s table.
TableLayout table_layout(const pipeline::Model& model);

/// The order of a new table's primary key (always the columns device_id, time_ns, seq).
enum class KeyOrder : uint8_t {
  kTimeFirst,    ///< (time_ns, device_id, seq): InnoDB appends at the index's right edge
  kDeviceFirst,  ///< (device_id, time_ns, seq): TiDB, where a time-first key is one hot region
};

/// CREATE TABLE IF NOT EXISTS `table` (...) with the layout and the primary key in `order`.
std::string create_table_sql(std::string_view table, const TableLayout& layout,
                             KeyOrder order = KeyOrder::kTimeFirst);

/// ALTER TABLE `table` ADD COLUMN `c` <type>, for a column missing from an existing table (added
/// as NULL-able, so a table with rows can take it).
std::string add_column_sql(std::string_view table, const Column& c);

/// CREATE TABLE IF NOT EXISTS tianhe_cursors (...).
std::string create_cursor_table_sql();

/// "INSERT INTO `table` (cols) VALUES " (the rows follow, joined by ',').
std::string insert_prefix(std::string_view table, const TableLayout& layout);
/// " ON DUPLICATE KEY UPDATE `seq` = `seq`": a row the table already holds is left as it is
/// and counts 0 affected rows, so duplicates show in the affected-row count, while every other
/// error still fails the statement (INSERT IGNORE would turn data errors into warnings).
inline constexpr std::string_view kInsertSuffix = " ON DUPLICATE KEY UPDATE `seq` = `seq`";

/// The table a template names: "{model}" and "{tenant}" replaced.
std::string expand_table(std::string_view tmpl, std::string_view tenant, std::string_view model);

/// "" when `tmpl` is a usable table template (only {model} and {tenant} placeholders, not
/// empty), else the problem and the fix.
std::string check_table_template(std::string_view tmpl);

/// "" when `name` is a usable table name (1-64 characters, no trailing space, no NUL), else the
/// problem.
std::string check_table_name(std::string_view name);

/// Appends the row of one report as a VALUES tuple "(...)" in `layout`'s column order. Metrics
/// the model lists go to their columns (by name, or by id for a metric sent by id); the others
/// go to `extra` as a JSON object (NULL when there are none). False, with `why` set, when the
/// report cannot be a row (its device time is outside DATETIME's range); nothing is appended
/// then. `slots` is scratch space reused across calls.
bool append_row(std::string& out, const RecordFields& f, std::span<const core::Metric> metrics,
                const pipeline::Model& model, const TableLayout& layout,
                std::vector<const core::Value*>& slots, std::string& why);

/// INSERT INTO tianhe_cursors ... VALUES ('sink', shard, offset), ... ON DUPLICATE KEY UPDATE.
void append_cursor_upsert(std::string& out, std::string_view sink,
                          std::span<const ShardCursor> cursors);

/// What a server or client error code means for the batch being written.
enum class ErrorClass : uint8_t {
  kConnection,  ///< the connection is gone or its state unknown: reconnect, resume (kRetry)
  kConflict,    ///< lock wait timeout, deadlock, TiDB write conflict: run the batch again
  kData,        ///< the engine refuses a value for good: retry, then isolate the rows
  kFull,        ///< out of disk or memory: offer the same batch later (kBlocked)
  kSchema,      ///< a table or column the writer created is gone: reconnect, recreate (kRetry)
  kOther,       ///< anything else: treated as kConnection (state unknown)
};

/// The class of MySQL/MariaDB/TiDB error `code`.
ErrorClass classify_error(unsigned code) noexcept;

/// Rows a multi-row INSERT ... ON DUPLICATE KEY UPDATE `seq` = `seq` found already present:
/// each inserted row counts 1 affected row and each duplicate 0 (without CLIENT_FOUND_ROWS).
inline uint64_t duplicate_rows(uint64_t rows, uint64_t affected) noexcept {
  return affected >= rows ? 0 : rows - affected;
}

}  // namespace tianhe::sinks::mysql
