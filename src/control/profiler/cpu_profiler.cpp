// Sampling: one timer per thread on that thread's CPU clock (timer_create(2) with the clock id
// of /proc/self/task/<tid>, SIGEV_THREAD_ID), so each thread is sampled in proportion to the
// CPU it uses and the signal lands on the thread that used it. setitimer(ITIMER_PROF) counts
// the whole process's CPU time and lets the kernel pick the receiving thread, which skews a
// profile of a few busy shard threads; gperftools offers per-thread timers for the same reason.
#include "control/profiler/cpu_profiler.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

#include "control/profiler/cpu_profile_format.h"
#include "control/profiler/frame_walk.h"
#include "core/clock.h"

namespace tianhe::control::profiler {

namespace {

// Sample slots shared by every thread's handler; a slot holds one stack until the profiler
// thread copies it out (every kDrainEvery). At 100 Hz this holds 40 busy threads' samples for
// a second, ten times the drain interval.
constexpr size_t kSampleSlots = 4096;
// Distinct stacks one profile keeps; later new stacks are counted as dropped.
constexpr size_t kMaxStacks = 65536;
// Threads one profile gives a timer (each timer is a kernel object).
constexpr size_t kMaxThreads = 1024;
// Mappings considered as stacks.
constexpr size_t kMaxStackRanges = 16384;
// Times one profile re-reads the stack mappings after new threads appeared (each snapshot is
// kept until the profile ends, as a handler may still read it).
constexpr size_t kMaxStackSnapshots = 16;
// How often the profiler thread copies samples out and looks for new threads.
constexpr std::chrono::milliseconds kDrainEvery{50};

enum SlotState : uint32_t { kEmpty = 0, kWriting = 1, kFull = 2 };

struct SampleSlot {
  std::atomic<uint32_t> state{kEmpty};
  uint32_t depth = 0;
  std::array<uint64_t, kMaxStackDepth> pcs{};
};

// What the handler sees. Filled before the timers start; read-only for the handler except for
// slot states and counters.
struct SampleBuffer {
  std::array<SampleSlot, kSampleSlots> slots;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> dropped{0};
  std::atomic<uint64_t> leaf_only{0};
  // Sorted stack mappings; a published snapshot is never changed, only replaced.
  std::atomic<const std::vector<StackRange>*> stacks{nullptr};
};

static_assert(std::atomic<uint32_t>::is_always_lock_free &&
                  std::atomic<uint64_t>::is_always_lock_free,
              "the handler needs lock-free atomics (async-signal-safe)");

std::atomic<SampleBuffer*> g_buffer{nullptr};
std::atomic<int> g_in_handler{0};

// The SIGPROF handler: async-signal-safe (atomics, the frame walk, no calls into libc).
void on_sigprof(int /*sig*/, siginfo_t* /*info*/, void* context) {
  const int saved_errno = errno;
  g_in_handler.fetch_add(1);
  SampleBuffer* b = g_buffer.load();
  if (b != nullptr && context != nullptr) {
#if defined(__x86_64__)
    const auto* uc = static_cast<const ucontext_t*>(context);
    const auto pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
    const auto fp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RBP]);
    const auto sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
    SampleSlot& slot = b->slots[b->next.fetch_add(1, std::memory_order_relaxed) % kSampleSlots];
    uint32_t expected = kEmpty;
    if (slot.state.compare_exchange_strong(expected, kWriting, std::memory_order_acquire)) {
      size_t depth = 0;
      const std::vector<StackRange>* stacks = b->stacks.load(std::memory_order_acquire);
      const std::span<const StackRange> known =
          stacks != nullptr ? std::span<const StackRange>(*stacks) : std::span<const StackRange>();
      if (walk_frames(pc, fp, sp, known, slot.pcs, &depth) == WalkStatus::kLeafOnly) {
        b->leaf_only.fetch_add(1, std::memory_order_relaxed);
      }
      slot.depth = static_cast<uint32_t>(depth);
      slot.state.store(kFull, std::memory_order_release);
    } else {
      b->dropped.fetch_add(1, std::memory_order_relaxed);
    }
#endif
  }
  g_in_handler.fetch_sub(1);
  errno = saved_errno;
}

// The clock id of another thread's CPU clock (the kernel's MAKE_THREAD_CPUCLOCK(tid,
// CPUCLOCK_SCHED): ~tid << 3 | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED), what
// pthread_getcpuclockid returns for a pthread, here from a bare tid.
clockid_t thread_cpu_clock(pid_t tid) {
  return static_cast<clockid_t>((~static_cast<uint32_t>(tid) << 3) | 6U);
}

std::string read_text_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<pid_t> list_threads() {
  std::vector<pid_t> tids;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return tids;
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long v = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && v > 0) tids.push_back(static_cast<pid_t>(v));
  }
  closedir(d);
  return tids;
}

struct StackHash {
  size_t operator()(const std::vector<uint64_t>& v) const noexcept {
    uint64_t h = 1469598103934665603ULL;
    for (const uint64_t x : v) h = (h ^ x) * 1099511628211ULL;
    return static_cast<size_t>(h);
  }
};

}  // namespace

