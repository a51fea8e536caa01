// The WebAssembly payload codec ("wasm"): a device model names a `.wasm` file
// (`codec = "codecs/acme.wasm"`) that follows Tianhe's codec ABI, version 1 (docs/codecs/wasm.md):
// it exports `memory`, `alloc(len) -> ptr`, `decode(ptr, len, fport) -> ptr` and
// `tianhe_abi_version() -> 1`, imports nothing, and writes its metrics in a compact binary layout
// (wasm_output.h) that the gateway reads straight out of the module's memory. It runs in the
// SpiderMonkey engine of the JavaScript codecs (codecs/js/js_engine.h), within the same budgets:
// a time budget (the engine's watchdog interrupts the call), a memory budget (the memory's
// maximum is set to it, so memory.grow past it fails inside the module) and an output cap. A call
// that breaks one, or traps, fails with its own status (the codec stage dead-letters the payload)
// and the instance is started afresh for the next call.
// The module is compiled once (from_file, on the main thread); each shard's WasmCodec
// instantiates it on its first decode() in the engine of the thread that calls it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "codecs/js/js_engine.h"
#include "codecs/wasm/wasm_output.h"
#include "core/counter.h"
#include "core/result.h"
#include "pipeline/codec.h"

namespace tianhe::codecs::wasm {

/// The ABI version this gateway speaks (docs/codecs/wasm.md).
inline constexpr int32_t kWasmAbiVersion = 1;

/// The budgets and limits of one codec (the [codecs] table gives the first three).
struct WasmCodecLimits {
  std::chrono::nanoseconds time_budget = std::chrono::milliseconds(10);  ///< per call
  uint64_t memory_budget = 16u << 20;     ///< the module's memory, whole 64 KiB pages
  uint64_t max_output_bytes = 64u << 10;  ///< one result, in the module's memory
  uint32_t max_metrics = 64;              ///< metrics of one result (a model's limit)
  uint32_t max_name_bytes = 64;           ///< a metric name
  uint32_t max_string_bytes = 1024;       ///< a string value
  uint32_t max_payload_bytes = 65536;     ///< a payload: the input buffer alloc() gives
  size_t text_bytes = 256u << 10;         ///< name and string storage per batch
  /// How often decode() looks whether the file changed (0: never; hot reload).
  std::chrono::nanoseconds reload_check = std::chrono::seconds(1);
};

/// Counters of one codec on one shard (written by its thread, read at scrape).
struct WasmCodecStats {
  core::Counter calls;            ///< calls into decode()
  core::Counter cpu_ns;           ///< time spent in the module (the shard thread's)
  core::Counter reloads;          ///< changed files compiled and swapped in
  core::Counter reload_failures;  ///< changed files refused (the old one kept)
  core::Counter instantiations;   ///< instances made (the first, then one after each failure)
  /// Failed calls by status (index: pipeline::DecodeStatus; kOk unused).
  std::array<core::Counter, static_cast<size_t>(pipeline::DecodeStatus::kCount)> errors;
  std::atomic<uint64_t> memory_bytes{0};  ///< the instance's memory after the last call
  /// The failures of status `s`.
  uint64_t errors_of(pipeline::DecodeStatus s) const noexcept {
    return errors[static_cast<size_t>(s)].get();
  }
};

/// A compiled module, shareable between threads (wasm_codec.cpp).
struct WasmCompiled;

/// A WebAssembly codec (see the file comment). decode() runs on one thread only.
class WasmCodec final : public pipeline::Codec {
 public:
  /// Reads `path`, checks the ABI and compiles it on the calling thread; errors name the file
  /// and why (not a wasm file, an import, a missing export, a wrong signature, the version).
  static Result<std::unique_ptr<WasmCodec>> from_file(const std::string& path,
                                                      WasmCodecLimits limits = {});
  /// The same from the module's bytes (tests, benchmarks); `name` stands for the file.
  static Result<std::unique_ptr<WasmCodec>> from_bytes(std::string name,
                                                       std::span<const uint8_t> bytes,
                                                       WasmCodecLimits limits = {});
  ~WasmCodec() override;
  WasmCodec(const WasmCodec&) = delete;
  WasmCodec& operator=(const WasmCodec&) = delete;

  /// Copies the payload into the module's input buffer, calls decode and appends the metrics
  /// it wrote (all or nothing).
  pipeline::DecodeStatus decode(std::span<const uint8_t> payload,
                                const pipeline::CodecContext& context, core::ReportBatch& batch,
                                core::Report& r) noexcept override;
  /// Reuses the text storage of the metrics decode() wrote.
  void batch_done() noexcept override;

  /// Its counters.
  const WasmCodecStats& stats() const noexcept { return *stats_; }
  /// The same, kept alive for the scrape thread after the codec goes.
  std::shared_ptr<const WasmCodecStats> shared_stats() const noexcept { return stats_; }
  /// Why the last call failed (a trap's message, a budget, the module's error), or the last
  /// reload's error; "" if none.
  std::string_view last_error() const noexcept { return last_error_; }
  /// The name it was made with (the file's path).
  const std::string& name() const noexcept { return name_; }

 private:
  /// Sets the limits and reserves the text and error storage (from_bytes compiles).
  WasmCodec(std::string name, WasmCodecLimits limits);
  /// Instantiates compiled_ in a new realm of the calling thread's engine; "" or the error.
  std::string bind();
  /// A fresh instance in the bound realm (after a trap or a timeout); "" or the error.
  std::string instantiate();
  /// The instance memory's current ArrayBuffer (memory.grow detaches the previous one).
  JSObject* memory_buffer() noexcept;
  /// Hot reload: once per reload_check, swaps in a changed file that passes the checks.
  void check_reload() noexcept;
  /// Counts a failed call of status `s` and keeps `why`; returns `s`.
  pipeline::DecodeStatus fail(pipeline::DecodeStatus s, std::string_view why) noexcept;
  /// Keeps `text` (cut at 512 bytes) as last_error(), without allocating.
  void set_error(std::string_view text) noexcept;

  std::string name_;                ///< the file's path (or the name from_bytes was given)
  std::string path_;                ///< the file, for hot reload ("" for from_bytes)
  WasmCodecLimits limits_;          ///< its budgets and limits
  WasmOutputLimits output_limits_;  ///< limits_ as the output reader takes them
  std::shared_ptr<const WasmCompiled> compiled_;  ///< the module, compiled once
  std::shared_ptr<js::JsEngine> engine_;          ///< the engine of the thread that decodes
  std::shared_ptr<js::RealmHandle> realm_;        ///< the realm holding the instance
  uint32_t input_ptr_ = 0;    ///< alloc(max_payload_bytes) of the current instance
  bool instance_ok_ = false;  ///< false after a failed restart: the next decode() retries
  std::string text_;          ///< names and strings of the current batch
  std::string last_error_;    ///< capacity reserved: set without allocating
  std::shared_ptr<WasmCodecStats> stats_ = std::make_shared<WasmCodecStats>();  ///< its counters
  int64_t next_reload_check_ns_ = 0;  ///< core::mono_ns() of the next look at the file
  int64_t last_call_end_ns_ = 0;      ///< core::mono_ns() when the last call returned
  int64_t file_mtime_ns_ = 0;         ///< the file's stamp when last loaded
  uint64_t file_size_ = 0;            ///< and its size
};

}  // namespace tianhe::codecs::wasm
