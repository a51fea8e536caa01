// End to end in one process: a gateway on loopback ports chosen at run time, a fleet sending
// reports with acks, then the store, the HTTP API and the counters are checked. The checks are
// on counts that hold whatever the scheduler does (a fleet sends an exact number of reports
// that fits in the socket buffers; waits are on conditions with generous deadlines), never on
// rates or batch sizes.
#include "app/gateway.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "control/config.h"
#include "core/clock.h"
#include "core/http_get.h"
#include "protocols/report/report_encoder.h"
#include "protocols/report/report_simulator.h"
#include "sinks/store/store.h"
#include "sinks/store/store_config.h"

namespace tianhe::app {
namespace {

namespace fs = std::filesystem;
using protocols::report::run_simulator;
using protocols::report::SimulatorOptions;

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

/// Deadline for anything a test waits on: far beyond what a loaded machine needs.
constexpr double kWaitSeconds = 60;

/// The simulator's model, shared with the integration tests.
std::string model_toml() {
  std::ifstream in(std::string(TH_SOURCE_DIR) + "/test/fixtures/env_sensor_model.toml");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// /metrics text parsed into samples, so that tests compare numbers rather than search text.
class Metrics {
 public:
  explicit Metrics(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      const size_t space = line.rfind(' ');
      if (space == std::string::npos) continue;
      Sample s;
      std::string head = line.substr(0, space);
      s.value = std::stod(line.substr(space + 1));
      if (const size_t brace = head.find('{'); brace != std::string::npos) {
        // name{a="x",b="y"}: our label values hold no quotes or commas.
        std::string labels = head.substr(brace + 1, head.size() - brace - 2);
        head.resize(brace);
        std::istringstream pairs(labels);
        std::string pair;
        while (std::getline(pairs, pair, ',')) {
          const size_t eq = pair.find('=');
          if (eq == std::string::npos || pair.size() < eq + 3) continue;
          s.labels[pair.substr(0, eq)] = pair.substr(eq + 2, pair.size() - eq - 3);
        }
      }
      s.name = head;
      samples_.push_back(std::move(s));
    }
  }

  /// Sum of the samples of `name` whose labels include every one of `labels`.
  double value(const std::string& name,
               const std::map<std::string, std::string>& labels = {}) const {
    double sum = 0;
    for (const Sample& s : samples_) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : labels) {
        auto it = s.labels.find(k);
        match &= it != s.labels.end() && it->second == v;
      }
      if (match) sum += s.value;
    }
    return sum;
  }
  /// Whether any sample of `name` is present.
  bool has(const std::string& name) const {
    for (const Sample& s : samples_) {
      if (s.name == name) return true;
    }
    return false;
  }

 private:
  struct Sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
  };
  std::vector<Sample> samples_;
};

using Pair = std::pair<uint64_t, uint32_t>;  ///< (device, seq)

/// The "device seq" lines the simulator wrote for --acked-out.
std::vector<Pair> read_acked(const fs::path& file) {
  std::vector<Pair> out;
  std::ifstream in(file);
  uint64_t d = 0;
  uint32_t s = 0;
  while (in >> d >> s) out.emplace_back(d, s);
  return out;
}

