#include "codecs/wasm/wasm_module_info.h"

#include <algorithm>
#include <string_view>

namespace tianhe::codecs::wasm {

namespace {

/// A bounded cursor over the module's bytes: every read checks what is left; the first failure
/// keeps its offset and reason.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, size_t begin, size_t end)
      : bytes_(bytes), pos_(begin), end_(end) {}
  bool ok() const { return error_.empty(); }
  size_t pos() const { return pos_; }
  size_t left() const { return end_ - pos_; }
  const std::string& error() const { return error_; }
  size_t error_offset() const { return error_offset_; }

  void fail(std::string why) {
    if (!ok()) return;
    error_ = std::move(why);
    error_offset_ = pos_;
    pos_ = end_;
  }
  uint8_t u8() {
    if (left() < 1) {
      fail("unexpected end");
      return 0;
    }
    return bytes_[pos_++];
  }
  // LEB128 unsigned 32-bit (§5.2.2): at most 5 bytes, the last one's unused bits zero.
  uint32_t u32() {
    uint32_t v = 0;
    for (unsigned shift = 0; shift < 35; shift += 7) {
      const uint8_t b = u8();
      if (!ok()) return 0;
      if (shift == 28 && (b & 0x70) != 0) {
        fail("an integer too large for 32 bits");
        return 0;
      }
      v |= static_cast<uint32_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("an integer longer than 5 bytes");
    return 0;
  }
  // A name (§5.2.4): a length, then UTF-8 bytes (the engine checks the encoding).
  std::string name(uint32_t max) {
    const uint32_t n = u32();
    if (!ok()) return {};
    if (n > max || n > left()) {
      fail("a name of " + std::to_string(n) + " bytes");
      return {};
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  // A vector's count, refused when over `max` or when more entries than bytes are left (every
  // entry takes at least one byte): no allocation is sized by an unchecked count.
  uint32_t count(uint32_t max, const char* what) {
    const uint32_t n = u32();
    if (ok() && (n > max || n > left())) fail(std::string("too many ") + what);
    return ok() ? n : 0;
  }
  void skip(size_t n) {
    if (n > left()) {
      fail("unexpected end");
      return;
    }
    pos_ += n;
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_, end_;
  std::string error_;
  size_t error_offset_ = 0;
};

bool is_value_type(uint8_t t) {
  return t == 0x7f || t == 0x7e || t == 0x7d || t == 0x7c || t == 0x7b || t == 0x70 || t == 0x6f;
}

const char* value_type_name(uint8_t t) {
  switch (t) {
    case 0x7f: return "i32";
    case 0x7e: return "i64";
    case 0x7d: return "f32";
    case 0x7c: return "f64";
    case 0x7b: return "v128";
    case 0x70: return "funcref";
    case 0x6f: return "externref";
    default: return "?";
  }
}

// Limits (§5.3.4): a flags byte, a minimum, a maximum when bit 0 is set.
void read_limits(Reader& r, uint8_t& flags, uint32_t& min, uint32_t& max) {
  flags = r.u8();
  if (r.ok() && flags > 7) r.fail("unknown limits flags");
  min = r.u32();
  if ((flags & 1) != 0) max = r.u32();
}

void read_types(Reader& r, const WasmParseLimits& limits, WasmModuleInfo& info) {
  const uint32_t n = r.count(limits.max_entries, "types");
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    if (r.u8() != 0x60) r.fail("a type that is not a function type");
    WasmFuncType t;
    for (auto* list : {&t.params, &t.results}) {
      const uint32_t k = r.count(limits.max_value_types, "value types");
      for (uint32_t j = 0; j < k && r.ok(); ++j) {
        const uint8_t v = r.u8();
        if (r.ok() && !is_value_type(v)) r.fail("an unknown value type");
        list->push_back(v);
      }
    }
    info.types.push_back(std::move(t));
  }
}

void read_imports(Reader& r, const WasmParseLimits& limits, WasmModuleInfo& info) {
  const uint32_t n = r.count(limits.max_entries, "imports");
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    WasmImport imp;
    imp.module = r.name(limits.max_name_bytes);
    imp.name = r.name(limits.max_name_bytes);
    imp.kind = r.u8();
    uint8_t flags = 0;
    uint32_t lo = 0, hi = 0;
    switch (imp.kind) {
      case 0:  // a function: its type index
        (void)r.u32();
        ++info.imported_functions;
        break;
      case 1:  // a table: reference type, limits
        (void)r.u8();
        read_limits(r, flags, lo, hi);
        break;
      case 2: read_limits(r, flags, lo, hi); break;
      case 3: r.skip(2); break;  // a global: value type, mutability
      case 4:                    // a tag (exception handling): attribute, type index
        (void)r.u8();
        (void)r.u32();
        break;
      default: r.fail("an import of unknown kind");
    }
    info.imports.push_back(std::move(imp));
  }
}

void read_functions(Reader& r, const WasmParseLimits& limits, WasmModuleInfo& info) {
  const uint32_t n = r.count(limits.max_entries, "functions");
  for (uint32_t i = 0; i < n && r.ok(); ++i) info.function_types.push_back(r.u32());
}

void read_memory(Reader& r, WasmModuleInfo& info) {
  const uint32_t n = r.u32();
  if (!r.ok() || n == 0) return;
  if (n > 1) {
    r.fail("more than one memory");
    return;
  }
  info.has_memory = true;
  read_limits(r, info.memory_flags, info.memory_min_pages, info.memory_max_pages);
}

void read_exports(Reader& r, const WasmParseLimits& limits, WasmModuleInfo& info) {
  const uint32_t n = r.count(limits.max_entries, "exports");
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    WasmExport e;
    e.name = r.name(limits.max_name_bytes);
    e.kind = r.u8();
    e.index = r.u32();
    info.exports.push_back(std::move(e));
  }
}

void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    if (v != 0) b |= 0x80;
    out.push_back(b);
  } while (v != 0);
}

}  // namespace

