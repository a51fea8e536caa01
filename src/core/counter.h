// Single-writer counters and histograms: written by one thread (a shard) with plain relaxed
// stores (no locked instructions on the hot path), read by any thread at scrape time.
#pragma once

#include <atomic>
#include <bit>
#include <cstdint>
#include <string_view>

#include "core/metrics.h"

namespace tianhe::core {

/// A counter written by exactly one thread.
class Counter {
 public:
  /// Adds `n`; owner thread only.
  void add(uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  /// Adds `n` from any thread (a locked add: for counters several threads write).
  void add_shared(uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  /// Sets the value (gauges); owner thread only.
  void set(uint64_t n) noexcept { v_.store(n, std::memory_order_relaxed); }
  /// Reads the value; any thread.
  uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

/// A histogram of durations with log2 microsecond buckets: bucket i counts values < 2^i us
/// (bucket 0: < 1 us); the last bucket counts the rest. Written by one thread.
class Log2Histogram {
 public:
  static constexpr int kBuckets = 24;
  /// Records a duration in nanoseconds; owner thread only.
  void observe_ns(int64_t ns) noexcept {
    buckets_[bucket_of(ns)].add();
    sum_ns_.add(ns > 0 ? static_cast<uint64_t>(ns) : 0);
  }
  /// Records a duration from any thread (locked adds: for histograms several threads write).
  void observe_ns_shared(int64_t ns) noexcept {
    buckets_[bucket_of(ns)].add_shared();
    sum_ns_.add_shared(ns > 0 ? static_cast<uint64_t>(ns) : 0);
  }
  /// Bucket i's count; any thread.
  uint64_t bucket(int i) const noexcept { return buckets_[i].get(); }
  uint64_t sum_ns() const noexcept { return sum_ns_.get(); }

 private:
  /// Bucket i counts values < 2^i us; the last also everything above.
  static int bucket_of(int64_t ns) noexcept {
    const uint64_t us = ns > 0 ? static_cast<uint64_t>(ns) / 1000 : 0;
    const int b = us == 0 ? 0 : static_cast<int>(std::bit_width(us));  // us < 2^b
    return b >= kBuckets ? kBuckets - 1 : b;
  }

  Counter buckets_[kBuckets];
  Counter sum_ns_;
};

/// Writes a Log2Histogram as a Prometheus histogram in seconds (samples with equal name and
/// labels, e.g. one per shard, are added).
inline void write_histogram(core::PromWriter& w, std::string_view name, std::string_view help,
                            const core::Labels& labels, const Log2Histogram& h) {
  uint64_t buckets[Log2Histogram::kBuckets];
  for (int i = 0; i < Log2Histogram::kBuckets; ++i) buckets[i] = h.bucket(i);
  write_log2_us_histogram(w, name, help, labels, buckets, static_cast<double>(h.sum_ns()) / 1e9);
}

}  // namespace tianhe::core
