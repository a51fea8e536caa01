// The parts of core/tracing.h with no dependency on a report's path: stage names, the span ring
// and the sampling threshold arithmetic (OpenTelemetry probability sampling, "tracestate
// handling" and "consistent probability sampling" in the specification).
#include "core/tracing.h"

#include <bit>
#include <cmath>

namespace tianhe::core::tracing {

std::string_view stage_name(Stage s) noexcept {
  switch (s) {
    case Stage::kReport: return "tianhe.report";
    case Stage::kDecode: return "tianhe.decode";
    case Stage::kValidate: return "tianhe.validate";
    case Stage::kAppend: return "tianhe.append";
    case Stage::kDurable: return "tianhe.durable";
    case Stage::kSink: return "tianhe.sink";
    case Stage::kCount: break;
  }
  return "tianhe.unknown";
}

SpanRing::SpanRing(size_t capacity, std::string_view name)
    : slots_(std::make_unique<SpanRecord[]>(std::bit_ceil(capacity < 1 ? size_t{1} : capacity))),
      mask_(std::bit_ceil(capacity < 1 ? size_t{1} : capacity) - 1) {
  set_text(name_, name);
  name_len_ = std::string_view(name_).size();
}

bool SpanRing::push(const SpanRecord& span) noexcept {
  // Only this thread writes head_; the acquire on tail_ pairs with pop()'s release, so the slot
  // the consumer gave back is no longer being read when it is overwritten.
  const uint64_t head = head_.load(std::memory_order_relaxed);
  const uint64_t tail = tail_.load(std::memory_order_acquire);
  if (head - tail > mask_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  slots_[head & mask_] = span;
  head_.store(head + 1, std::memory_order_release);
  pushed_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

size_t SpanRing::pop(std::span<SpanRecord> out) noexcept {
  const uint64_t tail = tail_.load(std::memory_order_relaxed);
  const uint64_t head = head_.load(std::memory_order_acquire);
  const uint64_t available = head - tail;
  const size_t n = available < out.size() ? static_cast<size_t>(available) : out.size();
  for (size_t i = 0; i < n; ++i) out[i] = slots_[(tail + i) & mask_];
  tail_.store(tail + n, std::memory_order_release);
  return n;
}

uint64_t threshold_for_rate(double rate) noexcept {
  // The rejection threshold T = (1 - p) * 2^56: a trace is kept when its randomness R >= T.
  if (!(rate > 0.0)) return kMaxThreshold;  // also NaN
  if (rate >= 1.0) return 0;
  const long double t =
      (1.0L - static_cast<long double>(rate)) * static_cast<long double>(kMaxThreshold);
  const auto rounded = static_cast<uint64_t>(std::llround(t));
  return rounded > kMaxThreshold ? kMaxThreshold : rounded;
}

uint64_t trace_randomness(const std::array<uint8_t, 16>& trace_id) noexcept {
  // W3C Trace Context level 2 §3.2.2.1 (random trace id flag): the rightmost 7 bytes are random.
  uint64_t r = 0;
  for (size_t i = 9; i < 16; ++i) r = (r << 8) | trace_id[i];
  return r;
}

size_t format_tracestate(uint64_t threshold, std::span<char> out) noexcept {
  // OpenTelemetry tracestate "th": up to 14 hex digits of the 56-bit threshold, trailing zeros
  // removed, "0" for a threshold of zero (keep everything). 2^56 (keep nothing) has no spelling.
  static constexpr std::string_view kPrefix = "ot=th:";
  static constexpr char kHex[] = "0123456789abcdef";
  if (threshold >= kMaxThreshold) return 0;
  char digits[14];
  for (int i = 13; i >= 0; --i) {
    digits[i] = kHex[threshold & 0xf];
    threshold >>= 4;
  }
  size_t n = 14;
  while (n > 1 && digits[n - 1] == '0') --n;
  const size_t total = kPrefix.size() + n;
  if (out.size() < total) return 0;
  for (size_t i = 0; i < kPrefix.size(); ++i) out[i] = kPrefix[i];
  for (size_t i = 0; i < n; ++i) out[kPrefix.size() + i] = digits[i];
  return total;
}

}  // namespace tianhe::core::tracing
