#include "core/config_table.h"

#include <algorithm>
#include <cstdio>
#include <iterator>

namespace tianhe::config {
namespace {

std::string in_quotes(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

struct Unit {
  std::string_view suffix;
  int64_t factor;
};

// Longest suffixes first so "ms" is not read as "m" + garbage.
constexpr Unit kSizeUnits[] = {
    {"KiB", kKiB}, {"MiB", kMiB},    {"GiB", kGiB},        {"TiB", kTiB},
    {"KB", 1000},  {"MB", 1000'000}, {"GB", 1000'000'000}, {"TB", 1000 * 1000'000'000LL},
    {"B", 1}};
constexpr Unit kDurationUnits[] = {{"ns", 1},        {"us", kUs},        {"ms", kMs}, {"s", kSec},
                                   {"m", 60 * kSec}, {"h", 3600 * kSec}, {"d", kDay}};

// Reads "<digits><unit>" into value * factor; "" on success.
std::string parse_scaled(std::string_view text, std::span<const Unit> units, int64_t& out,
                         bool unit_optional) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return "does not start with a number";
  std::string_view suffix = text.substr(digits);
  while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  int64_t factor = 0;
  if (suffix.empty()) {
    if (!unit_optional) return "has no unit";
    factor = 1;
  } else {
    for (const Unit& u : units) {
      if (suffix == u.suffix) factor = u.factor;
    }
    if (factor == 0) return "has an unknown unit \"" + std::string(suffix) + "\"";
  }
  int64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    int d = text[i] - '0';
    if (value > (INT64_MAX - d) / 10) return "is too large";
    value = value * 10 + d;
  }
  if (value != 0 && factor > INT64_MAX / value) return "is too large";
  out = value * factor;
  return "";
}

std::string format_scaled(int64_t v, std::span<const Unit> units) {
  if (v == 0) return "0";
  const Unit* best = nullptr;
  for (const Unit& u : units) {
    if (v % u.factor == 0 && (best == nullptr || u.factor > best->factor)) best = &u;
  }
  if (best == nullptr) return std::to_string(v);  // a table without a unit of factor 1
  return std::to_string(v / best->factor) + std::string(best->suffix);
}

}  // namespace

std::string_view kind_name(Kind kind) noexcept {
  switch (kind) {
    case Kind::kBool: return "boolean";
    case Kind::kString: return "string";
    case Kind::kInt: return "integer";
    case Kind::kIntOrAuto: return "\"auto\" or integer";
    case Kind::kSize: return "size";
    case Kind::kDuration: return "duration";
    case Kind::kEndpoint: return "host:port";
    case Kind::kEnum: return "enum";
    case Kind::kNumber: return "number";
    case Kind::kEnumList: return "array of strings";
  }
  return "?";
}

std::string check_non_empty(const Parsed& p) {
  return p.s.empty() ? "must not be empty; give a path such as \"./data\"" : "";
}

Result<Endpoint> parse_endpoint(std::string_view text, std::string_view key) {
  auto fail = [&](const std::string& problem) {
    return make_error(std::string(key) + ": " + in_quotes(text) + " " + problem +
                      "; use host:port, e.g. \"127.0.0.1:7700\" or \"[::1]:7700\"");
  };
  Endpoint ep;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return fail("has no closing ]");
    ep.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return fail("has no port");
    port = rest.substr(1);
    if (ep.host.empty()) return fail("has an empty host");
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("has no port");
    if (text.find(':') != colon) return fail("is an IPv6 address without brackets");
    ep.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (ep.host.empty()) return fail("has an empty host (use 0.0.0.0 for all interfaces)");
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
    return fail("has no valid port");
  }
  uint32_t p = 0;
  for (char ch : port) p = p * 10 + static_cast<uint32_t>(ch - '0');
  if (p > 65535) return fail("has a port above 65535");
  ep.port = static_cast<uint16_t>(p);
  return ep;
}

std::string format_size(int64_t bytes) {
  // Only binary units: "65507" stays a byte count rather than becoming an odd decimal figure.
  static constexpr Unit kBinary[] = {
      {"", 1}, {"KiB", kKiB}, {"MiB", kMiB}, {"GiB", kGiB}, {"TiB", kTiB}};
  return format_scaled(bytes, kBinary);
}

std::string format_bytes_approx(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  // Move up while the figure would print as 1024.0 or more.
  while (v >= 1023.95 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

std::string format_duration(int64_t ns) {
  return format_scaled(ns, kDurationUnits);
}

std::string parse_size(std::string_view text, int64_t& bytes) {
  return parse_scaled(text, kSizeUnits, bytes, true);
}

std::string parse_duration(std::string_view text, int64_t& ns) {
  if (text == "0") {
    ns = 0;
    return "";
  }
  return parse_scaled(text, kDurationUnits, ns, false);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace tianhe::config
