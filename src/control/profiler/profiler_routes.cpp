// /debug/pprof/profile is a deferred route (core::HttpRoutes::route_deferred): the handler
// starts the profile on the profiler's own thread and returns, and the profiler's callback
// answers through the HttpResponder. The server thread meanwhile answers everything else
// (/metrics, a second profile's 409).
#include "control/profiler/profiler_routes.h"

#include <charconv>
#include <ctime>
#include <memory>
#include <optional>
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

// The options a request asks for, or the 400 that names `seconds` (out-of-range values are
// refused by the profiler itself, with the same key named).
std::optional<core::HttpResponse> parse_options(const core::HttpRequest& req,
                                                CpuProfileOptions& options) {
  const std::string text = req.query_param("seconds");
  if (text.empty()) return std::nullopt;
  int64_t seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return core::HttpResponse::error(
        400, "seconds: expected a whole number of seconds between " +
                 std::to_string(kMinProfileDuration.count()) + " and " +
                 std::to_string(kMaxProfileDuration.count()) + "; got \"" + text + "\"");
  }
  options.duration = std::chrono::seconds(seconds);
  return std::nullopt;
}

// A finished profile (or its failure) as the HTTP answer.
core::HttpResponse result_response(CpuProfileResult r) {
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

}  // namespace

core::HttpResponse profile_response(const core::HttpRequest& req) {
  CpuProfileOptions options;
  if (auto bad = parse_options(req, options)) return std::move(*bad);
  return result_response(CpuProfiler::instance().run(options));
}

void start_profile(const core::HttpRequest& req, core::HttpResponder respond) {
  CpuProfileOptions options;
  if (auto bad = parse_options(req, options)) {
    respond(std::move(*bad));
    return;
  }
  // CpuProfileDone is a std::function, which needs a copyable callable: the responder is
  // shared by the callback's copies. If the profile never calls back, the last copy's end
  // abandons the request and the server answers 500.
  auto shared = std::make_shared<core::HttpResponder>(std::move(respond));
  CpuProfileResult started = CpuProfiler::instance().start(
      options, [shared](CpuProfileResult r) { (*shared)(result_response(std::move(r))); });
  // Not started (busy: 409, invalid: 400, unsupported: 501): the callback is never called.
  if (started.status != ProfileStatus::kOk) (*shared)(result_response(std::move(started)));
}

void cancel_running_profile() noexcept {
  CpuProfiler::instance().cancel();
}

core::HttpResponse heap_response() {
  return core::HttpResponse{200, "application/json", heap_stats_json(read_heap_stats()), {}};
}

void add_routes(core::HttpRoutes& routes) {
  routes.route_deferred("GET", "/debug/pprof/profile",
                        [](const core::HttpRequest& req, core::HttpResponder respond) {
                          start_profile(req, std::move(respond));
                        });
  routes.route("GET", "/debug/heap", [](const core::HttpRequest&) { return heap_response(); });
}

}  // namespace tianhe::control::profiler
