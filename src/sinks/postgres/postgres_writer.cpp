#include "sinks/postgres/postgres_writer.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>

#include "core/clock.h"
#include "sinks/common/dead_letter.h"

namespace tianhe::sinks::postgres {
namespace {

// Serialises DDL (CREATE TABLE, ALTER TABLE) of every gateway on one database: two writers
// creating the same table at once would otherwise collide in the catalog (23505).
constexpr std::string_view kDdlLock = "SELECT pg_advisory_xact_lock(1952538990)";

// What a failed call means for the consumer.
WriteStatus status_of(ErrorClass c) noexcept {
  switch (c) {
    case ErrorClass::kFull: return WriteStatus::kBlocked;
    case ErrorClass::kConnection:
    case ErrorClass::kConflict:
    case ErrorClass::kRefused:
    case ErrorClass::kOther: return WriteStatus::kRetry;
  }
  return WriteStatus::kRetry;
}

std::string describe(const PgError& e) {
  if (e.sqlstate.empty()) return e.message;
  return e.message + " (SQLSTATE " + e.sqlstate + ")";
}

}  // namespace

uint32_t AttemptCounter::fail(const ReportPosition& first, size_t size) noexcept {
  const bool same = attempts_ > 0 && size == size_ && first.shard == first_.shard &&
                    first.offset == first_.offset && first.index == first_.index;
  if (!same) {
    first_ = first;
    size_ = size;
    attempts_ = 0;
  }
  return ++attempts_;
}

PostgresWriter::PostgresWriter(PostgresConfig config, ConnectSpec spec, std::string instance,
                               std::shared_ptr<const pipeline::Registry> registry,
                               std::string cursor_name)
    : config_(std::move(config)),
      spec_(std::move(spec)),
      instance_(std::move(instance)),
      cursor_name_(cursor_name.empty() ? instance_ : std::move(cursor_name)),
      registry_(std::move(registry)),
      per_tenant_(config_.table.find("{tenant}") != std::string::npos) {}

PostgresWriter::~PostgresWriter() {
  close();
}

void PostgresWriter::close() noexcept {
  conn_.close();
  for (auto& [name, t] : targets_) t->ready = false;
}

void PostgresWriter::rollback() noexcept {
  if (!conn_.is_open()) return;
  PgError ignored;
  if (!conn_.exec("ROLLBACK", nullptr, ignored) && ignored.cls == ErrorClass::kConnection) {
    close();
  }
}

Result<std::vector<uint64_t>> PostgresWriter::open(uint32_t shards) {
  close();
  if (auto r = conn_.connect(spec_, config_.sink.timeout); !r) return r.error();
  PgError err;
  const std::string ddl = "BEGIN; " + std::string(kDdlLock) + "; " +
                          create_cursor_table_sql(config_.schema) + "; COMMIT";
  if (!conn_.exec(ddl, nullptr, err)) {
    rollback();
    return make_error("cannot create " + config_.schema + ".tianhe_cursors on " + spec_.where +
                      ": " + describe(err) +
                      "; check that the schema exists and the user may create tables in it");
  }
  // Every model's table now (a {tenant} template: on its first report).
  if (registry_ && config_.table.find("{tenant}") == std::string::npos) {
    for (size_t m = 0; m < registry_->model_count(); ++m) {
      RecordFields f;
      f.model_index = static_cast<int>(m);
      f.model = registry_->model(static_cast<uint32_t>(m)).name();
      std::string why;
      Target* t = route(f, why);
      if (t != nullptr && !ensure(*t, err)) {
        return make_error("cannot create or migrate table " + t->layout.qualified() + " on " +
                          spec_.where + ": " + describe(err));
      }
    }
  }
  PgResult rows;
  const std::string params[] = {cursor_name_};
  if (!conn_.query(select_cursors_sql(config_.schema), params, rows, err)) {
    return make_error("cannot read the cursors from " + config_.schema +
                      ".tianhe_cursors: " + describe(err));
  }
  std::vector<uint64_t> cursors(shards, 0);
  for (int i = 0; i < rows.rows(); ++i) {
    const uint64_t shard = std::strtoull(std::string(rows.value(i, 0)).c_str(), nullptr, 10);
    const uint64_t offset = std::strtoull(std::string(rows.value(i, 1)).c_str(), nullptr, 10);
    if (shard < shards) cursors[shard] = offset;
  }
  return cursors;
}

PostgresWriter::Target* PostgresWriter::route(const RecordFields& f, std::string& why) {
  int model = f.model_index;
  if (model < 0) {
    if (!registry_ || registry_->model_count() == 0 ||
        registry_->unknown_devices() != pipeline::UnknownDevicePolicy::kAutoRegister) {
      why = "device " + std::to_string(f.device_id) +
            " is not in the registry, which has no default model for unknown devices";
      return nullptr;
    }
    model = static_cast<int>(registry_->default_model());
  }
  // The same (model, tenant) finds its target without building the name again. The tenant
  // views point into the registry, which outlives this writer.
  const std::string_view tenant = per_tenant_ ? f.tenant : std::string_view();
  if (auto hit = routes_.find({model, tenant}); hit != routes_.end()) return hit->second;
  const pipeline::Model& m = registry_->model(static_cast<uint32_t>(model));
  const std::string name = table_name(config_.table, f.tenant, m.name());
  auto it = targets_.find(name);
  if (it == targets_.end()) {
    auto t = std::make_unique<Target>();
    t->layout = table_layout(m, config_.schema, name);
    t->model = static_cast<uint32_t>(model);
    t->staging = "tianhe_stage_" + std::to_string(next_staging_++);
    std::string cols;
    for (const std::string& c : column_names(t->layout)) {
      if (!cols.empty()) cols += ", ";
      cols += quote_ident(c);
    }
    t->direct_sql = "COPY " + t->layout.qualified() + " (" + cols + ") FROM STDIN (FORMAT binary)";
    it = targets_.emplace(name, std::move(t)).first;
  }
  routes_.emplace(std::make_pair(model, tenant), it->second.get());
  return it->second.get();
}

bool PostgresWriter::ensure(Target& t, PgError& err) {
  if (t.ready) return true;
  if (!conn_.exec("BEGIN; " + std::string(kDdlLock), nullptr, err)) {
    rollback();
    return false;
  }
  PgResult cols;
  const std::string params[] = {t.layout.qualified()};
  if (!conn_.query("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND "
                   "attnum > 0 AND NOT attisdropped",
                   params, cols, err)) {
    rollback();
    return false;
  }
  std::vector<std::string> ddl;
  if (cols.rows() == 0) {
    ddl.push_back(create_table_sql(t.layout));
  } else {
    // An adopted table must hold each reading once: ON CONFLICT DO NOTHING needs a unique key
    // to conflict on, or a replay would add the rows again.
    PgResult keys;
    if (!conn_.query("SELECT count(*) FROM pg_index WHERE indrelid = to_regclass($1) AND "
                     "indisunique",
                     params, keys, err)) {
      rollback();
      return false;
    }
    if (keys.rows() != 1 || keys.value(0, 0) == "0") {
      rollback();
      err = {
          "the table has no primary key or unique index, so a replay would add its rows "
          "again; add one: ALTER TABLE " +
              t.layout.qualified() + " ADD PRIMARY KEY (time_ns, device_id, seq)",
          "", ErrorClass::kOther};
      return false;
    }
    std::set<std::string> existing;
    for (int i = 0; i < cols.rows(); ++i) existing.emplace(cols.value(i, 0));
    ddl = add_column_sql(t.layout, existing);
  }
  ddl.push_back(create_staging_sql(t.layout, t.staging));
  for (const std::string& s : ddl) {
    if (!conn_.exec(s, nullptr, err)) {
      rollback();
      return false;
    }
  }
  if (!conn_.exec("COMMIT", nullptr, err)) {
    rollback();
    return false;
  }
  if (cols.rows() == 0) {
    stats_.tables_created.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "sink.%s: created table %s\n", instance_.c_str(),
                 t.layout.qualified().c_str());
  } else if (ddl.size() > 1) {
    stats_.columns_added.fetch_add(ddl.size() - 1, std::memory_order_relaxed);
    std::fprintf(stderr, "sink.%s: added %zu column(s) to %s\n", instance_.c_str(), ddl.size() - 1,
                 t.layout.qualified().c_str());
  }
  t.ready = true;
  return true;
}

