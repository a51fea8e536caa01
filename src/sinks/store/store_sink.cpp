#include "sinks/store/store_sink.h"

#include <string>

#include "core/clock.h"
#include "log/shard_log.h"
#include "sinks/store/paced_vfs.h"
#include "sinks/store/store_writer.h"

namespace tianhe::sinks::store {
namespace {

// The sink's name: its consumer of each shard log, and the `sink` label of its metrics.
constexpr std::string_view kSinkName = "store";

/// The store behind the consumer: a StoreWriter, reopened after a failed commit.
class StoreWriterSink final : public SinkWriter {
 public:
  StoreWriterSink(const StoreConfig& config, StoreSinkStats* stats)
      : config_(config), stats_(stats) {}

  Result<std::vector<uint64_t>> open(uint32_t shards) override {
    StoreWriterOptions o;
    o.dir = config_.dir;
    o.chunk_reports = config_.chunk_reports;
    o.chunk_duration = config_.chunk_duration;
    o.retention = config_.retention;
    o.unmerged_chunks = &stats_->unmerged_chunks;
    stats_->unmerged_chunks.store(0);  // a reopened writer merges what an earlier one left first
    writer_.reset();
    auto w = StoreWriter::open(o);
    if (!w) {
      stats_->errors.add();
      return w.error();
    }
    writer_ = std::move(w.value());
    stats_->open_chunk_reports.set(writer_->open_chunk_reports());
    std::vector<uint64_t> cursors(shards, 0);
    for (uint32_t i = 0; i < shards; ++i) {
      auto it = writer_->cursors().find(i);
      if (it != writer_->cursors().end()) cursors[i] = it->second;
    }
    return cursors;
  }

  WriteStatus write(const Batch& batch, bool durable, std::string& error) override {
    const int64_t t0 = core::mono_ns();
    auto res = writer_->write(batch.reports, batch.cursors, durable);
    if (!res) {
      // The writer's state may be ahead of the database: reopen from what is committed.
      stats_->errors.add();
      error = "commit failed: " + res.error().message;
      return WriteStatus::kRetry;
    }
    stats_->write_latency.observe_ns(core::mono_ns() - t0);
    stats_->reports_written.add(res->written);
    stats_->duplicates_dropped.add(res->duplicates);
    stats_->reboots.add(res->reboots);
    stats_->batches.add();
    if (res->sealed) stats_->chunks_sealed.add();
    stats_->open_chunk_reports.set(writer_->open_chunk_reports());
    return WriteStatus::kAccepted;
  }

  void close() noexcept override { writer_.reset(); }

 private:
  StoreConfig config_;
  StoreSinkStats* stats_;
  std::unique_ptr<StoreWriter> writer_;
};

}  // namespace

Result<std::unique_ptr<StoreSink>> StoreSink::start(const StoreConfig& config,
                                                    const log::LogConfig& log_config,
                                                    std::vector<log::ShardLog*> logs,
                                                    std::shared_ptr<runtime::Tracing> tracing) {
  if (config.dir.empty()) {
    return make_error("sinks.store.dir: empty: set it (default <data_dir>/store)");
  }
  std::unique_ptr<StoreSink> s(new StoreSink());
  s->stats_ = std::make_unique<StoreSinkStats>();
  ConsumerOptions o;
  o.name = std::string(kSinkName);
  o.batch_reports = config.batch_reports;
  o.commit_interval = config.commit_interval;
  o.tracing = std::move(tracing);
  auto c = LogConsumer::start(std::move(o), log_config, std::move(logs),
                              std::make_unique<StoreWriterSink>(config, s->stats_.get()));
  if (!c) return c.error();
  s->consumer_ = std::move(c.value());
  return s;
}

StoreSink::~StoreSink() {
  stop();
}

void StoreSink::stop() {
  if (consumer_) consumer_->stop();
}

void StoreSink::collect(core::PromWriter& w) const {
  const core::Labels none;
  auto get = [](const core::Counter& c) { return static_cast<double>(c.get()); };
  const StoreSinkStats& s = *stats_;
  w.counter("tianhe_sink_store_reports_written_total", "Reports stored by the embedded store.",
            none, get(s.reports_written));
  w.counter("tianhe_sink_store_duplicates_dropped_total",
            "Reports dropped because the device had already delivered that sequence number.", none,
            get(s.duplicates_dropped));
  w.counter("tianhe_sink_store_reboots_total",
            "Devices whose sequence numbers restarted (window reset).", none, get(s.reboots));
  w.counter(
      "tianhe_sink_store_malformed_records_total",
      "Log records the store could not decode (skipped).", none,
      static_cast<double>(consumer_->stats().malformed_records.load(std::memory_order_relaxed)));
  w.counter("tianhe_sink_store_batches_total", "Store transactions committed.", none,
            get(s.batches));
  w.counter(
      "tianhe_sink_store_errors_total", "Failed store commits and unreadable log records.", none,
      get(s.errors) +
          static_cast<double>(consumer_->stats().corrupt_logs.load(std::memory_order_relaxed)));
  w.counter("tianhe_sink_store_chunks_sealed_total", "Time chunks sealed.", none,
            get(s.chunks_sealed));
  w.counter("tianhe_sink_store_writeback_kicks_total",
            "Writebacks the store started early (every 128 KiB written to a file) so that its "
            "data reaches the disk in small pieces and does not stall the log's flushes.",
            none, static_cast<double>(paced_vfs_kicks()));
  w.gauge("tianhe_sink_store_open_chunk_reports", "Reports in the open time chunk.", none,
          get(s.open_chunk_reports));
  w.gauge("tianhe_sink_store_unmerged_chunks",
          "Sealed chunks whose merge into one sorted run has not finished (background work).", none,
          static_cast<double>(s.unmerged_chunks.load(std::memory_order_relaxed)));
  consumer_->collect(w);
  core::write_histogram(w, "tianhe_sink_store_write_seconds", "Latency of one store transaction.",
                        none, s.write_latency);
}

}  // namespace tianhe::sinks::store
