#include "sinks/postgres/pg_connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace tianhe::sinks::postgres {
namespace {

// libpq's messages end in a newline and may hold several lines: keep one line.
std::string one_line(const char* text) {
  std::string s = text != nullptr ? text : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\t', ' ');
  return s;
}

void ignore_notice(void*, const char*) {}

constexpr size_t kCopyChunkBytes = 256 << 10;

}  // namespace

PgResult::~PgResult() {
  if (r_ != nullptr) PQclear(r_);
}

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (r_ != nullptr) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}

int PgResult::rows() const noexcept {
  return r_ != nullptr ? PQntuples(r_) : 0;
}

std::string_view PgResult::value(int row, int col) const noexcept {
  if (r_ == nullptr) return {};
  return {PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col))};
}

PgConnection::~PgConnection() {
  close();
}

void PgConnection::close() noexcept {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
}

Result<void> PgConnection::connect(const ConnectSpec& spec, std::chrono::milliseconds timeout) {
  close();
  timeout_ = timeout;
  where_ = spec.where;
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : spec.params) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn_ = PQconnectStartParams(keys.data(), values.data(), 0);
  const std::string check =
      "; check that the server runs and accepts TCP connections there, and the user, password "
      "(password_env / password_file) and database";
  if (conn_ == nullptr) return make_error("cannot connect to " + where_ + ": out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) {
    std::string m = one_line(PQerrorMessage(conn_));
    close();
    return make_error("cannot connect to " + where_ + ": " + m + check);
  }
  const Deadline until = deadline();
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  PgError err;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) {
      std::string m = "cannot connect to " + where_ + ": ";
      m += one_line(PQerrorMessage(conn_));
      m += check;
      close();
      return make_error(std::move(m));
    }
    if (!wait(st == PGRES_POLLING_WRITING, until, err)) {
      close();
      return make_error("cannot connect to " + where_ + ": " + err.message + check);
    }
    st = PQconnectPoll(conn_);
  }
  PQsetNoticeProcessor(conn_, ignore_notice, nullptr);
  if (PQsetnonblocking(conn_, 1) != 0) {
    close();
    return make_error("cannot connect to " + where_ + ": cannot make the connection non-blocking");
  }
  return {};
}

bool PgConnection::fail_connection(PgError& err, std::string_view what) {
  err.sqlstate.clear();
  err.cls = ErrorClass::kConnection;
  err.message = std::string(what) + " (" + where_ + ")";
  if (conn_ != nullptr) {
    const std::string m = one_line(PQerrorMessage(conn_));
    if (!m.empty()) err.message += ": " + m;
  }
  return false;
}

bool PgConnection::wait(bool write, Deadline until, PgError& err) {
  const int fd = conn_ != nullptr ? PQsocket(conn_) : -1;
  if (fd < 0) return fail_connection(err, "connection lost");
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      err = {"no answer from " + where_ + " within " + std::to_string(timeout_.count()) +
                 " ms (the server is stalled or the network is down; see sink timeout)",
             "", ErrorClass::kConnection};
      return false;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (write ? POLLOUT : 0)), 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return fail_connection(err, "poll failed");
  }
}

bool PgConnection::flush(Deadline until, PgError& err) {
  for (;;) {
    const int r = PQflush(conn_);
    if (r == 0) return true;
    if (r < 0) return fail_connection(err, "connection lost while sending");
    if (!wait(true, until, err)) return false;
    // Readable: take in what the server sent (it may be waiting for us to read).
    if (PQconsumeInput(conn_) == 0) return fail_connection(err, "connection lost");
  }
}

bool PgConnection::next_result(Deadline until, PgResult& out, bool& end, PgError& err) {
  while (PQisBusy(conn_) != 0) {
    if (!flush(until, err)) return false;
    if (!wait(false, until, err)) return false;
    if (PQconsumeInput(conn_) == 0) return fail_connection(err, "connection lost");
  }
  PGresult* r = PQgetResult(conn_);
  end = r == nullptr;
  out = PgResult(r);
  if (end && PQstatus(conn_) == CONNECTION_BAD) return fail_connection(err, "connection lost");
  return true;
}

