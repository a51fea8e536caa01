#include "core/args.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace tianhe::core {
namespace {

/// The value as the error quotes it.
std::string quoted(const std::string& text) {
  return "\"" + text + "\"";
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/// Splits "12.5k" into the number ("12.5": digits with at most one '.', with a leading '-' when
/// `signed_ok`) and what follows it ("k"). False when there is no digit where the number should
/// be (" 5", "inf", "nan", "x5", "").
bool split_number(const std::string& s, bool signed_ok, std::string& number, std::string& rest) {
  size_t i = 0;
  if (signed_ok && i < s.size() && s[i] == '-') ++i;
  size_t digits = 0;
  for (; i < s.size() && is_digit(s[i]); ++i) ++digits;
  if (i < s.size() && s[i] == '.') {
    for (++i; i < s.size() && is_digit(s[i]); ++i) ++digits;
  }
  if (digits == 0) return false;
  number = s.substr(0, i);
  rest = s.substr(i);
  return true;
}

/// The factor of a k, M or G suffix (1 without one); 0 for anything else. "m" is a million as
/// "M" is (for counts and rates there is no milli).
uint64_t suffix_factor(const std::string& suffix) {
  if (suffix.empty()) return 1;
  if (suffix == "k" || suffix == "K") return 1'000;
  if (suffix == "m" || suffix == "M") return 1'000'000;
  if (suffix == "g" || suffix == "G") return 1'000'000'000;
  return 0;
}

/// A number for a message: 0.5, 256, 1e+06.
std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string not_whole(const std::string& text, const std::string& what) {
  return what + ": " + quoted(text) +
         " is not a whole number; use digits with an optional k, M or G, e.g. 500, 5k, 2M";
}

std::string out_of_range(const std::string& text, const std::string& what, const std::string& min,
                         const std::string& max) {
  return what + ": " + quoted(text) + " is out of range; use " +
         (max.empty() ? "at least " + min : min + " to " + max);
}

}  // namespace

Result<Args> Args::parse(int argc, char** argv, int first, const std::set<std::string>& flags,
                         const std::set<std::string>& options) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string w = argv[i];
    if (w.rfind("--", 0) != 0 || w == "--") {
      a.positional_.push_back(w);
      continue;
    }
    std::string name = w.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (flags.count(name)) {
      if (has_value) return make_error("--" + name + " takes no value");
      a.values_[name] = "1";
    } else if (options.count(name)) {
      if (!has_value) {
        if (i + 1 >= argc) return make_error("--" + name + " needs a value; see --help");
        value = argv[++i];
      }
      a.values_[name] = value;
    } else {
      return make_error("unknown option --" + name + "; see --help");
    }
  }
  return a;
}

std::string Args::str(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

Result<uint64_t> Args::u64(const std::string& name, uint64_t fallback, uint64_t min,
                           uint64_t max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  auto v = parse_u64(it->second, "--" + name);
  if (!v.ok()) return v.error();
  if (*v < min || *v > max) {
    return make_error(out_of_range(
        it->second, "--" + name, std::to_string(min),
        max == std::numeric_limits<uint64_t>::max() ? std::string() : std::to_string(max)));
  }
  return *v;
}

Result<double> Args::f64(const std::string& name, double fallback, double min, double max) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  auto v = parse_f64(it->second, "--" + name);
  if (!v.ok()) return v.error();
  if (*v < min || *v > max) {
    return make_error(
        out_of_range(it->second, "--" + name, number_text(min),
                     max == std::numeric_limits<double>::max() ? std::string() : number_text(max)));
  }
  return *v;
}

Result<double> Args::seconds(const std::string& name, double fallback, double min_s) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  auto v = parse_seconds(it->second, "--" + name);
  if (!v.ok()) return v.error();
  if (*v < min_s) {
    return make_error("--" + name + ": " + quoted(it->second) + " is too short; use at least " +
                      number_text(min_s) + " s");
  }
  return *v;
}

Result<uint64_t> parse_u64(const std::string& text, const std::string& what) {
  std::string number, suffix;
  if (!split_number(text, false, number, suffix)) return make_error(not_whole(text, what));
  const uint64_t factor = suffix_factor(suffix);
  if (factor == 0) return make_error(not_whole(text, what));
  const std::string too_large = what + ": " + quoted(text) + " is too large; use at most " +
                                std::to_string(std::numeric_limits<uint64_t>::max());
  if (number.find('.') == std::string::npos) {
    errno = 0;
    const unsigned long long v = std::strtoull(number.c_str(), nullptr, 10);
    if (errno == ERANGE || v > std::numeric_limits<uint64_t>::max() / factor) {
      return make_error(too_large);
    }
    return static_cast<uint64_t>(v) * factor;
  }
  // "2.5k": whole once scaled. 2^64 as a double is the first value that does not fit.
  const double v = std::strtod(number.c_str(), nullptr) * static_cast<double>(factor);
  if (v != std::floor(v)) return make_error(not_whole(text, what));
  if (v >= 18446744073709551616.0) return make_error(too_large);
  return static_cast<uint64_t>(v);
}

Result<double> parse_f64(const std::string& text, const std::string& what) {
  std::string number, suffix;
  const uint64_t factor =
      split_number(text, true, number, suffix) ? suffix_factor(suffix) : uint64_t{0};
  const double v =
      factor == 0 ? 0 : std::strtod(number.c_str(), nullptr) * static_cast<double>(factor);
  if (factor == 0 || !std::isfinite(v)) {
    return make_error(what + ": " + quoted(text) +
                      " is not a number; use digits with an optional k, M or G, e.g. 2000, 2.5k");
  }
  return v;
}

