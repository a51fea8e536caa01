#include "app/gateway.h"

#include <charconv>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "control/profiler/profiler_routes.h"
#include "core/clock.h"
#include "runtime/extensions.h"

namespace tianhe::app {

namespace {

using Json = nlohmann::json;

}  // namespace

Result<std::unique_ptr<Gateway>> Gateway::start(const control::GatewayConfig& config) {
  std::unique_ptr<Gateway> g(new Gateway());
  g->config_ = config;
  g->started_ns_ = core::wall_ns();
  auto registry = pipeline::Registry::build(config.registry, config.models, config.devices);
  if (!registry.ok()) return registry.error();
  runtime::DataPlaneOptions o;
  o.data_dir = config.data_dir;
  o.shards = config.shards;
  o.receive_window = config.receive_window;
  o.log = config.log;
  o.registry = registry.value();
  o.tables = config.extensions;
  auto data = runtime::DataPlane::open(std::move(o), runtime::builtin_extensions());
  if (!data.ok()) return data.error();
  g->data_ = std::move(data.value());
  // Spans are exported once an endpoint is configured; the rings exist by now (shards, sinks).
  if (const runtime::Tracing& t = *g->data_->tracing(); t.recording()) {
    control::otlp::OtlpExporterOptions eo;
    eo.endpoint = t.options().endpoint;
    eo.timeout = std::chrono::milliseconds(t.options().export_timeout_ns / 1'000'000);
    eo.flush_interval = std::chrono::milliseconds(t.options().export_interval_ns / 1'000'000);
    g->exporter_ =
        std::make_unique<control::otlp::OtlpExporter>(std::move(eo), t.options().service_instance);
    if (auto r = g->exporter_->start(t.rings()); !r.ok()) {
      g->data_->stop();
      return r.error();
    }
  }
  g->register_collectors();
  if (config.http.enabled) {
    if (auto r = g->start_http(); !r.ok()) {
      g->data_->stop();
      return r.error();
    }
  }
  g->data_->start_shards();
  return g;
}

Gateway::~Gateway() {
  stop();
}

void Gateway::stop() noexcept {
  if (stopped_) return;
  stopped_ = true;
  // A running profile ends now: shutdown does not wait for it (its request gets what was
  // collected, or 503 from the stopping server).
  control::profiler::cancel_running_profile();
  if (http_) http_->stop();
  if (data_) data_->stop();
  // After the shards and sinks: their last spans are in the rings.
  if (exporter_) exporter_->stop(std::chrono::milliseconds(2'000));
}

uint16_t Gateway::http_port() const noexcept {
  return http_ ? http_->port() : 0;
}

void Gateway::register_collectors() {
  metrics_.add([this](core::PromWriter& w) {
    data_->collect(w);
    if (exporter_) exporter_->collect(w);
    if (http_) http_->collect(w);
  });
}

std::string Gateway::debug_shards_json() const {
  Json arr = Json::array();
  const Json diagnosis = data_->diagnosis("shards");  // busy %, batch sizes, rates
  for (uint32_t i = 0; i < data_->shard_count(); ++i) {
    Json shard{{"shard", i}};
    for (const auto& [k, v] : data_->debug(i)) shard[k] = v;
    if (i < diagnosis["shards"].size()) shard.update(diagnosis["shards"][i]);
    arr.push_back(std::move(shard));
  }
  return Json{{"shards", arr}, {"window_seconds", diagnosis["window_seconds"]}}.dump(2);
}

// GET /debug/sessions?protocol=NAME[&after=CURSOR][&limit=N]: one page of a protocol's
// sessions (at most 1000), shard after shard; `next` is the cursor of the following page.
control::HttpResponse Gateway::debug_sessions(const control::HttpRequest& req) const {
  const std::string protocol = req.query_param("protocol");
  if (protocol.empty()) {
    return control::HttpResponse::error(
        400, "missing protocol; ask /debug/sessions?protocol=NAME, NAME a running protocol");
  }
  auto number = [&](std::string_view key, uint64_t fallback) -> Result<uint64_t> {
    const std::string text = req.query_param(key);
    if (text.empty()) return fallback;
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) {
      return make_error(std::string(key) + ": expected a non-negative integer; got \"" + text +
                        "\"");
    }
    return v;
  };
  auto after = number("after", 0);
  if (!after.ok()) return control::HttpResponse::error(400, after.error().message);
  auto limit = number("limit", 100);
  if (!limit.ok()) return control::HttpResponse::error(400, limit.error().message);
  if (*limit == 0 || *limit > runtime::kMaxSessionPage) {
    return control::HttpResponse::error(400, "limit: between 1 and " +
                                                 std::to_string(runtime::kMaxSessionPage) +
                                                 "; got " + std::to_string(*limit));
  }
  auto page = data_->sessions(protocol, *after, static_cast<uint32_t>(*limit));
  if (!page.ok()) {
    const bool unknown = page.error().message.find("is not running") != std::string::npos;
    return control::HttpResponse::error(unknown ? 404 : 503, page.error().message);
  }
  std::string body = "{\"protocol\":" + Json(protocol).dump() +
                     ",\"total\":" + std::to_string(page->total) + ",\"sessions\":[";
  for (size_t i = 0; i < page->sessions.size(); ++i) {
    if (i) body += ",";
    body += page->sessions[i];
  }
  body += "],\"next\":" + (page->more ? "\"" + std::to_string(page->next) + "\"" : "null") + "}";
  return control::HttpResponse{200, "application/json", std::move(body), {}};
}

std::string Gateway::sinks_json() const {
  Json arr = Json::array();
  const int64_t now = core::wall_ns();
  for (const auto& v : data_->sink_statuses()) {
    const runtime::SinkStatus& s = v.status;
    Json j{{"name", v.name},
           {"kind", v.kind},
           {"state", s.state},
           {"connected", s.connected},
           {"lag_bytes", s.lag_bytes},
           {"lag_reports", s.lag_reports},
           {"lag_seconds", s.lag_seconds},
           {"delivered", s.delivered},
           {"retries", s.retries},
           {"rejected", s.rejected},
           {"dead_lettered", s.dead_lettered},
           {"dropped", s.dropped},
           {"last_error", s.last_error}};
    if (s.last_error_ns > 0) {
      j["last_error_age_seconds"] = static_cast<double>(now - s.last_error_ns) / 1e9;
    }
    if (!s.dead_letter_path.empty()) j["dead_letter_file"] = s.dead_letter_path;
    arr.push_back(std::move(j));
  }
  return Json{{"sinks", arr}}.dump(2);
}

Result<void> Gateway::start_http() {
  http_ = std::make_unique<control::HttpServer>();
  if (auto r = data_->add_routes(*http_); !r.ok()) return r.error();
  http_->route("GET", "/metrics", [this](const control::HttpRequest&) {
    control::HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_.render();
    return r;
  });
  http_->route("GET", "/healthz", [](const control::HttpRequest&) {
    return control::HttpResponse{200, "application/json", R"({"status":"ok"})", {}};
  });
  http_->route("GET", "/debug/totals", [this](const control::HttpRequest&) {
    return control::HttpResponse{200, "application/json", data_->totals().json(), {}};
  });
  http_->route("GET", "/api/v1/sinks", [this](const control::HttpRequest&) {
    return control::HttpResponse{200, "application/json", sinks_json(), {}};
  });
  http_->route("GET", "/debug/shards", [this](const control::HttpRequest&) {
    return control::HttpResponse{200, "application/json", debug_shards_json(), {}};
  });
  // Self-diagnosis (runtime::DataPlane::diagnosis): one part each, and all of them for top.
  for (const char* part : {"stages", "codecs", "sinks"}) {
    http_->route("GET", std::string("/debug/") + part, [this, part](const control::HttpRequest&) {
      return control::HttpResponse{200, "application/json", data_->diagnosis(part).dump(2), {}};
    });
  }
  http_->route("GET", "/debug/top", [this](const control::HttpRequest&) {
    Json j = data_->diagnosis("");
    j["uptime_seconds"] = static_cast<double>(core::wall_ns() - started_ns_) / 1e9;
    return control::HttpResponse{200, "application/json", j.dump(2), {}};
  });
  http_->route("GET", "/debug/sessions",
               [this](const control::HttpRequest& req) { return debug_sessions(req); });
  control::profiler::add_routes(*http_);  // /debug/pprof/profile, /debug/heap
  http_->route("GET", "/api/v1/devices/{id}", [this](const control::HttpRequest& req) {
    auto id = core::positive_id_param(req, "id", "device id");
    if (!id.ok()) return control::HttpResponse::error(400, id.error().message);
    const pipeline::DeviceEntry* d = data_->registry().find(*id);
    if (d == nullptr) return control::HttpResponse::error(404, "device not registered");
    const pipeline::Model& m = data_->registry().model(d->model);
    Json metrics = Json::array();
    for (const auto& mm : m.metrics()) {
      metrics.push_back({{"name", mm.name},
                         {"type", std::string(core::value_type_name(mm.type))},
                         {"unit", mm.unit},
                         {"required", mm.required}});
    }
    Json j{{"device_id", *id},
           {"tenant", data_->registry().tenant_name(d->tenant)},
           {"model", m.name()},
           {"metrics", metrics}};
    return control::HttpResponse{200, "application/json", j.dump(), {}};
  });
  // The fate of one report: from the shards' per-device fate tables and the durability and
  // delivery histories (runtime/tracing.h), sampled or not.
  http_->route(
      "GET", "/api/v1/devices/{id}/reports/{seq}/trace", [this](const control::HttpRequest& req) {
        auto id = core::positive_id_param(req, "id", "device id");
        if (!id.ok()) return control::HttpResponse::error(400, id.error().message);
        const std::string seq_text = req.param("seq");
        uint64_t seq = 0;
        const auto [end, ec] =
            std::from_chars(seq_text.data(), seq_text.data() + seq_text.size(), seq);
        if (ec != std::errc() || end != seq_text.data() + seq_text.size() || seq > UINT32_MAX) {
          return control::HttpResponse::error(
              400, "seq must be a report sequence number (0..4294967295)");
        }
        std::string body = data_->tracing()->fate_json(*id, static_cast<uint32_t>(seq));
        const bool found = body.find("\"found\":true") != std::string::npos;
        return control::HttpResponse{found ? 200 : 404, "application/json", std::move(body), {}};
      });
  http_->route("GET", "/", [](const control::HttpRequest&) {
    control::HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body =
        "<!doctype html><title>Tianhe</title><h1>Tianhe</h1><ul>"
        "<li><a href=\"/metrics\">/metrics</a> (Prometheus)</li>"
        "<li><a href=\"/api/v1/stats\">/api/v1/stats</a></li>"
        "<li><a href=\"/api/v1/sinks\">/api/v1/sinks</a> (each sink's state, lag, last error)</li>"
        "<li>/api/v1/devices/{id}, /api/v1/devices/{id}/latest, "
        "/api/v1/devices/{id}/reports?from=&amp;to=&amp;limit=, "
        "/api/v1/devices/{id}/reports/{seq}/trace (where that report went)</li>"
        "<li><a href=\"/debug/shards\">/debug/shards</a> (busy %, batch sizes, backlog)</li>"
        "<li><a href=\"/debug/stages\">/debug/stages</a> (the slowest stages now), "
        "<a href=\"/debug/codecs\">/debug/codecs</a>, <a href=\"/debug/sinks\">/debug/sinks</a>, "
        "<a href=\"/debug/top\">/debug/top</a> (all of them: tianhe top)</li>"
        "<li>/debug/sessions?protocol=NAME&amp;after=&amp;limit= (a protocol's sessions)</li>"
        "<li>/debug/pprof/profile?seconds=30 (a CPU profile for google-pprof; 1..60 s)</li>"
        "<li><a href=\"/debug/heap\">/debug/heap</a> (heap statistics)</li>"
        "</ul>";
    return r;
  });
  http_->set_idle_timeout(config_.http.idle_timeout);
  http_->set_request_timeout(config_.http.request_timeout);
  return http_->start(config_.http.listen, config_.http.max_connections);
}

}  // namespace tianhe::app
