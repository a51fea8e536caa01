// The HTTP face of the profiler: GET /debug/pprof/profile?seconds=N (a CPU profile in the
// gperftools format, for google-pprof) and GET /debug/heap (heap statistics as JSON).
#pragma once

#include "core/http_api.h"

namespace tianhe::control::profiler {

/// Adds GET /debug/pprof/profile and GET /debug/heap to `routes`.
void add_routes(core::HttpRoutes& routes);

/// Answers /debug/pprof/profile: runs a profile of `seconds` (1..60, default 30) and returns
/// it (application/octet-stream, attachment tianhe-<unix time>.prof, X-Tianhe-Profile-*
/// headers with the counts); 400 for a bad `seconds`, 409 while another profile runs, 501
/// where profiling is unsupported. Blocks the calling thread for the profile's duration.
core::HttpResponse profile_response(const core::HttpRequest& req);

/// The deferred form the route uses: answers a bad request through `respond` at once, or
/// starts the profile and returns; the profiler's thread answers through `respond` when it
/// ends. Same responses as profile_response(); a profile already running is a 409 at once.
void start_profile(const core::HttpRequest& req, core::HttpResponder respond);

/// Ends a running profile early (its request is answered with what was collected): for
/// shutdown, which then need not wait up to a profile's length.
void cancel_running_profile() noexcept;

/// Answers /debug/heap with heap_stats_json(read_heap_stats()).
core::HttpResponse heap_response();

}  // namespace tianhe::control::profiler
