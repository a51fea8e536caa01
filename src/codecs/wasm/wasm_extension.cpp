// Registration of the WebAssembly codec (src/extensions.cmake: th_extension(codecs/wasm)): a
// model names a `.wasm` file; each shard loads its own WasmCodec from it. Its per-codec samples
// (tianhe_codec_wasm_*) are summed over the shards at scrape time.
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "codecs/wasm/wasm_codec.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::wasm {

namespace {

using pipeline::DecodeStatus;

/// The counters of every WasmCodec the gateway made, by codec file (scrape thread reads).
struct Live {
  std::mutex mu;
  std::vector<std::pair<std::string, std::weak_ptr<const WasmCodecStats>>> codecs;
};

Live& live() {
  static Live* l = new Live();  // outlives every codec, whatever the exit order
  return *l;
}

WasmCodecLimits limits_of(const runtime::CodecLimits& l) {
  WasmCodecLimits out;
  out.time_budget = std::chrono::nanoseconds(l.time_budget_ns);
  out.memory_budget = l.memory_budget;
  out.max_output_bytes = l.max_output_bytes;
  return out;
}

/// The failure kinds a metric label names (pipeline::decode_status_name).
constexpr DecodeStatus kKinds[] = {DecodeStatus::kTimeout,        DecodeStatus::kOutOfMemory,
                                   DecodeStatus::kThrown,         DecodeStatus::kMalformed,
                                   DecodeStatus::kOutputTooLarge, DecodeStatus::kTooLarge,
                                   DecodeStatus::kTooManyMetrics};

void collect(core::PromWriter& w) {
  struct Sum {
    uint64_t calls = 0, cpu_ns = 0, reloads = 0, reload_failures = 0, memory = 0;
    std::array<uint64_t, std::size(kKinds)> errors{};
  };
  std::map<std::string, Sum> sums;
  {
    std::lock_guard lock(live().mu);
    auto& v = live().codecs;
    std::erase_if(v, [](const auto& e) { return e.second.expired(); });
    for (const auto& [name, weak] : v) {
      const std::shared_ptr<const WasmCodecStats> s = weak.lock();
      if (!s) continue;
      Sum& t = sums[name];
      t.calls += s->calls.get();
      t.cpu_ns += s->cpu_ns.get();
      t.reloads += s->reloads.get();
      t.reload_failures += s->reload_failures.get();
      t.memory += s->memory_bytes.load(std::memory_order_relaxed);
      for (size_t k = 0; k < std::size(kKinds); ++k) t.errors[k] += s->errors_of(kKinds[k]);
    }
  }
  for (const auto& [name, t] : sums) {
    const core::Labels l = {{"codec", name}};
    w.counter("tianhe_codec_wasm_calls_total", "Calls into a WebAssembly codec.", l,
              static_cast<double>(t.calls));
    for (size_t k = 0; k < std::size(kKinds); ++k) {
      core::Labels kl = l;
      kl.emplace_back("kind", std::string(pipeline::decode_status_name(kKinds[k])));
      w.counter("tianhe_codec_wasm_errors_total", "Failed WebAssembly codec calls, by kind.", kl,
                static_cast<double>(t.errors[k]));
    }
    w.counter("tianhe_codec_wasm_cpu_seconds_total",
              "Time the shards spent in a WebAssembly codec.", l,
              static_cast<double>(t.cpu_ns) / 1e9);
    w.counter("tianhe_codec_wasm_reloads_total", "Changed codec files compiled and swapped in.", l,
              static_cast<double>(t.reloads));
    w.counter("tianhe_codec_wasm_reload_failures_total",
              "Changed codec files refused (the previous version goes on).", l,
              static_cast<double>(t.reload_failures));
    w.gauge("tianhe_codec_wasm_memory_bytes",
            "Memory a WebAssembly codec's instances hold, over the shards (after their last call).",
            l, static_cast<double>(t.memory));
  }
}

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  extensions.add_codec({.name = "wasm",
                        .create = nullptr,
                        .file_extension = ".wasm",
                        .load = [](const std::string& path, const runtime::CodecLimits& limits)
                            -> Result<std::unique_ptr<pipeline::Codec>> {
                          auto c = WasmCodec::from_file(path, limits_of(limits));
                          if (!c.ok()) return c.error();
                          {
                            std::lock_guard lock(live().mu);
                            live().codecs.emplace_back(path, (*c)->shared_stats());
                          }
                          return std::unique_ptr<pipeline::Codec>(std::move(c.value()));
                        },
                        .collect = collect});
}

}  // namespace tianhe::codecs::wasm
