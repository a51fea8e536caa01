#include "runtime/tracing.h"

#include <algorithm>
#include <cstdio>

#include "core/clock.h"
#include "core/hash.h"

namespace tianhe::runtime {

using core::tracing::SpanKind;
using core::tracing::SpanRecord;
using core::tracing::SpanStatus;
using core::tracing::Stage;

namespace {

constexpr int64_t kWindowNs = 1'000'000'000;
constexpr size_t kPendingEntries = 4096;
constexpr size_t kProbe = 8;  // slots a device may sit in from its hash

int keep_index(KeepReason k) noexcept {
  switch (k) {
    case KeepReason::kRejected: return 0;
    case KeepReason::kDeadLettered: return 1;
    case KeepReason::kRetried: return 2;
    case KeepReason::kSlow: return 3;
  }
  return 0;
}

constexpr std::string_view kKeepNames[] = {"rejected", "dead_lettered", "retried", "slow"};

// A stage span under `root` (its ids from `t`) written into `s` (a ring slot): the root's
// identity and attributes, kind INTERNAL, status OK (the caller marks a failure); the root's
// detail, if any, is kept.
void child_span(SpanRecord& s, const SpanRecord& root, const core::tracing::ReportTrace& t,
                Stage stage, int64_t start_ns, int64_t end_ns, uint32_t count) noexcept {
  s = root;
  s.stage = stage;
  s.kind = SpanKind::kInternal;
  s.span_id = core::tracing::stage_span_id(t, stage);
  s.parent_span_id = t.root_span_id;
  s.start_ns = start_ns;
  s.end_ns = end_ns;
  s.count = count;
  s.status = SpanStatus::kOk;
}

}  // namespace

uint32_t keep_reason_bit(std::string_view name) noexcept {
  for (size_t i = 0; i < std::size(kKeepNames); ++i) {
    if (name == kKeepNames[i]) return 1u << i;
  }
  return 0;
}

std::string_view fate_outcome_name(FateOutcome o) noexcept {
  switch (o) {
    case FateOutcome::kAccepted: return "accepted";
    case FateOutcome::kRejected: return "rejected";
    case FateOutcome::kBusy: return "busy";
    case FateOutcome::kDeadLettered: return "dead_lettered";
    case FateOutcome::kCount: break;
  }
  return "unknown";
}

// ---- FateTable ----

FateTable::FateTable(uint64_t devices) {
  const uint64_t n = std::bit_ceil(std::max<uint64_t>(devices, kProbe));
  slots_ = std::make_unique<Slot[]>(n);
  mask_ = n - 1;
}

// The sequence lock uses release stores and acquire loads on every field instead of fences:
// the same plain moves on x86-64, and ThreadSanitizer (which does not model fences) can check it.
FateTable::Slot* FateTable::slot_for_write(uint64_t device_id, int64_t now) noexcept {
  const uint64_t h = core::mix64(device_id);
  Slot* oldest = nullptr;
  for (size_t i = 0; i < kProbe; ++i) {
    Slot& s = slots_[(h + i) & mask_];
    const uint64_t d = s.device.load(std::memory_order_relaxed);
    if (d == device_id) return &s;
    if (d == 0) {
      oldest = &s;
      break;
    }
    if (oldest == nullptr || s.touched.load(std::memory_order_relaxed) <
                                 oldest->touched.load(std::memory_order_relaxed)) {
      oldest = &s;
    }
  }
  // A free slot, or the least recently written one of the window: it becomes this device's,
  // its old fates cleared under the sequence lock so no reader takes them for this device's.
  Slot& s = *oldest;
  const uint32_t v = s.version.load(std::memory_order_relaxed);
  s.version.store(v + 1, std::memory_order_relaxed);
  s.device.store(device_id, std::memory_order_release);
  s.next.store(0, std::memory_order_release);
  s.touched.store(now, std::memory_order_release);
  for (auto& w : s.words) w.store(0, std::memory_order_release);
  s.version.store(v + 2, std::memory_order_release);
  return &s;
}

void FateTable::record(const Fate& f) noexcept {
  Slot& s = *slot_for_write(f.device_id, f.received_ns);
  const uint32_t v = s.version.load(std::memory_order_relaxed);
  s.version.store(v + 1, std::memory_order_relaxed);
  const uint32_t i = s.next.load(std::memory_order_relaxed) % kPerDevice;
  const uint64_t flags = (f.traced ? 1u : 0u) | (f.has_parent ? 2u : 0u) | 4u;  // 4: in use
  s.words[i * 3].store(uint64_t{f.seq} | uint64_t{static_cast<uint8_t>(f.outcome)} << 32 |
                           uint64_t{f.reason} << 40 |
                           uint64_t{static_cast<uint8_t>(f.protocol)} << 48 | flags << 56,
                       std::memory_order_release);
  s.words[i * 3 + 1].store(static_cast<uint64_t>(f.received_ns), std::memory_order_release);
  s.words[i * 3 + 2].store(f.log_end, std::memory_order_release);
  s.next.store(i + 1, std::memory_order_release);
  s.touched.store(f.received_ns, std::memory_order_release);
  s.version.store(v + 2, std::memory_order_release);
}

void FateTable::read_slot(const Slot& s, uint64_t device_id, bool any_seq, uint32_t seq,
                          std::vector<Fate>& out) const {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const uint32_t v1 = s.version.load(std::memory_order_acquire);
    if (v1 & 1) continue;
    const uint64_t d = s.device.load(std::memory_order_acquire);
    const uint32_t next = s.next.load(std::memory_order_acquire);
    std::array<uint64_t, kPerDevice * 3> w;
    for (size_t i = 0; i < w.size(); ++i) w[i] = s.words[i].load(std::memory_order_acquire);
    if (s.version.load(std::memory_order_relaxed) != v1) continue;
    if (d != device_id) return;
    // Oldest first: the entry after the newest.
    for (size_t k = 0; k < kPerDevice; ++k) {
      const size_t i = (next + k) % kPerDevice;
      const uint64_t packed = w[i * 3];
      const auto flags = static_cast<uint8_t>(packed >> 56);
      if ((flags & 4) == 0) continue;
      Fate f;
      f.device_id = device_id;
      f.seq = static_cast<uint32_t>(packed);
      if (!any_seq && f.seq != seq) continue;
      f.outcome = static_cast<FateOutcome>(static_cast<uint8_t>(packed >> 32));
      f.reason = static_cast<uint8_t>(packed >> 40);
      f.protocol = static_cast<core::Protocol>(static_cast<uint8_t>(packed >> 48));
      f.traced = (flags & 1) != 0;
      f.has_parent = (flags & 2) != 0;
      f.received_ns = static_cast<int64_t>(w[i * 3 + 1]);
      f.log_end = w[i * 3 + 2];
      f.shard = shard_;
      out.push_back(f);
    }
    return;
  }
}

