#include "control/config.h"

#include <gtest/gtest.h>

#include <any>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "control/config_fields.h"
#include "pipeline/registry.h"
#include "protocols/report/report_config.h"
#include "runtime/extensions.h"
#include "sinks/store/store_config.h"

namespace tianhe::control {
namespace {

const protocols::report::ReportProtocolConfig& report_of(const GatewayConfig& c) {
  return *c.extension<protocols::report::ReportProtocolConfig>("protocols.report");
}
const sinks::store::StoreConfig& store_of(const GatewayConfig& c) {
  return *c.extension<sinks::store::StoreConfig>("sinks.store");
}

using std::chrono::microseconds;
using std::chrono::seconds;

GatewayConfig parse_ok(std::string_view text) {
  auto r = parse_config(text);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : GatewayConfig{};
}

// The error message of a config that must fail.
std::string parse_err(std::string_view text) {
  auto r = parse_config(text);
  EXPECT_FALSE(r.ok()) << "expected an error for:\n" << text;
  return r.ok() ? std::string() : r.error().message;
}

#define EXPECT_ERROR(text, substring) \
  EXPECT_PRED_FORMAT2(::testing::IsSubstring, substring, parse_err(text))

constexpr std::string_view kModel = R"(
[[models]]
name = "m"
[[models.metrics]]
name = "t"
type = "double"
)";

std::string with_model(std::string_view extra) {
  return std::string(kModel) + std::string(extra);
}

TEST(Config, EmptyConfigGivesDefaults) {
  GatewayConfig c = parse_ok("");
  EXPECT_EQ(c.source, "<string>");
  EXPECT_EQ(c.data_dir, "./data");
  EXPECT_EQ(c.shards, 0u);
  EXPECT_EQ(c.log.dir, "./data/log");
  EXPECT_EQ(c.log.durability, log::Durability::kBatch);
  EXPECT_EQ(c.log.flush_interval, microseconds(1000));
  EXPECT_EQ(c.log.segment_bytes, 64ull << 20);
  EXPECT_EQ(c.log.max_backlog_bytes, 8ull << 30);
  EXPECT_EQ(c.log.max_record_bytes, 4u << 20);
  EXPECT_TRUE(report_of(c).enabled);
  EXPECT_EQ(report_of(c).listen.host, "127.0.0.1");
  EXPECT_EQ(report_of(c).listen.port, 7700);
  EXPECT_EQ(report_of(c).recv_buffer_bytes, 32u << 20);
  EXPECT_EQ(report_of(c).send_buffer_bytes, 8u << 20);
  EXPECT_EQ(report_of(c).recv_batch, 64u);
  EXPECT_EQ(report_of(c).max_datagram_bytes, 65507u);
  EXPECT_TRUE(c.http.enabled);
  EXPECT_EQ(c.http.listen.host, "127.0.0.1");
  EXPECT_EQ(c.http.listen.port, 8080);
  EXPECT_EQ(c.http.max_connections, 256u);
  EXPECT_TRUE(store_of(c).enabled);
  EXPECT_EQ(store_of(c).dir, "./data/store");
  EXPECT_EQ(store_of(c).batch_reports, 65536u);
  EXPECT_EQ(store_of(c).chunk_reports, 4u << 20);
  EXPECT_EQ(store_of(c).chunk_duration, seconds(3600));
  EXPECT_EQ(store_of(c).retention, seconds(0));
  EXPECT_EQ(c.registry.unknown_devices, UnknownDevicePolicy::kReject);
  EXPECT_EQ(c.registry.default_model, "");
  EXPECT_EQ(c.registry.default_tenant, "default");
  EXPECT_TRUE(c.models.empty());
  EXPECT_TRUE(c.devices.empty());
}

// Each documented default, written out explicitly, parses to the struct's default value: the
// field table and the struct defaults cannot disagree.
TEST(Config, DocumentedDefaultsMatchStructDefaults) {
  std::string text;
  for (const auto& s : config_fields::gateway_sections()) {
    text += "[" + std::string(s.header) + "]\n";
    for (const auto& f : s.fields) {
      if (f.default_text.find('<') != std::string_view::npos) continue;  // "<data_dir>/log"
      if (f.key == "default_model") continue;                            // "" = none
      text += std::string(f.key) + " = " + std::string(f.default_text) + "\n";
    }
  }
  GatewayConfig a = parse_ok("");
  GatewayConfig b = parse_ok(text);
  EXPECT_EQ(a.data_dir, b.data_dir);
  EXPECT_EQ(a.shards, b.shards);
  EXPECT_EQ(a.log.durability, b.log.durability);
  EXPECT_EQ(a.log.flush_interval, b.log.flush_interval);
  EXPECT_EQ(a.log.segment_bytes, b.log.segment_bytes);
  EXPECT_EQ(a.log.max_backlog_bytes, b.log.max_backlog_bytes);
  EXPECT_EQ(a.log.max_record_bytes, b.log.max_record_bytes);
  EXPECT_EQ(report_of(a).enabled, report_of(b).enabled);
  EXPECT_EQ(report_of(a).listen.host, report_of(b).listen.host);
  EXPECT_EQ(report_of(a).listen.port, report_of(b).listen.port);
  EXPECT_EQ(report_of(a).recv_buffer_bytes, report_of(b).recv_buffer_bytes);
  EXPECT_EQ(report_of(a).send_buffer_bytes, report_of(b).send_buffer_bytes);
  EXPECT_EQ(report_of(a).recv_batch, report_of(b).recv_batch);
  EXPECT_EQ(report_of(a).max_datagram_bytes, report_of(b).max_datagram_bytes);
  EXPECT_EQ(a.http.enabled, b.http.enabled);
  EXPECT_EQ(a.http.listen.port, b.http.listen.port);
  EXPECT_EQ(a.http.max_connections, b.http.max_connections);
  EXPECT_EQ(store_of(a).enabled, store_of(b).enabled);
  EXPECT_EQ(store_of(a).batch_reports, store_of(b).batch_reports);
  EXPECT_EQ(store_of(a).chunk_reports, store_of(b).chunk_reports);
  EXPECT_EQ(store_of(a).chunk_duration, store_of(b).chunk_duration);
  EXPECT_EQ(store_of(a).retention, store_of(b).retention);
  EXPECT_EQ(a.registry.unknown_devices, b.registry.unknown_devices);
  EXPECT_EQ(a.registry.default_tenant, b.registry.default_tenant);
}

TEST(Config, EveryKeyIsApplied) {
  GatewayConfig c = parse_ok(R"(
[gateway]
data_dir = "/var/lib/tianhe"
shards = 4
[log]
dir = "/fast/log"
durability = "sync"
flush_interval = "500us"
segment_bytes = "128MiB"
max_backlog_bytes = "1GiB"
max_record_bytes = 2097152
[protocols.report]
enabled = false
listen = "0.0.0.0:9000"
recv_buffer_bytes = "8MiB"
send_buffer_bytes = "1MB"
recv_batch = 256
max_datagram_bytes = 1500
[http]
enabled = false
listen = "[::1]:0"
max_connections = 10
[sinks.store]
enabled = false
dir = "store"
batch_reports = 1000
chunk_reports = 100000
chunk_duration = "10m"
retention = "30d"
[registry]
unknown_devices = "auto_register"
default_model = "env"
default_tenant = "acme"
[[models]]
name = "env"
allow_unknown_metrics = true
[[models.metrics]]
name = "temperature"
type = "double"
unit = "Cel"
min = -40
max = 85.5
required = true
[[models.metrics]]
name = "door_open"
type = "bool"
[[models]]
name = "meter"
[[models.metrics]]
name = "kwh"
type = "int64"
min = 0
[[devices]]
id = 10
count = 5
tenant = "acme"
model = "env"
[[devices]]
id = 9223372036854775807
model = "meter"
)");
  EXPECT_EQ(c.data_dir, "/var/lib/tianhe");
  EXPECT_EQ(c.shards, 4u);
  EXPECT_EQ(c.log.dir, "/fast/log");
  EXPECT_EQ(c.log.durability, log::Durability::kSync);
  EXPECT_EQ(c.log.flush_interval, microseconds(500));
  EXPECT_EQ(c.log.segment_bytes, 128ull << 20);
  EXPECT_EQ(c.log.max_backlog_bytes, 1ull << 30);
  EXPECT_EQ(c.log.max_record_bytes, 2097152u);
  EXPECT_FALSE(report_of(c).enabled);
  EXPECT_EQ(report_of(c).listen.host, "0.0.0.0");
  EXPECT_EQ(report_of(c).listen.port, 9000);
  EXPECT_EQ(report_of(c).recv_buffer_bytes, 8u << 20);
  EXPECT_EQ(report_of(c).send_buffer_bytes, 1'000'000u);
  EXPECT_EQ(report_of(c).recv_batch, 256u);
  EXPECT_EQ(report_of(c).max_datagram_bytes, 1500u);
  EXPECT_FALSE(c.http.enabled);
  EXPECT_EQ(c.http.listen.host, "::1");
  EXPECT_EQ(c.http.listen.port, 0);
  EXPECT_EQ(c.http.max_connections, 10u);
  EXPECT_FALSE(store_of(c).enabled);
  EXPECT_EQ(store_of(c).dir, "store");  // relative: resolved against the working directory
  EXPECT_EQ(store_of(c).batch_reports, 1000u);
  EXPECT_EQ(store_of(c).chunk_reports, 100000u);
  EXPECT_EQ(store_of(c).chunk_duration, seconds(600));
  EXPECT_EQ(store_of(c).retention, seconds(30 * 86400));
  EXPECT_EQ(c.registry.unknown_devices, UnknownDevicePolicy::kAutoRegister);
  EXPECT_EQ(c.registry.default_model, "env");
  EXPECT_EQ(c.registry.default_tenant, "acme");
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].name, "env");
  EXPECT_TRUE(c.models[0].allow_unknown_metrics);
  ASSERT_EQ(c.models[0].metrics.size(), 2u);
  const MetricSpec& t = c.models[0].metrics[0];
  EXPECT_EQ(t.name, "temperature");
  EXPECT_EQ(t.type, core::ValueType::kDouble);
  EXPECT_EQ(t.unit, "Cel");
  EXPECT_EQ(t.min, -40.0);
  EXPECT_EQ(t.max, 85.5);
  EXPECT_TRUE(t.required);
  const MetricSpec& d = c.models[0].metrics[1];
  EXPECT_EQ(d.type, core::ValueType::kBool);
  EXPECT_FALSE(d.min.has_value());
  EXPECT_FALSE(d.max.has_value());
  EXPECT_FALSE(d.required);
  EXPECT_EQ(d.unit, "");
  EXPECT_FALSE(c.models[1].allow_unknown_metrics);
  EXPECT_EQ(c.models[1].metrics[0].type, core::ValueType::kInt64);
  EXPECT_EQ(c.models[1].metrics[0].min, 0.0);
  ASSERT_EQ(c.devices.size(), 2u);
  EXPECT_EQ(c.devices[0].first_id, 10u);
  EXPECT_EQ(c.devices[0].count, 5u);
  EXPECT_EQ(c.devices[0].tenant, "acme");
  EXPECT_EQ(c.devices[0].model, "env");
  EXPECT_EQ(c.devices[1].first_id, 9223372036854775807ull);
  EXPECT_EQ(c.devices[1].count, 1u);
  EXPECT_EQ(c.devices[1].tenant, "default");
}

