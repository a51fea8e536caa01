#include "sinks/redis_streams/redis_streams_writer.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <charconv>
#include <cstdio>
#include <initializer_list>

#include "core/hash.h"
#include "sinks/common/dead_letter.h"

namespace tianhe::sinks::redis_streams {
namespace {

struct ReplyFree {
  void operator()(redisReply* r) const noexcept {
    if (r != nullptr) freeReplyObject(r);
  }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

std::string_view text(const redisReply* r) {
  return r->str == nullptr ? std::string_view() : std::string_view(r->str, r->len);
}

std::string context_error(const redisContext* c) {
  if (c == nullptr) return "out of memory";
  std::string e = c->errstr;
  // A read past SO_RCVTIMEO shows as EAGAIN: say what it is.
  if (e.find("Resource temporarily unavailable") != std::string::npos) {
    e = "no answer within the timeout";
  }
  return e;
}

timeval to_timeval(int64_t ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

/// One command, waited for; null with the I/O error in `error` when the connection failed.
Reply command(redisContext* c, std::initializer_list<std::string_view> args, std::string& error) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (std::string_view a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  if (r == nullptr) error = context_error(c);
  return Reply(r);
}

/// The cursor hash's field holding the id of the connection that writes (CLIENT ID).
constexpr std::string_view kClientField = "client";

bool parse_u64(std::string_view s, uint64_t& v) {
  const char* end = s.data() + s.size();
  const auto r = std::from_chars(s.data(), end, v);
  return !s.empty() && r.ec == std::errc() && r.ptr == end;
}

}  // namespace

// ---- RedisConnection ----

Result<std::unique_ptr<RedisConnection>> RedisConnection::open(const RedisSettings& s) {
  const std::string where = s.host + ":" + std::to_string(s.port);
  const timeval tv = to_timeval(s.timeout_ms);
  redisContext* c = redisConnectWithTimeout(s.host.c_str(), s.port, tv);
  if (c == nullptr || c->err != 0) {
    std::string e = context_error(c);
    if (c != nullptr) redisFree(c);
    return make_error("cannot connect to Redis at " + where + ": " + e +
                      "; check that the server runs there and that " + s.header + ".url names it");
  }
  std::unique_ptr<RedisConnection> conn(new RedisConnection(c));
  if (redisSetTimeout(c, tv) != REDIS_OK) {
    return make_error("Redis at " + where + ": cannot set the timeout: " + conn->io_error());
  }
  (void)redisEnableKeepAlive(c);
  std::string io;
  auto fail = [&](const std::string& what, const Reply& r, const std::string& check) {
    const std::string why = r ? std::string(text(r.get())) : io;
    return make_error("Redis at " + where + ": " + what + " failed: " + why + "; " + check);
  };
  if (!s.password.empty()) {
    Reply r = s.user.empty() ? command(c, {"AUTH", s.password}, io)
                             : command(c, {"AUTH", s.user, s.password}, io);
    if (!r || r->type == REDIS_REPLY_ERROR) {
      return fail("AUTH", r,
                  "check the password (" + s.header +
                      ".password_env or password_file) and "
                      "the user in " +
                      s.header + ".url");
    }
  }
  if (s.database != 0) {
    const std::string db = std::to_string(s.database);
    Reply r = command(c, {"SELECT", db}, io);
    if (!r || r->type == REDIS_REPLY_ERROR) {
      return fail("SELECT " + db, r,
                  "the database number is the path of " + s.header +
                      ".url; check the server's `databases` setting");
    }
  }
  Reply info = command(c, {"INFO", "server"}, io);
  if (info && info->type == REDIS_REPLY_ERROR && text(info.get()).starts_with("NOAUTH")) {
    return fail("INFO", info,
                "the server needs a password: give it with " + s.header + ".password_env or " +
                    s.header + ".password_file");
  }
  if (!info || info->type == REDIS_REPLY_ERROR) {
    return fail("INFO", info,
                "check that the server is Redis 5.0 or newer and has finished loading");
  }
  const std::string_view body = text(info.get());
  if (const size_t at = body.find("redis_version:"); at != std::string_view::npos) {
    int major = 0;
    const char* p = body.data() + at + 14;
    (void)std::from_chars(p, body.data() + body.size(), major);
    if (major > 0 && major < 5) {
      return make_error("Redis at " + where + " is version " +
                        std::string(body.substr(at + 14, body.find('\r', at) - at - 14)) +
                        ", which has no streams; use Redis 5.0 or newer");
    }
  }
  return conn;
}

RedisConnection::~RedisConnection() {
  redisFree(ctx_);
}

std::string RedisConnection::io_error() const {
  return context_error(ctx_);
}

// ---- RedisStreamsWriter ----

RedisStreamsWriter::RedisStreamsWriter(RedisSettings settings,
                                       std::shared_ptr<const pipeline::Registry> registry)
    : s_(std::move(settings)),
      registry_(std::move(registry)),
      entry_(s_.max_len, s_.max_len_approximate) {}

RedisStreamsWriter::~RedisStreamsWriter() {
  close();
}

void RedisStreamsWriter::close() noexcept {
  conn_.reset();
}

Result<std::vector<Seed>> RedisStreamsWriter::load_seeds() {
  std::vector<Seed> seeds;
  std::string cursor = "0", io;
  do {
    Reply r = command(conn_->get(), {"HSCAN", s_.seen_key, cursor, "COUNT", "1000"}, io);
    if (!r) return make_error("HSCAN " + s_.seen_key + ": " + io);
    if (r->type == REDIS_REPLY_ERROR) {
      return make_error("HSCAN " + s_.seen_key + ": " + std::string(text(r.get())) +
                        "; the key must be a hash the sink keeps (delete it to start over)");
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      return make_error("HSCAN " + s_.seen_key + ": an unexpected reply");
    }
    cursor = std::string(text(r->element[0]));
    const redisReply* kv = r->element[1];
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
      Seed seed;
      // A field that is not ours is ignored: at worst a retransmission of it is not caught.
      if (parse_seed(text(kv->element[i]), text(kv->element[i + 1]), seed)) seeds.push_back(seed);
    }
  } while (cursor != "0");
  return seeds;
}

Result<std::vector<uint64_t>> RedisStreamsWriter::open(uint32_t shards) {
  close();
  auto c = RedisConnection::open(s_);
  if (!c) return c.error();
  conn_ = std::move(c.value());
  std::vector<uint64_t> cursors(shards, 0);
  std::string io;
  if (auto fenced = fence_previous_connection(); !fenced) {
    close();
    return fenced.error();
  }
  Reply r = command(conn_->get(), {"HGETALL", s_.cursor_key}, io);
  if (!r || r->type == REDIS_REPLY_ERROR) {
    const std::string why = r ? std::string(text(r.get())) : io;
    close();
    return make_error("reading the cursors (HGETALL " + s_.cursor_key + ") failed: " + why);
  }
  for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
    if (text(r->element[i]) == kClientField) continue;
    uint64_t shard = 0, offset = 0;
    if (!parse_u64(text(r->element[i]), shard) || !parse_u64(text(r->element[i + 1]), offset)) {
      const std::string bad =
          std::string(text(r->element[i])) + " = " + std::string(text(r->element[i + 1]));
      close();
      return make_error(s_.cursor_key + " holds \"" + bad +
                        "\", not a shard and a log offset; repair the hash (deleting it replays "
                        "the log, and the seen hash skips what is there already)");
    }
    if (shard < shards) cursors[shard] = offset;
  }
  auto seeds = load_seeds();
  if (!seeds) {
    close();
    return seeds.error();
  }
  seen_.reset(shards, seeds.value());
  streams_.clear();
  batch_id_ = 0;
  attempts_ = 0;
  refused_.clear();
  return cursors;
}

Result<void> RedisStreamsWriter::fence_previous_connection() {
  // A connection given up on (a timeout, a crash of the gateway) may still have a transaction
  // in the server's input buffer: after a SIGSTOP/SIGCONT the server reads and runs it later,
  // possibly after this connection read the cursors, and the replay would add its entries
  // again. So the previous connection (its id is in the cursor hash, and in memory) is killed
  // first: Redis runs one command at a time, so after CLIENT KILL it can run nothing more.
  redisContext* c = conn_->get();
  std::string io;
  Reply id = command(c, {"CLIENT", "ID"}, io);
  if (!id) return make_error("CLIENT ID: " + io);
  if (id->type != REDIS_REPLY_INTEGER) {
    return make_error("CLIENT ID failed: " + std::string(text(id.get())) +
                      "; the sink needs Redis 5.0 or newer");
  }
  client_id_ = std::to_string(id->integer);
  Reply old = command(c, {"HGET", s_.cursor_key, kClientField}, io);
  if (!old) return make_error("HGET " + s_.cursor_key + ": " + io);
  std::vector<std::string> previous;
  if (old->type == REDIS_REPLY_STRING) previous.emplace_back(text(old.get()));
  if (!last_client_id_.empty()) previous.push_back(last_client_id_);
  for (const std::string& p : previous) {
    if (p == client_id_) continue;
    Reply k = command(c, {"CLIENT", "KILL", "ID", p}, io);
    if (!k) return make_error("CLIENT KILL: " + io);
    // "No such client": it is gone, and whatever it sent ran or never will. NOPERM: an ACL
    // user without CLIENT KILL; the race above stays possible (docs/sinks/redis_streams.md).
  }
  // Recorded now (and with every batch's cursors) so that the next start can fence this one;
  // an out-of-memory server refuses it, and then the first batch records it.
  Reply h = command(c, {"HSET", s_.cursor_key, kClientField, client_id_}, io);
  if (!h) return make_error("HSET " + s_.cursor_key + ": " + io);
  last_client_id_ = client_id_;
  return {};
}

void RedisStreamsWriter::prepare(const Batch& batch) {
  items_.clear();
  keys_.clear();
  key_index_.clear();
  duplicates_ = 0;
  const pipeline::Registry* reg = registry_.get();
  for (size_t i = 0; i < batch.reports.size(); ++i) {
    if (!refused_.empty() && refused_.count(i) != 0) continue;
    const core::Report& r = batch.reports[i];
    const uint32_t shard = i < batch.positions.size() ? batch.positions[i].shard : 0;
    if (seen_.check(shard, r.device_id, r.seq, r.device_time_ns) == SeqVerdict::kDuplicate) {
      ++duplicates_;
      continue;
    }
    s_.stream.expand(record_fields(r, reg), key_scratch_);
    const auto [it, inserted] =
        key_index_.try_emplace(key_scratch_, static_cast<uint32_t>(keys_.size()));
    if (inserted) keys_.push_back(key_scratch_);
    items_.push_back({i, it->second});
  }
}

RedisStreamsWriter::Outcome RedisStreamsWriter::check_key_types() {
  Outcome o;
  redisContext* c = conn_->get();
  std::vector<uint32_t> asked;
  for (uint32_t k = 0; k < keys_.size(); ++k) {
    if (streams_.count(keys_[k]) != 0) continue;
    const char* argv[] = {"TYPE", keys_[k].data()};
    const size_t lens[] = {4, keys_[k].size()};
    redisAppendCommandArgv(c, 2, argv, lens);
    asked.push_back(k);
  }
  std::vector<std::string> wrong(keys_.size());
  for (uint32_t k : asked) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK) {
      o.status = WriteStatus::kRetry;
      o.error = "Redis connection lost: " + conn_->io_error();
      return o;
    }
    Reply r(static_cast<redisReply*>(raw));
    const std::string_view t = text(r.get());
    if (r->type == REDIS_REPLY_ERROR) {
      const auto [cls, reason] = classify_error(t);
      if (o.status == WriteStatus::kAccepted) {
        o.status = cls == ErrorClass::kBlocked ? WriteStatus::kBlocked : WriteStatus::kRetry;
        o.error = "TYPE " + keys_[k] + ": " + std::string(t);
        if (cls == ErrorClass::kBlocked) count_blocked(reason);
      }
    } else if (t == "stream" || t == "none") {
      streams_.insert(keys_[k]);
    } else {
      wrong[k] = "WRONGTYPE the key " + keys_[k] + " holds a " + std::string(t) +
                 ", not a stream; rename or delete it, or change the stream template";
    }
  }
  if (o.status != WriteStatus::kAccepted) return o;
  for (const Item& it : items_) {
    if (!wrong[it.key].empty()) o.refused.emplace_back(it.report, wrong[it.key]);
  }
  return o;
}

