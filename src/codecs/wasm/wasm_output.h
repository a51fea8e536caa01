// The reader of a WebAssembly codec's result (ABI version 1, docs/codecs/wasm.md): decode()
// returns a pointer into the module's memory, where the module wrote
//   u32 count, then count metrics of {u8 type, u8 name_len, name, value}
//   (type 1 f64: 8 bytes; 2 i64: 8 bytes; 3 bool: 1 byte; 4 string: u16 len, bytes),
// or the error form {u32 0xffffffff, u32 code, u16 len, message}. All little-endian, unaligned.
// The module is untrusted: every offset and length is checked against the memory's size and the
// codec's limits before it is read. Pure (memory bytes in, metrics out) and bounded; hot path.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/report.h"
#include "pipeline/codec.h"

namespace tianhe::codecs::wasm {

/// Value types of the output layout.
enum class WasmValueType : uint8_t { kF64 = 1, kI64 = 2, kBool = 3, kString = 4 };

/// The count that marks the error form.
inline constexpr uint32_t kWasmErrorForm = 0xffffffffu;
/// Error code of the error form: the payload is malformed (any code but 2 reads as this).
inline constexpr uint32_t kWasmErrorMalformed = 1;
/// Error code of the error form: the module found no memory for the result (kOutOfMemory).
inline constexpr uint32_t kWasmErrorNoMemory = 2;

/// The limits one result is held to.
struct WasmOutputLimits {
  uint32_t max_metrics = 64;          ///< metrics of one result (a model's limit)
  uint32_t max_name_bytes = 64;       ///< a name (1..max)
  uint32_t max_string_bytes = 1024;   ///< a string value
  uint64_t max_output_bytes = 65536;  ///< the whole result, header included
  uint32_t max_message_bytes = 512;   ///< the error form's message (longer ones are cut)
};

/// What read_wasm_output() found.
struct WasmOutput {
  pipeline::DecodeStatus status = pipeline::DecodeStatus::kOk;  ///< kOk, or why it was refused
  uint32_t error_code = 0;  ///< the module's code, for the error form (0 otherwise)
  /// Why it failed: the error form's message (a view into the memory: copy it before the
  /// memory can change) or what the gateway found wrong (static text).
  std::string_view message;
  uint64_t bytes = 0;  ///< the result's size, when it was read whole
};

/// Reads the result at `ptr` in `memory`: appends its metrics to `r` in `batch`, their names and
/// strings copied into `text` (within its reserved capacity, so earlier views stay valid); all
/// or nothing. kMalformed: a pointer, length or type that does not hold, or the error form;
/// kTooManyMetrics, kTooLarge (a name or string over its limit, or no room left in `text`),
/// kOutputTooLarge (over max_output_bytes), kOutOfMemory (error code 2).
WasmOutput read_wasm_output(std::span<const uint8_t> memory, uint32_t ptr,
                            const WasmOutputLimits& limits, std::string& text,
                            core::ReportBatch& batch, core::Report& r) noexcept;

}  // namespace tianhe::codecs::wasm
