// The OTLP/HTTP trace exporter: one thread that drains the span rings of the shards and sinks,
// batches the spans and POSTs them as protobuf (OTLP 1.x, ExportTraceServiceRequest) with
// libcurl. Export never blocks the recording threads: they only push into their own ring, and a
// full ring drops at the producer (counted by the ring).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/metrics.h"
#include "core/result.h"
#include "core/tracing.h"

namespace tianhe::control::otlp {

/// How and where the exporter sends.
struct OtlpExporterOptions {
  /// The OTLP/HTTP traces endpoint, "http://host:port/v1/traces" (https:// works too).
  std::string endpoint = "http://127.0.0.1:4318/v1/traces";
  /// Extra request headers (name, value), e.g. an authorization token.
  std::vector<std::pair<std::string, std::string>> headers;
  /// Limit on one request (connect, send, answer).
  std::chrono::milliseconds timeout{10'000};
  /// Spans per request at most (about 340 bytes each: 2048 make a 0.7 MB request).
  size_t max_batch_spans = 2048;
  /// A partial batch is sent this long after the previous flush.
  std::chrono::milliseconds flush_interval{1'000};
  /// Spans taken from the rings and not yet exported, at most; beyond it spans wait in (and
  /// overflow from) the rings.
  size_t max_queue_spans = 16384;
  /// Retries of one request after a transport error or 429/502/503/504, then the batch drops.
  uint32_t max_retries = 4;
  /// The first back-off after a failure; doubled per retry (with jitter), capped below.
  std::chrono::milliseconds initial_backoff{200};
  /// The longest wait before a retry, a Retry-After header included.
  std::chrono::milliseconds max_backoff{30'000};
  /// How often the rings are drained between flushes.
  std::chrono::milliseconds poll_interval{50};
  /// InstrumentationScope.version.
  std::string scope_version = "0.1.0";
  /// Resource attribute host.name; empty: gethostname().
  std::string host_name;
};

/// Why spans were dropped after leaving the recording thread (ring_full is the rings' own).
enum class DropReason : uint8_t {
  kExportFailed,        ///< transport errors or retryable statuses past the retries; 5xx
  kRejectedByReceiver,  ///< partial_success.rejected_spans, or a non-retryable 4xx
  kCount,
};

/// The outcome of one POST (label `result` of tianhe_tracing_export_requests_total).
enum class RequestResult : uint8_t {
  kOk,              ///< 2xx, every span accepted
  kPartialSuccess,  ///< 2xx with partial_success.rejected_spans > 0
  kRetryStatus,     ///< 429, 502, 503, 504 (retried)
  kErrorStatus,     ///< any other status (not retried, OTLP/HTTP "Failures")
  kTransportError,  ///< no answer: refused, reset, timed out (retried)
  kCount,
};

/// The metric label of a request result ("ok", "partial_success", ...).
std::string_view request_result_name(RequestResult r) noexcept;

/// A snapshot of the exporter's counters.
struct OtlpExporterStats {
  uint64_t spans_exported = 0;  ///< accepted by the receiver
  uint64_t spans_dropped[static_cast<size_t>(DropReason::kCount)] = {};  ///< by reason
  uint64_t ring_full = 0;  ///< sum of the rings' dropped()
  uint64_t requests[static_cast<size_t>(RequestResult::kCount)] = {};  ///< by result
  uint64_t queued = 0;      ///< taken from the rings, not yet exported or dropped
  uint64_t ring_spans = 0;  ///< waiting in the rings now (all rings)
};

/// The exporter. Built and started by the control plane; one thread of its own from start()
/// to stop(). start(), stop() and the destructor belong to one (owning) thread; add_ring(),
/// stats() and collect() may be called from any thread. Each ring's producer is whoever records
/// into it; the exporter thread is its only consumer.
class OtlpExporter {
 public:
  /// An exporter, not started. `service_instance_id` becomes the resource's
  /// service.instance.id.
  OtlpExporter(OtlpExporterOptions options, std::string service_instance_id);
  /// Stops (flushing within 2 s) if running.
  ~OtlpExporter();
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  /// Validates the options (errors name the tracing.* key and the fix) and starts the thread
  /// draining `rings` (each must outlive the exporter's stop()).
  Result<void> start(const std::vector<core::tracing::SpanRing*>& rings);
  /// Adds a ring to drain (any thread, before or while running); it must outlive stop().
  void add_ring(core::tracing::SpanRing* ring);
  /// Drains the rings and exports what is queued, retries included, until done or `deadline`
  /// passes (what is left then drops as export_failed); joins the thread. Idempotent.
  void stop(std::chrono::milliseconds deadline = std::chrono::milliseconds(5'000)) noexcept;

  /// A snapshot of the counters (any thread).
  OtlpExporterStats stats() const noexcept;
  /// The last failure in words ("POST http://...: 503", "connection refused"), "" if none.
  std::string last_error() const;
  /// Writes tianhe_tracing_* samples (a MetricsRegistry collector; any thread).
  void collect(core::PromWriter& w) const;

 private:
  struct Impl;                  ///< the thread, the curl handle, the queue and the counters
  std::unique_ptr<Impl> impl_;  ///< never null
};

}  // namespace tianhe::control::otlp
