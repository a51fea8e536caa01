#include "sinks/common/log_consumer.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>

#include "core/clock.h"
#include "core/hash.h"
#include "core/record_format.h"
#include "core/tracing.h"
#include "log/shard_log.h"
#include "runtime/tracing.h"
#include "sinks/common/dead_letter.h"

namespace tianhe::sinks {
namespace {

// Wait when every shard is caught up (bounded latency, no busy spin).
constexpr auto kIdleWait = std::chrono::milliseconds(5);
constexpr int64_t kMaxBackoffMs = 5000;
// A back-off wakes this often to apply drop_oldest while the destination is away.
constexpr int64_t kBackoffSliceMs = 200;

// The report count of a log record (its payload header), without decoding it.
uint64_t record_report_count(std::span<const uint8_t> payload) {
  if (payload.size() < 3) return 0;
  return static_cast<uint64_t>(payload[1]) | (static_cast<uint64_t>(payload[2]) << 8);
}

}  // namespace

std::string_view write_status_name(WriteStatus s) noexcept {
  switch (s) {
    case WriteStatus::kAccepted: return "accepted";
    case WriteStatus::kRetry: return "retry";
    case WriteStatus::kBlocked: return "blocked";
    case WriteStatus::kRejected: return "rejected";
    case WriteStatus::kCount: break;
  }
  return "unknown";
}

struct LogConsumer::Shard {
  log::ShardLog* log = nullptr;
  uint32_t index = 0;
  uint32_t consumer = 0;
  std::unique_ptr<log::LogReader> reader;
  uint64_t read_offset = 0;            ///< consumer thread: next record to read
  int64_t read_received_ns = 0;        ///< consumer thread: newest received_ns read
  std::atomic<uint64_t> committed{0};  ///< written by the sink
  std::atomic<uint64_t> durable{0};    ///< written and on disk
  std::atomic<int64_t> floor_ns{0};    ///< no unconsumed report is older than this
  bool corrupt = false;
};

LogConsumer::LogConsumer(ConsumerOptions options, const log::LogConfig& log_config,
                         std::vector<log::ShardLog*> logs, std::unique_ptr<SinkWriter> writer)
    : options_(std::move(options)),
      log_config_(log_config),
      writer_(std::move(writer)),
      scratch_(65535, 1u << 18) {
  if (options_.batch_reports == 0) options_.batch_reports = 65536;
  if (!options_.dead_letter_dir.empty()) {
    dead_letter_ = std::make_unique<DeadLetter>(options_.dead_letter_dir, options_.name);
  }
  if (options_.tracing != nullptr) {
    progress_ = options_.tracing->add_sink(options_.name);
    span_index_ = core::mix64(std::hash<std::string>{}(options_.name)) & 0xffffffffu;
  }
  drop_floor_.assign(logs.size(), 0);
  drop_from_.assign(logs.size(), UINT64_MAX);
  for (uint32_t i = 0; i < logs.size(); ++i) {
    auto s = std::make_unique<Shard>();
    s->log = logs[i];
    s->index = i;
    shards_.push_back(std::move(s));
  }
}

LogConsumer::~LogConsumer() {
  stop();
}

Result<std::unique_ptr<LogConsumer>> LogConsumer::start(ConsumerOptions options,
                                                        const log::LogConfig& log_config,
                                                        std::vector<log::ShardLog*> logs,
                                                        std::unique_ptr<SinkWriter> writer) {
  std::unique_ptr<LogConsumer> c(
      new LogConsumer(std::move(options), log_config, std::move(logs), std::move(writer)));
  if (!c->options_.start_unavailable) {
    if (auto r = c->open(); !r) return r.error();
  } else {
    // The destination may be away or hung: the thread connects (a start never waits on it).
    // Until then every log is held from its oldest record: nothing is deleted before the sink
    // knows its cursors.
    for (auto& sh : c->shards_) {
      auto reader = log::LogReader::open(log_config, sh->index, 0);
      if (!reader) return reader.error();
      const uint64_t first = reader.value()->offset();
      sh->committed.store(first);
      sh->durable.store(first);
      sh->read_offset = first;
      sh->floor_ns.store(core::wall_ns());  // the backlog's age counts from the start
    }
  }
  // "block": the log refuses appends that would put this sink further behind than its share.
  const uint64_t limit =
      c->options_.max_backlog_bytes == 0 || c->options_.drop_oldest
          ? UINT64_MAX
          : std::max<uint64_t>(1, c->options_.max_backlog_bytes / c->shards_.size());
  for (auto& sh : c->shards_) {
    sh->consumer = sh->log->add_consumer(c->options_.name, sh->committed.load(), limit);
  }
  c->registered_ = true;
  c->thread_ = std::thread([p = c.get()] { p->run(); });
  return c;
}

Result<void> LogConsumer::open() {
  auto cursors = writer_->open(static_cast<uint32_t>(shards_.size()));
  if (!cursors) return cursors.error();
  const int64_t now = core::wall_ns();
  for (auto& sh : shards_) {
    const uint64_t confirmed = sh->index < cursors->size() ? (*cursors)[sh->index] : 0;
    if (uint64_t& from = drop_from_[sh->index]; from != UINT64_MAX) {
      // Dropped from `from` on, but the destination got to `confirmed` (a write that timed out
      // here landed there): what it holds of the dropped range was delivered, not dropped.
      if (confirmed > from) {
        const uint64_t both =
            count_reports(sh->index, from, std::min(confirmed, drop_floor_[sh->index]));
        stats_.reports_dropped.fetch_sub(std::min(both, stats_.reports_dropped.load()));
      }
      from = UINT64_MAX;
    }
    const uint64_t cursor = std::max(confirmed, drop_floor_[sh->index]);
    auto reader = log::LogReader::open(log_config_, sh->index, cursor);
    if (!reader) {
      writer_->close();
      return reader.error();
    }
    sh->reader = std::move(reader.value());
    // The reader may start past a segment header: its offset is the real first record, and
    // nothing before it is left to consume (a fresh log's cursor 0 sits before the first
    // segment's header, which would otherwise count as 16 bytes of lag until the first write).
    sh->read_offset = sh->reader->offset();
    sh->committed.store(sh->read_offset);
    sh->durable.store(sh->read_offset);
    // A reconnect keeps the age of what is still waiting (lag_seconds must not read 0 then).
    if (sh->floor_ns.load() == 0) sh->floor_ns.store(now);
    sh->corrupt = false;
  }
  last_durable_ns_ = core::mono_ns();
  dirty_since_durable_ = false;
  open_ = true;
  ever_open_.store(true, std::memory_order_relaxed);
  blocked_.store(false);
  stats_.connected.store(true);
  // A reconnect: the destination's cursors are what the logs may delete below.
  if (registered_) publish_durable();
  return {};
}

bool LogConsumer::stopping() const {
  std::lock_guard lock(mu_);
  return stopping_;
}

void LogConsumer::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (open_) writer_->close();
  open_ = false;
  stats_.connected.store(false);
  if (dead_letter_) (void)dead_letter_->sync();
}

