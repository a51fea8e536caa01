// Command-line arguments of a subcommand: `--name value`, `--name=value` and `--flag`.
// Unknown options are errors that name the option and point at --help. Every typed read checks
// the whole value: an error names the option, quotes the value and says what to write instead.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/result.h"

namespace tianhe::core {

/// Prints "tianhe <cmd>: <message>" to stderr; returns 2 (the usage-error exit status).
int usage_error(const std::string& cmd, const std::string& message);

/// True when argv[2..] holds --help or -h.
bool wants_help(int argc, char** argv);

/// Parsed options of one subcommand.
class Args {
 public:
  /// Parses argv[first..argc). `flags` take no value; `options` take one.
  static Result<Args> parse(int argc, char** argv, int first, const std::set<std::string>& flags,
                            const std::set<std::string>& options);
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  /// A string option, or `fallback`.
  std::string str(const std::string& name, const std::string& fallback = "") const;
  /// A whole number (accepts k, M, G suffixes: 5k, 2.5M) in [min, max], or `fallback` when the
  /// option is absent; an error names the option.
  Result<uint64_t> u64(const std::string& name, uint64_t fallback, uint64_t min = 0,
                       uint64_t max = std::numeric_limits<uint64_t>::max()) const;
  /// A finite number (accepts k, M, G suffixes) in [min, max], or `fallback` when absent.
  Result<double> f64(const std::string& name, double fallback,
                     double min = -std::numeric_limits<double>::max(),
                     double max = std::numeric_limits<double>::max()) const;
  /// A duration in seconds (see parse_seconds) of at least `min_s`, or `fallback` when absent.
  Result<double> seconds(const std::string& name, double fallback, double min_s = 0) const;
  /// Words that are not options.
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

/// Parses a whole number with an optional k, M or G suffix ("500", "5k", "2.5M"); `what` (the
/// option, "--devices") starts the error message.
Result<uint64_t> parse_u64(const std::string& text, const std::string& what);

/// Parses a finite number with an optional k, M or G suffix ("2000", "2.5k", "-3").
Result<double> parse_f64(const std::string& text, const std::string& what);

/// Parses a duration such as "30s", "500ms", "2m", "1h", or plain seconds ("10").
Result<double> parse_seconds(const std::string& text, const std::string& what);

/// The devices one query reads: one id (first == last) or an inclusive range.
struct DeviceIdRange {
  uint64_t first = 0;
  uint64_t last = 0;
};

/// Most devices one range may name (the query reads each in turn).
inline constexpr uint64_t kMaxDeviceRange = 1'000'000;

/// Parses a device id ("42") or an inclusive range ("1-200"); ids start at 1.
Result<DeviceIdRange> parse_device_range(const std::string& text, const std::string& what);

/// Parses a point in time for queries: nanoseconds since the epoch ("1700000000000000000"),
/// RFC 3339 UTC ("2026-11-22T03:00:00Z", fractional seconds allowed), "now", or relative to now
/// ("-15m", "-2h", "-1d"). `now_ns` is the reference.
Result<int64_t> parse_time(const std::string& text, int64_t now_ns, const std::string& what);

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nanoseconds.
std::string format_time(int64_t ns);

}  // namespace tianhe::core
