// The store's HTTP API: history, latest and counts of stored reports (/api/v1/devices/{id}/reports,
// /api/v1/devices/{id}/latest, /api/v1/stats). Added by the store sink to the gateway's server.
#pragma once

#include <memory>
#include <string>

#include "core/http_api.h"
#include "core/result.h"
#include "pipeline/registry.h"

namespace tianhe::sinks::store {

class StoreReader;

/// The store's routes over one reader. Must outlive the server it adds routes to.
class StoreApi {
 public:
  /// Opens a reader of the store in `dir`; `registry` names tenants (may be null).
  static Result<std::unique_ptr<StoreApi>> open(const std::string& dir,
                                                std::shared_ptr<const pipeline::Registry> registry);
  ~StoreApi();
  /// Adds the routes.
  void add_routes(core::HttpRoutes& routes);

 private:
  StoreApi() = default;
  std::unique_ptr<StoreReader> reader_;
  std::shared_ptr<const pipeline::Registry> registry_;
};

}  // namespace tianhe::sinks::store
