#include "pipeline/registry.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "control/config.h"

namespace tianhe::pipeline {
namespace {

using control::GatewayConfig;

ModelSpec env_model() {
  ModelSpec m;
  m.name = "env_sensor";
  m.metrics.push_back(
      {.name = "temperature", .unit = "Cel", .min = -40, .max = 85, .required = true});
  m.metrics.push_back({.name = "humidity", .min = 0, .max = 100, .required = true});
  m.metrics.push_back({.name = "battery_mv", .type = core::ValueType::kInt64});
  m.metrics.push_back({.name = "door_open", .type = core::ValueType::kBool});
  return m;
}

GatewayConfig base_config() {
  GatewayConfig c;
  c.models.push_back(env_model());
  ModelSpec meter;
  meter.name = "meter";
  meter.allow_unknown_metrics = true;
  meter.metrics.push_back({.name = "kwh", .type = core::ValueType::kInt64, .required = true});
  c.models.push_back(meter);
  return c;
}

std::shared_ptr<const Registry> build_ok(const GatewayConfig& c) {
  auto r = Registry::build(c.registry, c.models, c.devices);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : nullptr;
}

TEST(Model, CompilesMetrics) {
  auto reg = build_ok(base_config());
  ASSERT_EQ(reg->model_count(), 2u);
  const Model& env = reg->model(0);
  EXPECT_EQ(env.name(), "env_sensor");
  EXPECT_FALSE(env.allow_unknown_metrics());
  EXPECT_EQ(env.find("temperature"), 0);
  EXPECT_EQ(env.find("humidity"), 1);
  EXPECT_EQ(env.find("door_open"), 3);
  EXPECT_EQ(env.find("door"), -1);
  EXPECT_EQ(env.find("door_opened"), -1);
  EXPECT_EQ(env.find(""), -1);
  EXPECT_EQ(env.required_mask(), 0b11u);
  EXPECT_EQ(env.metrics()[0].min, -40);
  EXPECT_EQ(env.metrics()[0].max, 85);
  EXPECT_EQ(env.metrics()[0].unit, "Cel");
  // Unset bounds become the widest range.
  EXPECT_EQ(env.metrics()[2].min, -1e308);
  EXPECT_EQ(env.metrics()[2].max, 1e308);
  EXPECT_EQ(env.metrics()[2].type, core::ValueType::kInt64);
  EXPECT_TRUE(reg->model(1).allow_unknown_metrics());
  EXPECT_EQ(reg->model(1).required_mask(), 1u);
}

TEST(Model, SixtyFourMetricsUseTheWholeMask) {
  std::vector<ModelMetric> metrics(64);
  for (int i = 0; i < 64; ++i) {
    metrics[i].name = "m" + std::to_string(i);
    metrics[i].required = true;
  }
  Model m("wide", metrics, false);
  EXPECT_EQ(m.required_mask(), ~uint64_t{0});
  EXPECT_EQ(m.find("m63"), 63);
  EXPECT_EQ(m.find("m64"), -1);
}

TEST(Registry, LookupsHitAndMiss) {
  GatewayConfig c = base_config();
  c.devices.push_back({.first_id = 1, .count = 1000, .tenant = "demo", .model = "env_sensor"});
  c.devices.push_back({.first_id = 5000, .count = 1, .tenant = "acme", .model = "meter"});
  c.devices.push_back(
      {.first_id = UINT64_MAX - 9, .count = 10, .tenant = "demo", .model = "meter"});
  auto reg = build_ok(c);
  EXPECT_EQ(reg->device_count(), 1011u);
  for (uint64_t id = 1; id <= 1000; ++id) {
    const DeviceEntry* e = reg->find(id);
    ASSERT_NE(e, nullptr) << id;
    EXPECT_LE(e->first_id, id);
    EXPECT_GE(e->last_id, id);
    EXPECT_EQ(e->model, 0u);
    EXPECT_EQ(reg->tenant_name(e->tenant), "demo");
  }
  const DeviceEntry* m = reg->find(5000);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->model, 1u);
  EXPECT_EQ(reg->tenant_name(m->tenant), "acme");
  EXPECT_NE(reg->find(UINT64_MAX), nullptr);
  EXPECT_NE(reg->find(UINT64_MAX - 9), nullptr);
  EXPECT_EQ(reg->find(UINT64_MAX - 10), nullptr);
  EXPECT_EQ(reg->find(0), nullptr);
  EXPECT_EQ(reg->find(1001), nullptr);
  EXPECT_EQ(reg->find(4999), nullptr);
  EXPECT_EQ(reg->find(5001), nullptr);
  for (uint64_t id = 1'000'000; id < 1'010'000; ++id) EXPECT_EQ(reg->find(id), nullptr);
}

TEST(Registry, TenantsAreInterned) {
  GatewayConfig c = base_config();
  c.registry.default_tenant = "demo";
  c.devices.push_back({.first_id = 1, .count = 2, .tenant = "acme", .model = "meter"});
  c.devices.push_back({.first_id = 10, .count = 2, .tenant = "demo", .model = "meter"});
  c.devices.push_back({.first_id = 20, .count = 2, .tenant = "acme", .model = "meter"});
  auto reg = build_ok(c);
  EXPECT_EQ(reg->tenant_name(reg->default_tenant()), "demo");
  EXPECT_EQ(reg->find(1)->tenant, reg->find(21)->tenant);
  EXPECT_NE(reg->find(1)->tenant, reg->find(10)->tenant);
  EXPECT_EQ(reg->find(10)->tenant, reg->default_tenant());
}

TEST(Registry, UnknownDevicePolicy) {
  GatewayConfig c = base_config();
  auto reg = build_ok(c);
  EXPECT_EQ(reg->unknown_devices(), UnknownDevicePolicy::kReject);
  EXPECT_EQ(reg->tenant_name(reg->default_tenant()), "default");
  EXPECT_EQ(reg->device_count(), 0u);
  EXPECT_EQ(reg->find(1), nullptr);

  c.registry = {.unknown_devices = UnknownDevicePolicy::kAutoRegister,
                .default_model = "meter",
                .default_tenant = "fleet"};
  reg = build_ok(c);
  EXPECT_EQ(reg->unknown_devices(), UnknownDevicePolicy::kAutoRegister);
  EXPECT_EQ(reg->model(reg->default_model()).name(), "meter");
  EXPECT_EQ(reg->tenant_name(reg->default_tenant()), "fleet");

  c.registry.default_model = "";
  auto bad = Registry::build(c.registry, c.models, c.devices);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("registry.default_model: missing"), std::string::npos);
  c.registry.default_model = "nope";
  bad = Registry::build(c.registry, c.models, c.devices);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("registry.default_model: \"nope\" is not a model"),
            std::string::npos);
}