/// How often each (device, seq) of devices [first, first + count) is in the store.
std::map<Pair, int> stored_pairs(const std::string& store_dir, uint64_t first, uint64_t count) {
  std::map<Pair, int> out;
  auto reader = sinks::store::StoreReader::open(store_dir);
  EXPECT_TRUE(reader.ok()) << reader.error().message;
  if (!reader.ok()) return out;
  for (uint64_t id = first; id < first + count; ++id) {
    sinks::store::HistoryQuery q;
    q.device_id = id;
    q.limit = 1'000'000;
    auto rows = (*reader)->history(q);
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    if (!rows.ok()) break;
    for (const auto& r : *rows) ++out[{r.device_id, r.seq}];
  }
  return out;
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

  /// A fleet that sends exactly `reports` reports with acks to `port`. They fit in the
  /// gateway's and the fleet's socket buffers, so none can be dropped however late a thread
  /// runs; the duration is only a deadline, and the drain ends once every ack is in.
  SimulatorOptions fleet(uint16_t port, uint64_t reports, const std::string& acked_name) const {
    SimulatorOptions o;
    o.port = port;
    o.devices = 1000;
    o.max_reports = reports;
    o.rate = 0;
    o.duration_s = kWaitSeconds;
    o.drain_s = kWaitSeconds;
    o.ack = true;
    o.progress = false;
    o.sockets = 8;
    o.acked_out = (dir_ / acked_name).string();
    return o;
  }

  /// The status code and body of GET `path` (0 and the error when it failed).
  static std::pair<int, std::string> get(uint16_t port, const std::string& path) {
    auto r = core::http_get("127.0.0.1", port, path);
    if (!r.ok()) return {0, r.error().message};
    return {r->status, r->body};
  }

  static bool wait_for(const std::function<bool()>& cond, double seconds = kWaitSeconds) {
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

  SimulatorOptions o = fleet((*gw)->port("report"), 2000, "acked.txt");
  o.invalid_every = 10;  // every 10th report has temperature 1000: out of range
  auto sum = run_simulator(o);
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  ASSERT_EQ(sum->sent, 2000u);
  // Every report is answered once: OK, or REJECTED for the invalid ones.
  EXPECT_EQ(sum->lost, 0u);
  EXPECT_EQ(sum->busy, 0u);
  EXPECT_EQ(sum->rejected, sum->sent / 10);
  EXPECT_EQ(sum->acked_ok + sum->rejected, sum->sent);

  // The gateway's counters tell the same story, and add up.
  const Metrics m((*gw)->metrics_text());
  const std::map<std::string, std::string> report{{"protocol", "report"}};
  EXPECT_EQ(m.value("tianhe_datagrams_received_total", report), sum->datagrams);
  EXPECT_EQ(m.value("tianhe_datagrams_dropped_total"), 0);
  const double received = m.value("tianhe_reports_received_total", report);
  const double accepted = m.value("tianhe_reports_accepted_total", report);
  const double rejected = m.value("tianhe_reports_rejected_total", report);
  EXPECT_EQ(received, sum->sent);
  EXPECT_EQ(accepted, received - rejected);
  EXPECT_EQ(rejected, m.value("tianhe_reports_rejected_total", {{"reason", "out_of_range"}}));
  EXPECT_EQ(rejected, sum->rejected);
  EXPECT_EQ(m.value("tianhe_reports_acked_total", {{"status", "ok"}}), sum->acked_ok);
  EXPECT_EQ(m.value("tianhe_reports_acked_total", {{"status", "rejected"}}), sum->rejected);

  // Every acknowledged report is stored, once, and nothing else is (rejected reports never).
  ASSERT_TRUE(wait_for([&] { return (*gw)->sinks_caught_up(); }));
  auto reader = sinks::store::StoreReader::open(store_dir());
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  auto counts = (*reader)->counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->reports, accepted);
  const std::vector<Pair> acked = read_acked(dir_ / "acked.txt");
  EXPECT_EQ(acked.size(), sum->acked_ok);
  const std::map<Pair, int> stored = stored_pairs(store_dir(), 1, 1000);
  size_t missing = 0;
  for (const Pair& p : acked) missing += stored.count(p) == 0;
  EXPECT_EQ(missing, 0u) << "acknowledged reports not in the store";
  for (const auto& [p, n] : stored) EXPECT_EQ(n, 1) << "device " << p.first << " seq " << p.second;

  // The HTTP API serves the stored reports and the same counters.
  auto [status, body] = get((*gw)->http_port(), "/api/v1/devices/1/latest");
  ASSERT_EQ(status, 200) << body;
  const auto latest = nlohmann::json::parse(body);
  EXPECT_EQ(latest["device_id"], 1);
  EXPECT_TRUE(latest["metrics"].contains("temperature")) << body;
  std::tie(status, body) = get((*gw)->http_port(), "/api/v1/devices/2/reports?from=-1h&limit=5");
  ASSERT_EQ(status, 200) << body;
  const auto history = nlohmann::json::parse(body);
  EXPECT_EQ(history["device_id"], 2);
  EXPECT_EQ(history["reports"].size(), history["count"].get<size_t>());
  EXPECT_GT(history["count"].get<size_t>(), 0u) << body;
  EXPECT_EQ(get((*gw)->http_port(), "/api/v1/devices/abc/latest").first, 400);
  std::tie(status, body) = get((*gw)->http_port(), "/metrics");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(Metrics(body).value("tianhe_reports_acked_total"),
            m.value("tianhe_reports_acked_total"));
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

  auto metrics = [&] { return Metrics((*gw)->metrics_text()); };
  ASSERT_TRUE(wait_for([&] {
    const Metrics t = metrics();
    return t.value("tianhe_datagrams_received_total") == 4 &&
           t.value("tianhe_reports_rejected_total", {{"reason", "unknown_device"}}) == 1;
  })) << (*gw)->metrics_text();
  const Metrics t = metrics();
  EXPECT_EQ(t.value("tianhe_datagrams_dropped_total"), 3) << (*gw)->metrics_text();
  EXPECT_EQ(t.value("tianhe_reports_received_total"), 1);
  EXPECT_EQ(t.value("tianhe_reports_rejected_total"), 1);
  EXPECT_EQ(t.value("tianhe_reports_accepted_total"), 0);
  EXPECT_TRUE(t.has("tianhe_reports_accepted_total"));
  (*gw)->stop();
  auto reader = sinks::store::StoreReader::open(store_dir());
  ASSERT_TRUE(reader.ok());
  auto counts = (*reader)->counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->reports, 0u);
}

