#include "sinks/mysql/mysql_sql.h"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/metrics_json.h"

namespace tianhe::sinks::mysql {
namespace {

const Column kFixed[] = {
    {"tenant", "VARCHAR(64) NOT NULL"},   {"device_id", "BIGINT UNSIGNED NOT NULL"},
    {"seq", "INT UNSIGNED NOT NULL"},     {"time_ns", "BIGINT NOT NULL"},
    {"time", "DATETIME(6) NOT NULL"},     {"received_ns", "BIGINT NOT NULL"},
    {"protocol", "VARCHAR(32) NOT NULL"}, {"traceparent", "VARCHAR(55) NULL"},
};
const Column kExtra = {"extra", "JSON NULL"};

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool same_name(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool plain_identifier(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdentifier) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '$';
    if (!ok) return false;
  }
  return true;
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_int(std::string& out, int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void append_value(std::string& out, const core::Value& v) {
  switch (v.type) {
    case core::ValueType::kDouble: append_double(out, v.f64); return;
    case core::ValueType::kInt64: append_int(out, v.i64); return;
    case core::ValueType::kBool: out += v.b ? "TRUE" : "FALSE"; return;
    case core::ValueType::kString: append_string(out, v.str); return;
  }
  out += "NULL";
}

void append_json_value(std::string& out, const core::Value& v) {
  switch (v.type) {
    case core::ValueType::kDouble:
      if (std::isfinite(v.f64)) {
        append_double(out, v.f64);
      } else {
        out += "null";  // as core::metrics_json renders it
      }
      return;
    case core::ValueType::kInt64: append_int(out, v.i64); return;
    case core::ValueType::kBool: out += v.b ? "true" : "false"; return;
    case core::ValueType::kString: core::append_json_string(out, v.str); return;
  }
  out += "null";
}

// Days since 1970-01-01 to a civil date (H. Hinnant, "chrono-Compatible Low-Level Date
// Algorithms", civil_from_days).
void civil_from_days(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
}

}  // namespace

void append_identifier(std::string& out, std::string_view name) {
  out += '`';
  for (char c : name) {
    if (c == '`') out += '`';
    out += c;
  }
  out += '`';
}

void append_string(std::string& out, std::string_view s) {
  out += '\'';
  for (char c : s) {
    switch (c) {
      case '\0': out += "\\0"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\\': out += "\\\\"; break;
      case '\'': out += "\\'"; break;
      case '"': out += "\\\""; break;
      case '\x1a': out += "\\Z"; break;
      default: out += c;
    }
  }
  out += '\'';
}

void append_double(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "NULL";
    return;
  }
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

bool append_datetime(std::string& out, int64_t time_ns) {
  constexpr int64_t kNs = 1'000'000'000;
  int64_t secs = time_ns / kNs;
  int64_t rem = time_ns % kNs;
  if (rem < 0) {
    rem += kNs;
    --secs;
  }
  int64_t days = secs / 86400;
  int64_t sod = secs % 86400;
  if (sod < 0) {
    sod += 86400;
    --days;
  }
  int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, y, m, d);
  if (y < 1000 || y > 9999) return false;
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u %02lld:%02lld:%02lld.%06lld",
                              static_cast<long long>(y), m, d, static_cast<long long>(sod / 3600),
                              static_cast<long long>(sod / 60 % 60),
                              static_cast<long long>(sod % 60), static_cast<long long>(rem / 1000));
  out.append(buf, static_cast<size_t>(n));
  return true;
}

std::string_view column_type(core::ValueType t) noexcept {
  switch (t) {
    case core::ValueType::kDouble: return "DOUBLE";
    case core::ValueType::kInt64: return "BIGINT";
    case core::ValueType::kBool: return "BOOLEAN";
    case core::ValueType::kString: return "TEXT";
  }
  return "TEXT";
}

std::span<const Column> fixed_columns() {
  return kFixed;
}

TableLayout table_layout(const pipeline::Model& model) {
  TableLayout l;
  l.columns.assign(std::begin(kFixed), std::end(kFixed));
  l.first_metric_column = l.columns.size();
  for (const pipeline::ModelMetric& m : model.metrics()) {
    bool own = plain_identifier(m.name) && !same_name(m.name, kExtra.name);
    for (const Column& c : l.columns) own = own && !same_name(c.name, m.name);
    if (!own) {
      l.metric_column.push_back(-1);
      continue;
    }
    l.metric_column.push_back(static_cast<int>(l.columns.size()));
    l.columns.push_back({m.name, std::string(column_type(m.type)) + " NULL"});
  }
  l.columns.push_back(kExtra);
  l.column_list = "(";
  for (size_t i = 0; i < l.columns.size(); ++i) {
    if (i > 0) l.column_list += ',';
    append_identifier(l.column_list, l.columns[i].name);
  }
  l.column_list += ')';
  return l;
}

