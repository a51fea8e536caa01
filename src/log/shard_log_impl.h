// The shard-log writer's class, shared by the files that implement it: shard_log.cpp (open,
// append and rollover, consumers, close), segment_spares.cpp (the next segment prepared ahead,
// passed segments recycled or deleted) and sync_threads.cpp (group commit, writeback). Internal
// to the log.
#pragma once

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
#include <utility>

#include "core/dir_lock.h"
#include "log/recovery.h"
#include "log/segment_files.h"
#include "log/shard_log.h"

namespace tianhe::log::detail {

inline constexpr uint32_t kMaxConsumers = 64;

/// Raises `a` to at least `v` (two threads publish durable offsets).
inline void store_max(std::atomic<uint64_t>& a, uint64_t v) noexcept {
  uint64_t cur = a.load(std::memory_order_relaxed);
  while (cur < v &&
         !a.compare_exchange_weak(cur, v, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

/// A full disk (or a file-size limit) versus any other write error.
inline AppendStatus status_for_errno(int err) noexcept {
  return (err == ENOSPC || err == EDQUOT || err == EFBIG) ? AppendStatus::kNoSpace
                                                          : AppendStatus::kIoError;
}

/// Owns a file descriptor.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

class ShardLogImpl final : public ShardLog {
 public:
  ShardLogImpl(const LogConfig& config, uint32_t shard, std::string dir, int dir_fd,
               LogStats* stats)
      : config_(config),
        shard_(shard),
        dir_(std::move(dir)),
        dir_fd_(dir_fd),
        stats_(stats != nullptr ? stats : &own_stats_) {
    // Segments are listed here until consumers delete them: the reservation covers the default
    // backlog limit (8 GiB of 64 MiB segments), so a rollover does not allocate in steady state.
    segments_.reserve(256);
  }

  ~ShardLogImpl() override {
    close();
    if (dir_fd_ >= 0) ::close(dir_fd_);
    if (durable_event_fd_ >= 0) ::close(durable_event_fd_);
  }

  /// The counters in use (the caller's, or the log's own when none was given).
  LogStats& stats() noexcept { return *stats_; }

  /// Keeps the shard directory's lock until the log is closed and destroyed.
  void hold(core::DirLock lock) noexcept { lock_ = std::move(lock); }

  /// Takes over the recovered active segment, starts the group-commit thread (batch) and the
  /// preparation of the next segment file.
  void start(const std::vector<uint64_t>& segments, int fd, const detail::Recovered& rec);

  /// Creates the eventfd the group-commit thread signals (batch), before start().
  Result<void> open_durable_event();

  int durable_event_fd() const noexcept override { return durable_event_fd_; }

  /// Takes over a ready spare left by an earlier run (complete and synced), before start().
  void adopt_spare(int fd) noexcept;

  /// Starts the next segment now (open, for a segment recovery ended). Before any append.
  AppendStatus roll_now() noexcept { return roll(); }

  /// Notes the recycled segments left by an earlier run (bit N: slot N), before start().
  void adopt_recycled(uint32_t slots) noexcept;

  AppendStatus append(std::span<const uint8_t> payload, uint64_t* end_offset) noexcept override;

  uint64_t durable_offset() const noexcept override;

  uint64_t end_offset() const noexcept override { return end_.load(std::memory_order_relaxed); }

  void set_consumer_offset(uint32_t consumer, uint64_t offset) noexcept override;

  uint32_t add_consumer(std::string_view name, uint64_t start_offset,
                        uint64_t max_lag = UINT64_MAX) override;

  uint64_t backlog_bytes() const noexcept override;

  void close() noexcept override;

 private:
  AppendStatus fail(AppendStatus s) noexcept;

  uint64_t min_consumer() const noexcept;

  /// Writes one frame at the end of the active segment: in place over its zeros (or past the end
  /// of the file for a record larger than the preallocation). On any failure the bytes are put
  /// back as they were, so that the log is exactly as before.
  AppendStatus write_frame(iovec* iov, uint64_t frame) noexcept;

  /// Takes back a write of `attempted` bytes at `pos` of which `written` may have reached the
  /// file: zeros again inside the file as it was (file_bytes_), nothing past its end.
  bool undo_write(uint64_t pos, uint64_t written, uint64_t attempted) noexcept;

  /// Asks the preparer thread for a spare segment unless one is ready or under way. Owner thread.
  void request_spare() noexcept;

  /// The preparer loop: creates the spare segment file (header, zeros, fsync) whenever asked, so
  /// that a rollover only renames it.
  void prepare_loop() noexcept;

  /// The spare segment for a rollover (an fd of spare.tmp at full size), or -errno. Waits for the
  /// preparer when it is at work; creates the spare here when the preparer is idle without one
  /// (its last attempt failed: e.g. the disk was full and may have room again).
  int take_spare() noexcept;

  /// Creates the spare as spare.tmp (header, zeros, synced), then renames it to spare.ready and
  /// syncs the directory: a ready spare survives a restart, a half-written one never passes for
  /// it. Returns its fd or -errno. Preparer thread, or the owner when the preparer is idle.
  /// Sets *recycled when the spare is a passed segment renamed (nothing written).
  int make_ready_spare(const std::atomic<bool>* cancel, const std::atomic<bool>* urgent,
                       bool* recycled) noexcept;

  /// Turns a recycled segment (a passed segment, full size, current version) into spare.ready:
  /// a rename, no writes. Its old records stay in place; their CRCs are seeded with the offset
  /// the file had before, so none of them can pass for a record of the segment it becomes.
  /// Returns the fd, or -1 when there is none (or it cannot be used: it is then removed).
  int reuse_recycled() noexcept;

  /// Names a log thread "<what>-<shard>" (shown by top -H, perf and /proc).
  void name_thread(std::thread& t, const char* what) const noexcept;

  /// Closes the active segment and starts the next one from the spare. The old segment is synced
  /// before the spare is renamed to the next name (the old segment's logical end) and the
  /// directory synced, so recovery may trust every segment but the last and no offset of the new
  /// segment can become durable before its name is.
  AppendStatus roll() noexcept;

  /// The group-commit loop (durability batch): syncs whenever data was written since the last
  /// sync; one fdatasync covers every append made while the previous one ran.
  void sync_loop() noexcept;

  /// The writeback loop (durability none): starts the kernel's writeback of the active segment
  /// whenever the owner has written kNoneWritebackBytes more, without waiting for it and without
  /// a flush. Nothing waits on it: acks in this mode follow write(2). Without it a segment's
  /// whole 64 MiB stayed dirty until the rollover's fdatasync wrote it at once, on the shard
  /// thread (30-65 ms during which nothing was received).
  void writeback_loop() noexcept;

  /// Deletes whole segments that end at or below every consumer's offset (never the active one).
  void delete_consumed_segments() noexcept;

  /// Keeps the passed segment `name` in a free recycled slot (of config_.recycle_segments) when
  /// one is free and the file can become a spare (full size, current version); true when it
  /// did. Caller holds segments_mu_ (so no other recycle() picks the same free slot; the
  /// preparer only frees slots).
  bool recycle(const char* name) noexcept;

  const LogConfig config_;
  core::DirLock lock_;  ///< one writer per shard directory; released after close()
  const uint32_t shard_;
  const std::string dir_;
  const int dir_fd_;  // the shard directory, for renames, unlinks and syncs without paths
  LogStats own_stats_;
  LogStats* const stats_;

  // Owner thread.
  int fd_ = -1;
  uint64_t seg_start_ = 0;
  uint64_t seg_size_ = 0;      // bytes of records in the active segment, header included
  uint64_t file_bytes_ = 0;    // size of the active segment file (zeros past seg_size_)
  uint32_t seg_seed_ = 0;      // CRC seed of the active segment's records
  bool roll_pending_ = false;  // the active segment takes no more records (recovery ended it)
  bool closed_ = false;
  std::atomic<uint64_t> end_{0};
  std::atomic<uint64_t> durable_{0};
  std::atomic<bool> failed_{false};

  // Group commit, guarded by mu_ (never held during fdatasync).
  std::mutex mu_;
  std::condition_variable cv_;
  int sync_fd_ = -1;      // the active segment as the sync thread sees it
  uint64_t written_ = 0;  // end offset written to sync_fd_
  int syncing_fd_ = -1;   // the fd inside fdatasync right now
  int retired_fd_ = -1;   // an old segment fd to close after that fdatasync
  bool stop_ = false;
  std::thread sync_thread_;
  int durable_event_fd_ = -1;  // signalled after each sync that advanced durable_ (batch only)
  /// Durability none: bytes written between two background writeback starts.
  static constexpr uint64_t kNoneWritebackBytes = 1u << 20;
  uint64_t writeback_kicked_ = 0;  // end offset at the last writeback start (owner thread)

  // The spare segment, guarded by prep_mu_. The preparer thread creates it while spare_state_ is
  // kPreparing; the owner thread takes it when kReady, or creates it itself when kNone.
  enum class SpareState : uint8_t { kNone, kPreparing, kReady };
  std::mutex prep_mu_;
  std::condition_variable prep_cv_;
  SpareState spare_state_ = SpareState::kNone;
  int spare_fd_ = -1;
  int prep_error_ = 0;           // errno of the preparer's last failed attempt
  uint32_t recycled_slots_ = 0;  // bit N: recycled slot N holds a passed segment (prep_mu_)
  bool prep_stop_ = false;
  std::atomic<bool> prep_cancel_{false};  // makes a creation under way stop at close()
  std::thread prep_thread_;
  std::atomic<bool> prep_urgent_{false};  ///< the active segment is half full: stop pacing

  // Consumers: slots [0, consumer_count_) are live.
  std::mutex consumers_mu_;
  std::array<std::atomic<uint64_t>, kMaxConsumers> consumers_{};
  std::array<std::string, kMaxConsumers> consumer_names_;  ///< guarded by consumers_mu_
  std::array<std::atomic<uint64_t>, kMaxConsumers> consumer_limits_{};  ///< max_lag of each
  std::atomic<uint32_t> consumer_count_{0};

  // Segment start offsets, ascending; back() is the active one.
  std::mutex segments_mu_;
  std::vector<uint64_t> segments_;
};

}  // namespace tianhe::log::detail
