#include "protocols/mqtt_sn/mqtt_sn_topics.h"

#include <charconv>

namespace tianhe::protocols::mqtt_sn {
namespace {

constexpr std::string_view kKey = "protocols.mqtt_sn.topics";

// A decimal device id: digits only, no leading zero, fits 64 bits, not 0.
bool parse_id(std::string_view s, uint64_t& out) noexcept {
  if (s.empty() || s.size() > 20 || s[0] == '0') return false;
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v == 0) return false;
  out = v;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<TopicTemplate> TopicTemplate::parse(std::string_view text) {
  TopicTemplate t;
  bool tenant = false;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '{') {
      const size_t close = text.find('}', i);
      if (close == std::string_view::npos) {
        return make_error(std::string(kKey) + ": unclosed '{'; use {tenant} and {device}");
      }
      const std::string_view name = text.substr(i + 1, close - i - 1);
      Part part{};
      if (name == "tenant") {
        if (tenant) return make_error(std::string(kKey) + ": {tenant} appears twice; keep one");
        tenant = true;
        part = Part::kTenant;
      } else if (name == "device") {
        if (t.has_device_) {
          return make_error(std::string(kKey) + ": {device} appears twice; keep one");
        }
        t.has_device_ = true;
        part = Part::kDevice;
      } else {
        return make_error(std::string(kKey) + ": unknown placeholder {" + std::string(name) +
                          "}; use {tenant} or {device}");
      }
      if (!t.pieces_.empty() && t.pieces_.back().part != Part::kLiteral) {
        return make_error(std::string(kKey) +
                          ": two placeholders side by side cannot be told apart; put a "
                          "separator such as '/' between them");
      }
      t.pieces_.push_back({part, {}});
      i = close + 1;
      continue;
    }
    if (text[i] == '}' || text[i] == '#' || text[i] == '+') {
      return make_error(std::string(kKey) + ": '" + std::string(1, text[i]) +
                        "' is not allowed in a topic name; use {tenant} and {device}");
    }
    if (t.pieces_.empty() || t.pieces_.back().part != Part::kLiteral) t.pieces_.push_back({});
    t.pieces_.back().text.push_back(text[i]);
    ++i;
  }
  if (t.pieces_.empty()) {
    return make_error(std::string(kKey) + ": empty; use e.g. \"{tenant}/{device}/telemetry\"");
  }
  return t;
}

TopicMatch TopicTemplate::match(std::string_view topic) const noexcept {
  TopicMatch m;
  std::string_view rest = topic;
  for (size_t k = 0; k < pieces_.size(); ++k) {
    const Piece& p = pieces_[k];
    if (p.part == Part::kLiteral) {
      if (!rest.starts_with(p.text)) return {};
      rest.remove_prefix(p.text.size());
      continue;
    }
    // A placeholder runs to the next literal's first occurrence (or the end); it never spans
    // a '/' so that a topic level is one value.
    size_t end = rest.size();
    if (k + 1 < pieces_.size()) {
      end = rest.find(pieces_[k + 1].text);
      if (end == std::string_view::npos) return {};
    }
    const std::string_view value = rest.substr(0, end);
    if (value.empty() || value.find('/') != std::string_view::npos) return {};
    if (p.part == Part::kDevice) {
      if (!parse_id(value, m.device_id)) return {};
    } else {
      m.tenant = value;
    }
    rest.remove_prefix(end);
  }
  if (!rest.empty()) return {};
  m.matched = true;
  return m;
}

std::string TopicTemplate::render(std::string_view tenant, uint64_t device) const {
  std::string out;
  for (const Piece& p : pieces_) {
    if (p.part == Part::kLiteral) out += p.text;
    if (p.part == Part::kTenant) out += tenant;
    if (p.part == Part::kDevice) out += std::to_string(device);
  }
  return out;
}

Result<std::vector<PredefinedTopic>> parse_predefined_topics(std::string_view text) {
  constexpr std::string_view kPredefinedKey = "protocols.mqtt_sn.predefined_topics";
  std::vector<PredefinedTopic> out;
  while (!trim(text).empty()) {
    const size_t comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    const size_t eq = item.find('=');
    uint64_t id = 0;
    if (eq == std::string_view::npos || !parse_id(trim(item.substr(0, eq)), id) || id > 65534) {
      return make_error(std::string(kPredefinedKey) + ": \"" + std::string(item) +
                        "\" is not ID=TOPIC with an id of 1..65534; write e.g. "
                        "\"1=acme/7/telemetry, 2=acme/8/telemetry\"");
    }
    const std::string_view name = trim(item.substr(eq + 1));
    if (name.empty() || name.find_first_of("#+") != std::string_view::npos) {
      return make_error(std::string(kPredefinedKey) + ": topic " + std::to_string(id) +
                        " needs a topic name without wildcards");
    }
    for (const auto& p : out) {
      if (p.id == id) {
        return make_error(std::string(kPredefinedKey) + ": topic id " + std::to_string(id) +
                          " is defined twice; give each topic its own id");
      }
    }
    out.push_back({static_cast<uint16_t>(id), std::string(name)});
  }
  return out;
}

uint64_t device_from_client_id(std::string_view client_id) noexcept {
  size_t i = client_id.size();
  while (i > 0 && client_id[i - 1] >= '0' && client_id[i - 1] <= '9') --i;
  std::string_view digits = client_id.substr(i);
  while (digits.size() > 1 && digits[0] == '0') digits.remove_prefix(1);
  uint64_t id = 0;
  return parse_id(digits, id) ? id : 0;
}

}  // namespace tianhe::protocols::mqtt_sn
