// Fuzz target: the two parsers of bytes a WebAssembly codec hands the gateway. The first input
// byte picks one. 0: the module parser (wasm_module_info.h) must never crash or read out of
// bounds; what it accepts, with its memory maximum rewritten, parses again to the same exports
// and the new maximum. Otherwise: the output reader (wasm_output.h) over the rest as the
// module's memory, the pointer taken from the next 4 bytes; a read is all or nothing and what it
// accepts lies inside the memory and the limits.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "codecs/wasm/wasm_module_info.h"
#include "codecs/wasm/wasm_output.h"

namespace {

namespace core = tianhe::core;
using namespace tianhe::codecs::wasm;  // NOLINT(google-build-using-namespace)
using tianhe::pipeline::DecodeStatus;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void fuzz_module(const uint8_t* data, size_t size) {
  auto info = parse_wasm_module({data, size});
  if (!info.ok()) {
    check(!info.error().message.empty());
    return;
  }
  if (!info->has_memory || (info->memory_flags & 6) != 0) return;
  const auto capped = with_memory_maximum({data, size}, *info, 256);
  auto again = parse_wasm_module(capped);
  check(again.ok());
  check(again->has_memory && (again->memory_flags & 1) == 1);
  check(again->memory_max_pages <= 256);
  check(again->memory_min_pages == info->memory_min_pages);
  check(again->exports.size() == info->exports.size());
  for (size_t i = 0; i < info->exports.size(); ++i) {  // (names may repeat: the engine refuses)
    const WasmExport& e = info->exports[i];
    const WasmExport& f = again->exports[i];
    check(f.name == e.name && f.kind == e.kind && f.index == e.index);
  }
}

void fuzz_output(const uint8_t* data, size_t size) {
  if (size < 4) return;
  uint32_t ptr = 0;
  std::memcpy(&ptr, data, 4);
  const std::span<const uint8_t> memory(data + 4, size - 4);
  static core::ReportBatch batch(2, 128);
  static std::string text = [] {
    std::string t;
    t.reserve(8192);
    return t;
  }();
  batch.clear();
  text.clear();
  core::Report* r = batch.add_report();
  const WasmOutputLimits limits{.max_output_bytes = 4096};
  const WasmOutput out =
      read_wasm_output(memory, ptr % (memory.size() + 8), limits, text, batch, *r);
  if (out.status != DecodeStatus::kOk) {
    check(r->metric_count == 0 && batch.metrics_free() == 128 && text.empty());
    check(!out.message.empty());
    return;
  }
  check(out.bytes >= 4 && out.bytes <= limits.max_output_bytes);
  check(r->metric_count <= limits.max_metrics);
  for (const core::Metric& m : batch.metrics(*r)) {
    check(!m.name.empty() && m.name.size() <= limits.max_name_bytes);
    check(m.name.data() >= text.data() &&
          m.name.data() + m.name.size() <= text.data() + text.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] == 0) {
    fuzz_module(data + 1, size - 1);
  } else {
    fuzz_output(data + 1, size - 1);
  }
  return 0;
}
