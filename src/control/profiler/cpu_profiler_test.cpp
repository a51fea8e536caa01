// The profiler on this process: a thread burning CPU in a known function is found in the
// profile's samples; one profile at a time; the HTTP answers for bad input and a busy profiler.
#include "control/profiler/cpu_profiler.h"

#include <gtest/gtest.h>
#include <time.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "control/profiler/cpu_profile_format.h"
#include "control/profiler/profiler_routes.h"

namespace tianhe::control::profiler {
namespace {

int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

std::atomic<uint64_t> g_sink{0};

// Spins until this thread has used `cpu_ns` of CPU time: a CPU-clock sampler at 100 Hz takes
// about cpu_ns / 10 ms samples here, however loaded the machine is.
__attribute__((noinline)) void burn_cpu(int64_t cpu_ns) {
  const int64_t until = thread_cpu_ns() + cpu_ns;
  uint64_t x = 1;
  while (thread_cpu_ns() < until) {
    for (int i = 0; i < 1000; ++i) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  }
  g_sink.fetch_add(x, std::memory_order_relaxed);
}

bool supported() {
  return profiling_unsupported_reason().empty();
}

TEST(CpuProfiler, SamplesABusyThread) {
  if (!supported()) GTEST_SKIP() << profiling_unsupported_reason();
  CpuProfiler& p = CpuProfiler::instance();
  std::promise<CpuProfileResult> done;
  auto result = done.get_future();
  CpuProfileOptions o;
  o.duration = kMaxProfileDuration;  // ended by cancel() once the work is done
  const CpuProfileResult started =
      p.start(o, [&](CpuProfileResult r) { done.set_value(std::move(r)); });
  ASSERT_EQ(started.status, ProfileStatus::kOk) << started.message;
  EXPECT_TRUE(p.running());
  std::thread worker([] { burn_cpu(500'000'000); });
  worker.join();
  p.cancel();
  const CpuProfileResult r = result.get();
  EXPECT_FALSE(p.running());
  ASSERT_EQ(r.status, ProfileStatus::kOk) << r.message;
  EXPECT_GE(r.stats.threads_sampled, 2u);  // this one, the worker (and the profiler's)
  EXPECT_GT(r.stats.samples, 0u);
  auto parsed =
      parse_cpu_profile({reinterpret_cast<const uint8_t*>(r.bytes.data()), r.bytes.size()});
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->period_us, 10000u);
  EXPECT_EQ(parsed->samples.size(), r.stats.distinct_stacks);
  EXPECT_NE(parsed->maps.find("r-xp"), std::string::npos);
  // Samples whose interrupted pc lies in burn_cpu (a small function: its code is well within
  // 1 KiB of its start), and their stacks reach the thread's start.
  const auto begin = reinterpret_cast<uint64_t>(&burn_cpu);
  uint64_t in_burn = 0;
  uint64_t in_burn_with_stack = 0;
  uint64_t in_burn_leaf_only = 0;
  uint64_t sum = 0;
  for (const CpuProfileSample& s : parsed->samples) {
    sum += s.count;
    if (s.pcs[0] >= begin && s.pcs[0] < begin + 1024) {
      in_burn += s.count;
      // With a stack: burn_cpu's caller, the thread's start and further out. Without: a
      // sample taken before the profiler had mapped the new thread's stack (counted).
      (s.pcs.size() >= 3 ? in_burn_with_stack : in_burn_leaf_only) += s.count;
    }
  }
  EXPECT_EQ(sum, r.stats.samples);
  EXPECT_GT(in_burn_with_stack, 0u);
  EXPECT_LE(in_burn_leaf_only, r.stats.leaf_only);
  EXPECT_GT(in_burn, 0u);
}

TEST(CpuProfiler, OneProfileAtATime) {
  if (!supported()) GTEST_SKIP() << profiling_unsupported_reason();
  CpuProfiler& p = CpuProfiler::instance();
  std::promise<CpuProfileResult> done;
  auto result = done.get_future();
  CpuProfileOptions o;
  o.duration = kMaxProfileDuration;
  ASSERT_EQ(p.start(o, [&](CpuProfileResult r) { done.set_value(std::move(r)); }).status,
            ProfileStatus::kOk);
  const CpuProfileResult second = p.start(o, nullptr);
  EXPECT_EQ(second.status, ProfileStatus::kBusy);
  EXPECT_NE(second.message.find("already running"), std::string::npos);
  // The HTTP handler answers 409 with the same message, at once.
  core::HttpRequest req;
  req.query = "seconds=1";
  const core::HttpResponse resp = profile_response(req);
  EXPECT_EQ(resp.status, 409);
  EXPECT_NE(resp.body.find("already running"), std::string::npos);
  p.cancel();
  EXPECT_EQ(result.get().status, ProfileStatus::kOk);
  // And the next one may start.
  o.duration = kMinProfileDuration;
  EXPECT_EQ(p.run(o).status, ProfileStatus::kOk);
}

TEST(CpuProfiler, RefusesDurationsOutOfRange) {
  CpuProfileOptions o;
  o.duration = std::chrono::seconds(0);
  EXPECT_EQ(CpuProfiler::instance().start(o, nullptr).status, ProfileStatus::kInvalid);
  o.duration = kMaxProfileDuration + std::chrono::seconds(1);
  const CpuProfileResult r = CpuProfiler::instance().start(o, nullptr);
  EXPECT_EQ(r.status, ProfileStatus::kInvalid);
  EXPECT_NE(r.message.find("seconds: between 1 and 60; got 61"), std::string::npos) << r.message;
  for (const char* q : {"seconds=abc", "seconds=5x", "seconds=-1", "seconds=0", "seconds=61"}) {
    core::HttpRequest req;
    req.query = q;
    const core::HttpResponse resp = profile_response(req);
    EXPECT_EQ(resp.status, 400) << q;
    EXPECT_NE(resp.body.find("seconds"), std::string::npos) << q;
  }
}

TEST(CpuProfiler, HttpAnswerIsAFileWithCounts) {
  if (!supported()) GTEST_SKIP() << profiling_unsupported_reason();
  core::HttpRequest req;
  req.query = "seconds=1";
  const core::HttpResponse resp = profile_response(req);
  ASSERT_EQ(resp.status, 200) << resp.body;
  EXPECT_EQ(resp.content_type, "application/octet-stream");
  bool disposition = false;
  bool samples = false;
  for (const auto& [k, v] : resp.headers) {
    disposition |= k == "Content-Disposition" && v.find("filename=\"tianhe-") != std::string::npos;
    samples |= k == "X-Tianhe-Profile-Samples";
  }
  EXPECT_TRUE(disposition);
  EXPECT_TRUE(samples);
  EXPECT_TRUE(
      parse_cpu_profile({reinterpret_cast<const uint8_t*>(resp.body.data()), resp.body.size()})
          .ok());
}

TEST(CpuProfiler, RefusedWhereUnsupported) {
  if (supported()) GTEST_SKIP() << "profiling is supported in this build";
  CpuProfileOptions o;
  o.duration = kMinProfileDuration;
  const CpuProfileResult r = CpuProfiler::instance().run(o);
  EXPECT_EQ(r.status, ProfileStatus::kUnsupported);
  EXPECT_EQ(r.message, profiling_unsupported_reason());
  core::HttpRequest req;
  req.query = "seconds=1";
  const core::HttpResponse resp = profile_response(req);
  EXPECT_EQ(resp.status, 501);
  EXPECT_NE(resp.body.find("profiler"), std::string::npos);
}

// Takes deferred answers as the HTTP server does, from whichever thread gives them.
class Answers final : public core::HttpCompletionSink {
 public:
  void complete(uint64_t ticket, core::HttpResponse r) noexcept override {
    std::lock_guard<std::mutex> lock(mu_);
    answers_[ticket] = std::move(r);
    cv_.notify_all();
  }
  void abandon(uint64_t ticket) noexcept override {
    complete(ticket, core::HttpResponse::error(500, "abandoned"));
  }
  // The answer to `ticket` if it has come (now, without waiting).
  std::optional<core::HttpResponse> now(uint64_t ticket) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = answers_.find(ticket);
    if (it == answers_.end()) return std::nullopt;
    return it->second;
  }
  // Waits for the answer to `ticket`, with a deadline.
  std::optional<core::HttpResponse> wait(uint64_t ticket) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(120), [&] { return answers_.count(ticket) != 0; });
    const auto it = answers_.find(ticket);
    if (it == answers_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, core::HttpResponse> answers_;
};

