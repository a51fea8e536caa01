#include "sinks/store/store_api.h"

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/args.h"
#include "core/clock.h"
#include "sinks/store/store.h"

namespace tianhe::sinks::store {
namespace {

using core::format_time;
using core::parse_time;
using Json = nlohmann::json;

Json report_json(const StoredReport& r, const pipeline::Registry* registry) {
  Json j;
  j["device_id"] = r.device_id;
  j["seq"] = r.seq;
  j["time"] = format_time(r.device_time_ns);
  j["time_ns"] = r.device_time_ns;
  j["received_ns"] = r.received_ns;
  // The tenant's name while the registry knows its index (a store may outlive a config).
  j["tenant"] = registry != nullptr && r.tenant < registry->tenant_count()
                    ? registry->tenant_name(r.tenant)
                    : std::to_string(r.tenant);
  j["protocol"] = std::string(core::protocol_name(r.protocol));
  j["metrics"] = Json::parse(metrics_json(r.raw_metrics));
  return j;
}

}  // namespace

Result<std::unique_ptr<StoreApi>> StoreApi::open(
    const std::string& dir, std::shared_ptr<const pipeline::Registry> registry) {
  auto reader = StoreReader::open(dir);
  if (!reader.ok()) return reader.error();
  std::unique_ptr<StoreApi> api(new StoreApi());
  api->reader_ = std::move(reader.value());
  api->registry_ = std::move(registry);
  return api;
}

StoreApi::~StoreApi() = default;

void StoreApi::add_routes(core::HttpRoutes& routes) {
  routes.route("GET", "/api/v1/devices/{id}/reports", [this](const core::HttpRequest& req) {
    auto id = core::positive_id_param(req, "id", "device id");
    if (!id.ok()) return core::HttpResponse::error(400, id.error().message);
    const int64_t now = core::wall_ns();
    HistoryQuery q;
    q.device_id = *id;
    if (auto f = req.query_param("from"); !f.empty()) {
      auto t = parse_time(f, now, "from");
      if (!t.ok()) return core::HttpResponse::error(400, t.error().message);
      q.from_ns = *t;
    }
    if (auto f = req.query_param("to"); !f.empty()) {
      auto t = parse_time(f, now, "to");
      if (!t.ok()) return core::HttpResponse::error(400, t.error().message);
      q.to_ns = *t;
    }
    if (auto f = req.query_param("limit"); !f.empty()) {
      char* end = nullptr;
      unsigned long v = std::strtoul(f.c_str(), &end, 10);
      if (*end != '\0' || v == 0 || v > 100000) {
        return core::HttpResponse::error(400, "limit: use a number from 1 to 100000");
      }
      q.limit = static_cast<uint32_t>(v);
    }
    q.newest_first = req.query_param("order", "asc") == "desc";
    auto rows = reader_->history(q);
    if (!rows.ok()) return core::HttpResponse::error(500, rows.error().message);
    Json arr = Json::array();
    for (const auto& r : *rows) arr.push_back(report_json(r, registry_.get()));
    Json j{{"device_id", *id}, {"count", arr.size()}, {"reports", arr}};
    return core::HttpResponse{200, "application/json", j.dump(), {}};
  });
  routes.route("GET", "/api/v1/devices/{id}/latest", [this](const core::HttpRequest& req) {
    auto id = core::positive_id_param(req, "id", "device id");
    if (!id.ok()) return core::HttpResponse::error(400, id.error().message);
    auto r = reader_->latest(*id);
    if (!r.ok()) return core::HttpResponse::error(500, r.error().message);
    if (!r->has_value()) {
      return core::HttpResponse::error(404, "no report stored for this device yet");
    }
    return core::HttpResponse{
        200, "application/json", report_json(**r, registry_.get()).dump(), {}};
  });
  routes.route("GET", "/api/v1/stats", [this](const core::HttpRequest&) {
    auto c = reader_->counts();
    if (!c.ok()) return core::HttpResponse::error(500, c.error().message);
    Json j{{"reports", c->reports},
           {"devices", c->devices},
           {"chunks", c->chunks},
           {"bytes", c->bytes},
           {"registered_devices", (registry_ ? registry_->device_count() : 0)}};
    return core::HttpResponse{200, "application/json", j.dump(), {}};
  });
}

}  // namespace tianhe::sinks::store
