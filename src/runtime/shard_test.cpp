// The shard on a real log: validate_and_append (statuses, counters, the record it writes, the
// log pushing back) and the loop (input is polled, acks are released once durable, stop drains).
#include "runtime/shard.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "core/clock.h"
#include "core/record_format.h"
#include "log/shard_log.h"
#include "pipeline/registry.h"

namespace tianhe::runtime {
namespace {

std::shared_ptr<const pipeline::Registry> registry() {
  pipeline::ModelSpec m;
  m.name = "env";
  m.metrics.push_back({.name = "temperature", .min = -40, .max = 85, .required = true});
  pipeline::DeviceRange d{.first_id = 1, .count = 10, .tenant = "t", .model = "env"};
  auto r = pipeline::Registry::build({}, std::span(&m, 1), std::span(&d, 1));
  EXPECT_TRUE(r.ok()) << r.error().message;
  return *r;
}

class ShardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-shard-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    config_.dir = dir_;
    config_.durability = log::Durability::kBatch;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Shard> make_shard(uint64_t max_backlog = 8ull << 30) {
    config_.max_backlog_bytes = max_backlog;
    auto l = log::ShardLog::open(config_, 0, &log_stats_);
    EXPECT_TRUE(l.ok()) << l.error().message;
    return std::make_unique<Shard>(0, std::move(l.value()), registry());
  }

  /// Adds a report of `device` with one temperature metric to `batch`.
  static void add(core::ReportBatch& batch, uint64_t device, uint32_t seq, double temperature) {
    core::Report* r = batch.add_report();
    r->device_id = device;
    r->seq = seq;
    core::Metric* m = batch.add_metric(*r);
    m->name = "temperature";
    m->value.f64 = temperature;
  }

  std::string dir_;
  log::LogConfig config_;
  log::LogStats log_stats_;
};

TEST_F(ShardTest, ValidateAndAppendStoresTheValidReportsAsOneRecord) {
  auto shard = make_shard();
  core::ReportBatch batch(8, 8);
  add(batch, 1, 1, 21.5);
  add(batch, 2, 1, 500);  // out of range
  add(batch, 99, 1, 20);  // unknown device
  add(batch, 3, 7, -3.25);
  std::vector<uint8_t> status(batch.size());
  PipelineStats stats;
  const AppendOutcome out = shard->validate_and_append(batch, status, stats);
  ASSERT_TRUE(out.ok);
  EXPECT_EQ(out.durable_at, shard->log().end_offset());
  using R = pipeline::RejectReason;
  EXPECT_EQ(status[0], static_cast<uint8_t>(R::kNone));
  EXPECT_EQ(status[1], static_cast<uint8_t>(R::kOutOfRange));
  EXPECT_EQ(status[2], static_cast<uint8_t>(R::kUnknownDevice));
  EXPECT_EQ(status[3], static_cast<uint8_t>(R::kNone));
  EXPECT_EQ(stats.reports_accepted.get(), 2u);
  EXPECT_EQ(stats.reports_rejected[static_cast<int>(R::kOutOfRange)].get(), 1u);
  EXPECT_EQ(stats.reports_rejected[static_cast<int>(R::kUnknownDevice)].get(), 1u);
  EXPECT_EQ(log_stats_.records_appended.load(), 1u);

  // The record holds exactly the accepted reports, with the tenant the validator set.
  shard->stop();
  auto reader = log::LogReader::open(config_, 0, 0);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  std::span<const uint8_t> payload;
  ASSERT_EQ((*reader)->next(UINT64_MAX, payload), log::ReadStatus::kRecord);
  core::ReportBatch back(8, 8);
  ASSERT_EQ(core::decode_payload(payload, back), core::RecordStatus::kOk);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].device_id, 1u);
  EXPECT_EQ(back[1].device_id, 3u);
  EXPECT_EQ(back[1].seq, 7u);
  EXPECT_EQ(back.metrics(back[1])[0].value.f64, -3.25);
  EXPECT_EQ((*reader)->next(UINT64_MAX, payload), log::ReadStatus::kEnd);
}

TEST_F(ShardTest, ALogThatPushesBackAnswersTheWholeBatchBusy) {
  auto shard = make_shard(/*max_backlog=*/1);  // any append exceeds the backlog limit...
  shard->log().add_consumer("sink", 0);        // ...of a consumer that has read nothing
  core::ReportBatch batch(4, 4);
  add(batch, 1, 1, 20);
  add(batch, 2, 1, 21);
  std::vector<uint8_t> status(batch.size());
  PipelineStats stats;
  const AppendOutcome out = shard->validate_and_append(batch, status, stats);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.busy, BusyReason::kBacklogFull);
  EXPECT_EQ(stats.reports_accepted.get(), 0u);
  EXPECT_EQ(stats.reports_busy[static_cast<int>(BusyReason::kBacklogFull)].get(), 2u);
}

