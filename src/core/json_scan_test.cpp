// The JSON scanner: tokens and their offsets, RFC 8259's grammar corner by corner, numbers and
// strings decoded exactly, limits, the object/array helpers; and a cross-check against
// nlohmann-json (an independent parser, test only) on generated, mutated and random texts: both
// accept and refuse the same texts and read the same values.
#include "core/json_scan.h"

#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace tianhe::core {
namespace {

std::vector<JsonToken> tokens(std::string_view text, uint32_t depth = JsonScanner::kDefaultDepth) {
  JsonScanner s(text, depth);
  std::vector<JsonToken> out;
  while (true) {
    out.push_back(s.next());
    if (out.back().kind == JsonKind::kEnd || out.back().kind == JsonKind::kError) return out;
  }
}

struct Refusal {
  JsonError error;
  uint32_t offset;
};

Refusal refusal(std::string_view text, uint32_t depth = JsonScanner::kDefaultDepth) {
  uint32_t offset = 0;
  const JsonError e = json_validate(text, depth, &offset);
  return {e, offset};
}

std::string unescaped(const JsonToken& t) {
  std::string out(t.text.size(), '\0');
  const size_t n = json_unescape(t.text, out);
  EXPECT_NE(n, SIZE_MAX);
  out.resize(n == SIZE_MAX ? 0 : n);
  return out;
}

TEST(JsonScan, WalksADocumentInOrderWithOffsets) {
  const std::string_view text = R"( {"a": [1, -2.5e1, true], "b\n": {"c": null}, "d": false} )";
  const auto t = tokens(text);
  const std::vector<JsonKind> kinds = {
      JsonKind::kObjectBegin, JsonKind::kKey,   JsonKind::kArrayBegin, JsonKind::kNumber,
      JsonKind::kNumber,      JsonKind::kTrue,  JsonKind::kArrayEnd,   JsonKind::kKey,
      JsonKind::kObjectBegin, JsonKind::kKey,   JsonKind::kNull,       JsonKind::kObjectEnd,
      JsonKind::kKey,         JsonKind::kFalse, JsonKind::kObjectEnd,  JsonKind::kEnd};
  ASSERT_EQ(t.size(), kinds.size());
  for (size_t i = 0; i < kinds.size(); ++i) EXPECT_EQ(t[i].kind, kinds[i]) << i;
  EXPECT_EQ(t[0].offset, 1u);
  EXPECT_EQ(t[1].text, "a");
  EXPECT_EQ(t[1].offset, 2u);
  EXPECT_EQ(t[3].number.i64, 1);
  EXPECT_TRUE(t[3].number.integral);
  EXPECT_FALSE(t[4].number.integral);
  EXPECT_EQ(t[4].number.f64, -25.0);
  EXPECT_EQ(t[4].text, "-2.5e1");
  EXPECT_EQ(t[7].text, "b\\n");
  EXPECT_TRUE(t[7].escaped);
  EXPECT_EQ(unescaped(t[7]), "b\n");
}

TEST(JsonScan, AcceptsEveryTopLevelValue) {
  for (std::string_view text : {"0", "-0", "\"\"", "true", "false", "null", "[]", "{}", " \t\r\n1 ",
                                "[[[]]]", "{\"\":{}}", "1E+2", "1e-2", "0.0"}) {
    EXPECT_EQ(json_validate(text), JsonError::kNone) << text;
  }
}

TEST(JsonScan, RefusesWithTheReasonAndTheOffset) {
  struct Case {
    std::string_view text;
    JsonError error;
    uint32_t offset;
  };
  const Case cases[] = {
      {"", JsonError::kUnexpectedEnd, 0},
      {"   ", JsonError::kUnexpectedEnd, 3},
      {"{", JsonError::kUnexpectedEnd, 1},
      {"{\"a\"", JsonError::kUnexpectedEnd, 4},
      {"{\"a\" 1}", JsonError::kUnexpectedChar, 5},
      {"{\"a\":1,}", JsonError::kUnexpectedChar, 7},
      {"[1,]", JsonError::kUnexpectedChar, 3},
      {"[1 2]", JsonError::kUnexpectedChar, 3},
      {"{1:2}", JsonError::kUnexpectedChar, 1},
      {"[}", JsonError::kUnexpectedChar, 1},
      {"{]", JsonError::kUnexpectedChar, 1},
      {"[1}", JsonError::kUnexpectedChar, 2},
      {"'a'", JsonError::kUnexpectedChar, 0},
      {"tru", JsonError::kUnexpectedEnd, 3},
      {"trUe", JsonError::kBadLiteral, 0},
      {"nul", JsonError::kUnexpectedEnd, 3},
      {"NaN", JsonError::kUnexpectedChar, 0},
      {"01", JsonError::kBadNumber, 0},
      {"-", JsonError::kBadNumber, 0},
      {"1.", JsonError::kBadNumber, 0},
      {"1.e3", JsonError::kBadNumber, 0},
      {".5", JsonError::kUnexpectedChar, 0},
      {"+1", JsonError::kUnexpectedChar, 0},
      {"1e", JsonError::kBadNumber, 0},
      {"1e+", JsonError::kBadNumber, 0},
      {"[-01]", JsonError::kBadNumber, 1},
      {"12a", JsonError::kTrailingData, 2},
      {"1 2", JsonError::kTrailingData, 2},
      {"{} x", JsonError::kTrailingData, 3},
      {"\"abc", JsonError::kUnexpectedEnd, 4},
      {"\"a\tb\"", JsonError::kControlChar, 2},
      {"\"\\x\"", JsonError::kBadEscape, 1},
      {"\"\\u12G4\"", JsonError::kBadEscape, 1},
      {"\"\\u12", JsonError::kUnexpectedEnd, 5},
      {"\"\\uDC00\"", JsonError::kBadSurrogate, 1},
      {"\"\\uD800\"", JsonError::kBadSurrogate, 1},
      {"\"\\uD800\\n\"", JsonError::kBadSurrogate, 1},
      {"\"\\uD800\\u0041\"", JsonError::kBadSurrogate, 7},
      {"\"\xC0\xAF\"", JsonError::kBadUtf8, 1},           // overlong '/'
      {"\"\xED\xA0\x80\"", JsonError::kBadUtf8, 1},       // an encoded surrogate
      {"\"\xF4\x90\x80\x80\"", JsonError::kBadUtf8, 1},   // above U+10FFFF
      {"\"\xE2\x82\"", JsonError::kBadUtf8, 1},           // a sequence cut short
      {"\"\x80\"", JsonError::kBadUtf8, 1},               // a lone continuation byte
      {"\xEF\xBB\xBF{}", JsonError::kUnexpectedChar, 0},  // a byte order mark is not JSON
      {"[\v]", JsonError::kUnexpectedChar, 1},
  };
  for (const Case& c : cases) {
    const Refusal r = refusal(c.text);
    EXPECT_EQ(r.error, c.error) << c.text << ": " << json_error_name(r.error);
    EXPECT_EQ(r.offset, c.offset) << c.text;
  }
}

TEST(JsonScan, AnErrorIsSticky) {
  JsonScanner s("[1,,2]");
  EXPECT_EQ(s.next().kind, JsonKind::kArrayBegin);
  EXPECT_EQ(s.next().kind, JsonKind::kNumber);
  EXPECT_EQ(s.next().kind, JsonKind::kError);
  EXPECT_EQ(s.next().kind, JsonKind::kError);
  EXPECT_EQ(s.error(), JsonError::kUnexpectedChar);
  EXPECT_EQ(s.error_offset(), 3u);
}

TEST(JsonScan, ReadsInt64ExactlyAndDoublesToTheNearest) {
  auto number = [](std::string_view text) {
    const auto t = tokens(text);
    EXPECT_EQ(t[0].kind, JsonKind::kNumber) << text;
    return t[0].number;
  };
  EXPECT_EQ(number("9223372036854775807").i64, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(number("-9223372036854775808").i64, std::numeric_limits<int64_t>::min());
  const JsonNumber over = number("9223372036854775808");
  EXPECT_TRUE(over.integral);
  EXPECT_FALSE(over.fits_int64);
  EXPECT_EQ(over.f64, 9223372036854775808.0);
  EXPECT_FALSE(number("1.0").integral);
  EXPECT_FALSE(number("1e2").fits_int64);
  EXPECT_EQ(number("1e2").f64, 100.0);
  EXPECT_EQ(number("0.1").f64, 0.1);
  EXPECT_EQ(number("2.2250738585072011e-308").f64, 2.2250738585072011e-308);
  EXPECT_EQ(number("4.9e-324").f64, std::numeric_limits<double>::denorm_min());
  const std::string digits = "1" + std::string(400, '0');
  for (std::string_view big :
       {std::string_view("1e400"), std::string_view("-1e400"), std::string_view("1.8e308"),
        std::string_view("-0.338545E311"), std::string_view(digits)}) {
    const Refusal r = refusal(big);
    EXPECT_EQ(r.error, JsonError::kNumberTooLarge) << big;
  }
  EXPECT_EQ(number("1.7976931348623157e308").f64, std::numeric_limits<double>::max());
  const double tiny = number("-1e-400").f64;
  EXPECT_EQ(tiny, 0.0);
  EXPECT_TRUE(std::signbit(tiny));
  EXPECT_EQ(number("0.0001e-330").f64, 0.0);
  EXPECT_EQ(number("1e-99999999999999999999").f64, 0.0);
  EXPECT_EQ(number("-0").i64, 0);
  EXPECT_TRUE(std::signbit(number("-0.0").f64));
}

TEST(JsonScan, UnescapesEveryEscapeAndSurrogatePairs) {
  const auto t = tokens(R"("\"\\\/\b\f\n\r\t\u0041\u00e9\u20AC\ud83d\ude00")");
  ASSERT_EQ(t[0].kind, JsonKind::kString);
  EXPECT_EQ(unescaped(t[0]), "\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
  EXPECT_TRUE(json_string_equals(t[0], "\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  EXPECT_FALSE(json_string_equals(t[0], "\"\\/"));
  // Raw UTF-8 is kept as it is; \u0000 is a character like any other.
  const auto u = tokens("\"\xE2\x82\xAC\\u0000x\"");
  EXPECT_EQ(unescaped(u[0]), std::string("\xE2\x82\xAC\0x", 5));
  // A buffer one byte short is refused, never overrun.
  char small[4];
  EXPECT_EQ(json_unescape("abcde", small), SIZE_MAX);
  EXPECT_EQ(json_unescape("a\\u00e9", std::span<char>(small, 3)), 3u);
  EXPECT_EQ(json_unescape("a\\u00e9", std::span<char>(small, 2)), SIZE_MAX);
  // Malformed raw text (not from a scanner) is refused too.
  EXPECT_EQ(json_unescape("\\", small), SIZE_MAX);
  EXPECT_EQ(json_unescape("\\ud800", small), SIZE_MAX);
}

TEST(JsonScan, BoundsNesting) {
  EXPECT_EQ(json_validate("[[[]]]", 3), JsonError::kNone);
  const Refusal r = refusal("[[[[]]]]", 3);
  EXPECT_EQ(r.error, JsonError::kTooDeep);
  EXPECT_EQ(r.offset, 3u);
  EXPECT_EQ(refusal(std::string(64, '[') + std::string(64, ']'), 64).error, JsonError::kNone);
  EXPECT_EQ(refusal(std::string(65, '[') + std::string(65, ']'), 100).error, JsonError::kTooDeep);
  // A million brackets are refused at the limit, in constant space.
  EXPECT_EQ(refusal(std::string(1'000'000, '[')).error, JsonError::kTooDeep);
}

// The LoRaWAN packet forwarder's shape: an object holding an array of objects, read with the
// helpers, skipping what is not wanted.
TEST(JsonScan, HelpersWalkObjectsAndArrays) {
  const std::string_view text =
      R"({"rxpk":[{"tmst":123,"extra":{"x":[1,{"y":2}]},"data":"AQID"},{"tmst":456}],"z":1})";
  JsonScanner s(text);
  ASSERT_EQ(s.next().kind, JsonKind::kObjectBegin);
  JsonToken key;
  std::vector<int64_t> tmst;
  std::vector<std::string> data;
  int other = 0;
  while (s.next_member(key)) {
    const JsonToken v = s.next();
    if (!json_string_equals(key, "rxpk") || v.kind != JsonKind::kArrayBegin) {
      ASSERT_TRUE(s.skip(v));
      ++other;
      continue;
    }
    JsonToken element;
    while (s.next_element(element)) {
      ASSERT_EQ(element.kind, JsonKind::kObjectBegin);
      JsonToken k;
      while (s.next_member(k)) {
        const JsonToken f = s.next();
        if (json_string_equals(k, "tmst")) {
          tmst.push_back(f.number.i64);
        } else if (json_string_equals(k, "data")) {
          data.emplace_back(f.text);
        } else {
          ASSERT_TRUE(s.skip(f));
        }
      }
    }
  }
  EXPECT_EQ(s.error(), JsonError::kNone);
  EXPECT_EQ(s.next().kind, JsonKind::kEnd);
  EXPECT_EQ(tmst, (std::vector<int64_t>{123, 456}));
  EXPECT_EQ(data, (std::vector<std::string>{"AQID"}));
  EXPECT_EQ(other, 1);
  EXPECT_EQ(s.depth(), 0u);
}

TEST(JsonScan, HelpersStopOnErrorsAndMisuse) {
  JsonScanner s(R"({"a":[1,2)");
  ASSERT_EQ(s.next().kind, JsonKind::kObjectBegin);
  JsonToken key;
  ASSERT_TRUE(s.next_member(key));
  const JsonToken v = s.next();
  EXPECT_FALSE(s.skip(v));
  EXPECT_EQ(s.error(), JsonError::kUnexpectedEnd);

  JsonScanner a("[1]");
  ASSERT_EQ(a.next().kind, JsonKind::kArrayBegin);
  EXPECT_FALSE(a.next_member(key));  // an array has no members
  EXPECT_NE(a.error(), JsonError::kNone);
}

// ---- cross-check against nlohmann-json ------------------------------------------------------

using nlohmann::json;

// Our reading of one value, as a nlohmann value (discarded on error).
json build(JsonScanner& s, const JsonToken& t) {
  switch (t.kind) {
    case JsonKind::kObjectBegin: {
      json obj = json::object();
      JsonToken key;
      while (s.next_member(key)) {
        const std::string k = unescaped(key);
        json v = build(s, s.next());
        if (v.is_discarded()) return v;
        obj[k] = std::move(v);  // a repeated name keeps its last value, as nlohmann does
      }
      return s.error() == JsonError::kNone ? obj : json(json::value_t::discarded);
    }
    case JsonKind::kArrayBegin: {
      json arr = json::array();
      JsonToken e;
      while (s.next_element(e)) {
        json v = build(s, e);
        if (v.is_discarded()) return v;
        arr.push_back(std::move(v));
      }
      return s.error() == JsonError::kNone ? arr : json(json::value_t::discarded);
    }
    case JsonKind::kString: return unescaped(t);
    case JsonKind::kNumber: {
      if (t.number.fits_int64) return t.number.i64;
      uint64_t u = 0;
      const char* last = t.text.data() + t.text.size();
      const auto r = std::from_chars(t.text.data(), last, u);
      if (t.number.integral && r.ec == std::errc{} && r.ptr == last) return u;
      return t.number.f64;
    }
    case JsonKind::kTrue: return true;
    case JsonKind::kFalse: return false;
    case JsonKind::kNull: return nullptr;
    default: return json(json::value_t::discarded);
  }
}

// Parses `text` with both; true when they agree (accept/refuse, and the values).
::testing::AssertionResult agree(const std::string& text) {
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) return ::testing::AssertionSuccess();  // BOM: see README
  if (text.find('\0') != std::string::npos) {
    // nlohmann-json reads a NUL byte as the end of its input; in JSON it is never valid (not
    // whitespace, and a control character inside a string).
    if (json_validate(text, JsonScanner::kMaxDepth) == JsonError::kNone) {
      return ::testing::AssertionFailure() << "accepted a NUL byte";
    }
    return ::testing::AssertionSuccess();
  }
  const json theirs = json::parse(text, nullptr, false);
  JsonScanner s(text, JsonScanner::kMaxDepth);
  json ours = build(s, s.next());
  if (!ours.is_discarded() && s.next().kind != JsonKind::kEnd) ours = json::value_t::discarded;
  if (ours.is_discarded() && s.error() == JsonError::kTooDeep) {
    return ::testing::AssertionSuccess();  // nlohmann has no depth limit
  }
  if (ours.is_discarded() != theirs.is_discarded()) {
    return ::testing::AssertionFailure()
           << "accept differs (ours " << !ours.is_discarded() << ", error "
           << json_error_name(s.error()) << " at " << s.error_offset() << ") on "
           << json(text).dump(-1, ' ', true, json::error_handler_t::replace);
  }
  if (ours.is_discarded()) return ::testing::AssertionSuccess();
  const std::string a = ours.dump(-1, ' ', true);
  const std::string b = theirs.dump(-1, ' ', true);
  if (a != b) {
    return ::testing::AssertionFailure() << "values differ: ours " << a << " theirs " << b;
  }
  return ::testing::AssertionSuccess();
}

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  std::string document() {
    std::string out;
    value(out, 0);
    ws(out);
    return out;
  }

  std::string random_bytes() {
    static constexpr std::string_view kAlphabet = "{}[]\",:0123456789-+.eEtrufalsn\\ \t\n/bu";
    std::string out;
    const size_t n = pick(12) + 1;
    for (size_t i = 0; i < n; ++i) {
      if (pick(20) == 0) {
        out += static_cast<char>(pick(256));
      } else {
        out += kAlphabet[pick(kAlphabet.size())];
      }
    }
    return out;
  }

  std::string mutate(std::string s) {
    if (s.empty()) return s;
    const size_t at = pick(s.size());
    switch (pick(5)) {
      case 0: s.resize(at); break;
      case 1: s[at] = static_cast<char>(pick(256)); break;
      case 2: s.erase(at, 1); break;
      case 3: s.insert(at, 1, "{}[]\",:\\-.e0u \x80"[pick(16)]); break;
      default: s.insert(at, s.substr(pick(s.size()), pick(4))); break;
    }
    return s;
  }

  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

 private:
  void ws(std::string& out) {
    static constexpr std::string_view kWs = " \t\n\r";
    while (pick(4) == 0) out += kWs[pick(kWs.size())];
  }

  void value(std::string& out, int depth) {
    ws(out);
    const size_t kind = depth >= 6 ? 2 + pick(4) : pick(7);
    switch (kind) {
      case 0: {
        out += '{';
        const size_t n = pick(4);
        for (size_t i = 0; i < n; ++i) {
          if (i > 0) out += ',';
          ws(out);
          string(out);
          ws(out);
          out += ':';
          value(out, depth + 1);
        }
        ws(out);
        out += '}';
        break;
      }
      case 1: {
        out += '[';
        const size_t n = pick(4);
        for (size_t i = 0; i < n; ++i) {
          if (i > 0) out += ',';
          value(out, depth + 1);
        }
        ws(out);
        out += ']';
        break;
      }
      case 2:
      case 6: number(out); break;
      case 3: string(out); break;
      case 4: out += pick(2) == 0 ? "true" : "false"; break;
      default: out += "null"; break;
    }
    ws(out);
  }

  void number(std::string& out) {
    switch (pick(6)) {
      case 0: out += std::to_string(static_cast<int64_t>(rng_())); break;
      case 1: out += std::to_string(static_cast<int>(pick(2000)) - 1000); break;
      case 2: out += std::to_string(rng_()); break;  // often beyond int64
      case 3: {
        char buf[64];
        const double d = std::uniform_real_distribution<double>(-1e6, 1e6)(rng_);
        const auto r = std::to_chars(buf, buf + sizeof buf, d);
        out.append(buf, r.ptr);
        break;
      }
      case 4: {  // mantissa, fraction and exponent from the whole grammar
        if (pick(2) == 0) out += '-';
        out += pick(3) == 0 ? std::string("0") : std::to_string(pick(100000) + 1);
        if (pick(2) == 0) out += "." + std::to_string(pick(1000000));
        if (pick(2) == 0) {
          out += "eE"[pick(2)];
          if (pick(2) == 0) out += "+-"[pick(2)];
          out += std::to_string(pick(400));
        }
        break;
      }
      default: {  // integers around and beyond the int64 and uint64 limits
        const int64_t v = static_cast<int64_t>(rng_()) >> pick(63);
        out += std::to_string(v);
        if (v != 0 && pick(2) == 0) out += "0000000000";
        break;
      }
    }
  }

  void string(std::string& out) {
    static const char* const pieces[] = {"a",       "Z",        "temp",         " ",
                                         "\\\"",    "\\\\",     "\\/",          "\\b",
                                         "\\f",     "\\n",      "\\r",          "\\t",
                                         "\\u0041", "\\u00e9",  "\\u20ac",      "\\uD83D\\uDE00",
                                         "\\u0000", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                                         ".",       "0",        "\\u007f",      "\x7f"};
    out += '"';
    const size_t n = pick(6);
    for (size_t i = 0; i < n; ++i) out += pieces[pick(std::size(pieces))];
    out += '"';
  }

  std::mt19937_64 rng_;
};

TEST(JsonScanCrossCheck, GeneratedDocumentsReadTheSame) {
  Generator g(20240518);
  int valid = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string doc = g.document();
    const JsonError e = json_validate(doc, JsonScanner::kMaxDepth);
    // The generator writes exponents up to 399: a few documents hold a number beyond a double.
    ASSERT_TRUE(e == JsonError::kNone || e == JsonError::kNumberTooLarge) << doc;
    ASSERT_TRUE(agree(doc));
    valid += e == JsonError::kNone ? 1 : 0;
  }
  EXPECT_GT(valid, 2500);
}

TEST(JsonScanCrossCheck, MutatedDocumentsAreAcceptedAndRefusedAlike) {
  Generator g(7);
  int refused = 0;
  for (int i = 0; i < 6000; ++i) {
    std::string doc = g.document();
    const size_t rounds = 1 + g.pick(3);
    for (size_t k = 0; k < rounds; ++k) doc = g.mutate(doc);
    ASSERT_TRUE(agree(doc));
    refused += json_validate(doc, JsonScanner::kMaxDepth) == JsonError::kNone ? 0 : 1;
  }
  EXPECT_GT(refused, 1000);  // the mutations do break most documents
}

TEST(JsonScanCrossCheck, RandomShortTextsAreAcceptedAndRefusedAlike) {
  Generator g(99);
  int accepted = 0;
  for (int i = 0; i < 100000; ++i) {
    const std::string text = g.random_bytes();
    ASSERT_TRUE(agree(text));
    accepted += json_validate(text, JsonScanner::kMaxDepth) == JsonError::kNone ? 1 : 0;
  }
  EXPECT_GT(accepted, 100);  // some of them are JSON
}

}  // namespace
}  // namespace tianhe::core