bool PostgresWriter::isolate(Target& t, int32_t lo, int32_t hi, PgError& err) {
  if (lo >= hi) return true;
  // The range's rows alone, under a savepoint: a refusal (in the COPY, such as a text that is
  // not valid UTF-8, or in the INSERT, such as a value out of a column's range) rolls back
  // only the range, which is then split.
  t.copy.slice(t.starts, static_cast<size_t>(lo), static_cast<size_t>(hi), slice_);
  PgError e;
  uint64_t copied = 0;
  bool ok = conn_.copy_in(
      "SAVEPOINT tianhe_rows; COPY " + quote_ident(t.staging) + " FROM STDIN (FORMAT binary)",
      slice_, copied, e);
  if (ok) {
    affected_.clear();
    ok = conn_.exec(insert_sql(t.layout, t.staging, lo, hi) + "; RELEASE SAVEPOINT tianhe_rows",
                    &affected_, e);
    if (ok) {
      if (!affected_.empty()) inserted_ += affected_[0];
      return true;
    }
  }
  if (e.cls != ErrorClass::kRefused) {
    err = e;
    return false;
  }
  if (!conn_.exec("ROLLBACK TO SAVEPOINT tianhe_rows; RELEASE SAVEPOINT tianhe_rows", nullptr,
                  err)) {
    return false;
  }
  if (hi - lo == 1) {
    refused_.emplace_back(t.rows[static_cast<size_t>(lo)], describe(e));
    return true;
  }
  const int32_t mid = lo + (hi - lo) / 2;
  return isolate(t, lo, mid, err) && isolate(t, mid, hi, err);
}