bool LogConsumer::read_batch() {
  if (progress_ != nullptr) batch_read_ns_ = core::wall_ns();
  pending_.clear();
  arena_.clear();
  metric_offsets_.clear();
  positions_.clear();
  bool read_any = false;
  const size_t n = shards_.size();
  // The shards' logs are merged by receive time, a record at a time: the next record comes
  // from the shard whose last record read is the oldest. A device's reports can arrive on
  // several shards, and a batch that drained one shard before the next would hand a sink each
  // device's readings out of order by a whole backlog (duplicate windows would then misjudge
  // them). Ties rotate, so that no shard is starved.
  merge_.assign(n, MergeState{});
  const size_t start = n ? (rr_++ % n) : 0;
  for (size_t k = 0; k < n; ++k) {
    Shard& sh = *shards_[k];
    merge_[k].active = !sh.corrupt;
    merge_[k].limit = sh.log->durable_offset();
  }
  while (pending_.size() < options_.batch_reports) {
    size_t pick = n;
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (start + k) % n;
      if (merge_[i].active && (pick == n || merge_[i].last_ns < merge_[pick].last_ns)) pick = i;
    }
    if (pick == n) break;
    Shard& sh = *shards_[pick];
    std::span<const uint8_t> payload;
    const uint64_t record_offset = sh.reader->offset();
    log::ReadStatus st = sh.reader->next(merge_[pick].limit, payload);
    if (st == log::ReadStatus::kEnd) {
      merge_[pick].active = false;
      continue;
    }
    if (st == log::ReadStatus::kCorrupt) {
      sh.corrupt = true;
      merge_[pick].active = false;
      stats_.corrupt_logs.fetch_add(1, std::memory_order_relaxed);
      std::fprintf(stderr, "sink.%s: shard %u: corrupt log record at offset %llu: stopped\n",
                   options_.name.c_str(), sh.index,
                   static_cast<unsigned long long>(sh.reader->offset()));
      continue;
    }
    read_any = true;
    scratch_.clear();
    core::ReportBatch* batch = &scratch_;
    std::unique_ptr<core::ReportBatch> big;
    core::RecordStatus cs = core::decode_payload(payload, *batch);
    if (cs == core::RecordStatus::kBatchFull) {
      // Larger than any normal receive batch: size a batch from the record itself (a metric
      // takes at least 3 bytes, a report at least 31).
      big = std::make_unique<core::ReportBatch>(static_cast<uint32_t>(payload.size() / 31 + 1),
                                                static_cast<uint32_t>(payload.size() / 3 + 1));
      batch = big.get();
      cs = core::decode_payload(payload, *batch);
    }
    stats_.bytes_read.fetch_add(sh.reader->offset() - sh.read_offset, std::memory_order_relaxed);
    sh.read_offset = sh.reader->offset();
    if (cs != core::RecordStatus::kOk) {
      stats_.malformed_records.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    uint32_t index = 0;
    for (const core::Report& r : *batch) {
      positions_.push_back({sh.index, index++, record_offset});
      pending_.push_back(r);
      metric_offsets_.push_back(arena_.size());
      arena_.insert(arena_.end(), r.raw_metrics.begin(), r.raw_metrics.end());
      sh.read_received_ns = std::max(sh.read_received_ns, r.received_ns);
      merge_[pick].last_ns = std::max(merge_[pick].last_ns, r.received_ns);
    }
  }
  // The arena has stopped growing: point each report at its metrics.
  for (size_t i = 0; i < pending_.size(); ++i) {
    size_t len = pending_[i].raw_metrics.size();
    pending_[i].raw_metrics = std::span<const uint8_t>(arena_.data() + metric_offsets_[i], len);
  }
  stats_.reports_read.fetch_add(pending_.size(), std::memory_order_relaxed);
  return read_any;
}