RedisStreamsWriter::Outcome RedisStreamsWriter::transact(const Batch& batch) {
  Outcome o;
  redisContext* c = conn_->get();
  const pipeline::Registry* reg = registry_.get();
  {
    const char* argv[] = {"MULTI"};
    const size_t lens[] = {5};
    redisAppendCommandArgv(c, 1, argv, lens);
  }
  std::vector<size_t> sent;  // item index of each XADD sent
  sent.reserve(items_.size());
  for (size_t n = 0; n < items_.size(); ++n) {
    const core::Report& r = batch.reports[items_[n].report];
    const auto metrics = decoder_.decode(r);
    if (!decoder_.ok()) {
      o.refused.emplace_back(items_[n].report, "the record's metrics do not decode");
      continue;
    }
    entry_.build(keys_[items_[n].key], record_fields(r, reg), metrics);
    redisAppendCommandArgv(c, entry_.argc(), entry_.argv(), entry_.argvlen());
    sent.push_back(n);
  }
  // The cursors and the seeds, as HSET key field value ... (pointers taken once args_ is built).
  args_.clear();
  args_.emplace_back("HSET");
  args_.push_back(s_.cursor_key);
  for (const ShardCursor& sc : batch.cursors) {
    args_.push_back(std::to_string(sc.shard));
    args_.push_back(std::to_string(sc.offset));
  }
  args_.emplace_back(kClientField);
  args_.push_back(client_id_);
  const size_t cursor_args = args_.size();
  const auto seeds = seen_.batch_seeds();
  if (!seeds.empty()) {
    args_.emplace_back("HSET");
    args_.push_back(s_.seen_key);
    for (const Seed& sd : seeds) {
      args_.push_back(format_seed_field(sd.device_id, sd.shard));
      args_.push_back(format_seed(sd.seq, sd.time_ns));
    }
  }
  argv_.clear();
  argvlen_.clear();
  for (const std::string& a : args_) {
    argv_.push_back(a.data());
    argvlen_.push_back(a.size());
  }
  int hsets = 1;
  redisAppendCommandArgv(c, static_cast<int>(cursor_args), argv_.data(), argvlen_.data());
  if (!seeds.empty()) {
    redisAppendCommandArgv(c, static_cast<int>(args_.size() - cursor_args),
                           argv_.data() + cursor_args, argvlen_.data() + cursor_args);
    ++hsets;
  }
  // A record refused here (before the server saw it) must not let the cursors pass it.
  const bool discard = !o.refused.empty();
  {
    const char* argv[] = {discard ? "DISCARD" : "EXEC"};
    const size_t lens[] = {discard ? size_t{7} : size_t{4}};
    redisAppendCommandArgv(c, 1, argv, lens);
  }

  std::string retry, blocked;
  std::string_view blocked_reason;
  auto note = [&](std::string_view what, std::string_view msg) {
    const auto [cls, reason] = classify_error(msg);
    if (cls == ErrorClass::kBlocked) {
      if (blocked.empty()) {
        blocked = std::string(what) + ": " + std::string(msg);
        blocked_reason = reason;
      }
    } else if (retry.empty()) {
      retry = std::string(what) + ": " + std::string(msg);
    }
  };
  const size_t total = 1 + sent.size() + static_cast<size_t>(hsets) + 1;
  std::vector<std::pair<size_t, std::string>> after_commit;  // XADDs that failed inside EXEC
  for (size_t k = 0; k < total; ++k) {
    void* raw = nullptr;
    if (redisGetReply(c, &raw) != REDIS_OK) {
      o.status = WriteStatus::kRetry;
      o.error =
          "Redis connection lost (the batch's state is unknown; it is replayed from the "
          "committed cursors): " +
          conn_->io_error();
      o.refused.clear();
      return o;
    }
    Reply r(static_cast<redisReply*>(raw));
    const std::string_view msg = text(r.get());
    const bool err = r->type == REDIS_REPLY_ERROR;
    if (k == 0) {
      if (err) note("MULTI", msg);
    } else if (k <= sent.size()) {
      if (!err) continue;
      const size_t report = items_[sent[k - 1]].report;
      if (classify_error(msg).first == ErrorClass::kRefused) {
        o.refused.emplace_back(report, std::string(msg));
      } else {
        note("XADD", msg);
      }
    } else if (k < total - 1) {
      if (err) note("HSET", msg);
    } else if (!discard) {  // EXEC
      if (err) {
        // EXECABORT: the queued replies above said why; otherwise this reply does.
        if (!msg.starts_with("EXECABORT") ||
            (o.refused.empty() && blocked.empty() && retry.empty())) {
          note("EXEC", msg);
        }
      } else if (r->type != REDIS_REPLY_ARRAY) {
        if (retry.empty()) retry = "EXEC: the transaction was aborted";
      } else {
        for (size_t e = 0; e < r->elements; ++e) {
          if (r->element[e]->type != REDIS_REPLY_ERROR) continue;
          const std::string m(text(r->element[e]));
          if (e < sent.size()) {
            after_commit.emplace_back(items_[sent[e]].report, m);
          } else if (retry.empty()) {
            retry = "HSET inside EXEC: " + m;
          }
        }
      }
    }
  }
  if (!after_commit.empty()) {
    // The server ran the transaction but refused these entries (a key changed type since it
    // was checked): the cursors already passed them, so they go to the dead-letter file now.
    for (const auto& [report, m] : after_commit) {
      stats_.refused_records.fetch_add(1, std::memory_order_relaxed);
      if (batch.dead_letter != nullptr) {
        batch.dead_letter->add(batch.reports[report], reg, m, 1);
      }
    }
    if (batch.dead_letter != nullptr) (void)batch.dead_letter->sync();
    std::fprintf(stderr, "sink.%s: %zu entries refused inside EXEC (dead-lettered): %s\n",
                 s_.instance.c_str(), after_commit.size(), after_commit.front().second.c_str());
  }
  if (!retry.empty()) {
    o.status = WriteStatus::kRetry;
    o.error = "Redis: " + retry;
    o.refused.clear();
  } else if (!blocked.empty()) {
    o.status = WriteStatus::kBlocked;
    o.error = "Redis refuses writes for now (" + blocked + "); " +
              std::string(blocked_hint(blocked_reason));
    count_blocked(blocked_reason);
    o.refused.clear();
  } else if (o.refused.empty()) {
    stats_.entries_added.fetch_add(sent.size() - after_commit.size(), std::memory_order_relaxed);
  }
  return o;
}

