// Registration of the PostgreSQL sink: [sinks.postgres] and its instances, the writer factory
// (checks the configuration without connecting) and the ceiling for `tianhe bench --sinks`.
#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/postgres/postgres_config.h"
#include "sinks/postgres/postgres_writer.h"

namespace tianhe::sinks::postgres {

void register_extension(runtime::Extensions& extensions) {
  WriterFactory<PostgresConfig> factory =
      [](const PostgresConfig& c,
         const DeliveryContext& context) -> Result<std::unique_ptr<SinkWriter>> {
    auto spec = connect_spec(c, context.header);
    if (!spec) return spec.error();
    if (context.gateway.registry) {
      if (std::string e = check_layout(c, *context.gateway.registry, context.header); !e.empty()) {
        return make_error(e);
      }
    }
    return std::unique_ptr<SinkWriter>(
        new PostgresWriter(c, std::move(spec.value()), context.instance, context.gateway.registry,
                           context.cursor_name));
  };
  CeilingFunction<PostgresConfig> measure = [](const PostgresConfig& c,
                                               const runtime::GatewayContext& gateway,
                                               uint64_t reports) -> Result<double> {
    auto spec = connect_spec(c, "sinks.postgres");
    if (!spec) return spec.error();
    if (!gateway.registry) return make_error("sinks.postgres: no registry to take devices from");
    return ceiling(c, spec.value(), *gateway.registry, reports);
  };
  register_delivery_sink<PostgresConfig>(extensions, "postgres", config_table(), factory, measure);
}

}  // namespace tianhe::sinks::postgres