WriteStatus LogConsumer::write(bool durable) {
  cursors_.clear();
  for (auto& sh : shards_) cursors_.push_back({sh->index, sh->read_offset});
  // What a write may land lies past the cursors now: a drop from here on starts a new range.
  std::fill(drop_from_.begin(), drop_from_.end(), UINT64_MAX);
  std::string error;
  const int64_t t0 = core::mono_ns();
  const WriteStatus st =
      writer_->write(Batch{pending_, cursors_, positions_, dead_letter_.get()}, durable, error);
  stats_.write_latency.observe_ns(core::mono_ns() - t0);
  stats_.writes[static_cast<int>(st)].fetch_add(1, std::memory_order_relaxed);
  blocked_.store(st == WriteStatus::kBlocked, std::memory_order_relaxed);
  if (st == WriteStatus::kRetry || st == WriteStatus::kBlocked) {
    std::fprintf(stderr, "sink.%s: write %s: %s\n", options_.name.c_str(),
                 std::string(write_status_name(st)).c_str(), error.c_str());
    set_error(error);
    return st;
  }
  if (st == WriteStatus::kAccepted) {
    stats_.reports_delivered.fetch_add(pending_.size(), std::memory_order_relaxed);
  }
  if (st == WriteStatus::kRejected) {
    stats_.reports_rejected.fetch_add(pending_.size(), std::memory_order_relaxed);
    std::fprintf(stderr, "sink.%s: %zu reports rejected: %s\n", options_.name.c_str(),
                 pending_.size(), error.c_str());
    set_error(error);
  }
  if (progress_ != nullptr) note_delivered(st);
  const int64_t now = core::wall_ns();
  for (auto& sh : shards_) {
    sh->committed.store(sh->read_offset, std::memory_order_release);
    if (sh->read_offset >= sh->log->durable_offset()) {
      sh->floor_ns.store(now, std::memory_order_relaxed);
    } else if (sh->read_received_ns > sh->floor_ns.load(std::memory_order_relaxed)) {
      sh->floor_ns.store(sh->read_received_ns, std::memory_order_relaxed);
    }
  }
  if (durable) {
    last_durable_ns_ = core::mono_ns();
    dirty_since_durable_ = false;
    for (auto& sh : shards_) sh->durable.store(sh->committed.load());
    publish_durable();
  } else {
    dirty_since_durable_ = true;
  }
  return st;
}

