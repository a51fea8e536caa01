// The shard-log writer: open (recovery of the last segment in recovery.cpp), append with
// rollover, consumer cursors and close. The spare segments and recycling are in
// segment_spares.cpp, the group-commit and writeback threads in sync_threads.cpp. Format and
// rules: README.md in this folder.
#include "log/shard_log.h"

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

void ShardLogImpl::start(const std::vector<uint64_t>& segments, int fd,
                         const detail::Recovered& rec) {
  const uint64_t seg_size = rec.end;
  const uint64_t file_bytes = rec.file_bytes;
  segments_.assign(segments.begin(), segments.end());
  seg_seed_ = frame_seed(segments_.back(), rec.version);
  roll_pending_ = rec.ended;
  fd_ = fd;
  seg_start_ = segments_.back();
  seg_size_ = seg_size;
  file_bytes_ = std::max(file_bytes, seg_size);
  const uint64_t end = seg_start_ + seg_size;
  end_.store(end, std::memory_order_relaxed);
  durable_.store(end, std::memory_order_release);
  written_ = end;
  sync_fd_ = fd;
  if (config_.durability == Durability::kBatch) {
    sync_thread_ = std::thread([this] { sync_loop(); });
    name_thread(sync_thread_, "log-sync");
  } else if (config_.durability == Durability::kNone) {
    writeback_kicked_ = end;
    sync_thread_ = std::thread([this] { writeback_loop(); });
    name_thread(sync_thread_, "log-sync");
  }
  prep_thread_ = std::thread([this] { prepare_loop(); });
  name_thread(prep_thread_, "log-prep");
  request_spare();
}

Result<void> ShardLogImpl::open_durable_event() {
  durable_event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (durable_event_fd_ < 0) return make_error("cannot create an eventfd: " + errno_text(errno));
  return {};
}

void ShardLogImpl::adopt_spare(int fd) noexcept {
  std::lock_guard lock(prep_mu_);
  spare_fd_ = fd;
  spare_state_ = SpareState::kReady;
}

void ShardLogImpl::adopt_recycled(uint32_t slots) noexcept {
  std::lock_guard lock(prep_mu_);
  recycled_slots_ = slots;
}

AppendStatus ShardLogImpl::append(std::span<const uint8_t> payload, uint64_t* end_offset) noexcept {
  const int64_t t0 = core::mono_ns();
  if (payload.size() > config_.max_record_bytes) return AppendStatus::kTooLarge;
  if (closed_ || failed_.load(std::memory_order_acquire)) return fail(AppendStatus::kIoError);
  const uint64_t frame = kRecordHeaderBytes + payload.size();
  if (consumer_count_.load(std::memory_order_acquire) > 0) {
    const uint64_t end = end_.load(std::memory_order_relaxed);
    const uint32_t n = consumer_count_.load(std::memory_order_acquire);
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t at = consumers_[i].load(std::memory_order_acquire);
      const uint64_t lag = end > at ? end - at : 0;
      const uint64_t limit =
          std::min(config_.max_backlog_bytes, consumer_limits_[i].load(std::memory_order_relaxed));
      if (lag + frame > limit) {
        stats_->backlog_full.fetch_add(1, std::memory_order_relaxed);
        return AppendStatus::kBacklogFull;
      }
    }
  }
  if (seg_size_ > config_.segment_bytes / 2) prep_urgent_.store(true, std::memory_order_relaxed);
  if (roll_pending_ ||
      (seg_size_ > kSegmentHeaderBytes && seg_size_ + frame > config_.segment_bytes)) {
    if (AppendStatus s = roll(); s != AppendStatus::kOk) return fail(s);
  }

  uint8_t header[kRecordHeaderBytes];
  write_frame_header(payload, header, seg_seed_);
  iovec iov[2] = {{header, kRecordHeaderBytes},
                  {const_cast<uint8_t*>(payload.data()), payload.size()}};
  const uint64_t file_before = file_bytes_;
  if (AppendStatus s = write_frame(iov, frame); s != AppendStatus::kOk) return fail(s);

  const uint64_t end = seg_start_ + seg_size_;
  end_.store(end, std::memory_order_release);
  switch (config_.durability) {
    case Durability::kSync: {
      const int64_t s0 = core::mono_ns();
      if (::fdatasync(fd_) != 0) {
        // The record may or may not be on disk: take it back so "nothing written unless kOk"
        // holds, and stop (an fdatasync error cannot be retried safely).
        seg_size_ -= frame;
        file_bytes_ = file_before;
        (void)undo_write(seg_size_, frame, frame);
        end_.store(end - frame, std::memory_order_release);
        stats_->sync_errors.fetch_add(1, std::memory_order_relaxed);
        failed_.store(true, std::memory_order_release);
        return fail(AppendStatus::kIoError);
      }
      stats_->sync_latency.observe_ns_shared(core::mono_ns() - s0);
      stats_->syncs.fetch_add(1, std::memory_order_relaxed);
      store_max(durable_, end);
      break;
    }
    case Durability::kBatch: {
      {
        std::lock_guard lock(mu_);
        written_ = end;
      }
      cv_.notify_one();
      break;
    }
    case Durability::kNone: {
      store_max(durable_, end);
      // Written-back in the background piece by piece, so that a rollover's fdatasync (on
      // this thread) finds little left to write instead of a whole segment.
      if (end - writeback_kicked_ >= kNoneWritebackBytes) {
        writeback_kicked_ = end;
        {
          std::lock_guard lock(mu_);
          written_ = end;
        }
        cv_.notify_one();
      }
      break;
    }
  }
  stats_->records_appended.fetch_add(1, std::memory_order_relaxed);
  stats_->bytes_appended.fetch_add(payload.size(), std::memory_order_relaxed);
  stats_->append_latency.observe_ns_shared(core::mono_ns() - t0);
  if (end_offset != nullptr) *end_offset = end;
  return AppendStatus::kOk;
}

