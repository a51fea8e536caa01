// Registration of a delivering sink (mysql, postgres, redis_streams, nats, webhook, ...): the
// sink gives its table (sink_table(), with the SinkOptions keys) and a function that makes its
// writer; this makes the rest the same for all of them: its named instances, a log consumer per
// instance that starts even while the server is down, the backlog limit and policy, the
// dead-letter file, the metrics, and the state `GET /api/v1/sinks` and `tianhe sinks` show.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "runtime/extensions.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/sink_options.h"

namespace tianhe::sinks {

/// What a writer is made with.
struct DeliveryContext {
  const runtime::GatewayContext& gateway;
  std::string instance;  ///< "mysql", or "mysql.archive" for [sinks.mysql.archive]
  std::string header;    ///< "sinks.mysql.archive": names keys in errors
  /// The name a sink keys its cursors by in a shared engine: "<instance>@<log id>" (a SQL
  /// row, a Redis key), so that gateways sharing one engine each keep their own cursors.
  std::string cursor_name;
};

/// The state of a sink on `consumer` (for SinkInstance::status()).
runtime::SinkStatus consumer_status(const LogConsumer& consumer);

/// A running sink on a LogConsumer: its status from the consumer.
class ConsumerSinkInstance : public runtime::SinkInstance {
 public:
  explicit ConsumerSinkInstance(std::unique_ptr<LogConsumer> consumer)
      : consumer_(std::move(consumer)) {}
  void stop() override { consumer_->stop(); }
  void collect(core::PromWriter& w) const override { consumer_->collect(w); }
  uint64_t lag_bytes() const override { return consumer_->lag_bytes(); }
  void add_totals(runtime::Totals& t) const override;
  runtime::SinkStatus status() const override;
  const LogConsumer& consumer() const noexcept { return *consumer_; }

 private:
  std::unique_ptr<LogConsumer> consumer_;
};

/// Makes a sink's writer from its parsed table. Check the configuration here (the URL, the
/// password's source): an error fails the gateway's start with the key named. Do not connect:
/// SinkWriter::open() does, and is retried while the server is away.
template <typename T>
using WriterFactory =
    std::function<Result<std::unique_ptr<SinkWriter>>(const T& config, const DeliveryContext&)>;

/// `tianhe bench --sinks`: the engine's ceiling with a plain client (runtime::SinkSpec::ceiling).
template <typename T>
using CeilingFunction = std::function<Result<double>(
    const T& config, const runtime::GatewayContext& gateway, uint64_t reports)>;

/// Registers sink `kind` with `table` (from sink_table<T>()), `make_writer` and, optionally,
/// its ceiling for `tianhe bench --sinks`.
template <typename T>
void register_delivery_sink(runtime::Extensions& extensions, std::string_view kind,
                            config::ConfigTable table, WriterFactory<T> make_writer,
                            CeilingFunction<T> ceiling = nullptr);

/// The ConsumerOptions of a sink's SinkOptions.
ConsumerOptions consumer_options(const SinkOptions& o, const DeliveryContext& context);

// ---- implementation ----
Result<std::unique_ptr<runtime::SinkInstance>> start_delivery_sink(
    const SinkOptions& options, const DeliveryContext& context,
    Result<std::unique_ptr<SinkWriter>> writer);

template <typename T>
void register_delivery_sink(runtime::Extensions& extensions, std::string_view kind,
                            config::ConfigTable table, WriterFactory<T> make_writer,
                            CeilingFunction<T> ceiling) {
  runtime::SinkSpec spec;
  spec.name = kind;
  spec.config = std::move(table);
  spec.enabled = [](const std::any& c) { return std::any_cast<const T&>(c).sink.enabled; };
  spec.start = [make_writer](
                   const std::any& c, const runtime::GatewayContext& gateway,
                   std::string_view instance) -> Result<std::unique_ptr<runtime::SinkInstance>> {
    const T& config = std::any_cast<const T&>(c);
    DeliveryContext context{gateway, std::string(instance), "sinks." + std::string(instance),
                            std::string(instance) + "@" + gateway.log_id};
    return start_delivery_sink(config.sink, context, make_writer(config, context));
  };
  if (ceiling) {
    spec.ceiling = [ceiling](const std::any& c, const runtime::GatewayContext& gateway,
                             uint64_t reports) {
      return ceiling(std::any_cast<const T&>(c), gateway, reports);
    };
  }
  extensions.add_sink(std::move(spec));
}

}  // namespace tianhe::sinks
