// `tianhe codec run|test`: the workflow of a codec author. `run` decodes one payload with a
// codec file and prints {data, warnings, errors}; `test` runs the examples of a codec in the
// layout of the public LoRaWAN device repository (uplinkDecoder / downlinkEncoder /
// downlinkDecoder, each with examples[] of input and expected output) and prints pass or fail
// per example with a diff. Control plane: allocations and exceptions (yaml-cpp's) are fine here.
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codecs/js/js_codec.h"
#include "codecs/wasm/wasm_codec.h"
#include "core/args.h"
#include "runtime/extensions.h"

namespace tianhe::tools::codec {

namespace {

using core::Args;
using core::wants_help;
using nlohmann::json;

constexpr const char* kUsage =
    "usage: tianhe codec run --codec FILE.js|FILE.wasm --hex HEX [--fport N] [budgets]\n"
    "       tianhe codec test --codec FILE.js --examples FILE.yaml [--json] [budgets]\n"
    "\n"
    "run   decodes one uplink payload and prints {data, warnings, errors} as JSON; a budget\n"
    "      hit or a thrown error exits 1 with the reason on stderr. A .wasm codec's metrics\n"
    "      are the keys of data, as named (docs/codecs/wasm.md).\n"
    "test  runs the examples of a .js codec (uplinkDecoder, downlinkEncoder, downlinkDecoder:\n"
    "      examples[] with input and the expected output, as in the LoRaWAN device repository)\n"
    "      and prints pass or fail per example with a diff; exits 1 when one fails. --json: one\n"
    "      JSON document.\n"
    "budgets: --time-budget MS (10), --memory-budget MIB (16), --max-output-bytes N (65536)\n"
    "\n"
    "examples:\n"
    "  tianhe codec run --codec test/codecs/js/acme_th.js --hex 00eb5a6403 --fport 1\n"
    "  tianhe codec run --codec build/dev/test/codecs/wasm/lpp_subset_c.wasm --hex 016700eb\n"
    "  tianhe codec test --codec test/codecs/js/acme_th.js --examples "
    "test/codecs/js/acme_th.yaml\n";

// A YAML node as JSON: scalars become integers, numbers, booleans or null where they read as
// one (YAML 1.2 core schema), else strings.
json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;  // quoted: a string
      if (s == "true" || s == "True") return true;
      if (s == "false" || s == "False") return false;
      if (s == "null" || s == "~" || s.empty()) return nullptr;
      try {
        size_t used = 0;
        const long long i = std::stoll(s, &used, 0);
        if (used == s.size()) return i;
      } catch (...) {
      }
      try {
        size_t used = 0;
        const double d = std::stod(s, &used);
        if (used == s.size()) return d;
      } catch (...) {
      }
      return s;
    }
    default: return nullptr;
  }
}

bool same_number(const json& a, const json& b) {
  const double x = a.get<double>(), y = b.get<double>();
  return x == y || std::fabs(x - y) <= 1e-9 * std::max(std::fabs(x), std::fabs(y));
}

// Where `got` differs from `want`: one line per path ("data.temperature: expected 21.5, got
// 21.4"). Numbers compare by value (1 == 1.0).
void diff(const json& want, const json& got, const std::string& path,
          std::vector<std::string>& out) {
  if (want.is_number() && got.is_number()) {
    if (!same_number(want, got)) {
      out.push_back(path + ": expected " + want.dump() + ", got " + got.dump());
    }
    return;
  }
  if (want.type() != got.type()) {
    out.push_back(path + ": expected " + want.dump() + ", got " + got.dump());
    return;
  }
  if (want.is_object()) {
    for (const auto& [k, v] : want.items()) {
      std::string p = path;
      if (!p.empty()) p += '.';
      p += k;
      if (!got.contains(k)) {
        std::string line = p;
        line += ": expected ";
        line += v.dump();
        line += ", missing";
        out.push_back(std::move(line));
      } else {
        diff(v, got[k], p, out);
      }
    }
    for (const auto& [k, v] : got.items()) {
      if (!want.contains(k)) {
        std::string line = path;
        if (!line.empty()) line += '.';
        line += k;
        line += ": not expected, got ";
        line += v.dump();
        out.push_back(std::move(line));
      }
    }
    return;
  }
  if (want.is_array()) {
    if (want.size() != got.size()) {
      out.push_back(path + ": expected " + std::to_string(want.size()) + " items " + want.dump() +
                    ", got " + std::to_string(got.size()) + " " + got.dump());
      return;
    }
    for (size_t i = 0; i < want.size(); ++i) {
      diff(want[i], got[i], path + "[" + std::to_string(i) + "]", out);
    }
    return;
  }
  if (want != got) out.push_back(path + ": expected " + want.dump() + ", got " + got.dump());
}