const WasmExport* WasmModuleInfo::find_export(std::string_view name) const noexcept {
  for (const WasmExport& e : exports) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

const WasmFuncType* WasmModuleInfo::function_type(uint32_t index) const noexcept {
  if (index < imported_functions) return nullptr;  // imports are refused before this is asked
  const uint32_t i = index - imported_functions;
  if (i >= function_types.size() || function_types[i] >= types.size()) return nullptr;
  return &types[function_types[i]];
}

Result<WasmModuleInfo> parse_wasm_module(std::span<const uint8_t> bytes,
                                         const WasmParseLimits& limits) {
  // §5.5.16: the magic "\0asm", then version 1 (little-endian u32).
  static constexpr uint8_t kHeader[] = {0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00};
  if (bytes.size() < 4 || !std::equal(kHeader, kHeader + 4, bytes.begin())) {
    return make_error(
        "not a WebAssembly module (no \\0asm header); build it with clang "
        "--target=wasm32 or wat2wasm");
  }
  if (bytes.size() < 8 || !std::equal(kHeader + 4, kHeader + 8, bytes.begin() + 4)) {
    return make_error("not a WebAssembly 1.0 binary (its version field is not 1)");
  }
  if (bytes.size() > limits.max_module_bytes) {
    return make_error("the module is " + std::to_string(bytes.size()) + " bytes, over the " +
                      std::to_string(limits.max_module_bytes) + " a codec may have");
  }
  WasmModuleInfo info;
  Reader r(bytes, 8, bytes.size());
  uint8_t last_id = 0;
  while (r.ok() && r.left() > 0) {
    const size_t section_begin = r.pos();
    const uint8_t id = r.u8();
    const uint32_t size = r.u32();
    if (!r.ok()) break;
    if (size > r.left()) {
      r.fail("a section that runs past the end of the file");
      break;
    }
    // §5.5.2: known sections appear at most once, in order (custom ones, id 0, anywhere; the
    // data count section, 12, sits between the element and code sections).
    const uint8_t order = id == 12 ? 10 : (id >= 10 && id <= 11 ? id + 1 : id);
    if (id != 0) {
      if (id > 12) {
        r.fail("an unknown section id " + std::to_string(id));
        break;
      }
      if (order <= last_id) {
        r.fail("section " + std::to_string(id) + " out of order or repeated");
        break;
      }
      last_id = order;
    }
    const size_t content = r.pos();
    Reader s(bytes, content, content + size);
    switch (id) {
      case 1: read_types(s, limits, info); break;
      case 2: read_imports(s, limits, info); break;
      case 3: read_functions(s, limits, info); break;
      case 5:
        read_memory(s, info);
        info.memory_section_begin = section_begin;
        info.memory_section_end = content + size;
        break;
      case 7: read_exports(s, limits, info); break;
      default: s.skip(size); break;
    }
    if (s.ok() && s.left() != 0 && id != 0) s.fail("bytes left over at the end of the section");
    if (!s.ok()) {
      return make_error("malformed module at byte " + std::to_string(s.error_offset()) +
                        " (section " + std::to_string(id) + "): " + s.error());
    }
    r.skip(size);
  }
  if (!r.ok()) {
    return make_error("malformed module at byte " + std::to_string(r.error_offset()) + ": " +
                      r.error());
  }
  return info;
}

std::string describe(const WasmFuncType& type) {
  std::string out = "(";
  for (size_t i = 0; i < type.params.size(); ++i) {
    if (i > 0) out += ", ";
    out += value_type_name(type.params[i]);
  }
  out += ") -> ";
  if (type.results.empty()) return out + "()";
  if (type.results.size() > 1) out += "(";
  for (size_t i = 0; i < type.results.size(); ++i) {
    if (i > 0) out += ", ";
    out += value_type_name(type.results[i]);
  }
  if (type.results.size() > 1) out += ")";
  return out;
}

std::vector<uint8_t> with_memory_maximum(std::span<const uint8_t> bytes, const WasmModuleInfo& info,
                                         uint32_t max_pages) {
  const uint32_t max =
      (info.memory_flags & 1) != 0 ? std::min(info.memory_max_pages, max_pages) : max_pages;
  // §5.5.8: one memory of limits 0x01 min max (bits 1 and 2, shared and i64, were refused).
  std::vector<uint8_t> content;
  content.push_back(1);
  content.push_back(0x01);
  put_u32(content, info.memory_min_pages);
  put_u32(content, max);
  std::vector<uint8_t> out(bytes.begin(), bytes.begin() + info.memory_section_begin);
  out.push_back(5);
  put_u32(out, static_cast<uint32_t>(content.size()));
  out.insert(out.end(), content.begin(), content.end());
  out.insert(out.end(), bytes.begin() + info.memory_section_end, bytes.end());
  return out;
}

}  // namespace tianhe::codecs::wasm
