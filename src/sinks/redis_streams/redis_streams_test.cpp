// The pure parts of the Redis streams sink: its table and defaults, the URL and option checks,
// the stream key template, the XADD arguments of a record, value text, the seen hash's values,
// the duplicate window across commits and rollbacks, and what an error reply means. The writer
// against a real server is test/sinks/redis_streams_test.py.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <string>

#include "runtime/extensions.h"
#include "sinks/redis_streams/redis_streams_config.h"
#include "sinks/redis_streams/redis_streams_entry.h"

namespace tianhe::sinks::redis_streams {
namespace {

RedisStreamsConfig defaults() {
  config::ConfigTable t = config_table();
  std::any a = t.make_default();
  return std::any_cast<RedisStreamsConfig>(a);
}

Result<RedisSettings> settings_for(const std::string& url) {
  RedisStreamsConfig c = defaults();
  c.sink.url = url;
  return make_settings(c, "redis_streams", "sinks.redis_streams");
}

bool has(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(RedisStreamsConfig, DefaultsAndTheTable) {
  const RedisStreamsConfig c = defaults();
  EXPECT_FALSE(c.sink.enabled);
  EXPECT_EQ(c.sink.url, "redis://127.0.0.1:6379/0");
  EXPECT_EQ(c.stream, "tianhe:{tenant}:{model}");
  EXPECT_EQ(c.max_len, 0u);
  EXPECT_TRUE(c.max_len_approximate);
  config::ConfigTable t = config_table();
  EXPECT_EQ(t.section.header, "sinks.redis_streams");
  EXPECT_TRUE(t.instances);
  EXPECT_EQ(t.section.fields[1].key, "url");
  EXPECT_EQ(t.section.fields[1].default_text, "\"redis://127.0.0.1:6379/0\"");
  const size_t n = t.section.fields.size();
  ASSERT_GE(n, 3u);
  EXPECT_EQ(t.section.fields[n - 3].key, "stream");
  EXPECT_EQ(t.section.fields[n - 2].key, "max_len");
  EXPECT_EQ(t.section.fields[n - 1].key, "max_len_approximate");
  // The template's check runs in the config reader: a bad one is refused with the fix.
  config::Parsed p;
  p.s = "tianhe:{tenant}:{modle}";
  const std::string problem = t.section.fields[n - 3].check(p);
  EXPECT_TRUE(has(problem, "unknown placeholder {modle}")) << problem;
  p.s = "tianhe:{device}";
  EXPECT_EQ(t.section.fields[n - 3].check(p), "");
}

TEST(RedisStreamsConfig, SettingsFromTheDefaults) {
  auto s = settings_for("redis://127.0.0.1:6379/0");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->host, "127.0.0.1");
  EXPECT_EQ(s->port, 6379);
  EXPECT_EQ(s->database, 0u);
  EXPECT_EQ(s->password, "");
  EXPECT_EQ(s->cursor_key, "tianhe:cursor:redis_streams");
  EXPECT_EQ(s->seen_key, "tianhe:seen:redis_streams");
  EXPECT_EQ(s->timeout_ms, 10000);
  EXPECT_EQ(s->max_attempts, 5u);
  auto bare = settings_for("redis://cache.local");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->port, 6379);
  auto db = settings_for("redis://alice:s%40cret@10.0.0.5:6380/3");
  ASSERT_TRUE(db.ok()) << db.error().message;
  EXPECT_EQ(db->database, 3u);
  EXPECT_EQ(db->port, 6380);
  EXPECT_EQ(db->user, "alice");
  EXPECT_EQ(db->password, "s@cret");
}

TEST(RedisStreamsConfig, InstancesKeepTheirOwnCursors) {
  auto s = make_settings(defaults(), "redis_streams.archive", "sinks.redis_streams.archive");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->cursor_key, "tianhe:cursor:redis_streams.archive");
  EXPECT_EQ(s->seen_key, "tianhe:seen:redis_streams.archive");
}