std::string create_table_sql(std::string_view table, const TableLayout& layout, KeyOrder order) {
  std::string s = "CREATE TABLE IF NOT EXISTS ";
  append_identifier(s, table);
  s += " (";
  for (const Column& c : layout.columns) {
    append_identifier(s, c.name);
    s += ' ';
    s += c.type;
    s += ", ";
  }
  // InnoDB stores the rows in primary-key order (the clustered index). Device-first, each
  // device's newest rows sit on a leaf page of their own, so a batch from N devices dirties N
  // pages, and once N pages exceed the buffer pool every row costs a page read and a page
  // write (10,000 devices: 160 MiB of 16 KiB pages). Time-first, rows arrive in about key
  // order and go to the last pages. The set of columns, which is what exactly-once relies on
  // (ON DUPLICATE KEY), is the same in either order.
  s += order == KeyOrder::kTimeFirst ? "PRIMARY KEY (`time_ns`, `device_id`, `seq`))"
                                     : "PRIMARY KEY (`device_id`, `time_ns`, `seq`))";
  s += " DEFAULT CHARSET = utf8mb4";
  return s;
}

std::string add_column_sql(std::string_view table, const Column& c) {
  std::string s = "ALTER TABLE ";
  append_identifier(s, table);
  s += " ADD COLUMN ";
  append_identifier(s, c.name);
  s += ' ';
  // A NOT NULL fixed column added to a table that has rows would need a default: add it
  // NULL-able; the writer fills it in every row it writes.
  std::string type = c.type;
  if (const size_t p = type.find(" NOT NULL"); p != std::string::npos) type.replace(p, 9, " NULL");
  s += type;
  return s;
}

std::string create_cursor_table_sql() {
  std::string s = "CREATE TABLE IF NOT EXISTS ";
  append_identifier(s, kCursorTable);
  s += " (`sink` VARCHAR(128) NOT NULL, `shard` INT UNSIGNED NOT NULL, "
       "`log_offset` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`sink`, `shard`)) "
       "DEFAULT CHARSET = utf8mb4";
  return s;
}

std::string insert_prefix(std::string_view table, const TableLayout& layout) {
  std::string s = "INSERT INTO ";
  append_identifier(s, table);
  s += ' ';
  s += layout.column_list;
  s += " VALUES ";
  return s;
}

std::string expand_table(std::string_view tmpl, std::string_view tenant, std::string_view model) {
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl.compare(i, 7, "{model}") == 0) {
      out += model;
      i += 7;
    } else if (tmpl.compare(i, 8, "{tenant}") == 0) {
      out += tenant;
      i += 8;
    } else {
      out += tmpl[i++];
    }
  }
  return out;
}

std::string check_table_template(std::string_view tmpl) {
  if (tmpl.empty()) return "is empty; write a table name such as \"{model}\"";
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] == '{') {
      if (tmpl.compare(i, 7, "{model}") == 0) {
        i += 6;
      } else if (tmpl.compare(i, 8, "{tenant}") == 0) {
        i += 7;
      } else {
        return "\"" + std::string(tmpl) +
               "\" has an unknown placeholder; only {model} and {tenant} are replaced";
      }
    } else if (tmpl[i] == '}') {
      return "\"" + std::string(tmpl) + "\" has a '}' without '{'";
    }
  }
  return "";
}

std::string check_table_name(std::string_view name) {
  if (name.empty()) return "gives an empty table name";
  if (name.size() > kMaxIdentifier) {
    return "gives \"" + std::string(name) + "\" (" + std::to_string(name.size()) +
           " characters); MySQL table names have at most 64: shorten the template";
  }
  if (name.back() == ' ') return "gives \"" + std::string(name) + "\", which ends in a space";
  if (name.find('\0') != std::string_view::npos) return "gives a table name with a NUL byte";
  return "";
}

