// The JavaScript codec: each contract form (TS013 decodeUplink, Decoder, Decode), flattening
// (nested objects, arrays, strings, booleans, integers and doubles), codec-reported errors and
// warnings, and every way a script can misbehave — a thrown error, an endless loop, deep
// recursion, a huge allocation, memory kept in globals, a huge result — each stopped with its own
// status while the same codec goes on decoding the next payload; the codec on another thread;
// the codec stage with a model naming a .js file; hot reload.
#include "codecs/js/js_codec.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "control/config.h"
#include "core/clock.h"
#include "runtime/alloc_counter.h"
#include "runtime/codec_stage.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::js {
namespace {

using pipeline::DecodeStatus;

std::vector<uint8_t> hex(std::string_view h) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

struct Decoded {
  DecodeStatus status;
  std::vector<core::Metric> metrics;
  const core::Metric* find(std::string_view name) const {
    for (const auto& m : metrics) {
      if (m.name == name) return &m;
    }
    return nullptr;
  }
};

std::unique_ptr<JsCodec> make(std::string source, JsCodecLimits limits = {}) {
  auto c = JsCodec::from_source("test.js", std::move(source), limits);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(c.value()) : nullptr;
}

Decoded decode(JsCodec& codec, std::string_view payload_hex, uint8_t fport = 1) {
  static core::ReportBatch batch(16, 1024);
  batch.clear();
  codec.batch_done();
  core::Report* r = batch.add_report();
  const std::vector<uint8_t> p = hex(payload_hex);
  const DecodeStatus st =
      codec.decode(p, {.device_id = 7, .fport = fport, .received_ns = 0}, batch, *r);
  const auto ms = batch.metrics(*r);
  return {st, {ms.begin(), ms.end()}};
}

// A vendor-style TS013 decoder: temperature (int16, 0.1 °C), humidity, battery, a status byte.
constexpr const char* kTs013 = R"JS(
function decodeUplink(input) {
  var b = input.bytes;
  if (b.length < 5) return { errors: ['payload too short: ' + b.length + ' bytes'] };
  var t = (b[0] << 8 | b[1]); if (t & 0x8000) t -= 0x10000;
  var warnings = [];
  if (b[4] & 1) warnings.push('low battery');
  return {
    data: {
      temperature: t / 10,
      humidity: b[2] / 2,
      battery: { level: b[3], low: (b[4] & 1) === 1 },
      mode: ['idle', 'run', 'alarm'][b[4] >> 1] || 'unknown',
      port: input.fPort,
      samples: [b[0], b[1]],
      nothing: null
    },
    warnings: warnings
  };
}
)JS";

TEST(JsCodec, DecodeUplinkFlattensNestedDataStringsAndBooleans) {
  auto codec = make(kTs013);
  ASSERT_NE(codec, nullptr);
  const Decoded d = decode(*codec, "00eb5a6403", 5);
  ASSERT_EQ(d.status, DecodeStatus::kOk) << codec->last_error();
  EXPECT_EQ(codec->form(), "decodeUplink");
  ASSERT_EQ(d.metrics.size(), 8u);
  ASSERT_NE(d.find("temperature"), nullptr);
  EXPECT_EQ(d.find("temperature")->value.type, core::ValueType::kDouble);
  EXPECT_DOUBLE_EQ(d.find("temperature")->value.f64, 23.5);
  EXPECT_EQ(d.find("humidity")->value.type, core::ValueType::kInt64);  // 45: an integer
  EXPECT_EQ(d.find("humidity")->value.i64, 45);
  EXPECT_EQ(d.find("battery.level")->value.i64, 100);
  EXPECT_EQ(d.find("battery.low")->value.type, core::ValueType::kBool);
  EXPECT_TRUE(d.find("battery.low")->value.b);
  EXPECT_EQ(d.find("mode")->value.type, core::ValueType::kString);
  EXPECT_EQ(d.find("mode")->value.str, "run");
  EXPECT_EQ(d.find("port")->value.i64, 5);
  EXPECT_EQ(d.find("samples.0")->value.i64, 0);
  EXPECT_EQ(d.find("samples.1")->value.i64, 0xeb);
  EXPECT_EQ(d.find("nothing"), nullptr);  // null is no reading
  EXPECT_EQ(codec->stats().warnings.get(), 1u);
  // Negative temperatures, and a second call on the same realm.
  const Decoded n = decode(*codec, "ff9c5a6400");
  ASSERT_EQ(n.status, DecodeStatus::kOk);
  EXPECT_EQ(n.find("temperature")->value.type, core::ValueType::kInt64);  // -10: an integer
  EXPECT_EQ(n.find("temperature")->value.i64, -10);
  EXPECT_EQ(n.find("mode")->value.str, "idle");
}