TEST_F(GatewayTest, ReceiveWindowBatchesBurstsAndLosesNoAck) {
  // A long window after every receive that found several datagrams: the acks still all come
  // back, each once, and the datagrams that wait meanwhile are taken together. The fleet
  // sends as fast as it can (64 datagrams per system call), so receives find several.
  cfg_.receive_window = std::chrono::milliseconds(5);
  auto gw = Gateway::start(cfg_);
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  SimulatorOptions o = fleet((*gw)->port("report"), 3000, "acked.txt");
  o.sockets = 2;
  auto sum = run_simulator(o);
  ASSERT_TRUE(sum.ok()) << sum.error().message;
  ASSERT_EQ(sum->sent, 3000u);
  EXPECT_EQ(sum->lost, 0u);
  EXPECT_EQ(sum->acked_ok, sum->sent);
  const std::vector<Pair> acked = read_acked(dir_ / "acked.txt");
  EXPECT_EQ(std::set<Pair>(acked.begin(), acked.end()).size(), sum->sent) << "an ack came twice";

  const Metrics m((*gw)->metrics_text());
  const double datagrams = m.value("tianhe_datagrams_received_total");
  const double batches = m.value("tianhe_receive_batches_total");
  const double windows = m.value("tianhe_shard_receive_windows_total");
  EXPECT_EQ(datagrams, static_cast<double>(sum->datagrams));
  EXPECT_GT(windows, 0) << "no receive found several datagrams";
  EXPECT_LT(batches, datagrams);
  // A window is waited only after a receive of two datagrams or more.
  EXPECT_GE(datagrams, batches + windows);
  (*gw)->stop();
}

TEST_F(GatewayTest, RestartKeepsEverythingAcknowledged) {
  double accepted = 0;
  std::vector<Pair> acked;
  for (int round = 0; round < 2; ++round) {
    auto gw = Gateway::start(cfg_);
    ASSERT_TRUE(gw.ok()) << gw.error().message;
    const std::string file = "acked-" + std::to_string(round) + ".txt";
    SimulatorOptions o = fleet((*gw)->port("report"), 1500, file);
    o.devices = 500;
    o.seed = 1 + round;
    o.first_device_id = 1 + 500 * round;  // each round its own devices
    auto sum = run_simulator(o);
    ASSERT_TRUE(sum.ok()) << sum.error().message;
    EXPECT_EQ(sum->sent, 1500u);
    EXPECT_EQ(sum->lost, 0u);
    for (const Pair& p : read_acked(dir_ / file)) acked.push_back(p);
    accepted += Metrics((*gw)->metrics_text()).value("tianhe_reports_accepted_total");
    (*gw)->stop();
  }
  ASSERT_GT(acked.size(), 0u);
  // Restart once more: the store catches up on whatever the log still holds.
  auto gw = Gateway::start(cfg_);
  ASSERT_TRUE(gw.ok()) << gw.error().message;
  ASSERT_TRUE(wait_for([&] { return (*gw)->sinks_caught_up(); }));
  auto reader = sinks::store::StoreReader::open(store_dir());
  ASSERT_TRUE(reader.ok());
  auto counts = (*reader)->counts();
  ASSERT_TRUE(counts.ok());
  // Every accepted report of both rounds is stored, once; so is every acknowledged one.
  EXPECT_EQ(counts->reports, accepted);
  const std::map<Pair, int> stored = stored_pairs(store_dir(), 1, 1000);
  size_t missing = 0;
  for (const Pair& p : acked) missing += stored.count(p) == 0;
  EXPECT_EQ(missing, 0u) << "acknowledged reports not in the store after restarts";
  for (const auto& [p, n] : stored) EXPECT_EQ(n, 1) << "device " << p.first << " seq " << p.second;
  (*gw)->stop();
}

}  // namespace
}  // namespace tianhe::app
