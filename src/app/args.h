// Command-line arguments of a subcommand: `--name value`, `--name=value` and `--flag`.
// Unknown options are errors that name the option and point at --help.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/result.h"

namespace tianhe::app {

/// Parsed options of one subcommand.
class Args {
 public:
  /// Parses argv[first..argc). `flags` take no value; `options` take one.
  static Result<Args> parse(int argc, char** argv, int first, const std::set<std::string>& flags,
                            const std::set<std::string>& options);
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  /// A string option, or `fallback`.
  std::string str(const std::string& name, const std::string& fallback = "") const;
  /// An unsigned integer option (accepts 1k, 2M suffixes), or an error naming the option.
  Result<uint64_t> u64(const std::string& name, uint64_t fallback) const;
  /// A floating-point option.
  Result<double> f64(const std::string& name, double fallback) const;
  /// Words that are not options.
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

/// Parses a duration such as "30s", "500ms", "2m", "1h", or plain seconds ("10").
Result<double> parse_seconds(const std::string& text, const std::string& what);

/// Parses a point in time for queries: nanoseconds since the epoch ("1700000000000000000"),
/// RFC 3339 UTC ("2026-11-22T03:00:00Z", fractional seconds allowed), "now", or relative to now
/// ("-15m", "-2h", "-1d"). `now_ns` is the reference.
Result<int64_t> parse_time(const std::string& text, int64_t now_ns, const std::string& what);

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nanoseconds.
std::string format_time(int64_t ns);

}  // namespace tianhe::app
