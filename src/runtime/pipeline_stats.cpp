#include "runtime/pipeline_stats.h"

#include <string>

namespace tianhe::runtime {

std::string_view busy_reason_name(BusyReason r) noexcept {
  switch (r) {
    case BusyReason::kBacklogFull: return "backlog_full";
    case BusyReason::kDiskFull: return "disk_full";
    case BusyReason::kIoError: return "io_error";
    case BusyReason::kCount: break;
  }
  return "busy";
}

void collect_pipeline_stats(core::PromWriter& w, const PipelineStats& s,
                            std::string_view protocol) {
  const std::string p(protocol);
  const core::Labels pl{{"protocol", p}};
  static constexpr std::string_view kRejectedHelp =
      "Reports not accepted, by reason (model violations, or the log pushing back).";
  w.counter("tianhe_reports_received_total", "Reports read from well-formed datagrams.", pl,
            s.reports_received.get());
  w.counter("tianhe_reports_accepted_total", "Reports accepted (appended to the shard log).", pl,
            s.reports_accepted.get());
  for (int r = 1; r < static_cast<int>(pipeline::RejectReason::kCount); ++r) {
    w.counter("tianhe_reports_rejected_total", kRejectedHelp,
              {{"protocol", p},
               {"reason",
                std::string(pipeline::reject_reason_name(static_cast<pipeline::RejectReason>(r)))}},
              s.reports_rejected[r].get());
  }
  for (int r = 0; r < static_cast<int>(BusyReason::kCount); ++r) {
    w.counter(
        "tianhe_reports_rejected_total", kRejectedHelp,
        {{"protocol", p}, {"reason", std::string(busy_reason_name(static_cast<BusyReason>(r)))}},
        s.reports_busy[r].get());
  }
  w.counter("tianhe_reports_auto_registered_total",
            "Reports from unknown devices accepted under the default model.", pl,
            s.reports_auto_registered.get());
  w.counter("tianhe_traceparents_invalid_total", "Invalid traceparents ignored.", pl,
            s.bad_traceparents.get());
  w.counter("tianhe_tracestates_invalid_total",
            "Tracestates whose OpenTelemetry entry (ot=th/rv) was malformed and ignored (the "
            "traceparent kept).",
            pl, s.bad_tracestates.get());
}

}  // namespace tianhe::runtime