TEST(Config, StringTypeAndDataDirDefaults) {
  GatewayConfig c = parse_ok("gateway.data_dir = \"/srv/th\"\ngateway.shards = \"auto\"\n");
  EXPECT_EQ(c.log.dir, "/srv/th/log");
  EXPECT_EQ(store_of(c).dir, "/srv/th/store");
  EXPECT_EQ(c.shards, 0u);
  c = parse_ok(with_model("[[models.metrics]]\nname = \"s\"\ntype = \"string\"\n"));
  EXPECT_EQ(c.models[0].metrics[1].type, core::ValueType::kString);
}

TEST(Config, Shards) {
  EXPECT_EQ(parse_ok("gateway.shards = 1").shards, 1u);
  EXPECT_EQ(parse_ok("gateway.shards = 256").shards, 256u);
  EXPECT_ERROR("gateway.shards = 0", "gateway.shards: must be between 1 and 256; got 0");
  EXPECT_ERROR("gateway.shards = 257", "gateway.shards: must be between 1 and 256; got 257");
  EXPECT_ERROR("gateway.shards = \"many\"",
               "gateway.shards: expected \"auto\" or an integer 1..256; got string \"many\"");
}

TEST(Config, Sizes) {
  EXPECT_EQ(parse_ok("log.segment_bytes = \"1GiB\"").log.segment_bytes, 1ull << 30);
  EXPECT_EQ(
      report_of(parse_ok("protocols.report.recv_buffer_bytes = \"100 KiB\"")).recv_buffer_bytes,
      102400u);
  EXPECT_EQ(parse_ok("log.segment_bytes = \"2GB\"").log.segment_bytes, 2'000'000'000u);
  EXPECT_ERROR("log.segment_bytes = \"1TB\"",
               "log.segment_bytes: must be between 64KiB and 64GiB; got ");
  EXPECT_EQ(parse_ok("log.max_backlog_bytes = \"2TiB\"").log.max_backlog_bytes, 2ull << 40);
  EXPECT_EQ(
      report_of(parse_ok("protocols.report.recv_buffer_bytes = \"70000B\"")).recv_buffer_bytes,
      70000u);
  EXPECT_ERROR("log.segment_bytes = \"64Mb\"",
               "log.segment_bytes: \"64Mb\" is not a size (has an unknown unit \"Mb\"); use a "
               "byte count or a number with a unit B, KiB, MiB, GiB, TiB");
  EXPECT_ERROR("log.segment_bytes = \"MiB\"", "(does not start with a number)");
  EXPECT_ERROR("log.segment_bytes = \"99999999999999999999\"", "(is too large)");
  EXPECT_ERROR("log.segment_bytes = \"9999999999TiB\"", "(is too large)");
  EXPECT_ERROR("log.segment_bytes = 1.5",
               "log.segment_bytes: expected a size (an integer byte count or a string like "
               "\"64MiB\"); got float");
  EXPECT_ERROR("log.segment_bytes = -1",
               "log.segment_bytes: must be between 64KiB and 64GiB; got -1");
  EXPECT_ERROR("protocols.report.recv_buffer_bytes = \"2GiB\"",
               "protocols.report.recv_buffer_bytes: must be between 4KiB and 1GiB; got 2GiB");
  EXPECT_ERROR("protocols.report.max_datagram_bytes = 65508",
               "must be between 64 and 65507; got 65508");
  EXPECT_ERROR("log.max_backlog_bytes = \"1KiB\"", "must be between 1MiB and 1024TiB");
}

TEST(Config, Durations) {
  EXPECT_EQ(parse_ok("log.flush_interval = \"2s\"").log.flush_interval, microseconds(2'000'000));
  EXPECT_EQ(parse_ok("log.flush_interval = \"10us\"").log.flush_interval, microseconds(10));
  EXPECT_EQ(parse_ok("log.flush_interval = \"250000ns\"").log.flush_interval, microseconds(250));
  EXPECT_EQ(store_of(parse_ok("sinks.store.chunk_duration = \"2h\"")).chunk_duration,
            seconds(7200));
  EXPECT_EQ(store_of(parse_ok("sinks.store.retention = \"1d\"")).retention, seconds(86400));
  EXPECT_EQ(store_of(parse_ok("sinks.store.retention = 0")).retention, seconds(0));
  EXPECT_EQ(store_of(parse_ok("sinks.store.chunk_duration = \"3000ms\"")).chunk_duration,
            seconds(3));
  EXPECT_ERROR("log.flush_interval = \"1.5ms\"",
               "log.flush_interval: \"1.5ms\" is not a duration (has an unknown unit \".5ms\"); "
               "use a number with a unit ns, us, ms, s, m, h, d");
  EXPECT_ERROR("log.flush_interval = \"5\"", "\"5\" is not a duration (has no unit)");
  EXPECT_ERROR("log.flush_interval = 5",
               "log.flush_interval: expected a duration string like \"500us\", \"1ms\", \"2s\"; "
               "got integer 5");
  EXPECT_ERROR("log.flush_interval = \"1us\"",
               "log.flush_interval: must be between 10us and 10s; got 1us");
  EXPECT_ERROR("log.flush_interval = \"1500ns\"",
               "log.flush_interval: \"1500ns\" is not a whole number of 1us; round it");
  EXPECT_ERROR("sinks.store.chunk_duration = \"1500ms\"",
               "sinks.store.chunk_duration: \"1500ms\" is not a whole number of 1s");
  EXPECT_ERROR("sinks.store.chunk_duration = \"0\"",
               "sinks.store.chunk_duration: must be between 1s and 366d; got 0");
  EXPECT_ERROR("sinks.store.retention = \"40000d\"", "sinks.store.retention: must be between 0");
}

TEST(Config, Endpoints) {
  auto ep = parse_endpoint("10.0.0.1:7700", "k");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "10.0.0.1");
  EXPECT_EQ(ep->port, 7700);
  ep = parse_endpoint("[fe80::1]:65535", "k");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "fe80::1");
  EXPECT_EQ(ep->port, 65535);
  ep = parse_endpoint("localhost:0", "k");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "localhost");
  EXPECT_EQ(ep->port, 0);
  auto err = [](std::string_view text) {
    auto r = parse_endpoint(text, "http.listen");
    EXPECT_FALSE(r.ok()) << text;
    return r.ok() ? std::string() : r.error().message;
  };
  EXPECT_EQ(err("localhost"),
            "http.listen: \"localhost\" has no port; use host:port, e.g. \"127.0.0.1:7700\" or "
            "\"[::1]:7700\"");
  EXPECT_EQ(err(":80").find("http.listen: \":80\" has an empty host"), 0u);
  EXPECT_EQ(err("::1:80").find("is an IPv6 address without brackets"), 22u);
  EXPECT_NE(err("[::1]80").find("has no port"), std::string::npos);
  EXPECT_NE(err("[::1:80").find("has no closing ]"), std::string::npos);
  EXPECT_NE(err("[]:80").find("has an empty host"), std::string::npos);
  EXPECT_NE(err("h:65536").find("has a port above 65535"), std::string::npos);
  EXPECT_NE(err("h:http").find("has no valid port"), std::string::npos);
  EXPECT_NE(err("h:").find("has no valid port"), std::string::npos);
  EXPECT_NE(err("h:123456").find("has no valid port"), std::string::npos);
  EXPECT_ERROR("http.listen = \"localhost\"", "http.listen: \"localhost\" has no port");
  EXPECT_ERROR("protocols.report.listen = 7700",
               "protocols.report.listen: expected a string \"host:port\", e.g. "
               "\"127.0.0.1:7700\"; got integer 7700");
}

