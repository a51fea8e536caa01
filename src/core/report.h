// The unit that flows through Tianhe: a Report (one device reading with its metrics) and a
// ReportBatch (the reports of one receive batch). No I/O; no heap allocation once built.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

namespace tianhe::core {

/// The protocol a report arrived on: a small id that each protocol extension declares when it
/// registers (runtime/extensions.h). It is stored with every report, so an id, once used, is
/// never given to another protocol. Core knows no protocol by id or name.
enum class Protocol : uint8_t { kUnknown = 0 };

/// Records the name of a protocol id (registration, before any thread reads names).
void set_protocol_name(Protocol p, std::string_view name) noexcept;
/// The registered name of a protocol ("report", "mqtt_sn", ...); "unknown" for an id no
/// extension compiled in has claimed.
std::string_view protocol_name(Protocol p) noexcept;

/// The type of a metric value.
enum class ValueType : uint8_t { kDouble = 0, kInt64 = 1, kBool = 2, kString = 3 };

/// The lower-case name of a value type ("double", "int64", "bool", "string").
std::string_view value_type_name(ValueType t) noexcept;

/// A metric value. Strings are views into the batch's input bytes (datagram or log record).
struct Value {
  ValueType type = ValueType::kDouble;
  union {
    double f64 = 0;
    int64_t i64;
    bool b;
  };
  std::string_view str;  ///< for kString only
};

/// One metric of a report: a name (or, when the name is empty, a numeric id) and a value.
struct Metric {
  std::string_view name;  ///< metric name as sent; empty when the device sent an id
  uint32_t id = 0;        ///< metric id (used when name is empty)
  Value value;
};

/// TraceContext::threshold and ::randomness when the sender gave none.
inline constexpr uint64_t kNoTraceValue = ~uint64_t{0};

/// A W3C Trace Context (traceparent) carried by a report, with what its tracestate's `ot`
/// entry said about sampling (OpenTelemetry probability sampling). Not kept in the log.
struct TraceContext {
  std::array<uint8_t, 16> trace_id{};
  std::array<uint8_t, 8> span_id{};
  uint8_t flags = 0;                    ///< trace-flags; bit 0 = sampled
  bool present = false;                 ///< false when the report carried no traceparent
  uint64_t threshold = kNoTraceValue;   ///< the sender's `ot=th` (56-bit), consistent with flags
  uint64_t randomness = kNoTraceValue;  ///< the sender's `ot=rv` (56-bit); none: the trace id's
};

/// One report. Its metrics are batch.metrics[metric_begin, metric_begin + metric_count).
struct Report {
  uint64_t device_id = 0;
  uint32_t seq = 0;     ///< per-device sequence number
  uint32_t tenant = 0;  ///< tenant index, from the registry
  int64_t device_time_ns = 0;
  int64_t received_ns = 0;  ///< gateway wall clock at receive
  Protocol protocol = Protocol::kUnknown;
  bool ack_requested = false;
  /// Traced: this gateway records spans for the report (decided at validation, kept in the log
  /// record so the sinks record theirs; core/tracing.h).
  bool traced = false;
  TraceContext trace;
  uint32_t metric_begin = 0;
  uint16_t metric_count = 0;
  uint32_t peer = 0;       ///< index of the sender in the receiving transport's batch (for acks)
  uint32_t decode_ns = 0;  ///< time its payload codec took (0: no codec ran)
  int64_t decode_start_ns = 0;  ///< wall clock when its codec started
  /// When decoded from a log record: the encoded metrics section (see record_format.h).
  std::span<const uint8_t> raw_metrics;
};

/// A fixed-capacity batch of reports and their metrics. Built once per shard (or reader) and
/// reused: clear() keeps the storage, so steady state allocates nothing. Single-threaded.
class ReportBatch {
 public:
  /// Capacity: at most `max_reports` reports and `max_metrics` metrics in all.
  ReportBatch(uint32_t max_reports, uint32_t max_metrics);

  /// Drops every report; keeps the storage.
  void clear() noexcept {
    report_count_ = 0;
    metric_count_ = 0;
  }
  /// Number of reports held.
  uint32_t size() const noexcept { return report_count_; }
  bool empty() const noexcept { return report_count_ == 0; }
  /// Room left.
  uint32_t reports_free() const noexcept { return max_reports_ - report_count_; }
  uint32_t metrics_free() const noexcept { return max_metrics_ - metric_count_; }

  /// Appends an empty report, or returns nullptr when full.
  Report* add_report() noexcept {
    if (report_count_ == max_reports_) return nullptr;
    Report* r = &reports_[report_count_++];
    *r = Report{};
    r->metric_begin = metric_count_;
    return r;
  }
  /// Removes the last report and its metrics (a parser backing out of a malformed report).
  void pop_report() noexcept {
    if (report_count_ == 0) return;
    metric_count_ = reports_[--report_count_].metric_begin;
  }
  /// Removes the metrics of `r`, which must be the last report (a codec backing out).
  void truncate_metrics(Report& r) noexcept {
    metric_count_ = r.metric_begin;
    r.metric_count = 0;
  }
  /// Appends a metric to the last report, or returns nullptr when full.
  Metric* add_metric(Report& r) noexcept {
    if (metric_count_ == max_metrics_ || r.metric_count == UINT16_MAX) return nullptr;
    ++r.metric_count;
    Metric* m = &metrics_[metric_count_++];
    *m = Metric{};
    return m;
  }

  Report& operator[](uint32_t i) noexcept { return reports_[i]; }
  const Report& operator[](uint32_t i) const noexcept { return reports_[i]; }
  /// The metrics of report `r`.
  std::span<Metric> metrics(const Report& r) noexcept {
    return {&metrics_[r.metric_begin], r.metric_count};
  }
  std::span<const Metric> metrics(const Report& r) const noexcept {
    return {&metrics_[r.metric_begin], r.metric_count};
  }
  Report* begin() noexcept { return reports_.get(); }
  Report* end() noexcept { return reports_.get() + report_count_; }
  const Report* begin() const noexcept { return reports_.get(); }
  const Report* end() const noexcept { return reports_.get() + report_count_; }

 private:
  std::unique_ptr<Report[]> reports_;
  std::unique_ptr<Metric[]> metrics_;
  uint32_t max_reports_;
  uint32_t max_metrics_;
  uint32_t report_count_ = 0;
  uint32_t metric_count_ = 0;
};

}  // namespace tianhe::core