TEST(JsCodec, ErrorsTheCodecReportsFailTheCallWithItsMessage) {
  auto codec = make(kTs013);
  const Decoded d = decode(*codec, "0102");
  EXPECT_EQ(d.status, DecodeStatus::kMalformed);
  EXPECT_TRUE(d.metrics.empty());
  EXPECT_EQ(codec->last_error(), "payload too short: 2 bytes");
  EXPECT_EQ(codec->stats().codec_errors.get(), 1u);
  EXPECT_EQ(decode(*codec, "00eb5a6403").status, DecodeStatus::kOk);  // it goes on
}

TEST(JsCodec, LegacyDecoderForm) {
  // The Things Network v2 style, ES5, with a helper function.
  auto codec = make(R"JS(
    function u16(b, i) { return (b[i] << 8) | b[i + 1]; }
    function Decoder(bytes, port) {
      var decoded = {};
      if (port === 2) { decoded.voltage = u16(bytes, 0) / 1000; decoded.open = bytes[2] !== 0; }
      return decoded;
    })JS");
  const Decoded d = decode(*codec, "0ce401", 2);
  ASSERT_EQ(d.status, DecodeStatus::kOk) << codec->last_error();
  EXPECT_EQ(codec->form(), "Decoder");
  EXPECT_DOUBLE_EQ(d.find("voltage")->value.f64, 3.3);
  EXPECT_TRUE(d.find("open")->value.b);
  EXPECT_TRUE(decode(*codec, "0ce401", 3).metrics.empty());  // {} is a valid, empty reading
}

TEST(JsCodec, LegacyDecodeForm) {
  // ChirpStack v3 style, ES2015+: const, arrow functions, a class, template strings.
  auto codec = make(R"JS(
    const readers = { 0x01: (b, i) => ({ name: 'co2', value: (b[i] << 8) | b[i + 1], size: 2 }) };
    class Reader { constructor(bytes) { this.bytes = bytes; } }
    function Decode(fPort, bytes, variables) {
      const r = new Reader(bytes);
      const out = { fport: `${fPort}` };
      for (let i = 0; i < r.bytes.length;) {
        const f = readers[r.bytes[i]];
        if (!f) throw new Error(`unknown channel ${r.bytes[i]}`);
        const v = f(r.bytes, i + 1);
        out[v.name] = v.value;
        i += 1 + v.size;
      }
      return out;
    })JS");
  const Decoded d = decode(*codec, "0101f4", 9);
  ASSERT_EQ(d.status, DecodeStatus::kOk) << codec->last_error();
  EXPECT_EQ(codec->form(), "Decode");
  EXPECT_EQ(d.find("co2")->value.i64, 500);
  EXPECT_EQ(d.find("fport")->value.str, "9");
  const Decoded bad = decode(*codec, "07");
  EXPECT_EQ(bad.status, DecodeStatus::kThrown);
  EXPECT_NE(codec->last_error().find("unknown channel 7"), std::string_view::npos)
      << codec->last_error();
  EXPECT_NE(codec->last_error().find("test.js:"), std::string_view::npos);
}

TEST(JsCodec, AScriptWithoutAnEntryPointOrWithASyntaxErrorIsRefused) {
  auto none = JsCodec::from_source("none.js", "function decode(x) { return {}; }");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("decodeUplink"), std::string::npos);
  auto syntax = JsCodec::from_source("bad.js", "function decodeUplink(input) {\n  return {;\n}");
  ASSERT_FALSE(syntax.ok());
  EXPECT_NE(syntax.error().message.find("bad.js:2"), std::string::npos) << syntax.error().message;
  auto loop = JsCodec::from_source("loop.js", "for (;;) {}\nfunction decodeUplink() {}",
                                   {.time_budget = std::chrono::milliseconds(20)});
  ASSERT_FALSE(loop.ok());
  EXPECT_NE(loop.error().message.find("time budget"), std::string::npos);
}

