#include "core/sched.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace tianhe::core {
namespace {

// The slice the scheduler reports for the calling thread, in ns (-1 when it reports none).
long long reported_slice_ns() {
  std::ifstream in("/proc/thread-self/sched");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("se.slice", 0) != 0) continue;
    std::istringstream fields(line.substr(line.find(':') + 1));
    long long v = -1;
    fields >> v;
    return v;
  }
  return -1;
}

TEST(SchedTest, ZeroAsksForNothing) {
  EXPECT_FALSE(request_time_slice(std::chrono::microseconds(0)));
}

TEST(SchedTest, TheThreadGetsTheSliceItAskedFor) {
  bool granted = false;
  long long slice = -1;
  std::thread t([&] {
    granted = request_time_slice(std::chrono::microseconds(250));
    slice = reported_slice_ns();
  });
  t.join();
  if (!granted) GTEST_SKIP() << "this kernel has no custom time slices (Linux 6.12+)";
  if (slice < 0) GTEST_SKIP() << "this kernel does not report se.slice";
  EXPECT_EQ(slice, 250'000);
  // Only that thread: this one keeps its own.
  EXPECT_NE(reported_slice_ns(), 250'000);
}

}  // namespace
}  // namespace tianhe::core
