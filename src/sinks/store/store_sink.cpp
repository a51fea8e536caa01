#include "sinks/store/store_sink.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>

#include "control/metrics.h"
#include "core/clock.h"
#include "core/report_codec.h"
#include "sinks/store/paced_vfs.h"

namespace tianhe::sinks::store {
namespace {

// A commit is made durable (fsync) at least this often; only durable cursors let the log
// delete segments.
constexpr int64_t kDurableIntervalNs = 200'000'000;
// Wait when every shard is caught up (bounded latency, no busy spin).
constexpr auto kIdleWait = std::chrono::milliseconds(5);
// The sink's name: its consumer of each shard log, and the `sink` label of its metrics.
constexpr std::string_view kSinkName = "store";

int log2_bucket(uint64_t us) {
  int b = us == 0 ? 0 : std::bit_width(us);
  return std::min(b, StoreSinkStats::kBuckets - 1);
}

}  // namespace

struct StoreSink::Shard {
  log::ShardLog* log = nullptr;
  uint32_t index = 0;
  uint32_t consumer = 0;
  std::unique_ptr<log::LogReader> reader;
  uint64_t read_offset = 0;            ///< sink thread: next record to read
  int64_t read_received_ns = 0;        ///< sink thread: newest received_ns read
  std::atomic<uint64_t> committed{0};  ///< in the store
  std::atomic<uint64_t> durable{0};    ///< in the store and on disk
  std::atomic<int64_t> floor_ns{0};    ///< no unconsumed report is older than this
  bool corrupt = false;
};

StoreSink::StoreSink(const control::StoreConfig& config, const log::LogConfig& log_config,
                     std::vector<log::ShardLog*> logs)
    : config_(config), log_config_(log_config), scratch_(65535, 1u << 18) {
  if (config_.batch_reports == 0) config_.batch_reports = 65536;
  for (uint32_t i = 0; i < logs.size(); ++i) {
    auto s = std::make_unique<Shard>();
    s->log = logs[i];
    s->index = i;
    shards_.push_back(std::move(s));
  }
}

StoreSink::~StoreSink() {
  stop();
}

Result<std::unique_ptr<StoreSink>> StoreSink::start(const control::StoreConfig& config,
                                                    const log::LogConfig& log_config,
                                                    std::vector<log::ShardLog*> logs) {
  if (config.dir.empty()) {
    return make_error("sinks.store.dir: empty: set it (default <data_dir>/store)");
  }
  std::unique_ptr<StoreSink> s(new StoreSink(config, log_config, std::move(logs)));
  if (auto r = s->open_store(); !r) return r.error();
  for (auto& sh : s->shards_) sh->consumer = sh->log->add_consumer(kSinkName, sh->committed.load());
  s->thread_ = std::thread([p = s.get()] { p->run(); });
  return s;
}

Result<void> StoreSink::open_store() {
  StoreWriterOptions o;
  o.dir = config_.dir;
  o.chunk_reports = config_.chunk_reports;
  o.chunk_duration = config_.chunk_duration;
  o.retention = config_.retention;
  o.unmerged_chunks = &unmerged_chunks_;
  unmerged_chunks_.store(0);  // a reopened writer merges what an earlier one left before it opens
  auto w = StoreWriter::open(o);
  if (!w) return w.error();
  writer_ = std::move(w.value());
  int64_t now = core::wall_ns();
  for (auto& sh : shards_) {
    auto it = writer_->cursors().find(sh->index);
    uint64_t cursor = it == writer_->cursors().end() ? 0 : it->second;
    auto reader = log::LogReader::open(log_config_, sh->index, cursor);
    if (!reader) return reader.error();
    sh->reader = std::move(reader.value());
    // The reader may start past a segment header: its offset is the real first record, and
    // nothing before it is left to consume (a fresh log's cursor 0 sits before the first
    // segment's header, which would otherwise count as 16 bytes of lag until the first commit).
    sh->read_offset = sh->reader->offset();
    sh->committed.store(sh->read_offset);
    sh->durable.store(sh->read_offset);
    sh->floor_ns.store(now);
    sh->corrupt = false;
  }
  open_chunk_reports_.store(static_cast<int64_t>(writer_->open_chunk_reports()));
  last_durable_ns_ = core::mono_ns();
  dirty_since_durable_ = false;
  return {};
}

void StoreSink::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  writer_.reset();
}