TEST(JsCodec, AThrownErrorIsCountedAndTheCodecGoesOn) {
  auto codec = make(R"JS(
    function decodeUplink(input) {
      if (input.bytes[0] === 0xff) throw new TypeError('bad header');
      if (input.bytes[0] === 0xfe) throw 'a string';
      return { data: { v: input.bytes[0] } };
    })JS");
  EXPECT_EQ(decode(*codec, "ff").status, DecodeStatus::kThrown);
  EXPECT_NE(codec->last_error().find("bad header"), std::string_view::npos);
  EXPECT_EQ(decode(*codec, "fe").status, DecodeStatus::kThrown);
  EXPECT_NE(codec->last_error().find("a string"), std::string_view::npos);
  EXPECT_EQ(decode(*codec, "01").status, DecodeStatus::kOk);
  EXPECT_EQ(codec->stats().thrown.get(), 2u);
}

TEST(JsCodec, AnEndlessLoopIsStoppedByTheWatchdogAndTheNextCallRuns) {
  auto codec = make(R"JS(
    function decodeUplink(input) {
      if (input.bytes[0] === 1) { for (;;) {} }
      if (input.bytes[0] === 2) { while (true) { try { for (;;) {} } catch (e) {} finally { } } }
      return { data: { ok: true } };
    })JS",
                    {.time_budget = std::chrono::milliseconds(20)});
  for (const char* p : {"01", "02"}) {
    const int64_t start = core::mono_ns();
    EXPECT_EQ(decode(*codec, p).status, DecodeStatus::kTimeout);
    // Reported, not asserted (no timing assertions): the call ends a tick after its budget.
    ::testing::Test::RecordProperty(std::string("stopped_after_us_") + p,
                                    std::to_string((core::mono_ns() - start) / 1000));
    EXPECT_EQ(decode(*codec, "00").status, DecodeStatus::kOk);
  }
  EXPECT_EQ(codec->stats().timeouts.get(), 2u);
}

TEST(JsCodec, DeepRecursionIsStopped) {
  auto codec = make(R"JS(
    function down(n) { return down(n + 1) + 1; }
    function decodeUplink(input) {
      if (input.bytes[0] === 1) return { data: { v: down(0) } };
      return { data: { v: 1 } };
    })JS");
  EXPECT_EQ(decode(*codec, "01").status, DecodeStatus::kThrown);
  EXPECT_NE(codec->last_error().find("recursion"), std::string_view::npos) << codec->last_error();
  EXPECT_EQ(decode(*codec, "00").status, DecodeStatus::kOk);
}

TEST(JsCodec, HugeAllocationsAreStopped) {
  auto codec = make(R"JS(
    var kept = [];
    function decodeUplink(input) {
      switch (input.bytes[0]) {
        case 1: return { data: { n: new ArrayBuffer(1 << 30).byteLength } };
        case 2: return { data: { n: new Uint8Array(1 << 30).length } };
        case 3: return { data: { n: 'x'.repeat(1 << 29).length } };
        case 4: try { new Float64Array(1 << 28); } catch (e) {} return { data: { n: 1 } };
        case 5: for (;;) kept.push(new Array(1000).fill({ a: 1 }), { b: [1, 2, 3] });
        case 6: for (;;) { var a = []; for (var i = 0; i < 1e6; i++) a.push({ i: i }); kept.push(a); }
      }
      return { data: { n: 0 } };
    })JS",
                    {.time_budget = std::chrono::seconds(30), .memory_budget = 16u << 20});
  for (const char* p : {"01", "02", "03", "04", "05", "06"}) {
    EXPECT_EQ(decode(*codec, p).status, DecodeStatus::kOutOfMemory)
        << p << ": " << codec->last_error();
    EXPECT_EQ(decode(*codec, "00").status, DecodeStatus::kOk) << p << ": " << codec->last_error();
  }
  EXPECT_GE(codec->stats().out_of_memory.get(), 6u);
}

