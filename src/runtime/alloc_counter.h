// Counts heap allocations per thread, to show that the hot path allocates nothing in steady
// state. The counting operator new lives in alloc_counter.cpp, linked into the tianhe
// executable only; elsewhere the count stays 0.
#pragma once

#include <cstdint>

namespace tianhe::runtime {

/// operator new calls made so far by this thread.
inline thread_local uint64_t tls_allocations = 0;

/// operator new calls made so far by the calling thread (0 when counting is not linked in).
inline uint64_t thread_allocations() noexcept {
  return tls_allocations;
}

}  // namespace tianhe::runtime
