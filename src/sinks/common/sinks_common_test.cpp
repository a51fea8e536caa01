// The parts every delivering sink shares: URLs, the common keys, passwords, the record, cursor
// and dead-letter files, and the log consumer's start with the destination away, its backlog
// limit ("block" at the log, "drop_oldest" counted exactly) and its state in words. The writer
// here keeps rows in memory and can be switched off, so each behaviour is shown exactly; the
// sinks' own tests run the same paths against real servers (test/sinks/).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "core/clock.h"
#include "core/record_format.h"
#include "core/trace_context.h"
#include "core/tracing.h"
#include "log/shard_log.h"
#include "sinks/common/cursor_file.h"
#include "sinks/common/dead_letter.h"
#include "sinks/common/log_consumer.h"
#include "sinks/common/record.h"
#include "sinks/common/sink_options.h"

namespace tianhe::sinks {
namespace {

constexpr std::string_view kMysql[] = {"mysql"};

TEST(SinkUrl, ParsesTheUsualForms) {
  auto u = parse_url("mysql://tianhe:s%40cret@127.0.0.1:3307/telemetry?ssl=0", kMysql, "k");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->user, "tianhe");
  EXPECT_EQ(u->password, "s@cret");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 3307);
  EXPECT_EQ(u->path, "telemetry");
  EXPECT_EQ(u->query, "ssl=0");
  auto v6 = parse_url("mysql://[::1]:3306", kMysql, "k");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->path, "");
  auto bare = parse_url("mysql://db", kMysql, "k");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->port, 0);
}

TEST(SinkUrl, ErrorsNameTheKeyAndTheFix) {
  auto scheme = parse_url("postgresql://h/db", kMysql, "sinks.mysql.url");
  ASSERT_FALSE(scheme.ok());
  EXPECT_NE(scheme.error().message.find("sinks.mysql.url: scheme \"postgresql\""),
            std::string::npos);
  EXPECT_NE(scheme.error().message.find("mysql://"), std::string::npos);
  EXPECT_FALSE(parse_url("127.0.0.1:3306", kMysql, "k").ok());
  EXPECT_FALSE(parse_url("mysql://h:99999/db", kMysql, "k").ok());
  EXPECT_FALSE(parse_url("mysql://:3306/db", kMysql, "k").ok());
  EXPECT_FALSE(parse_url("mysql://u:%zz@h/db", kMysql, "k").ok());
}

TEST(SinkPassword, FromTheEnvironmentAFileOrTheUrl) {
  SinkOptions o;
  EXPECT_EQ(resolve_password(o, "inline", "sinks.x").value(), "inline");
  o.password_env = "TIANHE_TEST_PASSWORD_UNSET";
  ::unsetenv("TIANHE_TEST_PASSWORD_UNSET");
  auto missing = resolve_password(o, "", "sinks.x");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("sinks.x.password_env"), std::string::npos);
  ::setenv("TIANHE_TEST_PASSWORD_UNSET", "from-env", 1);
  EXPECT_EQ(resolve_password(o, "inline", "sinks.x").value(), "from-env");
  ::unsetenv("TIANHE_TEST_PASSWORD_UNSET");
  o.password_env.clear();
  const std::string file = "/tmp/th-password-" + std::to_string(::getpid());
  { std::ofstream(file) << "from-file\n"; }
  o.password_file = file;
  EXPECT_EQ(resolve_password(o, "", "sinks.x").value(), "from-file");
  std::filesystem::remove(file);
  EXPECT_FALSE(resolve_password(o, "", "sinks.x").ok());
}

struct DemoConfig {
  SinkOptions sink{.url = "mysql://tianhe@127.0.0.1:3306/tianhe"};
  std::string table = "t";
};
constexpr config::Field<DemoConfig> kDemoFields[] = {
    {.key = "table",
     .kind = config::Kind::kString,
     .default_text = "\"t\"",
     .doc = "A table.",
     .set = [](DemoConfig& c, const config::Parsed& p) { c.table = p.s; }},
};
constexpr SinkTableSpec kDemoSpec = {.header = "sinks.demo",
                                     .doc = "A demo.",
                                     .url_default = "\"mysql://tianhe@127.0.0.1:3306/tianhe\"",
                                     .url_doc = "The server."};