std::string profiling_unsupported_reason() {
#if defined(__SANITIZE_THREAD__)
  return "the CPU profiler is off in ThreadSanitizer builds (TSan defers signal handlers, so "
         "samples would not show the interrupted code); profile a release or dev build";
#elif !defined(__x86_64__) || !defined(__linux__)
  return "the CPU profiler walks x86-64 Linux stacks only; this build is for another target";
#else
  return "";
#endif
}

struct CpuProfiler::Impl {
  std::mutex mu;
  std::condition_variable cv;
  bool running = false;  // under mu
  bool cancel = false;   // under mu
  bool handler_installed = false;
  std::thread thread;
  std::unique_ptr<SampleBuffer> buffer;  // allocated by the first profile, reused after
  // Every stack snapshot published during the profile now running (freed when it ends).
  std::vector<std::unique_ptr<const std::vector<StackRange>>> snapshots;

  // Profiler-thread state of the profile now running.
  // Every thread seen; nullopt: seen without a timer (a kernel timer id may be 0).
  std::unordered_map<pid_t, std::optional<timer_t>> timers;
  std::unordered_map<std::vector<uint64_t>, uint64_t, StackHash> stacks;
  CpuProfileStats stats;

  Result<void> install_handler();
  void publish_stacks();
  bool add_new_threads(const itimerspec& every);
  void drain();
  void body(CpuProfileOptions options, const CpuProfileDone& done);
};

Result<void> CpuProfiler::Impl::install_handler() {
  if (handler_installed) return {};
  struct sigaction old {};
  if (sigaction(SIGPROF, nullptr, &old) != 0) {
    return Error{"cpu profile: sigaction(SIGPROF): " + std::string(std::strerror(errno))};
  }
  if ((old.sa_flags & SA_SIGINFO) != 0 ||
      (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
    return Error{
        "cpu profile: SIGPROF already has a handler in this process (another profiler "
        "preloaded?); remove it to profile from /debug/pprof/profile"};
  }
  struct sigaction sa {};
  sa.sa_sigaction = on_sigprof;
  sigemptyset(&sa.sa_mask);
  // SA_RESTART: a read or write interrupted by a sample resumes instead of failing with EINTR.
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  if (sigaction(SIGPROF, &sa, nullptr) != 0) {
    return Error{"cpu profile: sigaction(SIGPROF): " + std::string(std::strerror(errno))};
  }
  // Stays installed for the life of the process: a sample signal already queued when a timer
  // is deleted may still arrive, and SIGPROF's default action would end the process.
  handler_installed = true;
  return {};
}

// A new thread's stack was mapped before the thread could appear in /proc/self/task, so a
// snapshot taken after listing it covers its stack.
void CpuProfiler::Impl::publish_stacks() {
  if (snapshots.size() >= kMaxStackSnapshots) return;
  snapshots.push_back(std::make_unique<const std::vector<StackRange>>(
      stack_ranges_from_maps(read_text_file("/proc/self/maps"), kMaxStackRanges)));
  buffer->stacks.store(snapshots.back().get(), std::memory_order_release);
}

// Gives every thread not seen before a timer; true if any was new.
bool CpuProfiler::Impl::add_new_threads(const itimerspec& every) {
  bool added = false;
  for (const pid_t tid : list_threads()) {
    if (timers.count(tid) != 0) continue;
    if (timers.size() >= kMaxThreads) {
      ++stats.threads_unsampled;
      timers.emplace(tid, std::nullopt);  // seen: not counted again
      continue;
    }
    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev._sigev_un._tid = tid;
    timer_t t{};
    if (timer_create(thread_cpu_clock(tid), &sev, &t) != 0) {
      // ESRCH/EINVAL: the thread ended since it was listed.
      if (errno != ESRCH && errno != EINVAL) ++stats.threads_unsampled;
      continue;
    }
    if (timer_settime(t, 0, &every, nullptr) != 0) {
      timer_delete(t);
      ++stats.threads_unsampled;
      continue;
    }
    timers.emplace(tid, t);
    ++stats.threads_sampled;
    added = true;
  }
  return added;
}

void CpuProfiler::Impl::drain() {
  SampleBuffer& b = *buffer;
  std::vector<uint64_t> key;
  for (SampleSlot& slot : b.slots) {
    if (slot.state.load(std::memory_order_acquire) != kFull) continue;
    key.assign(slot.pcs.begin(), slot.pcs.begin() + slot.depth);
    slot.state.store(kEmpty, std::memory_order_release);
    ++stats.samples;
    auto it = stacks.find(key);
    if (it != stacks.end()) {
      ++it->second;
    } else if (stacks.size() < kMaxStacks) {
      stacks.emplace(key, 1);
    } else {
      ++stats.dropped_table_full;
      --stats.samples;
    }
  }
}

void CpuProfiler::Impl::body(CpuProfileOptions options, const CpuProfileDone& done) {
  pthread_setname_np(pthread_self(), "profiler");
  const long interval_ns = 1'000'000'000L / options.sample_hz;
  itimerspec every{};
  every.it_interval.tv_sec = interval_ns / 1'000'000'000L;
  every.it_interval.tv_nsec = interval_ns % 1'000'000'000L;
  every.it_value = every.it_interval;

  const int64_t t0 = core::mono_ns();
  const auto deadline = std::chrono::steady_clock::now() + options.duration;
  g_buffer.store(buffer.get());
  while (true) {
    // Threads may have started since the snapshot start() took: take another.
    if (add_new_threads(every)) publish_stacks();
    drain();
    std::unique_lock<std::mutex> lock(mu);
    if (cancel || std::chrono::steady_clock::now() >= deadline) break;
    cv.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + kDrainEvery),
                  [&] { return cancel; });
  }
  for (auto& [tid, t] : timers) {
    if (t) timer_delete(*t);
  }
  stats.duration_ns = core::mono_ns() - t0;
  // No handler reads the buffer once it is unpublished and every handler now running is done.
  g_buffer.store(nullptr);
  while (g_in_handler.load() != 0) sched_yield();
  drain();
  stats.dropped_buffer_full = buffer->dropped.load();
  stats.leaf_only = buffer->leaf_only.load();

  std::vector<CpuProfileSample> samples;
  samples.reserve(stacks.size());
  for (auto& [pcs, count] : stacks) samples.push_back({count, pcs});
  stats.distinct_stacks = samples.size();
  CpuProfileResult r;
  r.bytes =
      write_cpu_profile(1'000'000 / options.sample_hz, samples, read_text_file("/proc/self/maps"));
  r.stats = stats;
  timers.clear();
  stacks.clear();
  buffer->stacks.store(nullptr);
  snapshots.clear();
  {
    std::lock_guard<std::mutex> lock(mu);
    running = false;
  }
  cv.notify_all();
  if (done) done(std::move(r));
}