TEST(JsCodec, HugeResultsAreRefused) {
  auto codec = make(R"JS(
    function decodeUplink(input) {
      var d = {};
      switch (input.bytes[0]) {
        case 1: for (var i = 0; i < 1e6; i++) d['m' + i] = i; break;
        case 2: d.s = 'x'.repeat(100 * 1000 * 1000 / 2); break;
        case 3: d['n'.repeat(65)] = 1; break;
        case 4: for (var j = 0; j < 20; j++) d['s' + j] = 'y'.repeat(1000); break;
        case 5: d.self = d; break;
      }
      return { data: d };
    })JS",
                    {.time_budget = std::chrono::seconds(30),
                     .memory_budget = 256u << 20,
                     .max_output_bytes = 16u << 10});
  EXPECT_EQ(decode(*codec, "01").status, DecodeStatus::kTooManyMetrics);
  EXPECT_EQ(decode(*codec, "02").status, DecodeStatus::kTooLarge);
  EXPECT_EQ(decode(*codec, "03").status, DecodeStatus::kTooLarge);
  EXPECT_EQ(decode(*codec, "04").status, DecodeStatus::kOutputTooLarge);
  EXPECT_EQ(decode(*codec, "05").status, DecodeStatus::kMalformed);  // a cycle: too deep
  EXPECT_EQ(decode(*codec, "00").status, DecodeStatus::kOk);
}

TEST(JsCodec, NoNetworkFileModuleOrTimerAccess) {
  auto codec = make(R"JS(
    function decodeUplink(input) {
      return { data: {
        fetch: typeof fetch, xhr: typeof XMLHttpRequest, require: typeof require,
        timeout: typeof setTimeout, read: typeof read, os: typeof os, console: typeof console.log
      } };
    })JS");
  const Decoded d = decode(*codec, "00");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  for (const char* k : {"fetch", "xhr", "require", "timeout", "read", "os"}) {
    EXPECT_EQ(d.find(k)->value.str, "undefined") << k;
  }
  EXPECT_EQ(d.find("console")->value.str, "function");
}

TEST(JsCodec, DecodesOnTheThreadThatCallsIt) {
  auto codec = make(kTs013);  // compiled here, then bound by the thread below
  DecodeStatus st = DecodeStatus::kMalformed;
  std::thread t([&] { st = decode(*codec, "00eb5a6403").status; });
  t.join();
  EXPECT_EQ(st, DecodeStatus::kOk) << codec->last_error();
  codec.reset();  // after its thread exited: frees nothing there twice
}

TEST(JsCodec, CallJsonRunsUplinkAndDownlinkEntries) {
  auto codec = make(std::string(kTs013) + R"JS(
    function encodeDownlink(input) { return { bytes: [input.data.interval >> 8, input.data.interval & 255], fPort: 3 }; }
    function decodeDownlink(input) { return { data: { interval: input.bytes[0] << 8 | input.bytes[1] } }; }
  )JS");
  auto up = codec->call_json("decodeUplink", R"({"bytes":[0,235,90,100,3],"fPort":1})");
  ASSERT_EQ(up.status, DecodeStatus::kOk) << up.error;
  EXPECT_NE(up.json.find("\"temperature\":23.5"), std::string::npos) << up.json;
  auto down = codec->call_json("encodeDownlink", R"({"data":{"interval":600}})");
  ASSERT_EQ(down.status, DecodeStatus::kOk) << down.error;
  EXPECT_EQ(down.json, R"({"bytes":[2,88],"fPort":3})");
  auto back = codec->call_json("decodeDownlink", R"({"bytes":[2,88],"fPort":3})");
  EXPECT_EQ(back.json, R"({"data":{"interval":600}})");
}

