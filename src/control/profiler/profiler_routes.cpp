// The control plane's HTTP server runs its handlers on its one thread (http_server.h), so the
// profile handler holds that thread for the profile's duration: other requests (/metrics too)
// wait and are answered when the profile ends. The duration is bounded (60 s) for that reason;
// README.md says what the server needs for the profile to wait off its thread.
#include "control/profiler/profiler_routes.h"

#include <charconv>
#include <ctime>
#include <string>

#include "control/profiler/cpu_profiler.h"
#include "control/profiler/heap_stats.h"

namespace tianhe::control::profiler {

namespace {

int status_code(ProfileStatus s) {
  switch (s) {
    case ProfileStatus::kOk: return 200;
    case ProfileStatus::kBusy: return 409;
    case ProfileStatus::kInvalid: return 400;
    case ProfileStatus::kUnsupported: return 501;
    case ProfileStatus::kFailed: return 500;
  }
  return 500;
}

}  // namespace

core::HttpResponse profile_response(const core::HttpRequest& req) {
  CpuProfileOptions options;
  const std::string text = req.query_param("seconds");
  if (!text.empty()) {
    int64_t seconds = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return core::HttpResponse::error(
          400, "seconds: expected a whole number of seconds between " +
                   std::to_string(kMinProfileDuration.count()) + " and " +
                   std::to_string(kMaxProfileDuration.count()) + "; got \"" + text + "\"");
    }
    options.duration = std::chrono::seconds(seconds);
  }
  CpuProfileResult r = CpuProfiler::instance().run(options);
  if (r.status != ProfileStatus::kOk)
    return core::HttpResponse::error(status_code(r.status), r.message);
  core::HttpResponse resp;
  resp.content_type = "application/octet-stream";
  resp.headers.emplace_back(
      "Content-Disposition",
      "attachment; filename=\"tianhe-" + std::to_string(std::time(nullptr)) + ".prof\"");
  const CpuProfileStats& s = r.stats;
  resp.headers.emplace_back("X-Tianhe-Profile-Samples", std::to_string(s.samples));
  resp.headers.emplace_back("X-Tianhe-Profile-Dropped-Samples",
                            std::to_string(s.dropped_buffer_full + s.dropped_table_full));
  resp.headers.emplace_back("X-Tianhe-Profile-Leaf-Only-Samples", std::to_string(s.leaf_only));
  resp.headers.emplace_back("X-Tianhe-Profile-Threads", std::to_string(s.threads_sampled));
  resp.headers.emplace_back("X-Tianhe-Profile-Unsampled-Threads",
                            std::to_string(s.threads_unsampled));
  resp.headers.emplace_back("X-Tianhe-Profile-Stacks", std::to_string(s.distinct_stacks));
  resp.body = std::move(r.bytes);
  return resp;
}

core::HttpResponse heap_response() {
  return core::HttpResponse{200, "application/json", heap_stats_json(read_heap_stats()), {}};
}

void add_routes(core::HttpRoutes& routes) {
  routes.route("GET", "/debug/pprof/profile",
               [](const core::HttpRequest& req) { return profile_response(req); });
  routes.route("GET", "/debug/heap", [](const core::HttpRequest&) { return heap_response(); });
}

}  // namespace tianhe::control::profiler
