#include "pipeline/validator.h"

#include <gtest/gtest.h>

#include <cmath>

#include "control/config.h"
#include "pipeline/registry.h"

namespace tianhe::pipeline {
namespace {

constexpr const char* kConfig = R"(
[registry]
unknown_devices = "reject"

[[models]]
name = "env"
[[models.metrics]]
name = "temperature"
type = "double"
min = -40
max = 85
required = true
[[models.metrics]]
name = "count"
type = "int64"
min = 0
[[models.metrics]]
name = "open"
type = "bool"
[[models.metrics]]
name = "fw"
type = "string"

[[devices]]
id = 100
count = 10
tenant = "acme"
model = "env"
)";

class ValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto config = control::parse_config(kConfig);
    ASSERT_TRUE(config.ok()) << config.error().message;
    auto registry = pipeline::Registry::build(config->registry, config->models, config->devices);
    ASSERT_TRUE(registry.ok()) << registry.error().message;
    validator_ = std::make_unique<Validator>(registry.value());
  }

  core::Report& report(uint64_t device) {
    batch_.clear();
    core::Report* r = batch_.add_report();
    r->device_id = device;
    return *r;
  }
  core::Metric& add(core::Report& r, std::string_view name, double v) {
    core::Metric* m = batch_.add_metric(r);
    m->name = name;
    m->value.type = core::ValueType::kDouble;
    m->value.f64 = v;
    return *m;
  }
  RejectReason check(core::Report& r) {
    bool auto_registered = false;
    return validator_->validate(batch_, r, auto_registered);
  }

  core::ReportBatch batch_{4, 64};
  std::unique_ptr<Validator> validator_;
};

TEST_F(ValidatorTest, AcceptsAValidReportAndSetsTenant) {
  auto& r = report(105);
  add(r, "temperature", 21.5);
  EXPECT_EQ(check(r), RejectReason::kNone);
  EXPECT_EQ(validator_->registry().tenant_name(r.tenant), "acme");
}

TEST_F(ValidatorTest, UnknownDevice) {
  auto& r = report(110);
  add(r, "temperature", 21.5);
  EXPECT_EQ(check(r), RejectReason::kUnknownDevice);
}

TEST_F(ValidatorTest, UnknownMetric) {
  auto& r = report(100);
  add(r, "temperature", 1);
  add(r, "humidity", 1);
  EXPECT_EQ(check(r), RejectReason::kUnknownMetric);
}

TEST_F(ValidatorTest, RangeIsInclusiveAndNaNIsOutOfRange) {
  auto& r = report(100);
  add(r, "temperature", 85);
  EXPECT_EQ(check(r), RejectReason::kNone);
  auto& r2 = report(100);
  add(r2, "temperature", 85.01);
  EXPECT_EQ(check(r2), RejectReason::kOutOfRange);
  auto& r3 = report(100);
  add(r3, "temperature", std::nan(""));
  EXPECT_EQ(check(r3), RejectReason::kOutOfRange);
}

TEST_F(ValidatorTest, MissingRequired) {
  auto& r = report(100);
  core::Metric* m = batch_.add_metric(r);
  m->name = "open";
  m->value.type = core::ValueType::kBool;
  m->value.b = true;
  EXPECT_EQ(check(r), RejectReason::kMissingRequired);
}

TEST_F(ValidatorTest, WrongTypeAndIntToDoubleConversion) {
  auto& r = report(100);
  core::Metric* m = batch_.add_metric(r);
  m->name = "temperature";
  m->value.type = core::ValueType::kInt64;
  m->value.i64 = 20;
  EXPECT_EQ(check(r), RejectReason::kNone);
  EXPECT_EQ(m->value.type, core::ValueType::kDouble);
  EXPECT_DOUBLE_EQ(m->value.f64, 20.0);

  auto& r2 = report(100);
  add(r2, "temperature", 1);
  add(r2, "count", 1.5);  // a double for an int64 metric
  EXPECT_EQ(check(r2), RejectReason::kWrongType);

  auto& r3 = report(100);
  add(r3, "temperature", 1);
  add(r3, "fw", 1);
  EXPECT_EQ(check(r3), RejectReason::kWrongType);
}

TEST_F(ValidatorTest, DuplicateMetric) {
  auto& r = report(100);
  add(r, "temperature", 1);
  add(r, "temperature", 2);
  EXPECT_EQ(check(r), RejectReason::kDuplicateMetric);
}

TEST_F(ValidatorTest, MetricIdsMapToModelNames) {
  auto& r = report(100);
  core::Metric* m = batch_.add_metric(r);
  m->id = 0;  // temperature
  m->value.type = core::ValueType::kDouble;
  m->value.f64 = 3;
  EXPECT_EQ(check(r), RejectReason::kNone);
  EXPECT_EQ(m->name, "temperature");

  auto& r2 = report(100);
  core::Metric* m2 = batch_.add_metric(r2);
  m2->id = 4;  // the model has 4 metrics
  m2->value.type = core::ValueType::kDouble;
  EXPECT_EQ(check(r2), RejectReason::kBadMetricId);
}

TEST(ValidatorPolicy, AutoRegisterUsesDefaultModel) {
  auto config = control::parse_config(R"(
[registry]
unknown_devices = "auto_register"
default_model = "m"
default_tenant = "t"
[[models]]
name = "m"
allow_unknown_metrics = true
)");
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto registry = pipeline::Registry::build(config->registry, config->models, config->devices);
  ASSERT_TRUE(registry.ok()) << registry.error().message;
  Validator v(registry.value());
  core::ReportBatch b(1, 4);
  core::Report* r = b.add_report();
  r->device_id = 999;
  core::Metric* m = b.add_metric(*r);
  m->name = "anything";
  m->value.type = core::ValueType::kString;
  bool auto_registered = false;
  EXPECT_EQ(v.validate(b, *r, auto_registered), RejectReason::kNone);
  EXPECT_TRUE(auto_registered);
  EXPECT_EQ(v.registry().tenant_name(r->tenant), "t");
}

}  // namespace
}  // namespace tianhe::pipeline
