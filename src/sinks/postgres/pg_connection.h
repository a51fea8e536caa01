// One libpq connection driven in non-blocking mode, so that every call keeps a deadline: a server
// that stops answering (stalled, SIGSTOPped, behind a dead link) costs at most `timeout` per
// call, never a hung sink thread. Owned by one writer's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "sinks/postgres/postgres_config.h"
#include "sinks/postgres/postgres_sql.h"

struct pg_conn;
struct pg_result;

namespace tianhe::sinks::postgres {

/// What went wrong with a call.
struct PgError {
  std::string message;   ///< the server's words (or libpq's), one line
  std::string sqlstate;  ///< "" when the server sent none
  ErrorClass cls = ErrorClass::kConnection;
};

/// A result owned (PQclear on destruction).
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(pg_result* r) : r_(r) {}
  ~PgResult();
  PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  pg_result* get() const noexcept { return r_; }
  int rows() const noexcept;
  /// The text of row `row`, column `col`.
  std::string_view value(int row, int col) const noexcept;

 private:
  pg_result* r_ = nullptr;
};

/// A connection to one server.
class PgConnection {
 public:
  PgConnection() = default;
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  /// Connects (closing any previous connection) within `timeout`.
  Result<void> connect(const ConnectSpec& spec, std::chrono::milliseconds timeout);
  void close() noexcept;
  bool is_open() const noexcept { return conn_ != nullptr; }

  /// Runs `sql` (one or more statements, simple protocol); `affected` gets each statement's
  /// row count (when not null). False and `err` on the first failure.
  bool exec(std::string_view sql, std::vector<uint64_t>* affected, PgError& err);
  /// Runs one statement with text parameters; `out` gets its rows.
  bool query(const std::string& sql, std::span<const std::string> params, PgResult& out,
             PgError& err);
  /// Runs `sql`, whose last statement is a COPY ... FROM STDIN, then sends `data` and ends the
  /// copy; `copied` gets the rows copied.
  bool copy_in(std::string_view sql, std::string_view data, uint64_t& copied, PgError& err);

 private:
  using Deadline = std::chrono::steady_clock::time_point;
  Deadline deadline() const { return std::chrono::steady_clock::now() + timeout_; }
  /// Waits until the socket is readable (or writable too, when `write`); false on timeout.
  bool wait(bool write, Deadline until, PgError& err);
  /// Sends what libpq holds; false on failure or timeout.
  bool flush(Deadline until, PgError& err);
  /// The next result (null at the end of a command); false on failure or timeout.
  bool next_result(Deadline until, PgResult& out, bool& end, PgError& err);
  /// Reads results to the end of the command: affected rows of each; the first error.
  bool drain(Deadline until, std::vector<uint64_t>* affected, PgResult* rows, PgError& err);
  /// A connection-level failure: fills `err` from libpq's message.
  bool fail_connection(PgError& err, std::string_view what);

  pg_conn* conn_ = nullptr;
  std::chrono::milliseconds timeout_{10000};
  std::string where_;
};

}  // namespace tianhe::sinks::postgres
