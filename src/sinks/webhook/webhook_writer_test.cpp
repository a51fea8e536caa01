// The webhook writer and its ceiling against an endpoint in this process (a small HTTP/1.1
// server on a loopback port, answering as each test tells it): the cursor file, the
// Idempotency-Key and signature on the wire, the sequence window's decisions across a batch
// offered again, Retry-After, refused records isolated and dead-lettered, and what is counted
// as a possible duplicate after a crash.
#include "sinks/webhook/webhook_writer.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/record_format.h"
#include "pipeline/registry.h"
#include "sinks/common/cursor_file.h"
#include "sinks/common/dead_letter.h"
#include "sinks/webhook/webhook_ceiling.h"
#include "sinks/webhook/webhook_message.h"

namespace tianhe::sinks::webhook {
namespace {

struct Request {
  std::string head;  ///< request line and headers
  std::string body;
  /// A header's value ("" when absent); names compare case-insensitively.
  std::string header(std::string_view name) const {
    std::string lower_head = head, lower_name(name);
    for (char& ch : lower_head)
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    for (char& ch : lower_name)
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const size_t at = lower_head.find("\r\n" + lower_name + ":");
    if (at == std::string::npos) return "";
    const size_t from = at + 3 + name.size();
    std::string v = head.substr(from, head.find("\r\n", from) - from);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    return v;
  }
  std::vector<nlohmann::json> records() const {
    std::vector<nlohmann::json> out;
    const nlohmann::json j = nlohmann::json::parse(body);
    for (const auto& r : j["records"]) out.push_back(r);
    return out;
  }
};

struct Reply {
  int status = 200;
  std::string body = "ok";
  std::string headers;  ///< extra header lines, each ending in \r\n
};

/// An HTTP/1.1 endpoint on 127.0.0.1 (keep-alive, one connection at a time).
class Endpoint {
 public:
  Endpoint() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen";
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~Endpoint() { shut(); }
  /// Stops serving and closes the port: connections are refused from now on.
  void shut() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/ingest"; }
  void answer(std::function<Reply(const Request&)> f) {
    std::lock_guard lock(mu_);
    handler_ = std::move(f);
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  bool wait_readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    while (!stop_) {
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }
  void run() {
    while (wait_readable(fd_)) {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      serve(c);
      ::close(c);
    }
  }
  void serve(int c) {
    std::string in;
    char buf[65536];
    for (;;) {
      size_t end;
      while ((end = in.find("\r\n\r\n")) == std::string::npos) {
        if (!wait_readable(c)) return;
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) return;
        in.append(buf, static_cast<size_t>(n));
      }
      Request r;
      r.head = in.substr(0, end + 2);
      const size_t length = std::stoul("0" + r.header("Content-Length"));
      in.erase(0, end + 4);
      while (in.size() < length) {
        if (!wait_readable(c)) return;
        const ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) return;
        in.append(buf, static_cast<size_t>(n));
      }
      r.body = in.substr(0, length);
      in.erase(0, length);
      Reply reply;
      {
        std::lock_guard lock(mu_);
        if (handler_) reply = handler_(r);
        requests_.push_back(r);
      }
      const std::string out = "HTTP/1.1 " + std::to_string(reply.status) +
                              " X\r\nContent-Length: " + std::to_string(reply.body.size()) +
                              "\r\n" + reply.headers + "\r\n" + reply.body;
      // MSG_NOSIGNAL: a client that gave up has closed its end (no SIGPIPE).
      if (::send(c, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
        return;
      }
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::function<Reply(const Request&)> handler_;
  std::vector<Request> requests_;
  std::thread thread_;
};

/// Reports of devices `device`.. in one log record at `offset` of shard 0, as a Batch.
struct TestBatch {
  std::vector<uint8_t> payload;
  core::ReportBatch decoded{256, 1024};
  std::vector<core::Report> reports;
  std::vector<ReportPosition> positions;
  std::vector<ShardCursor> cursors;
  Batch batch(DeadLetter* d) const { return Batch{reports, cursors, positions, d}; }
};
/// (device, seq) pairs, all in the record at `offset`; the batch ends at `end`.
void make(TestBatch& t, const std::vector<std::pair<uint64_t, uint32_t>>& pairs, uint64_t offset,
          uint64_t end) {
  core::ReportBatch b(256, 1024);
  t.payload.assign(1 << 16, 0);
  size_t used = 3;
  for (const auto& [device, seq] : pairs) {
    core::Report* r = b.add_report();
    r->device_id = device;
    r->seq = seq;
    r->device_time_ns = 1'700'000'000'000'000'000 + seq;
    core::Metric* m = b.add_metric(*r);
    m->name = "temperature";
    m->value.f64 = 20.5;
    used += core::encode_report(b, *r, std::span(t.payload).subspan(used));
  }
  core::encode_payload_header(static_cast<uint16_t>(pairs.size()), t.payload);
  t.payload.resize(used);
  t.decoded.clear();
  ASSERT_EQ(core::decode_payload(t.payload, t.decoded), core::RecordStatus::kOk);
  t.reports.assign(t.decoded.begin(), t.decoded.end());
  t.positions.clear();
  for (uint32_t i = 0; i < pairs.size(); ++i) t.positions.push_back({0, i, offset});
  t.cursors = {{0, end}};
}

std::vector<std::pair<uint64_t, uint32_t>> pairs_of(const std::vector<nlohmann::json>& records) {
  std::vector<std::pair<uint64_t, uint32_t>> out;
  out.reserve(records.size());
  for (const auto& r : records) out.emplace_back(r["device_id"], r["seq"]);
  return out;
}

class WebhookWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-webhook-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    settings_.url = endpoint_.url();
    settings_.secret = "k3y";
    settings_.timeout = std::chrono::milliseconds(5000);
    settings_.max_attempts = 2;
    dead_ = std::make_unique<DeadLetter>(dir_, "webhook");
  }
  void TearDown() override {
    dead_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<WebhookWriter> writer() {
    return std::make_unique<WebhookWriter>(settings_, "webhook", cursor_path(), nullptr);
  }
  std::string cursor_path() const { return dir_ + "/sinks/webhook.cursor"; }

  Endpoint endpoint_;
  std::string dir_;
  WebhookSettings settings_;
  std::unique_ptr<DeadLetter> dead_;
};

TEST_F(WebhookWriterTest, ADownEndpointFailsOpenInWords) {
  settings_.url = "http://127.0.0.1:1/ingest";  // nothing listens on port 1
  auto w = writer();
  auto r = w->open(1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("webhook: cannot connect to http://127.0.0.1:1/ingest"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("check that the endpoint is up"), std::string::npos);
}

TEST_F(WebhookWriterTest, ADeliveredBatchIsSignedKeyedAndItsCursorSaved) {
  auto w = writer();
  auto c = w->open(2);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c.value(), (std::vector<uint64_t>{0, 0}));
  TestBatch t;
  make(t, {{7, 1}, {8, 1}}, 16, 200);
  t.cursors = {{0, 200}, {1, 16}};
  std::string error;
  ASSERT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kAccepted) << error;
  const auto reqs = endpoint_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].header("Content-Type"), "application/json");
  EXPECT_EQ(reqs[0].header("Idempotency-Key"), "webhook:0.16.0-0.16.1");
  EXPECT_EQ(reqs[0].header("Expect"), "");
  const std::string sig = reqs[0].header("X-Tianhe-Signature");
  ASSERT_EQ(sig.substr(0, 2), "t=");
  const int64_t t_s = std::stoll(sig.substr(2, sig.find(',') - 2));
  EXPECT_EQ(sig, signature("k3y", t_s, reqs[0].body));
  EXPECT_EQ(nlohmann::json::parse(reqs[0].body)["sink"], "webhook");
  EXPECT_EQ(pairs_of(reqs[0].records()),
            (std::vector<std::pair<uint64_t, uint32_t>>{{7, 1}, {8, 1}}));
  auto saved = load_cursor_file(cursor_path(), 2);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->shards, (std::vector<uint64_t>{200, 16}));
  EXPECT_EQ(saved->values.count("inflight_reports"), 0u);  // nothing in flight
  EXPECT_EQ(saved->values.at("duplicates"), 0u);
  w->close();
  auto again = writer()->open(2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), (std::vector<uint64_t>{200, 16}));
}

