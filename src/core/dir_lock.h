// DirLock: one writer per directory, across processes.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace tianhe::core {

/// An exclusive lock on a directory, held by the process until released or the process ends
/// (by any means: the kernel drops a flock() lock with the last descriptor, so a SIGKILL
/// leaves nothing to clean up). The lock file `<dir>/LOCK` holds the owner's PID, which the
/// error of a refused acquire() names. Readers never take it.
class DirLock {
 public:
  DirLock() = default;
  DirLock(DirLock&& other) noexcept;
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  ~DirLock();

  /// Locks `dir` (which must exist) for `what` (for example "log shard 0", used in errors).
  /// Fails at once, without waiting, when another process, or another DirLock of this one,
  /// holds it; the error names the directory, the holder's PID and the fix.
  static Result<DirLock> acquire(const std::string& dir, std::string_view what);

  /// True while the lock is held.
  bool held() const noexcept { return fd_ >= 0; }

  /// Releases the lock (the file stays: removing it would race with a new owner).
  void release() noexcept;

 private:
  explicit DirLock(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace tianhe::core
