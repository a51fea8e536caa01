#include "core/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace tianhe::core {

namespace {

/// The PID a lock file names ("" when it names none, such as a file from an owner that died
/// between creating and writing it).
std::string holder_of(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "";
  std::string pid(buf, static_cast<size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  for (char c : pid) {
    if (c < '0' || c > '9') return "";
  }
  return pid;
}

}  // namespace

DirLock::DirLock(DirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

DirLock::~DirLock() {
  release();
}

void DirLock::release() noexcept {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));  // closing the descriptor drops the flock
}

Result<DirLock> DirLock::acquire(const std::string& dir, std::string_view what) {
  const std::string path = dir + "/LOCK";
  // O_CLOEXEC: a child started by exec must not inherit the lock and keep it after we end.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return make_error("cannot open lock file " + path + " (" + std::string(what) +
                      "): " + errno_text(errno));
  }
  DirLock lock(fd);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    if (err != EWOULDBLOCK) {
      return make_error("cannot lock " + path + " (" + std::string(what) + "): " + errno_text(err));
    }
    const std::string pid = holder_of(fd);
    const std::string holder =
        pid.empty() ? "another process"
                    : (pid == std::to_string(::getpid()) ? "this process (pid " + pid + ")"
                                                         : "another process (pid " + pid + ")");
    std::string msg = dir;
    msg += " (";
    msg += what;
    msg += ") is in use by ";
    msg += holder;
    msg += ": stop that gateway first, or give this one another data_dir";
    return make_error(std::move(msg));
  }
  // Record the owner for the error above; the lock itself does not depend on it.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return make_error("cannot write lock file " + path + ": " + errno_text(errno));
  }
  return lock;
}

}  // namespace tianhe::core