Result<double> parse_seconds(const std::string& text, const std::string& what) {
  std::string number, unit;
  double factor = 0;
  if (split_number(text, false, number, unit)) {
    if (unit.empty() || unit == "s") factor = 1;
    if (unit == "ms") factor = 1e-3;
    if (unit == "us") factor = 1e-6;
    if (unit == "m") factor = 60;
    if (unit == "h") factor = 3600;
    if (unit == "d") factor = 86400;
  }
  const double v = factor == 0 ? 0 : std::strtod(number.c_str(), nullptr) * factor;
  if (factor == 0 || !std::isfinite(v)) {
    return make_error(what + ": " + quoted(text) +
                      " is not a duration; use seconds or a number with a unit (us, ms, s, m, h, "
                      "d), e.g. 10, 500ms, 2m");
  }
  return v;
}

Result<DeviceIdRange> parse_device_range(const std::string& text, const std::string& what) {
  const std::string usage = "; use a number (42) or a range (1-200)";
  auto id = [&](const std::string& s) -> Result<uint64_t> {
    bool digits = !s.empty();
    for (char c : s) digits &= is_digit(c);
    errno = 0;
    const unsigned long long v = digits ? std::strtoull(s.c_str(), nullptr, 10) : 0;
    if (!digits || errno == ERANGE) {
      return make_error(what + ": " + quoted(text) + " is not a device id" + usage);
    }
    if (v == 0) return make_error(what + ": " + quoted(text) + ": device ids start at 1" + usage);
    return static_cast<uint64_t>(v);
  };
  DeviceIdRange r;
  const size_t dash = text.find('-');
  auto first = id(text.substr(0, dash));
  if (!first.ok()) return first.error();
  r.first = r.last = *first;
  if (dash == std::string::npos) return r;
  auto last = id(text.substr(dash + 1));
  if (!last.ok()) return last.error();
  r.last = *last;
  if (r.last < r.first) {
    return make_error(what + ": " + quoted(text) +
                      " ends before it starts; write the range as FIRST-LAST, e.g. 1-200");
  }
  if (r.last - r.first >= kMaxDeviceRange) {
    return make_error(what + ": " + quoted(text) + " names more than " +
                      std::to_string(kMaxDeviceRange) +
                      " devices; split it, or use --latest --all or --count");
  }
  return r;
}

namespace {

/// The digits text[at, at + n) as a number, or -1 when they are not all digits.
int digits_at(const std::string& text, size_t at, size_t n) {
  if (at + n > text.size()) return -1;
  int v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (!is_digit(text[i])) return -1;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

/// Nanoseconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.fraction]Z", if `text` is exactly that
/// with every field in range.
std::optional<int64_t> parse_rfc3339_utc(const std::string& text) {
  const int year = digits_at(text, 0, 4), month = digits_at(text, 5, 2),
            day = digits_at(text, 8, 2), hour = digits_at(text, 11, 2),
            minute = digits_at(text, 14, 2), second = digits_at(text, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
      minute > 59 || second < 0 || second > 60 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') {
    return std::nullopt;
  }
  static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > kDays[month - 1] || (month == 2 && day == 29 && !leap)) return std::nullopt;
  size_t p = 19;
  int64_t frac_ns = 0;
  if (p < text.size() && text[p] == '.') {
    ++p;
    const size_t first = p;
    int64_t scale = 100'000'000;
    while (p < text.size() && is_digit(text[p])) {
      frac_ns += (text[p] - '0') * scale;
      scale /= 10;
      ++p;
    }
    if (p == first) return std::nullopt;
  }
  if (p + 1 != text.size() || (text[p] != 'Z' && text[p] != 'z')) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000 + frac_ns;
}

}  // namespace

Result<int64_t> parse_time(const std::string& text, int64_t now_ns, const std::string& what) {
  const std::string usage =
      " is not a time; use RFC 3339 UTC (2026-11-22T03:00:00Z), nanoseconds since the epoch, "
      "'now' or a relative time like -15m";
  if (text == "now") return now_ns;
  if (!text.empty() && text[0] == '-') {
    auto s = parse_seconds(text.substr(1), what);
    if (!s.ok()) return make_error(what + ": " + quoted(text) + usage);
    // Nine billion seconds (285 years) back is before any report and keeps the sum in range.
    if (*s > 9e9) return make_error(what + ": " + quoted(text) + " is too far back");
    return now_ns - static_cast<int64_t>(*s * 1e9);
  }
  bool digits = !text.empty();
  for (char c : text) digits &= is_digit(c);
  if (digits) {
    errno = 0;
    long long v = std::strtoll(text.c_str(), nullptr, 10);
    if (errno != 0) return make_error(what + ": " + quoted(text) + " is out of range");
    return static_cast<int64_t>(v);
  }
  if (auto t = parse_rfc3339_utc(text)) return *t;
  return make_error(what + ": " + quoted(text) + usage);
}

std::string format_time(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  int64_t frac = ns % 1'000'000'000;
  if (frac < 0) {
    frac += 1'000'000'000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

int usage_error(const std::string& cmd, const std::string& message) {
  std::fprintf(stderr, "tianhe %s: %s\n", cmd.c_str(), message.c_str());
  return 2;
}

bool wants_help(int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return true;
  }
  return false;
}

}  // namespace tianhe::core
