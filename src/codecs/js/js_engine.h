// The SpiderMonkey embedding the JavaScript codecs run in: one JSContext per thread that calls
// a codec (a shard thread, or the thread of `tianhe codec run|test`), created lazily on that
// thread on first use and destroyed when the thread exits; JS_Init once per process. A codec's
// realm (its global, its compiled script) lives in the context of the thread that decodes with
// it; nothing is shared between threads. A process-wide watchdog thread stops a call that runs
// past its time budget (JS_RequestInterruptCallback; the context's interrupt callback refuses to
// go on) and has the callback check the realm's heap against its memory budget while it runs.
// The time budget is the calling thread's CPU time, so a thread the scheduler holds off its core
// is not stopped for the wait. The WebAssembly codecs (codecs/wasm) run in the same engine.
#pragma once

#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/counter.h"

struct JSContext;
class JSObject;

namespace tianhe::codecs::js {

/// Why the engine stopped a call (kNone: the script itself returned or threw).
enum class StopReason : uint8_t { kNone, kTimeout, kMemory };

/// Held by a codec for each realm it made: the engine frees the realm on its own thread (at
/// once when released there, else when the thread exits).
struct RealmHandle {
  std::atomic<bool> released{false};
  void* state = nullptr;  ///< the engine's per-realm state (js_engine.cpp)
};

/// One thread's JavaScript engine. Made by current() on the calling thread and only used
/// there, except release() (any thread) and the watchdog's interrupt requests.
class JsEngine {
 public:
  /// This thread's engine, made on first use; nullptr when SpiderMonkey cannot start one
  /// (out of memory). Kept alive by the thread and by every codec holding it.
  static std::shared_ptr<JsEngine> current() noexcept;
  ~JsEngine();
  JsEngine(const JsEngine&) = delete;
  JsEngine& operator=(const JsEngine&) = delete;

  /// The context (null once the owning thread exited).
  JSContext* cx() const noexcept { return cx_; }
  /// Whether the calling thread is the one this engine belongs to and it is still running.
  bool on_owner_thread() const noexcept;

  /// A new realm (global with the standard classes and `console`) holding the objects a codec
  /// keeps; `name` is for console lines. Owner thread. nullptr on failure.
  std::shared_ptr<RealmHandle> new_realm(std::string_view name);
  /// The global of a live realm (owner thread).
  JSObject* global(const RealmHandle& realm) const noexcept;
  /// Slot `i` (0..7) of a realm: objects the codec keeps rooted (its entry function, buffers).
  JSObject* slot(const RealmHandle& realm, size_t i) const noexcept;
  /// Roots `obj` in slot `i` of `realm` (owner thread).
  void set_slot(const RealmHandle& realm, size_t i, JSObject* obj) noexcept;
  /// Frees a realm: now when called on the owner thread, else when that thread next makes or
  /// frees a realm, or exits. Any thread.
  void release(const std::shared_ptr<RealmHandle>& realm) noexcept;

  /// Arms the watchdog for one call into `realm`: past `budget_ns` of this thread's CPU time the
  /// call is interrupted (kTimeout); while it runs its zone's GC heap is checked against
  /// `memory_budget` bytes (kMemory). Owner thread; no allocation, no system call. Returns the
  /// call's start (core::mono_ns()), so the caller need not read the clock again.
  int64_t begin_call(const RealmHandle& realm, int64_t budget_ns, uint64_t memory_budget) noexcept;
  /// Disarms the watchdog; returns why the call was stopped, if it was.
  StopReason end_call() noexcept;
  /// The GC heap bytes of `realm`'s zone now (owner thread).
  uint64_t heap_bytes(const RealmHandle& realm) const noexcept;
  /// Collects garbage in the whole context (owner thread): used after a call leaves its realm
  /// over its memory budget, before deciding the codec holds the memory for good.
  void collect_garbage() noexcept;
  /// Lines `console.*` wrote and lines it dropped by the rate limit (any thread).
  uint64_t console_lines() const noexcept { return console_lines_.get(); }
  uint64_t console_dropped() const noexcept { return console_dropped_.get(); }
  /// Where console lines go (stderr by default, rate-limited to 20 lines a second per thread);
  /// the tools print every line (`unlimited`).
  void set_console_unlimited(bool unlimited) noexcept { console_unlimited_ = unlimited; }

  /// For the interrupt callback and console (js_engine.cpp): not part of the interface.
  bool on_interrupt() noexcept;
  void console_line(std::string_view realm_name, std::string_view text) noexcept;
  /// For the watchdog thread: interrupts the running call when it is past its deadline, or
  /// asks for a memory check when it has run a tick; `now_ns` is core::mono_ns().
  void watchdog_tick(int64_t now_ns) noexcept;

 private:
  JsEngine() = default;
  void free_released() noexcept;

  struct RealmState;
  JSContext* cx_ = nullptr;
  uint64_t owner_thread_ = 0;            ///< a token of the owning thread (0 once it exited)
  std::atomic<int64_t> deadline_ns_{0};  ///< the running call's deadline (0: none running)
  std::atomic<int64_t> started_ns_{0};
  std::atomic<int64_t> expired_deadline_{0};  ///< the deadline of the call the watchdog expired
  clockid_t cpu_clock_{};                     ///< the owner thread's CPU-time clock
  // The watchdog thread's own view of the running call (only it reads or writes these).
  int64_t watched_deadline_ = 0;  ///< the deadline of the call it last saw running
  int64_t watched_cpu_ns_ = 0;    ///< the owner thread's CPU time when it first saw that call
  int64_t watched_wall_ns_ = 0;   ///< the wall time of that first sight
  std::atomic<bool> check_memory_{false};
  const RealmHandle* running_ = nullptr;
  uint64_t memory_budget_ = 0;
  StopReason stop_ = StopReason::kNone;
  mutable std::mutex mu_;  ///< guards realms_ (release() may come from another thread)
  std::vector<std::unique_ptr<RealmState>> realms_;
  core::Counter console_lines_, console_dropped_;
  int64_t console_window_ns_ = 0;
  uint32_t console_in_window_ = 0;
  bool console_unlimited_ = false;

  friend struct ThreadEngine;
};

}  // namespace tianhe::codecs::js
