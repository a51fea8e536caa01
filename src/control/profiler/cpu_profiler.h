// A sampling CPU profiler for the running process: every thread is interrupted at a fixed rate
// of its own CPU time (one POSIX CPU-clock timer per thread, SIGPROF), the signal handler walks
// the interrupted stack by frame pointers into a preallocated buffer, and a profiler thread
// aggregates the stacks and writes the gperftools CPU profile format (cpu_profile_format.h).
// One profile at a time in the process (there is one SIGPROF); safe to call in production: the
// cost is bounded by rate x handler time per thread (README.md, docs/profiling.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tianhe::control::profiler {

/// Shortest profile a caller may ask for.
inline constexpr std::chrono::seconds kMinProfileDuration{1};
/// Longest profile a caller may ask for.
inline constexpr std::chrono::seconds kMaxProfileDuration{60};
/// The duration when the caller names none (the pprof convention).
inline constexpr std::chrono::seconds kDefaultProfileDuration{30};
/// Samples per second of each thread's CPU time (gperftools' default rate).
inline constexpr uint32_t kDefaultSampleHz = 100;

/// What one profile asks for.
struct CpuProfileOptions {
  std::chrono::seconds duration = kDefaultProfileDuration;  ///< kMin..kMaxProfileDuration
  uint32_t sample_hz = kDefaultSampleHz;                    ///< 1..1000 per thread
};

/// What a profile counted, sample by sample (also sent as response headers).
struct CpuProfileStats {
  uint64_t samples = 0;              ///< samples taken into the profile
  uint64_t dropped_buffer_full = 0;  ///< signals that found no free slot in the sample buffer
  uint64_t dropped_table_full = 0;   ///< samples of new stacks once the stack table was full
  uint64_t leaf_only = 0;            ///< samples whose stack was outside every known stack
                                     ///< mapping (kept with their interrupted pc alone)
  uint64_t threads_sampled = 0;      ///< threads that had a timer during the profile
  uint64_t threads_unsampled = 0;    ///< threads seen without a timer (the limit, or an error)
  uint64_t distinct_stacks = 0;      ///< records in the profile
  int64_t duration_ns = 0;           ///< how long the timers ran
};

/// The outcome of starting or running a profile.
enum class ProfileStatus : uint8_t {
  kOk,           ///< started (start) or finished (run, and the callback)
  kBusy,         ///< another profile runs now (HTTP 409)
  kInvalid,      ///< the options are out of range (HTTP 400)
  kUnsupported,  ///< not on this build or machine (HTTP 501)
  kFailed,       ///< a system call failed (HTTP 500)
};

/// A finished profile, or why there is none.
struct CpuProfileResult {
  ProfileStatus status = ProfileStatus::kOk;  ///< kOk: `bytes` holds the profile
  std::string message;                        ///< for an error: the cause and the fix
  std::string bytes;                          ///< the profile file (gperftools format)
  CpuProfileStats stats;                      ///< what the profile counted
};

/// Called once on the profiler thread with the finished profile (it must not start another).
using CpuProfileDone = std::function<void(CpuProfileResult)>;

/// The process's profiler (a singleton: SIGPROF and its handler are process-wide). start()
/// and run() may be called from any thread; the sampling runs on a thread of its own, so a
/// caller that cannot wait (an event loop) uses start() with a callback.
class CpuProfiler {
 public:
  /// The process's one profiler.
  static CpuProfiler& instance();
  /// Cancels a running profile and joins its thread.
  ~CpuProfiler();
  CpuProfiler(const CpuProfiler&) = delete;
  CpuProfiler& operator=(const CpuProfiler&) = delete;

  /// Starts a profile and returns at once: kOk (then `done` is called on the profiler thread
  /// when it ends), or kBusy / kInvalid / kUnsupported / kFailed with a message (and `done`
  /// is never called).
  CpuProfileResult start(const CpuProfileOptions& options, CpuProfileDone done);
  /// Starts a profile and waits for it to end (for `options.duration`, or less if cancelled).
  CpuProfileResult run(const CpuProfileOptions& options);
  /// True while a profile runs.
  bool running() const noexcept;
  /// Ends a running profile early; its callback still gets what was collected.
  void cancel() noexcept;

 private:
  CpuProfiler();
  struct Impl;                  ///< the profiler thread, its timers and the sample buffer
  std::unique_ptr<Impl> impl_;  ///< never null
};

/// Why this build cannot profile, or "" when it can (ThreadSanitizer defers signals, and the
/// frame walk is written for x86-64).
std::string profiling_unsupported_reason();

}  // namespace tianhe::control::profiler