TEST(Config, EnumsAndTypes) {
  EXPECT_EQ(parse_ok("log.durability = \"none\"").log.durability, log::Durability::kNone);
  EXPECT_ERROR("log.durability = \"fast\"",
               "log.durability: \"fast\" is not a durability mode; use one of sync, batch, none");
  EXPECT_ERROR("log.durability = true",
               "log.durability: expected one of sync, batch, none; got true");
  EXPECT_ERROR("registry.unknown_devices = \"accept\"",
               "registry.unknown_devices: \"accept\" is not a policy; use one of reject, "
               "auto_register");
  EXPECT_ERROR(R"(
[[models]]
name = "env_sensor"
[[models.metrics]]
name = "a"
type = "double"
[[models.metrics]]
name = "b"
type = "double"
[[models.metrics]]
name = "c"
type = "float"
)",
               "models[0].metrics[2].type: \"float\" is not a type; use one of double, int64, "
               "bool, string");
  EXPECT_ERROR("http.enabled = \"yes\"",
               "http.enabled: expected a boolean (true or false); got string \"yes\"");
  EXPECT_ERROR("protocols.report.recv_batch = \"64\"",
               "protocols.report.recv_batch: expected an integer; got string \"64\"");
  EXPECT_ERROR("protocols.report.recv_batch = 0",
               "protocols.report.recv_batch: must be between 1 and 1024; got 0");
  EXPECT_ERROR("protocols.report.recv_batch = 1025", "must be between 1 and 1024; got 1025");
  EXPECT_ERROR("http.max_connections = 0", "http.max_connections: must be between 1 and 65536");
  EXPECT_ERROR("sinks.store.batch_reports = 0", "sinks.store.batch_reports: must be between 1");
  EXPECT_ERROR("sinks.store.chunk_reports = 0", "sinks.store.chunk_reports: must be between 1");
  EXPECT_ERROR("gateway.data_dir = 5", "gateway.data_dir: expected a string; got integer 5");
  EXPECT_ERROR("gateway.data_dir = \"\"", "gateway.data_dir: must not be empty");
  EXPECT_ERROR("log.dir = \"\"", "log.dir: must not be empty");
  EXPECT_ERROR("sinks.store.dir = \"\"", "sinks.store.dir: must not be empty");
  EXPECT_ERROR("gateway.data_dir = 1979-05-27", "expected a string; got a date/time");
  EXPECT_ERROR("http.enabled = [true]", "expected a boolean (true or false); got an array");
  EXPECT_ERROR("http.enabled = {a = 1}", "expected a boolean (true or false); got a table");
}