TEST(SinkTable, CommonKeysThenTheSinksOwn) {
  config::ConfigTable t = sink_table<DemoConfig>(kDemoSpec, kDemoFields);
  EXPECT_TRUE(t.instances);
  EXPECT_EQ(t.section.header, "sinks.demo");
  ASSERT_GE(t.section.fields.size(), 3u);
  EXPECT_EQ(t.section.fields[0].key, "enabled");
  EXPECT_EQ(t.section.fields[1].key, "url");
  EXPECT_EQ(t.section.fields[1].default_text, "\"mysql://tianhe@127.0.0.1:3306/tianhe\"");
  EXPECT_EQ(t.section.fields.back().key, "table");
  std::any a = t.make_default();
  config::Parsed p;
  p.b = true;
  t.section.set(t.target(a), 0, p);
  p.s = "readings";
  t.section.set(t.target(a), t.section.fields.size() - 1, p);
  const auto& c = std::any_cast<const DemoConfig&>(a);
  EXPECT_TRUE(c.sink.enabled);
  EXPECT_EQ(c.table, "readings");
  EXPECT_EQ(c.sink.url, "mysql://tianhe@127.0.0.1:3306/tianhe");
}

TEST(CursorFile, RoundTripsAndAMissingFileIsTheStart) {
  const std::string path = "/tmp/th-cursor-" + std::to_string(::getpid()) + "/c";
  auto empty = load_cursor_file(path, 2);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->shards, (std::vector<uint64_t>{0, 0}));
  const ShardCursor cursors[] = {{0, 16}, {1, 4096}};
  ASSERT_TRUE(save_cursor_file(path, cursors, {{"posted", 77}}).ok());
  auto back = load_cursor_file(path, 2);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->shards, (std::vector<uint64_t>{16, 4096}));
  EXPECT_EQ(back->values.at("posted"), 77u);
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

// One record of `n` reports of device 7 (seq from `seq`), as the shards append them.
std::vector<uint8_t> record(uint32_t seq, uint32_t n) {
  core::ReportBatch batch(n, n);
  std::vector<uint8_t> out(1 << 16);
  size_t used = 3;
  for (uint32_t i = 0; i < n; ++i) {
    core::Report* r = batch.add_report();
    r->device_id = 7;
    r->seq = seq + i;
    r->device_time_ns = 1'700'000'000'000'000'000 + i;
    core::Metric* m = batch.add_metric(*r);
    m->name = "temperature";
    m->value.f64 = 20.5;
    used += core::encode_report(batch, *r, std::span(out).subspan(used));
  }
  core::encode_payload_header(static_cast<uint16_t>(n), out);
  out.resize(used);
  return out;
}

TEST(Record, TheDocumentedFieldsAndATypedMetric) {
  const auto payload = record(3, 1);
  core::ReportBatch back(1, 4);
  ASSERT_EQ(core::decode_payload(payload, back), core::RecordStatus::kOk);
  const auto j = nlohmann::json::parse(record_json(back[0], nullptr));
  EXPECT_EQ(j["device_id"], 7);
  EXPECT_EQ(j["seq"], 3);
  EXPECT_EQ(j["time_ns"], 1'700'000'000'000'000'000);
  EXPECT_EQ(j["metrics"]["temperature"], 20.5);
  EXPECT_EQ(j["traceparent"], core::traceparent_string(core::tracing::derived_trace(
                                  back[0])));  // none sent: the derived one
  MetricDecoder d;
  auto metrics = d.decode(back[0]);
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metric_name(metrics[0]), "temperature");
  EXPECT_EQ(metrics[0].value.type, core::ValueType::kDouble);
}