Result<codecs::js::JsCodecLimits> limits_from(const Args& a) {
  codecs::js::JsCodecLimits l;
  l.reload_check = std::chrono::nanoseconds(0);
  auto t = a.f64("time-budget", 10, 0.1, 10000);
  if (!t.ok()) return t.error();
  l.time_budget = std::chrono::nanoseconds(static_cast<int64_t>(*t * 1e6));
  auto m = a.u64("memory-budget", 16, 1, 1024);
  if (!m.ok()) return m.error();
  l.memory_budget = *m << 20;
  auto o = a.u64("max-output-bytes", 65536, 64, 16u << 20);
  if (!o.ok()) return o.error();
  l.max_output_bytes = *o;
  return l;
}

bool is_wasm(const std::string& path) {
  return path.size() > 5 && path.substr(path.size() - 5) == ".wasm";
}

Result<std::unique_ptr<codecs::js::JsCodec>> load(const Args& a) {
  const std::string path = a.str("codec");
  if (path.empty()) return make_error("--codec: missing; name the codec file (FILE.js)");
  if (path.size() < 3 || path.substr(path.size() - 3) != ".js") {
    return make_error("--codec " + path + ": only JavaScript (.js) codec files run here" +
                      (is_wasm(path) ? " (codec run takes .wasm files too)" : ""));
  }
  auto l = limits_from(a);
  if (!l.ok()) return l.error();
  auto c = codecs::js::JsCodec::from_file(path, *l);
  if (!c.ok()) return c.error();
  return c;
}

// A .wasm codec: one decode, its metrics as the keys of data (values as typed; a codec reports
// no warnings, and its error form fails the run with its message).
int run_wasm(const Args& a, const std::vector<uint8_t>& payload, uint8_t fport) {
  auto l = limits_from(a);
  if (!l.ok()) {
    std::cerr << "tianhe codec run: " << l.error().message << "\n";
    return 2;
  }
  codecs::wasm::WasmCodecLimits wl;
  wl.time_budget = l->time_budget;
  wl.memory_budget = l->memory_budget;
  wl.max_output_bytes = l->max_output_bytes;
  wl.reload_check = std::chrono::nanoseconds(0);
  auto c = codecs::wasm::WasmCodec::from_file(a.str("codec"), wl);
  if (!c.ok()) {
    std::cerr << "tianhe codec run: " << c.error().message << "\n";
    return 2;
  }
  core::ReportBatch batch(1, 256);
  core::Report* r = batch.add_report();
  const pipeline::DecodeStatus st = (*c)->decode(payload, {.fport = fport}, batch, *r);
  if (st != pipeline::DecodeStatus::kOk) {
    std::cerr << "tianhe codec run: " << pipeline::decode_status_name(st) << ": "
              << (*c)->last_error() << "\n";
    return 1;
  }
  json data = json::object();
  for (const core::Metric& m : batch.metrics(*r)) {
    json& v = data[std::string(m.name)];
    switch (m.value.type) {
      case core::ValueType::kInt64: v = m.value.i64; break;
      case core::ValueType::kBool: v = m.value.b; break;
      case core::ValueType::kString: v = std::string(m.value.str); break;
      default: v = m.value.f64; break;
    }
  }
  const json out = {{"data", data}, {"warnings", json::array()}, {"errors", json::array()}};
  std::cout << out.dump(2) << "\n";
  return 0;
}

/// --hex and --fport of `codec run`: the payload bytes and the port, or a usage message on
/// stderr and false.
bool run_input(const Args& a, std::vector<uint8_t>& payload, uint8_t& fport) {
  const std::string hex = a.str("hex");
  if (hex.size() % 2 != 0 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    std::cerr << "tianhe codec run: --hex " << hex
              << ": not hexadecimal bytes; pass e.g. --hex 0169ff\n";
    return false;
  }
  auto port = a.u64("fport", 1, 0, 255);
  if (!port.ok()) {
    std::cerr << "tianhe codec run: " << port.error().message << "\n";
    return false;
  }
  payload.clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    payload.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  fport = static_cast<uint8_t>(*port);
  return true;
}

int cmd_run(const Args& a) {
  std::vector<uint8_t> payload;
  uint8_t fport = 1;
  if (is_wasm(a.str("codec"))) {
    if (!run_input(a, payload, fport)) return 2;
    return run_wasm(a, payload, fport);
  }
  auto c = load(a);
  if (!c.ok()) {
    std::cerr << "tianhe codec run: " << c.error().message << "\n";
    return 2;
  }
  if (!run_input(a, payload, fport)) return 2;
  json bytes = json::array();
  for (const uint8_t byte : payload) bytes.push_back(byte);
  const json input = {{"bytes", bytes}, {"fPort", fport}};
  (*c)->call_json("decodeUplink", "{\"bytes\":[],\"fPort\":1}");  // bind (console unlimited)
  auto r = (*c)->call_json("decodeUplink", input.dump());
  if (r.status != pipeline::DecodeStatus::kOk) {
    std::cerr << "tianhe codec run: " << pipeline::decode_status_name(r.status) << ": " << r.error
              << "\n";
    return 1;
  }
  json out = json::parse(r.json, nullptr, false);
  std::cout << (out.is_discarded() ? r.json : out.dump(2)) << "\n";
  return 0;
}

