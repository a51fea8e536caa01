// The WebAssembly codec: the module parser and the output reader on their own (every ABI path,
// every lie a module can tell about its output), the C and WAT example decoders against the
// built-in cayenne_lpp codec on the same payloads, every way a module can misbehave — an endless
// loop, a trap, memory past the budget, a bad result — each stopped with its own status while
// the same codec goes on with the next payload on a fresh instance; modules refused at load with
// their reasons; hot reload; the codec stage on two shard threads; the config.
#include "codecs/wasm/wasm_codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"
#include "codecs/wasm/wasm_module_info.h"
#include "codecs/wasm/wasm_output.h"
#include "control/config.h"
#include "runtime/alloc_counter.h"
#include "runtime/codec_stage.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::wasm {
namespace {

using pipeline::DecodeStatus;

std::string module_path(std::string_view name) {
  return std::string(TH_WASM_MODULES) + "/" + std::string(name);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

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

Decoded decode_with(pipeline::Codec& codec, const std::vector<uint8_t>& p, uint8_t fport = 1) {
  static core::ReportBatch batch(16, 1024);
  batch.clear();
  codec.batch_done();
  core::Report* r = batch.add_report();
  const DecodeStatus st = codec.decode(p, {.device_id = 7, .fport = fport}, batch, *r);
  const auto ms = batch.metrics(*r);
  return {st, {ms.begin(), ms.end()}};
}

Decoded decode(pipeline::Codec& codec, std::string_view payload_hex) {
  return decode_with(codec, hex(payload_hex));
}

// The time budget of calls that are not about the budget: the watchdog measures wall time, and
// a loaded machine can hold a sanitizer build's thread off its core for longer than 10 ms.
constexpr std::chrono::seconds kRelaxed{10};
// The budget of calls that are meant to run past it (short, so the tests stay quick, and long
// enough that the calls around them never reach it).
constexpr std::chrono::milliseconds kShort{300};

std::unique_ptr<WasmCodec> load(std::string_view name,
                                WasmCodecLimits limits = {.time_budget = kRelaxed}) {
  auto c = WasmCodec::from_file(module_path(name), limits);
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(c.value()) : nullptr;
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// ---- The output reader (wasm_output.h), on memory images built here.

/// Builds a result in the ABI's layout.
struct Out {
  std::vector<uint8_t> b;
  Out& u8(uint8_t v) {
    b.push_back(v);
    return *this;
  }
  Out& u16(uint16_t v) { return u8(v & 0xff).u8(v >> 8); }
  Out& u32(uint32_t v) { return u16(v & 0xffff).u16(v >> 16); }
  Out& u64(uint64_t v) { return u32(static_cast<uint32_t>(v)).u32(static_cast<uint32_t>(v >> 32)); }
  Out& str(std::string_view s) {
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Out& metric(WasmValueType t, std::string_view name) {
    return u8(static_cast<uint8_t>(t)).u8(static_cast<uint8_t>(name.size())).str(name);
  }
};

struct Read {
  WasmOutput out;
  std::string message;  ///< out.message, copied before the memory goes
  std::vector<core::Metric> metrics;
  std::string text;
};

// Places the result at offset 16 of a memory of exactly the result's size (+16), so a read one
// byte past its end is a read past the memory (ASan would see it: the vector is exact).
Read read_at(const Out& o, WasmOutputLimits limits = {}, uint32_t ptr = 16,
             size_t text_capacity = 4096) {
  std::vector<uint8_t> memory(16 + o.b.size());
  std::copy(o.b.begin(), o.b.end(), memory.begin() + 16);
  core::ReportBatch batch(4, 128);
  core::Report* r = batch.add_report();
  Read out;  // returned by move: the text's heap buffer, which the names view, stays put
  std::string& text = out.text;
  text.reserve(text_capacity);
  out.out = read_wasm_output(memory, ptr, limits, text, batch, *r);
  out.message = out.out.message;
  out.out.message = {};
  const auto ms = batch.metrics(*r);
  out.metrics.assign(ms.begin(), ms.end());
  if (out.out.status != DecodeStatus::kOk) {
    EXPECT_TRUE(out.metrics.empty());
    EXPECT_TRUE(text.empty());
  }
  return out;
}

TEST(WasmOutput, ReadsEveryValueType) {
  double d = -21.5;
  uint64_t bits = 0;
  std::memcpy(&bits, &d, 8);
  Out o;
  o.u32(4)
      .metric(WasmValueType::kF64, "temperature")
      .u64(bits)
      .metric(WasmValueType::kI64, "count")
      .u64(static_cast<uint64_t>(-42))
      .metric(WasmValueType::kBool, "open")
      .u8(1)
      .metric(WasmValueType::kString, "mode")
      .u16(3)
      .str("run");
  const Read r = read_at(o);
  ASSERT_EQ(r.out.status, DecodeStatus::kOk) << r.message;
  EXPECT_EQ(r.out.bytes, o.b.size());
  ASSERT_EQ(r.metrics.size(), 4u);
  EXPECT_EQ(r.metrics[0].name, "temperature");
  EXPECT_EQ(r.metrics[0].value.type, core::ValueType::kDouble);
  EXPECT_EQ(r.metrics[0].value.f64, -21.5);
  EXPECT_EQ(r.metrics[1].value.type, core::ValueType::kInt64);
  EXPECT_EQ(r.metrics[1].value.i64, -42);
  EXPECT_EQ(r.metrics[2].value.type, core::ValueType::kBool);
  EXPECT_TRUE(r.metrics[2].value.b);
  EXPECT_EQ(r.metrics[3].value.type, core::ValueType::kString);
  EXPECT_EQ(r.metrics[3].value.str, "run");
  EXPECT_EQ(r.text, "temperaturecountopenmoderun");                // copied out of the memory
  EXPECT_EQ(read_at(Out().u32(0)).out.status, DecodeStatus::kOk);  // no metrics: fine
}

TEST(WasmOutput, TheErrorFormCarriesTheModulesCodeAndMessage) {
  const Read bad = read_at(Out().u32(kWasmErrorForm).u32(1).u16(9).str("too short"));
  EXPECT_EQ(bad.out.status, DecodeStatus::kMalformed);
  EXPECT_EQ(bad.out.error_code, 1u);
  EXPECT_EQ(bad.message, "too short");
  const Read oom = read_at(Out().u32(kWasmErrorForm).u32(2).u16(0));
  EXPECT_EQ(oom.out.status, DecodeStatus::kOutOfMemory);
  const Read other = read_at(Out().u32(kWasmErrorForm).u32(77).u16(1).str("x"));
  EXPECT_EQ(other.out.status, DecodeStatus::kMalformed);
  // A message over the limit is cut, not refused.
  const Read cut = read_at(Out().u32(kWasmErrorForm).u32(1).u16(600).str(std::string(600, 'm')));
  EXPECT_EQ(cut.message.size(), 512u);
}

TEST(WasmOutput, EveryOffsetAndLengthIsCheckedAgainstTheMemory) {
  const Out ok = Out().u32(1).metric(WasmValueType::kI64, "n").u64(5);
  struct Case {
    const char* what;
    Out out;
    uint32_t ptr;
    DecodeStatus want;
  };
  const Case cases[] = {
      {"null pointer", ok, 0, DecodeStatus::kMalformed},
      {"pointer past the end", ok, 0xfffffff0u, DecodeStatus::kMalformed},
      {"pointer at the last 3 bytes", Out().u32(0), 16 + 1, DecodeStatus::kMalformed},
      {"count only, metrics missing", Out().u32(2), 16, DecodeStatus::kMalformed},
      {"name runs past the end", Out().u32(1).u8(2).u8(10).str("abc"), 16,
       DecodeStatus::kMalformed},
      {"value runs past the end", Out().u32(1).metric(WasmValueType::kF64, "t").u32(0), 16,
       DecodeStatus::kMalformed},
      {"bool value missing", Out().u32(1).metric(WasmValueType::kBool, "b"), 16,
       DecodeStatus::kMalformed},
      {"string length missing", Out().u32(1).metric(WasmValueType::kString, "s").u8(1), 16,
       DecodeStatus::kMalformed},
      {"string runs past the end",
       Out().u32(1).metric(WasmValueType::kString, "s").u16(9).str("ab"), 16,
       DecodeStatus::kMalformed},
      {"unknown type 0", Out().u32(1).metric(WasmValueType{0}, "x").u64(0), 16,
       DecodeStatus::kMalformed},
      {"unknown type 5", Out().u32(1).metric(WasmValueType{5}, "x").u64(0), 16,
       DecodeStatus::kMalformed},
      {"empty name", Out().u32(1).u8(2).u8(0).u64(0), 16, DecodeStatus::kMalformed},
      {"name over 64 bytes", Out().u32(1).metric(WasmValueType::kI64, std::string(65, 'n')).u64(0),
       16, DecodeStatus::kTooLarge},
      {"string over 1024 bytes",
       Out().u32(1).metric(WasmValueType::kString, "s").u16(1025).str(std::string(1025, 's')), 16,
       DecodeStatus::kTooLarge},
      {"count over the limit", Out().u32(65), 16, DecodeStatus::kTooManyMetrics},
      {"count of 2^31 - 1", Out().u32(0x7fffffff), 16, DecodeStatus::kTooManyMetrics},
      {"error form cut short", Out().u32(kWasmErrorForm).u32(1), 16, DecodeStatus::kMalformed},
      {"error message past the end", Out().u32(kWasmErrorForm).u32(1).u16(50).str("abc"), 16,
       DecodeStatus::kMalformed},
  };
  for (const Case& c : cases) {
    const Read r = read_at(c.out, {}, c.ptr);
    EXPECT_EQ(r.out.status, c.want) << c.what << ": " << r.message;
    EXPECT_FALSE(r.message.empty()) << c.what;
  }
}

TEST(WasmOutput, TheOutputCapTheBatchAndTheTextStorageBoundAResult) {
  Out big;
  big.u32(20);
  for (int i = 0; i < 20; ++i) {
    big.metric(WasmValueType::kString, "s" + std::to_string(i))
        .u16(1000)
        .str(std::string(1000, 'x'));
  }
  EXPECT_EQ(read_at(big, {.max_output_bytes = 16u << 10}, 16, 32u << 10).out.status,
            DecodeStatus::kOutputTooLarge);
  EXPECT_EQ(read_at(big, {.max_output_bytes = 64u << 10}, 16, 4096).out.status,
            DecodeStatus::kTooLarge);  // no room left in the batch's text storage
  EXPECT_EQ(read_at(big, {.max_output_bytes = 64u << 10}, 16, 32u << 10).out.status,
            DecodeStatus::kOk);
  Out many;
  many.u32(5);  // the batch below holds 128 metrics; this one asks for 5 of a limit of 4
  for (int i = 0; i < 5; ++i) many.metric(WasmValueType::kI64, "m" + std::to_string(i)).u64(i);
  EXPECT_EQ(read_at(many, {.max_metrics = 4}).out.status, DecodeStatus::kTooManyMetrics);
  EXPECT_EQ(read_at(many).out.status, DecodeStatus::kOk);
}

// ---- The module parser (wasm_module_info.h).

TEST(WasmModuleInfo, ReadsTheExamplesExportsAndSetsTheMemoryMaximum) {
  for (const char* name : {"lpp_subset_c.wasm", "lpp_subset.wasm"}) {
    const std::vector<uint8_t> bytes = read_bytes(module_path(name));
    auto info = parse_wasm_module(bytes);
    ASSERT_TRUE(info.ok()) << name << ": " << info.error().message;
    EXPECT_TRUE(info->imports.empty());
    ASSERT_NE(info->find_export("decode"), nullptr);
    const WasmFuncType* t = info->function_type(info->find_export("decode")->index);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(describe(*t), "(i32, i32, i32) -> i32");
    EXPECT_TRUE(info->has_memory);
    EXPECT_EQ(info->memory_flags & 1, 0);  // no maximum declared
    const std::vector<uint8_t> capped = with_memory_maximum(bytes, *info, 256);
    auto again = parse_wasm_module(capped);
    ASSERT_TRUE(again.ok()) << again.error().message;
    EXPECT_EQ(again->memory_flags, 1);
    EXPECT_EQ(again->memory_max_pages, 256u);
    EXPECT_EQ(again->memory_min_pages, info->memory_min_pages);
    EXPECT_EQ(again->exports.size(), info->exports.size());
  }
}

TEST(WasmModuleInfo, RefusesWhatIsNotAModuleWithTheOffset) {
  const std::string text = "function decodeUplink(input) {}";
  auto not_wasm = parse_wasm_module({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  ASSERT_FALSE(not_wasm.ok());
  EXPECT_TRUE(contains(not_wasm.error().message, "not a WebAssembly module"));
  const std::vector<uint8_t> v2 = {0, 'a', 's', 'm', 2, 0, 0, 0};
  EXPECT_TRUE(contains(parse_wasm_module(v2).error().message, "version"));
  // A type section that claims 100 types in 2 bytes; a section that runs past the file; a LEB
  // of 6 bytes.
  const std::vector<uint8_t> types = {0, 'a', 's', 'm', 1, 0, 0, 0, 1, 2, 100, 0x60};
  auto t = parse_wasm_module(types);
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(
      contains(t.error().message, "malformed module at byte 11 (section 1): too many types"))
      << t.error().message;
  const std::vector<uint8_t> past = {0, 'a', 's', 'm', 1, 0, 0, 0, 1, 50, 0};
  EXPECT_TRUE(contains(parse_wasm_module(past).error().message, "past the end"));
  const std::vector<uint8_t> leb = {0, 'a',  's',  'm',  1,    0,    0, 0,
                                    1, 0x80, 0x80, 0x80, 0x80, 0x80, 0};
  EXPECT_FALSE(parse_wasm_module(leb).ok());
}

// ---- The example decoders against the built-in cayenne_lpp codec.

// Payloads of the subset both examples decode: temperature, humidity, barometer, analog and
// digital input, digital output, luminosity; negative values; channel numbers of 1-3 digits.
const char* const kLppPayloads[] = {
    "0167 00eb 0268 5a 0373 277f 0402 012c 0500 01",
    "0167 ff38",                    // -20.0 °C
    "ff02 8000 6401 01 0a65 ffff",  // channel 255, analog -327.68, luminosity 65535
    "",                             // nothing: no metrics
    "0168 00 0968 ff",
};

std::string squeeze(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != ' ') out += c;
  }
  return out;
}

void expect_same(const Decoded& want, const Decoded& got, const std::string& what) {
  ASSERT_EQ(got.status, want.status) << what;
  ASSERT_EQ(got.metrics.size(), want.metrics.size()) << what;
  for (size_t i = 0; i < want.metrics.size(); ++i) {
    const core::Metric& w = want.metrics[i];
    const core::Metric& g = got.metrics[i];
    EXPECT_EQ(g.name, w.name) << what;
    ASSERT_EQ(g.value.type, w.value.type) << what << " " << w.name;
    if (w.value.type == core::ValueType::kDouble) {
      EXPECT_EQ(g.value.f64, w.value.f64) << what << " " << w.name;  // bit for bit
    } else {
      EXPECT_EQ(g.value.i64, w.value.i64) << what << " " << w.name;
    }
  }
}

TEST(WasmCodec, TheCAndWatExamplesDecodeAsTheBuiltInCayenneLppCodec) {
  cayenne_lpp::CayenneLppCodec builtin;
  auto c = load("lpp_subset_c.wasm");
  auto wat = load("lpp_subset.wasm");
  ASSERT_NE(c, nullptr);
  ASSERT_NE(wat, nullptr);
  for (const char* p : kLppPayloads) {
    const std::vector<uint8_t> bytes = hex(squeeze(p));
    const Decoded want = decode_with(builtin, bytes);
    ASSERT_EQ(want.status, DecodeStatus::kOk) << p;
    expect_same(want, decode_with(*c, bytes), std::string("C: ") + p);
    expect_same(want, decode_with(*wat, bytes), std::string("WAT: ") + p);
  }
  // Seeded random payloads of the subset's types (distinct channel and type per payload, as
  // the built-in codec keeps only the last of a repeated one).
  std::mt19937 rng(20);
  const uint8_t types[] = {0, 1, 2, 101, 103, 104, 115};
  const uint8_t sizes[] = {1, 1, 2, 2, 2, 1, 2};
  for (int round = 0; round < 300; ++round) {
    std::vector<uint8_t> p;
    const int n = static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      const size_t t = rng() % std::size(types);
      p.push_back(static_cast<uint8_t>(i * 31 + round % 7));  // channel: distinct in a payload
      p.push_back(types[t]);
      for (int k = 0; k < sizes[t]; ++k) p.push_back(static_cast<uint8_t>(rng()));
    }
    const Decoded want = decode_with(builtin, p);
    expect_same(want, decode_with(*c, p), "C round " + std::to_string(round));
    expect_same(want, decode_with(*wat, p), "WAT round " + std::to_string(round));
  }
  EXPECT_EQ(c->stats().calls.get(), std::size(kLppPayloads) + 300);
}

TEST(WasmCodec, AnErrorTheModuleReportsFailsTheCallWithItsMessage) {
  for (const char* name : {"lpp_subset_c.wasm", "lpp_subset.wasm"}) {
    auto codec = load(name);
    ASSERT_NE(codec, nullptr);
    EXPECT_EQ(decode(*codec, "01ee00").status, DecodeStatus::kMalformed);
    EXPECT_EQ(codec->last_error(), "unsupported LPP type") << name;
    EXPECT_EQ(decode(*codec, "0167").status, DecodeStatus::kMalformed);
    EXPECT_TRUE(contains(codec->last_error(), "truncated reading")) << codec->last_error();
    EXPECT_EQ(codec->stats().errors_of(DecodeStatus::kMalformed), 2u);
    EXPECT_EQ(decode(*codec, "016700eb").status, DecodeStatus::kOk);  // it goes on
    EXPECT_EQ(codec->stats().instantiations.get(), 1u);  // an error result is not a failure
  }
}

TEST(WasmCodec, ThePortReachesTheModuleAndPayloadsOverTheInputBufferAreRefused) {
  auto codec = load("lpp_subset.wasm", {.time_budget = kRelaxed, .max_payload_bytes = 8});
  EXPECT_EQ(decode(*codec, "0167000a0167000a0a").status, DecodeStatus::kTooLarge);
  EXPECT_EQ(decode(*codec, "0167000a").status, DecodeStatus::kOk);
}

// ---- Budgets and traps: each call stopped with its own status; the next one works.

TEST(WasmCodec, AnEndlessLoopIsInterruptedByTheWatchdogAndTheNextCallRuns) {
  auto codec = load("loop.wasm", {.time_budget = kShort});
  ASSERT_NE(codec, nullptr);
  for (const char* p : {"01", "02"}) {
    EXPECT_EQ(decode(*codec, p).status, DecodeStatus::kTimeout) << p;
    EXPECT_TRUE(contains(codec->last_error(), "time budget"));
    const Decoded next = decode(*codec, "00");
    ASSERT_EQ(next.status, DecodeStatus::kOk) << codec->last_error();
    EXPECT_EQ(next.find("ok")->value.i64, 1);
  }
  EXPECT_EQ(codec->stats().errors_of(DecodeStatus::kTimeout), 2u);
  EXPECT_EQ(codec->stats().instantiations.get(), 3u);  // the first, and one after each stop
}

TEST(WasmCodec, TrapsAreCountedAsThrownAndTheInstanceIsStartedAfresh) {
  auto codec = load("trap.wasm");
  ASSERT_NE(codec, nullptr);
  const std::pair<const char*, const char*> traps[] = {{"01", "unreachable"},
                                                       {"02", "out of bounds"},
                                                       {"03", "divide by zero"},
                                                       {"04", "recursion"}};
  for (const auto& [p, why] : traps) {
    EXPECT_EQ(decode(*codec, "00").find("calls")->value.i64, 1) << p;
    EXPECT_EQ(decode(*codec, "00").find("calls")->value.i64, 2) << p;
    EXPECT_EQ(decode(*codec, p).status, DecodeStatus::kThrown) << p;
    EXPECT_TRUE(contains(codec->last_error(), why)) << p << ": " << codec->last_error();
    // A fresh instance: its call count starts again.
    const Decoded next = decode(*codec, "00");
    ASSERT_EQ(next.status, DecodeStatus::kOk) << p << ": " << codec->last_error();
    EXPECT_EQ(next.find("calls")->value.i64, 1) << p;
    decode(*codec, "01");  // leave the next round a fresh instance too
  }
  EXPECT_EQ(codec->stats().errors_of(DecodeStatus::kThrown), 8u);
}

TEST(WasmCodec, MemoryPastTheBudgetFailsInsideTheModuleAndIsCounted) {
  auto codec = load("grow.wasm", {.time_budget = kRelaxed, .memory_budget = 1u << 20});  // 16 pages
  ASSERT_NE(codec, nullptr);
  EXPECT_EQ(decode(*codec, "00").find("pages")->value.i64, 2);
  const Decoded grown = decode(*codec, "03");  // within the budget: fine
  ASSERT_EQ(grown.status, DecodeStatus::kOk);
  EXPECT_EQ(grown.find("pages")->value.i64, 6);
  EXPECT_EQ(codec->stats().memory_bytes.load(), 6u * kWasmPageBytes);
  EXPECT_EQ(decode(*codec, "00").find("pages")->value.i64, 6);  // the buffer moved: read anew
  // Grows a page at a time until memory.grow fails at 16 pages, then traps.
  EXPECT_EQ(decode(*codec, "01").status, DecodeStatus::kOutOfMemory) << codec->last_error();
  EXPECT_EQ(codec->stats().memory_bytes.load(), 16u * kWasmPageBytes);
  EXPECT_EQ(decode(*codec, "00").find("pages")->value.i64, 2);  // a fresh instance
  // Asks for 4 GiB at once, sees the failure and says so (error code 2).
  EXPECT_EQ(decode(*codec, "02").status, DecodeStatus::kOutOfMemory);
  EXPECT_EQ(codec->last_error(), "out of memory");
  EXPECT_EQ(decode(*codec, "00").status, DecodeStatus::kOk);
  EXPECT_EQ(codec->stats().errors_of(DecodeStatus::kOutOfMemory), 2u);
}

TEST(WasmCodec, AModuleThatLiesAboutItsOutputIsRefusedWithoutAReadOutOfBounds) {
  auto codec = load("badptr.wasm", {.time_budget = kRelaxed, .max_output_bytes = 16u << 10});
  ASSERT_NE(codec, nullptr);
  const std::pair<const char*, DecodeStatus> cases[] = {
      {"01", DecodeStatus::kMalformed},      {"02", DecodeStatus::kMalformed},
      {"03", DecodeStatus::kTooManyMetrics}, {"04", DecodeStatus::kTooLarge},
      {"05", DecodeStatus::kMalformed},      {"06", DecodeStatus::kMalformed},
      {"07", DecodeStatus::kOutputTooLarge}, {"08", DecodeStatus::kMalformed},
      {"09", DecodeStatus::kMalformed}};
  for (const auto& [p, want] : cases) {
    const Decoded d = decode(*codec, p);
    EXPECT_EQ(d.status, want) << p << ": " << codec->last_error();
    EXPECT_TRUE(d.metrics.empty()) << p;
    EXPECT_FALSE(codec->last_error().empty()) << p;
    ASSERT_EQ(decode(*codec, "00").status, DecodeStatus::kOk) << p;
  }
  EXPECT_EQ(codec->stats().errors_of(DecodeStatus::kOutputTooLarge), 1u);
  EXPECT_EQ(codec->stats().instantiations.get(), 1u);  // a bad result is not a trap
}

// ---- Loading: what is refused, and why.

TEST(WasmCodec, ModulesThatBreakTheAbiAreRefusedWithTheFileAndTheReason) {
  const std::pair<const char*, const char*> cases[] = {
      {"refused/no_decode.wasm", "exports no function decode (i32, i32, i32) -> i32"},
      {"refused/decode_signature.wasm",
       "decode has the signature (i32, i32) -> i32; the ABI needs (i32, i32, i32) -> i32"},
      {"refused/abi_version.wasm", "speaks ABI version 2; this gateway speaks version 1"},
      {"refused/no_version.wasm", "exports no function tianhe_abi_version () -> i32"},
      {"refused/imports.wasm", "imports env.print (a function); a codec may import nothing"},
      {"refused/no_memory.wasm", "exports no memory named \"memory\""},
      {"refused/big_memory.wasm", "its memory starts at 1024 pages"},
      {"refused/alloc_fails.wasm", "alloc(65536) returned 0"},
      {"refused/start_loop.wasm", "its start function ran past the time budget"},
  };
  for (const auto& [file, why] : cases) {
    auto c = WasmCodec::from_file(module_path(file), {.time_budget = kShort});
    ASSERT_FALSE(c.ok()) << file;
    EXPECT_TRUE(contains(c.error().message, module_path(file) + ": ")) << c.error().message;
    EXPECT_TRUE(contains(c.error().message, why)) << c.error().message;
  }
  const std::string js = "function decodeUplink(input) { return {}; }";
  auto text =
      WasmCodec::from_bytes("acme.wasm", {reinterpret_cast<const uint8_t*>(js.data()), js.size()});
  ASSERT_FALSE(text.ok());
  EXPECT_TRUE(contains(text.error().message, "acme.wasm: not a WebAssembly module"));
  // Sections the parser accepts but the engine does not: a code section whose body is garbage.
  std::vector<uint8_t> bytes = read_bytes(module_path("loop.wasm"));
  auto info = parse_wasm_module(bytes);
  ASSERT_TRUE(info.ok());
  bytes.resize(bytes.size() - 3);
  auto cut = WasmCodec::from_bytes("cut.wasm", bytes, {.time_budget = kRelaxed});
  ASSERT_FALSE(cut.ok());
  EXPECT_TRUE(contains(cut.error().message, "cut.wasm: ")) << cut.error().message;
  auto missing = WasmCodec::from_file("/nonexistent/acme.wasm");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.error().message, "cannot open"));
}

TEST(WasmCodec, TheMemoryBudgetIsTheMemorysMaximum) {
  // 1024 initial pages load under a budget of 64 MiB and not under the default 16 MiB.
  EXPECT_TRUE(WasmCodec::from_file(module_path("refused/big_memory.wasm"),
                                   {.time_budget = kRelaxed, .memory_budget = 64u << 20})
                  .ok());
  auto tiny = WasmCodec::from_file(module_path("lpp_subset.wasm"),
                                   {.time_budget = kRelaxed, .memory_budget = 1000});
  ASSERT_FALSE(tiny.ok());
  EXPECT_TRUE(contains(tiny.error().message, "under one 64 KiB page"));
}

// ---- Threads, reload, registration, the stage.

TEST(WasmCodec, DecodesOnTheThreadThatCallsIt) {
  auto codec = load("lpp_subset_c.wasm");  // compiled here, instantiated by the thread below
  Decoded d{DecodeStatus::kThrown, {}};
  std::thread t([&] {
    d = decode(*codec, "016700eb");
    d.metrics.clear();  // names view the codec's text; only the status leaves the thread
  });
  t.join();
  EXPECT_EQ(d.status, DecodeStatus::kOk) << codec->last_error();
  codec.reset();  // after its thread exited
}

TEST(WasmCodec, HotReloadSwapsAChangedFileAndKeepsTheOldOneWhenRefused) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("th_wasm_reload_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "c.wasm").string();
  auto write = [&](const std::vector<uint8_t>& b) {
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  write(read_bytes(module_path("lpp_subset.wasm")));
  auto c = WasmCodec::from_file(
      path, {.time_budget = kRelaxed, .reload_check = std::chrono::nanoseconds(1)});
  ASSERT_TRUE(c.ok()) << c.error().message;
  WasmCodec& codec = **c;
  EXPECT_NE(decode(codec, "016700eb").find("temperature_1"), nullptr);
  write(read_bytes(module_path("loop.wasm")));  // another module, another size
  EXPECT_EQ(decode(codec, "00").find("ok")->value.i64, 1);
  EXPECT_EQ(codec.stats().reloads.get(), 1u);
  write(read_bytes(module_path("refused/imports.wasm")));  // refused
  const Decoded d = decode(codec, "00");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.find("ok")->value.i64, 1);  // the previous version goes on
  EXPECT_EQ(codec.stats().reload_failures.get(), 1u);
  EXPECT_TRUE(contains(codec.last_error(), "reload failed, the previous version goes on"));
  EXPECT_TRUE(contains(codec.last_error(), "imports env.print"));
  std::filesystem::remove_all(dir);
}

TEST(WasmCodec, RegisteredForWasmFiles) {
  const runtime::CodecSpec* spec =
      runtime::codec_for_file(runtime::builtin_extensions().codecs(), "/x/acme.wasm");
  ASSERT_NE(spec, nullptr);
  EXPECT_EQ(spec->name, "wasm");
  auto missing = spec->load("/nonexistent/acme.wasm", {});
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.error().message, "cannot open"));
  auto ok = spec->load(module_path("lpp_subset.wasm"), {.time_budget_ns = 10'000'000'000});
  EXPECT_TRUE(ok.ok());
}

// The codec stage with two shards' decoders for a model naming a .wasm file: each shard thread
// decodes with its own instance; a payload that loops past the budget (500 ms here) is
// dead-lettered with reason "timeout" and counted, and the shard decodes the next payload.
TEST(WasmCodecStage, AModelNamingAWasmFileDecodesOnEachShardAndDeadLettersBudgetHits) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("th_wasm_stage_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = module_path("loop.wasm");
  pipeline::ModelSpec models[] = {{.name = "acme", .codec = path}};
  pipeline::DeviceRange devices[] = {{.first_id = 1, .count = 10, .model = "acme"}};
  auto registry = pipeline::Registry::build({}, models, devices);
  ASSERT_TRUE(registry.ok()) << registry.error().message;
  auto stage =
      runtime::CodecStage::create((dir / "data").string(), *registry, runtime::builtin_extensions(),
                                  1u << 20, {.time_budget_ns = 500'000'000});
  ASSERT_TRUE(stage.ok()) << stage.error().message;
  std::vector<std::unique_ptr<runtime::PayloadDecoder>> decoders;
  for (uint32_t shard = 0; shard < 2; ++shard) {
    auto d = (*stage)->decoder(shard, "mqtt_sn", "json");
    ASSERT_TRUE(d.ok()) << d.error().message;
    decoders.push_back(std::move(d.value()));
  }
  // Both shards at once, each on its own thread.
  std::vector<std::thread> shards;
  for (uint32_t shard = 0; shard < 2; ++shard) {
    shards.emplace_back([&, shard] {
      runtime::PayloadDecoder& d = *decoders[shard];
      core::ReportBatch batch(64, 256);
      const uint8_t ok[] = {0x00}, loop[] = {0x01};
      for (int i = 0; i < 20; ++i) {
        core::Report* r = batch.add_report();
        r->device_id = 3;
        EXPECT_EQ(d.decode(ok, {.device_id = 3}, batch, *r), runtime::PayloadOutcome::kDecoded);
        EXPECT_EQ(r->metric_count, 1);
      }
      core::Report* r2 = batch.add_report();
      r2->device_id = 4;
      EXPECT_EQ(d.decode(loop, {.device_id = 4}, batch, *r2),
                runtime::PayloadOutcome::kDeadLettered);
      core::Report* r3 = batch.add_report();
      r3->device_id = 3;
      EXPECT_EQ(d.decode(ok, {.device_id = 3}, batch, *r3), runtime::PayloadOutcome::kDecoded);
      d.batch_done();
    });
  }
  for (auto& t : shards) t.join();
  EXPECT_EQ((*stage)->dead_lettered(), 2u);
  for (const char* file : {"mqtt_sn-shard0.jsonl", "mqtt_sn-shard1.jsonl"}) {
    std::ifstream dl(dir / "data" / "dead-letter" / "codecs" / file);
    std::string line;
    ASSERT_TRUE(std::getline(dl, line)) << file;
    EXPECT_TRUE(contains(line, "\"reason\":\"timeout\"")) << line;
    EXPECT_TRUE(contains(line, "\"payload_hex\":\"01\"")) << line;
  }
  core::PromWriter w;
  (*stage)->collect(w);
  const std::string text = w.render();
  const std::string l = "{codec=\"" + path + "\"";
  EXPECT_TRUE(contains(text, "tianhe_codec_wasm_calls_total" + l + "} 44")) << text;
  EXPECT_TRUE(contains(text, "tianhe_codec_wasm_errors_total" + l + ",kind=\"timeout\"} 2"));
  EXPECT_TRUE(contains(text, "tianhe_codec_wasm_memory_bytes" + l + "} 262144"));
  decoders.clear();  // on this thread: the shard threads' engines are gone already
  std::filesystem::remove_all(dir);
}

// The config: a model's codec may be a .wasm file, relative to the config file's directory.
TEST(WasmCodecConfig, AModelsWasmFileIsResolvedFromTheConfigDirectory) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("th_wasm_config_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "codecs");
  std::filesystem::copy_file(module_path("lpp_subset.wasm"), dir / "codecs" / "acme.wasm",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir / "tianhe.toml")
      << "[[models]]\nname = \"acme\"\ncodec = \"codecs/acme.wasm\"\n";
  auto c = control::load_config((dir / "tianhe.toml").string());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->models[0].codec, (dir / "codecs" / "acme.wasm").string());
  std::ofstream(dir / "tianhe.toml", std::ios::trunc)
      << "[[models]]\nname = \"acme\"\ncodec = \"acme\"\n";
  auto unknown = control::load_config((dir / "tianhe.toml").string());
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(contains(unknown.error().message, "or a .wasm file")) << unknown.error().message;
  std::filesystem::remove_all(dir);
}

// Whether this build counts allocations (alloc_counter.cpp stands down under the sanitizers).
bool counting_allocations() {
  const uint64_t before = runtime::thread_allocations();
  void* p = ::operator new(16);
  ::operator delete(p);
  return runtime::thread_allocations() != before;
}

TEST(WasmCodec, NoAllocationPerCallInSteadyState) {
  if (!counting_allocations()) GTEST_SKIP() << "allocation counting is off in sanitizer builds";
  auto codec = load("lpp_subset_c.wasm");
  core::ReportBatch batch(16, 1024);
  const std::vector<uint8_t> p = hex("016700eb02685a0373277f");
  for (int i = 0; i < 100; ++i) {  // warm up: instantiate, tier up
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
}  // namespace tianhe::codecs::wasm
