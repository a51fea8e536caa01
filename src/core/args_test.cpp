#include "core/args.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace tianhe::core {
namespace {

/// Args of `tianhe test --<name> <value>` for one option `name`.
Args one(const std::string& name, const std::string& value) {
  std::vector<std::string> words{"tianhe", "test", "--" + name, value};
  std::vector<char*> argv;
  argv.reserve(words.size());
  for (auto& w : words) argv.push_back(w.data());
  auto a = Args::parse(static_cast<int>(argv.size()), argv.data(), 2, {}, {name});
  EXPECT_TRUE(a.ok()) << a.error().message;
  return a.ok() ? std::move(a.value()) : Args();
}

/// The error message of `r`, or "(no error)".
template <typename T>
std::string error_of(const Result<T>& r) {
  return r.ok() ? "(no error)" : r.error().message;
}

/// Whether `text` holds every one of `parts`.
bool has_all(const std::string& text, std::initializer_list<const char*> parts) {
  for (const char* p : parts) {
    if (text.find(p) == std::string::npos) return false;
  }
  return true;
}

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
  EXPECT_DOUBLE_EQ(parse_seconds("1.5h", "d").value(), 5400);
  EXPECT_DOUBLE_EQ(parse_seconds("250us", "d").value(), 250e-6);
  EXPECT_DOUBLE_EQ(parse_seconds("2d", "d").value(), 172800);
  EXPECT_FALSE(parse_seconds("7 parsecs", "d").ok());
}

TEST(Args, BadDurationsNameTheOptionAndTheFix) {
  auto r = one("duration", "10x").seconds("duration", 10);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message,
            "--duration: \"10x\" is not a duration; use seconds or a number with a unit (us, ms, "
            "s, m, h, d), e.g. 10, 500ms, 2m");
  for (const char* bad : {"", "x", "-1", "+5", " 5", "5 ", "1.2.3", "5sec", "nan", "inf", "0x10",
                          "1e3", "5S", "ms"}) {
    auto b = parse_seconds(bad, "--drain");
    EXPECT_TRUE(has_all(error_of(b), {"--drain", "is not a duration", "e.g. 10, 500ms"}))
        << "'" << bad << "': " << error_of(b);
  }
  auto short_one = one("duration", "50ms").seconds("duration", 10, 0.1);
  EXPECT_TRUE(has_all(error_of(short_one), {"--duration", "\"50ms\"", "at least 0.1 s"}))
      << error_of(short_one);
  EXPECT_DOUBLE_EQ(one("duration", "0.1").seconds("duration", 10, 0.1).value(), 0.1);
  EXPECT_DOUBLE_EQ(Args().seconds("duration", 10, 0.1).value(), 10);  // absent: the fallback
}

