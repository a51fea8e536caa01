#include "codecs/js/js_engine.h"

#include <js/Conversions.h>
#include <js/Initialization.h>
#include <js/Interrupt.h>
#include <js/Realm.h>
#include <js/Stack.h>
#include <jsapi.h>
#include <jsfriendapi.h>
#include <pthread.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <optional>
#include <thread>

#include "core/clock.h"

namespace tianhe::codecs::js {

namespace {

/// The GC heap one thread's context may hold over all its codecs: a backstop behind the
/// per-codec memory budget (a call that reaches it fails as out of memory, the process goes on).
constexpr uint32_t kContextHeapBytes = 256u << 20;
/// Native stack a call may use before SpiderMonkey throws "too much recursion" (shard threads
/// have the default 8 MiB; sanitizer builds use several times more per frame).
constexpr size_t kStackQuotaBytes = 1u << 20;
/// How often the watchdog looks at running calls: a call stops at most this much after its
/// time budget.
constexpr std::chrono::microseconds kTick{1000};
/// console.* lines written per second per thread; the rest are counted as dropped.
constexpr uint32_t kConsoleLinesPerSecond = 20;

const JSClass kGlobalClass = {"global", JSCLASS_GLOBAL_FLAGS, &JS::DefaultGlobalClassOps};

/// The process-wide watchdog: one thread, started with the first engine, that ticks while the
/// process lives and looks at each engine's running call (atomics only on the calling side).
class Watchdog {
 public:
  static Watchdog& get() {
    static Watchdog* w = new Watchdog();  // never destroyed: engines may outlive statics
    return *w;
  }
  void add(JsEngine* e) {
    std::lock_guard lock(mu_);
    engines_.push_back(e);
    if (!started_) {
      started_ = true;
      std::thread([this] { run(); }).detach();
    }
  }
  void remove(JsEngine* e) {
    std::lock_guard lock(mu_);
    engines_.erase(std::remove(engines_.begin(), engines_.end(), e), engines_.end());
  }

