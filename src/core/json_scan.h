// A strict, allocation-free pull parser for JSON text (RFC 8259), for payloads on the hot path
// (the json codec, the LoRaWAN Semtech packet forwarder's rxpk objects). The scanner walks the
// text once and hands out tokens; string and number tokens view into the text; a string is
// unescaped only when its user asks, into the user's buffer. Everything it accepts is valid JSON
// (grammar, escapes, paired surrogates, UTF-8) and every error carries its byte offset.
// A JsonScanner is a small value (no heap): one per parse, on the parsing thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace tianhe::core {

/// Why a text is not JSON (or breaks a limit). json_error_name() gives the snake_case label.
enum class JsonError : uint8_t {
  kNone,
  kUnexpectedEnd,   ///< the text stops inside a value (or is empty)
  kUnexpectedChar,  ///< a byte the grammar does not allow here
  kBadLiteral,      ///< not exactly true, false or null
  kBadNumber,       ///< breaks the number grammar (leading zero, "1.", "-", "1e")
  kNumberTooLarge,  ///< a number beyond the range of a double (RFC 8259 §9 lets us refuse it)
  kControlChar,     ///< an unescaped byte below 0x20 inside a string
  kBadEscape,       ///< a backslash not followed by one of "\/bfnrtu, or a bad \u
  kBadSurrogate,    ///< a \u surrogate that is not half of a high-low pair
  kBadUtf8,         ///< a string holds bytes that are not UTF-8 (RFC 3629)
  kTooDeep,         ///< objects and arrays nested deeper than the scanner's max_depth
  kTrailingData,    ///< something other than whitespace after the top-level value
  kCount,
};

/// The snake_case name of an error ("unexpected_end", ...), for counters and messages.
std::string_view json_error_name(JsonError e) noexcept;

/// What a token is.
enum class JsonKind : uint8_t {
  kEnd,          ///< the top-level value is complete and only whitespace follows
  kError,        ///< the text is not valid JSON: see JsonScanner::error()
  kObjectBegin,  ///< '{'
  kObjectEnd,    ///< '}'
  kArrayBegin,   ///< '['
  kArrayEnd,     ///< ']'
  kKey,          ///< an object member's name (a string; the ':' after it is consumed)
  kString,       ///< a string value
  kNumber,       ///< a number value (JsonToken::number)
  kTrue,
  kFalse,
  kNull,
};

/// A number token's value. The text obeys RFC 8259 §6 exactly.
struct JsonNumber {
  bool integral = false;    ///< written without fraction or exponent ("-12", not "12.0")
  bool fits_int64 = false;  ///< integral and within int64: i64 is exact
  int64_t i64 = 0;          ///< the value when fits_int64, else 0
  double f64 = 0;           ///< the nearest double (±0 below its range; beyond it: refused)
};

/// One token. Views point into the scanned text, which must outlive them.
struct JsonToken {
  JsonKind kind = JsonKind::kEnd;
  uint32_t offset = 0;  ///< byte offset of the token's first byte (a string's opening quote)
  /// kKey, kString: the bytes between the quotes as written (escapes not applied: see
  /// json_unescape); kNumber: the number's text; other kinds: empty.
  std::string_view text;
  bool escaped = false;  ///< kKey, kString: the text holds backslash escapes
  JsonNumber number;     ///< kNumber only
};

/// A pull parser over one JSON text. Call next() to walk the tokens in order; the helpers
/// next_member(), next_element() and skip() walk objects and arrays. An error is sticky: once
/// next() returns kError, it keeps returning it, and error()/error_offset() say why and where.
/// Nesting is bounded by max_depth (at most kMaxDepth); the scanner itself uses no heap.
class JsonScanner {
 public:
  /// The deepest nesting any scanner allows.
  static constexpr uint32_t kMaxDepth = 64;
  /// The default nesting limit.
  static constexpr uint32_t kDefaultDepth = 32;

  /// Scans `text`; `max_depth` (clamped to 1..kMaxDepth) bounds nested objects and arrays.
  explicit JsonScanner(std::string_view text, uint32_t max_depth = kDefaultDepth) noexcept;

  /// The next token. After the top-level value it returns kEnd once only whitespace is left,
  /// kError (kTrailingData) otherwise.
  JsonToken next() noexcept;

  /// Inside an object (after kObjectBegin or a member's value): reads the next member's key
  /// into `key` and returns true; returns false at the object's '}' or on an error (error()
  /// tells which). The member's value is the next token.
  bool next_member(JsonToken& key) noexcept;
  /// Inside an array (after kArrayBegin or an element): reads the next element's first token
  /// into `value` and returns true; false at the array's ']' or on an error.
  bool next_element(JsonToken& value) noexcept;
  /// Given the first token of a value just read, consumes the rest of it (a whole nested object
  /// or array; nothing for a scalar). False on an error.
  bool skip(const JsonToken& value) noexcept;

  /// Objects and arrays open around the current position.
  uint32_t depth() const noexcept { return depth_; }
  /// Why the text was refused (kNone while it is fine).
  JsonError error() const noexcept { return error_; }
  /// The byte offset of the error.
  uint32_t error_offset() const noexcept { return error_offset_; }

 private:
  enum class State : uint8_t {
    kValue,         ///< a value must follow (start of text, after ':' or an array's ',')
    kValueOrClose,  ///< after '[': a value or ']'
    kKeyOrClose,    ///< after '{': a key or '}'
    kKey,           ///< after an object's ',': a key
    kAfterValue,    ///< after a value: ',', the closing bracket, or (at depth 0) the end
    kDone,          ///< kEnd returned
    kFailed,        ///< kError returned
  };

  JsonToken fail(JsonError e, size_t at) noexcept;
  void skip_whitespace() noexcept;
  JsonToken value() noexcept;
  JsonToken string(JsonKind kind) noexcept;
  JsonToken number() noexcept;
  JsonToken literal(std::string_view word, JsonKind kind) noexcept;
  JsonToken open(JsonKind kind, bool object) noexcept;
  JsonToken close(JsonKind kind) noexcept;
  JsonToken after_value() noexcept;
  bool in_object() const noexcept { return ((objects_ >> (depth_ - 1)) & 1U) != 0; }

  std::string_view text_;
  size_t pos_ = 0;
  uint64_t objects_ = 0;  ///< bit i set: nesting level i+1 is an object (else an array)
  uint32_t depth_ = 0;
  uint32_t max_depth_;
  State state_ = State::kValue;
  JsonError error_ = JsonError::kNone;
  uint32_t error_offset_ = 0;
};

/// Applies the escapes of a kKey/kString token's text (as the scanner validated it) into `out`;
/// returns the byte count, or SIZE_MAX when `out` is too small (the unescaped text is never
/// longer than the escaped one, so `raw.size()` bytes always suffice).
size_t json_unescape(std::string_view raw, std::span<char> out) noexcept;

/// Whether a kKey/kString token's unescaped text equals `s`, without a buffer.
bool json_string_equals(const JsonToken& t, std::string_view s) noexcept;

/// Checks a whole text: kNone when it is one valid JSON value with whitespace around it; else
/// the error, and its byte offset in `*offset` (when given).
JsonError json_validate(std::string_view text, uint32_t max_depth = JsonScanner::kDefaultDepth,
                        uint32_t* offset = nullptr) noexcept;

}  // namespace tianhe::core