TEST(Config, UnknownKeysSuggestTheClosest) {
  EXPECT_ERROR("[http]\nlisen = \"127.0.0.1:80\"",
               "<string>:2:9: http.lisen: unknown key; did you mean listen?");
  EXPECT_ERROR("[gatway]\nshards = 2", "gatway: unknown key; did you mean gateway?");
  EXPECT_ERROR("[log]\ndurabilty = \"sync\"",
               "log.durabilty: unknown key; did you mean durability?");
  EXPECT_ERROR("[http]\nzzz = 1",
               "http.zzz: unknown key; known keys: enabled, listen, max_connections");
  EXPECT_ERROR("[protocols.zigbee]\nenabled = true",
               "protocols.zigbee: unknown key; known keys: report");
  EXPECT_ERROR("[sinks.stor]\nenabled = true", "sinks.stor: unknown key; did you mean store?");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"bool\"\nrequird = true\n"),
               "models[0].metrics[1].requird: unknown key; did you mean required?");
  EXPECT_ERROR(with_model("[[devices]]\nid = 1\nmodel = \"m\"\ncout = 3\n"),
               "devices[0].cout: unknown key; did you mean count?");
  EXPECT_ERROR("[[models]]\nname = \"m\"\nmetric = []\n",
               "models[0].metric: unknown key; did you mean metrics?");
  EXPECT_ERROR("http = 5", "http: expected a table ([http]); got integer 5");
  EXPECT_ERROR("protocols = 5", "protocols: expected a table ([protocols]); got integer 5");
  EXPECT_ERROR("protocols.report = 5",
               "protocols.report: expected a table ([protocols.report]); got integer 5");
}

TEST(Config, SyntaxErrorsGiveFileLineColumn) {
  std::string e = parse_err("[http]\nenabled = true\nlisten = \"oops\n");
  EXPECT_EQ(e.rfind("<string>:3:", 0), 0u) << e;
  EXPECT_NE(e.find("TOML syntax error"), std::string::npos) << e;
  auto r = parse_config("[log]\n\ndurability == 1\n", "gw.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind("gw.toml:3:", 0), 0u) << r.error().message;
  // Semantic errors also carry the position of the offending value.
  r = parse_config("[log]\n\ndurability = \"x\"\n", "gw.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind("gw.toml:3:14: log.durability:", 0), 0u) << r.error().message;
}

TEST(Config, Models) {
  EXPECT_ERROR("models = 5",
               "models: expected an array of tables; write each entry as [[models]]; got "
               "integer 5");
  EXPECT_ERROR("models = [1]", "models[0]: expected a table; write each entry as [[models]]");
  EXPECT_EQ(parse_ok("models = []").models.size(), 0u);
  EXPECT_ERROR("[[models]]\nallow_unknown_metrics = true\n",
               "models[0]: missing key name; add name = <string>");
  EXPECT_ERROR("[[models]]\nname = \"Env-Sensor\"\n",
               "models[0].name: \"Env-Sensor\" is not a valid model name; use 1 to 64 characters "
               "of a-z, 0-9 and _");
  EXPECT_ERROR("[[models]]\nname = \"\"\n", "models[0].name: \"\" is not a valid model name");
  EXPECT_ERROR("[[models]]\nname = \"a\"\n[[models]]\nname = \"b\"\n[[models]]\nname = \"a\"\n",
               "models[2].name: \"a\" is already the name of models[0]; model names must be "
               "unique");
  EXPECT_ERROR("[[models]]\nname = \"a\"\nallow_unknown_metrics = 1\n",
               "models[0].allow_unknown_metrics: expected a boolean");
  // A model's codec must be compiled in; the error lists those that are.
  EXPECT_EQ(parse_ok("[[models]]\nname = \"a\"\ncodec = \"report\"\n").models[0].codec, "report");
  EXPECT_EQ(parse_ok("[[models]]\nname = \"a\"\n").models[0].codec, "");
  EXPECT_ERROR("[[models]]\nname = \"a\"\n[[models]]\nname = \"b\"\ncodec = \"lpp\"\n",
               "models[1].codec: no codec called \"lpp\"; use one of: ");
  EXPECT_ERROR("[[models]]\nname = \"a\"\nmetrics = 3\n",
               "models[0].metrics: expected an array of tables; write each entry as "
               "[[models[0].metrics]]");
  // A model without metrics is allowed (e.g. with allow_unknown_metrics).
  EXPECT_EQ(parse_ok("[[models]]\nname = \"open\"\nallow_unknown_metrics = true\n").models.size(),
            1u);
}

TEST(Config, Metrics) {
  EXPECT_ERROR(with_model("[[models.metrics]]\ntype = \"bool\"\n"),
               "models[0].metrics[1]: missing key name; add name = <string>");
  EXPECT_ERROR(
      with_model("[[models.metrics]]\nname = \"x\"\n"),
      "models[0].metrics[1]: missing key type; add type = \"double\" (one of double, int64, bool, "
      "string)");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"t\"\ntype = \"int64\"\n"),
               "models[0].metrics[1].name: \"t\" is already the name of models[0].metrics[0]; "
               "metric names must be unique in a model");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"\"\ntype = \"int64\"\n"),
               "models[0].metrics[1].name: must not be empty");
  std::string long_name(65, 'n');
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"" + long_name + "\"\ntype = \"int64\"\n"),
               "models[0].metrics[1].name: is 65 bytes long; metric names have at most 64 bytes");
  EXPECT_EQ(parse_ok(with_model("[[models.metrics]]\nname = \"" + std::string(64, 'n') +
                                "\"\ntype = \"int64\"\n"))
                .models[0]
                .metrics.size(),
            2u);
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"a\\tb\"\ntype = \"int64\"\n"),
               "contains a control character");
  EXPECT_ERROR(
      with_model("[[models.metrics]]\nname = \"x\"\ntype = \"double\"\nmin = 5\nmax = 1\n"),
      "models[0].metrics[1].max: min 5 is greater than max 1; swap or fix them");
  EXPECT_EQ(
      parse_ok(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"int64\"\nmin = 3\nmax = 3\n"))
          .models[0]
          .metrics[1]
          .max,
      3.0);
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"bool\"\nmin = 0\n"),
               "models[0].metrics[1].min: a bool metric has no range; remove min (only double "
               "and int64 metrics have min and max)");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"string\"\nmax = 0\n"),
               "models[0].metrics[1].max: a string metric has no range; remove max");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"double\"\nmin = \"0\"\n"),
               "models[0].metrics[1].min: expected a number; got string \"0\"");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"double\"\nmin = nan\n"),
               "models[0].metrics[1].min: must be a finite number");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"double\"\nunit = 1\n"),
               "models[0].metrics[1].unit: expected a string");
  EXPECT_ERROR(with_model("[[models.metrics]]\nname = \"x\"\ntype = \"double\"\nrequired = 1\n"),
               "models[0].metrics[1].required: expected a boolean");
}

