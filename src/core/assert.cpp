#include "core/assert.h"

#include <cstdio>
#include <cstdlib>

namespace tianhe::core {

void fatal(const char* file, int line, const char* what, const char* why) noexcept {
  std::fprintf(stderr, "tianhe: fatal: %s:%d: check failed: %s (%s)\n", file, line, what, why);
  std::abort();
}

std::atomic<uint64_t>& bug_counter() noexcept {
  static std::atomic<uint64_t> counter{0};
  return counter;
}

void report_bug(const char* file, int line, const char* what, const char* why) noexcept {
  uint64_t n = bug_counter().fetch_add(1, std::memory_order_relaxed);
  // Rate limit: the first 10 hits, then every 1000th.
  if (n < 10 || n % 1000 == 0) {
    std::fprintf(stderr, "tianhe: bug: %s:%d: %s (%s) [hit %llu]\n", file, line, what, why,
                 static_cast<unsigned long long>(n) + 1);
  }
}

}  // namespace tianhe::core