/// An ingest on an eventfd: each readable event is one report appended; its acks are "sent"
/// when the log is durable past the report's record.
class FakeIngest final : public Ingest {
 public:
  FakeIngest() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~FakeIngest() override { ::close(fd_); }
  void watches(std::vector<Watch>& out, AckWait) const override { out.push_back({fd_, POLLIN}); }
  uint32_t poll_input(Shard& shard) noexcept override {
    uint64_t n = 0;
    if (::read(fd_, &n, sizeof n) != sizeof n) return 0;
    core::ReportBatch batch(1, 1);
    core::Report* r = batch.add_report();
    r->device_id = 1;
    r->seq = seq_++;
    core::Metric* m = batch.add_metric(*r);
    m->name = "temperature";
    m->value.f64 = 20;
    uint8_t status[1];
    const AppendOutcome out = shard.validate_and_append(batch, status, stats);
    if (out.ok) pending_at_ = out.durable_at;
    polled.fetch_add(1);
    return 1;
  }
  uint32_t receive_batch() const noexcept override { return 64; }
  AckWait release_acks(uint64_t durable_offset) noexcept override {
    if (pending_at_ == 0) return AckWait::kNothing;
    if (durable_offset < pending_at_) return AckWait::kDurability;
    acked.fetch_add(1);
    pending_at_ = 0;
    return AckWait::kNothing;
  }
  bool can_receive() const noexcept override { return true; }
  void signal() const {
    const uint64_t one = 1;
    (void)!::write(fd_, &one, sizeof one);
  }

  std::atomic<uint32_t> polled{0};
  std::atomic<uint32_t> acked{0};
  PipelineStats stats;

 private:
  int fd_;
  uint32_t seq_ = 1;
  uint64_t pending_at_ = 0;
};