bool StoreSink::read_batch() {
  pending_.clear();
  arena_.clear();
  metric_offsets_.clear();
  bool read_any = false;
  const size_t n = shards_.size();
  // Rotate the first shard so that one busy shard cannot starve the others.
  const size_t start = n ? (rr_++ % n) : 0;
  for (size_t k = 0; k < n && pending_.size() < config_.batch_reports; ++k) {
    Shard& sh = *shards_[(start + k) % n];
    if (sh.corrupt) continue;
    const uint64_t limit = sh.log->durable_offset();
    while (pending_.size() < config_.batch_reports) {
      std::span<const uint8_t> payload;
      log::ReadStatus st = sh.reader->next(limit, payload);
      if (st == log::ReadStatus::kEnd) break;
      if (st == log::ReadStatus::kCorrupt) {
        sh.corrupt = true;
        stats_.errors.fetch_add(1, std::memory_order_relaxed);
        std::fprintf(stderr, "sink.store: shard %u: corrupt log record at offset %llu: stopped\n",
                     sh.index, static_cast<unsigned long long>(sh.reader->offset()));
        break;
      }
      read_any = true;
      scratch_.clear();
      core::ReportBatch* batch = &scratch_;
      std::unique_ptr<core::ReportBatch> big;
      core::CodecStatus cs = core::decode_payload(payload, *batch);
      if (cs == core::CodecStatus::kBatchFull) {
        // Larger than any normal receive batch: size a batch from the record itself (a metric
        // takes at least 3 bytes, a report at least 31).
        big = std::make_unique<core::ReportBatch>(static_cast<uint32_t>(payload.size() / 31 + 1),
                                                  static_cast<uint32_t>(payload.size() / 3 + 1));
        batch = big.get();
        cs = core::decode_payload(payload, *batch);
      }
      sh.read_offset = sh.reader->offset();
      if (cs != core::CodecStatus::kOk) {
        stats_.malformed_records.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      for (const core::Report& r : *batch) {
        pending_.push_back(r);
        metric_offsets_.push_back(arena_.size());
        arena_.insert(arena_.end(), r.raw_metrics.begin(), r.raw_metrics.end());
        sh.read_received_ns = std::max(sh.read_received_ns, r.received_ns);
      }
    }
  }
  // The arena has stopped growing: point each report at its metrics.
  for (size_t i = 0; i < pending_.size(); ++i) {
    size_t len = pending_[i].raw_metrics.size();
    pending_[i].raw_metrics = std::span<const uint8_t>(arena_.data() + metric_offsets_[i], len);
  }
  return read_any;
}

Result<void> StoreSink::commit(bool durable) {
  std::vector<ShardCursor> cursors;
  cursors.reserve(shards_.size());
  for (auto& sh : shards_) cursors.push_back({sh->index, sh->read_offset});
  int64_t t0 = core::mono_ns();
  auto res = writer_->write(pending_, cursors, durable);
  if (!res) return res.error();
  int64_t took = core::mono_ns() - t0;
  stats_.write_us_buckets[log2_bucket(static_cast<uint64_t>(took / 1000))].fetch_add(
      1, std::memory_order_relaxed);
  stats_.write_ns_sum.fetch_add(static_cast<uint64_t>(took), std::memory_order_relaxed);
  stats_.reports_written.fetch_add(res->written, std::memory_order_relaxed);
  stats_.duplicates_dropped.fetch_add(res->duplicates, std::memory_order_relaxed);
  stats_.reboots.fetch_add(res->reboots, std::memory_order_relaxed);
  stats_.batches.fetch_add(1, std::memory_order_relaxed);
  if (res->sealed) stats_.chunks_sealed.fetch_add(1, std::memory_order_relaxed);
  open_chunk_reports_.store(static_cast<int64_t>(writer_->open_chunk_reports()));
  int64_t now = core::wall_ns();
  for (auto& sh : shards_) {
    sh->committed.store(sh->read_offset, std::memory_order_release);
    if (sh->read_offset >= sh->log->durable_offset()) {
      sh->floor_ns.store(now, std::memory_order_relaxed);
    } else if (sh->read_received_ns > sh->floor_ns.load(std::memory_order_relaxed)) {
      sh->floor_ns.store(sh->read_received_ns, std::memory_order_relaxed);
    }
  }
  // A sealed chunk ends with a synced commit, and the new chunk's first commit is the one
  // just made; treat it like any other non-durable commit.
  if (durable) {
    last_durable_ns_ = core::mono_ns();
    dirty_since_durable_ = false;
    for (auto& sh : shards_) sh->durable.store(sh->committed.load());
    publish_durable();
  } else {
    dirty_since_durable_ = true;
  }
  return {};
}

void StoreSink::publish_durable() {
  for (auto& sh : shards_) sh->log->set_consumer_offset(sh->consumer, sh->durable.load());
}

void StoreSink::recover_after_error() {
  // The writer's state may be ahead of the database: reopen everything from what is committed.
  int64_t backoff_ms = 100;
  for (;;) {
    writer_.reset();
    pending_.clear();
    auto r = open_store();
    if (r) return;
    stats_.errors.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr, "sink.store: reopen failed: %s\n", r.error().message.c_str());
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_; })) {
      return;
    }
    backoff_ms = std::min<int64_t>(backoff_ms * 2, 5000);
  }
}