uint64_t ShardLogImpl::durable_offset() const noexcept {
  return durable_.load(std::memory_order_acquire);
}

void ShardLogImpl::set_consumer_offset(uint32_t consumer, uint64_t offset) noexcept {
  if (consumer >= consumer_count_.load(std::memory_order_acquire)) {
    TH_BUG(false, "set_consumer_offset: unknown consumer index");
    return;
  }
  consumers_[consumer].store(offset, std::memory_order_release);
  delete_consumed_segments();
}

uint32_t ShardLogImpl::add_consumer(std::string_view name, uint64_t start_offset,
                                    uint64_t max_lag) {
  std::lock_guard lock(consumers_mu_);
  const uint32_t n = consumer_count_.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < n; ++i) {
    if (consumer_names_[i] == name) {
      consumers_[i].store(start_offset, std::memory_order_release);
      consumer_limits_[i].store(max_lag, std::memory_order_relaxed);
      return i;
    }
  }
  TH_CHECK(n < kMaxConsumers, "add_consumer: more than 64 consumers of one shard log");
  consumer_names_[n] = name;
  consumers_[n].store(start_offset, std::memory_order_relaxed);
  consumer_limits_[n].store(max_lag, std::memory_order_relaxed);
  consumer_count_.store(n + 1, std::memory_order_release);
  return n;
}

uint64_t ShardLogImpl::backlog_bytes() const noexcept {
  if (consumer_count_.load(std::memory_order_acquire) == 0) return 0;
  const uint64_t end = end_.load(std::memory_order_acquire);
  const uint64_t low = min_consumer();
  return end > low ? end - low : 0;
}

void ShardLogImpl::close() noexcept {
  if (closed_) return;
  closed_ = true;
  if (sync_thread_.joinable()) {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    sync_thread_.join();
  }
  if (prep_thread_.joinable()) {
    {
      std::lock_guard lock(prep_mu_);
      prep_stop_ = true;
    }
    prep_cancel_.store(true, std::memory_order_relaxed);
    prep_cv_.notify_all();
    prep_thread_.join();
  }
  // A ready spare stays for the next open (complete and synced, it saves writing a segment).
  if (spare_fd_ >= 0) ::close(std::exchange(spare_fd_, -1));
  if (retired_fd_ >= 0) ::close(std::exchange(retired_fd_, -1));
  if (fd_ >= 0) {
    if (!failed_.load(std::memory_order_acquire)) {
      if (::fdatasync(fd_) == 0) {
        stats_->syncs.fetch_add(1, std::memory_order_relaxed);
        store_max(durable_, end_.load(std::memory_order_relaxed));
      } else {
        stats_->sync_errors.fetch_add(1, std::memory_order_relaxed);
      }
    }
    ::close(std::exchange(fd_, -1));
  }
}

