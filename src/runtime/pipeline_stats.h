// What every protocol counts the same way, per shard: reports received, accepted, rejected by
// the validator (by reason), refused by the log (by busy reason). Written by the shard thread
// only; summed across shards at scrape time (collect_pipeline_stats).
#pragma once

#include <cstdint>
#include <string_view>

#include "core/counter.h"
#include "core/metrics.h"
#include "pipeline/validator.h"

namespace tianhe::runtime {

/// Why a report the validator accepted still was not stored (the log refused it).
enum class BusyReason : uint8_t { kBacklogFull = 0, kDiskFull, kIoError, kCount };

/// The snake_case name of a busy reason (a metric label and an ack's reason): "backlog_full".
std::string_view busy_reason_name(BusyReason r) noexcept;

/// Status of one ack entry.
enum class AckKind : uint8_t { kOk = 0, kRejected, kBusy, kCount };

/// The pipeline counters of one protocol on one shard.
struct PipelineStats {
  core::Counter reports_received;  ///< reports the protocol read (before validation)
  core::Counter reports_accepted;  ///< appended to the log
  core::Counter reports_rejected[static_cast<int>(pipeline::RejectReason::kCount)];
  core::Counter reports_busy[static_cast<int>(BusyReason::kCount)];
  core::Counter reports_auto_registered;
  core::Counter bad_traceparents;  ///< invalid traceparents ignored (the report kept, no trace)
  core::Counter bad_tracestates;   ///< malformed tracestate ot entries ignored (trace kept)
};

/// Writes tianhe_reports_{received,accepted,rejected,auto_registered}_total,
/// tianhe_traceparents_invalid_total and tianhe_tracestates_invalid_total for `protocol`.
void collect_pipeline_stats(core::PromWriter& w, const PipelineStats& s, std::string_view protocol);

}  // namespace tianhe::runtime
