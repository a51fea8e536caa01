#include "core/json_scan.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <system_error>

namespace tianhe::core {

namespace {

uint32_t offset32(size_t at) noexcept {
  return static_cast<uint32_t>(std::min<size_t>(at, std::numeric_limits<uint32_t>::max()));
}

bool is_digit(char c) noexcept {
  return c >= '0' && c <= '9';
}

// The value of a hex digit, or -1.
int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Four hex digits at text[at..at+4) (RFC 8259 §7: \uXXXX, either case), or -1.
int32_t hex4(std::string_view text, size_t at) noexcept {
  if (at > text.size() || text.size() - at < 4) return -1;
  int32_t v = 0;
  for (size_t i = 0; i < 4; ++i) {
    const int h = hex_value(text[at + i]);
    if (h < 0) return -1;
    v = (v << 4) | h;
  }
  return v;
}

bool is_high_surrogate(int32_t u) noexcept {
  return u >= 0xD800 && u <= 0xDBFF;
}
bool is_low_surrogate(int32_t u) noexcept {
  return u >= 0xDC00 && u <= 0xDFFF;
}

bool is_continuation(uint8_t b) noexcept {
  return (b & 0xC0) == 0x80;
}

// The length of the UTF-8 sequence starting with lead byte `b0` whose second byte is `b1`, or 0
// when the pair cannot start a well-formed sequence: RFC 3629 §4 (no overlong forms, no
// surrogates U+D800..U+DFFF, nothing above U+10FFFF).
size_t utf8_sequence_length(uint8_t b0, uint8_t b1) noexcept {
  if (b0 >= 0xC2 && b0 <= 0xDF) return is_continuation(b1) ? 2 : 0;
  if (b0 == 0xE0) return b1 >= 0xA0 && b1 <= 0xBF ? 3 : 0;
  if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) return is_continuation(b1) ? 3 : 0;
  if (b0 == 0xED) return b1 >= 0x80 && b1 <= 0x9F ? 3 : 0;
  if (b0 == 0xF0) return b1 >= 0x90 && b1 <= 0xBF ? 4 : 0;
  if (b0 >= 0xF1 && b0 <= 0xF3) return is_continuation(b1) ? 4 : 0;
  if (b0 == 0xF4) return b1 >= 0x80 && b1 <= 0x8F ? 4 : 0;
  return 0;
}

size_t encode_utf8(uint32_t cp, char* out) noexcept {
  if (cp < 0x80) {
    out[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<char>(0xC0 | (cp >> 6));
    out[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<char>(0xE0 | (cp >> 12));
    out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<char>(0xF0 | (cp >> 18));
  out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

// Decodes the next unit of a string token's raw text at raw[i]: one plain byte, or one escape
// (a surrogate pair counts as one). Writes its bytes to out[0..4) and returns their count, or 0
// when the raw text is malformed (it was not validated by a scanner). Advances i.
size_t next_unit(std::string_view raw, size_t& i, char* out) noexcept {
  const char c = raw[i];
  if (c != '\\') {
    out[0] = c;
    ++i;
    return 1;
  }
  if (i + 1 >= raw.size()) return 0;
  const char e = raw[i + 1];
  char simple = 0;
  switch (e) {
    case '"': simple = '"'; break;
    case '\\': simple = '\\'; break;
    case '/': simple = '/'; break;
    case 'b': simple = '\b'; break;
    case 'f': simple = '\f'; break;
    case 'n': simple = '\n'; break;
    case 'r': simple = '\r'; break;
    case 't': simple = '\t'; break;
    case 'u': break;
    default: return 0;
  }
  if (e != 'u') {
    out[0] = simple;
    i += 2;
    return 1;
  }
  const int32_t u = hex4(raw, i + 2);
  if (u < 0 || is_low_surrogate(u)) return 0;
  if (!is_high_surrogate(u)) {
    i += 6;
    return encode_utf8(static_cast<uint32_t>(u), out);
  }
  // RFC 8259 §7: a character outside the BMP is a UTF-16 surrogate pair of two \u escapes.
  if (i + 7 >= raw.size() || raw[i + 6] != '\\' || raw[i + 7] != 'u') return 0;
  const int32_t lo = hex4(raw, i + 8);
  if (!is_low_surrogate(lo)) return 0;
  i += 12;
  const uint32_t cp =
      0x10000 + ((static_cast<uint32_t>(u) - 0xD800) << 10) + (static_cast<uint32_t>(lo) - 0xDC00);
  return encode_utf8(cp, out);
}

// The value of a number whose text std::from_chars found out of range: it only says so for
// results that round to ±inf or ±0, so the decimal magnitude (digits before the point plus the
// exponent) tells which.
double out_of_range_value(std::string_view t) noexcept {
  const bool negative = !t.empty() && t[0] == '-';
  size_t i = negative ? 1 : 0;
  int64_t magnitude = 0;
  const size_t int_start = i;
  while (i < t.size() && is_digit(t[i])) ++i;
  const bool int_zero = i - int_start == 1 && t[int_start] == '0';
  if (!int_zero) magnitude = static_cast<int64_t>(i - int_start);
  if (i < t.size() && t[i] == '.') {
    ++i;
    int64_t zeros = 0;
    while (i < t.size() && t[i] == '0') {
      ++zeros;
      ++i;
    }
    while (i < t.size() && is_digit(t[i])) ++i;
    if (int_zero) magnitude = -zeros;
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) exp_negative = t[i++] == '-';
    int64_t exp = 0;
    for (; i < t.size() && is_digit(t[i]); ++i) {
      exp = std::min<int64_t>(exp * 10 + (t[i] - '0'), 1'000'000'000);
    }
    magnitude += exp_negative ? -exp : exp;
  }
  const double v = magnitude > 0 ? std::numeric_limits<double>::infinity() : 0.0;
  return negative ? -v : v;
}

}  // namespace

std::string_view json_error_name(JsonError e) noexcept {
  switch (e) {
    case JsonError::kNone: return "none";
    case JsonError::kUnexpectedEnd: return "unexpected_end";
    case JsonError::kUnexpectedChar: return "unexpected_char";
    case JsonError::kBadLiteral: return "bad_literal";
    case JsonError::kBadNumber: return "bad_number";
    case JsonError::kNumberTooLarge: return "number_too_large";
    case JsonError::kControlChar: return "control_char";
    case JsonError::kBadEscape: return "bad_escape";
    case JsonError::kBadSurrogate: return "bad_surrogate";
    case JsonError::kBadUtf8: return "bad_utf8";
    case JsonError::kTooDeep: return "too_deep";
    case JsonError::kTrailingData: return "trailing_data";
    case JsonError::kCount: break;
  }
  return "unknown";
}

JsonScanner::JsonScanner(std::string_view text, uint32_t max_depth) noexcept
    : text_(text), max_depth_(std::clamp<uint32_t>(max_depth, 1, kMaxDepth)) {}

JsonToken JsonScanner::fail(JsonError e, size_t at) noexcept {
  if (state_ != State::kFailed) {
    state_ = State::kFailed;
    error_ = e;
    error_offset_ = offset32(at);
  }
  JsonToken t;
  t.kind = JsonKind::kError;
  t.offset = error_offset_;
  return t;
}

void JsonScanner::skip_whitespace() noexcept {
  // RFC 8259 §2: insignificant whitespace is space, tab, line feed and carriage return only.
  while (pos_ < text_.size()) {
    const char c = text_[pos_];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    ++pos_;
  }
}

JsonToken JsonScanner::next() noexcept {
  switch (state_) {
    case State::kFailed: return fail(error_, error_offset_);
    case State::kDone: {
      JsonToken t;
      t.offset = offset32(text_.size());
      return t;
    }
    case State::kValue: return value();
    case State::kValueOrClose:
      skip_whitespace();
      if (pos_ < text_.size() && text_[pos_] == ']') return close(JsonKind::kArrayEnd);
      return value();
    case State::kKeyOrClose:
    case State::kKey: {
      skip_whitespace();
      if (pos_ == text_.size()) return fail(JsonError::kUnexpectedEnd, pos_);
      const char c = text_[pos_];
      if (c == '}' && state_ == State::kKeyOrClose) return close(JsonKind::kObjectEnd);
      if (c != '"') return fail(JsonError::kUnexpectedChar, pos_);
      JsonToken key = string(JsonKind::kKey);
      if (key.kind == JsonKind::kError) return key;
      skip_whitespace();
      if (pos_ == text_.size()) return fail(JsonError::kUnexpectedEnd, pos_);
      if (text_[pos_] != ':') return fail(JsonError::kUnexpectedChar, pos_);
      ++pos_;
      state_ = State::kValue;
      return key;
    }
    case State::kAfterValue: return after_value();
  }
  return fail(JsonError::kUnexpectedChar, pos_);
}

JsonToken JsonScanner::after_value() noexcept {
  skip_whitespace();
  if (depth_ == 0) {
    if (pos_ != text_.size()) return fail(JsonError::kTrailingData, pos_);
    state_ = State::kDone;
    JsonToken t;
    t.offset = offset32(pos_);
    return t;
  }
  if (pos_ == text_.size()) return fail(JsonError::kUnexpectedEnd, pos_);
  const char c = text_[pos_];
  const bool object = in_object();
  if (c == ',') {
    ++pos_;
    state_ = object ? State::kKey : State::kValue;
    return next();
  }
  if (c == '}' && object) return close(JsonKind::kObjectEnd);
  if (c == ']' && !object) return close(JsonKind::kArrayEnd);
  return fail(JsonError::kUnexpectedChar, pos_);
}

JsonToken JsonScanner::value() noexcept {
  skip_whitespace();
  if (pos_ == text_.size()) return fail(JsonError::kUnexpectedEnd, pos_);
  switch (text_[pos_]) {
    case '{': return open(JsonKind::kObjectBegin, true);
    case '[': return open(JsonKind::kArrayBegin, false);
    case '"': return string(JsonKind::kString);
    case 't': return literal("true", JsonKind::kTrue);
    case 'f': return literal("false", JsonKind::kFalse);
    case 'n': return literal("null", JsonKind::kNull);
    default:
      if (text_[pos_] == '-' || is_digit(text_[pos_])) return number();
      return fail(JsonError::kUnexpectedChar, pos_);
  }
}

JsonToken JsonScanner::open(JsonKind kind, bool object) noexcept {
  if (depth_ >= max_depth_) return fail(JsonError::kTooDeep, pos_);
  const uint64_t bit = uint64_t{1} << depth_;
  objects_ = object ? (objects_ | bit) : (objects_ & ~bit);
  ++depth_;
  JsonToken t;
  t.kind = kind;
  t.offset = offset32(pos_++);
  state_ = object ? State::kKeyOrClose : State::kValueOrClose;
  return t;
}

JsonToken JsonScanner::close(JsonKind kind) noexcept {
  --depth_;
  JsonToken t;
  t.kind = kind;
  t.offset = offset32(pos_++);
  state_ = State::kAfterValue;
  return t;
}

JsonToken JsonScanner::literal(std::string_view word, JsonKind kind) noexcept {
  const std::string_view rest = text_.substr(pos_);
  if (rest.substr(0, word.size()) != word) {
    // A text cut inside the word is truncated rather than wrong.
    if (rest.size() < word.size() && word.substr(0, rest.size()) == rest) {
      return fail(JsonError::kUnexpectedEnd, text_.size());
    }
    return fail(JsonError::kBadLiteral, pos_);
  }
  JsonToken t;
  t.kind = kind;
  t.offset = offset32(pos_);
  pos_ += word.size();
  state_ = State::kAfterValue;
  return t;
}

JsonToken JsonScanner::string(JsonKind kind) noexcept {
  const size_t open_quote = pos_;
  size_t i = pos_ + 1;
  bool escaped = false;
  const size_t n = text_.size();
  while (true) {
    if (i >= n) return fail(JsonError::kUnexpectedEnd, n);
    const auto b = static_cast<uint8_t>(text_[i]);
    if (b == '"') break;
    if (b == '\\') {
      // RFC 8259 §7: the two-character escapes, or \u and four hex digits.
      escaped = true;
      if (i + 1 >= n) return fail(JsonError::kUnexpectedEnd, n);
      const char e = text_[i + 1];
      if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' ||
          e == 't') {
        i += 2;
        continue;
      }
      if (e != 'u') return fail(JsonError::kBadEscape, i);
      if (n - (i + 2) < 4) return fail(JsonError::kUnexpectedEnd, n);
      const int32_t u = hex4(text_, i + 2);
      if (u < 0) return fail(JsonError::kBadEscape, i);
      if (is_low_surrogate(u)) return fail(JsonError::kBadSurrogate, i);
      if (is_high_surrogate(u)) {
        // The pair's low half must follow at once; a lone half is no Unicode character.
        if (i + 6 >= n) return fail(JsonError::kUnexpectedEnd, n);
        if (text_[i + 6] != '\\') return fail(JsonError::kBadSurrogate, i);
        if (i + 7 >= n) return fail(JsonError::kUnexpectedEnd, n);
        if (text_[i + 7] != 'u') return fail(JsonError::kBadSurrogate, i);
        if (n - (i + 8) < 4) return fail(JsonError::kUnexpectedEnd, n);
        const int32_t lo = hex4(text_, i + 8);
        if (lo < 0) return fail(JsonError::kBadEscape, i + 6);
        if (!is_low_surrogate(lo)) return fail(JsonError::kBadSurrogate, i + 6);
        i += 12;
      } else {
        i += 6;
      }
      continue;
    }
    if (b < 0x20) return fail(JsonError::kControlChar, i);
    if (b < 0x80) {
      ++i;
      continue;
    }
    // RFC 8259 §8.1: text is UTF-8; RFC 3629 §4 says which sequences are well formed.
    if (i + 1 >= n) return fail(JsonError::kUnexpectedEnd, n);
    const size_t len = utf8_sequence_length(b, static_cast<uint8_t>(text_[i + 1]));
    if (len == 0) return fail(JsonError::kBadUtf8, i);
    if (n - i < len) return fail(JsonError::kUnexpectedEnd, n);
    for (size_t k = 2; k < len; ++k) {
      if (!is_continuation(static_cast<uint8_t>(text_[i + k]))) {
        return fail(JsonError::kBadUtf8, i);
      }
    }
    i += len;
  }
  JsonToken t;
  t.kind = kind;
  t.offset = offset32(open_quote);
  t.text = text_.substr(open_quote + 1, i - open_quote - 1);
  t.escaped = escaped;
  pos_ = i + 1;
  state_ = State::kAfterValue;
  return t;
}

JsonToken JsonScanner::number() noexcept {
  // RFC 8259 §6: number = [ minus ] int [ frac ] [ exp ]; int = zero / ( digit1-9 *DIGIT ).
  const size_t start = pos_;
  const size_t n = text_.size();
  size_t i = pos_;
  if (text_[i] == '-') ++i;
  if (i >= n || !is_digit(text_[i])) return fail(JsonError::kBadNumber, start);
  if (text_[i] == '0') {
    ++i;
    if (i < n && is_digit(text_[i])) return fail(JsonError::kBadNumber, start);
  } else {
    while (i < n && is_digit(text_[i])) ++i;
  }
  bool integral = true;
  if (i < n && text_[i] == '.') {
    integral = false;
    ++i;
    if (i >= n || !is_digit(text_[i])) return fail(JsonError::kBadNumber, start);
    while (i < n && is_digit(text_[i])) ++i;
  }
  if (i < n && (text_[i] == 'e' || text_[i] == 'E')) {
    integral = false;
    ++i;
    if (i < n && (text_[i] == '+' || text_[i] == '-')) ++i;
    if (i >= n || !is_digit(text_[i])) return fail(JsonError::kBadNumber, start);
    while (i < n && is_digit(text_[i])) ++i;
  }
  JsonToken t;
  t.kind = JsonKind::kNumber;
  t.offset = offset32(start);
  t.text = text_.substr(start, i - start);
  const char* first = t.text.data();
  const char* last = first + t.text.size();
  t.number.integral = integral;
  if (integral) {
    int64_t v = 0;
    const auto r = std::from_chars(first, last, v);
    if (r.ec == std::errc{} && r.ptr == last) {
      t.number.fits_int64 = true;
      t.number.i64 = v;
    }
  }
  // std::from_chars is correctly rounded (round to nearest, ties to even), like strtod, and
  // ignores the locale.
  double d = 0;
  const auto r = std::from_chars(first, last, d);
  if (r.ec == std::errc::result_out_of_range) {
    // RFC 8259 §9 lets a parser limit the range of numbers: one that would be ±inf carries no
    // usable value (nlohmann-json refuses it too), one that underflows reads as ±0 (as strtod).
    d = out_of_range_value(t.text);
    if (std::isinf(d)) return fail(JsonError::kNumberTooLarge, start);
  } else if (r.ec != std::errc{} || r.ptr != last) {
    return fail(JsonError::kBadNumber, start);
  }
  t.number.f64 = d;
  pos_ = i;
  state_ = State::kAfterValue;
  return t;
}

bool JsonScanner::next_member(JsonToken& key) noexcept {
  const JsonToken t = next();
  if (t.kind == JsonKind::kKey) {
    key = t;
    return true;
  }
  if (t.kind != JsonKind::kObjectEnd && t.kind != JsonKind::kError) {
    // Called outside an object: a caller's mistake, reported like bad input.
    fail(JsonError::kUnexpectedChar, t.offset);
  }
  return false;
}

bool JsonScanner::next_element(JsonToken& value) noexcept {
  const JsonToken t = next();
  switch (t.kind) {
    case JsonKind::kArrayEnd:
    case JsonKind::kError: return false;
    case JsonKind::kKey:
    case JsonKind::kObjectEnd:
    case JsonKind::kEnd: fail(JsonError::kUnexpectedChar, t.offset); return false;
    default: value = t; return true;
  }
}

bool JsonScanner::skip(const JsonToken& value) noexcept {
  if (value.kind != JsonKind::kObjectBegin && value.kind != JsonKind::kArrayBegin) {
    return state_ != State::kFailed;
  }
  if (depth_ == 0) return false;
  const uint32_t target = depth_ - 1;
  while (true) {
    const JsonToken t = next();
    if (t.kind == JsonKind::kError) return false;
    if ((t.kind == JsonKind::kObjectEnd || t.kind == JsonKind::kArrayEnd) && depth_ == target) {
      return true;
    }
  }
}

size_t json_unescape(std::string_view raw, std::span<char> out) noexcept {
  size_t w = 0;
  size_t i = 0;
  char unit[4];
  while (i < raw.size()) {
    const size_t len = next_unit(raw, i, unit);
    if (len == 0 || out.size() - w < len) return SIZE_MAX;
    std::copy_n(unit, len, out.data() + w);
    w += len;
  }
  return w;
}

bool json_string_equals(const JsonToken& t, std::string_view s) noexcept {
  if (!t.escaped) return t.text == s;
  size_t i = 0;
  size_t k = 0;
  char unit[4];
  while (i < t.text.size()) {
    const size_t len = next_unit(t.text, i, unit);
    if (len == 0 || s.size() - k < len || std::string_view(unit, len) != s.substr(k, len)) {
      return false;
    }
    k += len;
  }
  return k == s.size();
}

JsonError json_validate(std::string_view text, uint32_t max_depth, uint32_t* offset) noexcept {
  JsonScanner s(text, max_depth);
  while (true) {
    const JsonToken t = s.next();
    if (t.kind == JsonKind::kEnd) return JsonError::kNone;
    if (t.kind == JsonKind::kError) {
      if (offset != nullptr) *offset = s.error_offset();
      return s.error();
    }
  }
}

}  // namespace tianhe::core
