// Tracing and fates on the data plane: what each shard records of the reports it handles.
//
// - Spans (core/tracing.h): a shard decides per report whether it is traced (consistent
//   sampling, an adaptive spans-per-second limit, "always keep" for rejected, dead-lettered,
//   retried and slow reports) and records the report's spans into its ring; sinks record theirs
//   when the engine confirms. control/otlp exports the rings.
// - Fates: every report's outcome (accepted, rejected and why, refused by the log, dead-lettered
//   by its codec) goes into a bounded per-device table on its shard, and the log offsets at which
//   each shard became durable and each sink confirmed go into small histories, so "where did
//   report X go" is answered for any recent report, sampled or not.
//
// One Tracing per gateway (DataPlane builds it; GatewayContext::tracing). A ShardTracer and its
// FateTable belong to one shard thread; readers on other threads use the seqlocked tables.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/counter.h"
#include "core/metrics.h"
#include "core/report.h"
#include "core/tracing.h"
#include "pipeline/codec.h"
#include "pipeline/registry.h"
#include "runtime/pipeline_stats.h"

namespace tianhe::runtime {

/// Reports traced whatever the sampling rate (TracingOptions::always_keep bits).
enum class KeepReason : uint8_t {
  kRejected = 1,      ///< the validator rejected it
  kDeadLettered = 2,  ///< its codec failed
  kRetried = 4,       ///< the log refused it (BUSY: the device retries)
  kSlow = 8,          ///< it took longer than the shard's recent p99 to become durable
};

/// The [tracing] table.
struct TracingOptions {
  std::string endpoint;  ///< OTLP/HTTP traces URL; empty: no spans are recorded (fates are)
  double sample_rate = 0.01;
  uint64_t max_spans_per_second = 20000;  ///< over the gateway; the rate adapts to stay below
  uint32_t always_keep = 15;              ///< KeepReason bits
  bool consistent = true;       ///< false: every hop samples on its own (the distortion, for tests)
  uint64_t ring_spans = 16384;  ///< per shard and per sink
  uint64_t fate_devices = 65536;  ///< devices per shard whose recent fates are kept
  std::string service_instance;   ///< service.instance.id (default: the log id)
  int64_t export_interval_ns = 1'000'000'000;
  int64_t export_timeout_ns = 5'000'000'000;
};

/// Parses an always_keep entry ("rejected", "dead_lettered", "retried", "slow"); 0 if unknown.
uint32_t keep_reason_bit(std::string_view name) noexcept;

/// What became of one copy of a report.
enum class FateOutcome : uint8_t {
  kAccepted,      ///< appended to the log (durable and delivered: see the histories)
  kRejected,      ///< the validator refused it (reason: pipeline::RejectReason)
  kBusy,          ///< the log refused it (reason: BusyReason); the device was told to retry
  kDeadLettered,  ///< its codec failed (reason: pipeline::DecodeStatus); the payload is kept
  kCount,
};

/// "accepted", "rejected", "busy", "dead_lettered".
std::string_view fate_outcome_name(FateOutcome o) noexcept;

/// One remembered fate.
struct Fate {
  uint64_t device_id = 0;
  uint32_t seq = 0;
  FateOutcome outcome = FateOutcome::kAccepted;
  uint8_t reason = 0;
  core::Protocol protocol = core::Protocol::kUnknown;
  bool traced = false;
  bool has_parent = false;  ///< it carried a traceparent (its trace id is the sender's)
  int64_t received_ns = 0;
  uint64_t log_end = 0;  ///< kAccepted: the log offset just past its record
  uint32_t shard = 0;
};

/// The last few fates of each of a bounded number of devices, on one shard. The shard thread
/// writes; any thread reads (a sequence lock per device; a reader retries a torn read).
class FateTable {
 public:
  static constexpr size_t kPerDevice = 4;
  /// Room for `devices` devices (rounded up to a power of two); beyond it, a new device takes
  /// the slot of the least recently written one in its probe window.
  explicit FateTable(uint64_t devices);
  /// Shard thread: remembers `f`. No allocation, no lock.
  void record(const Fate& f) noexcept;
  /// Any thread: appends the remembered fates of (device, seq) to `out`.
  void find(uint64_t device_id, uint32_t seq, std::vector<Fate>& out) const;
  /// Any thread: appends every remembered fate of `device_id` (newest last).
  void find_device(uint64_t device_id, std::vector<Fate>& out) const;
  uint64_t devices() const noexcept { return mask_ + 1; }

