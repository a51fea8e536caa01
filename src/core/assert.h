// Invariant checks: TH_ASSERT (debug only), TH_BUG (counted in release, fatal in debug),
// TH_CHECK (always fatal: impossible syscall results, out of memory).
#pragma once

#include <atomic>
#include <cstdint>

namespace tianhe::core {

/// Prints "file:line: what (why)" to stderr and aborts.
[[noreturn]] void fatal(const char* file, int line, const char* what, const char* why) noexcept;

/// Counts a TH_BUG hit in release builds; read by /metrics as tianhe_bugs_total.
std::atomic<uint64_t>& bug_counter() noexcept;

/// Logs a TH_BUG hit (rate-limited) without aborting.
void report_bug(const char* file, int line, const char* what, const char* why) noexcept;

}  // namespace tianhe::core

#define TH_CHECK(cond, why)                                  \
  do {                                                       \
    if (!(cond)) [[unlikely]]                                \
      ::tianhe::core::fatal(__FILE__, __LINE__, #cond, why); \
  } while (0)

#ifdef NDEBUG
#define TH_ASSERT(cond, why) \
  do {                       \
  } while (0)
#define TH_BUG(cond, why)                                         \
  do {                                                            \
    if (!(cond)) [[unlikely]]                                     \
      ::tianhe::core::report_bug(__FILE__, __LINE__, #cond, why); \
  } while (0)
#else
#define TH_ASSERT(cond, why) TH_CHECK(cond, why)
#define TH_BUG(cond, why) TH_CHECK(cond, why)
#endif
