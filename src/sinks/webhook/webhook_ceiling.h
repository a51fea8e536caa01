// `tianhe bench --sinks` for the webhook: the endpoint's own ceiling, measured without the
// gateway's consumer. A plain libcurl client (one handle, keep-alive) POSTs JSON batches of the
// sink's layout (batch_reports records each, for the registry's first devices and every metric
// of their model) to the configured URL, each awaited, and times them.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/result.h"
#include "runtime/extensions.h"
#include "sinks/webhook/webhook_config.h"

namespace tianhe::sinks::webhook {

/// The `sink` of the ceiling's requests: a receiver tells them from real deliveries (and drops
/// them: an endpoint has no scratch table to remove afterwards).
inline constexpr std::string_view kCeilingSink = "webhook.ceiling";

/// Rows per second of `reports` records POSTed to `config`'s endpoint.
Result<double> ceiling(const WebhookConfig& config, const runtime::GatewayContext& gateway,
                       uint64_t reports);

}  // namespace tianhe::sinks::webhook
