#include "app/args.h"

#include <gtest/gtest.h>

namespace tianhe::app {
namespace {

TEST(Args, OptionsFlagsAndErrors) {
  const char* argv[] = {"tianhe", "simulate", "--rate", "5k", "--ack", "--target=1.2.3.4:5", "x"};
  auto a = Args::parse(7, const_cast<char**>(argv), 2, {"ack"}, {"rate", "target"});
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->u64("rate", 0).value(), 5000u);
  EXPECT_TRUE(a->has("ack"));
  EXPECT_EQ(a->str("target"), "1.2.3.4:5");
  EXPECT_EQ(a->positional().size(), 1u);

  const char* bad[] = {"tianhe", "simulate", "--rat", "5"};
  auto b = Args::parse(4, const_cast<char**>(bad), 2, {}, {"rate"});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("--rat"), std::string::npos);

  const char* missing[] = {"tianhe", "simulate", "--rate"};
  EXPECT_FALSE(Args::parse(3, const_cast<char**>(missing), 2, {}, {"rate"}).ok());
}

TEST(Args, Durations) {
  EXPECT_DOUBLE_EQ(parse_seconds("500ms", "d").value(), 0.5);
  EXPECT_DOUBLE_EQ(parse_seconds("2m", "d").value(), 120);
  EXPECT_DOUBLE_EQ(parse_seconds("7", "d").value(), 7);
  EXPECT_FALSE(parse_seconds("7 parsecs", "d").ok());
}

TEST(Args, Times) {
  const int64_t now = 1'700'000'000'000'000'000;
  EXPECT_EQ(parse_time("now", now, "t").value(), now);
  EXPECT_EQ(parse_time("-1h", now, "t").value(), now - 3'600'000'000'000);
  EXPECT_EQ(parse_time("123", now, "t").value(), 123);
  EXPECT_EQ(parse_time("2023-11-14T22:13:20Z", now, "t").value(), now);
  EXPECT_EQ(parse_time("2023-11-14T22:13:20.5Z", now, "t").value(), now + 500'000'000);
  auto bad = parse_time("yesterday", now, "--from");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("--from"), std::string::npos);
  EXPECT_EQ(format_time(now + 5), "2023-11-14T22:13:20.000000005Z");
}

}  // namespace
}  // namespace tianhe::app