void FateTable::find(uint64_t device_id, uint32_t seq, std::vector<Fate>& out) const {
  const uint64_t h = core::mix64(device_id);
  for (size_t i = 0; i < kProbe; ++i)
    read_slot(slots_[(h + i) & mask_], device_id, false, seq, out);
}

void FateTable::find_device(uint64_t device_id, std::vector<Fate>& out) const {
  const uint64_t h = core::mix64(device_id);
  for (size_t i = 0; i < kProbe; ++i) read_slot(slots_[(h + i) & mask_], device_id, true, 0, out);
}

// ---- OffsetHistory ----

OffsetHistory::OffsetHistory()
    : ring_(std::make_unique<std::array<std::atomic<uint64_t>, 2>[]>(kEntries)) {}

void OffsetHistory::note(uint64_t offset, int64_t wall_ns) noexcept {
  if (offset <= last_offset_.load(std::memory_order_relaxed)) return;
  last_offset_.store(offset, std::memory_order_relaxed);
  const uint64_t n = count_.load(std::memory_order_relaxed);
  auto& e = ring_[n % kEntries];
  e[0].store(offset, std::memory_order_relaxed);
  e[1].store(static_cast<uint64_t>(wall_ns), std::memory_order_relaxed);
  count_.store(n + 1, std::memory_order_release);
  reached_.store(offset, std::memory_order_release);
}

