#include "codecs/json/json_codec.h"

#include <algorithm>
#include <charconv>
#include <cstring>

namespace tianhe::codecs::json {

using pipeline::DecodeStatus;

namespace {

// Whether two metrics share a name: an open-addressing set of name hashes on the stack (a
// report holds at most 64 metrics here, so 256 slots stay sparse), names compared only when
// their hashes meet.
bool has_repeated_name(std::span<const core::Metric> ms) noexcept {
  constexpr size_t kSlots = 256;
  if (ms.size() > kSlots / 2) {
    for (size_t i = 1; i < ms.size(); ++i) {
      for (size_t k = 0; k < i; ++k) {
        if (ms[i].name == ms[k].name) return true;
      }
    }
    return false;
  }
  uint16_t slots[kSlots] = {};  // metric index + 1; 0: empty
  for (size_t i = 0; i < ms.size(); ++i) {
    uint32_t h = 2166136261U;  // FNV-1a
    for (const char c : ms[i].name) h = (h ^ static_cast<uint8_t>(c)) * 16777619U;
    for (size_t at = h % kSlots;; at = (at + 1) % kSlots) {
      if (slots[at] == 0) {
        slots[at] = static_cast<uint16_t>(i + 1);
        break;
      }
      if (ms[slots[at] - 1].name == ms[i].name) return true;
    }
  }
  return false;
}

}  // namespace

JsonCodec::JsonCodec(JsonCodecLimits limits)
    : limits_(limits), text_(new char[std::max<uint32_t>(limits.text_bytes, 1)]) {
  limits_.max_name_bytes = std::clamp<uint32_t>(limits_.max_name_bytes, 1, kMaxPath);
  limits_.max_depth = std::clamp<uint32_t>(limits_.max_depth, 1, core::JsonScanner::kMaxDepth);
}

DecodeStatus JsonCodec::decode(std::span<const uint8_t> payload,
                               const pipeline::CodecContext& context, core::ReportBatch& batch,
                               core::Report& r) noexcept {
  (void)context;
  const uint32_t text_mark = text_used_;
  const std::string_view text(reinterpret_cast<const char*>(payload.data()), payload.size());
  const DecodeStatus status = walk(text, batch, r);
  if (status != DecodeStatus::kOk) {
    // All or nothing (pipeline/codec.h): the metrics and the text of a failed payload go.
    batch.truncate_metrics(r);
    text_used_ = text_mark;
  }
  return status;
}

bool JsonCodec::keep(std::string_view s, std::string_view& out) noexcept {
  if (limits_.text_bytes - text_used_ < s.size()) return false;
  char* at = text_.get() + text_used_;
  std::memcpy(at, s.data(), s.size());
  text_used_ += static_cast<uint32_t>(s.size());
  out = {at, s.size()};
  return true;
}

DecodeStatus JsonCodec::walk(std::string_view text, core::ReportBatch& batch,
                             core::Report& r) noexcept {
  core::JsonScanner s(text, limits_.max_depth);
  if (s.next().kind != core::JsonKind::kObjectBegin) return DecodeStatus::kMalformed;
  levels_[1] = Level{};
  const uint32_t max_name = limits_.max_name_bytes;
  uint32_t name_len = 0;   // path_[0, name_len): the name of the value that comes next
  std::string_view whole;  // that name as it stands in the payload, when it does
  while (true) {
    const core::JsonToken t = s.next();
    const uint32_t depth = s.depth();
    switch (t.kind) {
      case core::JsonKind::kEnd: {
        // Two members flattened to one name ({"a.b":1,"a":{"b":2}}, or a repeated key, which
        // RFC 8259 §4 leaves to the implementation) would make one metric ambiguous: refused.
        return has_repeated_name(batch.metrics(r)) ? DecodeStatus::kMalformed : DecodeStatus::kOk;
      }
      case core::JsonKind::kError: return DecodeStatus::kMalformed;
      case core::JsonKind::kObjectEnd:
      case core::JsonKind::kArrayEnd: continue;
      case core::JsonKind::kKey: {
        uint32_t at = levels_[depth].prefix;
        if (at > 0) {
          if (at >= max_name) return DecodeStatus::kTooLarge;
          path_[at++] = '.';
        }
        size_t n = 0;
        if (!t.escaped) {
          if (t.text.size() > max_name - at) return DecodeStatus::kTooLarge;
          std::memcpy(path_ + at, t.text.data(), t.text.size());
          n = t.text.size();
        } else {
          n = core::json_unescape(t.text, std::span<char>(path_ + at, max_name - at));
          if (n == SIZE_MAX) return DecodeStatus::kTooLarge;
          // An escaped control character (\n, \u0000) has no place in a metric name.
          for (size_t i = 0; i < n; ++i) {
            if (static_cast<uint8_t>(path_[at + i]) < 0x20) return DecodeStatus::kMalformed;
          }
        }
        if (n == 0) return DecodeStatus::kMalformed;  // "": no name to give the metric
        name_len = at + static_cast<uint32_t>(n);
        whole = depth == 1 && !t.escaped ? t.text : std::string_view();
        continue;
      }
      default: break;
    }
    // A value. An object or array opened by this token is already counted in depth.
    const bool opens =
        t.kind == core::JsonKind::kObjectBegin || t.kind == core::JsonKind::kArrayBegin;
    Level& container = levels_[opens ? depth - 1 : depth];
    if (container.array) {
      // An element is named by its index after its array's name: "vals.0".
      uint32_t at = container.prefix;
      if (at >= max_name) return DecodeStatus::kTooLarge;
      path_[at++] = '.';
      const auto res = std::to_chars(path_ + at, path_ + max_name, container.index++);
      if (res.ec != std::errc{}) return DecodeStatus::kTooLarge;
      name_len = static_cast<uint32_t>(res.ptr - path_);
      whole = {};
    }
    if (opens) {
      levels_[depth] = Level{name_len, 0, t.kind == core::JsonKind::kArrayBegin};
      continue;
    }
    if (t.kind == core::JsonKind::kNull) continue;  // null: no reading, no metric
    const DecodeStatus st =
        emit(t, whole.empty() ? std::string_view(path_, name_len) : whole, batch, r);
    if (st != DecodeStatus::kOk) return st;
  }
}

DecodeStatus JsonCodec::emit(const core::JsonToken& v, std::string_view name,
                             core::ReportBatch& batch, core::Report& r) noexcept {
  if (r.metric_count >= limits_.max_metrics) return DecodeStatus::kTooManyMetrics;
  core::Value value;
  switch (v.kind) {
    case core::JsonKind::kNumber:
      if (v.number.fits_int64) {
        value.type = core::ValueType::kInt64;
        value.i64 = v.number.i64;
      } else {
        value.type = core::ValueType::kDouble;
        value.f64 = v.number.f64;
      }
      break;
    case core::JsonKind::kTrue:
    case core::JsonKind::kFalse:
      value.type = core::ValueType::kBool;
      value.b = v.kind == core::JsonKind::kTrue;
      break;
    case core::JsonKind::kString: {
      value.type = core::ValueType::kString;
      if (!v.escaped) {
        if (v.text.size() > limits_.max_string_bytes) return DecodeStatus::kTooLarge;
        value.str = v.text;  // a view into the payload
        break;
      }
      const uint32_t room = std::min(limits_.text_bytes - text_used_, limits_.max_string_bytes);
      char* at = text_.get() + text_used_;
      const size_t n = core::json_unescape(v.text, std::span<char>(at, room));
      if (n == SIZE_MAX) return DecodeStatus::kTooLarge;
      text_used_ += static_cast<uint32_t>(n);
      value.str = {at, n};
      break;
    }
    default: return DecodeStatus::kMalformed;
  }
  // The name lives in the payload or in path_, which the next member overwrites: keep a copy.
  std::string_view kept = name;
  if (name.data() == path_ && !keep(name, kept)) return DecodeStatus::kTooLarge;
  core::Metric* m = batch.add_metric(r);
  if (m == nullptr) return DecodeStatus::kTooManyMetrics;
  m->name = kept;
  m->value = value;
  return DecodeStatus::kOk;
}

}  // namespace tianhe::codecs::json
