#include "sinks/common/dead_letter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/clock.h"
#include "core/metrics_json.h"
#include "sinks/common/record.h"

namespace tianhe::sinks {

DeadLetter::DeadLetter(const std::string& data_dir, const std::string& sink_name,
                       uint64_t max_bytes)
    : path_((std::filesystem::path(data_dir) / "dead-letter" / (sink_name + ".jsonl")).string()),
      max_bytes_(max_bytes) {}

DeadLetter::~DeadLetter() {
  (void)sync();
  if (fd_ >= 0) ::close(fd_);
}

void DeadLetter::add(const core::Report& r, const pipeline::Registry* registry,
                     std::string_view reason, uint32_t attempts) {
  std::string line = "{\"dead_lettered_ns\":" + std::to_string(core::wall_ns()) +
                     ",\"attempts\":" + std::to_string(attempts) + ",\"reason\":";
  core::append_json_string(line, reason);
  line += ",\"record\":";
  append_record_json(line, r, registry);
  line += "}\n";
  if (size_ + buffer_.size() + line.size() > max_bytes_) {
    overflowed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  buffer_ += line;
  ++buffered_;
}

Result<void> DeadLetter::sync() {
  if (buffer_.empty()) return {};
  if (fd_ < 0) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path(), ec);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return make_error("dead-letter file " + path_ + ": " + std::strerror(errno) +
                        "; check that the data directory is writable");
    }
    struct stat st {};
    if (::fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
  }
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      buffer_.erase(0, done);  // what was written stays written; the rest is retried
      size_ += done;
      return make_error("dead-letter file " + path_ + ": " + std::strerror(e));
    }
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd_) != 0) {
    return make_error("dead-letter file " + path_ + ": fdatasync: " + std::strerror(errno));
  }
  size_ += buffer_.size();
  records_.fetch_add(buffered_, std::memory_order_relaxed);
  buffer_.clear();
  buffered_ = 0;
  return {};
}

}  // namespace tianhe::sinks