bool PostgresWriter::attempt(const Batch& batch, bool durable, bool isolate_rows, uint32_t attempts,
                             PgError& err) {
  refused_.clear();
  inserted_ = 0;
  const std::string begin = durable ? "BEGIN" : "BEGIN; SET LOCAL synchronous_commit = off";
  if (isolate_rows) {
    if (!conn_.exec(begin, nullptr, err)) return false;
    for (Target* t : active_) {
      if (!isolate(*t, 0, static_cast<int32_t>(t->rows.size()), err)) return false;
    }
  } else {
    bool begun = false;
    for (Target* t : active_) {
      uint64_t copied = 0;
      const std::string sql = (begun ? std::string() : begin + "; ") + "COPY " +
                              quote_ident(t->staging) + " FROM STDIN (FORMAT binary)";
      begun = true;
      if (!conn_.copy_in(sql, t->copy.data(), copied, err)) return false;
    }
    if (!begun && !conn_.exec(begin, nullptr, err)) return false;
    if (!active_.empty()) {
      sql_.clear();
      for (Target* t : active_) {
        if (!sql_.empty()) sql_ += "; ";
        sql_ += insert_sql(t->layout, t->staging);
      }
      affected_.clear();
      if (!conn_.exec(sql_, &affected_, err)) return false;
      for (uint64_t n : affected_) inserted_ += n;
    }
  }
  if (!dead_letter(batch, attempts, err)) return false;
  return conn_.exec(upsert_cursors_sql(config_.schema, cursor_name_, batch.cursors) + "; COMMIT",
                    nullptr, err);
}