CpuProfiler& CpuProfiler::instance() {
  static CpuProfiler profiler;
  return profiler;
}

CpuProfiler::CpuProfiler() : impl_(std::make_unique<Impl>()) {}

CpuProfiler::~CpuProfiler() {
  cancel();
  if (impl_->thread.joinable()) impl_->thread.join();
}

CpuProfileResult CpuProfiler::start(const CpuProfileOptions& options, CpuProfileDone done) {
  CpuProfileResult r;
  if (options.duration < kMinProfileDuration || options.duration > kMaxProfileDuration) {
    r.status = ProfileStatus::kInvalid;
    r.message = "seconds: between " + std::to_string(kMinProfileDuration.count()) + " and " +
                std::to_string(kMaxProfileDuration.count()) + "; got " +
                std::to_string(options.duration.count());
    return r;
  }
  if (options.sample_hz < 1 || options.sample_hz > 1000) {
    r.status = ProfileStatus::kInvalid;
    r.message = "sample rate: between 1 and 1000 Hz; got " + std::to_string(options.sample_hz);
    return r;
  }
  if (std::string why = profiling_unsupported_reason(); !why.empty()) {
    r.status = ProfileStatus::kUnsupported;
    r.message = std::move(why);
    return r;
  }
  Impl& s = *impl_;
  std::unique_lock<std::mutex> lock(s.mu);
  if (s.running) {
    r.status = ProfileStatus::kBusy;
    r.message =
        "a CPU profile is already running (one at a time in the process); retry when it "
        "ends, in at most " +
        std::to_string(kMaxProfileDuration.count()) + " s";
    return r;
  }
  // The previous profile's thread has set running = false; it ends right after its callback.
  if (s.thread.joinable()) s.thread.join();
  if (auto ok = s.install_handler(); !ok.ok()) {
    r.status = ProfileStatus::kFailed;
    r.message = ok.error().message;
    return r;
  }
  if (!s.buffer) s.buffer = std::make_unique<SampleBuffer>();
  SampleBuffer& b = *s.buffer;
  for (SampleSlot& slot : b.slots) slot.state.store(kEmpty, std::memory_order_relaxed);
  b.next.store(0);
  b.dropped.store(0);
  b.leaf_only.store(0);
  s.snapshots.clear();
  s.publish_stacks();
  s.stats = CpuProfileStats{};
  s.running = true;
  s.cancel = false;
  s.thread = std::thread([&s, options, done = std::move(done)] { s.body(options, done); });
  return r;
}

CpuProfileResult CpuProfiler::run(const CpuProfileOptions& options) {
  std::promise<CpuProfileResult> finished;
  std::future<CpuProfileResult> result = finished.get_future();
  CpuProfileResult started =
      start(options, [&finished](CpuProfileResult r) { finished.set_value(std::move(r)); });
  if (started.status != ProfileStatus::kOk) return started;
  return result.get();
}

bool CpuProfiler::running() const noexcept {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->running;
}

void CpuProfiler::cancel() noexcept {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->cancel = true;
  }
  impl_->cv.notify_all();
}

}  // namespace tianhe::control::profiler