TEST(DeadLetterFile, OneLineWithTheReasonPerRecord) {
  const std::string dir = "/tmp/th-dead-" + std::to_string(::getpid());
  const auto payload = record(9, 2);
  core::ReportBatch back(2, 4);
  ASSERT_EQ(core::decode_payload(payload, back), core::RecordStatus::kOk);
  {
    DeadLetter d(dir, "mysql.archive");
    d.add(back[0], nullptr, "Out of range value for column 'temperature'", 5);
    d.add(back[1], nullptr, "also", 5);
    EXPECT_EQ(d.records(), 0u);  // buffered until sync
    ASSERT_TRUE(d.sync().ok());
    EXPECT_EQ(d.records(), 2u);
    EXPECT_EQ(d.path(), dir + "/dead-letter/mysql.archive.jsonl");
  }
  std::ifstream in(dir + "/dead-letter/mysql.archive.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["reason"], "Out of range value for column 'temperature'");
  EXPECT_EQ(j["attempts"], 5);
  EXPECT_EQ(j["record"]["seq"], 9);
  std::filesystem::remove_all(dir);
}

// A destination in memory: rows by seq and its committed cursor, which a test can take away
// (open fails, writes ask for a retry) and bring back.
struct Memory {
  std::mutex mu;
  bool up = true;
  bool lose_next_ack = false;  ///< the next write lands, but the sink hears a timeout
  std::vector<uint32_t> seqs;
  uint64_t cursor = 0;
  int opens = 0;
};

class MemoryWriter final : public SinkWriter {
 public:
  explicit MemoryWriter(Memory* m) : m_(m) {}
  Result<std::vector<uint64_t>> open(uint32_t) override {
    std::lock_guard lock(m_->mu);
    ++m_->opens;
    if (!m_->up) return make_error("connection refused (the server is down)");
    return std::vector<uint64_t>{m_->cursor};
  }
  WriteStatus write(const Batch& b, bool, std::string& error) override {
    std::lock_guard lock(m_->mu);
    if (!m_->up) {
      error = "lost connection";
      return WriteStatus::kRetry;
    }
    for (const core::Report& r : b.reports) m_->seqs.push_back(r.seq);
    m_->cursor = b.cursors[0].offset;
    if (m_->lose_next_ack && !b.reports.empty()) {
      m_->lose_next_ack = false;
      m_->up = false;  // and the server goes away before the answer reaches the sink
      error = "timed out";
      return WriteStatus::kRetry;
    }
    return WriteStatus::kAccepted;
  }

 private:
  Memory* m_;
};

class ConsumerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/th-consumer-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    log_config_.dir = dir_ + "/log";
    log_config_.durability = log::Durability::kNone;
    log_config_.segment_bytes = 64 << 10;
    auto l = log::ShardLog::open(log_config_, 0, &stats_);
    ASSERT_TRUE(l.ok()) << l.error().message;
    log_ = std::move(l.value());
  }
  void TearDown() override {
    consumer_.reset();
    log_->close();
    std::filesystem::remove_all(dir_);
  }
  log::AppendStatus append(uint32_t seq, uint32_t n) {
    const auto payload = record(seq, n);
    uint64_t end = 0;
    return log_->append(payload, &end);
  }
  void start(ConsumerOptions o) {
    o.name = "memory";
    o.commit_interval = std::chrono::milliseconds(1);
    auto c = LogConsumer::start(std::move(o), log_config_, {log_.get()},
                                std::make_unique<MemoryWriter>(&mem_));
    ASSERT_TRUE(c.ok()) << c.error().message;
    consumer_ = std::move(c.value());
  }
  void wait(const std::function<bool()>& cond) {
    const int64_t deadline = core::mono_ns() + 30'000'000'000;
    while (!cond() && core::mono_ns() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(cond());
  }
  void set_up(bool up) {
    std::lock_guard lock(mem_.mu);
    mem_.up = up;
  }

  std::string dir_;
  log::LogConfig log_config_;
  log::LogStats stats_;
  std::unique_ptr<log::ShardLog> log_;
  Memory mem_;
  std::unique_ptr<LogConsumer> consumer_;
};

TEST_F(ConsumerTest, ADestinationDownAtStartDoesNotStopTheStartAndGetsEverythingLater) {
  set_up(false);
  ASSERT_EQ(append(1, 10), log::AppendStatus::kOk);
  ConsumerOptions o;
  o.start_unavailable = true;
  start(o);
  EXPECT_EQ(consumer_->state(), "connecting");
  wait([&] { return !consumer_->last_error().first.empty(); });
  EXPECT_NE(consumer_->last_error().first.find("connection refused"), std::string::npos);
  EXPECT_EQ(consumer_->state(), "connecting");
  ASSERT_EQ(append(11, 10), log::AppendStatus::kOk);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GT(consumer_->lag_bytes(), 0u);      // held: nothing deleted, nothing lost
  EXPECT_LT(consumer_->lag_seconds(), 60.0);  // its age counts from the start, not the epoch
  set_up(true);
  wait([&] { return consumer_->caught_up(); });
  EXPECT_EQ(consumer_->state(), "connected");
  std::lock_guard lock(mem_.mu);
  ASSERT_EQ(mem_.seqs.size(), 20u);
  for (uint32_t i = 0; i < 20; ++i) EXPECT_EQ(mem_.seqs[i], i + 1);
}

