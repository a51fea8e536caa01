// The pure parts of a webhook request: the JSON body of a batch, its Idempotency-Key, its
// signature, what a response's status means, a Retry-After's wait, and which reports of a
// batch are sent (device retransmissions the sink can see are skipped). No I/O: the writer
// (webhook_writer.h) sends what these build.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/report.h"
#include "pipeline/registry.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/seq_window_table.h"

namespace tianhe::sinks::webhook {

/// Appends `{"sink":"<instance>","records":[<record_json>,...]}` for reports[i] of every i in
/// `indices` (in that order) to `out`.
void append_body(std::string& out, std::string_view instance, std::span<const core::Report> reports,
                 std::span<const uint32_t> indices, const pipeline::Registry* registry);

/// The Idempotency-Key of a request carrying the reports from log position `first` to `last`:
/// "<instance>:<shard>.<offset>.<index>-<shard>.<offset>.<index>". The same for every retry of
/// one request, different for any other request of the instance.
std::string idempotency_key(std::string_view instance, const ReportPosition& first,
                            const ReportPosition& last);

/// Lower-case hex of HMAC-SHA256(`secret`, "<unix_seconds>.<body>").
std::string hmac_sha256_hex(std::string_view secret, int64_t unix_seconds, std::string_view body);

/// The X-Tianhe-Signature value: "t=<unix_seconds>,v1=<hmac_sha256_hex>".
std::string signature(std::string_view secret, int64_t unix_seconds, std::string_view body);

/// What an HTTP status means for a batch.
enum class Outcome : uint8_t {
  kDelivered,  ///< 2xx: the endpoint has it
  kTryLater,   ///< 408, 429, 5xx (and 1xx/3xx, which the sink does not follow): same batch again
  kRefused,    ///< any other 4xx: retried max_attempts times, then isolated and dead-lettered
};

/// The outcome of `status`.
Outcome classify(long status) noexcept;

/// Seconds to wait from a Retry-After value: delta-seconds ("120") or an HTTP-date (its
/// distance from `now_unix_seconds`), at most `max_seconds`; nullopt when absent or unreadable.
std::optional<int64_t> retry_after_seconds(std::string_view value, int64_t now_unix_seconds,
                                           int64_t max_seconds);

/// The reports of a batch to send, after the per-device sequence window: reports the window
/// has seen (a device's retransmission of a report the sink has taken) are left out. Marks the
/// sent ones as seen in `window`. Fills `out` with the indices to send (its storage is reused)
/// and returns how many were left out.
uint64_t select_new(std::span<const core::Report> reports, SeqWindowTable& window,
                    std::vector<uint32_t>& out);

}  // namespace tianhe::sinks::webhook
