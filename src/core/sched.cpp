#include "core/sched.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace tianhe::core {
namespace {

// The first version of the kernel's struct sched_attr (SCHED_ATTR_SIZE_VER0, 48 bytes): glibc
// 2.36 declares neither the struct nor a wrapper.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};
static_assert(sizeof(SchedAttr) == 48);

}  // namespace

bool request_time_slice(std::chrono::microseconds slice) noexcept {
  if (slice.count() <= 0) return false;
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, 0);  // per thread on Linux (this thread's tid)
  if (nice == -1 && errno != 0) return false;
  SchedAttr attr{};
  attr.size = sizeof attr;
  attr.sched_policy = SCHED_OTHER;
  attr.sched_nice = nice;
  attr.sched_runtime = static_cast<uint64_t>(slice.count()) * 1000;
  return syscall(SYS_sched_setattr, 0, &attr, 0) == 0;
}

}  // namespace tianhe::core
