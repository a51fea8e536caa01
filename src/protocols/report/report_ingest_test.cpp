// The report protocol's ingest on a real socket and log, driven by hand (the shard thread is not
// running): acks of one sender's datagrams share Ack datagrams; a receive batch that does not fit
// the report batch is flushed part-way and the rest parsed again, with nothing dropped.
#include "protocols/report/report_ingest.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include "core/clock.h"
#include "log/shard_log.h"
#include "pipeline/registry.h"

namespace tianhe::protocols::report {
namespace {

class ReportIngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-report-ingest-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_config_.dir = dir_;
    log_config_.durability = log::Durability::kNone;  // durable once written: acks go at once
    auto l = log::ShardLog::open(log_config_, 0, &log_stats_);
    ASSERT_TRUE(l.ok()) << l.error().message;
    pipeline::ModelSpec m;
    m.name = "env";
    m.metrics.push_back({.name = "temperature", .min = -40, .max = 85, .required = true});
    pipeline::DeviceRange d{.first_id = 1, .count = 1000, .tenant = "t", .model = "env"};
    auto reg = pipeline::Registry::build({}, std::span(&m, 1), std::span(&d, 1));
    ASSERT_TRUE(reg.ok()) << reg.error().message;
    shard_ = std::make_unique<runtime::Shard>(0, std::move(l.value()), *reg);
    client_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(client_, 0);
    timeval tv{5, 0};
    ::setsockopt(client_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  void TearDown() override {
    ingest_.reset();
    shard_->stop();
    ::close(client_);
    std::filesystem::remove_all(dir_);
  }
  void make_ingest(uint32_t recv_batch) {
    ReportProtocolConfig c;
    c.listen.port = 0;
    c.recv_batch = recv_batch;
    auto i = ReportIngest::create(c, &stats_, false);
    ASSERT_TRUE(i.ok()) << i.error().message;
    ingest_ = std::move(i.value());
  }
  /// Sends one datagram of `n` ack-requested reports, devices first.. first+n-1.
  void send(uint64_t first, uint32_t n) {
    std::vector<uint8_t> buf(64 << 10);
    EnvelopeEncoder enc(buf);
    MetricIn m[1];
    m[0].name = "temperature";
    m[0].value.f64 = 20;
    for (uint32_t i = 0; i < n; ++i) {
      ASSERT_TRUE(enc.add_report(first + i, 1, core::wall_ns(), true, m));
    }
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(ingest_->port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const auto bytes = enc.bytes();
    ASSERT_EQ(::sendto(client_, bytes.data(), bytes.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(bytes.size()));
  }
  /// Polls until `datagrams` have been received, then releases the acks.
  void take(uint64_t datagrams) {
    const int64_t deadline = core::mono_ns() + 20'000'000'000;
    while (stats_.datagrams_received.get() < datagrams && core::mono_ns() < deadline) {
      ingest_->poll_input(*shard_);
    }
    ASSERT_EQ(stats_.datagrams_received.get(), datagrams);
    ASSERT_EQ(ingest_->release_acks(shard_->log().durable_offset()), runtime::AckWait::kNothing);
  }
  /// Reads Ack datagrams until `entries` entries arrived; returns how many datagrams it took.
  uint32_t read_acks(size_t entries, std::vector<AckEntry>& out) {
    uint32_t datagrams = 0;
    std::vector<uint8_t> buf(64 << 10);
    std::vector<AckEntry> one(1024);
    while (out.size() < entries) {
      const ssize_t n = ::recv(client_, buf.data(), buf.size(), 0);
      if (n <= 0) break;  // the receive timeout: fewer acks than expected
      size_t count = 0;
      EXPECT_EQ(decode_ack({buf.data(), static_cast<size_t>(n)}, one, count),
                ParseStatus::kComplete);
      out.insert(out.end(), one.begin(), one.begin() + static_cast<std::ptrdiff_t>(count));
      ++datagrams;
    }
    return datagrams;
  }

  std::string dir_;
  log::LogConfig log_config_;
  log::LogStats log_stats_;
  std::unique_ptr<runtime::Shard> shard_;
  ReportStats stats_;
  std::unique_ptr<ReportIngest> ingest_;
  int client_ = -1;
};

TEST_F(ReportIngestTest, AcksOfOneSendersDatagramsShareAckDatagrams) {
  make_ingest(64);
  for (uint64_t d = 1; d <= 5; ++d) send(d, 1);
  take(5);
  std::vector<AckEntry> acks;
  const uint32_t ack_datagrams = read_acks(5, acks);
  ASSERT_EQ(acks.size(), 5u);
  for (const AckEntry& e : acks) EXPECT_EQ(e.status, AckStatus::kOk) << e.device_id;
  // One Ack datagram per receive that returned this sender's datagrams (however the kernel
  // split them across receives), not one per datagram.
  EXPECT_EQ(ack_datagrams, stats_.recv_batches.get());
  EXPECT_EQ(stats_.ack_datagrams_sent.get(), ack_datagrams);
  EXPECT_EQ(stats_.acks_sent[static_cast<int>(runtime::AckKind::kOk)].get(), 5u);
}

TEST_F(ReportIngestTest, AReceiveLargerThanTheBatchIsFlushedPartWayAndNothingIsDropped) {
  // recv_batch 4: the report batch holds 256 reports, so three datagrams of 200 reports taken
  // in one receive need a flush before the second and the third, each parsed again.
  make_ingest(4);
  for (uint64_t d = 0; d < 3; ++d) send(1 + d * 200, 200);
  take(3);
  std::vector<AckEntry> acks;
  read_acks(600, acks);
  ASSERT_EQ(acks.size(), 600u);
  for (const AckEntry& e : acks) EXPECT_EQ(e.status, AckStatus::kOk) << e.device_id;
  EXPECT_EQ(stats_.pipeline.reports_accepted.get(), 600u);
  EXPECT_EQ(stats_.datagrams_dropped[static_cast<int>(DropReason::kBatchFull)].get(), 0u);
  EXPECT_EQ(log_stats_.records_appended.load(), 3u);  // one record per flushed batch
}

}  // namespace
}  // namespace tianhe::protocols::report
