// How the HTTP thread reads a protocol's per-peer sessions, which only their shard thread may
// touch: it leaves a question (a cursor and a page size) in the ingest's mailbox and waits, with
// a deadline, for the shard thread to answer it from its loop. The shard pays one relaxed
// atomic load per loop turn when nobody asks. Serves /debug/sessions?protocol=.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "core/result.h"

namespace tianhe::runtime {

/// A page of one shard's sessions, for /debug/sessions.
struct SessionPage {
  std::vector<std::string> sessions;  ///< each a JSON object's text
  uint64_t next = 0;                  ///< cursor after the last one listed (pass as `after`)
  bool more = false;                  ///< sessions may follow `next`
  uint64_t total = 0;                 ///< sessions the shard holds now
};

/// Most sessions one page lists.
inline constexpr uint32_t kMaxSessionPage = 1000;

/// One ingest's mailbox: any thread asks, its shard thread answers.
class SessionMailbox {
 public:
  SessionMailbox();
  ~SessionMailbox();
  SessionMailbox(const SessionMailbox&) = delete;
  SessionMailbox& operator=(const SessionMailbox&) = delete;

  /// An eventfd readable while a question waits (-1 when none could be made: the shard's
  /// loop still looks at every turn, within its idle wait). For Ingest::watches().
  int fd() const noexcept { return fd_; }

  /// Asks for up to `limit` sessions after cursor `after` (0: from the start) and waits up to
  /// `timeout` for the shard thread's answer; an error when it did not answer in time (the
  /// shard is stopped or stuck). Callers are served one at a time.
  Result<SessionPage> ask(uint64_t after, uint32_t limit, std::chrono::milliseconds timeout);

  /// Shard thread (every loop turn, e.g. at the top of poll_input): when a question waits,
  /// answers it with `fill(after, limit, page)`. Cheap when none waits.
  /// Building the page allocates: should that fail, the asker gets an error, the shard goes on.
  template <typename F>
  void serve(F&& fill) noexcept {
    if (!asked_.load(std::memory_order_acquire)) return;
    take_signal();
    try {
      std::lock_guard<std::mutex> lock(mu_);
      asked_.store(false, std::memory_order_relaxed);
      if (!pending_) return;  // the asker gave up
      failed_ = false;
      try {
        page_ = SessionPage{};
        fill(after_, limit_, page_);
      } catch (...) {
        page_ = SessionPage{};
        failed_ = true;
      }
      pending_ = false;
      answered_ = true;
      cv_.notify_all();
    } catch (...) {  // the mutex could not be taken: the asker times out
    }
  }

 private:
  void take_signal() noexcept;

  int fd_ = -1;
  std::atomic<bool> asked_{false};
  std::mutex ask_mu_;  ///< one question at a time
  std::mutex mu_;      ///< the fields below
  std::condition_variable cv_;
  bool pending_ = false;
  bool answered_ = false;
  bool failed_ = false;  ///< the page could not be built (out of memory)
  uint64_t after_ = 0;
  uint32_t limit_ = 0;
  SessionPage page_;
};

}  // namespace tianhe::runtime
