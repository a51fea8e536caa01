// The cayenne_lpp codec: every type's size, sign and resolution, multi-channel names, repeated
// readings, truncated and unknown input, all-or-nothing, no allocation; and a cross-check
// against the npm package cayenne-lpp (test/codecs/cayenne_lpp_vectors.js run with node).
#include "codecs/cayenne_lpp/cayenne_lpp_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/alloc_counter.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::cayenne_lpp {
namespace {

using pipeline::DecodeStatus;

std::vector<uint8_t> unhex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

struct Decoded {
  DecodeStatus status;
  std::map<std::string, core::Value> metrics;
  std::vector<std::string> order;
};

Decoded decode(std::span<const uint8_t> payload, CayenneLppLimits limits = {}) {
  static core::ReportBatch batch(4, 512);
  batch.clear();
  CayenneLppCodec codec(limits);
  core::Report* r = batch.add_report();
  Decoded d{codec.decode(payload, {.device_id = 1}, batch, *r), {}, {}};
  for (const core::Metric& m : batch.metrics(*r)) {
    d.metrics[std::string(m.name)] = m.value;
    d.order.emplace_back(m.name);
  }
  if (d.status != DecodeStatus::kOk) {
    EXPECT_EQ(r->metric_count, 0u);
  }
  return d;
}

Decoded decode_hex(std::string_view hex) {
  const auto bytes = unhex(hex);
  return decode(bytes);
}

double number(const core::Value& v) {
  return v.type == core::ValueType::kInt64 ? static_cast<double>(v.i64) : v.f64;
}

// Whether this build counts allocations (runtime/alloc_counter.cpp stands down under the
// sanitizers, which bring their own operator new): the release build runs the check.
bool counting_allocations() {
  const uint64_t before = runtime::thread_allocations();
  void* p = ::operator new(16);
  ::operator delete(p);
  return runtime::thread_allocations() != before;
}

// The examples of the Cayenne LPP reference documentation.
TEST(CayenneLppCodec, DecodesTheReferenceExamples) {
  Decoded d = decode_hex("03670110056700FF");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.order, (std::vector<std::string>{"temperature_3", "temperature_5"}));
  EXPECT_EQ(d.metrics["temperature_3"].f64, 27.2);
  EXPECT_EQ(d.metrics["temperature_5"].f64, 25.5);

  d = decode_hex("067104D2FB2E0000");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.metrics["accelerometer_6.x"].f64, 1.234);
  EXPECT_EQ(d.metrics["accelerometer_6.y"].f64, -1.234);
  EXPECT_EQ(d.metrics["accelerometer_6.z"].f64, 0.0);

  d = decode_hex("018806765FF2960A0003E8");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.order,
            (std::vector<std::string>{"gps_1.latitude", "gps_1.longitude", "gps_1.altitude"}));
  EXPECT_EQ(d.metrics["gps_1.latitude"].f64, 42.3519);
  EXPECT_EQ(d.metrics["gps_1.longitude"].f64, -87.9094);
  EXPECT_EQ(d.metrics["gps_1.altitude"].f64, 10.0);
}

