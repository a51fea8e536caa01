// What the gateway needs to know of a WebAssembly module before it hands the bytes to the
// engine: its function types, imports, memory limits and exports, read by a pure, bounded parser
// of the binary format (WebAssembly Core Specification 1.0, §5 "Binary Format"). The codec uses
// it to check the ABI (docs/codecs/wasm.md) with errors that say what is wrong, and to set the
// memory's maximum to the codec's memory budget. The engine validates everything else.
// Control plane: runs once per load (main thread, or a shard thread on hot reload).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/result.h"

namespace tianhe::codecs::wasm {

/// The page size of WebAssembly memory (§2.5.5).
inline constexpr uint32_t kWasmPageBytes = 65536;

/// A function type: parameter and result value types (0x7f i32, 0x7e i64, 0x7d f32, 0x7c f64,
/// 0x7b v128, 0x70 funcref, 0x6f externref).
struct WasmFuncType {
  std::vector<uint8_t> params;   ///< value type bytes
  std::vector<uint8_t> results;  ///< value type bytes
};

/// An import (§5.5.5): module and field names and the kind (0 func, 1 table, 2 memory,
/// 3 global, 4 tag).
struct WasmImport {
  std::string module;  ///< e.g. "env"
  std::string name;    ///< e.g. "print"
  uint8_t kind = 0;    ///< external kind
};

/// An export (§5.5.10): name, kind (as WasmImport::kind) and index in its index space.
struct WasmExport {
  std::string name;    ///< e.g. "decode"
  uint8_t kind = 0;    ///< external kind
  uint32_t index = 0;  ///< function, table, memory or global index
};

/// The parts of a module the ABI check reads.
struct WasmModuleInfo {
  std::vector<WasmFuncType> types;       ///< the type section
  std::vector<WasmImport> imports;       ///< the import section
  uint32_t imported_functions = 0;       ///< function imports (they come first in the index space)
  std::vector<uint32_t> function_types;  ///< type index of each defined function
  bool has_memory = false;               ///< the module defines a memory
  uint8_t memory_flags = 0;              ///< limits flags: bit 0 max, bit 1 shared, bit 2 i64
  uint32_t memory_min_pages = 0;         ///< initial size
  uint32_t memory_max_pages = 0;         ///< maximum (when memory_flags & 1)
  size_t memory_section_begin = 0;       ///< the memory section's id byte (when has_memory)
  size_t memory_section_end = 0;         ///< one past its last byte
  std::vector<WasmExport> exports;       ///< the export section

  /// The export named `name`, or nullptr.
  const WasmExport* find_export(std::string_view name) const noexcept;
  /// The type of function `index` (imports first), or nullptr.
  const WasmFuncType* function_type(uint32_t index) const noexcept;
};

/// Bounds of the parser: a module over them is refused (the codec budget's order of size).
struct WasmParseLimits {
  size_t max_module_bytes = 16u << 20;  ///< the file
  uint32_t max_entries = 100000;        ///< types, imports, functions or exports per section
  uint32_t max_name_bytes = 1024;       ///< an import or export name
  uint32_t max_value_types = 1000;      ///< parameters or results of one type
};

/// Reads the module's header and sections (bytes in, info out; no engine, no I/O). The error
/// says what is wrong and at which byte offset.
Result<WasmModuleInfo> parse_wasm_module(std::span<const uint8_t> bytes,
                                         const WasmParseLimits& limits = {});

/// The signature of a function type in words: "(i32, i32, i32) -> i32".
std::string describe(const WasmFuncType& type);

/// `bytes` with the memory section rewritten so the memory's maximum is at most `max_pages`
/// (the memory budget): memory.grow past it then fails inside the module (returns -1) instead of
/// taking memory. `info` is `bytes`' parse; has_memory must be true and the minimum within.
std::vector<uint8_t> with_memory_maximum(std::span<const uint8_t> bytes, const WasmModuleInfo& info,
                                         uint32_t max_pages);

}  // namespace tianhe::codecs::wasm