TEST(Config, AtMost64MetricsPerModel) {
  auto model = [](int n) {
    std::string t = "[[models]]\nname = \"big\"\n";
    for (int i = 0; i < n; ++i) {
      t += "[[models.metrics]]\nname = \"m" + std::to_string(i) + "\"\ntype = \"int64\"\n";
    }
    return t;
  };
  EXPECT_EQ(parse_ok(model(64)).models[0].metrics.size(), 64u);
  EXPECT_ERROR(model(65),
               "models[0].metrics: 65 metrics; a model has at most 64 (split it into several "
               "models)");
}

TEST(Config, Devices) {
  EXPECT_ERROR(with_model("[[devices]]\nmodel = \"m\"\n"),
               "devices[0]: missing key id; add id = <integer>");
  EXPECT_ERROR(with_model("[[devices]]\nid = 1\n"),
               "devices[0]: missing key model; add model = <string>");
  EXPECT_ERROR(with_model("[[devices]]\nid = 0\nmodel = \"m\"\n"),
               "devices[0].id: must be at least 1; got 0");
  EXPECT_ERROR(with_model("[[devices]]\nid = -5\nmodel = \"m\"\n"),
               "devices[0].id: must be at least 1; got -5");
  EXPECT_ERROR(with_model("[[devices]]\nid = \"1\"\nmodel = \"m\"\n"),
               "devices[0].id: expected an integer; got string \"1\"");
  EXPECT_ERROR(with_model("[[devices]]\nid = 1\ncount = 0\nmodel = \"m\"\n"),
               "devices[0].count: must be between 1 and 10000000; got 0");
  EXPECT_ERROR(with_model("[[devices]]\nid = 1\ntenant = \"Big Co\"\nmodel = \"m\"\n"),
               "devices[0].tenant: \"Big Co\" is not a valid tenant name; use 1 to 64 characters "
               "of a-z, 0-9, _ and -");
  EXPECT_ERROR(with_model("[[devices]]\nid = 1\nmodel = \"n\"\n"),
               "devices[0].model: \"n\" is not a model; did you mean \"m\"?");
  EXPECT_ERROR("[[models]]\nname = \"env_sensor\"\n[[devices]]\nid = 1\nmodel = \"meter\"\n",
               "devices[0].model: \"meter\" is not a model; define it with [[models]] name = "
               "\"meter\"");
  EXPECT_ERROR("devices = {id = 1}\n" + std::string(kModel),
               "devices: expected an array of tables; write each entry as [[devices]]; got a "
               "table");
}

TEST(Config, DeviceRangesMustNotOverlap) {
  std::string ok = with_model(R"(
[[devices]]
id = 100
count = 100
model = "m"
[[devices]]
id = 1
count = 99
model = "m"
[[devices]]
id = 200
model = "m"
)");
  EXPECT_EQ(parse_ok(ok).devices.size(), 3u);
  EXPECT_ERROR(ok + "[[devices]]\nid = 150\ncount = 100\nmodel = \"m\"\n",
               "devices[3]: ids 150..249 overlap devices[0] (ids 100..199); make the ranges "
               "disjoint");
  EXPECT_ERROR(ok + "[[devices]]\nid = 99\nmodel = \"m\"\n",
               "devices[3]: ids 99..99 overlap devices[1] (ids 1..99)");
  EXPECT_ERROR(ok + "[[devices]]\nid = 200\nmodel = \"m\"\n",
               "devices[3]: ids 200..200 overlap devices[2] (ids 200..200)");
  // The later entry is named first even when its ids come first.
  EXPECT_ERROR(ok + "[[devices]]\nid = 50\ncount = 1000\nmodel = \"m\"\n",
               "devices[3]: ids 50..1049 overlap devices[1] (ids 1..99)");
}

TEST(Config, AtMostTenMillionDevices) {
  std::string t = with_model("[[devices]]\nid = 1\ncount = 10000000\nmodel = \"m\"\n");
  EXPECT_EQ(parse_ok(t).devices[0].count, 10'000'000u);
  EXPECT_ERROR(t + "[[devices]]\nid = 20000000\nmodel = \"m\"\n",
               "devices[1].count: brings the device total to 10000001; at most 10000000 devices "
               "can be declared");
}