TEST(CayenneLppCodec, DecodesEveryTypeWithItsSizeSignAndResolution) {
  struct Case {
    std::string_view hex;
    std::string_view name;
    core::ValueType type;
    double value;
  };
  const Case cases[] = {
      {"0000FF", "digital_input_0", core::ValueType::kInt64, 255},
      {"0101 01", "digital_output_1", core::ValueType::kInt64, 1},
      {"0202FFFF", "analog_input_2", core::ValueType::kDouble, -0.01},
      {"03037FFF", "analog_output_3", core::ValueType::kDouble, 327.67},
      {"0464FFFFFFFF", "generic_sensor_4", core::ValueType::kInt64, 4294967295.0},
      {"0565FFFF", "luminosity_5", core::ValueType::kInt64, 65535},
      {"066601", "presence_6", core::ValueType::kInt64, 1},
      {"0767FF17", "temperature_7", core::ValueType::kDouble, -23.3},
      {"0868C7", "relative_humidity_8", core::ValueType::kDouble, 99.5},
      {"0973FFFF", "barometric_pressure_9", core::ValueType::kDouble, 6553.5},
      {"0A74FFFF", "voltage_10", core::ValueType::kDouble, 655.35},
      {"0B7503E8", "current_11", core::ValueType::kDouble, 1.0},
      {"0C76000F4240", "frequency_12", core::ValueType::kInt64, 1000000},
      {"0D7864", "percentage_13", core::ValueType::kInt64, 100},
      {"0E79FF9C", "altitude_14", core::ValueType::kInt64, -100},
      {"0F7D0190", "concentration_15", core::ValueType::kInt64, 400},
      {"108007D0", "power_16", core::ValueType::kInt64, 2000},
      {"1182FFFFFFFF", "distance_17", core::ValueType::kDouble, 4294967.295},
      {"128300000001", "energy_18", core::ValueType::kDouble, 0.001},
      {"13840168", "direction_19", core::ValueType::kInt64, 360},
      {"148565A0BC00", "unixtime_20", core::ValueType::kInt64, 1705032704},
      {"158E01", "switch_21", core::ValueType::kInt64, 1},
      {"FF6700C8", "temperature_255", core::ValueType::kDouble, 20.0},
  };
  for (const Case& c : cases) {
    std::string hex(c.hex);
    std::erase(hex, ' ');
    Decoded d = decode_hex(hex);
    ASSERT_EQ(d.status, DecodeStatus::kOk) << c.hex;
    ASSERT_EQ(d.order, (std::vector<std::string>{std::string(c.name)})) << c.hex;
    const core::Value v = d.metrics[std::string(c.name)];
    EXPECT_EQ(v.type, c.type) << c.name;
    EXPECT_EQ(number(v), c.value) << c.name;
  }
  // Three-part types: x/y/z, r/g/b.
  Decoded d = decode_hex(
      "0186FF9C00640000"
      "0287000102"
      "03728000"
      "7FFF0001");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.metrics["gyrometer_1.x"].f64, -1.0);
  EXPECT_EQ(d.metrics["gyrometer_1.y"].f64, 1.0);
  EXPECT_EQ(d.metrics["colour_2.r"].i64, 0);
  EXPECT_EQ(d.metrics["colour_2.g"].i64, 1);
  EXPECT_EQ(d.metrics["colour_2.b"].i64, 2);
  EXPECT_EQ(d.metrics["magnetometer_3.x"].f64, -32.768);
  EXPECT_EQ(d.metrics["magnetometer_3.y"].f64, 32.767);
  EXPECT_EQ(d.metrics["magnetometer_3.z"].f64, 0.001);
  // GPS: 24-bit two's complement.
  d = decode_hex(
      "0088800000"
      "7FFFFF"
      "FFFFFF");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.metrics["gps_0.latitude"].f64, -838.8608);
  EXPECT_EQ(d.metrics["gps_0.longitude"].f64, 838.8607);
  EXPECT_EQ(d.metrics["gps_0.altitude"].f64, -0.01);
  EXPECT_EQ(lpp_types().size(), 27u);
}

TEST(CayenneLppCodec, ARepeatedReadingKeepsTheLastValue) {
  const Decoded d = decode_hex("156601156600");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  ASSERT_EQ(d.order.size(), 1u);
  EXPECT_EQ(d.metrics.at("presence_21").i64, 0);
}

TEST(CayenneLppCodec, TruncatedOrUnknownIsMalformedAndAppendsNothing) {
  for (std::string_view hex : {"01", "0167", "016701", "03670110056700", "0188067665", "01FF00",
                               "016500010A", "0177000000", "0367011005"}) {
    const Decoded d = decode_hex(hex);
    EXPECT_EQ(d.status, DecodeStatus::kMalformed) << hex;
    EXPECT_TRUE(d.metrics.empty()) << hex;
  }
  // An empty payload carries no readings: a report without metrics, as a heartbeat.
  EXPECT_EQ(decode({}).status, DecodeStatus::kOk);
}