TEST(RedisStreamsConfig, UrlErrorsNameTheKeyAndTheFix) {
  auto tls = settings_for("rediss://127.0.0.1:6380/0");
  ASSERT_FALSE(tls.ok());
  EXPECT_TRUE(
      has(tls.error().message, "sinks.redis_streams.url: TLS (rediss://) is not supported"));
  auto scheme = settings_for("http://127.0.0.1:6379");
  ASSERT_FALSE(scheme.ok());
  EXPECT_TRUE(has(scheme.error().message, "sinks.redis_streams.url"));
  EXPECT_TRUE(has(scheme.error().message, "redis://"));
  auto path = settings_for("redis://127.0.0.1:6379/telemetry");
  ASSERT_FALSE(path.ok());
  EXPECT_TRUE(has(path.error().message, "the database number"));
  EXPECT_FALSE(settings_for("redis://127.0.0.1:6379/1x").ok());
  auto query = settings_for("redis://127.0.0.1:6379/0?timeout=1");
  ASSERT_FALSE(query.ok());
  EXPECT_TRUE(has(query.error().message, "not supported"));
  EXPECT_FALSE(settings_for("redis://127.0.0.1:99999/0").ok());
  EXPECT_FALSE(settings_for("127.0.0.1:6379").ok());
  auto user = settings_for("redis://alice@127.0.0.1/0");
  ASSERT_FALSE(user.ok());
  EXPECT_TRUE(has(user.error().message, "password_env"));
}

TEST(RedisStreamsConfig, PasswordFromTheEnvironment) {
  RedisStreamsConfig c = defaults();
  c.sink.password_env = "TIANHE_TEST_REDIS_PASSWORD";
  ::unsetenv("TIANHE_TEST_REDIS_PASSWORD");
  auto missing = make_settings(c, "redis_streams", "sinks.redis_streams");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(has(missing.error().message, "sinks.redis_streams.password_env"));
  ::setenv("TIANHE_TEST_REDIS_PASSWORD", "from-env", 1);
  auto s = make_settings(c, "redis_streams", "sinks.redis_streams");
  ::unsetenv("TIANHE_TEST_REDIS_PASSWORD");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->password, "from-env");
}

RecordFields fields() {
  RecordFields f;
  f.tenant = "acme";
  f.device_id = 7;
  f.model = "env_sensor";
  f.seq = 12;
  f.time_ns = 1'700'000'000'000'000'000;
  f.received_ns = 1'700'000'000'000'001'000;
  f.protocol = "report";
  return f;
}

TEST(StreamTemplate, ExpandsThePlaceholders) {
  auto t = StreamTemplate::parse("tianhe:{tenant}:{model}", "k");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->per_device());
  std::string key;
  t->expand(fields(), key);
  EXPECT_EQ(key, "tianhe:acme:env_sensor");
  auto d = StreamTemplate::parse("{tenant}/dev-{device}", "k");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->per_device());
  d->expand(fields(), key);
  EXPECT_EQ(key, "acme/dev-7");
  RecordFields unknown = fields();
  unknown.tenant = {};
  unknown.model = {};
  t->expand(unknown, key);
  EXPECT_EQ(key, "tianhe:unknown:unknown");
  auto plain = StreamTemplate::parse("readings", "k");
  ASSERT_TRUE(plain.ok());
  plain->expand(fields(), key);
  EXPECT_EQ(key, "readings");
}

TEST(StreamTemplate, ErrorsNameTheKey) {
  for (const char* bad : {"", "a:{tenant", "a:tenant}", "a:{site}", "a:{}"}) {
    auto t = StreamTemplate::parse(bad, "sinks.redis_streams.stream");
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_TRUE(has(t.error().message, "sinks.redis_streams.stream: ")) << t.error().message;
  }
  RedisStreamsConfig c = defaults();
  c.stream = "x:{nope}";
  auto s = make_settings(c, "redis_streams", "sinks.redis_streams");
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(has(s.error().message, "sinks.redis_streams.stream"));
}

core::Metric metric(std::string_view name, double v) {
  core::Metric m;
  m.name = name;
  m.value.type = core::ValueType::kDouble;
  m.value.f64 = v;
  return m;
}

std::vector<std::string> args(const EntryBuilder& b) {
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(b.argc()));
  for (int i = 0; i < b.argc(); ++i) out.emplace_back(b.arg(static_cast<size_t>(i)));
  return out;
}

