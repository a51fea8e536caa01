#include "runtime/shard.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "core/assert.h"
#include "core/clock.h"
#include "core/record_format.h"
#include "runtime/alloc_counter.h"

namespace tianhe::runtime {

Shard::Shard(uint32_t index, std::unique_ptr<log::ShardLog> log,
             std::shared_ptr<const pipeline::Registry> registry, ShardOptions options)
    : index_(index),
      options_(options),
      log_(std::move(log)),
      validator_(std::move(registry)),
      // The encode buffer is sized once: a receive batch encodes into one record (kRecordBytes
      // holds the largest batch the parsers can produce). Allocated here, not in start(), so
      // that validate_and_append() works on a shard whose thread is not running (tests, tools).
      record_(std::make_unique_for_overwrite<uint8_t[]>(kRecordBytes)),
      record_bytes_(kRecordBytes) {}

Shard::~Shard() {
  stop();
}

void Shard::start() {
  thread_ = std::thread([this] { run(); });
  char name[16];
  std::snprintf(name, sizeof name, "shard-%u", index_);
  pthread_setname_np(thread_.native_handle(), name);
}

void Shard::stop() noexcept {
  if (thread_.joinable()) {
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  if (log_) log_->close();
}

AppendOutcome Shard::validate_and_append(core::ReportBatch& batch, std::span<uint8_t> status,
                                         PipelineStats& stats) noexcept {
  // Valid reports are encoded into log records of at most kRecordBytes (one record per receive
  // batch in practice); each record is one append. The header's count is written last.
  std::span<uint8_t> out(record_.get(), record_bytes_);
  // Two clock reads per batch (not per report) for the diagnosis' validate+append stage.
  const int64_t m0 = core::mono_ns();
  ShardTracer* const tracer = tracer_;
  const int64_t t0 = tracer != nullptr ? core::wall_ns() : 0;
  AppendOutcome outcome;
  outcome.ok = true;
  size_t used = 3;
  uint16_t in_record = 0;
  uint32_t accepted = 0;
  auto append_record = [&]() noexcept {
    if (in_record == 0) return;
    core::encode_payload_header(in_record, out);
    uint64_t end = 0;
    const log::AppendStatus s = log_->append(out.first(used), &end);
    if (s == log::AppendStatus::kOk) {
      outcome.durable_at = end;
    } else if (outcome.ok) {
      outcome.ok = false;
      outcome.busy = s == log::AppendStatus::kBacklogFull ? BusyReason::kBacklogFull
                     : s == log::AppendStatus::kNoSpace   ? BusyReason::kDiskFull
                                                          : BusyReason::kIoError;
    }
    used = 3;
    in_record = 0;
  };
  const uint32_t count = batch.size();
  for (uint32_t i = 0; i < count; ++i) {
    core::Report& r = batch[i];
    bool auto_registered = false;
    auto reason = validator_.validate(batch, r, auto_registered);
    // Decided before the encode: the log record keeps the decision for the sinks.
    r.traced = tracer != nullptr && tracer->decide(r, reason);
    if (reason == pipeline::RejectReason::kNone) {
      const size_t need = core::encoded_report_size(batch, r);
      if (used + need > out.size() || in_record == UINT16_MAX) append_record();
      const size_t n = core::encode_report(batch, r, out.subspan(used));
      if (n == 0) {
        // A single report larger than a record cannot come from a bounded datagram.
        TH_BUG(false, "report larger than a log record");
        reason = pipeline::RejectReason::kOutOfRange;
      } else {
        used += n;
        ++in_record;
        ++accepted;
        if (auto_registered) stats.reports_auto_registered.add();
      }
    }
    status[i] = static_cast<uint8_t>(reason);
    if (reason != pipeline::RejectReason::kNone) {
      stats.reports_rejected[static_cast<int>(reason)].add();
    }
  }
  const int64_t t1 = tracer != nullptr ? core::wall_ns() : 0;
  append_record();
  if (tracer != nullptr) {
    tracer->batch_done(batch, status.first(count), outcome.ok, outcome.busy, outcome.durable_at, t0,
                       t1, core::wall_ns(), validator_.registry());
  }
  // If any append failed, the whole batch is answered BUSY: a report in an earlier record may
  // still be stored, and its retry is dropped as a duplicate by the sinks (at least once).
  if (outcome.ok) {
    stats.reports_accepted.add(accepted);
  } else {
    stats.reports_busy[static_cast<int>(outcome.busy)].add(accepted);
  }
  stats_.reports_in.add(count);
  stats_.reports_accepted.add(outcome.ok ? accepted : 0);
  stats_.reports_rejected.add(outcome.ok ? count - accepted : count);
  observe_count(stats_.append_batch, count);
  stats_.validate_time.observe_ns(core::mono_ns() - m0);
  return outcome;
}

void Shard::run() noexcept {
  // The descriptors of every ingest, then the log's durable eventfd (batch; -1, ignored by
  // poll, else). Rebuilt before every idle wait: an ingest's connections come and go.
  const int durable_fd = log_->durable_event_fd();
  std::vector<pollfd> fds;
  std::vector<Watch> watches;
  fds.reserve(ingests_.size() + 16);
  watches.reserve(ingests_.size() + 16);
  std::vector<AckWait> waits(ingests_.size(), AckWait::kNothing);
  const int64_t window_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.receive_window).count();
  const timespec window{window_ns / 1'000'000'000, window_ns % 1'000'000'000};
  // Busy vs idle: the time between two ppoll calls is work, the time inside them is idle. One
  // clock read per turn and two per wait; `mark` is where the current busy stretch began.
  int64_t mark = core::mono_ns();
  const auto wait = [&](pollfd* pfds, nfds_t n, const timespec* timeout) noexcept {
    const int64_t before = core::mono_ns();
    stats_.busy_ns.add(static_cast<uint64_t>(before - mark));
    ppoll(pfds, n, timeout, nullptr);
    mark = core::mono_ns();
    stats_.idle_ns.add(static_cast<uint64_t>(mark - before));
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    stats_.loop_iterations.add();
    {
      // Publish the busy time of a loop that never waits (saturated) every turn too.
      const int64_t now = core::mono_ns();
      stats_.busy_ns.add(static_cast<uint64_t>(now - mark));
      mark = now;
    }
    // Timers first: a request that timed out is answered before new input is read.
    int64_t deadline = kNoDeadline;
    for (auto& ingest : ingests_) deadline = std::min(deadline, ingest->next_deadline_ns());
    if (deadline != kNoDeadline) {
      const int64_t now = core::mono_ns();
      if (deadline <= now) {
        deadline = kNoDeadline;
        for (auto& ingest : ingests_) {
          if (ingest->next_deadline_ns() <= now) ingest->on_timer(*this, now);
          deadline = std::min(deadline, ingest->next_deadline_ns());
        }
      }
    }
    uint32_t handled = 0;
    bool more_waiting = false;  // a receive came back full: the socket may hold more
    for (auto& ingest : ingests_) {
      if (!ingest->can_receive()) continue;
      const int64_t start = core::mono_ns();
      const uint32_t n = ingest->poll_input(*this);
      if (n > 0) {
        observe_count(stats_.input_batch, n);
        stats_.input_time.observe_ns(core::mono_ns() - start);
      }
      handled += n;
      more_waiting |= n == ingest->receive_batch();
    }
    const uint64_t durable = log_->durable_offset();
    bool wait_durable = false;
    for (size_t i = 0; i < ingests_.size(); ++i) {
      waits[i] = ingests_[i]->release_acks(durable);
      wait_durable |= waits[i] == AckWait::kDurability;
    }
    if (tracer_ != nullptr) {
      tracer_->on_durable(durable);
      wait_durable |= tracer_->waiting();
    }
    stats_.heap_allocations.set(thread_allocations());
    if (handled > 0) {
      // Under load, let the next batch fill for a moment instead of taking each datagram as it
      // comes: the receive, the log append and the ack send are then paid once per batch.
      if (window_ns > 0 && handled > 1 && !more_waiting) {
        stats_.receive_windows.add();
        wait(nullptr, 0, &window);
      }
      continue;
    }
    // Idle: sleep until input arrives, a socket that has acks due takes them again, the group
    // commit advances the durable offset (it signals the eventfd after every sync), or the
    // earliest timer is due.
    stats_.idle_waits.add();
    watches.clear();
    for (size_t i = 0; i < ingests_.size(); ++i) ingests_[i]->watches(watches, waits[i]);
    fds.clear();
    for (const Watch& w : watches) fds.push_back(pollfd{w.fd, w.events, 0});
    fds.push_back(pollfd{durable_fd, static_cast<short>(wait_durable ? POLLIN : 0), 0});
    // Without the eventfd (sync, none: the offset advances inside append) nothing would signal
    // a wait for durability: look again shortly. Otherwise the timeout only bounds stop().
    const bool unsignalled = wait_durable && durable_fd < 0;
    int64_t wait_ns = unsignalled ? 100'000 : 50'000'000;  // 100 us, 50 ms
    if (deadline != kNoDeadline) {
      wait_ns = std::clamp<int64_t>(deadline - core::mono_ns(), 0, wait_ns);
    }
    const timespec timeout{wait_ns / 1'000'000'000, wait_ns % 1'000'000'000};
    wait(fds.data(), fds.size(), &timeout);
    if (fds.back().revents & POLLIN) {
      uint64_t signals = 0;
      [[maybe_unused]] const ssize_t r = ::read(durable_fd, &signals, sizeof signals);
    }
  }
  // Drain: release whatever became durable so acknowledged work is not left unanswered.
  const int64_t deadline = core::mono_ns() + 200'000'000;
  bool pending = true;
  while (pending && core::mono_ns() < deadline) {
    pending = false;
    const uint64_t durable = log_->durable_offset();
    for (auto& ingest : ingests_) pending |= ingest->release_acks(durable) != AckWait::kNothing;
    if (pending) {
      const timespec w{0, 200'000};
      ppoll(nullptr, 0, &w, nullptr);
    }
  }
}

}  // namespace tianhe::runtime