void RedisStreamsWriter::count_blocked(std::string_view reason) {
  (reason == "oom" ? stats_.blocked_oom : stats_.blocked_other)
      .fetch_add(1, std::memory_order_relaxed);
}

Result<void> RedisStreamsWriter::isolate(const Batch& batch, const Outcome& o) {
  for (const auto& [report, why] : o.refused) {
    if (!refused_.emplace(report, why).second) continue;
    stats_.refused_records.fetch_add(1, std::memory_order_relaxed);
    if (batch.dead_letter != nullptr) {
      batch.dead_letter->add(batch.reports[report], registry_.get(), why, attempts_);
    }
  }
  // On disk before the cursors that pass them are committed.
  if (batch.dead_letter != nullptr) {
    if (auto r = batch.dead_letter->sync(); !r) {
      return make_error("the dead-letter file: " + r.error().message);
    }
  }
  return {};
}

WriteStatus RedisStreamsWriter::write(const Batch& batch, bool durable, std::string& error) {
  (void)durable;  // Redis persists per its appendfsync; an acknowledged EXEC is as durable as it.
  if (!conn_) {
    error = "not connected to Redis";
    return WriteStatus::kRetry;
  }
  // The consumer offers a blocked batch again as it was: recognise it to count its attempts.
  uint64_t id = core::mix64(batch.reports.size() + 1);
  if (!batch.positions.empty()) {
    const ReportPosition& a = batch.positions.front();
    const ReportPosition& b = batch.positions.back();
    id = core::mix64(id ^ core::mix64(a.offset * 31 + a.shard * 7 + a.index));
    id = core::mix64(id ^ core::mix64(b.offset * 31 + b.shard * 7 + b.index));
  }
  for (const ShardCursor& sc : batch.cursors) id = core::mix64(id ^ (sc.offset + sc.shard));
  if (id != batch_id_) {
    batch_id_ = id;
    attempts_ = 0;
    refused_.clear();
  }
  for (size_t pass = 0; pass <= batch.reports.size(); ++pass) {
    seen_.begin();
    prepare(batch);
    Outcome o = check_key_types();
    if (o.status == WriteStatus::kAccepted && o.refused.empty()) o = transact(batch);
    if (o.status == WriteStatus::kAccepted && o.refused.empty()) {
      seen_.commit();
      stats_.duplicates_skipped.fetch_add(duplicates_, std::memory_order_relaxed);
      return WriteStatus::kAccepted;
    }
    seen_.rollback();
    if (o.status != WriteStatus::kAccepted) {
      error = o.error;
      return o.status;
    }
    stats_.refused_attempts.fetch_add(1, std::memory_order_relaxed);
    if (refused_.empty() && ++attempts_ < s_.max_attempts) {
      error = std::to_string(o.refused.size()) + " record(s) refused by Redis (attempt " +
              std::to_string(attempts_) + " of " + std::to_string(s_.max_attempts) +
              " before the dead-letter file): " + o.refused.front().second;
      return WriteStatus::kBlocked;
    }
    if (attempts_ == 0) attempts_ = 1;
    if (auto r = isolate(batch, o); !r) {
      error = r.error().message;
      return WriteStatus::kBlocked;
    }
    // Again without the refused records.
  }
  error = "records keep being refused";
  return WriteStatus::kBlocked;
}