int64_t OffsetHistory::when(uint64_t offset) const noexcept {
  if (offset > reached()) return 0;
  const uint64_t n = count_.load(std::memory_order_acquire);
  const uint64_t first = n > kEntries ? n - kEntries + 1 : 0;  // the oldest may be overwritten
  int64_t found = -1;
  // Newest to oldest: the earliest entry whose offset covers `offset` is when it was reached.
  for (uint64_t k = n; k > first; --k) {
    const auto& e = ring_[(k - 1) % kEntries];
    if (e[0].load(std::memory_order_relaxed) < offset) {
      return found;
    }
    found = static_cast<int64_t>(e[1].load(std::memory_order_relaxed));
  }
  // Every entry held covers it: it was reached at the oldest, unless older ones were dropped.
  return n > kEntries - 1 ? -1 : found;
}

// ---- ShardTracer ----

ShardTracer::ShardTracer(uint32_t shard, const TracingOptions& options,
                         core::tracing::SpanRing* ring, uint32_t shards)
    : shard_(shard),
      options_(options),
      ring_(ring),
      fates_(options.fate_devices),
      threshold_(core::tracing::threshold_for_rate(options.sample_rate)),
      rate_(options.sample_rate),
      budget_per_window_(
          std::max<uint64_t>(1, options.max_spans_per_second / std::max(1u, shards))),
      pending_(ring != nullptr ? kPendingEntries : 0) {
  fates_.shard_ = shard;
  rate_now_.store(rate_, std::memory_order_relaxed);
  // Independent draws (consistent = false) differ between shards and between processes.
  rng_ ^= core::mix64(shard + 1) ^ core::mix64(static_cast<uint64_t>(core::wall_ns()));
  if (rng_ == 0) rng_ = 1;
}

void ShardTracer::roll_window(int64_t now) noexcept {
  if (now - window_start_ < kWindowNs) return;
  if (window_start_ != 0) {
    // Adapt: a window that asked for more spans than the budget lowers the rate in proportion;
    // one that used less than half of it raises the rate again (up to the configured one).
    if (window_demand_ > budget_per_window_) {
      rate_ = std::max(
          rate_ * static_cast<double>(budget_per_window_) / static_cast<double>(window_demand_),
          1e-9);
    } else if (window_demand_ * 2 < budget_per_window_ && rate_ < options_.sample_rate) {
      rate_ = std::min(options_.sample_rate, rate_ * 2);
    }
    threshold_ = core::tracing::threshold_for_rate(rate_);
    rate_now_.store(rate_, std::memory_order_relaxed);
    // The p99 of this window's durable latencies bounds "slow" in the next.
    uint64_t total = 0;
    std::array<uint64_t, core::Log2Histogram::kBuckets> counts{};
    for (int b = 0; b < core::Log2Histogram::kBuckets; ++b) {
      const uint64_t c = window_latency_.bucket(b);
      counts[static_cast<size_t>(b)] = c - latency_base_[static_cast<size_t>(b)];
      latency_base_[static_cast<size_t>(b)] = c;
      total += counts[static_cast<size_t>(b)];
    }
    if (total >= 100) {
      uint64_t seen = 0;
      for (size_t b = 0; b < counts.size(); ++b) {
        seen += counts[b];
        if (seen * 100 >= total * 99) {
          slow_ns_ = (uint64_t{1} << b) * 1000;  // bucket b holds values < 2^b us
          break;
        }
      }
    } else {
      slow_ns_ = UINT64_MAX;  // too few to tell
    }
  }
  window_start_ = now;
  window_spans_ = 0;
  window_demand_ = 0;
}

bool ShardTracer::take_budget(uint32_t spans) noexcept {
  window_demand_ += spans;
  if (window_spans_ + spans > budget_per_window_) return false;
  window_spans_ += spans;
  return true;
}

