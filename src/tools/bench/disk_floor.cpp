#include "tools/bench/disk_floor.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "core/clock.h"

namespace tianhe::tools::bench {

double ack_floor_quantile_ms(const std::vector<Flush>& flushes, double q) {
  if (flushes.size() < 2) return 0;
  const auto span = static_cast<double>(flushes.back().start_ns - flushes.front().start_ns);
  if (span <= 0) return 0;
  // The share of arrivals waiting longer than x: in (start(j-1), start(j)], those with
  // t < end(j) - x. It falls as x grows, so the quantile is found by bisection.
  auto share_above = [&](double x) {
    double t = 0;
    for (size_t j = 1; j < flushes.size(); ++j) {
      const auto lo = static_cast<double>(flushes[j - 1].start_ns);
      const double hi = std::min(static_cast<double>(flushes[j].start_ns),
                                 static_cast<double>(flushes[j].end_ns) - x);
      t += std::max(0.0, hi - lo);
    }
    return t / span;
  };
  double lo = 0, hi = 0;
  for (size_t j = 1; j < flushes.size(); ++j) {
    hi = std::max(hi, static_cast<double>(flushes[j].end_ns - flushes[j - 1].start_ns));
  }
  for (int i = 0; i < 60 && hi - lo > 1; ++i) {
    const double mid = (lo + hi) / 2;
    (share_above(mid) > 1 - q ? lo : hi) = mid;
  }
  return hi / 1e6;
}

void write_zeros_and_sync(int fd, int64_t bytes) {
  const std::vector<char> zeros(size_t{1} << 20, 0);
  for (int64_t off = 0; off < bytes; off += static_cast<int64_t>(zeros.size())) {
    const auto len = static_cast<size_t>(std::min<int64_t>(bytes - off, zeros.size()));
    if (::pwrite(fd, zeros.data(), len, off) < 0) return;
  }
  ::fsync(fd);
}

DiskFloor probe_disk_floor(const std::string& dir, double bytes_per_s, double seconds) {
  DiskFloor out;
  out.bytes_per_s = bytes_per_s;
  const std::string path = dir + "/disk-floor-probe";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return out;
  // Preallocated with real zeros and synced first, like a log segment.
  constexpr int64_t kFileBytes = int64_t{64} << 20;
  write_zeros_and_sync(fd, kFileBytes);
  const std::vector<char> block(size_t{64} << 10, 0x5a);
  std::atomic<int64_t> written{0};
  std::atomic<bool> stop{false};
  const int64_t t0 = core::mono_ns();
  std::thread writer([&] {
    int64_t done = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const auto due =
          static_cast<int64_t>(static_cast<double>(core::mono_ns() - t0) / 1e9 * bytes_per_s);
      while (done < due) {
        const int64_t at = done % kFileBytes;
        const int64_t len =
            std::min({due - done, static_cast<int64_t>(block.size()), kFileBytes - at});
        if (::pwrite(fd, block.data(), static_cast<size_t>(len), at) < 0) return;
        done += len;
        written.store(done, std::memory_order_release);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  std::vector<Flush> flushes;
  flushes.reserve(size_t{1} << 16);
  const auto end = t0 + static_cast<int64_t>(seconds * 1e9);
  int64_t synced = 0;
  for (int64_t now = core::mono_ns(); now < end; now = core::mono_ns()) {
    const int64_t w = written.load(std::memory_order_acquire);
    if (w == synced) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      continue;
    }
    if (::fdatasync(fd) != 0) break;
    flushes.push_back({now, core::mono_ns()});
    synced = w;
  }
  stop = true;
  writer.join();
  ::close(fd);
  ::unlink(path.c_str());
  if (flushes.size() < 2) return out;
  out.flushes = static_cast<double>(flushes.size());
  double slow_ns = 0;
  for (const Flush& f : flushes) {
    const auto d = static_cast<double>(f.end_ns - f.start_ns);
    out.max_flush_ms = std::max(out.max_flush_ms, d / 1e6);
    if (d > 2e6) slow_ns += d;
  }
  out.share_over_2ms =
      slow_ns / static_cast<double>(flushes.back().end_ns - flushes.front().start_ns);
  out.p50_ms = ack_floor_quantile_ms(flushes, 0.5);
  out.p99_ms = ack_floor_quantile_ms(flushes, 0.99);
  out.p999_ms = ack_floor_quantile_ms(flushes, 0.999);
  return out;
}

}  // namespace tianhe::tools::bench