TEST(Config, RegistryPolicy) {
  EXPECT_ERROR("registry.unknown_devices = \"auto_register\"",
               "registry.default_model: missing; unknown_devices = \"auto_register\" needs the "
               "model new devices get");
  EXPECT_ERROR(
      "registry.unknown_devices = \"auto_register\"\n"
      "registry.default_model = \"x\"\n" +
          std::string(kModel),
      "registry.default_model: \"x\" is not a model; define it with [[models]] name = "
      "\"x\"");
  // A default model that does not exist is an error even under "reject": it is surely a typo.
  EXPECT_ERROR("registry.default_model = \"nope\"", "registry.default_model: \"nope\" is not");
  EXPECT_ERROR("registry.default_model = \"Bad\"",
               "registry.default_model: \"Bad\" is not a valid model name");
  EXPECT_ERROR("registry.default_tenant = \"\"",
               "registry.default_tenant: \"\" is not a valid tenant name");
  GatewayConfig c = parse_ok(
      "[registry]\nunknown_devices = \"auto_register\"\n"
      "default_model = \"m\"\n" +
      std::string(kModel));
  EXPECT_EQ(c.registry.unknown_devices, UnknownDevicePolicy::kAutoRegister);
}

// A segment rolls over *past* segment_bytes, so a record may be larger than a segment.
TEST(Config, RecordMayExceedSegment) {
  GatewayConfig c = parse_ok("[log]\nsegment_bytes = \"1MiB\"\n");
  EXPECT_EQ(c.log.segment_bytes, 1u << 20);
  EXPECT_EQ(c.log.max_record_bytes, 4u << 20);
}