WriteStatus PostgresWriter::encode(const Batch& batch, bool with_ord, std::string& error) {
  for (Target* t : active_) {
    t->rows.clear();
    t->starts.clear();
  }
  active_.clear();
  unroutable_.clear();
  staged_ = 0;
  uint64_t unmapped = 0;
  for (size_t i = 0; i < batch.reports.size(); ++i) {
    const core::Report& r = batch.reports[i];
    const RecordFields f = record_fields(r, registry_.get());
    std::string why;
    Target* t = route(f, why);
    if (t == nullptr) {
      unroutable_.emplace_back(static_cast<uint32_t>(i), why);
      continue;
    }
    if (!t->ready) {
      PgError err;
      if (!ensure(*t, err)) {
        error = "cannot create or migrate table " + t->layout.qualified() + ": " + describe(err);
        return status_of(err.cls);
      }
    }
    if (t->rows.empty()) {
      t->copy.begin();
      active_.push_back(t);
    }
    t->starts.push_back(t->copy.size());
    const auto metrics = decoder_.decode(r);
    rows_.encode(t->copy, with_ord ? static_cast<int32_t>(t->rows.size()) : -1, f, metrics,
                 registry_->model(t->model), t->layout, unmapped);
    t->rows.push_back(static_cast<uint32_t>(i));
    ++staged_;
  }
  for (Target* t : active_) {
    t->starts.push_back(t->copy.size());
    t->copy.end();
  }
  // Counted once per batch: the staging pass after a direct one sees the same metrics.
  if (unmapped > 0 && (!with_ord || !direct_tried_)) {
    stats_.unmapped_metrics.fetch_add(unmapped, std::memory_order_relaxed);
  }
  return WriteStatus::kAccepted;
}

bool PostgresWriter::attempt_direct(const Batch& batch, bool durable, PgError& err) {
  refused_.clear();
  inserted_ = 0;
  const std::string begin = durable ? "BEGIN" : "BEGIN; SET LOCAL synchronous_commit = off";
  bool begun = false;
  for (Target* t : active_) {
    uint64_t copied = 0;
    const std::string sql = (begun ? std::string() : begin + "; ") + t->direct_sql;
    begun = true;
    if (!conn_.copy_in(sql, t->copy.data(), copied, err)) {
      // PostgreSQL manual, Appendix A: 22P03 invalid_binary_representation, 42804
      // datatype_mismatch: the table's columns are not the canonical types (an adopted table),
      // so every batch would fail here; go the staging way (which casts) from now on.
      if (err.sqlstate == "22P03" || err.sqlstate == "42804") {
        t->direct = false;
        std::fprintf(stderr,
                     "sink.%s: %s takes no binary COPY of the canonical types (%s); "
                     "writing through the staging table\n",
                     instance_.c_str(), t->layout.qualified().c_str(), err.message.c_str());
      }
      return false;
    }
    inserted_ += copied;
  }
  if (!begun && !conn_.exec(begin, nullptr, err)) return false;
  if (!dead_letter(batch, 1, err)) return false;
  return conn_.exec(upsert_cursors_sql(config_.schema, cursor_name_, batch.cursors) + "; COMMIT",
                    nullptr, err);
}

bool PostgresWriter::dead_letter(const Batch& batch, uint32_t attempts, PgError& err) {
  // Refused and unroutable rows go to the dead-letter file, on disk before the cursors that
  // pass them are committed: a crash in between replays them, never loses them.
  if ((refused_.empty() && unroutable_.empty()) || batch.dead_letter == nullptr) return true;
  for (const auto& [i, why] : refused_) {
    batch.dead_letter->add(batch.reports[i], registry_.get(), "postgres: " + why, attempts);
  }
  for (const auto& [i, why] : unroutable_) {
    batch.dead_letter->add(batch.reports[i], registry_.get(), why, 1);
  }
  if (auto s = batch.dead_letter->sync(); !s) {
    err = {"cannot write the dead-letter file: " + s.error().message, "", ErrorClass::kFull};
    return false;
  }
  return true;
}

