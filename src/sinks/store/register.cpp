// The store's registration: the one line `th_extension(sinks/store)` in src/extensions.cmake.
#include "runtime/extensions.h"
#include "sinks/store/store_config.h"
#include "sinks/store/store_sink.h"

namespace tianhe::sinks::store {
namespace {

class StoreSinkInstance final : public runtime::SinkInstance {
 public:
  explicit StoreSinkInstance(std::unique_ptr<StoreSink> sink) : sink_(std::move(sink)) {}
  void stop() override { sink_->stop(); }
  void collect(core::PromWriter& w) const override { sink_->collect(w); }
  uint64_t lag_bytes() const override { return sink_->lag_bytes(); }

 private:
  std::unique_ptr<StoreSink> sink_;
};

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  runtime::SinkSpec spec;
  spec.name = "store";
  spec.config = config_table();
  spec.enabled = [](const std::any& c) { return std::any_cast<const StoreConfig&>(c).enabled; };
  spec.start =
      [](const std::any& c,
         const runtime::GatewayContext& gateway) -> Result<std::unique_ptr<runtime::SinkInstance>> {
    auto sink = StoreSink::start(std::any_cast<const StoreConfig&>(c), gateway.log, gateway.logs);
    if (!sink) return sink.error();
    return std::unique_ptr<runtime::SinkInstance>(new StoreSinkInstance(std::move(sink.value())));
  };
  extensions.add_sink(std::move(spec));
}

}  // namespace tianhe::sinks::store
