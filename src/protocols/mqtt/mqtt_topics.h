// Topic names to devices: the `topics` template ("{tenant}/{device}/telemetry"), whose
// placeholders each fill a whole topic level, becomes the subscription filter ("+/+/telemetry",
// optionally "$share/<group>/..." for MQTT 5 shared subscriptions) and is matched against the
// topic of every PUBLISH received. Pure, no I/O; built once from the config, shared read-only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace tianhe::protocols::mqtt {

/// What a topic name says about its sender.
struct TopicMatch {
  bool matched = false;     ///< the name follows the template
  uint64_t device_id = 0;   ///< from {device}
  std::string_view tenant;  ///< from {tenant} (empty: the template has none)
};

/// A compiled `topics` template: levels that are literal text, {tenant} or {device}.
class TopicTemplate {
 public:
  /// Compiles `text`: exactly one {device} level, at most one {tenant} level, no wildcards, no
  /// empty level; an error names protocols.mqtt.topics and the fix.
  static Result<TopicTemplate> parse(std::string_view text);
  /// Matches `topic` (noexcept, no allocation): {device} is a decimal id (1..2^64-1, no sign,
  /// no leading zero), {tenant} a non-empty level.
  TopicMatch match(std::string_view topic) const noexcept;
  /// The filter to subscribe with: each placeholder becomes `+`.
  std::string filter() const;
  /// The topic name of `device` in `tenant` (simulator, tests).
  std::string render(std::string_view tenant, uint64_t device) const;

 private:
  enum class Part : uint8_t { kLiteral, kTenant, kDevice };
  struct Level {
    Part part = Part::kLiteral;
    std::string text;  ///< kLiteral only
  };
  std::vector<Level> levels_;
};

/// The filter to subscribe with: `filter`, or "$share/<group>/<filter>" when `group` is set.
std::string subscription_filter(const TopicTemplate& t, std::string_view group);

/// Checks a shared subscription group name (MQTT 5 §4.8.2: no '/', '+' or '#', not empty).
bool valid_share_group(std::string_view group) noexcept;

}  // namespace tianhe::protocols::mqtt