WriteStatus PostgresWriter::write(const Batch& batch, bool durable, std::string& error) {
  if (!conn_.is_open()) {
    error = "not connected to " + spec_.where;
    return WriteStatus::kRetry;
  }
  // First straight into the tables: after a clean run a batch holds no row the tables have
  // (the cursors commit with the rows), so one COPY per table does it, with nothing staged and
  // no INSERT ... SELECT. A replay (rows already there), a refused value or a serialization
  // conflict rolls it back, and the batch goes the staging way below, which skips duplicates
  // and isolates refused rows.
  direct_tried_ = false;
  if (auto s = encode(batch, /*with_ord=*/false, error); s != WriteStatus::kAccepted) return s;
  const bool direct =
      std::all_of(active_.begin(), active_.end(), [](const Target* t) { return t->direct; });
  if (direct) {
    direct_tried_ = true;
    PgError err;
    if (attempt_direct(batch, durable, err)) {
      stats_.direct_batches.fetch_add(1, std::memory_order_relaxed);
      attempts_.reset();
      if (!unroutable_.empty()) {
        stats_.unroutable.fetch_add(unroutable_.size(), std::memory_order_relaxed);
      }
      return WriteStatus::kAccepted;
    }
    rollback();
    if (err.cls != ErrorClass::kRefused && err.cls != ErrorClass::kConflict) {
      error = describe(err);
      return status_of(err.cls);
    }
    stats_.direct_fallbacks.fetch_add(1, std::memory_order_relaxed);
  }
  // Staging rows carry their order (ord), so refused ones can be isolated by range.
  if (auto s = encode(batch, /*with_ord=*/true, error); s != WriteStatus::kAccepted) return s;

  const uint32_t max_attempts = std::max<uint32_t>(1, config_.sink.max_attempts);
  for (uint32_t conflicts = 0;;) {
    PgError err;
    if (attempt(batch, durable, false, 1, err)) break;
    rollback();
    if (err.cls == ErrorClass::kConflict && ++conflicts < max_attempts) {
      stats_.conflict_retries.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (err.cls != ErrorClass::kRefused) {
      error = describe(err);
      return status_of(err.cls);
    }
    const uint32_t n = batch.reports.empty()
                           ? max_attempts
                           : attempts_.fail(batch.positions[0], batch.reports.size());
    if (n < max_attempts) {
      // Offered again after a back-off: the refusal may pass (a column widened meanwhile).
      error = "attempt " + std::to_string(n) + " of " + std::to_string(max_attempts) + ": " +
              describe(err) + "; then the refused rows are dead-lettered";
      return WriteStatus::kBlocked;
    }
    stats_.isolations.fetch_add(1, std::memory_order_relaxed);
    PgError e2;
    if (!attempt(batch, durable, true, n, e2)) {
      rollback();
      error = "isolating refused rows: " + describe(e2);
      return status_of(e2.cls);
    }
    stats_.refused.fetch_add(refused_.size(), std::memory_order_relaxed);
    std::fprintf(stderr, "sink.%s: %zu report(s) refused by the server, dead-lettered: %s\n",
                 instance_.c_str(), refused_.size(),
                 refused_.empty() ? "" : refused_.front().second.c_str());
    break;
  }
  attempts_.reset();
  if (!unroutable_.empty()) {
    stats_.unroutable.fetch_add(unroutable_.size(), std::memory_order_relaxed);
  }
  const uint64_t kept = staged_ - refused_.size();
  if (kept > inserted_) {
    stats_.duplicates.fetch_add(kept - inserted_, std::memory_order_relaxed);
  }
  return WriteStatus::kAccepted;
}

void PostgresWriter::collect(core::PromWriter& w, const core::Labels& sink) const {
  const auto c = [&](std::string_view name, std::string_view help, const std::atomic<uint64_t>& v) {
    w.counter(name, help, sink, static_cast<double>(v.load(std::memory_order_relaxed)));
  };
  c("tianhe_sink_duplicate_reports_total",
    "Reports the table already held (a replay or a device's retransmission), skipped by its "
    "primary key.",
    stats_.duplicates);
  c("tianhe_sink_refused_reports_total",
    "Reports the server refused for good (a value a column cannot hold), dead-lettered.",
    stats_.refused);
  c("tianhe_sink_isolated_batches_total",
    "Batches whose refused rows were isolated under savepoints after max_attempts.",
    stats_.isolations);
  c("tianhe_sink_conflict_retries_total",
    "Transactions run again after a serialization failure or deadlock.", stats_.conflict_retries);
  c("tianhe_sink_direct_batches_total",
    "Batches written by COPY straight into their tables (no staging table).",
    stats_.direct_batches);
  c("tianhe_sink_direct_fallbacks_total",
    "Batches a table refused by direct COPY (rows it already held after a replay, a value it "
    "cannot hold), then written through the staging table.",
    stats_.direct_fallbacks);
  c("tianhe_sink_tables_created_total", "Tables the sink created.", stats_.tables_created);
  c("tianhe_sink_columns_added_total", "Columns the sink added to existing tables.",
    stats_.columns_added);
  c("tianhe_sink_unmapped_metrics_total",
    "Metrics with no column of their type and no extra column, not stored.",
    stats_.unmapped_metrics);
  c("tianhe_sink_unroutable_reports_total",
    "Reports of devices with no model (no default model), dead-lettered.", stats_.unroutable);
}

// ---- ceiling ----

Result<double> ceiling(const PostgresConfig& config, const ConnectSpec& spec,
                       const pipeline::Registry& registry, uint64_t reports) {
  if (registry.model_count() == 0) return make_error("the registry has no model");
  // The registry's first devices (ids from 1), of the first one's model.
  std::vector<uint64_t> devices;
  uint32_t model = registry.default_model();
  for (uint64_t id = 1; id <= 1'000'000 && devices.size() < 100'000; ++id) {
    const pipeline::DeviceEntry* d = registry.find(id);
    if (d == nullptr) {
      if (!devices.empty()) break;
      continue;
    }
    if (devices.empty()) model = d->model;
    if (d->model != model) break;
    devices.push_back(id);
  }
  if (devices.empty()) devices.push_back(1);
  const pipeline::Model& m = registry.model(model);
  const std::string scratch = "tianhe_ceiling_" + std::to_string(core::wall_ns() % 1'000'000'007);
  TableLayout t = table_layout(m, config.schema, scratch);
  PgConnection conn;
  if (auto r = conn.connect(spec, config.sink.timeout); !r) return r.error();
  PgError err;
  if (!conn.exec(create_table_sql(t), nullptr, err)) {
    return make_error("cannot create " + t.qualified() + ": " + describe(err));
  }
  // The same rows the sink writes, without ord: straight into the table.
  CopyEncoder copy;
  const uint64_t batch = std::max<uint32_t>(1, config.sink.batch_reports);
  const std::vector<std::string> names = column_names(t);
  std::string cols;
  for (const std::string& n : names) cols += (cols.empty() ? "" : ", ") + quote_ident(n);
  const std::string sql = "COPY " + t.qualified() + " (" + cols + ") FROM STDIN (FORMAT binary)";
  const int64_t base_ns = core::wall_ns();
  uint64_t done = 0;
  const int64_t t0 = core::mono_ns();
  bool ok = true;
  while (done < reports && ok) {
    copy.begin();
    const uint64_t n = std::min(batch, reports - done);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t k = done + i;
      const int64_t time_ns = base_ns + static_cast<int64_t>(k);
      copy.row(static_cast<uint16_t>(names.size()));
      copy.text(registry.tenant_name(registry.default_tenant()));
      copy.int8(static_cast<int64_t>(devices[k % devices.size()]));
      copy.int8(static_cast<int64_t>(k / devices.size()));
      copy.int8(time_ns);
      copy.int8(pg_timestamp_us(time_ns));
      copy.int8(time_ns);
      copy.text("report");
      copy.null();
      for (const MetricColumn& c : t.metrics) {
        switch (c.type) {
          case core::ValueType::kDouble:
            copy.float8(20.0 + static_cast<double>(k % 100) / 10);
            break;
          case core::ValueType::kInt64: copy.int8(static_cast<int64_t>(3000 + k % 1000)); break;
          case core::ValueType::kBool: copy.boolean(k % 2 == 0); break;
          case core::ValueType::kString: copy.text("x"); break;
        }
      }
      if (t.extra) copy.null();
    }
    copy.end();
    uint64_t copied = 0;
    ok = conn.copy_in(sql, copy.data(), copied, err);
    done += n;
  }
  const double seconds = static_cast<double>(core::mono_ns() - t0) / 1e9;
  PgError drop_err;
  (void)conn.exec("DROP TABLE IF EXISTS " + t.qualified(), nullptr, drop_err);
  if (!ok) return make_error("COPY into " + t.qualified() + ": " + describe(err));
  return seconds > 0 ? static_cast<double>(reports) / seconds : 0.0;
}

}  // namespace tianhe::sinks::postgres
