// Thin RAII wrappers around the SQLite C API used by the store (writer and reader). Errors come
// back as tianhe::Result naming the database file and SQLite's message.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/result.h"

namespace tianhe::sinks::store {

/// A prepared statement; finalised on destruction. Owned by the thread that prepared it.
class Stmt {
 public:
  /// An empty statement (prepare() fills it).
  Stmt() = default;
  /// Takes ownership of a prepared handle.
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  Stmt(Stmt&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  /// Move assignment (finalises the current statement).
  Stmt& operator=(Stmt&& o) noexcept;
  /// Not copyable.
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  /// The raw handle.
  sqlite3_stmt* get() const noexcept { return s_; }
  /// Resets and clears bindings so the statement can run again.
  void reset() noexcept;
  /// Binds a signed integer to 1-based parameter `i`.
  void bind(int i, int64_t v) noexcept { sqlite3_bind_int64(s_, i, v); }
  /// Binds a device id (stored as the bit pattern of an int64).
  void bind_u64(int i, uint64_t v) noexcept { sqlite3_bind_int64(s_, i, static_cast<int64_t>(v)); }
  /// Binds a blob without copying; `b` must outlive the step.
  void bind_blob(int i, std::span<const uint8_t> b) noexcept;
  /// Steps once: SQLITE_ROW, SQLITE_DONE or an error code.
  int step() noexcept { return sqlite3_step(s_); }
  /// Column `i` of the current row as int64.
  int64_t i64(int i) const noexcept { return sqlite3_column_int64(s_, i); }
  /// Column `i` of the current row as a device id.
  uint64_t u64(int i) const noexcept { return static_cast<uint64_t>(sqlite3_column_int64(s_, i)); }
  /// Column `i` as a blob view (valid until the next step or reset).
  std::span<const uint8_t> blob(int i) const noexcept;
  /// True when column `i` is NULL.
  bool is_null(int i) const noexcept { return sqlite3_column_type(s_, i) == SQLITE_NULL; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

/// One SQLite connection; closed on destruction. Used by one thread at a time.
class Db {
 public:
  /// Not connected.
  Db() = default;
  Db(Db&& o) noexcept : db_(o.db_), path_(std::move(o.path_)) { o.db_ = nullptr; }
  /// Move assignment (closes the current connection).
  Db& operator=(Db&& o) noexcept;
  /// Not copyable.
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  /// Opens `path`; `create` allows creating the file. Sets a busy timeout so that the gateway
  /// and a reader process can share the file. `vfs`: a registered VFS name (nullptr: the
  /// default), e.g. paced_vfs_name() for the writer's files.
  static Result<Db> open(const std::string& path, bool create, const char* vfs = nullptr);
  /// Runs one or more statements without results.
  Result<void> exec(std::string_view sql);
  /// Prepares one statement.
  Result<Stmt> prepare(std::string_view sql);
  /// Runs a single-value query (e.g. SELECT count(*)), returning the first column of the first
  /// row, or `fallback` when there is no row or it is NULL.
  Result<int64_t> query_i64(std::string_view sql, int64_t fallback);
  /// An error naming the file and SQLite's current message, prefixed by `what`.
  Error error(std::string_view what) const;
  /// The raw handle.
  sqlite3* get() const noexcept { return db_; }
  /// The file this connection opened.
  const std::string& path() const noexcept { return path_; }
  /// True when connected.
  bool is_open() const noexcept { return db_ != nullptr; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace tianhe::sinks::store
