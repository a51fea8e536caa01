#include "core/tracing.h"

#include <bit>
#include <cmath>
#include <cstring>

#include "core/hash.h"

namespace tianhe::core::tracing {

std::string_view stage_name(Stage s) noexcept {
  switch (s) {
    case Stage::kReport: return "tianhe.report";
    case Stage::kDecode: return "tianhe.decode";
    case Stage::kValidate: return "tianhe.validate";
    case Stage::kAppend: return "tianhe.log.append";
    case Stage::kDurable: return "tianhe.log.durable";
    case Stage::kSink: return "tianhe.sink";
    case Stage::kCount: break;
  }
  return "tianhe.unknown";
}

SpanRing::SpanRing(size_t capacity, std::string_view name) {
  const size_t n = std::bit_ceil(capacity < 1 ? size_t{1} : capacity);
  slots_ = std::make_unique<SpanRecord[]>(n);
  mask_ = n - 1;
  name_len_ = name.size() < sizeof name_ - 1 ? name.size() : sizeof name_ - 1;
  std::memcpy(name_, name.data(), name_len_);
}

bool SpanRing::push(const SpanRecord& span) noexcept {
  SpanRecord* slot = claim();
  if (slot == nullptr) return false;
  *slot = span;
  commit();
  return true;
}

SpanRecord* SpanRing::claim() noexcept {
  // Single producer: head_ is ours; tail_ is read with acquire so that the slot we reuse has
  // been copied out by the consumer before we overwrite it. The tail seen is cached: the
  // consumer's cache line is read again only when the ring looks full.
  const uint64_t head = head_.load(std::memory_order_relaxed);
  if (head - tail_seen_ > mask_) {
    tail_seen_ = tail_.load(std::memory_order_acquire);
    if (head - tail_seen_ > mask_) {
      // Only this thread writes the counter: a load and a store, no locked instruction.
      dropped_.store(dropped_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return nullptr;
    }
  }
  return &slots_[head & mask_];
}

void SpanRing::commit() noexcept {
  head_.store(head_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

size_t SpanRing::pop(std::span<SpanRecord> out) noexcept {
  const uint64_t tail = tail_.load(std::memory_order_relaxed);
  const uint64_t head = head_.load(std::memory_order_acquire);
  const size_t n =
      static_cast<size_t>(head - tail) < out.size() ? static_cast<size_t>(head - tail) : out.size();
  for (size_t i = 0; i < n; ++i) out[i] = slots_[(tail + i) & mask_];
  tail_.store(tail + n, std::memory_order_release);
  return n;
}

uint64_t threshold_for_rate(double rate) noexcept {
  if (!(rate > 0)) return kMaxThreshold;  // also NaN
  if (rate >= 1) return 0;
  // Sampled iff randomness >= threshold: P = (2^56 - T) / 2^56, so T = 2^56 - rate * 2^56,
  // the kept count rounded first as the specification's examples do (1 % -> fd70a3d70a3d71).
  const double keep = std::round(rate * static_cast<double>(kMaxThreshold));
  if (keep >= static_cast<double>(kMaxThreshold)) return 0;
  if (keep <= 0) return kMaxThreshold;
  return kMaxThreshold - static_cast<uint64_t>(keep);
}

uint64_t trace_randomness(const std::array<uint8_t, 16>& trace_id) noexcept {
  uint64_t r = 0;
  for (size_t i = 9; i < 16; ++i) r = (r << 8) | trace_id[i];
  return r;
}

size_t format_tracestate(uint64_t threshold, std::span<char> out) noexcept {
  // OpenTelemetry tracestate handling: th is the threshold as up to 14 hex digits with the
  // trailing zeros removed; "0" means every trace is kept.
  static constexpr char kHex[] = "0123456789abcdef";
  char digits[14];
  size_t n = 0;
  if (threshold >= kMaxThreshold) return 0;  // keep none: no spelling (never on a kept span)
  if (threshold == 0) {
    digits[n++] = '0';
  } else {
    for (int i = 13; i >= 0; --i) digits[n++] = kHex[(threshold >> (i * 4)) & 0xf];
    while (n > 1 && digits[n - 1] == '0') --n;
  }
  const size_t total = 6 + n;  // "ot=th:" + digits
  if (out.size() < total) return 0;
  std::memcpy(out.data(), "ot=th:", 6);
  std::memcpy(out.data() + 6, digits, n);
  return total;
}

namespace {

void put64(uint8_t* out, uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

uint64_t get64(const uint8_t* in) noexcept {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | in[i];
  return v;
}

std::array<uint8_t, 8> span_id_of(uint64_t v) noexcept {
  std::array<uint8_t, 8> id{};
  put64(id.data(), v == 0 ? 1 : v);  // an all-zero span id is invalid (W3C)
  return id;
}

}  // namespace

ReportTrace report_trace(const Report& r) noexcept {
  ReportTrace t;
  const auto received = static_cast<uint64_t>(r.received_ns);
  uint64_t salt = 0;
  if (r.trace.present) {
    t.trace_id = r.trace.trace_id;
    t.parent_span_id = r.trace.span_id;
    t.has_parent = true;
    t.parent_sampled = (r.trace.flags & 1) != 0;
    // Our root differs per hop and per receipt: the sender's span and our receive time.
    salt = get64(r.trace.span_id.data());
  } else {
    // Two independent 64-bit mixes of (device, seq, received): every bit of the id depends on
    // every input bit, so the low 56 bits are as good as random for sampling.
    const uint64_t a = mix64(r.device_id ^ 0x9e3779b97f4a7c15ULL) ^ mix64(received + r.seq);
    const uint64_t b = mix64(a ^ mix64(r.device_id + 0x632be59bd9b4e019ULL) ^
                             (static_cast<uint64_t>(r.seq) << 32) ^ received);
    put64(t.trace_id.data(), a == 0 && b == 0 ? 1 : a);
    put64(t.trace_id.data() + 8, b);
  }
  const uint64_t root = mix64(get64(t.trace_id.data()) ^
                              mix64(get64(t.trace_id.data() + 8) ^ salt ^ mix64(received)));
  t.root_span_id = span_id_of(root);
  return t;
}

std::array<uint8_t, 8> stage_span_id(const ReportTrace& trace, Stage stage,
                                     uint32_t index) noexcept {
  const uint64_t root = get64(trace.root_span_id.data());
  return span_id_of(
      mix64(root ^ mix64((static_cast<uint64_t>(stage) << 32 | index) + 0x51af1d2b3c4e5f60ULL)));
}

TraceContext derived_trace(const Report& r) noexcept {
  Report plain = r;
  plain.trace.present = false;
  const ReportTrace t = report_trace(plain);
  TraceContext out;
  out.trace_id = t.trace_id;
  out.span_id = t.root_span_id;
  out.flags = 0;
  out.present = true;
  return out;
}

TraceContext outgoing_trace(const Report& r) noexcept {
  TraceContext out = r.trace;
  if (r.traced || !r.trace.present) {
    const ReportTrace t = report_trace(r);
    out.trace_id = t.trace_id;
    out.span_id = t.root_span_id;
    out.flags = r.traced ? 1 : 0;
    out.present = true;
  }
  return out;
}

}  // namespace tianhe::core::tracing
