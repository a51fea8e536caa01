// Registration of the webhook sink: its table, the factory of its writer (which checks the
// configuration without connecting) and its ceiling for `tianhe bench --sinks`.
#include <filesystem>

#include "runtime/extensions.h"
#include "sinks/common/delivery_sink.h"
#include "sinks/webhook/webhook_ceiling.h"
#include "sinks/webhook/webhook_config.h"
#include "sinks/webhook/webhook_writer.h"

namespace tianhe::sinks::webhook {
namespace {

Result<std::unique_ptr<SinkWriter>> make_writer(const WebhookConfig& config,
                                                const DeliveryContext& context) {
  auto settings = validate(config, context.header);
  if (!settings) return settings.error();
  const std::string cursor =
      (std::filesystem::path(context.gateway.data_dir) / "sinks" / (context.instance + ".cursor"))
          .string();
  return std::unique_ptr<SinkWriter>(new WebhookWriter(
      std::move(settings.value()), context.instance, cursor, context.gateway.registry));
}

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  register_delivery_sink<WebhookConfig>(extensions, "webhook", config_table(), make_writer,
                                        ceiling);
}

}  // namespace tianhe::sinks::webhook