TEST(Config, LoadConfig) {
  auto r = load_config("/nonexistent/tianhe.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind("/nonexistent/tianhe.toml: cannot open (", 0), 0u)
      << r.error().message;
  std::string path = ::testing::TempDir() + "config_test_load.toml";
  {
    std::ofstream out(path);
    out << "[http]\nmax_connections = 7\n[log]\nflush_interval = \"nope\"\n";
  }
  r = load_config(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.rfind(path + ":4:18: log.flush_interval:", 0), 0u)
      << r.error().message;
  {
    std::ofstream out(path);
    out << "[http]\nmax_connections = 7\n";
  }
  r = load_config(path);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->source, path);
  EXPECT_EQ(r->http.max_connections, 7u);
}

TEST(Config, ExampleFilesLoad) {
  auto full = load_config(TH_SOURCE_DIR "/examples/tianhe.toml");
  ASSERT_TRUE(full.ok()) << full.error().message;
  const GatewayConfig& c = *full;
  EXPECT_EQ(c.data_dir, "./data");
  EXPECT_EQ(report_of(c).listen.port, 7700);
  EXPECT_EQ(c.http.listen.port, 8080);
  EXPECT_EQ(c.log.durability, log::Durability::kBatch);
  EXPECT_TRUE(store_of(c).enabled);
  EXPECT_EQ(c.registry.unknown_devices, UnknownDevicePolicy::kReject);
  ASSERT_EQ(c.models.size(), 2u);
  const ModelSpec& m = c.models[0];
  EXPECT_EQ(m.name, "env_sensor");
  ASSERT_EQ(m.metrics.size(), 5u);
  EXPECT_EQ(m.metrics[0].name, "temperature");
  EXPECT_EQ(m.metrics[0].unit, "Cel");
  EXPECT_EQ(m.metrics[0].min, -40.0);
  EXPECT_EQ(m.metrics[0].max, 85.0);
  EXPECT_TRUE(m.metrics[0].required);
  EXPECT_EQ(m.metrics[1].name, "humidity");
  EXPECT_TRUE(m.metrics[1].required);
  EXPECT_EQ(m.metrics[2].name, "pressure");
  EXPECT_FALSE(m.metrics[2].required);
  EXPECT_EQ(m.metrics[3].name, "battery_mv");
  EXPECT_EQ(m.metrics[3].type, core::ValueType::kInt64);
  EXPECT_EQ(m.metrics[4].name, "door_open");
  EXPECT_EQ(m.metrics[4].type, core::ValueType::kBool);
  ASSERT_EQ(c.devices.size(), 2u);
  EXPECT_EQ(c.devices[0].first_id, 1u);
  EXPECT_EQ(c.devices[0].count, 500000u);
  EXPECT_EQ(c.devices[0].tenant, "demo");
  // The tour's LoRaWAN nodes: DevEUIs 1000001.., a model taking the radio metrics.
  EXPECT_EQ(c.models[1].name, "lorawan_node");
  EXPECT_TRUE(c.models[1].allow_unknown_metrics);
  EXPECT_EQ(c.devices[1].first_id, 1000001u);
  EXPECT_EQ(c.devices[1].model, "lorawan_node");

  auto minimal = load_config(TH_SOURCE_DIR "/examples/minimal.toml");
  ASSERT_TRUE(minimal.ok()) << minimal.error().message;
}

// docs/configuration.md holds config_reference_markdown() between markers; the test fails when
// the field table changes and the doc was not regenerated. Regenerate with
// TH_UPDATE_DOCS=1 ./config_test --gtest_filter=ConfigDocs.*
TEST(ConfigDocs, ReferenceIsUpToDate) {
#ifdef TH_EXTENSIONS_EXCLUDED
  GTEST_SKIP() << "extensions compiled out (TH_EXCLUDE_EXTENSIONS): the reference documents all";
#endif
  const std::string path = TH_SOURCE_DIR "/docs/configuration.md";
  constexpr std::string_view kBegin = "<!-- BEGIN GENERATED: config_reference_markdown() -->\n";
  constexpr std::string_view kEnd = "<!-- END GENERATED -->\n";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream buf;
  buf << in.rdbuf();
  std::string doc = buf.str();
  size_t begin = doc.find(kBegin);
  size_t end = doc.find(kEnd);
  ASSERT_NE(begin, std::string::npos) << "missing marker " << kBegin;
  ASSERT_NE(end, std::string::npos) << "missing marker " << kEnd;
  ASSERT_LT(begin, end);
  begin += kBegin.size();
  std::string expected = config_reference_markdown();
  if (std::getenv("TH_UPDATE_DOCS") != nullptr) {
    doc.replace(begin, end - begin, expected);
    std::ofstream(path) << doc;
    return;
  }
  EXPECT_EQ(doc.substr(begin, end - begin), expected)
      << "docs/configuration.md is stale: run TH_UPDATE_DOCS=1 config_test";
}

TEST(ConfigDocs, ReferenceListsEveryKey) {
  std::string md = config_reference_markdown();
  for (std::string_view k :
       {"## `[gateway]`", "## `[log]`", "## `[protocols.report]`", "## `[http]`",
        "## `[sinks.store]`", "## `[registry]`", "## `[[models]]`", "## `[[models.metrics]]`",
        "## `[[devices]]`", "| `flush_interval` | duration 10us .. 10s | `\"1ms\"` |",
        "| `type` | one of `\"double\"`, `\"int64\"`, `\"bool\"`, `\"string\"` | required |",
        "| `recv_batch` | integer 1 .. 1024 | `64` |"}) {
    EXPECT_NE(md.find(k), std::string::npos) << k;
  }
}

TEST(ConfigFields, Helpers) {
  EXPECT_EQ(config_fields::edit_distance("lisen", "listen"), 1u);
  EXPECT_EQ(config_fields::edit_distance("", "abc"), 3u);
  EXPECT_EQ(config_fields::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(config_fields::format_size(64 << 20), "64MiB");
  EXPECT_EQ(config_fields::format_size(65507), "65507");
  EXPECT_EQ(config_fields::format_size(1536), "1536");
  EXPECT_EQ(config_fields::format_bytes_approx(0), "0 B");
  EXPECT_EQ(config_fields::format_bytes_approx(1023), "1023 B");
  EXPECT_EQ(config_fields::format_bytes_approx(1024), "1.0 KiB");
  EXPECT_EQ(config_fields::format_bytes_approx(26376302), "25.2 MiB");
  EXPECT_EQ(config_fields::format_bytes_approx((1ull << 20) - 1), "1.0 MiB");  // not "1024.0 KiB"
  EXPECT_EQ(config_fields::format_bytes_approx(3ull << 30), "3.0 GiB");
  EXPECT_EQ(config_fields::format_bytes_approx(UINT64_MAX), "16.0 EiB");
  EXPECT_EQ(config_fields::format_duration(1'000'000), "1ms");
  EXPECT_EQ(config_fields::format_duration(90'000'000'000), "90s");
  EXPECT_EQ(config_fields::format_duration(0), "0");
}

// A sink kind with named instances: [sinks.demo] and [sinks.demo.<name>], each a whole table.
struct DemoSink {
  bool enabled = false;
  std::string url = "demo://default";
};
constexpr config::Field<DemoSink> kDemoFields[] = {
    {.key = "enabled",
     .kind = config::Kind::kBool,
     .default_text = "false",
     .doc = "On.",
     .set = [](DemoSink& d, const config::Parsed& p) { d.enabled = p.b; }},
    {.key = "url",
     .kind = config::Kind::kString,
     .default_text = "\"demo://default\"",
     .doc = "Where.",
     .set = [](DemoSink& d, const config::Parsed& p) { d.url = p.s; }},
};
constexpr config::Section<DemoSink> kDemoSection = {
    .header = "sinks.demo", .doc = "A demo sink.", .fields = kDemoFields};

runtime::Extensions demo_extensions() {
  runtime::Extensions e;
  runtime::SinkSpec spec;
  spec.name = "demo";
  spec.config = config::table(kDemoSection);
  spec.config.instances = true;
  spec.enabled = [](const std::any& a) { return std::any_cast<const DemoSink&>(a).enabled; };
  spec.start = [](const std::any&, const runtime::GatewayContext&,
                  std::string_view) -> Result<std::unique_ptr<runtime::SinkInstance>> {
    return make_error("not started in this test");
  };
  e.add_sink(std::move(spec));
  return e;
}

TEST(ConfigInstances, EachNamedTableIsAWholeInstance) {
  const runtime::Extensions ext = demo_extensions();
  auto c = parse_config(R"(
[sinks.demo]
enabled = true
url = "demo://main"
[sinks.demo.archive]
enabled = true
[sinks.demo.spare]
url = "demo://spare"
)",
                        "<test>", ext);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->extension<DemoSink>("sinks.demo")->url, "demo://main");
  const DemoSink* archive = c->extension<DemoSink>("sinks.demo.archive");
  ASSERT_NE(archive, nullptr);
  EXPECT_TRUE(archive->enabled);
  EXPECT_EQ(archive->url, "demo://default");  // an instance inherits nothing: its own defaults
  EXPECT_FALSE(c->extension<DemoSink>("sinks.demo.spare")->enabled);
}

TEST(ConfigInstances, BadNamesAndUnknownKeysInAnInstanceAreErrors) {
  const runtime::Extensions ext = demo_extensions();
  auto bad_name = parse_config("[sinks.demo.Archive-1]\nenabled = true\n", "<test>", ext);
  ASSERT_FALSE(bad_name.ok());
  EXPECT_NE(bad_name.error().message.find("sinks.demo.Archive-1"), std::string::npos)
      << bad_name.error().message;
  auto typo = parse_config("[sinks.demo.archive]\nenabeld = true\n", "<test>", ext);
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.error().message.find("did you mean enabled"), std::string::npos)
      << typo.error().message;
  auto nested = parse_config("[sinks.demo.archive.deeper]\nenabled = true\n", "<test>", ext);
  EXPECT_FALSE(nested.ok());
}

// A protocol with an array of tables ([[protocols.demo.devices]]) and a key of its own in
// [[models.metrics]] (`demo = { register = N }`).
struct DemoDevice {
  int64_t id = 0;
  std::string where = "here";
};
struct DemoProtocol {
  bool enabled = false;
  std::vector<DemoDevice> devices;
};
struct DemoMetric {
  int64_t reg = -1;
};
constexpr config::Field<DemoProtocol> kDemoProtocolFields[] = {
    {.key = "enabled",
     .kind = config::Kind::kBool,
     .default_text = "false",
     .doc = "On.",
     .set = [](DemoProtocol& d, const config::Parsed& p) { d.enabled = p.b; }},
};
constexpr config::Field<DemoDevice> kDemoDeviceFields[] = {
    {.key = "id",
     .kind = config::Kind::kInt,
     .doc = "Device.",
     .set = [](DemoDevice& d, const config::Parsed& p) { d.id = p.i; },
     .min = 1,
     .required = true},
    {.key = "where",
     .kind = config::Kind::kString,
     .default_text = "\"here\"",
     .doc = "Where.",
     .set = [](DemoDevice& d, const config::Parsed& p) { d.where = p.s; }},
};
constexpr config::Field<DemoMetric> kDemoMetricFields[] = {
    {.key = "register",
     .kind = config::Kind::kInt,
     .doc = "Register.",
     .set = [](DemoMetric& d, const config::Parsed& p) { d.reg = p.i; },
     .max = 65535,
     .required = true},
};
constexpr config::Section<DemoProtocol> kDemoProtocolSection = {
    .header = "protocols.demo", .doc = "A demo protocol.", .fields = kDemoProtocolFields};
constexpr config::Section<DemoDevice> kDemoDeviceSection = {
    .header = "protocols.demo.devices", .doc = "A device.", .fields = kDemoDeviceFields};
constexpr config::Section<DemoMetric> kDemoMetricSection = {
    .header = "models.metrics.demo", .doc = "Its register.", .fields = kDemoMetricFields};

runtime::Extensions demo_protocol_extensions() {
  runtime::Extensions e;
  runtime::ProtocolSpec spec;
  spec.name = "demo";
  spec.id = static_cast<core::Protocol>(200);
  spec.config = config::table(
      kDemoProtocolSection, +[](DemoProtocol& d, std::string_view) -> std::string {
        return d.devices.size() == 3 ? "three devices are not allowed here" : "";
      });
  spec.config.arrays.push_back(
      config::array_table("devices", kDemoDeviceSection, &DemoProtocol::devices, 4));
  spec.metric_options = config::table(kDemoMetricSection);
  spec.enabled = [](const std::any& a) { return std::any_cast<const DemoProtocol&>(a).enabled; };
  spec.create =
      [](const std::any&,
         const runtime::GatewayContext&) -> Result<std::unique_ptr<runtime::ProtocolInstance>> {
    return make_error("not started in this test");
  };
  e.add_protocol(std::move(spec));
  return e;
}

TEST(ConfigArrays, EntriesFillTheVectorInOrder) {
  const runtime::Extensions ext = demo_protocol_extensions();
  auto c = parse_config(R"(
[protocols.demo]
enabled = true
[[protocols.demo.devices]]
id = 7
where = "there"
[[protocols.demo.devices]]
id = 8
)",
                        "<test>", ext);
  ASSERT_TRUE(c.ok()) << c.error().message;
  const DemoProtocol* d = c->extension<DemoProtocol>("protocols.demo");
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->devices.size(), 2u);
  EXPECT_EQ(d->devices[0].id, 7);
  EXPECT_EQ(d->devices[0].where, "there");
  EXPECT_EQ(d->devices[1].id, 8);
  EXPECT_EQ(d->devices[1].where, "here");
  // Absent: no entries.
  auto none = parse_config("[protocols.demo]\nenabled = true\n", "<test>", ext);
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_TRUE(none->extension<DemoProtocol>("protocols.demo")->devices.empty());
}

