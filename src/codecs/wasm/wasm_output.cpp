#include "codecs/wasm/wasm_output.h"

#include <cstring>

namespace tianhe::codecs::wasm {

namespace {

using pipeline::DecodeStatus;

uint32_t load_u32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

uint16_t load_u16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}

uint64_t load_u64(const uint8_t* p) noexcept {
  return static_cast<uint64_t>(load_u32(p)) | static_cast<uint64_t>(load_u32(p + 4)) << 32;
}

// Out of line, so the length is unknown here and the C library's memcpy does the copy: inlined,
// with a length the compiler knows is under 256, it becomes `rep movs`, slow to start (it was a
// fifth of a decode).
[[gnu::noinline]] void append_bytes(std::string& text, const uint8_t* bytes, size_t n) noexcept {
  text.append(reinterpret_cast<const char*>(bytes), n);
}

}  // namespace

WasmOutput read_wasm_output(std::span<const uint8_t> memory, uint32_t ptr,
                            const WasmOutputLimits& limits, std::string& text,
                            core::ReportBatch& batch, core::Report& r) noexcept {
  WasmOutput out;
  const size_t text_used = text.size();
  // Offsets are 64-bit here: ptr + a length never wraps around.
  const uint64_t size = memory.size();
  uint64_t at = ptr;
  auto fail = [&](DecodeStatus s, std::string_view why) {
    batch.truncate_metrics(r);  // all or nothing (pipeline/codec.h)
    text.resize(text_used);
    out.status = s;
    out.message = why;
    return out;
  };
  // Whether `n` more bytes can be read at `at`: inside the memory, and inside the output cap.
  DecodeStatus why = DecodeStatus::kOk;
  auto have = [&](uint64_t n) {
    if (at + n > size) {
      why = DecodeStatus::kMalformed;
      return false;
    }
    if (at + n - ptr > limits.max_output_bytes) {
      why = DecodeStatus::kOutputTooLarge;
      return false;
    }
    return true;
  };
  if (ptr == 0) return fail(DecodeStatus::kMalformed, "decode returned 0 (no result)");
  if (!have(4)) return fail(why, "the result pointer is past the end of the module's memory");
  const uint32_t count = load_u32(memory.data() + at);
  at += 4;
  if (count == kWasmErrorForm) {
    // The error form: the module's own reason, dead-lettered with it.
    if (!have(6)) return fail(why, "an error result that runs past the end of memory");
    out.error_code = load_u32(memory.data() + at);
    const uint16_t len = load_u16(memory.data() + at + 4);
    at += 6;
    if (!have(len)) return fail(why, "an error message that runs past the end of memory");
    const DecodeStatus s = out.error_code == kWasmErrorNoMemory ? DecodeStatus::kOutOfMemory
                                                                : DecodeStatus::kMalformed;
    out.status = s;
    out.message = {reinterpret_cast<const char*>(memory.data() + at),
                   len < limits.max_message_bytes ? len : limits.max_message_bytes};
    if (out.message.empty()) out.message = "the module reported an error without a reason";
    out.bytes = at + len - ptr;
    return out;
  }
  if (count > limits.max_metrics) return fail(DecodeStatus::kTooManyMetrics, "too many metrics");
  for (uint32_t i = 0; i < count; ++i) {
    if (!have(2)) return fail(why, "a metric that runs past the end of memory");
    const uint8_t type = memory[at];
    const uint8_t name_len = memory[at + 1];
    at += 2;
    if (name_len == 0) return fail(DecodeStatus::kMalformed, "an empty metric name");
    if (name_len > limits.max_name_bytes) {
      return fail(DecodeStatus::kTooLarge, "a metric name over its limit");
    }
    if (!have(name_len)) return fail(why, "a metric name that runs past the end of memory");
    const uint8_t* name = memory.data() + at;
    at += name_len;
    // The value's bits, kept in scalars and written into the metric's fields one by one (a
    // whole core::Value copied after a one-byte store of its type stalls store forwarding).
    core::ValueType vtype = core::ValueType::kDouble;
    uint64_t bits = 0;
    const uint8_t* str = nullptr;
    uint16_t str_len = 0;
    switch (static_cast<WasmValueType>(type)) {
      case WasmValueType::kF64:
      case WasmValueType::kI64:
        if (!have(8)) return fail(why, "a value that runs past the end of memory");
        vtype = type == 1 ? core::ValueType::kDouble : core::ValueType::kInt64;
        bits = load_u64(memory.data() + at);
        at += 8;
        break;
      case WasmValueType::kBool:
        if (!have(1)) return fail(why, "a value that runs past the end of memory");
        vtype = core::ValueType::kBool;
        bits = memory[at] != 0 ? 1 : 0;
        at += 1;
        break;
      case WasmValueType::kString:
        if (!have(2)) return fail(why, "a value that runs past the end of memory");
        str_len = load_u16(memory.data() + at);
        at += 2;
        if (str_len > limits.max_string_bytes) {
          return fail(DecodeStatus::kTooLarge, "a string value over its limit");
        }
        if (!have(str_len)) return fail(why, "a string that runs past the end of memory");
        vtype = core::ValueType::kString;
        str = memory.data() + at;
        at += str_len;
        break;
      default: return fail(DecodeStatus::kMalformed, "an unknown value type");
    }
    // Names and strings are copied out: the memory may grow (and move) before the batch is
    // appended. Within the reserved capacity only, so views taken before stay valid.
    if (text.size() + name_len + str_len > text.capacity()) {
      return fail(DecodeStatus::kTooLarge, "the batch's name and string storage is full");
    }
    core::Metric* m = batch.add_metric(r);
    if (m == nullptr) return fail(DecodeStatus::kTooManyMetrics, "the batch is full");
    const size_t n0 = text.size();
    append_bytes(text, name, name_len);
    m->name = std::string_view(text.data() + n0, name_len);
    m->value.type = vtype;
    switch (vtype) {
      case core::ValueType::kDouble: std::memcpy(&m->value.f64, &bits, 8); break;
      case core::ValueType::kInt64: m->value.i64 = static_cast<int64_t>(bits); break;
      case core::ValueType::kBool: m->value.b = bits != 0; break;
      case core::ValueType::kString: {
        const size_t s0 = text.size();
        append_bytes(text, str, str_len);
        m->value.str = std::string_view(text.data() + s0, str_len);
        break;
      }
    }
  }
  out.bytes = at - ptr;
  return out;
}

}  // namespace tianhe::codecs::wasm
