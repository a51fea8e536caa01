#include "protocols/mqtt/mqtt_topics.h"

#include <gtest/gtest.h>

namespace tianhe::protocols::mqtt {
namespace {

TEST(MqttTopics, MatchAndFilter) {
  auto t = TopicTemplate::parse("{tenant}/{device}/telemetry");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->filter(), "+/+/telemetry");
  EXPECT_EQ(subscription_filter(*t, "g1"), "$share/g1/+/+/telemetry");
  TopicMatch m = t->match("acme/42/telemetry");
  EXPECT_TRUE(m.matched);
  EXPECT_EQ(m.device_id, 42u);
  EXPECT_EQ(m.tenant, "acme");
  for (const char* bad :
       {"acme/042/telemetry", "acme/0/telemetry", "acme/x/telemetry", "acme/42/status",
        "acme/42/telemetry/x", "acme/42", "/42/telemetry", "acme//telemetry",
        "acme/18446744073709551616/telemetry", "acme/-1/telemetry", ""}) {
    EXPECT_FALSE(t->match(bad).matched) << bad;
  }
  EXPECT_TRUE(t->match("acme/18446744073709551615/telemetry").matched);
  EXPECT_EQ(t->render("acme", 7), "acme/7/telemetry");
  auto d = TopicTemplate::parse("devices/{device}");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->filter(), "devices/+");
  EXPECT_TRUE(d->match("devices/9").tenant.empty());
}

TEST(MqttTopics, Refused) {
  for (const char* bad :
       {"", "{tenant}/telemetry", "{device}/{device}", "a/{device}x", "a/+/{device}", "a/#",
        "a//{device}", "$SYS/{device}", "{tenant}/{tenant}/{device}"}) {
    auto t = TopicTemplate::parse(bad);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_NE(t.error().message.find("protocols.mqtt.topics"), std::string::npos);
  }
  EXPECT_TRUE(valid_share_group("tianhe"));
  EXPECT_FALSE(valid_share_group("a/b"));
  EXPECT_FALSE(valid_share_group(""));
}

}  // namespace
}  // namespace tianhe::protocols::mqtt
