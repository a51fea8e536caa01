#include "sinks/store/store_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "sinks/store/store.h"
#include "sinks/store/store_block.h"

namespace tianhe::sinks::store::files {
namespace {

// A large file is removed in pieces: each freed extent is discarded on a `discard` mount, and
// one unlink of an 800 MB file held the log's flushes on the same disk for up to 36 ms (cut in
// 4 MiB pieces 10 ms apart, the same file left them as they were). Background thread only.
constexpr off_t kRemoveStepBytes = 4 << 20;
constexpr auto kRemoveStepPause = std::chrono::milliseconds(10);

/// Cuts the file down from its end in kRemoveStepBytes pieces, then unlinks it; at once when
/// `hurry` is set (the writer is closing). A crash midway leaves a shorter file that the next
/// removal takes up again (only files no reader needs any more are removed).
void remove_paced(const std::string& p, const std::atomic<bool>* hurry) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    struct stat st {};
    if (::fstat(fd, &st) == 0) {
      off_t size = st.st_size;
      while (size > kRemoveStepBytes && (hurry == nullptr || !hurry->load())) {
        size -= kRemoveStepBytes;
        if (::ftruncate(fd, size) != 0) break;
        std::this_thread::sleep_for(kRemoveStepPause);
      }
    }
    ::close(fd);
  }
  ::unlink(p.c_str());
}

}  // namespace

std::string path_of(const std::string& dir, int64_t id) {
  return dir + "/" + chunk_file_name(id);
}

std::string merged_path_of(const std::string& dir, int64_t id) {
  return dir + "/" + merged_chunk_file_name(id);
}

void unlink_db(const std::string& p, const std::atomic<bool>* hurry) {
  remove_paced(p, hurry);
  for (const char* suffix : {"-wal", "-shm", "-journal"}) ::unlink((p + suffix).c_str());
}

bool fsync_file(const std::string& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace tianhe::sinks::store::files
