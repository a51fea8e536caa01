// The codec stage: a payload's bytes plus what is known of its sender become a report's
// metrics, or a counted failure. Protocols that carry opaque payloads (MQTT, MQTT-SN, LoRaWAN)
// hand them to the codec the device's model names; built-in codecs live in src/codecs/<name>/
// and register with runtime::Extensions. A codec instance belongs to one shard thread.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "core/report.h"

namespace tianhe::pipeline {

/// What the protocol knows of a payload.
struct CodecContext {
  uint64_t device_id = 0;
  uint8_t fport = 0;        ///< LoRaWAN FPort (0 elsewhere)
  int64_t received_ns = 0;  ///< gateway wall clock at receive
  std::string_view topic;   ///< MQTT / MQTT-SN topic, when there is one
};

/// Outcome of one decode.
enum class DecodeStatus : uint8_t {
  kOk,
  kMalformed,       ///< the payload breaks the codec's format
  kTooManyMetrics,  ///< more metrics than the batch or a report can hold
  kTooLarge,        ///< its names and strings exceed the codec's per-batch text storage
  kTimeout,         ///< a user codec ran past its time budget and was stopped
  kOutOfMemory,     ///< a user codec ran past its memory budget (or the engine's) and was stopped
  kThrown,          ///< a user codec threw (an error, too much recursion) or failed to load
  kOutputTooLarge,  ///< a user codec's result exceeds its output cap
  kCount,
};

/// The snake_case name of a decode status (a metric label): "ok", "malformed", ...
std::string_view decode_status_name(DecodeStatus s) noexcept;

/// A payload codec. decode() is on the hot path: noexcept, no allocation in steady state.
class Codec {
 public:
  virtual ~Codec() = default;
  /// Appends the metrics of `payload` to `batch` as report `r`'s (sets r.metric_begin and
  /// r.metric_count; may set r.seq, r.device_time_ns when the payload carries them). On
  /// failure nothing is appended. Strings and names may view into `payload`.
  virtual DecodeStatus decode(std::span<const uint8_t> payload, const CodecContext& context,
                              core::ReportBatch& batch, core::Report& r) noexcept = 0;
  /// The batch the decoded metrics went into has been appended (or dropped): storage the codec
  /// kept for their names and strings (dotted JSON names, unescaped strings, hex text) may be
  /// reused. A codec whose metrics only view into the payload needs nothing here.
  virtual void batch_done() noexcept {}
};

}  // namespace tianhe::pipeline
