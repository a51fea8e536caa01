// The cost of one sample, in its two parts: the kernel delivering a signal to the thread (and
// returning from it), and the handler's frame walk. Per-thread overhead at 100 Hz is
// (delivery + walk) x 100 per second of that thread's CPU time (docs/profiling.md).
#include <benchmark/benchmark.h>
#include <signal.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "control/profiler/cpu_profile_format.h"
#include "control/profiler/frame_walk.h"
#include "control/profiler/heap_stats.h"

namespace tianhe::control::profiler {
namespace {

std::vector<StackRange> self_stacks() {
  std::ifstream in("/proc/self/maps");
  std::ostringstream s;
  s << in.rdbuf();
  return stack_ranges_from_maps(s.str(), 100000);
}

__attribute__((noinline)) void walk_at_depth(int n, benchmark::State& state,
                                             const std::vector<StackRange>& stacks) {
  if (n > 0) {
    walk_at_depth(n - 1, state, stacks);
    asm volatile("" ::: "memory");  // not a tail call: every level keeps its frame
    return;
  }
  std::vector<uint64_t> out(kMaxStackDepth);
  int local = 0;
  const auto sp = reinterpret_cast<uintptr_t>(&local);
  const auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  size_t depth = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(walk_frames(1, fp, sp, stacks, out, &depth));
    benchmark::DoNotOptimize(depth);
  }
  state.counters["frames"] = static_cast<double>(depth);
}

// The handler's walk of a stack `range(0)` frames deep (plus the benchmark's own frames).
void BM_WalkFrames(benchmark::State& state) {
  const auto stacks = self_stacks();
  walk_at_depth(static_cast<int>(state.range(0)), state, stacks);
}
BENCHMARK(BM_WalkFrames)->Arg(8)->Arg(32)->Arg(60);

volatile sig_atomic_t g_signals = 0;
void on_signal(int /*sig*/) {
  g_signals = g_signals + 1;
}

// A signal sent to this thread and handled by an empty handler: the kernel's part of a sample
// (raise is one tgkill; delivery and sigreturn follow).
void BM_SignalDelivery(benchmark::State& state) {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  struct sigaction old {};
  sigaction(SIGUSR2, &sa, &old);
  for (auto _ : state) raise(SIGUSR2);
  sigaction(SIGUSR2, &old, nullptr);
}
BENCHMARK(BM_SignalDelivery);

// One GET /debug/heap snapshot (mallinfo2, malloc_info and its XML, /proc/self/status).
void BM_HeapSnapshot(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(read_heap_stats());
}
BENCHMARK(BM_HeapSnapshot);

}  // namespace
}  // namespace tianhe::control::profiler