void LogConsumer::note_delivered(WriteStatus st) {
  const int64_t now = core::wall_ns();
  for (auto& sh : shards_) {
    if (sh->index < progress_->shards.size()) {
      progress_->shards[sh->index]->note(sh->read_offset, now);
    }
  }
  if (progress_->ring == nullptr) return;
  for (size_t i = 0; i < pending_.size(); ++i) {
    const core::Report& r = pending_[i];
    if (!r.traced) continue;
    // Written in its ring slot (no second copy); a full ring counts the drop.
    core::tracing::SpanRecord* slot = progress_->ring->claim();
    if (slot == nullptr) continue;
    const core::tracing::ReportTrace t = core::tracing::report_trace(r);
    core::tracing::SpanRecord& s = *slot;
    s = core::tracing::SpanRecord{};
    s.trace_id = t.trace_id;
    s.span_id = core::tracing::stage_span_id(t, core::tracing::Stage::kSink,
                                             static_cast<uint32_t>(span_index_));
    s.parent_span_id = t.root_span_id;
    s.start_ns = batch_read_ns_;
    s.end_ns = now;
    s.device_id = r.device_id;
    s.seq = r.seq;
    s.tenant = r.tenant;
    s.shard = static_cast<uint16_t>(i < positions_.size() ? positions_[i].shard : 0);
    s.count = static_cast<uint32_t>(pending_.size());
    s.stage = core::tracing::Stage::kSink;
    s.kind = core::tracing::SpanKind::kClient;
    s.protocol = r.protocol;
    s.status = st == WriteStatus::kAccepted ? core::tracing::SpanStatus::kOk
                                            : core::tracing::SpanStatus::kError;
    if (st != WriteStatus::kAccepted) core::tracing::set_text(s.detail, "rejected_by_sink");
    core::tracing::set_text(s.sink, options_.name);
    progress_->ring->commit();
  }
}

void LogConsumer::publish_durable() {
  for (auto& sh : shards_) sh->log->set_consumer_offset(sh->consumer, sh->durable.load());
}

bool LogConsumer::back_off(int64_t& backoff_ms) {
  // Exponential with full jitter in [backoff/2, backoff], so sinks of many gateways that lost
  // one server do not come back in step.
  jitter_ = jitter_ * 6364136223846793005ull + 1442695040888963407ull;
  const int64_t half = backoff_ms / 2;
  int64_t left = half + static_cast<int64_t>((jitter_ >> 33) % static_cast<uint64_t>(half + 1));
  while (left > 0) {
    const int64_t slice = std::min(left, kBackoffSliceMs);
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, std::chrono::milliseconds(slice), [&] { return stopping_; })) {
        return false;
      }
    }
    left -= slice;
    enforce_backlog();
  }
  backoff_ms = std::min(backoff_ms * 2, kMaxBackoffMs);
  return true;
}

void LogConsumer::set_error(const std::string& e) {
  std::lock_guard lock(error_mu_);
  last_error_ = e;
  last_error_ns_ = core::wall_ns();
}

std::pair<std::string, int64_t> LogConsumer::last_error() const {
  std::lock_guard lock(error_mu_);
  return {last_error_, last_error_ns_};
}

std::string LogConsumer::state() const {
  if (blocked_.load(std::memory_order_relaxed)) return "blocked";
  if (stats_.connected.load(std::memory_order_relaxed)) return "connected";
  return ever_open_.load(std::memory_order_relaxed) ? "retrying" : "connecting";
}

uint64_t LogConsumer::count_reports(uint32_t shard, uint64_t from, uint64_t to) {
  if (to <= from) return 0;
  auto reader = log::LogReader::open(log_config_, shard, from);
  if (!reader) return 0;
  uint64_t reports = 0;
  while (reader.value()->offset() < to) {
    std::span<const uint8_t> payload;
    if (reader.value()->next(to, payload) != log::ReadStatus::kRecord) break;
    reports += record_report_count(payload);
  }
  return reports;
}