TEST(CpuProfiler, DeferredRouteAnswersFromTheProfilerThreadAndABusyProfilerAtOnce) {
  auto answers = std::make_shared<Answers>();
  core::HttpRequest bad;
  bad.query = "seconds=abc";
  start_profile(bad, core::HttpResponder(answers, 1));
  auto r = answers->now(1);  // answered before start_profile returned
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  core::HttpRequest req;
  req.query = "seconds=60";  // ended by cancel() below: the second request surely overlaps it
  start_profile(req, core::HttpResponder(answers, 2));
  if (!supported()) {
    r = answers->now(2);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 501);
    return;
  }
  EXPECT_FALSE(answers->now(2));  // running, on the profiler's thread
  start_profile(req, core::HttpResponder(answers, 3));
  r = answers->now(3);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  EXPECT_NE(r->body.find("already running"), std::string::npos) << r->body;
  CpuProfiler::instance().cancel();
  r = answers->wait(2);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->content_type, "application/octet-stream");
  EXPECT_TRUE(
      parse_cpu_profile({reinterpret_cast<const uint8_t*>(r->body.data()), r->body.size()}).ok());
}

TEST(CpuProfiler, HeapAnswerIsJson) {
  const core::HttpResponse resp = heap_response();
  EXPECT_EQ(resp.status, 200);
  const auto j = nlohmann::json::parse(resp.body);
  EXPECT_GT(j["process"]["rss_bytes"].get<uint64_t>(), 0u);
}

}  // namespace
}  // namespace tianhe::control::profiler
