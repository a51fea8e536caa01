// Fuzz target: the JSON scanner must never read out of bounds or crash on any bytes; it must
// accept exactly the texts nlohmann-json accepts (below its depth limit, without a byte order
// mark); json_validate, a skip() of the whole value and a full token walk must agree; and every
// string it accepts must unescape into at most its raw size of valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/json_scan.h"

namespace {

namespace core = tianhe::core;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_string(const core::JsonToken& t) {
  static char buf[1 << 16];
  if (t.text.size() > sizeof buf) return;
  const size_t n = core::json_unescape(t.text, buf);
  check(n != SIZE_MAX && n <= t.text.size());
  // The unescaped bytes are well-formed UTF-8 (lead bytes and continuations; the scanner's
  // own checks of overlongs and surrogates are compared with nlohmann's below).
  size_t i = 0;
  while (i < n) {
    const auto b = static_cast<uint8_t>(buf[i]);
    size_t len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    check(b < 0x80 || (b >= 0xC2 && b <= 0xF4));
    check(i + len <= n);
    for (size_t k = 1; k < len; ++k) check((static_cast<uint8_t>(buf[i + k]) & 0xC0) == 0x80);
    i += len;
  }
  check(core::json_string_equals(t, std::string_view(buf, n)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  core::JsonScanner s(text, core::JsonScanner::kMaxDepth);
  core::JsonToken t;
  do {
    t = s.next();
    if (t.kind == core::JsonKind::kKey || t.kind == core::JsonKind::kString) check_string(t);
    if (t.kind == core::JsonKind::kNumber && t.number.fits_int64) {
      check(t.number.integral && static_cast<double>(t.number.i64) == t.number.f64);
    }
    check(t.offset <= size);
  } while (t.kind != core::JsonKind::kEnd && t.kind != core::JsonKind::kError);
  const bool ours = t.kind == core::JsonKind::kEnd;
  uint32_t offset = 0;
  const core::JsonError e = core::json_validate(text, core::JsonScanner::kMaxDepth, &offset);
  check(ours == (e == core::JsonError::kNone));
  check(ours || (e == s.error() && offset == s.error_offset() && offset <= size));

  // skip() of the top-level value reaches the same verdict.
  core::JsonScanner k(text, core::JsonScanner::kMaxDepth);
  const core::JsonToken first = k.next();
  const bool skipped = first.kind != core::JsonKind::kError && k.skip(first) &&
                       k.next().kind == core::JsonKind::kEnd;
  check(skipped == ours);

  // The independent parser agrees (it has no depth limit and skips a byte order mark).
  // It reads a NUL byte as the end of its input; JSON never allows one, and neither do we.
  if (text.find('\0') != std::string_view::npos) {
    check(!ours);
  } else if (s.error() != core::JsonError::kTooDeep && text.rfind("\xEF\xBB\xBF", 0) != 0) {
    check(nlohmann::json::accept(text.begin(), text.end()) == ours);
  }
  return 0;
}
