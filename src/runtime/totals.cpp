#include "runtime/totals.h"

#include <nlohmann/json.hpp>

namespace tianhe::runtime {

void Totals::add(std::vector<uint64_t>& into, const core::Log2Histogram& h) {
  for (int i = 0; i < core::Log2Histogram::kBuckets; ++i) into[i] += h.bucket(i);
}

std::string Totals::json() const {
  return nlohmann::json{
      {"reports_accepted", reports_accepted}, {"log_appended_bytes", log_appended_bytes},
      {"heap_allocations", heap_allocations}, {"input_drops", input_drops},
      {"acks_dropped", acks_dropped},         {"sink_lag_bytes", sink_lag_bytes},
      {"sink_lag_seconds", sink_lag_seconds}, {"sink_background_work", sink_background_work},
      {"log_fsync_us", log_fsync_us},         {"ack_latency_us", ack_latency_us}}
      .dump();
}

Result<Totals> Totals::parse(std::string_view text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("totals: not a JSON object");
  Totals t;
  const auto get = [&](const char* key, auto& out) -> bool {
    auto it = j.find(key);
    if (it == j.end()) return false;
    try {
      it->get_to(out);
    } catch (const nlohmann::json::exception&) {
      return false;
    }
    return true;
  };
  for (auto [key, ok] :
       {std::pair{"reports_accepted", get("reports_accepted", t.reports_accepted)},
        {"log_appended_bytes", get("log_appended_bytes", t.log_appended_bytes)},
        {"heap_allocations", get("heap_allocations", t.heap_allocations)},
        {"input_drops", get("input_drops", t.input_drops)},
        {"acks_dropped", get("acks_dropped", t.acks_dropped)},
        {"sink_lag_bytes", get("sink_lag_bytes", t.sink_lag_bytes)},
        {"sink_lag_seconds", get("sink_lag_seconds", t.sink_lag_seconds)},
        {"sink_background_work", get("sink_background_work", t.sink_background_work)},
        {"log_fsync_us", get("log_fsync_us", t.log_fsync_us)},
        {"ack_latency_us", get("ack_latency_us", t.ack_latency_us)}}) {
    if (!ok) return make_error(std::string("totals: missing or invalid \"") + key + "\"");
  }
  for (const auto* h : {&t.log_fsync_us, &t.ack_latency_us}) {
    if (h->size() != static_cast<size_t>(core::Log2Histogram::kBuckets)) {
      return make_error("totals: a histogram has " + std::to_string(h->size()) + " buckets, not " +
                        std::to_string(core::Log2Histogram::kBuckets));
    }
  }
  return t;
}

}  // namespace tianhe::runtime