 private:
  struct Slot {
    std::atomic<uint32_t> version{0};  ///< odd while the shard writes
    std::atomic<uint32_t> next{0};     ///< where the next fate goes (mod kPerDevice)
    std::atomic<uint64_t> device{0};   ///< 0: free
    std::atomic<int64_t> touched{0};   ///< received_ns of the newest fate (eviction)
    /// Per fate: seq | outcome << 32 | reason << 40 | protocol << 48 | flags << 56;
    /// received_ns; log_end.
    std::array<std::atomic<uint64_t>, kPerDevice * 3> words{};
  };
  Slot* slot_for_write(uint64_t device_id, int64_t now) noexcept;
  void read_slot(const Slot& s, uint64_t device_id, bool any_seq, uint32_t seq,
                 std::vector<Fate>& out) const;

  std::unique_ptr<Slot[]> slots_;
  uint64_t mask_;
  uint32_t shard_ = 0;
  friend class ShardTracer;
};

/// When log offsets were reached (a shard's durability, a sink's confirmations): a bounded ring
/// of (offset, wall ns), written by one thread, read by any.
class OffsetHistory {
 public:
  static constexpr size_t kEntries = 4096;
  OffsetHistory();
  /// Writer: `offset` was reached at `wall_ns` (offsets only grow).
  void note(uint64_t offset, int64_t wall_ns) noexcept;
  /// Any thread: when `offset` was first covered: >0 the time; 0 not reached yet; -1 reached
  /// but longer ago than the history holds.
  int64_t when(uint64_t offset) const noexcept;
  /// Any thread: the highest offset noted.
  uint64_t reached() const noexcept { return reached_.load(std::memory_order_acquire); }

 private:
  std::unique_ptr<std::array<std::atomic<uint64_t>, 2>[]> ring_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> reached_{0};
  std::atomic<uint64_t> last_offset_{0};
};

/// A sink's confirmations, per shard log (its LogConsumer writes, anyone reads).
struct SinkProgress {
  std::string name;
  std::vector<std::unique_ptr<OffsetHistory>> shards;  ///< one per shard
  core::tracing::SpanRing* ring = nullptr;             ///< its spans (null: spans off)
};

/// Counters of the shard's span recording (shard thread writes).
struct TracerStats {
  core::Counter reports_traced;
  core::Counter kept[4];       ///< traced because of KeepReason bit i
  core::Counter rate_limited;  ///< sampled reports not traced: the spans/s limit
  core::Counter pending_full;  ///< traced reports whose durable span could not wait
  core::Counter fates_recorded;
};

/// One shard's tracing: the sampling decision, its spans, its fates. Shard thread only, except
/// the tables other threads read.
class ShardTracer {
 public:
  ShardTracer(uint32_t shard, const TracingOptions& options, core::tracing::SpanRing* ring,
              uint32_t shards);

  /// Spans are recorded (an export endpoint is configured).
  bool recording() const noexcept { return ring_ != nullptr; }
  /// Whether report `r` (validated: `reason`) is traced. Sets nothing. noexcept, no allocation.
  bool decide(const core::Report& r, pipeline::RejectReason reason) noexcept;
  /// After validate_and_append(): records every report's fate and the traced reports' spans.
  /// `t0`: when validation began, `t1`: before the last append, `t2`: after it (wall ns).
  void batch_done(const core::ReportBatch& batch, std::span<const uint8_t> status, bool ok,
                  BusyReason busy, uint64_t durable_at, int64_t t0, int64_t t1, int64_t t2,
                  const pipeline::Registry& registry) noexcept;
  /// A codec failed on report `r` (its payload is dead-lettered): its fate, and its spans when
  /// kept.
  void dead_lettered(const core::Report& r, pipeline::DecodeStatus status,
                     const pipeline::Registry& registry) noexcept;
  /// The log is durable up to `offset` (shard loop, every turn): completes the spans that
  /// waited for it and notes the time in the durability history.
  void on_durable(uint64_t offset) noexcept;
  /// Traced reports wait for durability (the shard should wake on the durable eventfd).
  bool waiting() const noexcept { return pending_count_ > 0; }

