#include "runtime/totals.h"

#include <gtest/gtest.h>

namespace tianhe::runtime {
namespace {

TEST(Totals, RoundTripsThroughJson) {
  Totals t;
  t.reports_accepted = 12;
  t.log_appended_bytes = 3400;
  t.heap_allocations = 5;
  t.input_drops = 1;
  t.acks_dropped = 2;
  t.sink_lag_bytes = 77;
  t.sink_lag_seconds = 0.25;
  t.sink_background_work = 3;
  core::Log2Histogram h;
  h.observe_ns(1'500);      // 1 us: bucket 1
  h.observe_ns(3'000'000);  // 3 ms: bucket 12
  Totals::add(t.log_fsync_us, h);
  Totals::add(t.ack_latency_us, h);
  Totals::add(t.ack_latency_us, h);
  auto back = Totals::parse(t.json());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->reports_accepted, 12u);
  EXPECT_EQ(back->log_appended_bytes, 3400u);
  EXPECT_EQ(back->heap_allocations, 5u);
  EXPECT_EQ(back->input_drops, 1u);
  EXPECT_EQ(back->acks_dropped, 2u);
  EXPECT_EQ(back->sink_lag_bytes, 77u);
  EXPECT_EQ(back->sink_lag_seconds, 0.25);
  EXPECT_EQ(back->sink_background_work, 3u);
  EXPECT_EQ(back->log_fsync_us[1], 1u);
  EXPECT_EQ(back->log_fsync_us[12], 1u);
  EXPECT_EQ(back->ack_latency_us[12], 2u);
}

TEST(Totals, ParseNamesWhatIsWrong) {
  EXPECT_FALSE(Totals::parse("not json").ok());
  auto missing = Totals::parse(R"({"reports_accepted": 1})");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("log_appended_bytes"), std::string::npos);
  Totals t;
  t.log_fsync_us.resize(3);
  auto short_hist = Totals::parse(t.json());
  ASSERT_FALSE(short_hist.ok());
  EXPECT_NE(short_hist.error().message.find("3 buckets"), std::string::npos);
}

}  // namespace
}  // namespace tianhe::runtime