void LogConsumer::enforce_backlog() {
  if (!options_.drop_oldest || options_.max_backlog_bytes == 0 || shards_.empty()) return;
  const uint64_t limit = std::max<uint64_t>(1, options_.max_backlog_bytes / shards_.size());
  bool dropped = false;
  for (auto& sh : shards_) {
    const uint64_t durable = sh->log->durable_offset();
    const uint64_t from = sh->committed.load();
    if (durable <= from || durable - from <= limit) continue;
    // Skip to a quarter below the limit, so that dropping happens in steps, not per record.
    const uint64_t target = durable - limit / 4 * 3;
    auto reader = log::LogReader::open(log_config_, sh->index, from);
    if (!reader) {
      set_error("drop_oldest: " + reader.error().message);
      continue;
    }
    uint64_t reports = 0;
    while (reader.value()->offset() < target) {
      std::span<const uint8_t> payload;
      if (reader.value()->next(durable, payload) != log::ReadStatus::kRecord) break;
      reports += record_report_count(payload);
    }
    const uint64_t to = reader.value()->offset();
    if (to == from) continue;
    if (drop_from_[sh->index] == UINT64_MAX) drop_from_[sh->index] = from;
    stats_.reports_dropped.fetch_add(reports, std::memory_order_relaxed);
    std::fprintf(stderr,
                 "sink.%s: shard %u: backlog over max_backlog_bytes: dropped the oldest %llu "
                 "reports (backlog_policy = \"drop_oldest\")\n",
                 options_.name.c_str(), sh->index, static_cast<unsigned long long>(reports));
    drop_floor_[sh->index] = to;
    sh->committed.store(to);
    sh->durable.store(to);
    sh->log->set_consumer_offset(sh->consumer, to);
    dropped = true;
  }
  if (!dropped) return;
  // What was read but not written is read again from the new cursors.
  pending_.clear();
  positions_.clear();
  reoffer_ = false;
  for (auto& sh : shards_) {
    if (!open_) {
      sh->read_offset = sh->committed.load();
      continue;
    }
    if (sh->read_offset == sh->committed.load()) continue;
    auto reader = log::LogReader::open(log_config_, sh->index, sh->committed.load());
    if (!reader) {
      // Reading cannot go on from here: reconnect, which reopens every reader.
      set_error("drop_oldest: " + reader.error().message);
      writer_->close();
      open_ = false;
      stats_.connected.store(false);
      return;
    }
    sh->reader = std::move(reader.value());
    sh->read_offset = sh->reader->offset();
  }
}

void LogConsumer::run() {
  const std::string thread_name = (options_.name + "-sink").substr(0, 15);
  pthread_setname_np(pthread_self(), thread_name.c_str());
  const int64_t durable_interval_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.durable_interval).count();
  int64_t backoff_ms = 100;
  for (;;) {
    const bool stop_now = stopping();
    enforce_backlog();
    if (!open_) {
      // At start with the destination away, or after kRetry: reconnect and resume from what
      // the destination committed.
      pending_.clear();
      positions_.clear();
      reoffer_ = false;
      if (auto r = open(); !r) {
        set_error(r.error().message);
        stats_.open_failures.fetch_add(1, std::memory_order_relaxed);
        std::fprintf(stderr, "sink.%s: reconnect failed: %s\n", options_.name.c_str(),
                     r.error().message.c_str());
        if (stop_now || !back_off(backoff_ms)) return;
        continue;
      }
    }
    const auto next_read = std::chrono::steady_clock::now() + options_.commit_interval;
    const bool read_any = reoffer_ || read_batch();
    reoffer_ = false;
    bool moved = false;
    for (auto& sh : shards_) moved |= sh->read_offset != sh->committed.load();
    const bool due = core::mono_ns() - last_durable_ns_ >= durable_interval_ns;
    if (read_any || moved || (dirty_since_durable_ && due) || stop_now) {
      const WriteStatus st = write(stop_now || due);
      if (st == WriteStatus::kRetry || st == WriteStatus::kBlocked) {
        // Stopping: give up; the log keeps what was not written and the next start replays it.
        if (stop_now) return;
        if (st == WriteStatus::kRetry) {
          writer_->close();
          open_ = false;
          stats_.connected.store(false);
        } else {
          reoffer_ = true;
        }
        if (!back_off(backoff_ms)) return;
        continue;
      }
      backoff_ms = 100;
    }
    if (stop_now) return;
    if (read_any && pending_.size() < options_.batch_reports &&
        options_.commit_interval.count() > 0) {
      // Less than a full batch was waiting: let the next one gather for commit_interval, so
      // that a steady stream makes a few large writes per second.
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_read, [&] { return stopping_; });
      continue;
    }
    if (!read_any) {
      const int64_t now = core::wall_ns();
      for (auto& sh : shards_) {
        if (sh->committed.load() >= sh->log->durable_offset()) sh->floor_ns.store(now);
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, kIdleWait, [&] { return stopping_; });
    }
  }
}