TEST(JsCodec, HotReloadSwapsAChangedFileAndKeepsTheOldOneOnError) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("th_js_reload_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "c.js").string();
  auto write = [&](std::string_view text) { std::ofstream(path, std::ios::trunc) << text; };
  write("function decodeUplink(i) { return { data: { v: 1 } }; }");
  auto c = JsCodec::from_file(path, {.reload_check = std::chrono::nanoseconds(1)});
  ASSERT_TRUE(c.ok()) << c.error().message;
  JsCodec& codec = **c;
  EXPECT_EQ(decode(codec, "00").find("v")->value.i64, 1);
  write("function decodeUplink(i) { return { data: { v: 2, w: 3 } }; }  ");  // another size
  EXPECT_EQ(decode(codec, "00").find("v")->value.i64, 2);
  EXPECT_EQ(codec.stats().reloads.get(), 1u);
  write("function decodeUplink(i) { return { data: { v: 3 ");  // does not compile
  const Decoded d = decode(codec, "00");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.find("v")->value.i64, 2);  // the previous version goes on
  EXPECT_EQ(codec.stats().reload_failures.get(), 1u);
  EXPECT_NE(codec.last_error().find("reload failed"), std::string_view::npos);
  std::filesystem::remove_all(dir);
}

TEST(JsCodec, RegisteredForJsFiles) {
  const runtime::CodecSpec* spec =
      runtime::codec_for_file(runtime::builtin_extensions().codecs(), "/x/acme.js");
  ASSERT_NE(spec, nullptr);
  EXPECT_EQ(spec->name, "js");
  auto missing = spec->load("/nonexistent/acme.js", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("cannot open"), std::string::npos);
}

