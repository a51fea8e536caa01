#include "protocols/mqtt/mqtt_topics.h"

namespace tianhe::protocols::mqtt {
namespace {

Error topics_error(std::string_view text, std::string_view why) {
  return make_error("protocols.mqtt.topics: \"" + std::string(text) + "\" " + std::string(why) +
                    "; write levels like \"{tenant}/{device}/telemetry\"");
}

// A decimal device id: no sign, no leading zero, 1..2^64-1.
bool parse_device(std::string_view s, uint64_t& out) noexcept {
  if (s.empty() || s.size() > 20 || s[0] == '0') return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

}  // namespace

Result<TopicTemplate> TopicTemplate::parse(std::string_view text) {
  TopicTemplate t;
  bool tenant = false, device = false;
  if (text.empty()) return topics_error(text, "is empty");
  if (text[0] == '$') return topics_error(text, "starts with '$' (reserved for the broker)");
  size_t at = 0;
  while (true) {
    const size_t slash = text.find('/', at);
    const std::string_view level =
        text.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at);
    Level l;
    if (level == "{tenant}") {
      if (tenant) return topics_error(text, "has {tenant} twice");
      tenant = true;
      l.part = Part::kTenant;
    } else if (level == "{device}") {
      if (device) return topics_error(text, "has {device} twice");
      device = true;
      l.part = Part::kDevice;
    } else {
      if (level.empty()) return topics_error(text, "has an empty level");
      if (level.find_first_of("+#{}") != std::string_view::npos) {
        return topics_error(text,
                            "has a wildcard or a brace inside a level (a placeholder fills a "
                            "whole level)");
      }
      l.text = std::string(level);
    }
    t.levels_.push_back(std::move(l));
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  if (!device) return topics_error(text, "has no {device} level");
  return t;
}

TopicMatch TopicTemplate::match(std::string_view topic) const noexcept {
  TopicMatch m;
  size_t at = 0;
  for (size_t i = 0; i < levels_.size(); ++i) {
    if (at > topic.size()) return {};
    const size_t slash = topic.find('/', at);
    const bool last = slash == std::string_view::npos;
    if (last != (i + 1 == levels_.size())) return {};  // more or fewer levels
    const std::string_view level = topic.substr(at, last ? std::string_view::npos : slash - at);
    const Level& l = levels_[i];
    switch (l.part) {
      case Part::kLiteral:
        if (level != l.text) return {};
        break;
      case Part::kTenant:
        if (level.empty()) return {};
        m.tenant = level;
        break;
      case Part::kDevice:
        if (!parse_device(level, m.device_id)) return {};
        break;
    }
    at = last ? topic.size() + 1 : slash + 1;
  }
  m.matched = true;
  return m;
}

std::string TopicTemplate::filter() const {
  std::string out;
  for (const Level& l : levels_) {
    if (&l != levels_.data()) out += '/';
    out += l.part == Part::kLiteral ? l.text : std::string("+");
  }
  return out;
}

std::string TopicTemplate::render(std::string_view tenant, uint64_t device) const {
  std::string out;
  for (const Level& l : levels_) {
    if (&l != levels_.data()) out += '/';
    switch (l.part) {
      case Part::kLiteral: out += l.text; break;
      case Part::kTenant: out += tenant; break;
      case Part::kDevice: out += std::to_string(device); break;
    }
  }
  return out;
}

std::string subscription_filter(const TopicTemplate& t, std::string_view group) {
  if (group.empty()) return t.filter();
  return "$share/" + std::string(group) + "/" + t.filter();
}

bool valid_share_group(std::string_view group) noexcept {
  return !group.empty() && group.find_first_of("/+#") == std::string_view::npos;
}

}  // namespace tianhe::protocols::mqtt