namespace {

void set_error(const PGresult* r, PgError& err) {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  err.sqlstate = state != nullptr ? state : "";
  err.message = one_line(PQresultErrorMessage(r));
  if (err.message.starts_with("ERROR:  ")) err.message.erase(0, 8);
  err.cls = classify_sqlstate(err.sqlstate);
}

}  // namespace

bool PgConnection::drain(Deadline until, std::vector<uint64_t>* affected, PgResult* rows,
                         PgError& err) {
  bool failed = false;
  for (;;) {
    PgResult r;
    bool end = false;
    if (!next_result(until, r, end, err)) return false;
    if (end) break;
    PGresult* raw = r.get();
    const ExecStatusType st = PQresultStatus(raw);
    if (st == PGRES_FATAL_ERROR) {
      if (!failed) set_error(raw, err);
      failed = true;
    } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      err = {"unexpected COPY state", "", ErrorClass::kConnection};
      return false;
    } else if (affected != nullptr) {
      const char* n = PQcmdTuples(raw);
      affected->push_back(n != nullptr && *n != '\0' ? std::strtoull(n, nullptr, 10) : 0);
    }
    if (rows != nullptr && st == PGRES_TUPLES_OK) *rows = std::move(r);
  }
  if (failed && PQstatus(conn_) == CONNECTION_BAD) err.cls = ErrorClass::kConnection;
  return !failed;
}

bool PgConnection::exec(std::string_view sql, std::vector<uint64_t>* affected, PgError& err) {
  if (conn_ == nullptr) return fail_connection(err, "not connected");
  const Deadline until = deadline();
  const std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) return fail_connection(err, "cannot send");
  if (!flush(until, err)) return false;
  return drain(until, affected, nullptr, err);
}

bool PgConnection::query(const std::string& sql, std::span<const std::string> params, PgResult& out,
                         PgError& err) {
  if (conn_ == nullptr) return fail_connection(err, "not connected");
  const Deadline until = deadline();
  std::vector<const char*> values;
  for (const std::string& p : params) values.push_back(p.c_str());
  if (PQsendQueryParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                        nullptr, nullptr, 0) == 0) {
    return fail_connection(err, "cannot send");
  }
  if (!flush(until, err)) return false;
  return drain(until, nullptr, &out, err);
}

bool PgConnection::copy_in(std::string_view sql, std::string_view data, uint64_t& copied,
                           PgError& err) {
  copied = 0;
  if (conn_ == nullptr) return fail_connection(err, "not connected");
  const Deadline until = deadline();
  const std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) return fail_connection(err, "cannot send");
  if (!flush(until, err)) return false;
  // Results of the statements before the COPY, then the COPY's "ready for data".
  bool failed = false;
  for (;;) {
    PgResult r;
    bool end = false;
    if (!next_result(until, r, end, err)) return false;
    if (end) {
      if (!failed) err = {"COPY did not start", "", ErrorClass::kOther};
      return false;
    }
    PGresult* raw = r.get();
    const ExecStatusType st = PQresultStatus(raw);
    if (st == PGRES_FATAL_ERROR && !failed) {
      set_error(raw, err);
      failed = true;
    }
    if (st == PGRES_COPY_IN) break;
  }
  for (size_t done = 0; done < data.size();) {
    const size_t n = std::min(kCopyChunkBytes, data.size() - done);
    const int r = PQputCopyData(conn_, data.data() + done, static_cast<int>(n));
    if (r < 0) return fail_connection(err, "connection lost during COPY");
    if (r == 0) {  // libpq's buffer is full: send it, then try again
      if (!flush(until, err)) return false;
      continue;
    }
    done += n;
  }
  for (;;) {
    const int r = PQputCopyEnd(conn_, nullptr);
    if (r < 0) return fail_connection(err, "connection lost during COPY");
    if (r == 1) break;
    if (!flush(until, err)) return false;
  }
  if (!flush(until, err)) return false;
  std::vector<uint64_t> counts;
  if (!drain(until, &counts, nullptr, err)) return false;
  if (!counts.empty()) copied = counts.back();
  return true;
}

}  // namespace tianhe::sinks::postgres