TEST(EntryBuilder, TheDocumentedFieldsThenOnePerMetric) {
  EntryBuilder b(0, true);
  core::Metric metrics[4] = {metric("temperature", 21.5), {}, {}, {}};
  metrics[1].name = "battery_mv";
  metrics[1].value.type = core::ValueType::kInt64;
  metrics[1].value.i64 = -3300;
  metrics[2].name = "door_open";
  metrics[2].value.type = core::ValueType::kBool;
  metrics[2].value.b = true;
  metrics[3].name = "firmware";
  metrics[3].value.type = core::ValueType::kString;
  metrics[3].value.str = "1.2.3 beta";
  b.build("tianhe:acme:env_sensor", fields(), metrics);
  const std::vector<std::string> want = {"XADD",
                                         "tianhe:acme:env_sensor",
                                         "*",
                                         "device_id",
                                         "7",
                                         "seq",
                                         "12",
                                         "time_ns",
                                         "1700000000000000000",
                                         "received_ns",
                                         "1700000000000001000",
                                         "protocol",
                                         "report",
                                         "tenant",
                                         "acme",
                                         "model",
                                         "env_sensor",
                                         "temperature",
                                         "21.5",
                                         "battery_mv",
                                         "-3300",
                                         "door_open",
                                         "true",
                                         "firmware",
                                         "1.2.3 beta"};
  EXPECT_EQ(args(b), want);
}

