// Registration of the JavaScript codec (src/extensions.cmake: th_extension(codecs/js)): a model
// names a `.js` file; each shard loads its own JsCodec from it. Its per-codec samples
// (tianhe_codec_js_*) are summed over the shards at scrape time.
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "codecs/js/js_codec.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::js {

namespace {

/// The counters of every JsCodec the gateway made, by codec file (scrape thread reads).
struct Live {
  std::mutex mu;
  std::vector<std::pair<std::string, std::weak_ptr<const JsCodecStats>>> codecs;
};

Live& live() {
  static Live* l = new Live();  // outlives every codec, whatever the exit order
  return *l;
}

JsCodecLimits limits_of(const runtime::CodecLimits& l) {
  JsCodecLimits out;
  out.time_budget = std::chrono::nanoseconds(l.time_budget_ns);
  out.memory_budget = l.memory_budget;
  out.max_output_bytes = l.max_output_bytes;
  return out;
}

void collect(core::PromWriter& w) {
  struct Sum {
    uint64_t calls = 0, timeouts = 0, oom = 0, thrown = 0, errors = 0, large = 0, warnings = 0,
             cpu_ns = 0, reloads = 0, reload_failures = 0, heap = 0;
  };
  std::map<std::string, Sum> sums;
  {
    std::lock_guard lock(live().mu);
    auto& v = live().codecs;
    std::erase_if(v, [](const auto& e) { return e.second.expired(); });
    for (const auto& [name, weak] : v) {
      const std::shared_ptr<const JsCodecStats> s = weak.lock();
      if (!s) continue;
      Sum& t = sums[name];
      t.calls += s->calls.get();
      t.timeouts += s->timeouts.get();
      t.oom += s->out_of_memory.get();
      t.thrown += s->thrown.get();
      t.errors += s->codec_errors.get();
      t.large += s->output_too_large.get();
      t.warnings += s->warnings.get();
      t.cpu_ns += s->cpu_ns.get();
      t.reloads += s->reloads.get();
      t.reload_failures += s->reload_failures.get();
      t.heap += s->heap_bytes.load(std::memory_order_relaxed);
    }
  }
  for (const auto& [name, t] : sums) {
    const core::Labels l = {{"codec", name}};
    w.counter("tianhe_codec_js_calls_total", "Calls into a JavaScript codec.", l,
              static_cast<double>(t.calls));
    for (auto [kind, n] : {std::pair{"timeout", t.timeouts}, std::pair{"out_of_memory", t.oom},
                           std::pair{"thrown", t.thrown}, std::pair{"codec_errors", t.errors},
                           std::pair{"output_too_large", t.large}}) {
      core::Labels k = l;
      k.emplace_back("kind", kind);
      w.counter("tianhe_codec_js_errors_total", "Failed JavaScript codec calls, by kind.", k,
                static_cast<double>(n));
    }
    w.counter("tianhe_codec_js_warnings_total", "Warnings decodeUplink returned.", l,
              static_cast<double>(t.warnings));
    w.counter("tianhe_codec_js_cpu_seconds_total", "Time the shards spent in a JavaScript codec.",
              l, static_cast<double>(t.cpu_ns) / 1e9);
    w.counter("tianhe_codec_js_reloads_total", "Changed codec files compiled and swapped in.", l,
              static_cast<double>(t.reloads));
    w.counter("tianhe_codec_js_reload_failures_total",
              "Changed codec files that failed to compile (the previous version goes on).", l,
              static_cast<double>(t.reload_failures));
    w.gauge("tianhe_codec_js_heap_bytes",
            "GC heap a JavaScript codec's realms hold, over the shards (after their last call).", l,
            static_cast<double>(t.heap));
  }
}

}  // namespace

void register_extension(runtime::Extensions& extensions) {
  extensions.add_codec({.name = "js",
                        .create = nullptr,
                        .file_extension = ".js",
                        .load = [](const std::string& path, const runtime::CodecLimits& limits)
                            -> Result<std::unique_ptr<pipeline::Codec>> {
                          auto c = JsCodec::from_file(path, limits_of(limits));
                          if (!c.ok()) return c.error();
                          {
                            std::lock_guard lock(live().mu);
                            live().codecs.emplace_back(path, (*c)->shared_stats());
                          }
                          return std::unique_ptr<pipeline::Codec>(std::move(c.value()));
                        },
                        .collect = collect});
}

}  // namespace tianhe::codecs::js