// The codec stage with two shards' decoders for a model naming a .js file: each shard thread
// decodes with its own codec; a payload that runs the script past its budget is dead-lettered
// with reason "timeout" and counted, and the shard decodes the next payload.
TEST(JsCodecStage, AModelNamingAJsFileDecodesOnEachShardAndDeadLettersBudgetHits) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("th_js_stage_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "acme.js").string();
  std::ofstream(path) << "function decodeUplink(input) {\n"
                         "  if (input.bytes[0] === 0xee) for (;;) {}\n"
                         "  return { data: { t: input.bytes[0] } };\n}\n";
  pipeline::ModelSpec model{.name = "acme", .codec = path};
  pipeline::ModelSpec models[] = {model};
  pipeline::DeviceRange devices[] = {{.first_id = 1, .count = 10, .model = "acme"}};
  auto registry = pipeline::Registry::build({}, models, devices);
  ASSERT_TRUE(registry.ok()) << registry.error().message;
  auto stage =
      runtime::CodecStage::create((dir / "data").string(), *registry, runtime::builtin_extensions(),
                                  1u << 20, {.time_budget_ns = 20'000'000});
  ASSERT_TRUE(stage.ok()) << stage.error().message;
  std::vector<std::unique_ptr<runtime::PayloadDecoder>> kept;
  for (uint32_t shard = 0; shard < 2; ++shard) {
    auto d = (*stage)->decoder(shard, "mqtt_sn", "json");
    ASSERT_TRUE(d.ok()) << d.error().message;
    std::thread t([&] {
      core::ReportBatch batch(8, 64);
      const uint8_t ok[] = {0x21}, loop[] = {0xee};
      core::Report* r = batch.add_report();
      r->device_id = 3;
      EXPECT_EQ((*d)->decode(ok, {.device_id = 3}, batch, *r), runtime::PayloadOutcome::kDecoded);
      ASSERT_EQ(r->metric_count, 1);
      EXPECT_EQ(batch.metrics(*r)[0].value.i64, 0x21);
      core::Report* r2 = batch.add_report();
      r2->device_id = 4;
      EXPECT_EQ((*d)->decode(loop, {.device_id = 4}, batch, *r2),
                runtime::PayloadOutcome::kDeadLettered);
      core::Report* r3 = batch.add_report();
      r3->device_id = 3;
      EXPECT_EQ((*d)->decode(ok, {.device_id = 3}, batch, *r3), runtime::PayloadOutcome::kDecoded);
      (*d)->batch_done();
    });
    t.join();
    kept.push_back(std::move(d.value()));  // destroyed below on this thread, after its own
  }
  EXPECT_EQ((*stage)->dead_lettered(), 2u);
  std::ifstream dl(dir / "data" / "dead-letter" / "codecs" / "mqtt_sn-shard1.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(dl, line));
  EXPECT_NE(line.find("\"reason\":\"timeout\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"payload_hex\":\"ee\""), std::string::npos) << line;
  core::PromWriter w;
  (*stage)->collect(w);
  const std::string text = w.render();
  EXPECT_NE(text.find("tianhe_codec_js_errors_total{codec=\"" + path + "\",kind=\"timeout\"} 2"),
            std::string::npos)
      << text;
  kept.clear();
  std::filesystem::remove_all(dir);
}

TEST(JsCodecStage, AFileThatDoesNotCompileStopsTheStageWithItsReason) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("th_js_stage_bad_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "bad.js").string();
  std::ofstream(path) << "function decodeUplink(input) {\n  return {\n";
  pipeline::ModelSpec models[] = {{.name = "acme", .codec = path}};
  pipeline::DeviceRange devices[] = {{.first_id = 1, .count = 1, .model = "acme"}};
  auto registry = pipeline::Registry::build({}, models, devices);
  ASSERT_TRUE(registry.ok());
  auto stage = runtime::CodecStage::create(dir.string(), *registry, runtime::builtin_extensions());
  ASSERT_FALSE(stage.ok());
  EXPECT_NE(stage.error().message.find("model acme: codec " + path + ":"), std::string::npos)
      << stage.error().message;
  std::filesystem::remove_all(dir);
}

// The config: a model's codec path is relative to the config file's directory and made
// absolute; a missing file is refused naming the key; [codecs] sets the budgets.
TEST(JsCodecConfig, AModelsCodecFileIsResolvedFromTheConfigDirectory) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("th_js_config_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "codecs");
  std::ofstream(dir / "codecs" / "acme.js") << "function Decoder(b, p) { return {}; }";
  auto write = [&](std::string_view codec) {
    std::ofstream(dir / "tianhe.toml", std::ios::trunc)
        << "[codecs]\ntime_budget = \"5ms\"\nmemory_budget = \"8MiB\"\n"
           "max_output_bytes = \"4KiB\"\n[[models]]\nname = \"acme\"\ncodec = \""
        << codec << "\"\n";
  };
  write("codecs/acme.js");
  auto c = control::load_config((dir / "tianhe.toml").string());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->models[0].codec, (dir / "codecs" / "acme.js").string());
  const auto* limits = c->extension<runtime::CodecLimits>("codecs");
  ASSERT_NE(limits, nullptr);
  EXPECT_EQ(limits->time_budget_ns, 5'000'000);
  EXPECT_EQ(limits->memory_budget, 8u << 20);
  EXPECT_EQ(limits->max_output_bytes, 4096u);
  write("codecs/missing.js");
  auto missing = control::load_config((dir / "tianhe.toml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("models[0].codec: no codec file"), std::string::npos)
      << missing.error().message;
  write("acme");
  auto unknown = control::load_config((dir / "tianhe.toml").string());
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("or a .js file"), std::string::npos)
      << unknown.error().message;
  std::filesystem::remove_all(dir);
}

// Whether this build counts allocations (alloc_counter.cpp stands down under the sanitizers).
bool counting_allocations() {
  const uint64_t before = runtime::thread_allocations();
  void* p = ::operator new(16);
  ::operator delete(p);
  return runtime::thread_allocations() != before;
}

TEST(JsCodec, NoAllocationPerCallInSteadyState) {
  if (!counting_allocations()) GTEST_SKIP() << "allocation counting is off in sanitizer builds";
  auto codec = make(kTs013);
  core::ReportBatch batch(16, 1024);
  const std::vector<uint8_t> p = hex("00eb5a6403");
  for (int i = 0; i < 100; ++i) {  // warm up: bind, JIT
    batch.clear();
    codec->batch_done();
    core::Report* r = batch.add_report();
    ASSERT_EQ(codec->decode(p, {}, batch, *r), DecodeStatus::kOk);
  }
  const uint64_t before = runtime::thread_allocations();
  for (int i = 0; i < 1000; ++i) {
    batch.clear();
    codec->batch_done();
    core::Report* r = batch.add_report();
    ASSERT_EQ(codec->decode(p, {}, batch, *r), DecodeStatus::kOk);
  }
  EXPECT_EQ(runtime::thread_allocations() - before, 0u);
}

}  // namespace
}  // namespace tianhe::codecs::js