  const FateTable& fates() const noexcept { return fates_; }
  const OffsetHistory& durable_history() const noexcept { return durable_; }
  const TracerStats& stats() const noexcept { return stats_; }
  /// The sampling rate in force now (adapted to the spans/s limit).
  double current_rate() const noexcept { return rate_now_.load(std::memory_order_relaxed); }

 private:
  struct Pending {  ///< a traced report's root span, waiting for durability
    core::tracing::SpanRecord root;
    uint64_t durable_at = 0;
    int64_t appended_ns = 0;
    bool traced = false;   ///< traced: its spans are emitted when durable
    bool measure = false;  ///< the oldest accepted report of its batch: its latency feeds the
                           ///< p99, and an untraced one is traced when slower than that
  };
  void fill(core::tracing::SpanRecord& s, const core::Report& r,
            const core::tracing::ReportTrace& t, const pipeline::Registry& registry) noexcept;
  void emit(const core::tracing::SpanRecord& s) noexcept;
  /// Writes a stage span under `root` straight into the ring (status ERROR with `error` as its
  /// detail when `error` is set, else OK).
  void emit_child(const core::tracing::SpanRecord& root, const core::tracing::ReportTrace& t,
                  core::tracing::Stage stage, int64_t start_ns, int64_t end_ns, uint32_t count,
                  std::string_view error = {}) noexcept;
  void roll_window(int64_t now) noexcept;
  bool take_budget(uint32_t spans) noexcept;
  void finish(Pending& p, int64_t now) noexcept;

  uint32_t shard_;
  TracingOptions options_;
  core::tracing::SpanRing* ring_;
  FateTable fates_;
  OffsetHistory durable_;
  TracerStats stats_;
  uint64_t threshold_;  ///< of the rate in force
  double rate_;         ///< the rate in force (≤ options_.sample_rate)
  std::atomic<double> rate_now_{0};
  uint64_t budget_per_window_;  ///< spans per second for this shard
  int64_t window_start_ = 0;
  uint64_t window_spans_ = 0;             ///< spans recorded in this window
  uint64_t window_demand_ = 0;            ///< spans sampling asked for in this window (adaptation)
  uint64_t rng_ = 0x2545f4914f6cdd1dULL;  ///< independent sampling (consistent = false)
  std::vector<Pending> pending_;          ///< a ring
  size_t pending_head_ = 0, pending_count_ = 0;
  uint64_t slow_ns_ = UINT64_MAX;       ///< durable latency above which a batch is slow
  core::Log2Histogram window_latency_;  ///< durable latencies in this window (p99)
  std::array<uint64_t, core::Log2Histogram::kBuckets> latency_base_{};
};

/// The gateway's tracing: options, the rings the exporter drains, the tracers and histories.
class Tracing {
 public:
  Tracing(TracingOptions options, uint32_t shards);
  const TracingOptions& options() const noexcept { return options_; }
  bool recording() const noexcept { return !options_.endpoint.empty(); }
  uint32_t shards() const noexcept { return static_cast<uint32_t>(tracers_.size()); }
  ShardTracer& shard(uint32_t i) noexcept { return *tracers_[i]; }
  const ShardTracer& shard(uint32_t i) const noexcept { return *tracers_[i]; }

  /// A sink's progress record (its LogConsumer calls it at start; any thread; kept for the
  /// gateway's life).
  SinkProgress* add_sink(std::string_view name);
  /// Every ring the exporter drains now (any thread).
  std::vector<core::tracing::SpanRing*> rings() const;

  /// GET /api/v1/devices/{id}/reports/{seq}/trace: the fates of (device, seq) as JSON, with
  /// when its shard made it durable and each sink confirmed it. "found": false when no shard
  /// remembers it (never seen, or older than the tables hold).
  std::string fate_json(uint64_t device_id, uint32_t seq) const;
  /// tianhe_tracing_* samples of the recording side.
  void collect(core::PromWriter& w) const;

 private:
  TracingOptions options_;
  std::vector<std::unique_ptr<core::tracing::SpanRing>> shard_rings_;
  std::vector<std::unique_ptr<ShardTracer>> tracers_;
  mutable std::mutex mu_;  ///< guards sinks_ and sink_rings_ (grown at start)
  std::vector<std::unique_ptr<SinkProgress>> sinks_;
  std::vector<std::unique_ptr<core::tracing::SpanRing>> sink_rings_;
};

}  // namespace tianhe::runtime