struct Outcome {
  std::string section, description;
  bool pass = false;
  std::vector<std::string> diff;
  std::string error;
};

int cmd_test(const Args& a) {
  auto c = load(a);
  if (!c.ok()) {
    std::cerr << "tianhe codec test: " << c.error().message << "\n";
    return 2;
  }
  const std::string examples = a.str("examples");
  YAML::Node doc;
  try {
    doc = YAML::LoadFile(examples);
  } catch (const std::exception& e) {
    std::cerr << "tianhe codec test: --examples " << examples << ": " << e.what() << "\n";
    return 2;
  }
  std::vector<Outcome> outcomes;
  for (const auto& [section, entry] :
       {std::pair{"uplinkDecoder", "decodeUplink"}, std::pair{"downlinkEncoder", "encodeDownlink"},
        std::pair{"downlinkDecoder", "decodeDownlink"}}) {
    const YAML::Node s = doc[section];
    if (!s || !s["examples"]) continue;
    size_t i = 0;
    for (const auto& ex : s["examples"]) {
      Outcome o;
      o.section = section;
      o.description = ex["description"] ? ex["description"].as<std::string>()
                                        : std::string(section) + "[" + std::to_string(i) + "]";
      ++i;
      const json input = to_json(ex["input"]);
      const json want = to_json(ex["output"]);
      auto r = (*c)->call_json(entry, input.dump());
      if (r.status != pipeline::DecodeStatus::kOk) {
        o.error = std::string(pipeline::decode_status_name(r.status)) + ": " + r.error;
      } else {
        json got = json::parse(r.json, nullptr, false);
        if (!got.is_object()) got = json::object();
        // Compare what the example states; empty warnings/errors lists equal absent ones.
        json expect = want.is_object() ? want : json::object();
        for (const char* k : {"warnings", "errors"}) {
          if (!expect.contains(k)) expect[k] = json::array();
          if (!got.contains(k) || got[k].is_null()) got[k] = json::array();
        }
        for (auto it = got.begin(); it != got.end();) {
          it = expect.contains(it.key()) ? std::next(it) : got.erase(it);
        }
        diff(expect, got, "", o.diff);
      }
      o.pass = o.error.empty() && o.diff.empty();
      outcomes.push_back(std::move(o));
    }
  }
  size_t failed = 0;
  for (const auto& o : outcomes) failed += o.pass ? 0 : 1;
  if (a.has("json")) {
    json j = {{"codec", a.str("codec")},
              {"examples", examples},
              {"passed", outcomes.size() - failed},
              {"failed", failed},
              {"results", json::array()}};
    for (const auto& o : outcomes) {
      j["results"].push_back({{"section", o.section},
                              {"description", o.description},
                              {"pass", o.pass},
                              {"diff", o.diff},
                              {"error", o.error}});
    }
    std::cout << j.dump(2) << "\n";
  } else {
    for (const auto& o : outcomes) {
      std::cout << (o.pass ? "PASS " : "FAIL ") << o.section << ": " << o.description << "\n";
      if (!o.error.empty()) std::cout << "    " << o.error << "\n";
      for (const auto& d : o.diff) std::cout << "    " << d << "\n";
    }
    std::cout << outcomes.size() - failed << " passed, " << failed << " failed\n";
  }
  if (outcomes.empty()) {
    std::cerr << "tianhe codec test: " << examples
              << ": no examples (uplinkDecoder.examples, downlinkEncoder.examples, "
                 "downlinkDecoder.examples)\n";
    return 1;
  }
  return failed == 0 ? 0 : 1;
}

int cmd_codec(int argc, char** argv) {
  if (argc < 3 || wants_help(argc, argv)) {
    std::cout << kUsage;
    return argc < 3 ? 2 : 0;
  }
  const std::string sub = argv[2];
  auto a = Args::parse(
      argc, argv, 3, {"json"},
      {"codec", "hex", "fport", "examples", "time-budget", "memory-budget", "max-output-bytes"});
  if (!a.ok()) {
    std::cerr << "tianhe codec " << sub << ": " << a.error().message << "\n" << kUsage;
    return 2;
  }
  if (sub == "run") return cmd_run(*a);
  if (sub == "test") return cmd_test(*a);
  std::cerr << "tianhe codec: no subcommand " << sub << "; use run or test\n" << kUsage;
  return 2;
}

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  extensions.add_command({.name = "codec",
                          .summary = "run a JavaScript or WebAssembly codec on a payload, or "
                                     "test a JavaScript codec against its examples",
                          .run = [](int argc, char** argv, const runtime::CommandContext&) {
                            return cmd_codec(argc, argv);
                          }});
}

}  // namespace tianhe::tools::codec
