// Tracing's data model, shared by the threads that record spans (shards, sinks) and the one that
// exports them (control/otlp): a fixed-size span record, a single-producer ring of them, and the
// consistent sampling decision. No I/O, no allocation once a ring is built.
//
// Identity without storage: a report that arrived with no traceparent gets a trace id derived
// from what the log already keeps of it (device id, seq, received_ns), so every thread that sees
// the report — the shard that received it, a sink that delivers it an hour later, after a
// restart — computes the same trace and span ids without the log storing them. A report that
// carried a traceparent keeps its trace id; our spans become children of the sender's span.
//
// Sampling is consistent (OpenTelemetry probability sampling): a root's decision compares the
// trace id's 56 random low bits with a threshold derived from the rate, so every hop with the
// same rate decides alike; a report with a parent follows the parent's sampled flag. The final
// decision (after the rate limit and "always keep") is stored in the log record's flags, so the
// sinks record their spans for exactly the reports the shard traced.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/report.h"

namespace tianhe::core::tracing {

/// OTLP Span.SpanKind values.
enum class SpanKind : uint8_t {
  kInternal = 1,
  kServer = 2,
  kClient = 3,
  kProducer = 4,
  kConsumer = 5
};

/// OTLP Status.StatusCode values.
enum class SpanStatus : uint8_t { kUnset = 0, kOk = 1, kError = 2 };

/// Which stage of a report's path a span covers (its name: stage_name()).
enum class Stage : uint8_t {
  kReport,    ///< the root: receive until durable (kind SERVER, or CONSUMER for MQTT input)
  kDecode,    ///< the codec (protocols with payload codecs)
  kValidate,  ///< model validation (and the reject reason when it fails)
  kAppend,    ///< encoding into the log record and the append
  kDurable,   ///< from the append until the covering fsync
  kSink,      ///< one sink's delivery: read from the log until the engine confirmed (kind CLIENT)
  kCount,
};

/// The span name of a stage: "tianhe.report", "tianhe.decode", ... "tianhe.sink".
std::string_view stage_name(Stage s) noexcept;

/// A fixed-size span: everything the exporter needs, no pointers into memory that may go away.
struct SpanRecord {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  std::array<uint8_t, 8> parent_span_id{};  ///< all zero: a root span
  int64_t start_ns = 0;                     ///< wall clock (unix ns)
  int64_t end_ns = 0;
  uint64_t device_id = 0;
  uint64_t threshold = 0;      ///< the sampling threshold (56 bits) for tracestate ot=th
  bool has_threshold = false;  ///< a root we sampled: tracestate carries `threshold`
  uint32_t seq = 0;
  uint32_t tenant = 0;
  uint32_t count = 1;  ///< reports the span covers (a batch-level span: more than one)
  uint16_t shard = 0;
  Stage stage = Stage::kReport;
  SpanKind kind = SpanKind::kInternal;
  SpanStatus status = SpanStatus::kUnset;
  Protocol protocol = Protocol::kUnknown;
  uint8_t trace_flags = 1;
  char model[32] = {};   ///< the device's model name (NUL-terminated, truncated)
  char sink[32] = {};    ///< kSink: the sink's name ("postgres", "nats", ...)
  char detail[48] = {};  ///< why a stage failed: a reject, dead-letter or drop reason
};

/// Copies `text` into a fixed field, truncated and NUL-terminated.
template <size_t N>
void set_text(char (&field)[N], std::string_view text) noexcept {
  const size_t n = text.size() < N - 1 ? text.size() : N - 1;
  for (size_t i = 0; i < n; ++i) field[i] = text[i];
  field[n] = '\0';
}

/// A bounded single-producer single-consumer ring of spans: the recording thread pushes (and a
/// full ring drops, counted), the exporter thread pops. Lock-free; no allocation after build.
class SpanRing {
 public:
  /// A ring of at least `capacity` spans (rounded up to a power of two); `name` says whose it is
  /// ("shard-0", "sink-postgres") in metrics.
  SpanRing(size_t capacity, std::string_view name);
  SpanRing(const SpanRing&) = delete;
  SpanRing& operator=(const SpanRing&) = delete;

  /// Producer thread: appends `span`; false (and counts a drop) when the ring is full.
  bool push(const SpanRecord& span) noexcept;
  /// Producer thread: the next free slot, to be written in place and then commit()ted; null
  /// (and a drop counted) when the ring is full. Saves push()'s copy of a span built elsewhere.
  SpanRecord* claim() noexcept;
  /// Producer thread: publishes the slot the last claim() returned.
  void commit() noexcept;
  /// Consumer thread: moves up to out.size() spans into `out`, oldest first; returns how many.
  size_t pop(std::span<SpanRecord> out) noexcept;

  std::string_view name() const noexcept { return {name_, name_len_}; }
  size_t capacity() const noexcept { return mask_ + 1; }
  /// Spans pushed and dropped because the ring was full (any thread).
  uint64_t pushed() const noexcept { return head_.load(std::memory_order_relaxed); }
  uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<SpanRecord[]> slots_;
  size_t mask_;
  alignas(64) std::atomic<uint64_t> head_{0};  ///< next slot the producer writes (= pushed)
  uint64_t tail_seen_ = 0;                     ///< producer only: tail_ when last read
  std::atomic<uint64_t> dropped_{0};           ///< written by the producer only
  alignas(64) std::atomic<uint64_t> tail_{0};  ///< next slot the consumer reads
  char name_[32] = {};
  size_t name_len_ = 0;
};

/// 2^56: thresholds and randomness are 56-bit (OpenTelemetry probability sampling).
inline constexpr uint64_t kMaxThreshold = uint64_t{1} << 56;

/// The rejection threshold for a sampling probability `rate` (0..1): a trace is sampled when its
/// randomness is >= the threshold. rate 1 → 0 (keep all); rate 0 → 2^56 (keep none).
uint64_t threshold_for_rate(double rate) noexcept;

/// The 56 random bits of a trace id (its last 7 bytes, big-endian), per W3C Trace Context level 2.
uint64_t trace_randomness(const std::array<uint8_t, 16>& trace_id) noexcept;

/// Formats `threshold` as the tracestate value "ot=th:..." (hex, trailing zeros removed; "0" for
/// keep-all); returns the length written (at most 20), 0 if `out` is too small.
size_t format_tracestate(uint64_t threshold, std::span<char> out) noexcept;

/// The trace and span ids Tianhe gives one report (derived, see the file comment).
struct ReportTrace {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> parent_span_id{};  ///< the sender's span (zero: we are the root)
  std::array<uint8_t, 8> root_span_id{};    ///< our kReport span
  bool has_parent = false;
  bool parent_sampled = false;
};

/// Derives the report's trace: its own traceparent's trace id (parent = the sender's span), or
/// a trace id from (device_id, seq, received_ns). The same inputs always give the same ids.
ReportTrace report_trace(const Report& r) noexcept;

/// The span id of `stage` in `trace` (`index`: which sink, for kSink); stable across threads.
std::array<uint8_t, 8> stage_span_id(const ReportTrace& trace, Stage stage,
                                     uint32_t index = 0) noexcept;

/// The derived context of a report that arrived with none: its derived trace id and our root
/// span, not sampled (what sinks send downstream for it, and what `tianhe trace` shows).
TraceContext derived_trace(const Report& r) noexcept;

/// The traceparent a sink sends downstream for report `r`: a child of our root span, sampled,
/// when we traced it; the sender's own when it sent one and we did not; else the derived trace
/// id with our root span, not sampled.
TraceContext outgoing_trace(const Report& r) noexcept;

}  // namespace tianhe::core::tracing
