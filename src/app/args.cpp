#include "app/args.h"

#include <cerrno>
#include <cstdlib>
#include <ctime>

namespace tianhe::app {

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

Result<uint64_t> Args::u64(const std::string& name, uint64_t fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  const std::string& s = it->second;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end == s.c_str() || v < 0) {
    return make_error("--" + name + ": '" + s + "' is not a non-negative number");
  }
  std::string suffix(end);
  if (suffix == "k" || suffix == "K")
    v *= 1e3;
  else if (suffix == "m" || suffix == "M")
    v *= 1e6;
  else if (suffix == "g" || suffix == "G")
    v *= 1e9;
  else if (!suffix.empty()) {
    return make_error("--" + name + ": '" + s + "' has an unknown suffix; use k, M or G");
  }
  return static_cast<uint64_t>(v);
}

Result<double> Args::f64(const std::string& name, double fallback) const {
  auto it = values_.find(name);
  if (it == values_.end()) return fallback;
  char* end = nullptr;
  double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0') {
    return make_error("--" + name + ": '" + it->second + "' is not a number");
  }
  return v;
}

Result<double> parse_seconds(const std::string& text, const std::string& what) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || v < 0) {
    return make_error(what + ": '" + text + "' is not a duration; use e.g. 30s, 500ms, 2m");
  }
  std::string unit(end);
  if (unit.empty() || unit == "s") return v;
  if (unit == "ms") return v / 1e3;
  if (unit == "us") return v / 1e6;
  if (unit == "m") return v * 60;
  if (unit == "h") return v * 3600;
  if (unit == "d") return v * 86400;
  return make_error(what + ": unknown unit '" + unit + "'; use us, ms, s, m, h or d");
}

Result<int64_t> parse_time(const std::string& text, int64_t now_ns, const std::string& what) {
  if (text == "now") return now_ns;
  if (!text.empty() && text[0] == '-') {
    auto s = parse_seconds(text.substr(1), what);
    if (!s.ok()) return s.error();
    return now_ns - static_cast<int64_t>(*s * 1e9);
  }
  bool digits = !text.empty();
  for (char c : text) digits &= (c >= '0' && c <= '9');
  if (digits) {
    errno = 0;
    long long v = std::strtoll(text.c_str(), nullptr, 10);
    if (errno != 0) return make_error(what + ": '" + text + "' is out of range");
    return static_cast<int64_t>(v);
  }
  // RFC 3339, UTC ("Z") only.
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) == 6) {
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t frac_ns = 0;
    const char* p = text.c_str() + consumed;
    if (*p == '.') {
      ++p;
      int64_t scale = 100'000'000;
      while (*p >= '0' && *p <= '9') {
        frac_ns += (*p - '0') * scale;
        scale /= 10;
        ++p;
      }
    }
    if (std::string(p) == "Z") {
      return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000 + frac_ns;
    }
  }
  return make_error(what + ": '" + text +
                    "' is not a time; use RFC 3339 UTC (2026-11-22T03:00:00Z), nanoseconds since "
                    "the epoch, 'now' or a relative time like -15m");
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

}  // namespace tianhe::app