AppendStatus ShardLogImpl::fail(AppendStatus s) noexcept {
  stats_->append_errors.fetch_add(1, std::memory_order_relaxed);
  return s;
}

uint64_t ShardLogImpl::min_consumer() const noexcept {
  const uint32_t n = consumer_count_.load(std::memory_order_acquire);
  uint64_t low = UINT64_MAX;
  for (uint32_t i = 0; i < n; ++i) {
    low = std::min(low, consumers_[i].load(std::memory_order_acquire));
  }
  return low;
}

AppendStatus ShardLogImpl::write_frame(iovec* iov, uint64_t frame) noexcept {
  const uint64_t pos = seg_size_;
  uint64_t done = 0;
  int iovcnt = 2;
  while (done < frame) {
    const ssize_t n = ::pwritev(fd_, iov, iovcnt, static_cast<off_t>(pos + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // n == 0 cannot make progress; treat it like a full disk.
      const int err = n < 0 ? errno : ENOSPC;
      if (!undo_write(pos, done, frame)) {
        // The tail may hold a partial frame that we cannot remove: recovery will clear it, but
        // appending after it would bury it inside the stream.
        failed_.store(true, std::memory_order_release);
      }
      return status_for_errno(err);
    }
    done += static_cast<uint64_t>(n);
    // Advance the iovecs past what was written (short write: usually the disk filling up).
    auto left = static_cast<size_t>(n);
    while (iovcnt > 0 && left >= iov[0].iov_len) {
      left -= iov[0].iov_len;
      ++iov;
      --iovcnt;
    }
    if (iovcnt > 0) {
      iov[0].iov_base = static_cast<uint8_t*>(iov[0].iov_base) + left;
      iov[0].iov_len -= left;
    }
  }
  seg_size_ += frame;
  file_bytes_ = std::max(file_bytes_, seg_size_);
  return AppendStatus::kOk;
}

bool ShardLogImpl::undo_write(uint64_t pos, uint64_t written, uint64_t attempted) noexcept {
  bool ok = true;
  if (pos + attempted > file_bytes_) {
    ok = ::ftruncate(fd_, static_cast<off_t>(file_bytes_)) == 0;
  }
  const uint64_t zero_end = std::min(pos + written, file_bytes_);
  if (zero_end > pos) ok = detail::write_zeros(fd_, pos, zero_end - pos) && ok;
  return ok;
}

AppendStatus ShardLogImpl::roll() noexcept {
  const uint64_t start = seg_start_ + seg_size_;
  const int spare = take_spare();
  if (spare < 0) return status_for_errno(-spare);  // nothing changed: a later append retries
  Fd next(spare);
  const int64_t s0 = core::mono_ns();
  if (::fdatasync(fd_) != 0) {
    stats_->sync_errors.fetch_add(1, std::memory_order_relaxed);
    failed_.store(true, std::memory_order_release);
    return AppendStatus::kIoError;
  }
  stats_->sync_latency.observe_ns_shared(core::mono_ns() - s0);
  stats_->syncs.fetch_add(1, std::memory_order_relaxed);
  store_max(durable_, start);

  // Names on the stack and the directory's fd: a rollover allocates nothing.
  char name[detail::kSegmentNameBytes];
  detail::format_segment_name(start, name);
  if (::renameat(dir_fd_, kReadySpareName.data(), dir_fd_, name) != 0) {
    const int err = errno;
    ::unlinkat(dir_fd_, kReadySpareName.data(), 0);
    request_spare();
    return status_for_errno(err);
  }
  if (::fsync(dir_fd_) != 0) {
    ::unlinkat(dir_fd_, name, 0);
    stats_->sync_errors.fetch_add(1, std::memory_order_relaxed);
    failed_.store(true, std::memory_order_release);
    return AppendStatus::kIoError;
  }
  struct stat st {};
  const uint64_t next_bytes =
      ::fstat(next.fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : config_.segment_bytes;
  {
    std::lock_guard lock(segments_mu_);
    segments_.push_back(start);
  }
  const int old = fd_;
  fd_ = next.release();
  seg_start_ = start;
  seg_seed_ = frame_seed(start, kSegmentVersion);  // spares are always of the current version
  roll_pending_ = false;
  seg_size_ = kSegmentHeaderBytes;
  file_bytes_ = next_bytes;
  end_.store(start + kSegmentHeaderBytes, std::memory_order_release);
  bool close_old = true;
  {
    std::lock_guard lock(mu_);
    sync_fd_ = fd_;
    // The sync thread may be inside fdatasync(old) right now: it closes it when done.
    if (syncing_fd_ == old) {
      retired_fd_ = old;
      close_old = false;
    }
  }
  if (close_old) ::close(old);
  request_spare();
  return AppendStatus::kOk;
}

}  // namespace tianhe::log::detail

namespace tianhe::log {
namespace {

using detail::Fd;
using detail::ShardLogImpl;

}  // namespace

Result<std::unique_ptr<ShardLog>> ShardLog::open(const LogConfig& config, uint32_t shard,
                                                 LogStats* stats) {
  if (config.dir.empty()) return make_error("log.dir: empty: set the log directory");
  if (config.segment_bytes < kSegmentHeaderBytes + kRecordHeaderBytes) {
    return make_error("log.segment_bytes: " + std::to_string(config.segment_bytes) +
                      " is too small: use at least 1 MiB");
  }
  if (config.max_record_bytes == 0) return make_error("log.max_record_bytes: must be above 0");
  const std::string dir = detail::shard_dir(config.dir, shard);
  bool created = false;
  if (int err = detail::make_dirs(dir, &created); err != 0) {
    return make_error("cannot create log directory " + dir + ": " + errno_text(err));
  }
  if (created) {
    if (int err = detail::fsync_dir(config.dir); err != 0) {
      return make_error("cannot sync directory " + config.dir + ": " + errno_text(err));
    }
  }
  Fd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.fd < 0)
    return make_error("cannot open log directory " + dir + ": " + errno_text(errno));
  // One writer per shard directory: a second one would cut the first one's records as a torn
  // tail at recovery and then write over them.
  auto lock = core::DirLock::acquire(dir, "log shard " + std::to_string(shard));
  if (!lock.ok()) return lock.error();
  // A spare.tmp left by an earlier run may be half written: it is not part of the log.
  const std::string spare = detail::spare_path(dir);
  if (::unlink(spare.c_str()) != 0 && errno != ENOENT) {
    return make_error("cannot remove " + spare + ": " + errno_text(errno));
  }
  // A spare.ready is complete and synced (renamed only then), a spare.recycled a passed segment:
  // keep each unless the configured segment size changed or it is not of the current version.
  const auto usable_spare = [&](int fd) {
    struct stat rst {};
    uint8_t header[kSegmentHeaderBytes];
    return ::fstat(fd, &rst) == 0 &&
           static_cast<uint64_t>(rst.st_size) ==
               std::max(config.segment_bytes, kSegmentHeaderBytes) &&
           detail::pread_full(fd, header, sizeof header, 0) ==
               static_cast<ssize_t>(sizeof header) &&
           detail::check_segment_header(header) == detail::HeaderStatus::kOk &&
           detail::header_version(header) == kSegmentVersion;
  };
  const std::string ready = detail::ready_spare_path(dir);
  Fd ready_fd(::open(ready.c_str(), O_RDWR | O_CLOEXEC));
  if (ready_fd.fd >= 0 && !usable_spare(ready_fd.fd)) {
    ::close(ready_fd.release());
    if (::unlink(ready.c_str()) != 0 && errno != ENOENT) {
      return make_error("cannot remove " + ready + ": " + errno_text(errno));
    }
  }
  // Recycled segments in the slots still configured are kept when usable; others are deleted.
  uint32_t recycled_slots = 0;
  for (uint32_t slot = 0; slot < kMaxRecycledSegments; ++slot) {
    const std::string recycled = detail::recycled_spare_path(dir, slot);
    Fd rfd(::open(recycled.c_str(), O_RDONLY | O_CLOEXEC));
    if (rfd.fd < 0) continue;
    if (slot < config.recycle_segments && usable_spare(rfd.fd)) {
      recycled_slots |= 1u << slot;
    } else if (::unlink(recycled.c_str()) != 0 && errno != ENOENT) {
      return make_error("cannot remove " + recycled + ": " + errno_text(errno));
    }
  }
  auto listed = detail::list_segments(dir);
  if (!listed.ok()) return listed.error();
  std::vector<uint64_t> segments = std::move(*listed);
  auto impl = std::make_unique<ShardLogImpl>(config, shard, dir, dir_fd.release(), stats);
  impl->hold(std::move(lock.value()));

  if (segments.empty()) {
    // A new log: its first segment starts at offset 0. Made complete under a spare's name and
    // renamed, so that a crash never leaves a partial segment.
    const std::string path = detail::segment_path(dir, 0);
    const std::string* from = &ready;
    if (ready_fd.fd >= 0) {
      ::close(ready_fd.release());
    } else {
      from = &spare;
      Fd fd(detail::create_segment_file(dir, spare, config.segment_bytes, nullptr));
      if (fd.fd < 0) {
        impl->stats().segment_create_errors.fetch_add(1, std::memory_order_relaxed);
        return make_error("cannot create log segment " + path + " (" +
                          std::to_string(config.segment_bytes) +
                          " bytes, log.segment_bytes): " + errno_text(-fd.release()));
      }
      impl->stats().segments_created.fetch_add(1, std::memory_order_relaxed);
    }
    if (::rename(from->c_str(), path.c_str()) != 0) {
      return make_error("cannot rename " + *from + " to " + path + ": " + errno_text(errno));
    }
    if (int err = detail::fsync_dir(dir); err != 0) {
      return make_error("cannot sync directory " + dir + ": " + errno_text(err));
    }
    segments.push_back(0);
  }

  // Every segment but the last was synced before the next was created: check only that each
  // reaches the next one's name and, for version 1, that its records end there (zeros; in
  // version 2 the bytes there may be a recycled file's old contents or an abandoned tail).
  for (size_t i = 0; i + 1 < segments.size(); ++i) {
    const std::string path = detail::segment_path(dir, segments[i]);
    const uint64_t length = segments[i + 1] - segments[i];
    Fd sfd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat sst {};
    if (sfd.fd < 0 || ::fstat(sfd.fd, &sst) != 0) {
      return make_error("cannot open " + path + ": " + errno_text(errno));
    }
    const auto size = static_cast<uint64_t>(sst.st_size);
    uint8_t header[kSegmentHeaderBytes] = {};
    const bool v2 = detail::pread_full(sfd.fd, header, sizeof header, 0) ==
                        static_cast<ssize_t>(sizeof header) &&
                    detail::check_segment_header(header) == detail::HeaderStatus::kOk &&
                    detail::header_version(header) >= 2;
    uint8_t marker[kRecordHeaderBytes] = {};
    const size_t marker_bytes =
        size > length && !v2 ? static_cast<size_t>(std::min<uint64_t>(size - length, sizeof marker))
                             : 0;
    const bool ends_there = size >= length &&
                            detail::pread_full(sfd.fd, marker, marker_bytes, length) ==
                                static_cast<ssize_t>(marker_bytes) &&
                            detail::all_zero(marker, marker_bytes);
    if (!ends_there) {
      return make_error(
          path + ": size " + std::to_string(size) + " does not end at the next segment (" +
          detail::segment_name(segments[i + 1]) +
          "): the log directory was modified; restore it or move the later segments away");
    }
  }

  const std::string last = detail::segment_path(dir, segments.back());
  Fd fd(::open(last.c_str(), O_RDWR | O_CLOEXEC));
  if (fd.fd < 0) return make_error("cannot open " + last + ": " + errno_text(errno));
  auto rec =
      detail::recover_segment(fd.fd, last, segments.back(), config.max_record_bytes, impl->stats());
  if (!rec.ok()) return rec.error();
  if (ready_fd.fd >= 0) impl->adopt_spare(ready_fd.release());
  impl->adopt_recycled(recycled_slots);
  if (config.durability == Durability::kBatch) {
    if (auto r = impl->open_durable_event(); !r) return r.error();
  }
  impl->start(segments, fd.release(), *rec);
  // A segment recovery ended early is closed now, so that the directory says where its records
  // end (the next segment's name) before anyone reads it. If that fails (a full disk), the
  // first append tries again.
  if (rec->ended) (void)impl->roll_now();
  return std::unique_ptr<ShardLog>(std::move(impl));
}

}  // namespace tianhe::log