TEST_F(WebhookWriterTest, RetransmissionsAreSkippedButABatchOfferedAgainIsSentWhole) {
  auto w = writer();
  ASSERT_TRUE(w->open(1).ok());
  std::string error;
  TestBatch a;
  make(a, {{7, 1}, {7, 2}}, 16, 100);
  ASSERT_EQ(w->write(a.batch(dead_.get()), false, error), WriteStatus::kAccepted) << error;
  // The device sent seq 2 again (its ack was lost), then 3; the endpoint is busy once.
  int calls = 0;
  endpoint_.answer([&](const Request&) { return ++calls == 1 ? Reply{503, "busy"} : Reply{}; });
  TestBatch b;
  make(b, {{7, 2}, {7, 3}}, 100, 180);
  EXPECT_EQ(w->write(b.batch(dead_.get()), false, error), WriteStatus::kBlocked);
  EXPECT_NE(error.find("HTTP 503: busy"), std::string::npos) << error;
  // The endpoint answered: nothing of this batch is named in flight (a stop now counts none).
  EXPECT_EQ(load_cursor_file(cursor_path(), 1)->values.count("inflight_reports"), 0u);
  // Offered again: seq 3 must still go (the window marked it when the batch was first built).
  ASSERT_EQ(w->write(b.batch(dead_.get()), false, error), WriteStatus::kAccepted) << error;
  const auto reqs = endpoint_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(pairs_of(reqs[1].records()), (std::vector<std::pair<uint64_t, uint32_t>>{{7, 3}}));
  EXPECT_EQ(reqs[2].body, reqs[1].body);
  EXPECT_EQ(reqs[2].header("Idempotency-Key"), reqs[1].header("Idempotency-Key"));
  EXPECT_EQ(w->stats().retransmissions_skipped.load(), 1u);
  EXPECT_EQ(w->stats().requests[0].load(), 2u);  // delivered
  EXPECT_EQ(w->stats().requests[1].load(), 1u);  // try later
  EXPECT_EQ(w->stats().duplicates.load(), 0u);
}