TEST_F(ConsumerTest, WithoutStartUnavailableADownDestinationFailsTheStart) {
  set_up(false);
  ConsumerOptions o;
  o.name = "memory";
  auto c = LogConsumer::start(o, log_config_, {log_.get()}, std::make_unique<MemoryWriter>(&mem_));
  EXPECT_FALSE(c.ok());
}

TEST_F(ConsumerTest, BlockPolicyRefusesAppendsBeyondTheSinksLimit) {
  ConsumerOptions o;
  o.max_backlog_bytes = 4096;
  start(o);
  wait([&] { return consumer_->state() == "connected"; });
  set_up(false);  // the destination goes away: the backlog grows until the limit
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  int refused = 0, accepted = 0;
  for (uint32_t i = 0; i < 200 && refused == 0; ++i) {
    const auto st = append(1 + i * 10, 10);
    (st == log::AppendStatus::kBacklogFull ? refused : accepted)++;
  }
  EXPECT_EQ(refused, 1);
  EXPECT_LE(log_->backlog_bytes(), 4096u);
  set_up(true);
  wait([&] { return consumer_->caught_up(); });
  std::lock_guard lock(mem_.mu);
  EXPECT_EQ(mem_.seqs.size(), static_cast<size_t>(accepted) * 10);  // every accepted report
}

TEST_F(ConsumerTest, DropOldestSkipsAndCountsExactly) {
  ConsumerOptions o;
  o.max_backlog_bytes = 4096;
  o.drop_oldest = true;
  start(o);
  wait([&] { return consumer_->state() == "connected"; });
  set_up(false);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  uint32_t appended = 0;
  for (uint32_t i = 0; i < 100; ++i) {
    ASSERT_EQ(append(1 + i * 10, 10), log::AppendStatus::kOk);  // never refused
    appended += 10;
  }
  // The consumer drops while the destination is away (its back-off wakes to do so).
  wait([&] { return consumer_->lag_bytes() <= 4096; });
  set_up(true);
  wait([&] { return consumer_->caught_up(); });
  const uint64_t dropped = consumer_->stats().reports_dropped.load();
  EXPECT_GT(dropped, 0u);
  std::lock_guard lock(mem_.mu);
  EXPECT_EQ(mem_.seqs.size() + dropped, appended);  // delivered + dropped = appended, exactly
  std::set<uint32_t> unique(mem_.seqs.begin(), mem_.seqs.end());
  EXPECT_EQ(unique.size(), mem_.seqs.size());
  EXPECT_EQ(*unique.rbegin(), appended);  // the newest were kept
}

TEST_F(ConsumerTest, DropOldestStaysExactWhenAWriteThatTimedOutLanded) {
  ConsumerOptions o;
  o.max_backlog_bytes = 4096;
  o.drop_oldest = true;
  start(o);
  wait([&] { return consumer_->state() == "connected"; });
  {
    std::lock_guard lock(mem_.mu);
    mem_.lose_next_ack = true;
  }
  uint32_t appended = 0;
  for (uint32_t i = 0; i < 100; ++i) {
    ASSERT_EQ(append(1 + i * 10, 10), log::AppendStatus::kOk);
    appended += 10;
  }
  wait([&] { return consumer_->lag_bytes() <= 4096 && consumer_->stats().reports_dropped > 0; });
  if (HasFailure()) {
    std::fprintf(stderr, "lag %llu dropped %llu state %s last error %s\n",
                 static_cast<unsigned long long>(consumer_->lag_bytes()),
                 static_cast<unsigned long long>(consumer_->stats().reports_dropped.load()),
                 consumer_->state().c_str(), consumer_->last_error().first.c_str());
  }
  set_up(true);
  wait([&] { return consumer_->caught_up(); });
  std::lock_guard lock(mem_.mu);
  std::set<uint32_t> unique(mem_.seqs.begin(), mem_.seqs.end());
  EXPECT_EQ(unique.size(), mem_.seqs.size());
  EXPECT_EQ(mem_.seqs.size() + consumer_->stats().reports_dropped.load(), appended);
}

}  // namespace
}  // namespace tianhe::sinks