void StoreSink::run() {
  pthread_setname_np(pthread_self(), "store-sink");
  for (;;) {
    bool stopping;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
    }
    if (!writer_) return;  // reopen failed while stopping
    const auto next_read = std::chrono::steady_clock::now() + config_.commit_interval;
    bool read_any = read_batch();
    bool moved = false;
    for (auto& sh : shards_) moved |= sh->read_offset != sh->committed.load();
    bool due = core::mono_ns() - last_durable_ns_ >= kDurableIntervalNs;
    if (read_any || moved || (dirty_since_durable_ && (due || stopping)) || stopping) {
      if (auto r = commit(stopping || due); !r) {
        stats_.errors.fetch_add(1, std::memory_order_relaxed);
        std::fprintf(stderr, "sink.store: commit failed: %s\n", r.error().message.c_str());
        // Stopping: give up; the log keeps what was not committed and the next start replays it.
        if (stopping) return;
        recover_after_error();
        continue;
      }
    }
    if (stopping) return;
    if (read_any && pending_.size() < config_.batch_reports &&
        config_.commit_interval.count() > 0) {
      // Less than a full batch was waiting: let the next one gather for commit_interval, so
      // that a steady stream makes a few large transactions (and sorted runs) per second.
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, next_read, [&] { return stopping_; });
      continue;
    }
    if (!read_any) {
      int64_t now = core::wall_ns();
      for (auto& sh : shards_) {
        if (sh->committed.load() >= sh->log->durable_offset()) sh->floor_ns.store(now);
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, kIdleWait, [&] { return stopping_; });
    }
  }
}

uint64_t StoreSink::lag_bytes() const {
  uint64_t total = 0;
  for (auto& sh : shards_) {
    uint64_t d = sh->log->durable_offset();
    uint64_t c = sh->committed.load(std::memory_order_acquire);
    if (d > c) total += d - c;
  }
  return total;
}

double StoreSink::lag_seconds() const {
  int64_t now = core::wall_ns();
  int64_t worst = 0;
  for (auto& sh : shards_) {
    if (sh->log->durable_offset() <= sh->committed.load(std::memory_order_acquire)) continue;
    worst = std::max(worst, now - sh->floor_ns.load(std::memory_order_relaxed));
  }
  return static_cast<double>(worst) / 1e9;
}

bool StoreSink::caught_up() const {
  for (auto& sh : shards_) {
    if (sh->committed.load(std::memory_order_acquire) != sh->log->durable_offset()) return false;
  }
  return true;
}

void StoreSink::collect(control::PromWriter& w) const {
  const control::Labels none;
  const control::Labels sink{{"sink", std::string(kSinkName)}};
  auto get = [](const std::atomic<uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  w.counter("tianhe_sink_store_reports_written_total", "Reports stored by the embedded store.",
            none, get(stats_.reports_written));
  w.counter("tianhe_sink_store_duplicates_dropped_total",
            "Reports dropped because the device had already delivered that sequence number.", none,
            get(stats_.duplicates_dropped));
  w.counter("tianhe_sink_store_reboots_total",
            "Devices whose sequence numbers restarted (window reset).", none, get(stats_.reboots));
  w.counter("tianhe_sink_store_malformed_records_total",
            "Log records the store could not decode (skipped).", none,
            get(stats_.malformed_records));
  w.counter("tianhe_sink_store_batches_total", "Store transactions committed.", none,
            get(stats_.batches));
  w.counter("tianhe_sink_store_errors_total", "Failed store commits and unreadable log records.",
            none, get(stats_.errors));
  w.counter("tianhe_sink_store_chunks_sealed_total", "Time chunks sealed.", none,
            get(stats_.chunks_sealed));
  w.counter("tianhe_sink_store_writeback_kicks_total",
            "Writebacks the store started early (every 128 KiB written to a file) so that its "
            "data reaches the disk in small pieces and does not stall the log's flushes.",
            none, static_cast<double>(paced_vfs_kicks()));
  w.gauge("tianhe_sink_store_open_chunk_reports", "Reports in the open time chunk.", none,
          static_cast<double>(open_chunk_reports_.load(std::memory_order_relaxed)));
  w.gauge("tianhe_sink_store_unmerged_chunks",
          "Sealed chunks whose merge into one sorted run has not finished (background work).", none,
          static_cast<double>(unmerged_chunks_.load(std::memory_order_relaxed)));
  w.gauge("tianhe_sink_lag_bytes", "Durable log bytes the sink has not committed yet.", sink,
          static_cast<double>(lag_bytes()));
  w.gauge("tianhe_sink_lag_seconds", "Age of the oldest report the sink has not committed yet.",
          sink, lag_seconds());
  uint64_t buckets[StoreSinkStats::kBuckets];
  for (int i = 0; i < StoreSinkStats::kBuckets; ++i) {
    buckets[i] = stats_.write_us_buckets[i].load(std::memory_order_relaxed);
  }
  control::write_log2_us_histogram(
      w, "tianhe_sink_store_write_seconds", "Latency of one store transaction.", none, buckets,
      static_cast<double>(stats_.write_ns_sum.load(std::memory_order_relaxed)) / 1e9);
}

}  // namespace tianhe::sinks::store