TEST(CayenneLppCodec, TooManyReadingsIsCounted) {
  std::vector<uint8_t> payload;
  for (int ch = 0; ch < 65; ++ch) {
    payload.insert(payload.end(), {static_cast<uint8_t>(ch), 0x66, 0x01});
  }
  EXPECT_EQ(decode(payload).status, DecodeStatus::kTooManyMetrics);
  payload.resize(64 * 3);
  EXPECT_EQ(decode(payload).status, DecodeStatus::kOk);

  core::ReportBatch small(1, 2);
  core::Report* r = small.add_report();
  CayenneLppCodec codec;
  const auto gps = unhex("018806765FF2960A0003E8");
  EXPECT_EQ(codec.decode(gps, {}, small, *r), DecodeStatus::kTooManyMetrics);
  EXPECT_EQ(small.metrics_free(), 2u);
}

TEST(CayenneLppCodec, SteadyStateAllocatesNothing) {
  if (!counting_allocations()) GTEST_SKIP() << "allocations are not counted in this build";
  CayenneLppCodec codec;
  core::ReportBatch batch(64, 64 * 64);
  const auto payload = unhex("03670110056700FF018806765FF2960A0003E8067104D2FB2E0000");
  const uint64_t start = runtime::thread_allocations();
  for (int i = 0; i < 64; ++i) {
    core::Report* r = batch.add_report();
    ASSERT_EQ(codec.decode(payload, {}, batch, *r), DecodeStatus::kOk);
  }
  EXPECT_EQ(runtime::thread_allocations(), start);
}

TEST(CayenneLppCodec, IsRegistered) {
  const runtime::CodecSpec* spec = runtime::builtin_extensions().codec("cayenne_lpp");
  ASSERT_NE(spec, nullptr);
  auto codec = spec->create();
  core::ReportBatch batch(1, 4);
  core::Report* r = batch.add_report();
  const auto payload = unhex("03670110");
  EXPECT_EQ(codec->decode(payload, {}, batch, *r), DecodeStatus::kOk);
  EXPECT_EQ(batch.metrics(*r)[0].name, "temperature_3");
}

// ---- cross-check against the npm package cayenne-lpp ----------------------------------------

std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  EXPECT_EQ(status, 0) << command;
  return out;
}

TEST(CayenneLppCrossCheck, DecodesWhatTheNpmPackageEncodesAsItsDecoderDoes) {
  const std::string node = TH_NODE;
  if (node.empty() || node.ends_with("-NOTFOUND") || !std::filesystem::exists(node)) {
    GTEST_SKIP() << "node is not installed: the cross-check against the npm package cayenne-lpp "
                    "needs it (scripts/install-deps.sh installs it)";
  }
  ASSERT_TRUE(std::filesystem::exists(std::string(TH_NPM_MODULES) + "/cayenne-lpp"))
      << TH_NPM_MODULES
      << "/cayenne-lpp is missing: run scripts/install-deps.sh (npm ci in test/npm)";
  const std::string out =
      run(node + " " + TH_CAYENNE_VECTORS_JS + " " + TH_NPM_MODULES + " 20240518 2000");
  size_t vectors = 0;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    const auto v = nlohmann::json::parse(out.substr(start, end - start));
    start = end + 1;
    ++vectors;
    const std::string hex = v.at("hex");
    const Decoded d = decode_hex(hex);
    ASSERT_EQ(d.status, DecodeStatus::kOk) << hex;
    ASSERT_EQ(d.metrics.size(), v.at("expected").size()) << hex;
    for (const auto& [name, expected] : v.at("expected").items()) {
      ASSERT_TRUE(d.metrics.contains(name)) << hex << ": " << name;
      const double ours = number(d.metrics.at(name));
      // Both divide the raw integer by the resolution in double precision: equal bit for bit.
      EXPECT_EQ(ours, expected.get<double>()) << hex << ": " << name;
      // And within one step of what was encoded (the package's encoder truncates).
      const double input = v.at("input").at(name).get<double>();
      EXPECT_LE(std::fabs(ours - input), 0.0101) << hex << ": " << name;
    }
  }
  EXPECT_EQ(vectors, 2000u);
}

}  // namespace
}  // namespace tianhe::codecs::cayenne_lpp