TEST(Args, WholeNumbers) {
  EXPECT_EQ(parse_u64("0", "n").value(), 0u);
  EXPECT_EQ(parse_u64("500", "n").value(), 500u);
  EXPECT_EQ(parse_u64("5k", "n").value(), 5000u);
  EXPECT_EQ(parse_u64("2.5M", "n").value(), 2'500'000u);
  EXPECT_EQ(parse_u64("3G", "n").value(), 3'000'000'000u);
  EXPECT_EQ(parse_u64("18446744073709551615", "n").value(), UINT64_MAX);
  for (const char* bad : {"", "12x", "x12", "-1", "+1", " 5", "5 ", "1.5", "1.2.3", "0x10", "1e3",
                          "nan", "inf", "5kk", "k"}) {
    auto b = parse_u64(bad, "--devices");
    EXPECT_TRUE(has_all(error_of(b), {"--devices", "is not a whole number", "e.g. 500, 5k, 2M"}))
        << "'" << bad << "': " << error_of(b);
  }
  for (const char* big :
       {"18446744073709551616", "99999999999999999999", "20000000000G", "18446744073.709551616G"}) {
    auto b = parse_u64(big, "--seed");
    EXPECT_TRUE(has_all(error_of(b), {"--seed", "is too large"})) << big << ": " << error_of(b);
  }
}

TEST(Args, RangesNameTheOptionAndTheBounds) {
  EXPECT_EQ(one("shards", "256").u64("shards", 1, 1, 256).value(), 256u);
  auto zero = one("shards", "0").u64("shards", 1, 1, 256);
  EXPECT_EQ(error_of(zero), "--shards: \"0\" is out of range; use 1 to 256");
  auto over = one("report-port", "70000").u64("report-port", 0, 0, 65535);
  EXPECT_EQ(error_of(over), "--report-port: \"70000\" is out of range; use 0 to 65535");
  auto low = one("devices", "0").u64("devices", 1, 1);
  EXPECT_EQ(error_of(low), "--devices: \"0\" is out of range; use at least 1");
  auto bad = one("devices", "12x").u64("devices", 1, 1);
  EXPECT_TRUE(has_all(error_of(bad), {"--devices", "\"12x\"", "is not a whole number"}));
  EXPECT_EQ(Args().u64("devices", 7, 1).value(), 7u);  // absent: the fallback, unchecked
}

TEST(Args, Numbers) {
  EXPECT_DOUBLE_EQ(one("rate", "2000").f64("rate", 0).value(), 2000);
  EXPECT_DOUBLE_EQ(one("rate", "2.5k").f64("rate", 0).value(), 2500);
  EXPECT_DOUBLE_EQ(one("rate", "0").f64("rate", 1, 0).value(), 0);
  EXPECT_DOUBLE_EQ(parse_f64("-3", "x").value(), -3);
  for (const char* bad : {"fast", "", "nan", "inf", "-inf", "1e5", "5/s", "0x10", " 1", "1 "}) {
    auto b = one("rate", bad).f64("rate", 0);
    EXPECT_TRUE(has_all(error_of(b), {"--rate", "is not a number", "e.g. 2000, 2.5k"}))
        << "'" << bad << "': " << error_of(b);
  }
  auto negative = one("rate", "-5").f64("rate", 1, 0);
  EXPECT_EQ(error_of(negative), "--rate: \"-5\" is out of range; use at least 0");
}

TEST(Args, DeviceRanges) {
  auto one_id = parse_device_range("42", "--device");
  ASSERT_TRUE(one_id.ok()) << one_id.error().message;
  EXPECT_EQ(one_id->first, 42u);
  EXPECT_EQ(one_id->last, 42u);
  auto range = parse_device_range("1-200", "--device");
  ASSERT_TRUE(range.ok()) << range.error().message;
  EXPECT_EQ(range->first, 1u);
  EXPECT_EQ(range->last, 200u);
  EXPECT_TRUE(parse_device_range("7-7", "--device").ok());

  EXPECT_EQ(error_of(parse_device_range("12x", "--device")),
            "--device: \"12x\" is not a device id; use a number (42) or a range (1-200)");
  for (const char* bad : {"", "x", "-5", "5-", "1-2-3", "1-2x", " 1", "1 - 2", "+1", "1.0", "1k",
                          "18446744073709551616"}) {
    auto b = parse_device_range(bad, "--device");
    EXPECT_TRUE(has_all(error_of(b), {"--device", "is not a device id", "(1-200)"}))
        << "'" << bad << "': " << error_of(b);
  }
  EXPECT_TRUE(has_all(error_of(parse_device_range("0", "--device")), {"--device", "start at 1"}));
  EXPECT_TRUE(has_all(error_of(parse_device_range("1-0", "--device")), {"start at 1"}));
  EXPECT_TRUE(has_all(error_of(parse_device_range("9-3", "--device")),
                      {"--device", "\"9-3\"", "ends before it starts"}));
  EXPECT_TRUE(has_all(error_of(parse_device_range("1-1000001", "--device")),
                      {"--device", "more than 1000000 devices"}));
  EXPECT_TRUE(parse_device_range("1-1000000", "--device").ok());
}

TEST(Args, Times) {
  const int64_t now = 1'700'000'000'000'000'000;
  EXPECT_EQ(parse_time("now", now, "t").value(), now);
  EXPECT_EQ(parse_time("-1h", now, "t").value(), now - 3'600'000'000'000);
  EXPECT_EQ(parse_time("123", now, "t").value(), 123);
  EXPECT_EQ(parse_time("2023-11-14T22:13:20Z", now, "t").value(), now);
  EXPECT_EQ(parse_time("2023-11-14T22:13:20.5Z", now, "t").value(), now + 500'000'000);
  EXPECT_EQ(parse_time("2024-02-29T00:00:00Z", now, "t").value(), 1'709'164'800'000'000'000);
  auto bad = parse_time("yesterday", now, "--from");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("--from"), std::string::npos);
  for (const char* wrong :
       {"2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T03:60:00Z",
        "2026-11-22T03:00:00", "2026-11-22T03:00:00+01:00", "2026-11-22T03:00:00.Z",
        "2026-11-22 03:00:00Z", "2026-11-22T03:00:00ZZ", "-10x", "-", "--1h", "12x", ""}) {
    auto w = parse_time(wrong, now, "--to");
    EXPECT_TRUE(has_all(error_of(w), {"--to", "is not a time", "RFC 3339"}))
        << "'" << wrong << "': " << error_of(w);
  }
  EXPECT_TRUE(has_all(error_of(parse_time("-99999999999d", now, "--from")), {"too far back"}));
  EXPECT_EQ(format_time(now + 5), "2023-11-14T22:13:20.000000005Z");
}

}  // namespace
}  // namespace tianhe::core
