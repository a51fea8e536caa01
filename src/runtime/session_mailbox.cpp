#include "runtime/session_mailbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

namespace tianhe::runtime {

SessionMailbox::SessionMailbox() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {}

SessionMailbox::~SessionMailbox() {
  if (fd_ >= 0) ::close(fd_);
}

void SessionMailbox::take_signal() noexcept {
  if (fd_ < 0) return;
  uint64_t n = 0;
  [[maybe_unused]] const ssize_t r = ::read(fd_, &n, sizeof n);
}

Result<SessionPage> SessionMailbox::ask(uint64_t after, uint32_t limit,
                                        std::chrono::milliseconds timeout) {
  std::lock_guard<std::mutex> one(ask_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  after_ = after;
  limit_ = std::min(limit, kMaxSessionPage);
  pending_ = true;
  answered_ = false;
  asked_.store(true, std::memory_order_release);
  if (fd_ >= 0) {
    const uint64_t one_signal = 1;
    [[maybe_unused]] const ssize_t w = ::write(fd_, &one_signal, sizeof one_signal);
  }
  if (!cv_.wait_for(lock, timeout, [this] { return answered_; })) {
    pending_ = false;  // a late serve() finds nothing to answer
    return make_error("the shard did not answer within " + std::to_string(timeout.count()) +
                      " ms (stopped or overloaded); try again");
  }
  answered_ = false;
  if (failed_)
    return make_error("the shard could not build the page (out of memory); try a smaller limit");
  return std::move(page_);
}

}  // namespace tianhe::runtime
