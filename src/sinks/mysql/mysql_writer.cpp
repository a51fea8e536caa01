#include "sinks/mysql/mysql_writer.h"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <algorithm>
#include <cstdio>
#include <mutex>

#include "sinks/common/dead_letter.h"

namespace tianhe::sinks::mysql {
namespace {

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

std::string where(const MysqlSettings& s) {
  return s.host + ":" + std::to_string(s.port);
}

}  // namespace

// ---- Connection ----

Connection::~Connection() {
  close();
}

void Connection::close() noexcept {
  if (mysql_ != nullptr) mysql_close(mysql_);
  mysql_ = nullptr;
}

Result<void> Connection::connect(const MysqlSettings& s) {
  close();
  // mysql_library_init is not thread-safe; mysql_init would call it implicitly on whichever
  // consumer thread comes first.
  static std::once_flag init;
  std::call_once(init, [] { mysql_library_init(0, nullptr, nullptr); });
  mysql_ = mysql_init(nullptr);
  if (mysql_ == nullptr) return make_error("mysql: out of memory (mysql_init)");
  const auto ms = s.timeout.count();
  unsigned timeout_s = static_cast<unsigned>(std::max<int64_t>(1, (ms + 999) / 1000));
  mysql_options(mysql_, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
  mysql_options(mysql_, MYSQL_OPT_READ_TIMEOUT, &timeout_s);
  mysql_options(mysql_, MYSQL_OPT_WRITE_TIMEOUT, &timeout_s);
  // A silent reconnect would drop the open transaction's rows and go on writing: never.
  my_bool reconnect = 0;
  mysql_options(mysql_, MYSQL_OPT_RECONNECT, &reconnect);
  mysql_options(mysql_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  if (mysql_real_connect(mysql_, s.host.c_str(), s.user.c_str(), s.password.c_str(),
                         s.database.c_str(), s.port, nullptr, 0) == nullptr) {
    const unsigned code = mysql_errno(mysql_);
    std::string e = "mysql: cannot connect to " + where(s) + " as " + s.user + ": " +
                    mysql_error(mysql_) + " (error " + std::to_string(code) + "); ";
    if (code == ER_ACCESS_DENIED_ERROR || code == ER_DBACCESS_DENIED_ERROR) {
      e += "check the user in " + s.header + ".url, the password (" + s.header +
           ".password_env or .password_file) and the user's grants on `" + s.database + "`";
    } else if (code == ER_BAD_DB_ERROR) {
      e += "create the database (CREATE DATABASE `" + s.database + "`) and grant " + s.user +
           " rights on it, or fix " + s.header + ".url";
    } else {
      e += "check that the server runs and accepts TCP connections on " + where(s) + " (" +
           s.header + ".url)";
    }
    close();
    return make_error(std::move(e));
  }
  // Strict: a value that does not fit is an error, never silently clamped or truncated. UTC:
  // DATETIME carries no zone. Autocommit off: rows and cursors commit together.
  if (!query("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION', "
             "time_zone = '+00:00', autocommit = 0")) {
    std::string e = "mysql: cannot set the session on " + where(s) + ": " + message();
    close();
    return make_error(std::move(e));
  }
  return {};
}

bool Connection::query(std::string_view sql) {
  if (mysql_ == nullptr) return false;
  return mysql_real_query(mysql_, sql.data(), static_cast<unsigned long>(sql.size())) == 0;
}

uint64_t Connection::affected_rows() const {
  return mysql_ == nullptr ? 0 : static_cast<uint64_t>(mysql_affected_rows(mysql_));
}

unsigned Connection::code() const {
  return mysql_ == nullptr ? CR_SERVER_GONE_ERROR : mysql_errno(mysql_);
}

std::string Connection::message() const {
  if (mysql_ == nullptr) return "not connected";
  return std::string(mysql_error(mysql_)) + " (error " + std::to_string(mysql_errno(mysql_)) + ")";
}

Result<std::vector<std::vector<std::string>>> Connection::select(std::string_view sql) {
  if (!query(sql)) return make_error(message());
  MYSQL_RES* res = mysql_store_result(mysql_);
  if (res == nullptr) {
    if (mysql_errno(mysql_) != 0) return make_error(message());
    return std::vector<std::vector<std::string>>{};
  }
  std::vector<std::vector<std::string>> out;
  const unsigned n = mysql_num_fields(res);
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    const unsigned long* lengths = mysql_fetch_lengths(res);
    std::vector<std::string>& r = out.emplace_back();
    for (unsigned i = 0; i < n; ++i) {
      r.emplace_back(row[i] == nullptr ? "" : std::string(row[i], lengths[i]));
    }
  }
  mysql_free_result(res);
  return out;
}

// ---- MysqlWriter ----

MysqlWriter::MysqlWriter(MysqlSettings settings, std::shared_ptr<const pipeline::Registry> registry)
    : settings_(std::move(settings)), registry_(std::move(registry)) {
  if (registry_ != nullptr) {
    for (size_t m = 0; m < registry_->model_count(); ++m) {
      layouts_.push_back(table_layout(registry_->model(static_cast<uint32_t>(m))));
    }
  }
  statement_limit_ = settings_.max_statement_bytes;
}

MysqlWriter::~MysqlWriter() {
  close();
}

void MysqlWriter::close() noexcept {
  conn_.close();
  for (Table& t : tables_) t.ensured = false;
}

Result<std::vector<uint64_t>> MysqlWriter::open(uint32_t shards) {
  close();
  if (auto r = conn_.connect(settings_); !r) return r.error();
  const std::string at = "mysql " + where(settings_) + "/" + settings_.database;
  auto fail = [&](const std::string& what) -> Error {
    std::string e = at + ": " + what + ": " + conn_.message();
    conn_.close();
    return make_error(std::move(e));
  };
  // Keep every statement below the server's max_allowed_packet (with room for the protocol).
  statement_limit_ = settings_.max_statement_bytes;
  auto packet = conn_.select("SELECT @@max_allowed_packet, VERSION()");
  if (!packet) return fail("cannot read max_allowed_packet");
  // TiDB names itself in its version ("8.0.11-TiDB-v7.5.0"). It splits a table into regions
  // by key range: a time-first key would put every write on the last region, so its new
  // tables lead with the device (docs/sinks/mysql.md, "TiDB").
  key_order_ = !packet->empty() && packet->front().size() > 1 &&
                       packet->front()[1].find("TiDB") != std::string::npos
                   ? KeyOrder::kDeviceFirst
                   : KeyOrder::kTimeFirst;
  if (!packet->empty() && !packet->front().empty()) {
    const uint64_t limit = std::strtoull(packet->front()[0].c_str(), nullptr, 10);
    if (limit > 8192 && limit - 4096 < statement_limit_) {
      std::fprintf(stderr,
                   "sink.%s: max_statement_bytes %llu is not below the server's "
                   "max_allowed_packet %llu: statements are kept under %llu bytes\n",
                   settings_.instance.c_str(),
                   static_cast<unsigned long long>(settings_.max_statement_bytes),
                   static_cast<unsigned long long>(limit),
                   static_cast<unsigned long long>(limit - 4096));
      statement_limit_ = limit - 4096;
    }
  }
  if (!conn_.query(create_cursor_table_sql())) {
    return fail("cannot create the cursor table " + std::string(kCursorTable) +
                " (does the user have the CREATE privilege?)");
  }
  // Without {tenant} the tables are known now: create (or adopt and complete) every model's.
  if (settings_.table.find("{tenant}") == std::string::npos) {
    for (size_t m = 0; m < layouts_.size(); ++m) {
      Table& t = tables_[table_for(0, static_cast<uint32_t>(m))];
      std::string error;
      if (ensure_table(t, error) != Outcome::kDone) {
        error.insert(0, ": ");
        error.insert(0, at);
        conn_.close();
        return make_error(std::move(error));
      }
    }
  }
  sql_ = "SELECT `shard`, `log_offset` FROM ";
  append_identifier(sql_, kCursorTable);
  sql_ += " WHERE `sink` = ";
  append_string(sql_, settings_.cursor_name);
  auto rows = conn_.select(sql_);
  if (!rows) return fail("cannot read the cursors from " + std::string(kCursorTable));
  std::vector<uint64_t> cursors(shards, 0);
  for (const auto& r : rows.value()) {
    if (r.size() < 2) continue;
    const uint64_t shard = std::strtoull(r[0].c_str(), nullptr, 10);
    if (shard < shards) cursors[shard] = std::strtoull(r[1].c_str(), nullptr, 10);
  }
  if (!conn_.query("COMMIT")) return fail("cannot end the reading transaction");
  return cursors;
}

uint32_t MysqlWriter::table_for(uint32_t tenant, uint32_t model) {
  if (settings_.table.find("{tenant}") == std::string::npos) tenant = 0;
  const uint64_t key = (static_cast<uint64_t>(tenant) << 32) | model;
  if (auto it = table_index_.find(key); it != table_index_.end()) return it->second;
  Table t;
  const std::string_view tenant_name = registry_ != nullptr && tenant < registry_->tenant_count()
                                           ? std::string_view(registry_->tenant_name(tenant))
                                           : std::string_view();
  t.name = expand_table(settings_.table, tenant_name, registry_->model(model).name());
  t.model = model;
  t.prefix = insert_prefix(t.name, layouts_[model]);
  tables_.push_back(std::move(t));
  const auto index = static_cast<uint32_t>(tables_.size() - 1);
  table_index_.emplace(key, index);
  return index;
}

MysqlWriter::Outcome MysqlWriter::ensure_table(Table& t, std::string& error) {
  if (t.ensured) return Outcome::kDone;
  const TableLayout& layout = layouts_[t.model];
  if (!conn_.query(create_table_sql(t.name, layout, key_order_))) {
    error = "cannot create table `" + t.name + "`: " + conn_.message();
    return Outcome::kFail;
  }
  // The table may have existed (created by hand, or by an older model): adopt it as it is and
  // add only the columns it lacks.
  sql_ =
      "SELECT `COLUMN_NAME` FROM information_schema.`COLUMNS` WHERE `TABLE_SCHEMA` = DATABASE() "
      "AND `TABLE_NAME` = ";
  append_string(sql_, t.name);
  auto have = conn_.select(sql_);
  if (!have) {
    error = "cannot read the columns of `" + t.name + "`: " + have.error().message;
    return Outcome::kFail;
  }
  for (const Column& c : layout.columns) {
    const bool present = std::any_of(have->begin(), have->end(), [&](const auto& row) {
      return !row.empty() && same_name(row[0], c.name);
    });
    if (present) continue;
    // ER_DUP_FIELDNAME: another instance added it a moment ago.
    if (!conn_.query(add_column_sql(t.name, c)) && conn_.code() != ER_DUP_FIELDNAME) {
      error = "cannot add column `" + c.name + "` to `" + t.name + "`: " + conn_.message();
      return Outcome::kFail;
    }
    stats_.columns_added.fetch_add(1, std::memory_order_relaxed);
  }
  if (!conn_.query("COMMIT")) {
    error = "cannot commit after checking `" + t.name + "`: " + conn_.message();
    return Outcome::kFail;
  }
  stats_.tables_checked.fetch_add(1, std::memory_order_relaxed);
  t.ensured = true;
  return Outcome::kDone;
}

void MysqlWriter::prepare(const Batch& batch) {
  rows_.clear();
  row_list_.clear();
  dead_.clear();
  const pipeline::Registry* reg = registry_.get();
  for (size_t i = 0; i < batch.reports.size(); ++i) {
    const core::Report& r = batch.reports[i];
    const RecordFields f = record_fields(r, reg);
    int model = f.model_index;
    if (model < 0 && reg != nullptr && reg->model_count() > 0 &&
        reg->unknown_devices() == pipeline::UnknownDevicePolicy::kAutoRegister) {
      model = static_cast<int>(reg->default_model());
    }
    if (model < 0) {
      dead_.emplace_back(static_cast<uint32_t>(i),
                         "device " + std::to_string(r.device_id) +
                             " is not in the registry, and the registry has no model for unknown "
                             "devices (registry.unknown_devices = \"reject\"): no table to write");
      continue;
    }
    const auto metrics = decoder_.decode(r);
    if (!decoder_.ok()) {
      dead_.emplace_back(static_cast<uint32_t>(i), "the report's metrics in the log are malformed");
      continue;
    }
    const uint32_t tenant =
        reg != nullptr && r.tenant < reg->tenant_count() ? r.tenant : reg->default_tenant();
    const uint32_t table = table_for(tenant, static_cast<uint32_t>(model));
    const size_t begin = rows_.size();
    if (!append_row(rows_, f, metrics, reg->model(static_cast<uint32_t>(model)),
                    layouts_[static_cast<size_t>(model)], slots_, why_)) {
      dead_.emplace_back(static_cast<uint32_t>(i), why_);
      continue;
    }
    row_list_.push_back({static_cast<uint32_t>(i), table, begin, rows_.size()});
  }
  // Group the rows by table (a counting sort keeps the batch order within a table).
  std::vector<size_t>& counts = counts_;
  counts.assign(tables_.size() + 1, 0);
  for (const Row& row : row_list_) ++counts[row.table + 1];
  for (size_t t = 1; t < counts.size(); ++t) counts[t] += counts[t - 1];
  order_.resize(row_list_.size());
  for (size_t k = 0; k < row_list_.size(); ++k) order_[counts[row_list_[k].table]++] = k;
}

MysqlWriter::Outcome MysqlWriter::ensure_tables(std::string& error) {
  for (const Row& row : row_list_) {
    Table& t = tables_[row.table];
    if (t.ensured) continue;
    if (ensure_table(t, error) != Outcome::kDone) return Outcome::kFail;
  }
  return Outcome::kDone;
}

void MysqlWriter::plan_chunks() {
  chunks_.clear();
  const size_t fixed_bytes = kInsertSuffix.size() + 1;
  size_t k = 0;
  while (k < order_.size()) {
    const uint32_t table = row_list_[order_[k]].table;
    Chunk c{k, k};
    size_t bytes = tables_[table].prefix.size() + fixed_bytes;
    while (c.hi < order_.size() && row_list_[order_[c.hi]].table == table) {
      const Row& row = row_list_[order_[c.hi]];
      const size_t add = row.end - row.begin + 1;
      if (c.hi > c.lo && bytes + add > statement_limit_) break;
      bytes += add;
      ++c.hi;
    }
    chunks_.push_back(c);
    k = c.hi;
  }
}

size_t MysqlWriter::chunk_bytes(const Chunk& c) const {
  if (c.hi == c.lo) return 0;
  const Row& first = row_list_[order_[c.lo]];
  size_t bytes = tables_[first.table].prefix.size() + kInsertSuffix.size();
  for (size_t k = c.lo; k < c.hi; ++k) {
    const Row& row = row_list_[order_[k]];
    bytes += row.end - row.begin + 1;
  }
  return bytes;
}

bool MysqlWriter::run_chunk(const Chunk& c) {
  const Table& t = tables_[row_list_[order_[c.lo]].table];
  sql_.assign(t.prefix);
  for (size_t k = c.lo; k < c.hi; ++k) {
    const Row& row = row_list_[order_[k]];
    if (k > c.lo) sql_ += ',';
    sql_.append(rows_, row.begin, row.end - row.begin);
  }
  sql_ += kInsertSuffix;
  stats_.statements.fetch_add(1, std::memory_order_relaxed);
  if (!conn_.query(sql_)) return false;
  const uint64_t rows = c.hi - c.lo;
  pending_rows_ += rows;
  pending_dups_ += duplicate_rows(rows, conn_.affected_rows());
  return true;
}

void MysqlWriter::count_commit() {
  stats_.transactions.fetch_add(1, std::memory_order_relaxed);
  stats_.rows_inserted.fetch_add(pending_rows_ - pending_dups_, std::memory_order_relaxed);
  stats_.duplicates.fetch_add(pending_dups_, std::memory_order_relaxed);
  pending_rows_ = 0;
  pending_dups_ = 0;
}

MysqlWriter::Outcome MysqlWriter::attempt(const Batch& batch, bool isolate, std::string& error) {
  pending_rows_ = 0;
  pending_dups_ = 0;
  poison_.clear();
  auto failed = [&](const std::string& what) {
    fail_class_ = classify_error(conn_.code());
    error = what + ": " + conn_.message();
    conn_.query("ROLLBACK");  // the connection may be gone: then the server rolls back
    return Outcome::kFail;
  };
  // work_ is a stack: the chunks in reverse, so they run in order; isolation pushes halves.
  work_.assign(chunks_.rbegin(), chunks_.rend());
  uint64_t tx_bytes = 0;
  while (!work_.empty()) {
    const Chunk c = work_.back();
    work_.pop_back();
    const size_t bytes = chunk_bytes(c);
    if (tx_bytes > 0 && tx_bytes + bytes > settings_.max_transaction_bytes) {
      // A batch larger than one transaction may be: commit what is written (without the
      // cursors: a crash now replays it, and the primary key makes the replay a no-op).
      if (!conn_.query("COMMIT")) return failed("commit");
      count_commit();
      tx_bytes = 0;
    }
    tx_bytes += bytes;
    if (run_chunk(c)) continue;
    const unsigned code = conn_.code();
    if (classify_error(code) != ErrorClass::kData) {
      return failed("insert into `" + tables_[row_list_[order_[c.lo]].table].name + "`");
    }
    if (!isolate) {
      error =
          "`" + tables_[row_list_[order_[c.lo]].table].name + "` refuses a row: " + conn_.message();
      conn_.query("ROLLBACK");
      fail_class_ = ErrorClass::kData;
      return Outcome::kData;
    }
    // InnoDB (and TiDB) undo a failed statement and keep the transaction: halve the rows until
    // each refused one stands alone.
    if (c.hi - c.lo == 1) {
      poison_.emplace_back(row_list_[order_[c.lo]].report, conn_.message());
      continue;
    }
    const size_t mid = c.lo + (c.hi - c.lo) / 2;
    work_.push_back({mid, c.hi});
    work_.push_back({c.lo, mid});
  }
  if (!dead_.empty() || !poison_.empty()) {
    if (batch.dead_letter == nullptr) {
      error = "reports the engine refuses, and no dead-letter file to put them in";
      conn_.query("ROLLBACK");
      fail_class_ = ErrorClass::kFull;
      return Outcome::kFail;
    }
    for (const auto& [i, reason] : dead_) {
      batch.dead_letter->add(batch.reports[i], registry_.get(), reason, 1);
    }
    for (const auto& [i, reason] : poison_) {
      batch.dead_letter->add(batch.reports[i], registry_.get(), reason, settings_.max_attempts);
    }
    // On disk before the cursors that pass these reports commit.
    if (auto r = batch.dead_letter->sync(); !r) {
      error = "dead-letter file: " + r.error().message;
      conn_.query("ROLLBACK");
      fail_class_ = ErrorClass::kFull;
      return Outcome::kFail;
    }
  }
  sql_.clear();
  append_cursor_upsert(sql_, settings_.cursor_name, batch.cursors);
  if (!conn_.query(sql_)) return failed("update " + std::string(kCursorTable));
  if (!conn_.query("COMMIT")) return failed("commit");
  count_commit();
  stats_.poison_rows.fetch_add(poison_.size(), std::memory_order_relaxed);
  stats_.unroutable.fetch_add(dead_.size(), std::memory_order_relaxed);
  return Outcome::kDone;
}

WriteStatus MysqlWriter::write(const Batch& batch, bool durable, std::string& error) {
  (void)durable;  // every commit is durable (InnoDB's redo log; TiDB's Raft log)
  if (!conn_.open()) {
    error = "mysql: not connected";
    return WriteStatus::kRetry;
  }
  prepare(batch);
  if (ensure_tables(error) != Outcome::kDone) {
    const ErrorClass cls = classify_error(conn_.code());
    error = "mysql: " + error;
    return cls == ErrorClass::kFull ? WriteStatus::kBlocked : WriteStatus::kRetry;
  }
  plan_chunks();
  const bool same_batch = !batch.positions.empty() && refused_attempts_ > 0 &&
                          batch.reports.size() == refused_size_ &&
                          batch.positions[0].shard == refused_at_.shard &&
                          batch.positions[0].offset == refused_at_.offset &&
                          batch.positions[0].index == refused_at_.index;
  if (!same_batch) refused_attempts_ = 0;
  bool isolate = refused_attempts_ >= settings_.max_attempts;
  for (uint32_t tries = 1;; ++tries) {
    const Outcome o = attempt(batch, isolate, error);
    if (o == Outcome::kDone) {
      if (isolate) stats_.isolations.fetch_add(1, std::memory_order_relaxed);
      refused_attempts_ = 0;
      return WriteStatus::kAccepted;
    }
    if (o == Outcome::kData) {
      stats_.refused_attempts.fetch_add(1, std::memory_order_relaxed);
      ++refused_attempts_;
      refused_size_ = batch.reports.size();
      if (!batch.positions.empty()) refused_at_ = batch.positions[0];
      if (refused_attempts_ >= settings_.max_attempts) {
        isolate = true;  // this call writes the batch row range by row range
        continue;
      }
      error.insert(0, "mysql: ");
      error += " (attempt ";
      error += std::to_string(refused_attempts_);
      error += " of ";
      error += std::to_string(settings_.max_attempts);
      error += "; then the refused rows go to the dead-letter file)";
      return WriteStatus::kBlocked;
    }
    error.insert(0, "mysql: ");
    switch (fail_class_) {
      case ErrorClass::kConflict:
        stats_.conflicts.fetch_add(1, std::memory_order_relaxed);
        if (tries < settings_.max_attempts) continue;  // a deadlock victim simply runs again
        return WriteStatus::kBlocked;
      case ErrorClass::kFull: return WriteStatus::kBlocked;
      case ErrorClass::kData:  // a data error outside the rows (the cursor update): unknown
      case ErrorClass::kSchema:
      case ErrorClass::kConnection:
      case ErrorClass::kOther: return WriteStatus::kRetry;
    }
    return WriteStatus::kRetry;
  }
}

void MysqlWriter::collect(core::PromWriter& w, const core::Labels& sink) const {
  auto c = [&](std::string_view name, std::string_view help, const std::atomic<uint64_t>& v) {
    w.counter(name, help, sink, static_cast<double>(v.load(std::memory_order_relaxed)));
  };
  c("tianhe_sink_rows_inserted_total", "Rows the sink inserted (committed).", stats_.rows_inserted);
  c("tianhe_sink_duplicate_reports_total",
    "Reports the destination already held (a replay or a device's retransmission), left as "
    "they were.",
    stats_.duplicates);
  c("tianhe_sink_statements_total", "INSERT statements the sink ran.", stats_.statements);
  c("tianhe_sink_transactions_total", "Transactions the sink committed.", stats_.transactions);
  c("tianhe_sink_conflicts_total",
    "Lock wait timeouts, deadlocks and write conflicts the sink ran its batch again after.",
    stats_.conflicts);
  c("tianhe_sink_refused_attempts_total",
    "Batch attempts the destination refused a value of (before the rows are isolated).",
    stats_.refused_attempts);
  c("tianhe_sink_isolations_total",
    "Batches written by isolating the rows the destination refuses.", stats_.isolations);
  c("tianhe_sink_poison_reports_total",
    "Reports the destination refused for good (to the dead-letter file).", stats_.poison_rows);
  c("tianhe_sink_unroutable_reports_total",
    "Reports with no table (unknown device, no default model; to the dead-letter file).",
    stats_.unroutable);
  c("tianhe_sink_columns_added_total", "Columns the sink added to existing tables.",
    stats_.columns_added);
  c("tianhe_sink_tables_checked_total", "Tables the sink created or checked on connecting.",
    stats_.tables_checked);
}

}  // namespace tianhe::sinks::mysql
