#include "sinks/store/paced_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>

namespace tianhe::sinks::store {
namespace {

constexpr const char* kVfsName = "tianhe-paced";

sqlite3_vfs* g_base = nullptr;  // the default VFS this one wraps (set once, before use)
sqlite3_vfs g_vfs{};
std::atomic<uint64_t> g_kicks{0};

/// An open file: the base VFS's file follows this header in the same allocation.
struct PacedFile {
  sqlite3_file base;  // pMethods: kMethods (or nullptr when the open failed cleanly)
  int fd;             // our own read-only descriptor of the file, for sync_file_range; -1: none
  int64_t lo;         // range written since the last kick [lo, hi)
  int64_t hi;
  int64_t pending;   // bytes written since the last kick
  int64_t prev_lo;   // the range kicked last, waited for before the next kick
  int64_t prev_len;  // 0: nothing in flight
};

constexpr size_t kHeaderBytes = (sizeof(PacedFile) + 15) & ~size_t{15};

sqlite3_file* real(sqlite3_file* f) noexcept {
  return reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kHeaderBytes);
}

PacedFile* paced(sqlite3_file* f) noexcept {
  return reinterpret_cast<PacedFile*>(f);
}

void reset(PacedFile* p) noexcept {
  p->lo = INT64_MAX;
  p->hi = 0;
  p->pending = 0;
}

/// Starts the writeback of what was written since the last kick, after the previous kick's
/// writeback ended (so at most one piece per file is in flight and the writer runs at the pace
/// of the disk). Errors are left to SQLite's own fsync, which reports them.
void kick(PacedFile* p) noexcept {
  if (p->prev_len > 0) {
    (void)::sync_file_range(p->fd, p->prev_lo, p->prev_len, SYNC_FILE_RANGE_WAIT_BEFORE);
  }
  const int64_t len = p->hi - p->lo;
  (void)::sync_file_range(p->fd, p->lo, len, SYNC_FILE_RANGE_WRITE);
  p->prev_lo = p->lo;
  p->prev_len = len;
  reset(p);
  g_kicks.fetch_add(1, std::memory_order_relaxed);
}

int x_close(sqlite3_file* f) {
  PacedFile* p = paced(f);
  sqlite3_file* r = real(f);
  const int rc = r->pMethods != nullptr ? r->pMethods->xClose(r) : SQLITE_OK;
  if (p->fd >= 0) ::close(p->fd);
  p->fd = -1;
  return rc;
}

int x_read(sqlite3_file* f, void* buf, int amt, sqlite3_int64 off) {
  sqlite3_file* r = real(f);
  return r->pMethods->xRead(r, buf, amt, off);
}

int x_write(sqlite3_file* f, const void* buf, int amt, sqlite3_int64 off) {
  sqlite3_file* r = real(f);
  const int rc = r->pMethods->xWrite(r, buf, amt, off);
  PacedFile* p = paced(f);
  if (rc == SQLITE_OK && p->fd >= 0 && amt > 0) {
    p->lo = std::min<int64_t>(p->lo, off);
    p->hi = std::max<int64_t>(p->hi, off + amt);
    p->pending += amt;
    if (p->pending >= kPacedBytesPerSync) kick(p);
  }
  return rc;
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  sqlite3_file* r = real(f);
  return r->pMethods->xTruncate(r, size);
}

int x_sync(sqlite3_file* f, int flags) {
  sqlite3_file* r = real(f);
  const int rc = r->pMethods->xSync(r, flags);
  if (rc == SQLITE_OK) {
    PacedFile* p = paced(f);
    reset(p);
    p->prev_len = 0;  // the sync waited for everything
  }
  return rc;
}

int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  sqlite3_file* r = real(f);
  return r->pMethods->xFileSize(r, size);
}

int x_lock(sqlite3_file* f, int lock) {
  sqlite3_file* r = real(f);
  return r->pMethods->xLock(r, lock);
}

int x_unlock(sqlite3_file* f, int lock) {
  sqlite3_file* r = real(f);
  return r->pMethods->xUnlock(r, lock);
}

