#include "sinks/store/sqlite_db.h"

#include <utility>

namespace tianhe::sinks::store {

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(s_);
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

Stmt::~Stmt() {
  sqlite3_finalize(s_);
}

void Stmt::reset() noexcept {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

void Stmt::bind_blob(int i, std::span<const uint8_t> b) noexcept {
  // A zero-length blob must still be a blob (not NULL): the column is NOT NULL.
  static constexpr uint8_t kEmpty = 0;
  sqlite3_bind_blob(s_, i, b.empty() ? &kEmpty : b.data(), static_cast<int>(b.size()),
                    SQLITE_STATIC);
}

std::span<const uint8_t> Stmt::blob(int i) const noexcept {
  const void* p = sqlite3_column_blob(s_, i);
  int n = sqlite3_column_bytes(s_, i);
  if (p == nullptr || n <= 0) return {};
  return {static_cast<const uint8_t*>(p), static_cast<size_t>(n)};
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    sqlite3_close_v2(db_);
    db_ = std::exchange(o.db_, nullptr);
    path_ = std::move(o.path_);
  }
  return *this;
}

Db::~Db() {
  sqlite3_close_v2(db_);
}

Result<Db> Db::open(const std::string& path, bool create, const char* vfs) {
  Db db;
  db.path_ = path;
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &db.db_, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = db.db_ ? sqlite3_errmsg(db.db_) : sqlite3_errstr(rc);
    return make_error(path + ": cannot open: " + msg);
  }
  sqlite3_busy_timeout(db.db_, 10000);
  sqlite3_extended_result_codes(db.db_, 1);
  return db;
}

Result<void> Db::exec(std::string_view sql) {
  std::string s(sql);
  char* err = nullptr;
  if (sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return make_error(path_ + ": " + msg + " (in: " + s.substr(0, 80) + ")");
  }
  return {};
}

Result<Stmt> Db::prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr) != SQLITE_OK) {
    return error("prepare '" + std::string(sql.substr(0, 80)) + "'");
  }
  return Stmt(s);
}

Result<int64_t> Db::query_i64(std::string_view sql, int64_t fallback) {
  auto st = prepare(sql);
  if (!st) return st.error();
  int rc = st->step();
  if (rc == SQLITE_ROW) return st->is_null(0) ? fallback : st->i64(0);
  if (rc == SQLITE_DONE) return fallback;
  return error("query");
}

Error Db::error(std::string_view what) const {
  return make_error(path_ + ": " + std::string(what) + ": " +
                    (db_ ? sqlite3_errmsg(db_) : "not open"));
}

}  // namespace tianhe::sinks::store