TEST(EntryBuilder, MaxLenTraceparentCollisionsAndIds) {
  EntryBuilder approx(1000, true);
  RecordFields f = fields();
  const char tp[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  std::memcpy(f.traceparent_buf, tp, sizeof tp - 1);
  f.traceparent_len = sizeof tp - 1;
  core::Metric metrics[2] = {metric("seq", 1.0), metric("", 2.0)};
  metrics[1].id = 42;
  approx.build("k", f, metrics);
  auto a = args(approx);
  ASSERT_GE(a.size(), 6u);
  EXPECT_EQ(a[2], "MAXLEN");
  EXPECT_EQ(a[3], "~");
  EXPECT_EQ(a[4], "1000");
  EXPECT_EQ(a[5], "*");
  const size_t n = a.size();
  EXPECT_EQ(a[n - 6], "traceparent");
  EXPECT_EQ(a[n - 5], tp);
  EXPECT_EQ(a[n - 4], "m.seq");  // a metric named like a fixed field
  EXPECT_EQ(a[n - 3], "1");
  EXPECT_EQ(a[n - 2], "#42");  // sent by id
  EXPECT_EQ(a[n - 1], "2");
  EntryBuilder exact(5, false);
  exact.build("k", fields(), {});
  a = args(exact);
  EXPECT_EQ(a[2], "MAXLEN");
  EXPECT_EQ(a[3], "5");
  EXPECT_EQ(a[4], "*");
  // Reused: a second build replaces the first.
  exact.build("other", fields(), {});
  EXPECT_EQ(exact.arg(1), "other");
}

TEST(EntryValues, DoublesRoundTripAndTheOtherTypes) {
  for (double d : {0.1, 21.5, -40.0, 1e-7, 1.0 / 3.0, 6.02214076e23,
                   std::numeric_limits<double>::min(), std::numeric_limits<double>::max()}) {
    std::string s;
    core::Value v;
    v.f64 = d;
    append_value(s, v);
    EXPECT_EQ(std::strtod(s.c_str(), nullptr), d) << s;
  }
  std::string s;
  core::Value v;
  v.f64 = std::nan("");
  append_value(s, v);
  EXPECT_EQ(s, "nan");
  s.clear();
  v.f64 = -std::numeric_limits<double>::infinity();
  append_value(s, v);
  EXPECT_EQ(s, "-inf");
  s.clear();
  v.type = core::ValueType::kInt64;
  v.i64 = std::numeric_limits<int64_t>::min();
  append_value(s, v);
  EXPECT_EQ(s, "-9223372036854775808");
  s.clear();
  v.type = core::ValueType::kBool;
  v.b = false;
  append_value(s, v);
  EXPECT_EQ(s, "false");
  EXPECT_TRUE(is_fixed_field("device_id"));
  EXPECT_TRUE(is_fixed_field("traceparent"));
  EXPECT_FALSE(is_fixed_field("temperature"));
}

TEST(Seeds, FormatAndParse) {
  EXPECT_EQ(format_seed_field(7, 1), "7:1");
  EXPECT_EQ(format_seed(12, 1'700'000'000'000'000'000), "12 1700000000000000000");
  Seed s;
  ASSERT_TRUE(parse_seed("7:1", "12 1700000000000000000", s));
  EXPECT_EQ(s.device_id, 7u);
  EXPECT_EQ(s.shard, 1u);
  EXPECT_EQ(s.seq, 12u);
  EXPECT_EQ(s.time_ns, 1'700'000'000'000'000'000);
  ASSERT_TRUE(parse_seed("18446744073709551615:0", "4294967295 -5", s));
  EXPECT_EQ(s.device_id, 18446744073709551615u);
  EXPECT_EQ(s.seq, 4294967295u);
  EXPECT_EQ(s.time_ns, -5);
  for (const auto& [d, v] :
       std::vector<std::pair<std::string, std::string>>{{"", "1 2"},
                                                        {"7", "1 2"},
                                                        {"x:0", "1 2"},
                                                        {"7:", "1 2"},
                                                        {"7:0", "12"},
                                                        {"7:0", "12 "},
                                                        {"7:0", " 12"},
                                                        {"7:0", "1 2x"},
                                                        {"7:0", "4294967296 1"}}) {
    EXPECT_FALSE(parse_seed(d, v, s)) << d << " / " << v;
  }
}

constexpr int64_t kT = 1'700'000'000'000'000'000;

TEST(SeenWindow, DuplicatesInABatchAndAcrossBatches) {
  SeenWindow w;
  w.reset(2, {});
  w.begin();
  EXPECT_EQ(w.check(0, 1, 10, kT + 10), SeqVerdict::kNew);
  EXPECT_EQ(w.check(0, 1, 10, kT + 10), SeqVerdict::kDuplicate);  // twice in one batch
  EXPECT_EQ(w.check(0, 1, 11, kT + 11), SeqVerdict::kNew);
  EXPECT_EQ(w.check(0, 2, 5, kT + 5), SeqVerdict::kNew);
  ASSERT_EQ(w.batch_seeds().size(), 2u);
  EXPECT_EQ(w.batch_seeds()[0].device_id, 1u);
  EXPECT_EQ(w.batch_seeds()[0].seq, 11u);  // the device's newest
  w.commit();
  EXPECT_EQ(w.size(), 2u);
  w.begin();
  EXPECT_EQ(w.check(0, 1, 11, kT + 11), SeqVerdict::kDuplicate);  // a retransmission later on
  EXPECT_EQ(w.check(0, 1, 9, kT + 9), SeqVerdict::kNew);          // late, never seen: delivered
  EXPECT_TRUE(w.batch_seeds().empty());                           // the newest did not move
}

TEST(SeenWindow, AShardsBacklogAheadOfAnothersLosesNothing) {
  // A device's reports alternate between two shards; the consumer hands over shard 0's backlog
  // (seq 1, 3, ..., 199) before shard 1's (0, 2, ..., 198): far more than 64 apart.
  SeenWindow w;
  w.reset(2, {});
  w.begin();
  for (uint32_t s = 1; s < 200; s += 2) EXPECT_EQ(w.check(0, 7, s, kT + s), SeqVerdict::kNew);
  w.commit();
  w.begin();
  for (uint32_t s = 0; s < 200; s += 2) EXPECT_EQ(w.check(1, 7, s, kT + s), SeqVerdict::kNew) << s;
  ASSERT_EQ(w.batch_seeds().size(), 1u);
  EXPECT_EQ(w.batch_seeds()[0].shard, 1u);
  EXPECT_EQ(w.batch_seeds()[0].seq, 198u);
  w.commit();
  EXPECT_EQ(w.size(), 2u);  // the device on each shard
}

TEST(SeenWindow, ARollbackForgetsTheBatch) {
  SeenWindow w;
  w.reset(1, {});
  w.begin();
  EXPECT_EQ(w.check(0, 1, 1, kT), SeqVerdict::kNew);
  w.commit();
  w.begin();
  EXPECT_EQ(w.check(0, 1, 2, kT + 1), SeqVerdict::kNew);
  EXPECT_EQ(w.check(0, 3, 1, kT), SeqVerdict::kNew);
  w.rollback();  // the batch was blocked: offered again, it must be new again
  w.begin();
  EXPECT_EQ(w.check(0, 1, 2, kT + 1), SeqVerdict::kNew);
  EXPECT_EQ(w.check(0, 3, 1, kT), SeqVerdict::kNew);
  EXPECT_EQ(w.check(0, 1, 1, kT), SeqVerdict::kDuplicate);  // committed before
}

TEST(SeenWindow, SeedsFromTheServerCatchARetransmissionAfterARestart) {
  SeenWindow w;
  const Seed seeds[] = {{7, 1, 100, kT + 100}, {8, 5, 1, kT}};  // shard 5 is gone: ignored
  w.reset(2, seeds);
  EXPECT_EQ(w.size(), 1u);
  w.begin();
  EXPECT_EQ(w.check(1, 7, 100, kT + 100), SeqVerdict::kDuplicate);
  EXPECT_EQ(w.check(1, 7, 60, kT + 60), SeqVerdict::kDuplicate);
  EXPECT_EQ(w.check(0, 7, 60, kT + 60), SeqVerdict::kNew);  // another shard's own order
  EXPECT_EQ(w.check(1, 7, 101, kT + 101), SeqVerdict::kNew);
  // A device that restarted its numbering (newer device time) is new, and becomes the seed.
  EXPECT_EQ(w.check(1, 7, 1, kT + 500), SeqVerdict::kReboot);
  ASSERT_EQ(w.batch_seeds().size(), 2u);
  EXPECT_EQ(w.batch_seeds()[1].shard, 1u);
  EXPECT_EQ(w.batch_seeds()[1].seq, 1u);
  EXPECT_EQ(w.batch_seeds()[1].time_ns, kT + 500);
}

TEST(RedisErrors, WhatAReplyMeans) {
  EXPECT_EQ(classify_error("OOM command not allowed when used memory > 'maxmemory'.").first,
            ErrorClass::kBlocked);
  EXPECT_EQ(classify_error("OOM command not allowed").second, "oom");
  EXPECT_EQ(classify_error("READONLY You can't write against a read only replica.").second,
            "readonly");
  EXPECT_EQ(classify_error("MISCONF Redis is configured to save RDB snapshots").first,
            ErrorClass::kBlocked);
  EXPECT_EQ(classify_error("LOADING Redis is loading the dataset in memory").first,
            ErrorClass::kBlocked);
  EXPECT_EQ(classify_error("NOAUTH Authentication required.").first, ErrorClass::kRetry);
  EXPECT_EQ(
      classify_error("WRONGTYPE Operation against a key holding the wrong kind of value").first,
      ErrorClass::kRefused);
  EXPECT_EQ(classify_error("ERR wrong number of arguments for 'xadd' command").first,
            ErrorClass::kRefused);
  EXPECT_TRUE(has(std::string(blocked_hint("oom")), "maxmemory"));
}

}  // namespace