TEST_F(WebhookWriterTest, RetryAfterHoldsRequestsBackWithinTheMaximum) {
  settings_.max_retry_after = std::chrono::seconds(30);
  auto w = writer();
  ASSERT_TRUE(w->open(1).ok());
  endpoint_.answer([](const Request&) { return Reply{429, "slow down", "Retry-After: 3600\r\n"}; });
  TestBatch t;
  make(t, {{7, 1}}, 16, 100);
  std::string error;
  EXPECT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kBlocked);
  EXPECT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kBlocked);
  EXPECT_NE(error.find("Retry-After"), std::string::npos) << error;
  EXPECT_NE(error.find("waiting 30 s"), std::string::npos) << error;  // cut to the maximum
  EXPECT_EQ(endpoint_.requests().size(), 1u);  // the second write sent nothing
  EXPECT_EQ(w->stats().retry_after_waits.load(), 1u);
}

TEST_F(WebhookWriterTest, RefusedRecordsAreIsolatedAndDeadLetteredTheRestDelivered) {
  auto w = writer();
  ASSERT_TRUE(w->open(1).ok());
  endpoint_.answer([](const Request& r) {
    for (const auto& rec : r.records()) {
      if (rec["device_id"] == 9) return Reply{400, "device 9 is not ours"};
    }
    return Reply{};
  });
  TestBatch t;
  make(t, {{7, 1}, {9, 1}, {8, 1}, {7, 2}, {9, 2}}, 16, 300);
  std::string error;
  EXPECT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kBlocked);
  EXPECT_NE(error.find("attempt 1 of 2"), std::string::npos) << error;
  ASSERT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kAccepted) << error;
  std::vector<std::pair<uint64_t, uint32_t>> delivered;
  for (const auto& r : endpoint_.requests()) {
    if (r.body.find("\"device_id\":9") != std::string::npos) continue;
    for (const auto& p : pairs_of(r.records())) delivered.push_back(p);
  }
  std::sort(delivered.begin(), delivered.end());
  EXPECT_EQ(delivered, (std::vector<std::pair<uint64_t, uint32_t>>{{7, 1}, {7, 2}, {8, 1}}));
  EXPECT_EQ(dead_->records(), 2u);  // synced before the cursors were saved
  std::ifstream in(dead_->path());
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j["record"]["device_id"], 9);
    EXPECT_EQ(j["reason"], "HTTP 400: device 9 is not ours");
    EXPECT_EQ(j["attempts"], 2);
    ++lines;
  }
  EXPECT_EQ(lines, 2);
  EXPECT_EQ(load_cursor_file(cursor_path(), 1)->shards[0], 300u);
}

TEST_F(WebhookWriterTest, AfterACrashWhatWasInFlightIsCountedOnceAndTheCountIsKept) {
  // The file a crash left: confirmed up to 16, a batch of 2 reports ending at 300 was being
  // posted, 5 possible duplicates counted before.
  const ShardCursor confirmed[] = {{0, 16}};
  ASSERT_TRUE(save_cursor_file(cursor_path(), confirmed,
                               {{"inflight_0", 300}, {"inflight_reports", 2}, {"duplicates", 5}})
                  .ok());
  auto w = writer();
  auto c = w->open(1);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.value(), (std::vector<uint64_t>{16}));
  EXPECT_EQ(w->stats().duplicates.load(), 7u);
  auto saved = load_cursor_file(cursor_path(), 1);
  EXPECT_EQ(saved->values.count("inflight_reports"), 0u);  // counted once, not at every open
  EXPECT_EQ(saved->values.at("duplicates"), 7u);
  TestBatch t;
  make(t, {{7, 1}, {7, 2}}, 16, 300);
  std::string error;
  ASSERT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kAccepted) << error;
  EXPECT_EQ(w->stats().duplicates.load(), 7u);
  w->close();
  auto again = writer();
  ASSERT_TRUE(again->open(1).ok());
  EXPECT_EQ(again->stats().duplicates.load(), 7u);  // a clean restart adds nothing
}