int x_check_reserved_lock(sqlite3_file* f, int* out) {
  sqlite3_file* r = real(f);
  return r->pMethods->xCheckReservedLock(r, out);
}

int x_file_control(sqlite3_file* f, int op, void* arg) {
  sqlite3_file* r = real(f);
  return r->pMethods->xFileControl(r, op, arg);
}

int x_sector_size(sqlite3_file* f) {
  sqlite3_file* r = real(f);
  return r->pMethods->xSectorSize(r);
}

int x_device_characteristics(sqlite3_file* f) {
  sqlite3_file* r = real(f);
  return r->pMethods->xDeviceCharacteristics(r);
}

int x_shm_map(sqlite3_file* f, int page, int page_size, int extend, void volatile** out) {
  sqlite3_file* r = real(f);
  if (r->pMethods->iVersion < 2) return SQLITE_IOERR_SHMMAP;
  return r->pMethods->xShmMap(r, page, page_size, extend, out);
}

int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  sqlite3_file* r = real(f);
  if (r->pMethods->iVersion < 2) return SQLITE_IOERR_SHMLOCK;
  return r->pMethods->xShmLock(r, offset, n, flags);
}

void x_shm_barrier(sqlite3_file* f) {
  sqlite3_file* r = real(f);
  if (r->pMethods->iVersion >= 2) r->pMethods->xShmBarrier(r);
}

int x_shm_unmap(sqlite3_file* f, int delete_flag) {
  sqlite3_file* r = real(f);
  if (r->pMethods->iVersion < 2) return SQLITE_OK;
  return r->pMethods->xShmUnmap(r, delete_flag);
}

int x_fetch(sqlite3_file* f, sqlite3_int64 off, int amt, void** out) {
  sqlite3_file* r = real(f);
  if (r->pMethods->iVersion < 3) {
    *out = nullptr;
    return SQLITE_OK;
  }
  return r->pMethods->xFetch(r, off, amt, out);
}

int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* ptr) {
  sqlite3_file* r = real(f);
  if (r->pMethods->iVersion < 3) return SQLITE_OK;
  return r->pMethods->xUnfetch(r, off, ptr);
}

const sqlite3_io_methods kMethods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

int x_open(sqlite3_vfs* /*vfs*/, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  PacedFile* p = paced(f);
  p->fd = -1;
  reset(p);
  p->prev_lo = 0;
  p->prev_len = 0;
  sqlite3_file* r = real(f);
  r->pMethods = nullptr;
  const int rc = g_base->xOpen(g_base, name, r, flags, out_flags);
  // SQLite calls xClose after a failed open only when pMethods is set: forward it then.
  p->base.pMethods = r->pMethods != nullptr ? &kMethods : nullptr;
  if (rc != SQLITE_OK) return rc;
  // Databases and WAL files are paced; temporary files (no name) are not.
  if (name != nullptr && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0) {
    p->fd = ::open(name, O_RDONLY | O_CLOEXEC);
  }
  return SQLITE_OK;
}

void register_vfs() noexcept {
  sqlite3_vfs* base = sqlite3_vfs_find(nullptr);
  if (base == nullptr) return;
  g_base = base;
  g_vfs = *base;  // every other method is the base VFS's (they see its pAppData)
  g_vfs.pNext = nullptr;
  g_vfs.zName = kVfsName;
  g_vfs.szOsFile = static_cast<int>(kHeaderBytes) + base->szOsFile;
  g_vfs.xOpen = x_open;
  if (sqlite3_vfs_register(&g_vfs, 0) != SQLITE_OK) g_base = nullptr;
}

}  // namespace

const char* paced_vfs_name() noexcept {
  static std::once_flag once;
  std::call_once(once, register_vfs);
  return g_base != nullptr ? kVfsName : nullptr;
}

uint64_t paced_vfs_kicks() noexcept {
  return g_kicks.load(std::memory_order_relaxed);
}

}  // namespace tianhe::sinks::store