 private:
  void run() {
    for (;;) {
      std::this_thread::sleep_for(kTick);
      const int64_t now = core::mono_ns();
      std::lock_guard lock(mu_);  // remove() waits for a tick in progress: cx stays valid
      for (JsEngine* e : engines_) e->watchdog_tick(now);
    }
  }
  std::mutex mu_;
  std::vector<JsEngine*> engines_;
  bool started_ = false;
};

bool interrupt_callback(JSContext* cx) {
  auto* e = static_cast<JsEngine*>(JS_GetContextPrivate(cx));
  return e == nullptr || e->on_interrupt();
}

uint64_t thread_token() noexcept {
  static thread_local const char tag = 0;
  return reinterpret_cast<uintptr_t>(&tag);
}

}  // namespace

struct JsEngine::RealmState {
  RealmState(JSContext* cx, std::string n) : global(cx), name(std::move(n)) {
    for (auto& s : slots) s.emplace(cx);
  }
  JS::PersistentRootedObject global;
  std::array<std::optional<JS::PersistentRootedObject>, 8> slots;
  std::string name;
  std::shared_ptr<RealmHandle> handle;
  JsEngine* engine = nullptr;
};

namespace {

// console.log / info / warn / error / debug: one line per call, the arguments converted with
// ToString and joined by spaces, to the debug log (rate-limited).
bool console_write(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  args.rval().setUndefined();
  auto* e = static_cast<JsEngine*>(JS_GetContextPrivate(cx));
  void* priv = JS::GetRealmPrivate(JS::GetCurrentRealmOrNull(cx));
  if (e == nullptr || priv == nullptr) return true;
  std::string line;
  for (unsigned i = 0; i < args.length() && line.size() < 4096; ++i) {
    JS::RootedString s(cx, JS::ToString(cx, args[i]));
    if (s == nullptr) return false;  // ToString threw (or was interrupted)
    JS::UniqueChars c = JS_EncodeStringToUTF8(cx, s);
    if (!c) return false;
    if (i > 0) line += ' ';
    line += c.get();
  }
  e->console_line(static_cast<const std::string&>(
                      *static_cast<std::string*>(priv)),  // RealmState::name is its first use
                  line);
  return true;
}

}  // namespace

/// Destroys this thread's engine (its realms, then its context) when the thread exits.
struct ThreadEngine {
  std::shared_ptr<JsEngine> engine;
  ~ThreadEngine() {
    if (!engine) return;
    Watchdog::get().remove(engine.get());
    {
      std::lock_guard lock(engine->mu_);
      engine->realms_.clear();  // unroots every object before the context goes
    }
    JS_DestroyContext(engine->cx_);
    engine->cx_ = nullptr;
    engine->owner_thread_ = 0;
  }
};

std::shared_ptr<JsEngine> JsEngine::current() noexcept {
  static thread_local ThreadEngine holder;
  if (holder.engine) return holder.engine;
  static std::once_flag once;
  static bool initialised = false;
  std::call_once(once, [] {
    initialised = JS_Init();
    // At exit, after every thread's engine is gone (the main thread's thread_local goes
    // before exit handlers run): SpiderMonkey's helper threads and locks are torn down before
    // the library's own static destructors run.
    if (initialised) std::atexit([] { JS_ShutDown(); });
  });
  if (!initialised) return nullptr;
  std::shared_ptr<JsEngine> e;
  try {
    e.reset(new JsEngine());
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
  e->cx_ = JS_NewContext(kContextHeapBytes);
  if (e->cx_ == nullptr) return nullptr;
  JS_SetNativeStackQuota(e->cx_, kStackQuotaBytes);
  if (!JS::InitSelfHostedCode(e->cx_)) {
    JS_DestroyContext(e->cx_);
    return nullptr;
  }
  JS_SetContextPrivate(e->cx_, e.get());
  JS_AddInterruptCallback(e->cx_, interrupt_callback);
  if (pthread_getcpuclockid(pthread_self(), &e->cpu_clock_) != 0) e->cpu_clock_ = CLOCK_MONOTONIC;
  e->owner_thread_ = thread_token();
  Watchdog::get().add(e.get());
  holder.engine = e;
  return e;
}

JsEngine::~JsEngine() = default;

bool JsEngine::on_owner_thread() const noexcept {
  return cx_ != nullptr && owner_thread_ == thread_token();
}

std::shared_ptr<RealmHandle> JsEngine::new_realm(std::string_view name) {
  if (!on_owner_thread()) return nullptr;
  free_released();
  auto state = std::make_unique<RealmState>(cx_, std::string(name));
  JS::RealmOptions options;
  JS::RootedObject g(
      cx_, JS_NewGlobalObject(cx_, &kGlobalClass, nullptr, JS::FireOnNewGlobalHook, options));
  if (g == nullptr) return nullptr;
  {
    JSAutoRealm ar(cx_, g);
    if (!JS::InitRealmStandardClasses(cx_)) return nullptr;
    JS::RootedObject console(cx_, JS_NewPlainObject(cx_));
    if (console == nullptr) return nullptr;
    for (const char* fn : {"log", "info", "warn", "error", "debug"}) {
      if (JS_DefineFunction(cx_, console, fn, console_write, 0, 0) == nullptr) return nullptr;
    }
    if (!JS_DefineProperty(cx_, g, "console", console, 0)) return nullptr;
    JS::SetRealmPrivate(JS::GetObjectRealmOrNull(g), &state->name);
  }
  state->global = g;
  state->engine = this;
  auto handle = std::make_shared<RealmHandle>();
  handle->state = state.get();
  state->handle = handle;
  std::lock_guard lock(mu_);
  realms_.push_back(std::move(state));
  return handle;
}

JSObject* JsEngine::global(const RealmHandle& realm) const noexcept {
  return static_cast<RealmState*>(realm.state)->global;
}

JSObject* JsEngine::slot(const RealmHandle& realm, size_t i) const noexcept {
  return *static_cast<RealmState*>(realm.state)->slots[i];
}

void JsEngine::set_slot(const RealmHandle& realm, size_t i, JSObject* obj) noexcept {
  *static_cast<RealmState*>(realm.state)->slots[i] = obj;
}

void JsEngine::release(const std::shared_ptr<RealmHandle>& realm) noexcept {
  if (!realm) return;
  realm->released.store(true, std::memory_order_release);
  if (on_owner_thread()) free_released();
}

void JsEngine::free_released() noexcept {
  std::lock_guard lock(mu_);
  std::erase_if(realms_, [](const std::unique_ptr<RealmState>& s) {
    return s->handle->released.load(std::memory_order_acquire);
  });
}

int64_t JsEngine::begin_call(const RealmHandle& realm, int64_t budget_ns,
                             uint64_t memory_budget) noexcept {
  running_ = &realm;
  memory_budget_ = memory_budget;
  stop_ = StopReason::kNone;
  const int64_t now = core::mono_ns();
  started_ns_.store(now, std::memory_order_relaxed);
  deadline_ns_.store(now + budget_ns, std::memory_order_release);
  return now;
}

StopReason JsEngine::end_call() noexcept {
  deadline_ns_.store(0, std::memory_order_release);
  running_ = nullptr;
  return stop_;
}

uint64_t JsEngine::heap_bytes(const RealmHandle& realm) const noexcept {
  return ::js::GetGCHeapUsageForObjectZone(global(realm));
}

void JsEngine::collect_garbage() noexcept {
  JS_GC(cx_);
}

bool JsEngine::on_interrupt() noexcept {
  if (running_ == nullptr) return true;
  const int64_t deadline = deadline_ns_.load(std::memory_order_relaxed);
  // The watchdog names the call it expired by its deadline: a late request meant for an
  // earlier call finds another deadline and lets this one go on.
  if (deadline != 0 && expired_deadline_.load(std::memory_order_acquire) == deadline) {
    stop_ = StopReason::kTimeout;
    return false;  // uncatchable: the script cannot catch or finally its way past it
  }
  if (check_memory_.exchange(false, std::memory_order_relaxed) &&
      heap_bytes(*running_) > memory_budget_) {
    stop_ = StopReason::kMemory;
    return false;
  }
  return true;
}

void JsEngine::watchdog_tick(int64_t now_ns) noexcept {
  const int64_t deadline = deadline_ns_.load(std::memory_order_acquire);
  if (deadline == 0) return;
  const int64_t started = started_ns_.load(std::memory_order_relaxed);
  auto thread_cpu_ns = [this] {
    struct timespec ts {};
    // The thread's clock fails once the thread is gone: count that as the budget spent.
    if (clock_gettime(cpu_clock_, &ts) != 0) return INT64_MAX / 2;
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  };
  if (deadline != watched_deadline_) {
    // The first tick that sees this call: the owner's CPU time from here on is what it spends
    // (one system call per call a tick finds running; none on the calling thread).
    watched_deadline_ = deadline;
    watched_cpu_ns_ = thread_cpu_ns();
    watched_wall_ns_ = now_ns;
  }
  constexpr int64_t kTickNs = std::chrono::nanoseconds(kTick).count();
  // Past the budget in wall time, the call is stopped once the thread has had the budget in CPU
  // time (the time before the first sight, under a tick, counted as spent).
  if (now_ns >= deadline &&
      thread_cpu_ns() - watched_cpu_ns_ + std::min<int64_t>(watched_wall_ns_ - started, kTickNs) >=
          deadline - started) {
    expired_deadline_.store(deadline, std::memory_order_release);
    JS_RequestInterruptCallback(cx_);
  } else if (now_ns - started >= kTickNs) {
    check_memory_.store(true, std::memory_order_relaxed);
    JS_RequestInterruptCallback(cx_);
  }
}

void JsEngine::console_line(std::string_view realm_name, std::string_view text) noexcept {
  if (!console_unlimited_) {
    const int64_t now = core::mono_ns();
    if (now - console_window_ns_ >= 1'000'000'000) {
      console_window_ns_ = now;
      console_in_window_ = 0;
    }
    if (++console_in_window_ > kConsoleLinesPerSecond) {
      console_dropped_.add();
      return;
    }
  }
  console_lines_.add();
  std::fprintf(stderr, "codec.js %.*s: %.*s\n", static_cast<int>(realm_name.size()),
               realm_name.data(), static_cast<int>(text.size()), text.data());
}

}  // namespace tianhe::codecs::js
