#include "tools/bench/disk_floor.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace tianhe::tools::bench {
namespace {

constexpr int64_t kMs = 1'000'000;

TEST(DiskFloor, BackToBackFlushesOfOneMillisecond) {
  // Flush j runs from j ms to j+1 ms: an arrival in (j-1, j] waits until j+1, from 1 to 2 ms,
  // evenly spread.
  std::vector<Flush> f;
  for (int64_t j = 0; j <= 1000; ++j) f.push_back({j * kMs, (j + 1) * kMs});
  EXPECT_NEAR(ack_floor_quantile_ms(f, 0.5), 1.5, 1e-3);
  EXPECT_NEAR(ack_floor_quantile_ms(f, 0.99), 1.99, 1e-3);
}

TEST(DiskFloor, OneSlowFlushSetsTheTail) {
  // 0.1 ms flushes back to back for about 1 s, but one takes 20 ms (from 500 to 520 ms).
  // Arrivals in the 0.1 ms before it wait for its end (20-20.1 ms); those during it wait for the
  // next one's end at 520.1 ms (0.1-20.1 ms); all others 0.1-0.2 ms. So the arrivals waiting
  // more than x ms (0.2 <= x <= 20) cover 0.1 + (20.1 - x) ms of the span.
  std::vector<Flush> f;
  int64_t t = 0;
  for (int i = 0; i < 10'000; ++i) {
    const int64_t d = i == 5000 ? 20 * kMs : kMs / 10;
    f.push_back({t, t + d});
    t += d;
  }
  const double span_ms = static_cast<double>(f.back().start_ns - f.front().start_ns) / kMs;
  // 1 % wait longer than the p99: 20.2 - p99 = 0.01 * span (about 10 ms).
  EXPECT_NEAR(ack_floor_quantile_ms(f, 0.99), 20.2 - 0.01 * span_ms, 0.01);
  EXPECT_LT(ack_floor_quantile_ms(f, 0.5), 0.21);
  // Without the slow flush, the p99 stays under 0.2 ms.
  f.clear();
  for (int64_t i = 0; i < 10'000; ++i) f.push_back({i * kMs / 10, (i + 1) * kMs / 10});
  EXPECT_LT(ack_floor_quantile_ms(f, 0.99), 0.2 + 1e-6);
}

TEST(DiskFloor, TooFewFlushesGiveZero) {
  EXPECT_EQ(ack_floor_quantile_ms({}, 0.99), 0);
  EXPECT_EQ(ack_floor_quantile_ms({{0, kMs}}, 0.99), 0);
}

TEST(DiskFloor, ProbeWritesSyncsAndCleansUp) {
  const auto dir = std::filesystem::temp_directory_path() / "tianhe-disk-floor-test";
  std::filesystem::create_directories(dir);
  const DiskFloor d = probe_disk_floor(dir.string(), 1e6, 0.3);
  EXPECT_GT(d.flushes, 1);
  EXPECT_GT(d.p50_ms, 0);
  EXPECT_GE(d.p99_ms, d.p50_ms);
  EXPECT_GE(d.p999_ms, d.p99_ms);
  EXPECT_GT(d.max_flush_ms, 0);
  EXPECT_TRUE(std::filesystem::is_empty(dir));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tianhe::tools::bench