bool ShardTracer::decide(const core::Report& r, pipeline::RejectReason reason) noexcept {
  if (ring_ == nullptr) return false;
  roll_window(r.received_ns);
  bool sampled;
  if (options_.consistent) {
    if (r.trace.present) {
      sampled = (r.trace.flags & 1) != 0;  // parent-based: the sender decided for the trace
      if (sampled && r.trace.threshold != core::kNoTraceValue && r.trace.threshold < threshold_) {
        // The sender said at which threshold it sampled (tracestate ot=th) and ours is higher
        // (a lower rate): keep the consistent subset, the traces whose randomness reaches ours.
        const uint64_t randomness = r.trace.randomness != core::kNoTraceValue
                                        ? r.trace.randomness
                                        : core::tracing::trace_randomness(r.trace.trace_id);
        sampled = randomness >= threshold_;
      }
    } else {
      const core::tracing::ReportTrace t = core::tracing::report_trace(r);
      sampled = core::tracing::trace_randomness(t.trace_id) >= threshold_;
    }
  } else {
    // Each hop on its own: a fresh draw, whatever the parent said (for the distortion test).
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    sampled = (rng_ >> 8) >= threshold_;
  }
  const bool rejected = reason != pipeline::RejectReason::kNone;
  const uint32_t spans = rejected ? 2 : (r.decode_ns > 0 ? 5 : 4);
  if (rejected && (options_.always_keep & static_cast<uint32_t>(KeepReason::kRejected))) {
    if (!sampled) stats_.kept[keep_index(KeepReason::kRejected)].add();
    window_spans_ += spans;
    return true;
  }
  if (!sampled) return false;
  if (!take_budget(spans)) {
    stats_.rate_limited.add();
    return false;
  }
  return true;
}

void ShardTracer::fill(SpanRecord& s, const core::Report& r, const core::tracing::ReportTrace& t,
                       const pipeline::Registry& registry) noexcept {
  s.trace_id = t.trace_id;
  s.device_id = r.device_id;
  s.seq = r.seq;
  s.tenant = r.tenant;
  s.shard = static_cast<uint16_t>(shard_);
  s.protocol = r.protocol;
  s.trace_flags = 1;
  // tracestate ot=th on our spans: ours for a root; for a child, when the sender gave its own,
  // the higher of the two (the probability the trace was sampled at, through this hop).
  s.threshold = threshold_;
  s.has_threshold = !t.has_parent;
  if (t.has_parent && r.trace.threshold != core::kNoTraceValue) {
    s.threshold = std::max(r.trace.threshold, threshold_);
    s.has_threshold = true;
  }
  s.count = 1;
  if (const pipeline::DeviceEntry* d = registry.find(r.device_id); d != nullptr) {
    core::tracing::set_text(s.model, registry.model(d->model).name());
  }
}

void ShardTracer::emit(const SpanRecord& s) noexcept {
  ring_->push(s);
}

void ShardTracer::emit_child(const SpanRecord& root, const core::tracing::ReportTrace& t,
                             Stage stage, int64_t start_ns, int64_t end_ns, uint32_t count,
                             std::string_view error) noexcept {
  // Written in its ring slot: no second copy of the span.
  SpanRecord* s = ring_->claim();
  if (s == nullptr) return;  // full: counted by the ring
  child_span(*s, root, t, stage, start_ns, end_ns, count);
  if (!error.empty()) {
    s->status = SpanStatus::kError;
    core::tracing::set_text(s->detail, error);
  }
  ring_->commit();
}

