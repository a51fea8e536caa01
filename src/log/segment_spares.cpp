// The shard log's segments ahead and behind: the next segment prepared (or a recycled one
// renamed) before a rollover needs it, and passed segments recycled or deleted.
#include <fcntl.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/assert.h"
#include "core/clock.h"
#include "core/crc32c.h"
#include "core/dir_lock.h"
#include "core/sched.h"
#include "log/recovery.h"
#include "log/segment_files.h"
#include "log/shard_log_impl.h"

namespace tianhe::log::detail {

void ShardLogImpl::request_spare() noexcept {
  {
    std::lock_guard lock(prep_mu_);
    if (spare_state_ != SpareState::kNone || prep_stop_) return;
    spare_state_ = SpareState::kPreparing;
    prep_urgent_.store(false, std::memory_order_relaxed);
  }
  prep_cv_.notify_all();
}

void ShardLogImpl::prepare_loop() noexcept {
  std::unique_lock lock(prep_mu_);
  for (;;) {
    prep_cv_.wait(lock, [this] { return prep_stop_ || spare_state_ == SpareState::kPreparing; });
    // A passed segment is preferred to writing a new one, but not waited for: a new one is
    // written at a paced rate now, while a wait would end in an unpaced burst when the active
    // segment is half full. With consumers less than a segment behind, the segment two before
    // the active one is waiting here by then (the steady state writes nothing).
    if (prep_stop_) return;
    lock.unlock();
    bool recycled = false;
    const int fd = make_ready_spare(&prep_cancel_, &prep_urgent_, &recycled);
    lock.lock();
    if (fd >= 0) {
      spare_fd_ = fd;
      spare_state_ = SpareState::kReady;
      prep_error_ = 0;
      if (!recycled) stats_->segments_created.fetch_add(1, std::memory_order_relaxed);
    } else {
      spare_state_ = SpareState::kNone;
      prep_error_ = -fd;
      if (-fd != ECANCELED) stats_->segment_create_errors.fetch_add(1, std::memory_order_relaxed);
    }
    prep_cv_.notify_all();
  }
}

int ShardLogImpl::take_spare() noexcept {
  std::unique_lock lock(prep_mu_);
  if (spare_state_ == SpareState::kPreparing) {
    stats_->segment_create_stalls.fetch_add(1, std::memory_order_relaxed);
    prep_urgent_.store(true, std::memory_order_relaxed);  // no more waiting for a passed one
    prep_cv_.notify_all();
    prep_cv_.wait(lock, [this] { return spare_state_ != SpareState::kPreparing; });
    if (spare_state_ != SpareState::kReady) return -(prep_error_ != 0 ? prep_error_ : EIO);
  }
  if (spare_state_ == SpareState::kReady) {
    spare_state_ = SpareState::kNone;
    return std::exchange(spare_fd_, -1);
  }
  // Idle, so the preparer does not touch the spare file while this thread creates it.
  lock.unlock();
  stats_->segment_create_stalls.fetch_add(1, std::memory_order_relaxed);
  bool recycled = false;
  const int fd = make_ready_spare(nullptr, nullptr, &recycled);
  if (fd >= 0) {
    if (!recycled) stats_->segments_created.fetch_add(1, std::memory_order_relaxed);
  } else {
    stats_->segment_create_errors.fetch_add(1, std::memory_order_relaxed);
  }
  return fd;
}

int ShardLogImpl::make_ready_spare(const std::atomic<bool>* cancel, const std::atomic<bool>* urgent,
                                   bool* recycled) noexcept {
  if (const int fd = reuse_recycled(); fd >= 0) {
    *recycled = true;
    return fd;
  }
  const int fd = detail::create_segment_file(dir_, detail::spare_path(dir_), config_.segment_bytes,
                                             cancel, urgent);
  if (fd < 0) return fd;
  // Both names are literals (NUL-terminated views).
  const char* tmp = kSpareSegmentName.data();
  const char* ready = kReadySpareName.data();
  if (::renameat(dir_fd_, tmp, dir_fd_, ready) != 0 || ::fsync(dir_fd_) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlinkat(dir_fd_, tmp, 0);
    ::unlinkat(dir_fd_, ready, 0);
    return -err;
  }
  return fd;
}

int ShardLogImpl::reuse_recycled() noexcept {
  uint32_t slot = 0;
  {
    std::lock_guard lock(prep_mu_);
    if (recycled_slots_ == 0) return -1;
    slot = static_cast<uint32_t>(std::countr_zero(recycled_slots_));
    recycled_slots_ &= ~(1u << slot);
  }
  char name[detail::kRecycledNameBytes];
  const char* from = detail::recycled_spare_name(slot, name);
  const char* to = kReadySpareName.data();
  if (::renameat(dir_fd_, from, dir_fd_, to) != 0) {
    ::unlinkat(dir_fd_, from, 0);
    return -1;
  }
  const int fd = ::openat(dir_fd_, to, O_RDWR | O_CLOEXEC);
  if (fd < 0 || ::fsync(dir_fd_) != 0) {
    if (fd >= 0) ::close(fd);
    ::unlinkat(dir_fd_, to, 0);
    return -1;
  }
  stats_->segments_recycled.fetch_add(1, std::memory_order_relaxed);
  return fd;
}

void ShardLogImpl::delete_consumed_segments() noexcept {
  const uint64_t low = min_consumer();
  std::lock_guard lock(segments_mu_);
  size_t gone = 0;
  while (segments_.size() - gone >= 2 && segments_[gone + 1] <= low) {
    char name[detail::kSegmentNameBytes];
    detail::format_segment_name(segments_[gone], name);
    if (!recycle(name) && ::unlinkat(dir_fd_, name, 0) != 0 && errno != ENOENT) {
      break;  // retried next call
    }
    ++gone;
    stats_->segments_deleted.fetch_add(1, std::memory_order_relaxed);
  }
  segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(gone));
}

bool ShardLogImpl::recycle(const char* name) noexcept {
  uint32_t slot = 0;
  {
    std::lock_guard lock(prep_mu_);
    if (prep_stop_) return false;
    const uint32_t slots = std::min(config_.recycle_segments, kMaxRecycledSegments);
    while (slot < slots && (recycled_slots_ & (1u << slot)) != 0) ++slot;
    if (slot == slots) return false;
  }
  const int fd = ::openat(dir_fd_, name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st {};
  uint8_t header[kSegmentHeaderBytes];
  const bool fits =
      ::fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) == config_.segment_bytes &&
      detail::pread_full(fd, header, sizeof header, 0) == static_cast<ssize_t>(sizeof header) &&
      detail::check_segment_header(header) == detail::HeaderStatus::kOk &&
      detail::header_version(header) == kSegmentVersion;
  ::close(fd);
  // No directory sync: if the rename is lost in a crash, the segment is listed again below
  // every consumer and passed again.
  char to[detail::kRecycledNameBytes];
  if (!fits || ::renameat(dir_fd_, name, dir_fd_, detail::recycled_spare_name(slot, to)) != 0) {
    return false;
  }
  std::lock_guard lock(prep_mu_);
  recycled_slots_ |= 1u << slot;
  return true;
}

}  // namespace tianhe::log::detail
