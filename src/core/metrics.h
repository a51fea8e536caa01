// Prometheus text exposition (format 0.0.4). Modules keep their own counters (per shard,
// relaxed atomics) and register a collector that writes them at scrape time.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tianhe::core {

/// Label pairs of one sample, e.g. {{"protocol", "report"}, {"reason", "malformed"}}.
using Labels = std::vector<std::pair<std::string, std::string>>;

/// Collects samples during one scrape and renders them grouped by family: one # HELP and
/// # TYPE per family, label values escaped, samples of the same family and labels summed.
class PromWriter {
 public:
  /// A counter sample (name should end in _total).
  void counter(std::string_view name, std::string_view help, const Labels& labels, double value);
  /// A gauge sample.
  void gauge(std::string_view name, std::string_view help, const Labels& labels, double value);
  /// A histogram: `upper_bounds` ascending (the +Inf bucket is added), `counts` per bucket,
  /// non-cumulative, size upper_bounds.size() + 1 (the last is the overflow); `sum` of values.
  /// Samples with equal name and labels are added bucket by bucket (per-shard histograms).
  void histogram(std::string_view name, std::string_view help, const Labels& labels,
                 std::span<const double> upper_bounds, std::span<const uint64_t> counts,
                 double sum);
  /// The exposition text.
  std::string render() const;

 private:
  struct Family;  ///< one metric family: help, type and samples keyed by labels
  /// Families by name (sorted: the rendered order).
  std::map<std::string, std::shared_ptr<Family>, std::less<>> families_;
  /// The family `name`, created on first use; nullptr (after TH_BUG) on a type clash.
  /// Adds a counter or gauge sample (`type`) to its family.
  void scalar(std::string_view type, std::string_view name, std::string_view help,
              const Labels& labels, double value);
  Family* family(std::string_view name, std::string_view help, std::string_view type);
};

/// The set of collectors behind /metrics. Thread-safe.
class MetricsRegistry {
 public:
  /// Writes one module's samples into the scrape's writer.
  using Collector = std::function<void(PromWriter&)>;
  /// Adds a collector; it is called on every scrape from the HTTP thread.
  void add(Collector collector);
  /// Runs every collector and renders the text (includes process metrics: RSS, CPU, fds).
  std::string render() const;

 private:
  mutable std::mutex mu_;              ///< guards collectors_
  std::vector<Collector> collectors_;  ///< in registration order
};

/// Converts log2-microsecond bucket counters (bucket i counts values < 2^i us) into a
/// Prometheus histogram in seconds. Helper for LogStats-style histograms.
void write_log2_us_histogram(PromWriter& w, std::string_view name, std::string_view help,
                             const Labels& labels, std::span<const uint64_t> buckets,
                             double sum_seconds);

/// Resident set size of this process in bytes (from /proc/self/statm), 0 if unknown.
uint64_t process_rss_bytes() noexcept;

/// Writes the process metrics (process_*: RSS, CPU seconds, open and max fds, start
/// time, threads) and tianhe_bugs_total. MetricsRegistry::render calls it on every scrape.
void write_process_metrics(PromWriter& w);

/// Sum of every sample of metric `name` in exposition text `text` (all its label sets) whose
/// label text contains `filter` (empty: every sample). For benchmarks and tests that read
/// /metrics back.
double sum_samples(std::string_view text, std::string_view name, std::string_view filter = {});

/// Formats a sample value as the exposition format spells it: integers without exponent,
/// other values shortest round-trip, "NaN", "+Inf", "-Inf".
std::string format_prom_value(double value);

}  // namespace tianhe::core