void ShardTracer::batch_done(const core::ReportBatch& batch, std::span<const uint8_t> status,
                             bool ok, BusyReason busy, uint64_t durable_at, int64_t t0, int64_t t1,
                             int64_t t2, const pipeline::Registry& registry) noexcept {
  const uint32_t n = batch.size();
  bool candidate_taken = false;
  for (uint32_t i = 0; i < n; ++i) {
    const core::Report& r = batch[i];
    const auto reason = static_cast<pipeline::RejectReason>(status[i]);
    const bool rejected = reason != pipeline::RejectReason::kNone;
    Fate f;
    f.device_id = r.device_id;
    f.seq = r.seq;
    f.outcome = rejected ? FateOutcome::kRejected
                : ok     ? FateOutcome::kAccepted
                         : FateOutcome::kBusy;
    f.reason = rejected ? static_cast<uint8_t>(reason) : ok ? 0 : static_cast<uint8_t>(busy);
    f.protocol = r.protocol;
    f.received_ns = r.received_ns;
    f.has_parent = r.trace.present;
    f.log_end = ok && !rejected ? durable_at : 0;
    bool traced = r.traced;
    if (!traced && !ok && !rejected && ring_ != nullptr &&
        (options_.always_keep & static_cast<uint32_t>(KeepReason::kRetried))) {
      traced = true;
      stats_.kept[keep_index(KeepReason::kRetried)].add();
    }
    f.traced = traced;
    fates_.record(f);
    stats_.fates_recorded.add();
    if (ring_ == nullptr) continue;
    const bool slow_candidate = !candidate_taken && ok && !rejected &&
                                (options_.always_keep & static_cast<uint32_t>(KeepReason::kSlow));
    if (!traced && !slow_candidate) continue;
    candidate_taken |= slow_candidate;
    const core::tracing::ReportTrace t = core::tracing::report_trace(r);
    SpanRecord root;
    fill(root, r, t, registry);
    root.stage = Stage::kReport;
    root.span_id = t.root_span_id;
    if (t.has_parent) root.parent_span_id = t.parent_span_id;
    root.kind = core::protocol_name(r.protocol) == "mqtt" ? SpanKind::kConsumer : SpanKind::kServer;
    root.start_ns = r.received_ns;
    if (!traced) {
      // Not traced, but the oldest accepted report of its batch: traced after all if the batch
      // turns out slow to become durable (finish()).
      if (pending_count_ == pending_.size()) continue;
      Pending& p = pending_[(pending_head_ + pending_count_++) % pending_.size()];
      p.root = root;
      p.root.count = n;
      p.durable_at = durable_at;
      p.appended_ns = t2;
      p.traced = false;
      p.measure = true;
      continue;
    }
    stats_.reports_traced.add();
    if (r.decode_ns > 0) {
      emit_child(root, t, Stage::kDecode, r.decode_start_ns, r.decode_start_ns + r.decode_ns, 1);
    }
    emit_child(root, t, Stage::kValidate, t0, t1, n,
               rejected ? pipeline::reject_reason_name(reason) : std::string_view{});
    if (rejected) {
      root.end_ns = t1;
      root.status = SpanStatus::kError;
      core::tracing::set_text(root.detail, pipeline::reject_reason_name(reason));
      emit(root);
      continue;
    }
    emit_child(root, t, Stage::kAppend, t1, t2, n,
               ok ? std::string_view{} : busy_reason_name(busy));
    if (!ok) {
      root.end_ns = t2;
      root.status = SpanStatus::kError;
      core::tracing::set_text(root.detail, busy_reason_name(busy));
      emit(root);
      continue;
    }
    if (pending_count_ == pending_.size()) {
      // No room to wait for durability: the root ends at the append, without a durable span.
      stats_.pending_full.add();
      root.end_ns = t2;
      root.status = SpanStatus::kOk;
      emit(root);
      continue;
    }
    Pending& p = pending_[(pending_head_ + pending_count_++) % pending_.size()];
    p.root = root;
    p.durable_at = durable_at;
    p.appended_ns = t2;
    p.traced = true;
    p.measure = slow_candidate;
  }
}

void ShardTracer::finish(Pending& p, int64_t now) noexcept {
  SpanRecord& root = p.root;
  const int64_t latency = now - root.start_ns;
  if (p.measure) window_latency_.observe_ns(latency);
  if (!p.traced) {
    // A candidate only: traced when its batch was slower than the recent p99.
    if (latency <= 0 || static_cast<uint64_t>(latency) <= slow_ns_) return;
    stats_.kept[keep_index(KeepReason::kSlow)].add();
    window_spans_ += 2;
    core::tracing::set_text(root.detail, "slow");
  }
  core::tracing::ReportTrace t;
  t.root_span_id = root.span_id;
  emit_child(root, t, Stage::kDurable, p.appended_ns, now, root.count);
  root.end_ns = now;
  root.status = SpanStatus::kOk;
  emit(root);
}

void ShardTracer::on_durable(uint64_t offset) noexcept {
  if (offset <= durable_.reached() && pending_count_ == 0) return;
  const int64_t now = core::wall_ns();
  durable_.note(offset, now);
  while (pending_count_ > 0) {
    Pending& p = pending_[pending_head_];
    if (p.durable_at > offset) break;
    finish(p, now);
    pending_head_ = (pending_head_ + 1) % pending_.size();
    --pending_count_;
  }
}