bool wait_for(const std::function<bool()>& done) {
  const int64_t deadline = core::mono_ns() + 20'000'000'000;
  while (!done() && core::mono_ns() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

TEST_F(ShardTest, TheLoopPollsInputAndReleasesAcksOnceDurable) {
  auto shard = make_shard();
  auto ingest = std::make_unique<FakeIngest>();
  FakeIngest* fake = ingest.get();
  shard->add_ingest(std::move(ingest));
  shard->start();
  for (uint32_t i = 1; i <= 5; ++i) {
    fake->signal();
    // Each input is taken from the idle wait, appended, and acknowledged after its group commit.
    ASSERT_TRUE(wait_for([&] { return fake->acked.load() == i; })) << i;
  }
  EXPECT_EQ(fake->polled.load(), 5u);
  EXPECT_EQ(fake->stats.reports_accepted.get(), 5u);
  EXPECT_GE(shard->stats().idle_waits.get(), 1u);
  EXPECT_GE(shard->log().durable_offset(), shard->log().end_offset());
  shard->stop();
}

TEST_F(ShardTest, StopReleasesWhatBecameDurable) {
  auto shard = make_shard();
  auto ingest = std::make_unique<FakeIngest>();
  FakeIngest* fake = ingest.get();
  shard->add_ingest(std::move(ingest));
  shard->start();
  fake->signal();
  ASSERT_TRUE(wait_for([&] { return fake->polled.load() == 1; }));
  shard->stop();  // the drain waits for the covering sync and releases the ack
  EXPECT_EQ(fake->acked.load(), 1u);
}

/// An ingest with two descriptors (as a listener and one connection) and a timer.
class TwoFdsAndATimer final : public Ingest {
 public:
  TwoFdsAndATimer()
      : a_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
        b_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~TwoFdsAndATimer() override {
    ::close(a_);
    ::close(b_);
  }
  void watches(std::vector<Watch>& out, AckWait) const override {
    out.push_back({a_, POLLIN});
    out.push_back({b_, POLLIN});
  }
  uint32_t poll_input(Shard&) noexcept override {
    uint32_t n = 0;
    for (int fd : {a_, b_}) {
      uint64_t v = 0;
      if (::read(fd, &v, sizeof v) == sizeof v) {
        (fd == a_ ? read_a : read_b).fetch_add(1);
        ++n;
      }
    }
    return n;
  }
  uint32_t receive_batch() const noexcept override { return 64; }
  AckWait release_acks(uint64_t) noexcept override { return AckWait::kNothing; }
  bool can_receive() const noexcept override { return true; }
  int64_t next_deadline_ns() const noexcept override { return deadline_.load(); }
  void on_timer(Shard&, int64_t now_ns) noexcept override {
    late_ok.store(now_ns >= deadline_.load());
    deadline_.store(kNoDeadline);
    fired.fetch_add(1);
  }
  void arm(int64_t at_ns) { deadline_.store(at_ns); }
  void signal_b() const {
    const uint64_t one = 1;
    (void)!::write(b_, &one, sizeof one);
  }

  std::atomic<uint32_t> read_a{0}, read_b{0}, fired{0};
  std::atomic<bool> late_ok{false};

 private:
  int a_, b_;
  std::atomic<int64_t> deadline_{kNoDeadline};
};

TEST_F(ShardTest, TheLoopWaitsOnEveryDescriptorAndRunsTimersWhenDue) {
  auto shard = make_shard();
  auto ingest = std::make_unique<TwoFdsAndATimer>();
  TwoFdsAndATimer* t = ingest.get();
  shard->add_ingest(std::move(ingest));
  shard->start();
  // Input on the second descriptor wakes the idle shard.
  ASSERT_TRUE(wait_for([&] { return shard->stats().idle_waits.get() >= 1; }));
  t->signal_b();
  ASSERT_TRUE(wait_for([&] { return t->read_b.load() == 1; }));
  EXPECT_EQ(t->read_a.load(), 0u);
  // A timer is run once its deadline has passed, never before, and only once.
  t->arm(core::mono_ns() + 5'000'000);
  ASSERT_TRUE(wait_for([&] { return t->fired.load() == 1; }));
  EXPECT_TRUE(t->late_ok.load());
  shard->stop();
  EXPECT_EQ(t->fired.load(), 1u);
}

/// An ingest whose eventfd carries a batch size: each readable event is one batch of that many
/// reports, appended in one validate_and_append call.
class BatchIngest final : public Ingest {
 public:
  BatchIngest() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}
  ~BatchIngest() override { ::close(fd_); }
  void watches(std::vector<Watch>& out, AckWait) const override { out.push_back({fd_, POLLIN}); }
  uint32_t poll_input(Shard& shard) noexcept override {
    uint64_t n = 0;
    if (::read(fd_, &n, sizeof n) != sizeof n) return 0;
    core::ReportBatch batch(64, 64);
    for (uint64_t i = 0; i < n; ++i) {
      core::Report* r = batch.add_report();
      r->device_id = 1 + i % 10;
      r->seq = seq_++;
      core::Metric* m = batch.add_metric(*r);
      m->name = "temperature";
      m->value.f64 = i == 0 && reject_first ? 1000 : 20;  // 1000: out of the model's range
      // (the first report of every batch)
    }
    uint8_t status[64];
    (void)shard.validate_and_append(batch, std::span(status, batch.size()), stats);
    polled.fetch_add(1);
    return static_cast<uint32_t>(n);
  }
  uint32_t receive_batch() const noexcept override { return 64; }
  AckWait release_acks(uint64_t) noexcept override { return AckWait::kNothing; }
  bool can_receive() const noexcept override { return true; }
  void send(uint64_t n) const { (void)!::write(fd_, &n, sizeof n); }

  std::atomic<uint32_t> polled{0};
  bool reject_first = false;
  PipelineStats stats;

 private:
  int fd_;
  uint32_t seq_ = 1;
};

uint64_t histogram_count(const core::Log2Histogram& h) {
  uint64_t n = 0;
  for (int i = 0; i < core::Log2Histogram::kBuckets; ++i) n += h.bucket(i);
  return n;
}

TEST_F(ShardTest, TheLoopAccountsBusyAndIdleTimeAndTheBatchesItWasFed) {
  auto shard = make_shard();
  auto ingest = std::make_unique<BatchIngest>();
  BatchIngest* in = ingest.get();
  in->reject_first = true;
  shard->add_ingest(std::move(ingest));
  shard->start();
  // Batches of 3, 5 and 7 reports, each taken from an idle wait (the next is sent once the
  // previous was polled, so the eventfd never sums two).
  const uint32_t sizes[] = {3, 5, 7};
  for (uint32_t i = 0; i < 3; ++i) {
    in->send(sizes[i]);
    ASSERT_TRUE(wait_for([&] { return in->polled.load() == i + 1; })) << i;
  }
  shard->stop();
  const ShardStats& st = shard->stats();
  // Busy and idle both grew: the busy share is strictly between 0 and 100 %.
  EXPECT_GT(st.busy_ns.get(), 0u);
  EXPECT_GT(st.idle_ns.get(), 0u);
  const double busy = 100.0 * static_cast<double>(st.busy_ns.get()) /
                      static_cast<double>(st.busy_ns.get() + st.idle_ns.get());
  EXPECT_GT(busy, 0.0);
  EXPECT_LT(busy, 100.0);
  // Three receive batches of 15 units, three append batches of 15 reports; bucket i holds
  // sizes < 2^i: 3 in bucket 2, 5 and 7 in bucket 3.
  EXPECT_EQ(histogram_count(st.input_batch), 3u);
  EXPECT_EQ(st.input_batch.sum_ns() / 1000, 15u);
  EXPECT_EQ(histogram_count(st.append_batch), 3u);
  EXPECT_EQ(st.append_batch.sum_ns() / 1000, 15u);
  EXPECT_EQ(st.append_batch.bucket(2), 1u);
  EXPECT_EQ(st.append_batch.bucket(3), 2u);
  EXPECT_EQ(histogram_count(st.input_time), 3u);
  EXPECT_EQ(histogram_count(st.validate_time), 3u);
  // The first report of each batch was out of range.
  EXPECT_EQ(st.reports_in.get(), 15u);
  EXPECT_EQ(st.reports_accepted.get(), 12u);
  EXPECT_EQ(st.reports_rejected.get(), 3u);
  EXPECT_EQ(in->stats.reports_accepted.get(), 12u);
  EXPECT_GE(st.loop_iterations.get(), 3u);
}

}  // namespace
}  // namespace tianhe::runtime
