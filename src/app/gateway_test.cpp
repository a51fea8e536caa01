// End to end in one process: a gateway on loopback ports chosen at run time, a fleet sending
// reports with acks, then the store, the HTTP API and the counters are checked.
#include "app/gateway.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "app/simulator.h"
#include "control/config.h"
#include "core/clock.h"
#include "core/metrics.h"
#include "protocols/report/report_encoder.h"
#include "sinks/store/store.h"
#include "sinks/store/store_config.h"

namespace tianhe::app {
namespace {

namespace fs = std::filesystem;

constexpr const char* kEndpoints = R"(
[protocols.report]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[devices]]
id = 1
count = 1000
tenant = "t1"
model = "env_sensor"
)";

/// The simulator's model, shared with the integration tests.
std::string model_toml() {
  std::ifstream in(std::string(TH_SOURCE_DIR) + "/test/fixtures/env_sensor_model.toml");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tianhe-gw-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    std::string toml =
        "[gateway]\ndata_dir = \"" + dir_.string() + "\"\nshards = 2\n" + kEndpoints + model_toml();
    auto cfg = control::parse_config(toml);
    ASSERT_TRUE(cfg.ok()) << cfg.error().message;
    cfg_ = *cfg;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string store_dir() const {
    return cfg_.extension<sinks::store::StoreConfig>("sinks.store")->dir;
  }

  static std::string http_get(uint16_t port, const std::string& path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return "";
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    EXPECT_GT(write(fd, req.data(), req.size()), 0);
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    close(fd);
    return out;
  }

  static bool wait_for(const std::function<bool()>& cond, double seconds = 20) {
    const int64_t deadline = core::mono_ns() + static_cast<int64_t>(seconds * 1e9);
    while (core::mono_ns() < deadline) {
      if (cond()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
  }

  fs::path dir_;
  control::GatewayConfig cfg_;
};

TEST_F(GatewayTest, AcceptsAcksStoresAndServesReports) {
  auto gw = Gateway::start(cfg_);
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  ASSERT_NE((*gw)->port("report"), 0);
  ASSERT_NE((*gw)->http_port(), 0);

  SimulatorOptions o;
  o.port = (*gw)->port("report");
  o.devices = 1000;
  o.rate = 20000;
  o.duration_s = 0.5;
  o.ack = true;
  o.progress = false;
  o.invalid_every = 10;  // every 10th report has temperature 1000: out of range
  o.sockets = 8;
  auto sum = run_simulator(o);
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  ASSERT_GT(sum->sent, 1000u);
  EXPECT_EQ(sum->lost, 0u);
  EXPECT_EQ(sum->busy, 0u);
  EXPECT_EQ(sum->rejected, sum->sent / 10);
  EXPECT_EQ(sum->acked_ok + sum->rejected, sum->sent);

  ASSERT_TRUE(wait_for([&] { return (*gw)->sinks_caught_up(); }));
  auto reader = sinks::store::StoreReader::open(store_dir());
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  auto counts = (*reader)->counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->reports, sum->acked_ok);  // rejected reports are never stored

  const std::string metrics = (*gw)->metrics_text();
  EXPECT_NE(
      metrics.find("tianhe_reports_rejected_total{protocol=\"report\",reason=\"out_of_range\"} " +
                   std::to_string(sum->rejected)),
      std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tianhe_reports_accepted_total{protocol=\"report\"} " +
                         std::to_string(sum->acked_ok)),
            std::string::npos);

  auto latest = http_get((*gw)->http_port(), "/api/v1/devices/1/latest");
  EXPECT_NE(latest.find("200 OK"), std::string::npos) << latest;
  EXPECT_NE(latest.find("\"temperature\""), std::string::npos) << latest;
  auto history = http_get((*gw)->http_port(), "/api/v1/devices/2/reports?from=-1h&limit=5");
  EXPECT_NE(history.find("\"reports\""), std::string::npos) << history;
  EXPECT_NE(http_get((*gw)->http_port(), "/api/v1/devices/abc/latest").find("400"),
            std::string::npos);
  EXPECT_NE(http_get((*gw)->http_port(), "/metrics").find("# TYPE tianhe_reports_acked_total"),
            std::string::npos);
  (*gw)->stop();
}

TEST_F(GatewayTest, MalformedAndUnknownDatagramsAreCountedNeverStored) {
  auto gw = Gateway::start(cfg_);
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons((*gw)->port("report"));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto send = [&](const void* p, size_t n) {
    ASSERT_EQ(sendto(fd, p, n, 0, reinterpret_cast<sockaddr*>(&a), sizeof a),
              static_cast<ssize_t>(n));
  };
  send("", 0);                  // zero-length
  send("\x12\x05\x09", 3);      // truncated
  send("\xff\xff\xff\xff", 4);  // garbage
  // A well-formed report from an unregistered device.
  uint8_t buf[256];
  protocols::report::EnvelopeEncoder enc(buf);
  protocols::report::MetricIn m[1];
  m[0].name = "temperature";
  m[0].value.type = core::ValueType::kDouble;
  m[0].value.f64 = 20;
  ASSERT_TRUE(enc.add_report(99999, 1, core::wall_ns(), false, m));
  send(enc.bytes().data(), enc.size());
  close(fd);

  ASSERT_TRUE(wait_for([&] {
    auto t = (*gw)->metrics_text();
    return t.find("tianhe_datagrams_received_total{protocol=\"report\"} 4") != std::string::npos;
  })) << (*gw)->metrics_text();
  ASSERT_TRUE(wait_for([&] {
    auto t = (*gw)->metrics_text();
    return t.find("reason=\"unknown_device\"} 1") != std::string::npos;
  }));
  auto t = (*gw)->metrics_text();
  EXPECT_NE(t.find("tianhe_reports_accepted_total{protocol=\"report\"} 0"), std::string::npos);
  (*gw)->stop();
  auto reader = sinks::store::StoreReader::open(store_dir());
  ASSERT_TRUE(reader.ok());
  EXPECT_EQ((*reader)->counts()->reports, 0u);
}

TEST_F(GatewayTest, ReceiveWindowBatchesBurstsAndLosesNoAck) {
  // A long window, so that every burst after the first datagrams waits in the socket: the
  // acks still all come back, each once, and the receives take several datagrams each.
  cfg_.receive_window = std::chrono::milliseconds(5);
  auto gw = Gateway::start(cfg_);
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  SimulatorOptions o;
  o.port = (*gw)->port("report");
  o.devices = 1000;
  o.rate = 50000;  // bursts of about 10 datagrams (the fleet sends every 200 us)
  o.duration_s = 0.4;
  o.ack = true;
  o.progress = false;
  o.sockets = 2;
  auto sum = run_simulator(o);
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  ASSERT_GT(sum->sent, 1000u);
  EXPECT_EQ(sum->lost, 0u);
  EXPECT_EQ(sum->acked_ok, sum->sent);
  const std::string t = (*gw)->metrics_text();
  const double datagrams = core::sum_samples(t, "tianhe_datagrams_received_total");
  const double batches = core::sum_samples(t, "tianhe_receive_batches_total");
  EXPECT_EQ(datagrams, static_cast<double>(sum->datagrams));
  EXPECT_GT(core::sum_samples(t, "tianhe_shard_receive_windows_total"), 0) << t;
  EXPECT_GT(batches, 0);
  EXPECT_LT(batches * 2, datagrams) << "receives should take several datagrams each";
  (*gw)->stop();
}

TEST_F(GatewayTest, RestartKeepsEverythingAcknowledged) {
  uint64_t acked = 0;
  for (int round = 0; round < 2; ++round) {
    auto gw = Gateway::start(cfg_);
    ASSERT_TRUE(gw.ok()) << gw.error().message;
    SimulatorOptions o;
    o.port = (*gw)->port("report");
    o.devices = 500;
    o.rate = 10000;
    o.duration_s = 0.3;
    o.ack = true;
    o.progress = false;
    o.seed = 1 + round;
    o.first_device_id = 1 + 500 * round;  // each round its own devices
    auto sum = run_simulator(o);
    ASSERT_TRUE(sum.ok());
    EXPECT_EQ(sum->lost, 0u);
    acked += sum->acked_ok;
    (*gw)->stop();
  }
  // Restart once more: the store catches up on whatever the log still holds.
  auto gw = Gateway::start(cfg_);
  ASSERT_TRUE(gw.ok());
  ASSERT_TRUE(wait_for([&] { return (*gw)->sinks_caught_up(); }));
  auto reader = sinks::store::StoreReader::open(store_dir());
  ASSERT_TRUE(reader.ok());
  // Every acknowledged report of both rounds is stored, once.
  EXPECT_EQ((*reader)->counts()->reports, acked);
  (*gw)->stop();
}

}  // namespace
}  // namespace tianhe::app