void ShardTracer::dead_lettered(const core::Report& r, pipeline::DecodeStatus status,
                                const pipeline::Registry& registry) noexcept {
  Fate f;
  f.device_id = r.device_id;
  f.seq = r.seq;
  f.outcome = FateOutcome::kDeadLettered;
  f.reason = static_cast<uint8_t>(status);
  f.protocol = r.protocol;
  f.received_ns = r.received_ns;
  f.has_parent = r.trace.present;
  const bool keep =
      ring_ != nullptr && (options_.always_keep & static_cast<uint32_t>(KeepReason::kDeadLettered));
  f.traced = keep;
  fates_.record(f);
  stats_.fates_recorded.add();
  if (!keep) return;
  stats_.kept[keep_index(KeepReason::kDeadLettered)].add();
  stats_.reports_traced.add();
  const core::tracing::ReportTrace t = core::tracing::report_trace(r);
  SpanRecord root;
  fill(root, r, t, registry);
  root.stage = Stage::kReport;
  root.span_id = t.root_span_id;
  if (t.has_parent) root.parent_span_id = t.parent_span_id;
  root.kind = SpanKind::kServer;
  root.start_ns = r.received_ns;
  root.status = SpanStatus::kError;
  core::tracing::set_text(root.detail, pipeline::decode_status_name(status));
  const int64_t decode_start = r.decode_start_ns != 0 ? r.decode_start_ns : r.received_ns;
  // The decode span's detail is the root's: the decode status.
  emit_child(root, t, Stage::kDecode, decode_start, decode_start + r.decode_ns, 1,
             pipeline::decode_status_name(status));
  root.end_ns = std::max(decode_start + r.decode_ns, root.start_ns);
  window_spans_ += 2;
  emit(root);
}

// ---- Tracing ----

Tracing::Tracing(TracingOptions options, uint32_t shards) : options_(std::move(options)) {
  for (uint32_t i = 0; i < shards; ++i) {
    core::tracing::SpanRing* ring = nullptr;
    if (recording()) {
      shard_rings_.push_back(std::make_unique<core::tracing::SpanRing>(
          options_.ring_spans, "shard-" + std::to_string(i)));
      ring = shard_rings_.back().get();
    }
    tracers_.push_back(std::make_unique<ShardTracer>(i, options_, ring, shards));
  }
}

SinkProgress* Tracing::add_sink(std::string_view name) {
  std::lock_guard lock(mu_);
  auto p = std::make_unique<SinkProgress>();
  p->name = std::string(name);
  for (uint32_t i = 0; i < shards(); ++i) p->shards.push_back(std::make_unique<OffsetHistory>());
  if (recording()) {
    sink_rings_.push_back(
        std::make_unique<core::tracing::SpanRing>(options_.ring_spans, "sink-" + p->name));
    p->ring = sink_rings_.back().get();
  }
  sinks_.push_back(std::move(p));
  return sinks_.back().get();
}

std::vector<core::tracing::SpanRing*> Tracing::rings() const {
  std::lock_guard lock(mu_);
  std::vector<core::tracing::SpanRing*> out;
  for (const auto& r : shard_rings_) out.push_back(r.get());
  for (const auto& r : sink_rings_) out.push_back(r.get());
  return out;
}

namespace {

std::string hex(std::span<const uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string reason_name(const Fate& f) {
  switch (f.outcome) {
    case FateOutcome::kRejected:
      return std::string(
          pipeline::reject_reason_name(static_cast<pipeline::RejectReason>(f.reason)));
    case FateOutcome::kBusy:
      return std::string(busy_reason_name(static_cast<BusyReason>(f.reason)));
    case FateOutcome::kDeadLettered:
      return std::string(
          pipeline::decode_status_name(static_cast<pipeline::DecodeStatus>(f.reason)));
    default: return "";
  }
}

void append_time(std::string& out, std::string_view key, int64_t when, int64_t received) {
  out += ",\"" + std::string(key) + "\":";
  if (when > 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "{\"at_ns\":%lld,\"after_ms\":%.3f}",
                  static_cast<long long>(when), static_cast<double>(when - received) / 1e6);
    out += buf;
  } else {
    out += when == 0 ? "null" : "\"earlier than the history holds\"";
  }
}

}  // namespace