uint64_t LogConsumer::lag_bytes() const {
  uint64_t total = 0;
  for (auto& sh : shards_) {
    uint64_t d = sh->log->durable_offset();
    uint64_t c = sh->committed.load(std::memory_order_acquire);
    if (d > c) total += d - c;
  }
  return total;
}

double LogConsumer::lag_seconds() const {
  int64_t now = core::wall_ns();
  int64_t worst = 0;
  for (auto& sh : shards_) {
    if (sh->log->durable_offset() <= sh->committed.load(std::memory_order_acquire)) continue;
    worst = std::max(worst, now - sh->floor_ns.load(std::memory_order_relaxed));
  }
  return static_cast<double>(worst) / 1e9;
}

uint64_t LogConsumer::lag_reports() const {
  const uint64_t bytes = stats_.bytes_read.load(std::memory_order_relaxed);
  const uint64_t reports = stats_.reports_read.load(std::memory_order_relaxed);
  const uint64_t lag = lag_bytes();
  if (lag == 0) return 0;
  // Before anything was read: the smallest report record (a header and one report).
  const double per_report =
      reports > 0 ? static_cast<double>(bytes) / static_cast<double>(reports) : 64.0;
  return static_cast<uint64_t>(static_cast<double>(lag) / per_report);
}

bool LogConsumer::caught_up() const {
  for (auto& sh : shards_) {
    if (sh->committed.load(std::memory_order_acquire) != sh->log->durable_offset()) return false;
  }
  return true;
}

void LogConsumer::collect(core::PromWriter& w) const {
  const core::Labels sink{{"sink", options_.name}};
  w.gauge("tianhe_sink_lag_bytes", "Durable log bytes the sink has not committed yet.", sink,
          static_cast<double>(lag_bytes()));
  w.gauge("tianhe_sink_lag_seconds", "Age of the oldest report the sink has not committed yet.",
          sink, lag_seconds());
  for (int s = 0; s < static_cast<int>(WriteStatus::kCount); ++s) {
    w.counter("tianhe_sink_writes_total", "Batch writes of a sink, by outcome.",
              {{"sink", options_.name},
               {"status", std::string(write_status_name(static_cast<WriteStatus>(s)))}},
              static_cast<double>(stats_.writes[s].load(std::memory_order_relaxed)));
  }
  w.counter("tianhe_sink_reports_rejected_total",
            "Reports in batches a sink rejected for good (skipped).", sink,
            static_cast<double>(stats_.reports_rejected.load(std::memory_order_relaxed)));
  w.gauge("tianhe_sink_lag_reports", "Reports the sink has not delivered yet (estimated).", sink,
          static_cast<double>(lag_reports()));
  w.counter("tianhe_sink_delivered_reports_total", "Reports the destination confirmed.", sink,
            static_cast<double>(stats_.reports_delivered.load(std::memory_order_relaxed)));
  w.counter("tianhe_sink_dropped_reports_total",
            "Reports skipped by backlog_policy = \"drop_oldest\" at max_backlog_bytes.",
            {{"sink", options_.name}, {"reason", "backlog_full"}},
            static_cast<double>(stats_.reports_dropped.load(std::memory_order_relaxed)));
  w.counter("tianhe_sink_connect_failures_total", "Connects and reconnects that failed.", sink,
            static_cast<double>(stats_.open_failures.load(std::memory_order_relaxed)));
  w.gauge("tianhe_sink_connected", "1 while the sink is connected to its destination.", sink,
          stats_.connected.load(std::memory_order_relaxed) ? 1.0 : 0.0);
  core::write_histogram(w, "tianhe_sink_write_seconds",
                        "Time of one batch write (with its cursors).", sink, stats_.write_latency);
  if (dead_letter_) {
    w.counter("tianhe_sink_dead_lettered_reports_total",
              "Reports the destination refused for good, written to the dead-letter file.", sink,
              static_cast<double>(dead_letter_->records()));
    w.counter("tianhe_sink_dead_letter_overflow_total",
              "Dead letters not written: the dead-letter file was full.", sink,
              static_cast<double>(dead_letter_->overflowed()));
  }
  writer_->collect(w, sink);
}

}  // namespace tianhe::sinks