TEST(ConfigArrays, ErrorsNameTheEntryAndKey) {
  const runtime::Extensions ext = demo_protocol_extensions();
  auto expect_error = [&](std::string_view toml, std::string_view part) {
    auto c = parse_config(toml, "<test>", ext);
    ASSERT_FALSE(c.ok()) << toml;
    EXPECT_NE(c.error().message.find(part), std::string::npos) << c.error().message;
  };
  expect_error("[[protocols.demo.devices]]\nid = 1\n[[protocols.demo.devices]]\nid = 0\n",
               "protocols.demo.devices[1].id");
  expect_error("[[protocols.demo.devices]]\nid = 1\nwhere = 3\n", "devices[0].where");
  expect_error("[[protocols.demo.devices]]\nwhere = \"x\"\n", "missing key id");
  expect_error("[[protocols.demo.devices]]\nid = 1\nide = 2\n", "did you mean id");
  expect_error("[protocols.demo]\ndevices = 5\n", "expected an array of tables");
  expect_error("[protocols.demo.devices]\nid = 5\n", "expected an array of tables");
  expect_error("[protocols.demo]\ndevices = [1]\n", "protocols.demo.devices[0]");
  std::string five;
  for (int i = 1; i <= 5; ++i)
    five += "[[protocols.demo.devices]]\nid = " + std::to_string(i) + "\n";
  expect_error(five, "at most 4");
  // `finish` sees the filled vector.
  expect_error(
      "[[protocols.demo.devices]]\nid = 1\n[[protocols.demo.devices]]\nid = 2\n"
      "[[protocols.demo.devices]]\nid = 3\n",
      "three devices");
}

TEST(ConfigMetricOptions, AProtocolsKeyInAMetricIsKeptWithIt) {
  const runtime::Extensions ext = demo_protocol_extensions();
  auto c = parse_config(R"(
[[models]]
name = "m"
[[models.metrics]]
name = "a"
type = "double"
demo = { register = 12 }
[[models.metrics]]
name = "b"
type = "double"
)",
                        "<test>", ext);
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->models.size(), 1u);
  ASSERT_EQ(c->models[0].metrics.size(), 2u);
  const auto& a = c->models[0].metrics[0];
  ASSERT_EQ(a.options.size(), 1u);
  EXPECT_EQ(a.options[0].first, "demo");
  EXPECT_EQ(std::any_cast<const DemoMetric&>(a.options[0].second).reg, 12);
  EXPECT_TRUE(c->models[0].metrics[1].options.empty());
  // The registry keeps them: ModelMetric::option().
  auto reg = pipeline::Registry::build(c->registry, c->models, c->devices);
  ASSERT_TRUE(reg.ok()) << reg.error().message;
  const pipeline::ModelMetric& ma = (*reg)->model(0).metrics()[0];
  ASSERT_NE(ma.option("demo"), nullptr);
  EXPECT_EQ(std::any_cast<const DemoMetric&>(*ma.option("demo")).reg, 12);
  EXPECT_EQ(ma.option("other"), nullptr);
  EXPECT_EQ((*reg)->model(0).metrics()[1].option("demo"), nullptr);
}

TEST(ConfigMetricOptions, ErrorsNameTheMetricAndKey) {
  const runtime::Extensions ext = demo_protocol_extensions();
  auto expect_error = [&](std::string_view metric_line, std::string_view part) {
    std::string toml =
        "[[models]]\nname = \"m\"\n[[models.metrics]]\nname = \"a\"\ntype = \"int64\"\n" +
        std::string(metric_line) + "\n";
    auto c = parse_config(toml, "<test>", ext);
    ASSERT_FALSE(c.ok()) << toml;
    EXPECT_NE(c.error().message.find(part), std::string::npos) << c.error().message;
  };
  expect_error("demo = 5", "expected an inline table");
  expect_error("demo = { register = 70000 }", "models[0].metrics[0].demo.register");
  expect_error("demo = { regster = 1 }", "did you mean register");
  expect_error("demo = {}", "missing key register");
  expect_error("dem = { register = 1 }", "did you mean demo");
}

}  // namespace
}  // namespace tianhe::control
