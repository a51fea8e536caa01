// Registration of the NATS JetStream sink: its table, its writer, its ceiling.
#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/nats/nats_config.h"
#include "sinks/nats/nats_writer.h"

namespace tianhe::sinks::nats {

void register_extension(runtime::Extensions& extensions) {
  register_delivery_sink<NatsConfig>(extensions, "nats", config_table(), make_writer, ceiling);
}

}  // namespace tianhe::sinks::nats
