#include "core/result.h"

#include <gtest/gtest.h>

#include <string>

namespace tianhe {
namespace {

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return make_error(std::string("'") + c + "' is not a digit; use 0-9");
  return c - '0';
}

TEST(Result, HoldsAValueOrAnError) {
  auto ok = parse_digit('7');
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value(), 7);
  EXPECT_EQ(*ok, 7);
  auto bad = parse_digit('x');
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "'x' is not a digit; use 0-9");
}

// Reading a value that is not there is a caller's bug: the process stops with the error's
// message on stderr, not with an uncaught exception from std::variant.
TEST(ResultDeathTest, ValueOfAnErrorAbortsWithItsMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto bad = parse_digit('x');
  EXPECT_DEATH((void)bad.value(), "fatal: .*'x' is not a digit; use 0-9");
  EXPECT_DEATH((void)*bad, "'x' is not a digit");
  EXPECT_DEATH((void)std::move(bad).value(), "'x' is not a digit");
  auto ok = parse_digit('1');
  EXPECT_DEATH((void)ok.error(), "fatal: error\\(\\) of a Result that holds a value");
}

}  // namespace
}  // namespace tianhe