// Registry::build is also reached with configs not made by parse_config (tests, the API later):
// it re-checks what it relies on.
TEST(Registry, RejectsInconsistentConfigs) {
  GatewayConfig c = base_config();
  c.devices.push_back({.first_id = 1, .count = 10, .model = "env_sensor"});
  c.devices.push_back({.first_id = 5, .count = 1, .model = "env_sensor"});
  auto r = Registry::build(c.registry, c.models, c.devices);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "devices[1]: device 5 is declared twice; make the ranges disjoint");
  c.devices = {{.first_id = 1, .model = "ghost"}};
  r = Registry::build(c.registry, c.models, c.devices);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "devices[0].model: \"ghost\" is not a model");
  c.devices = {{.first_id = 0, .model = "meter"}};
  EXPECT_FALSE(Registry::build(c.registry, c.models, c.devices).ok());
  c.devices = {{.first_id = UINT64_MAX, .count = 2, .model = "meter"}};
  EXPECT_FALSE(Registry::build(c.registry, c.models, c.devices).ok());
}

TEST(Registry, HalfAMillionDevices) {
  GatewayConfig c = base_config();
  c.devices.push_back({.first_id = 1, .count = 500'000, .tenant = "demo", .model = "env_sensor"});
  auto reg = build_ok(c);
  ASSERT_NE(reg, nullptr);
  EXPECT_EQ(reg->device_count(), 500'000u);
  for (uint64_t id = 1; id <= 500'000; ++id) {
    const DeviceEntry* e = reg->find(id);
    if (e == nullptr || e->model != 0) {
      ADD_FAILURE() << "device " << id << " not found";
      break;
    }
  }
  for (uint64_t id = 500'001; id <= 1'000'000; ++id) {
    if (reg->find(id) != nullptr) {
      ADD_FAILURE() << "device " << id << " found";
      break;
    }
  }
  // One range, whatever the count: the registry costs nothing per device.
  EXPECT_EQ(reg->range_count(), 1u);
  EXPECT_EQ(reg->table_bytes(), sizeof(DeviceEntry));
}

TEST(Registry, RangesAreSortedMergedAndSearchedAtTheirEdges) {
  GatewayConfig c = base_config();
  // Declared out of order; 100..199 and 200..299 share model and tenant (merged), 300..309 has
  // another tenant, 400..409 another model, and single devices leave gaps between them.
  c.devices.push_back({.first_id = 200, .count = 100, .tenant = "a", .model = "meter"});
  c.devices.push_back({.first_id = 400, .count = 10, .tenant = "a", .model = "env_sensor"});
  c.devices.push_back({.first_id = 100, .count = 100, .tenant = "a", .model = "meter"});
  c.devices.push_back({.first_id = 300, .count = 10, .tenant = "b", .model = "meter"});
  for (uint64_t id = 1000; id < 1100; id += 2) {
    c.devices.push_back({.first_id = id, .count = 1, .tenant = "a", .model = "meter"});
  }
  auto reg = build_ok(c);
  ASSERT_NE(reg, nullptr);
  EXPECT_EQ(reg->device_count(), 100u + 100 + 10 + 10 + 50);
  EXPECT_EQ(reg->range_count(), 3u + 50);
  auto model_of = [&](uint64_t id) -> int {
    const DeviceEntry* e = reg->find(id);
    return e == nullptr ? -1 : static_cast<int>(e->model);
  };
  EXPECT_EQ(model_of(99), -1);
  EXPECT_EQ(model_of(100), 1);
  EXPECT_EQ(model_of(199), 1);
  EXPECT_EQ(model_of(200), 1);
  EXPECT_EQ(model_of(299), 1);
  EXPECT_EQ(reg->tenant_name(reg->find(299)->tenant), "a");
  EXPECT_EQ(reg->tenant_name(reg->find(300)->tenant), "b");
  EXPECT_EQ(model_of(309), 1);
  EXPECT_EQ(model_of(310), -1);
  EXPECT_EQ(model_of(400), 0);
  EXPECT_EQ(model_of(409), 0);
  EXPECT_EQ(model_of(410), -1);
  for (uint64_t id = 1000; id < 1100; ++id) EXPECT_EQ(model_of(id), id % 2 == 0 ? 1 : -1) << id;
  EXPECT_EQ(model_of(UINT64_MAX), -1);
}

TEST(Registry, OverlapsAreFoundWhateverTheDeclarationOrder) {
  GatewayConfig c = base_config();
  c.devices.push_back({.first_id = 50, .count = 10, .model = "meter"});
  c.devices.push_back({.first_id = 1, .count = 100, .model = "meter"});  // covers 50..59
  c.devices.push_back({.first_id = 200, .count = 1, .model = "meter"});
  auto r = Registry::build(c.registry, c.models, c.devices);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "devices[1]: device 50 is declared twice; make the ranges disjoint");
  // A range nested inside a wider one that an intermediate narrower one does not reach.
  c.devices = {{.first_id = 1, .count = 100, .model = "meter"},
               {.first_id = 10, .count = 1, .model = "meter"}};
  r = Registry::build(c.registry, c.models, c.devices);
  ASSERT_FALSE(r.ok());
  c.devices = {{.first_id = 1, .count = 100, .model = "meter"},
               {.first_id = 10, .count = 1, .model = "meter"},
               {.first_id = 90, .count = 1, .model = "meter"}};
  r = Registry::build(c.registry, c.models, c.devices);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "devices[1]: device 10 is declared twice; make the ranges disjoint");
  // The last id of the id space is a device like any other.
  c.devices = {{.first_id = UINT64_MAX, .count = 1, .model = "meter"}};
  auto ok = build_ok(c);
  ASSERT_NE(ok, nullptr);
  EXPECT_NE(ok->find(UINT64_MAX), nullptr);
}

}  // namespace
}  // namespace tianhe::pipeline
