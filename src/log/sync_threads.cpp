// The shard log's threads: group commit (durability batch) and background writeback
// (durability none).
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

void ShardLogImpl::name_thread(std::thread& t, const char* what) const noexcept {
  char name[16];
  std::snprintf(name, sizeof name, "%s-%u", what, shard_);
  pthread_setname_np(t.native_handle(), name);
}

void ShardLogImpl::sync_loop() noexcept {
  // Short slices: a sync thread that wakes (an append, a flush done) runs at once instead of
  // waiting out the slice of a busy thread beside it, and the acks it releases go sooner.
  if (config_.sync_time_slice.count() > 0) core::request_time_slice(config_.sync_time_slice);
  std::unique_lock lock(mu_);
  for (;;) {
    if (written_ > durable_.load(std::memory_order_relaxed) &&
        !failed_.load(std::memory_order_relaxed)) {
      const int fd = sync_fd_;
      const uint64_t target = written_;
      syncing_fd_ = fd;
      lock.unlock();
      const int64_t s0 = core::mono_ns();
      const int rc = ::fdatasync(fd);
      const int64_t s1 = core::mono_ns();
      lock.lock();
      syncing_fd_ = -1;
      if (retired_fd_ >= 0) ::close(std::exchange(retired_fd_, -1));
      if (rc == 0) {
        stats_->sync_latency.observe_ns_shared(s1 - s0);
        stats_->syncs.fetch_add(1, std::memory_order_relaxed);
        store_max(durable_, target);
        // Wake the owner if it sleeps with acks waiting (the counter just grows otherwise).
        const uint64_t one = 1;
        [[maybe_unused]] const ssize_t w = ::write(durable_event_fd_, &one, sizeof one);
      } else {
        // Linux may drop the dirty pages after a failed writeback, so a retry could succeed
        // without the data: stop accepting appends instead (reopen recovers).
        stats_->sync_errors.fetch_add(1, std::memory_order_relaxed);
        failed_.store(true, std::memory_order_release);
      }
      continue;
    }
    if (stop_) return;
    // Woken by append; the timeout only bounds the delay should a wake-up ever be missed.
    cv_.wait_for(lock, config_.flush_interval);
  }
}

void ShardLogImpl::writeback_loop() noexcept {
  std::unique_lock lock(mu_);
  uint64_t kicked = written_;
  for (;;) {
    if (written_ != kicked) {
      const int fd = sync_fd_;
      kicked = written_;
      syncing_fd_ = fd;
      lock.unlock();
      // SYNC_FILE_RANGE_WRITE alone starts writeback of the dirty pages and returns.
      [[maybe_unused]] const int rc = ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
      lock.lock();
      syncing_fd_ = -1;
      if (retired_fd_ >= 0) ::close(std::exchange(retired_fd_, -1));
      stats_->writeback_kicks.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (stop_) return;
    cv_.wait(lock);
  }
}

}  // namespace tianhe::log::detail