void register_extension(runtime::Extensions& extensions);

namespace {

// `tianhe bench --sinks` needs a server: run with TIANHE_TEST_REDIS_URL=redis://127.0.0.1:PORT/0.
TEST(Ceiling, PipelinedXaddToAScratchStreamWhenAServerIsGiven) {
  const char* url = std::getenv("TIANHE_TEST_REDIS_URL");
  if (url == nullptr) GTEST_SKIP() << "TIANHE_TEST_REDIS_URL is not set";
  runtime::Extensions extensions;
  register_extension(extensions);
  ASSERT_EQ(extensions.sinks().size(), 1u);
  const runtime::SinkSpec& spec = extensions.sinks()[0];
  EXPECT_EQ(spec.name, "redis_streams");
  ASSERT_TRUE(spec.ceiling);
  pipeline::ModelSpec model{.name = "env_sensor"};
  model.metrics.push_back({.name = "temperature", .min = -40.0, .max = 85.0});
  model.metrics.push_back({.name = "battery_mv", .type = core::ValueType::kInt64});
  pipeline::DeviceRange devices{
      .first_id = 1, .count = 100, .tenant = "acme", .model = "env_sensor"};
  auto registry = pipeline::Registry::build({}, std::span(&model, 1), std::span(&devices, 1));
  ASSERT_TRUE(registry.ok()) << registry.error().message;
  runtime::GatewayContext gateway;
  gateway.registry = registry.value();
  RedisStreamsConfig c = defaults();
  c.sink.url = url;
  auto rate = spec.ceiling(std::any(c), gateway, 20000);
  ASSERT_TRUE(rate.ok()) << rate.error().message;
  EXPECT_GT(rate.value(), 0.0);
  std::printf("ceiling: %.0f entries/s\n", rate.value());
}

}  // namespace
}  // namespace tianhe::sinks::redis_streams