std::string Tracing::fate_json(uint64_t device_id, uint32_t seq) const {
  std::vector<Fate> fates;
  for (const auto& t : tracers_) t->fates().find(device_id, seq, fates);
  std::sort(fates.begin(), fates.end(),
            [](const Fate& a, const Fate& b) { return a.received_ns < b.received_ns; });
  std::string out = "{\"device\":" + std::to_string(device_id) + ",\"seq\":" + std::to_string(seq) +
                    ",\"found\":" + (fates.empty() ? "false" : "true") + ",\"copies\":[";
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < fates.size(); ++i) {
    const Fate& f = fates[i];
    if (i) out += ",";
    out += "{\"outcome\":\"" + std::string(fate_outcome_name(f.outcome)) + "\"";
    if (const std::string why = reason_name(f); !why.empty()) out += ",\"reason\":\"" + why + "\"";
    out += ",\"protocol\":\"" + std::string(core::protocol_name(f.protocol)) + "\"";
    out += ",\"shard\":" + std::to_string(f.shard);
    out += ",\"received_ns\":" + std::to_string(f.received_ns);
    out += std::string(",\"traced\":") + (f.traced ? "true" : "false");
    if (!f.has_parent) {
      core::Report r;
      r.device_id = f.device_id;
      r.seq = f.seq;
      r.received_ns = f.received_ns;
      out += ",\"trace_id\":\"" + hex(core::tracing::report_trace(r).trace_id) + "\"";
    }
    if (f.outcome == FateOutcome::kAccepted) {
      out += ",\"log_end_offset\":" + std::to_string(f.log_end);
      append_time(out, "durable", tracers_[f.shard]->durable_history().when(f.log_end),
                  f.received_ns);
      out += ",\"sinks\":[";
      for (size_t k = 0; k < sinks_.size(); ++k) {
        if (k) out += ",";
        const OffsetHistory& h = *sinks_[k]->shards[f.shard];
        const int64_t when = h.when(f.log_end);
        out += "{\"sink\":\"" + sinks_[k]->name + "\",\"state\":\"" +
               (when == 0 ? "pending" : "delivered") + "\"";
        append_time(out, "delivered", when, f.received_ns);
        out += "}";
      }
      out += "]";
    }
    out += "}";
  }
  out += "]}";
  return out;
}

void Tracing::collect(core::PromWriter& w) const {
  uint64_t traced = 0, limited = 0, pending_full = 0, fates = 0;
  uint64_t kept[4] = {};
  double rate = 0;
  for (const auto& t : tracers_) {
    const TracerStats& s = t->stats();
    traced += s.reports_traced.get();
    limited += s.rate_limited.get();
    pending_full += s.pending_full.get();
    fates += s.fates_recorded.get();
    for (int i = 0; i < 4; ++i) kept[i] += s.kept[i].get();
    rate += t->current_rate();
  }
  w.counter("tianhe_tracing_reports_traced_total", "Reports this gateway recorded spans for.", {},
            static_cast<double>(traced));
  for (int i = 0; i < 4; ++i) {
    w.counter("tianhe_tracing_reports_kept_total",
              "Reports traced although not sampled, by always_keep reason.",
              {{"reason", std::string(kKeepNames[i])}}, static_cast<double>(kept[i]));
  }
  w.counter("tianhe_tracing_reports_rate_limited_total",
            "Sampled reports not traced: the shard's share of max_spans_per_second was used.", {},
            static_cast<double>(limited));
  w.counter("tianhe_tracing_durable_waits_full_total",
            "Traced reports whose root span ended at the append: no room to wait for the fsync.",
            {}, static_cast<double>(pending_full));
  w.counter("tianhe_fates_recorded_total", "Report fates written to the per-device tables.", {},
            static_cast<double>(fates));
  w.gauge("tianhe_tracing_sample_rate",
          "The sampling rate in force (the configured rate, lowered to keep within "
          "max_spans_per_second), averaged over the shards.",
          {}, tracers_.empty() ? 0 : rate / static_cast<double>(tracers_.size()));
}

}  // namespace tianhe::runtime
