// Topic templates, predefined topic lists and client ids as the gateway reads them.
#include "protocols/mqtt_sn/mqtt_sn_topics.h"

#include <gtest/gtest.h>

namespace tianhe::protocols::mqtt_sn {
namespace {

TEST(MqttSnTopics, TemplateMatchesTenantAndDevice) {
  auto t = TopicTemplate::parse("{tenant}/{device}/telemetry");
  ASSERT_TRUE(t.ok()) << t.error().message;
  TopicMatch m = t->match("acme/42/telemetry");
  EXPECT_TRUE(m.matched);
  EXPECT_EQ(m.device_id, 42u);
  EXPECT_EQ(m.tenant, "acme");
  EXPECT_FALSE(t->match("acme/42/telemetryx").matched);
  EXPECT_FALSE(t->match("acme/042/telemetry").matched);  // leading zero: not the decimal id
  EXPECT_FALSE(t->match("acme/0/telemetry").matched);    // ids start at 1
  EXPECT_FALSE(t->match("acme/4x/telemetry").matched);
  EXPECT_FALSE(t->match("a/b/42/telemetry").matched);  // a placeholder is one level
  EXPECT_FALSE(t->match("/42/telemetry").matched);
  EXPECT_FALSE(t->match("acme/18446744073709551616/telemetry").matched);  // > 2^64-1
  EXPECT_TRUE(t->match("acme/18446744073709551615/telemetry").matched);
  EXPECT_EQ(t->render("acme", 7), "acme/7/telemetry");
}

TEST(MqttSnTopics, TemplatesWithoutPlaceholdersOrBad) {
  auto plain = TopicTemplate::parse("sensors/data");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->has_device());
  EXPECT_TRUE(plain->match("sensors/data").matched);
  EXPECT_FALSE(TopicTemplate::parse("").ok());
  EXPECT_FALSE(TopicTemplate::parse("{tenant}{device}").ok());
  EXPECT_FALSE(TopicTemplate::parse("{device}/{device}").ok());
  EXPECT_FALSE(TopicTemplate::parse("{model}/x").ok());
  EXPECT_FALSE(TopicTemplate::parse("a/#").ok());
  EXPECT_FALSE(TopicTemplate::parse("a/{device").ok());
  auto e = TopicTemplate::parse("{name}");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("protocols.mqtt_sn.topics"), std::string::npos);
}

TEST(MqttSnTopics, PredefinedList) {
  auto p = parse_predefined_topics(" 1=acme/7/telemetry, 65534 = status ");
  ASSERT_TRUE(p.ok()) << p.error().message;
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[0].id, 1);
  EXPECT_EQ((*p)[0].name, "acme/7/telemetry");
  EXPECT_EQ((*p)[1].id, 65534);
  EXPECT_EQ((*p)[1].name, "status");
  EXPECT_TRUE(parse_predefined_topics("")->empty());
  EXPECT_FALSE(parse_predefined_topics("0=a").ok());
  EXPECT_FALSE(parse_predefined_topics("65535=a").ok());
  EXPECT_FALSE(parse_predefined_topics("1=a,1=b").ok());
  EXPECT_FALSE(parse_predefined_topics("1=").ok());
  EXPECT_FALSE(parse_predefined_topics("1=a/+").ok());
  EXPECT_FALSE(parse_predefined_topics("x=a").ok());
}

TEST(MqttSnTopics, DeviceFromClientId) {
  EXPECT_EQ(device_from_client_id("42"), 42u);
  EXPECT_EQ(device_from_client_id("sensor-42"), 42u);
  EXPECT_EQ(device_from_client_id("sensor-0042"), 42u);
  EXPECT_EQ(device_from_client_id("sensor"), 0u);
  EXPECT_EQ(device_from_client_id("sensor-0"), 0u);
  EXPECT_EQ(device_from_client_id(""), 0u);
  EXPECT_EQ(device_from_client_id("99999999999999999999999"), 0u);
}

}  // namespace
}  // namespace tianhe::protocols::mqtt_sn
