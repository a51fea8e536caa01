// What one shard pays in memory for many loaded JavaScript codecs (issue 20: "memory per shard
// for 100 loaded codecs"): N distinct vendor-style decoders (variations of one TS013 decoder:
// their own names, scales, helpers and lookup tables) are written into a temporary directory,
// loaded as the codec stage loads them (JsCodec::from_file, then bound on the decoding thread
// by the first decode) and each decodes once, all on one thread, as one shard would. Prints, as a
// table and as JSON, the process's RSS growth, the GC heap of the codecs' zones and the
// engine's whole GC heap after 1, 10, 25, 50 and N codecs, in all and per codec.
// `js_codec_memory_bench [--codecs N] [--json]`.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "codecs/js/js_codec.h"

// SpiderMonkey's own figure of its GC heap (JSGC_BYTES). clang-tidy 14 cannot read SpiderMonkey's
// headers (scripts/tidy.sh: it answers __has_builtin(__builtin_ctz) with false), so under it this
// part is left out and the rest of the file is still checked; GCC and clang build it.
#if __has_builtin(__builtin_ctz)
#include <jsapi.h>
#define TH_JS_GC_TOTAL 1
#endif

namespace tianhe::codecs::js {
namespace {

/// Resident set size now (/proc/self/statm), bytes.
uint64_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long pages = 0, resident = 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<uint64_t>(resident) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

/// Codec number `i`: a TS013 decodeUplink of 10 payload bytes with a helper and a lookup
/// table, its names, scales and table its own so no two files compile to the same script.
std::string vendor_decoder(uint32_t i) {
  const std::string n = std::to_string(i);
  return "// Vendor " + n +
         " sensor: temperature, humidity, pressure, battery, state (ES5).\n"
         "var STATES_" +
         n + " = ['idle_" + n + "', 'run_" + n + "', 'alarm_" + n + "', 'fault_" + n +
         "'];\n"
         "function s16_" +
         n +
         "(b, i) { return (b[i] << 24 >> 16) | b[i + 1]; }\n"
         "function decodeUplink(input) {\n"
         "  var b = input.bytes;\n"
         "  if (b.length < 10) return { errors: ['need 10 bytes'] };\n"
         "  var data = { v" +
         n + ": { temperature: s16_" + n + "(b, 0) / " + std::to_string(10 + i % 7) +
         ",\n"
         "    humidity: b[2] / 2, pressure: ((b[3] << 8) | b[4]) / 10 + " +
         std::to_string(i) +
         ",\n"
         "    battery_mv: ((b[5] << 8) | b[6]) * " +
         std::to_string(1 + i % 3) + ", state: STATES_" + n +
         "[b[7] & 3],\n"
         "    counter: (b[8] << 8) | b[9] } };\n"
         "  return { data: data, warnings: [], errors: [] };\n"
         "}\n";
}

/// The engine's whole GC heap now (every zone, the atoms too), bytes; 0 when not built in.
uint64_t engine_gc_bytes(const JsEngine& engine) {
#ifdef TH_JS_GC_TOTAL
  return JS_GetGCParameter(engine.cx(), JSGC_BYTES);
#else
  (void)engine;
  return 0;
#endif
}

/// One checkpoint of the table: after `codecs` codecs loaded and decoded once.
struct Point {
  uint32_t codecs = 0;
  uint64_t rss_growth = 0;  ///< over the RSS with the engine made and no codec loaded
  uint64_t gc_heap = 0;     ///< the GC heap of every loaded codec's zone, after its decode
  uint64_t engine_gc = 0;   ///< the engine's whole GC heap growth (JSGC_BYTES)
};

/// What the run measured.
struct MemoryRun {
  uint64_t rss_start = 0;     ///< before the engine
  uint64_t engine_rss = 0;    ///< what making the thread's engine added
  uint64_t engine_gc = 0;     ///< the engine's GC heap with no codec loaded
  std::vector<Point> points;  ///< checkpoints
  Point after_gc;             ///< every codec loaded, after a full collection
  std::string error;          ///< "" when measured
};

/// Writes the `count` codec files into `dir`; their paths.
std::vector<std::string> write_codecs(const std::string& dir, uint32_t count) {
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < count; ++i) {
    paths.push_back(dir + "/vendor_" + std::to_string(i) + ".js");
    std::ofstream(paths.back()) << vendor_decoder(i);
  }
  return paths;
}

/// Loads and decodes with each codec in turn on this thread, measuring at the checkpoints.
MemoryRun load_all(const std::vector<std::string>& paths) {
  MemoryRun run;
  run.rss_start = rss_bytes();
  std::shared_ptr<JsEngine> engine = JsEngine::current();
  if (engine == nullptr) {
    run.error = "SpiderMonkey could not make an engine";
    return run;
  }
  const uint64_t base = rss_bytes();
  run.engine_rss = base - run.rss_start;
  run.engine_gc = engine_gc_bytes(*engine);
  const std::vector<uint8_t> payload = {0x00, 0xeb, 0x5a, 0x27, 0x7f, 0x0c, 0xe4, 0x01, 0x00, 0x2a};
  std::vector<std::unique_ptr<JsCodec>> loaded;
  core::ReportBatch batch(4, 64);
  auto heap_of_all = [&] {
    uint64_t h = 0;
    for (const auto& c : loaded) h += c->stats().heap_bytes.load();
    return h;
  };
  const auto count = static_cast<uint32_t>(paths.size());
  for (const std::string& path : paths) {
    // A generous time budget: the figure is memory, and on a loaded machine a call whose thread
    // is descheduled past the default 10 ms (wall-clock) would be stopped.
    auto codec = JsCodec::from_file(path, {.time_budget = std::chrono::seconds(10)});
    if (!codec.ok()) {
      run.error = codec.error().message;
      return run;
    }
    batch.clear();
    core::Report* r = batch.add_report();
    if ((*codec)->decode(payload, {.fport = 1}, batch, *r) != pipeline::DecodeStatus::kOk) {
      run.error = path + ": decode failed: " + std::string((*codec)->last_error());
      return run;
    }
    (*codec)->batch_done();
    loaded.push_back(std::move(*codec));
    const auto n = static_cast<uint32_t>(loaded.size());
    if (n == 1 || n == 10 || n == 25 || n == 50 || n == count) {
      run.points.push_back(
          {n, rss_bytes() - base, heap_of_all(), engine_gc_bytes(*engine) - run.engine_gc});
    }
  }
  // What stays once the garbage of the loads and calls is collected: what the codecs hold.
  engine->collect_garbage();
  uint64_t zones = 0;
  for (const auto& c : loaded) {
    batch.clear();
    core::Report* r = batch.add_report();
    (void)c->decode(payload, {.fport = 1}, batch, *r);  // refreshes the zone's figure
    c->batch_done();
    zones += c->stats().heap_bytes.load();
  }
  run.after_gc = {count, rss_bytes() - base, zones, engine_gc_bytes(*engine) - run.engine_gc};
  return run;
}

double kib(uint64_t b) {
  return static_cast<double>(b) / 1024.0;
}

void print(const MemoryRun& run, bool json_only) {
  nlohmann::json j;
  j["engine_rss_bytes"] = run.engine_rss;
  for (const Point& p : run.points) {
    j["points"].push_back({{"codecs", p.codecs},
                           {"rss_growth_bytes", p.rss_growth},
                           {"gc_heap_bytes", p.gc_heap},
                           {"engine_gc_heap_growth_bytes", p.engine_gc},
                           {"rss_per_codec_bytes", p.rss_growth / p.codecs},
                           {"gc_heap_per_codec_bytes", p.gc_heap / p.codecs}});
  }
  j["after_gc"] = {{"codecs", run.after_gc.codecs},
                   {"rss_growth_bytes", run.after_gc.rss_growth},
                   {"gc_heap_bytes", run.after_gc.gc_heap},
                   {"engine_gc_heap_growth_bytes", run.after_gc.engine_gc}};
  j["engine_gc_heap_bytes"] = run.engine_gc;
  if (json_only) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("one thread's engine before any codec: %.0f KiB RSS, GC heap %.0f KiB\n\n",
              kib(run.engine_rss), kib(run.engine_gc));
  std::printf("%-24s %21s %21s %21s\n", "codecs loaded+decoded", "RSS growth KiB",
              "codec zones GC KiB", "engine GC growth KiB");
  std::printf("%-24s %10s %10s %10s %10s %10s %10s\n", "", "all", "per codec", "all", "per codec",
              "all", "per codec");
  auto row = [](const std::string& what, const Point& p) {
    const double n = p.codecs;
    std::printf("%-24s %10.0f %10.1f %10.0f %10.1f %10.0f %10.1f\n", what.c_str(),
                kib(p.rss_growth), kib(p.rss_growth) / n, kib(p.gc_heap), kib(p.gc_heap) / n,
                kib(p.engine_gc), kib(p.engine_gc) / n);
  };
  for (const Point& p : run.points) row(std::to_string(p.codecs), p);
  row(std::to_string(run.after_gc.codecs) + ", after a full GC", run.after_gc);
  std::printf("\n%s\n", j.dump().c_str());
}

/// The program (main() fails fast on an exception from the library, e.g. std::filesystem).
int run_main(int argc, char** argv) {
  uint32_t count = 100;
  bool json_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      json_only = true;
    } else if (std::strcmp(argv[i], "--codecs") == 0 && i + 1 < argc) {
      char* end = nullptr;
      const unsigned long v = std::strtoul(argv[++i], &end, 10);
      if (*end != '\0' || v < 1 || v > 10000) {
        std::fprintf(stderr, "js_codec_memory_bench: --codecs takes 1..10000\n");
        return 2;
      }
      count = static_cast<uint32_t>(v);
    } else {
      std::fprintf(stderr, "usage: js_codec_memory_bench [--codecs N] [--json]\n");
      return 2;
    }
  }
  char tmpl[] = "/tmp/th_js_memory_XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::fprintf(stderr, "js_codec_memory_bench: cannot make a temporary directory\n");
    return 1;
  }
  const std::string dir = tmpl;
  const MemoryRun run = load_all(write_codecs(dir, count));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!run.error.empty()) {
    std::fprintf(stderr, "js_codec_memory_bench: %s\n", run.error.c_str());
    return 1;
  }
  print(run, json_only);
  return 0;
}

}  // namespace
}  // namespace tianhe::codecs::js

int main(int argc, char** argv) {
  try {
    return tianhe::codecs::js::run_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "js_codec_memory_bench: %s\n", e.what());
    return 1;
  }
}
