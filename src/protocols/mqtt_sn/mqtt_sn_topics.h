// Topic names to devices: the `topics` template ("{tenant}/{device}/telemetry") matched against
// a registered or predefined topic name, and the predefined topic list. Pure, no I/O; built once
// from the config and shared read-only by every shard.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace tianhe::protocols::mqtt_sn {

/// What a topic name says about its sender.
struct TopicMatch {
  bool matched = false;     ///< the name follows the template
  uint64_t device_id = 0;   ///< from {device} (0: the template has none)
  std::string_view tenant;  ///< from {tenant} (empty: the template has none)
};

/// A compiled `topics` template: literal text with at most one {tenant} and one {device}.
class TopicTemplate {
 public:
  /// Compiles `text`; an error names protocols.mqtt_sn.topics and the fix.
  static Result<TopicTemplate> parse(std::string_view text);
  /// Matches `topic` (noexcept, no allocation): {device} is a decimal id (1..2^64-1, no sign,
  /// no leading zero), {tenant} a non-empty segment without '/'.
  TopicMatch match(std::string_view topic) const noexcept;
  /// Whether the template names the device.
  bool has_device() const noexcept { return has_device_; }
  /// The topic name of `device` in `tenant` (simulator, docs).
  std::string render(std::string_view tenant, uint64_t device) const;

 private:
  enum class Part : uint8_t { kLiteral, kTenant, kDevice };
  struct Piece {
    Part part = Part::kLiteral;
    std::string text;  ///< kLiteral only
  };
  std::vector<Piece> pieces_;
  bool has_device_ = false;
};

/// One predefined topic (§2.2: an id both sides know in advance).
struct PredefinedTopic {
  uint16_t id = 0;
  std::string name;
};

/// Parses `predefined_topics` ("1=acme/7/telemetry, 2=status"): ids 1..65534, unique.
Result<std::vector<PredefinedTopic>> parse_predefined_topics(std::string_view text);

/// Device id from a client id's trailing decimal digits ("sensor-42" -> 42; 0: none).
uint64_t device_from_client_id(std::string_view client_id) noexcept;

}  // namespace tianhe::protocols::mqtt_sn
