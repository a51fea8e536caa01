// Scheduling hints for the threads on the ack path.
#pragma once

#include <chrono>

namespace tianhe::core {

/// Asks the kernel for time slices of `slice` on the calling thread (Linux 6.12+: the EEVDF
/// scheduler gives a thread with a shorter slice an earlier deadline, so that when it wakes it
/// preempts a thread with a longer one instead of waiting for that one's slice to end). Its
/// share of the CPU is unchanged. False when the kernel refuses or predates custom slices; the
/// thread then keeps the default slice.
bool request_time_slice(std::chrono::microseconds slice) noexcept;

}  // namespace tianhe::core