void RedisStreamsWriter::collect(core::PromWriter& w, const core::Labels& sink) const {
  auto v = [](const std::atomic<uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  w.counter("tianhe_sink_redis_entries_total", "Stream entries added (XADD committed).", sink,
            v(stats_.entries_added));
  w.counter("tianhe_sink_duplicates_skipped_total",
            "Reports skipped because the streams hold them already (same device, seq, time).", sink,
            v(stats_.duplicates_skipped));
  core::Labels oom = sink, other = sink;
  oom.emplace_back("reason", "oom");
  other.emplace_back("reason", "other");
  const char* blocked_help =
      "Writes Redis refused for now (OOM; other: READONLY, MISCONF, LOADING, BUSY).";
  w.counter("tianhe_sink_redis_blocked_total", blocked_help, oom, v(stats_.blocked_oom));
  w.counter("tianhe_sink_redis_blocked_total", blocked_help, other, v(stats_.blocked_other));
  w.counter("tianhe_sink_refused_attempts_total",
            "Writes refused because of particular records (retried, then isolated).", sink,
            v(stats_.refused_attempts));
  w.counter("tianhe_sink_refused_records_total",
            "Records Redis refused for good (sent to the dead-letter file).", sink,
            v(stats_.refused_records));
}

}  // namespace tianhe::sinks::redis_streams
