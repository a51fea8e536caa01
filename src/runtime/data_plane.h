// The data plane assembled: the shard logs, one shard thread per log, each enabled protocol's
// ingest on every shard (sharing one port), and each enabled sink on its own log consumer.
// Start-up unwinds on any error (nothing is left running); stop() ends the shards first (their
// pending durable acks are sent), then the sinks, then closes the logs with a final sync.
// It names no extension: protocols and sinks come from runtime::Extensions.
#pragma once

#include <any>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/metrics.h"
#include "core/result.h"
#include "log/log_config.h"
#include "log/shard_log.h"
#include "pipeline/registry.h"
#include "runtime/codec_stage.h"
#include "runtime/extensions.h"
#include "runtime/shard.h"
#include "runtime/tracing.h"

namespace tianhe::runtime {

/// What the data plane is built from (the validated config's parts it needs).
struct DataPlaneOptions {
  std::string data_dir;
  uint32_t shards = 0;  ///< 0: one per core
  std::chrono::microseconds receive_window{400};
  log::LogConfig log;
  std::shared_ptr<const pipeline::Registry> registry;
  /// Every extension table by header ("protocols.report"), as parsed.
  std::map<std::string, std::any, std::less<>> tables;
};

/// A Log2Histogram's cumulative counts at one moment (self-diagnosis takes deltas of two).
struct HistogramSample {
  std::array<uint64_t, core::Log2Histogram::kBuckets> buckets{};
  uint64_t sum_ns = 0;
  /// Adds `h`'s counts now.
  void add(const core::Log2Histogram& h) noexcept;
};

/// Every cumulative number self-diagnosis shows, at one moment (DataPlane::diagnosis()).
struct DiagnosisSample {
  /// One shard's loop, log and thread.
  struct ShardPart {
    uint64_t busy_ns = 0, idle_ns = 0, turns = 0;
    uint64_t reports_in = 0, reports_accepted = 0, reports_rejected = 0;
    uint64_t log_backlog_bytes = 0;
    uint64_t cpu_ns = 0;  ///< the shard thread's CPU time (/proc/self/task)
    HistogramSample input_batch, input_time, append_batch, validate_time, log_append, log_fsync;
  };
  /// One running sink.
  struct SinkPart {
    std::string name, kind;
    SinkStatus status;
    uint64_t cpu_ns = 0;     ///< its consumer thread's CPU time
    bool cpu_known = false;  ///< the thread was found (by its name, "<name>-sink")
  };
  int64_t mono_ns = 0;
  std::vector<ShardPart> shards;
  std::vector<CodecUsage> codecs;
  std::vector<SinkPart> sinks;
};

/// A running data plane.
class DataPlane {
 public:
  /// Opens the logs, starts the sinks (their consumers read from now on) and creates the
  /// protocols' ingests; the shards start with start_shards(). An error names the part.
  static Result<std::unique_ptr<DataPlane>> open(DataPlaneOptions options,
                                                 const Extensions& extensions);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  /// Starts the shard threads.
  void start_shards();
  /// Stops the shards, then the sinks, then closes the logs. Idempotent.
  void stop() noexcept;

  uint32_t shard_count() const noexcept { return static_cast<uint32_t>(shards_.size()); }
  /// The port protocol `name` listens on; 0 when it is not running.
  uint16_t port(std::string_view name) const noexcept;
  /// The port of the first running protocol (registration order); 0 when none runs.
  uint16_t first_port() const noexcept;
  /// The running protocols' banner lines.
  std::string banner() const;
  /// What opening found: a torn log tail cut at recovery, how far the sinks were behind as they
  /// started; "clean".
  std::string recovery_summary() const;
  /// True when every running sink has written everything durable.
  bool sinks_caught_up() const;
  /// A running sink: its instance name ("<kind>" or "<kind>.<name>"), its kind and its state.
  struct SinkView {
    std::string name;
    std::string kind;
    SinkStatus status;
  };
  /// Every running sink's state, in start order (scrape thread).
  std::vector<SinkView> sink_statuses() const;
  /// Adds the running sinks' HTTP routes.
  Result<void> add_routes(core::HttpRoutes& routes);
  /// Samples of the logs, shards, protocols, sinks and registry.
  void collect(core::PromWriter& w) const;
  /// The running totals (logs, shards, protocols, sinks).
  Totals totals() const;
  /// Shard i's numbers for /debug/shards.
  DebugFields debug(uint32_t shard) const;
  /// Every cumulative self-diagnosis number now (any thread; reads /proc/self/task).
  DiagnosisSample diagnosis_sample() const;
  /// Self-diagnosis as JSON: rates over the last second and stage latencies over the last
  /// `kStageWindowSeconds`, from deltas between a sample taken now and the sampler's ring (one
  /// sample a second; before the first, the sample taken at start_shards()). `part`: "shards",
  /// "stages", "codecs", "sinks", or "" for all of them with a "summary" (any thread).
  nlohmann::json diagnosis(std::string_view part) const;
  /// Seconds of history the slowest-stages view covers.
  static constexpr int kStageWindowSeconds = 5;
  /// The gateway's tracing (fates, span rings); never null once open.
  const std::shared_ptr<Tracing>& tracing() const noexcept { return tracing_; }
  /// /debug/sessions: up to `limit` sessions of running protocol `protocol`, shard after shard,
  /// after cursor `after` (0: the first; else a page's `next`: the shard in its top 16 bits, the
  /// shard's own cursor below); `total` counts every shard's. An error names the protocols.
  Result<SessionPage> sessions(std::string_view protocol, uint64_t after, uint32_t limit) const;
  const pipeline::Registry& registry() const noexcept { return *options_.registry; }

 private:
  DataPlane() = default;

  struct RunningProtocol {
    std::string_view name;
    std::unique_ptr<ProtocolInstance> instance;
  };
  struct RunningSink {
    std::string name;       ///< "<kind>" or "<kind>.<name>"
    std::string_view kind;  ///< SinkSpec::name
    std::unique_ptr<SinkInstance> instance;
    uint64_t lag_at_start = 0;  ///< its lag as it started (recovery_summary): read before its
                                ///< consumer thread has delivered anything
  };

  DataPlaneOptions options_;
  std::shared_ptr<Tracing> tracing_;    ///< before the shards and sinks: they refer to it
  std::shared_ptr<CodecStage> codecs_;  ///< before the shards: their decoders refer to it
  std::vector<std::unique_ptr<log::LogStats>> log_stats_;
  std::vector<RunningSink> sinks_;
  std::vector<RunningProtocol> protocols_;
  std::vector<std::unique_ptr<Shard>> shards_;
  bool stopped_ = false;

  /// Takes a diagnosis sample a second into ring_ until stop().
  void run_sampler();
  static constexpr size_t kRing = 8;  ///< samples kept (seconds)
  mutable std::mutex diag_mu_;        ///< guards ring_, sampler_stop_
  std::condition_variable diag_cv_;
  std::vector<DiagnosisSample> ring_;  ///< oldest first, at most kRing
  bool sampler_stop_ = false;
  std::thread sampler_;
};

}  // namespace tianhe::runtime
