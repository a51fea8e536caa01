// The store's registration: the one line `th_extension(sinks/store)` in src/extensions.cmake.
#include <algorithm>

#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/store/store_api.h"
#include "sinks/store/store_config.h"
#include "sinks/store/store_query.h"
#include "sinks/store/store_sink.h"

namespace tianhe::sinks::store {
namespace {

class StoreSinkInstance final : public runtime::SinkInstance {
 public:
  StoreSinkInstance(std::unique_ptr<StoreSink> sink, std::string dir,
                    std::shared_ptr<const pipeline::Registry> registry)
      : sink_(std::move(sink)), dir_(std::move(dir)), registry_(std::move(registry)) {}
  void stop() override { sink_->stop(); }
  void collect(core::PromWriter& w) const override { sink_->collect(w); }
  uint64_t lag_bytes() const override { return sink_->lag_bytes(); }
  runtime::SinkStatus status() const override { return consumer_status(sink_->consumer()); }
  void add_totals(runtime::Totals& t) const override {
    t.sink_lag_bytes += sink_->lag_bytes();
    t.sink_lag_seconds = std::max(t.sink_lag_seconds, sink_->lag_seconds());
    t.sink_background_work +=
        static_cast<uint64_t>(sink_->stats().unmerged_chunks.load(std::memory_order_relaxed));
  }
  Result<void> add_routes(core::HttpRoutes& routes) override {
    auto api = StoreApi::open(dir_, registry_);
    if (!api.ok()) return api.error();
    api_ = std::move(api.value());
    api_->add_routes(routes);
    return {};
  }

 private:
  std::unique_ptr<StoreSink> sink_;
  std::string dir_;
  std::shared_ptr<const pipeline::Registry> registry_;
  std::unique_ptr<StoreApi> api_;  ///< outlives the HTTP server (stopped first)
};

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  runtime::SinkSpec spec;
  spec.name = "store";
  spec.config = config_table();
  spec.enabled = [](const std::any& c) { return std::any_cast<const StoreConfig&>(c).enabled; };
  spec.start = [](const std::any& c, const runtime::GatewayContext& gateway,
                  std::string_view) -> Result<std::unique_ptr<runtime::SinkInstance>> {
    const auto& config = std::any_cast<const StoreConfig&>(c);
    auto sink = StoreSink::start(config, gateway.log, gateway.logs, gateway.tracing);
    if (!sink) return sink.error();
    return std::unique_ptr<runtime::SinkInstance>(
        new StoreSinkInstance(std::move(sink.value()), config.dir, gateway.registry));
  };
  extensions.add_sink(std::move(spec));
  extensions.add_command({.name = "query",
                          .summary = "read stored reports (history, latest, counts) as a table, "
                                     "JSON or CSV",
                          .run = cmd_query});
}

}  // namespace tianhe::sinks::store