bool append_row(std::string& out, const RecordFields& f, std::span<const core::Metric> metrics,
                const pipeline::Model& model, const TableLayout& layout,
                std::vector<const core::Value*>& slots, std::string& why) {
  const size_t start = out.size();
  out += '(';
  append_string(out, f.tenant);
  out += ',';
  append_uint(out, f.device_id);
  out += ',';
  append_uint(out, f.seq);
  out += ',';
  append_int(out, f.time_ns);
  out += ",'";
  if (!append_datetime(out, f.time_ns)) {
    out.resize(start);
    why = "device time " + std::to_string(f.time_ns) +
          " ns lies outside the DATETIME range of column `time` (years 1000-9999)";
    return false;
  }
  out += "',";
  append_int(out, f.received_ns);
  out += ',';
  append_string(out, f.protocol);
  out += ',';
  if (f.traceparent_len > 0) {
    append_string(out, f.traceparent());
  } else {
    out += "NULL";
  }
  const auto& specs = model.metrics();
  slots.assign(specs.size(), nullptr);
  std::string_view extra_sep = "{";
  std::string extra;  // rare: models that allow unknown metrics, or names that are not columns
  for (const core::Metric& m : metrics) {
    int index =
        m.name.empty() ? (m.id < specs.size() ? static_cast<int>(m.id) : -1) : model.find(m.name);
    if (index >= 0 && layout.metric_column[static_cast<size_t>(index)] >= 0) {
      slots[static_cast<size_t>(index)] = &m.value;  // the last one wins, as in the store
      continue;
    }
    extra += extra_sep;
    extra_sep = ",";
    core::append_json_string(extra, index >= 0
                                        ? std::string_view(specs[static_cast<size_t>(index)].name)
                                        : std::string_view(metric_name(m)));
    extra += ':';
    append_json_value(extra, m.value);
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    if (layout.metric_column[i] < 0) continue;
    out += ',';
    if (slots[i] == nullptr) {
      out += "NULL";
    } else {
      append_value(out, *slots[i]);
    }
  }
  out += ',';
  if (extra.empty()) {
    out += "NULL";
  } else {
    extra += '}';
    append_string(out, extra);
  }
  out += ')';
  return true;
}

void append_cursor_upsert(std::string& out, std::string_view sink,
                          std::span<const ShardCursor> cursors) {
  out += "INSERT INTO ";
  append_identifier(out, kCursorTable);
  out += " (`sink`,`shard`,`log_offset`) VALUES ";
  for (size_t i = 0; i < cursors.size(); ++i) {
    if (i > 0) out += ',';
    out += '(';
    append_string(out, sink);
    out += ',';
    append_uint(out, cursors[i].shard);
    out += ',';
    append_uint(out, cursors[i].offset);
    out += ')';
  }
  // VALUES() in ON DUPLICATE KEY UPDATE: MySQL 8 deprecates it in favour of row aliases, which
  // MariaDB and TiDB do not have; all three run this form.
  out += " ON DUPLICATE KEY UPDATE `log_offset` = VALUES(`log_offset`)";
}

ErrorClass classify_error(unsigned code) noexcept {
  switch (code) {
    case 1205:  // ER_LOCK_WAIT_TIMEOUT
    case 1213:  // ER_LOCK_DEADLOCK
    case 8002:  // TiDB: SELECT FOR UPDATE cannot retry
    case 8022:  // TiDB: transaction commit failed, retry
    case 8028:  // TiDB: schema changed during the transaction
    case 9007:  // TiDB: write conflict
      return ErrorClass::kConflict;
    case 1048:  // ER_BAD_NULL_ERROR
    case 1264:  // ER_WARN_DATA_OUT_OF_RANGE
    case 1265:  // WARN_DATA_TRUNCATED
    case 1292:  // ER_TRUNCATED_WRONG_VALUE (a date or number that does not parse)
    case 1366:  // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD
    case 1367:  // ER_ILLEGAL_VALUE_FOR_TYPE
    case 1406:  // ER_DATA_TOO_LONG
    case 1690:  // ER_DATA_OUT_OF_RANGE
    case 3140:  // MySQL: ER_INVALID_JSON_TEXT
    case 3819:  // MySQL: ER_CHECK_CONSTRAINT_VIOLATED
    case 4025:  // MariaDB: ER_CONSTRAINT_FAILED (JSON is LONGTEXT CHECK (json_valid(...)))
      return ErrorClass::kData;
    case 1021:  // ER_DISK_FULL
    case 1037:  // ER_OUTOFMEMORY
    case 1038:  // ER_OUT_OF_SORTMEMORY
    case 1041:  // ER_OUT_OF_RESOURCES
    case 1114:  // ER_RECORD_FILE_FULL (the table is full)
    case 8175:  // TiDB: memory quota exceeded
      return ErrorClass::kFull;
    case 1054:  // ER_BAD_FIELD_ERROR: a column was dropped behind the sink's back
    case 1146:  // ER_NO_SUCH_TABLE
      return ErrorClass::kSchema;
    default: break;
  }
  if (code >= 2000 && code <= 2999) return ErrorClass::kConnection;  // CR_* client errors
  switch (code) {
    case 1053:  // ER_SERVER_SHUTDOWN
    case 1152:  // ER_ABORTING_CONNECTION
    case 1153:  // ER_NET_PACKET_TOO_LARGE
    case 1158:  // ER_NET_READ_ERROR
    case 1159:  // ER_NET_READ_INTERRUPTED
    case 1160:  // ER_NET_ERROR_ON_WRITE
    case 1161:  // ER_NET_WRITE_INTERRUPTED
    case 1927:  // ER_CONNECTION_KILLED
    case 4031:  // ER_CLIENT_INTERACTION_TIMEOUT
      return ErrorClass::kConnection;
    default: return ErrorClass::kOther;
  }
}

}  // namespace tianhe::sinks::mysql