TEST_F(WebhookWriterTest, ARequestWithoutAnAnswerIsCountedWhenItHappens) {
  settings_.timeout = std::chrono::milliseconds(300);
  auto w = writer();
  ASSERT_TRUE(w->open(1).ok());
  std::atomic<bool> release{false};
  endpoint_.answer([&](const Request&) {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return Reply{};
  });
  TestBatch t;
  make(t, {{7, 1}}, 16, 100);
  std::string error;
  EXPECT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kRetry);
  EXPECT_NE(error.find("curl error 28"), std::string::npos) << error;  // timed out
  release = true;
  EXPECT_EQ(w->stats().duplicates.load(), 1u);  // it may have arrived
  auto saved = load_cursor_file(cursor_path(), 1);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->shards[0], 0u);
  EXPECT_EQ(saved->values.at("duplicates"), 1u);
  EXPECT_EQ(saved->values.count("inflight_reports"), 0u);
  w->close();
  ASSERT_TRUE(w->open(1).ok());
  endpoint_.answer([](const Request&) { return Reply{}; });
  ASSERT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kAccepted) << error;
  EXPECT_EQ(w->stats().duplicates.load(), 1u);
}

TEST_F(WebhookWriterTest, AnEndpointThatIsGoneCountsNoDuplicate) {
  auto w = writer();
  ASSERT_TRUE(w->open(1).ok());
  endpoint_.shut();  // connections are refused from now on: nothing can be sent
  TestBatch t;
  make(t, {{7, 1}}, 16, 100);
  std::string error;
  EXPECT_EQ(w->write(t.batch(dead_.get()), false, error), WriteStatus::kRetry);
  EXPECT_NE(error.find("curl error 7"), std::string::npos) << error;
  EXPECT_EQ(w->stats().duplicates.load(), 0u);
  EXPECT_EQ(load_cursor_file(cursor_path(), 1)->values.count("inflight_reports"), 0u);
}

TEST_F(WebhookWriterTest, TheCeilingPostsTheSameLayoutForTheRegistrysDevices) {
  pipeline::ModelSpec m{.name = "env_sensor",
                        .metrics = {{.name = "temperature", .min = -40, .max = 85},
                                    {.name = "door_open", .type = core::ValueType::kBool}}};
  pipeline::DeviceRange d{.first_id = 1, .count = 3, .tenant = "acme", .model = "env_sensor"};
  auto registry = pipeline::Registry::build({}, std::span(&m, 1), std::span(&d, 1));
  ASSERT_TRUE(registry.ok()) << registry.error().message;
  runtime::GatewayContext gateway;
  gateway.registry = registry.value();
  WebhookConfig config;
  config.sink.url = endpoint_.url();
  config.sink.batch_reports = 40;
  auto rate = ceiling(config, gateway, 100);
  ASSERT_TRUE(rate.ok()) << rate.error().message;
  EXPECT_GT(rate.value(), 0);
  const auto reqs = endpoint_.requests();
  ASSERT_EQ(reqs.size(), 3u);  // 40 + 40 + 20
  size_t records = 0;
  for (const auto& r : reqs) {
    EXPECT_EQ(nlohmann::json::parse(r.body)["sink"], kCeilingSink);
    for (const auto& rec : r.records()) {
      EXPECT_EQ(rec["tenant"], "acme");
      EXPECT_EQ(rec["model"], "env_sensor");
      EXPECT_GE(rec["device_id"], 1);
      EXPECT_LE(rec["device_id"], 3);
      EXPECT_EQ(rec["metrics"]["temperature"], 22.5);
      EXPECT_EQ(rec["metrics"]["door_open"], false);
      ++records;
    }
  }
  EXPECT_EQ(records, 100u);
  endpoint_.answer([](const Request&) { return Reply{500, "no"}; });
  EXPECT_FALSE(ceiling(config, gateway, 10).ok());
}

}  // namespace
}  // namespace tianhe::sinks::webhook
