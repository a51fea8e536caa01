#include "runtime/codec_stage.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "runtime/extensions.h"

namespace tianhe::runtime {
namespace {

// A codec for the test: "t=<digit>" decodes to one metric; anything else is malformed;
// "big" is too large for its text storage.
class DigitCodec final : public pipeline::Codec {
 public:
  pipeline::DecodeStatus decode(std::span<const uint8_t> payload, const pipeline::CodecContext&,
                                core::ReportBatch& batch, core::Report& r) noexcept override {
    const std::string_view s(reinterpret_cast<const char*>(payload.data()), payload.size());
    if (s == "big") return pipeline::DecodeStatus::kTooLarge;
    // Appends first, then fails, as a codec part-way through a payload does.
    core::Metric* m = batch.add_metric(r);
    if (m == nullptr) return pipeline::DecodeStatus::kTooManyMetrics;
    if (s.size() != 3 || s.substr(0, 2) != "t=" || s[2] < '0' || s[2] > '9') {
      return pipeline::DecodeStatus::kMalformed;
    }
    m->name = "t";
    m->value.type = core::ValueType::kInt64;
    m->value.i64 = s[2] - '0';
    return pipeline::DecodeStatus::kOk;
  }
  void batch_done() noexcept override { ++batches_done; }
  static inline int batches_done = 0;
};

// Always decodes to nothing: the protocol's default in these tests.
class EmptyCodec final : public pipeline::Codec {
 public:
  pipeline::DecodeStatus decode(std::span<const uint8_t>, const pipeline::CodecContext&,
                                core::ReportBatch&, core::Report&) noexcept override {
    return pipeline::DecodeStatus::kOk;
  }
};

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class CodecStageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("codec_stage_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ext_.add_codec({.name = "digit",
                    .create = [] { return std::unique_ptr<pipeline::Codec>(new DigitCodec()); }});
    ext_.add_codec({.name = "empty",
                    .create = [] { return std::unique_ptr<pipeline::Codec>(new EmptyCodec()); }});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::shared_ptr<const pipeline::Registry> registry(
      pipeline::UnknownDevicePolicy unknown = pipeline::UnknownDevicePolicy::kReject) {
    pipeline::ModelSpec digit{.name = "digit_model", .codec = "digit"};
    pipeline::ModelSpec plain{.name = "plain_model"};
    pipeline::ModelSpec models[] = {digit, plain};
    pipeline::DeviceRange devices[] = {{.first_id = 1, .count = 10, .model = "digit_model"},
                                       {.first_id = 20, .count = 1, .model = "plain_model"}};
    pipeline::RegistryConfig rc{.unknown_devices = unknown, .default_model = "digit_model"};
    auto r = pipeline::Registry::build(rc, models, devices);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return *r;
  }

  std::filesystem::path dir_;
  Extensions ext_;
};

TEST_F(CodecStageTest, DecodesWithTheModelsCodecOrTheProtocolsDefault) {
  auto stage = CodecStage::create(dir_.string(), registry(), ext_);
  ASSERT_TRUE(stage.ok()) << stage.error().message;
  auto d = (*stage)->decoder(0, "mqtt_sn", "empty");
  ASSERT_TRUE(d.ok()) << d.error().message;
  core::ReportBatch batch(8, 8);
  core::Report* r = batch.add_report();
  r->device_id = 3;
  EXPECT_EQ((*d)->decode(bytes("t=7"), {.device_id = 3}, batch, *r), PayloadOutcome::kDecoded);
  ASSERT_EQ(r->metric_count, 1);
  EXPECT_EQ(batch.metrics(*r)[0].value.i64, 7);
  // Device 20's model names no codec: the protocol's default decodes it (to nothing).
  core::Report* r2 = batch.add_report();
  r2->device_id = 20;
  EXPECT_EQ((*d)->decode(bytes("t=7"), {.device_id = 20}, batch, *r2), PayloadOutcome::kDecoded);
  EXPECT_EQ(r2->metric_count, 0);
  (*d)->batch_done();
  EXPECT_GE(DigitCodec::batches_done, 1);
  EXPECT_EQ((*stage)->dead_lettered(), 0u);
}

TEST_F(CodecStageTest, AnUnknownDeviceIsLeftForTheValidatorUnlessDevicesRegisterOnArrival) {
  {
    auto stage = CodecStage::create(dir_.string(), registry(), ext_);
    auto d = (*stage)->decoder(0, "lorawan", "empty");
    core::ReportBatch batch(8, 8);
    core::Report* r = batch.add_report();
    r->device_id = 99;
    EXPECT_EQ((*d)->decode(bytes("t=1"), {.device_id = 99}, batch, *r),
              PayloadOutcome::kUnknownDevice);
    EXPECT_EQ(r->metric_count, 0);
  }
  auto stage = CodecStage::create(dir_.string(),
                                  registry(pipeline::UnknownDevicePolicy::kAutoRegister), ext_);
  auto d = (*stage)->decoder(0, "lorawan", "empty");
  core::ReportBatch batch(8, 8);
  core::Report* r = batch.add_report();
  r->device_id = 99;
  // The default model's codec ("digit") decodes it.
  EXPECT_EQ((*d)->decode(bytes("t=1"), {.device_id = 99}, batch, *r), PayloadOutcome::kDecoded);
  EXPECT_EQ(r->metric_count, 1);
}

TEST_F(CodecStageTest, AFailureIsDeadLetteredWithItsBytesAndReasonAndCountedByDevice) {
  auto stage = CodecStage::create(dir_.string(), registry(), ext_);
  auto d = (*stage)->decoder(1, "mqtt_sn", "empty");
  core::ReportBatch batch(8, 8);
  core::Report* r = batch.add_report();
  r->device_id = 4;
  const pipeline::CodecContext ctx{
      .device_id = 4, .fport = 0, .received_ns = 123, .topic = "test/4/\"telemetry\""};
  EXPECT_EQ((*d)->decode(bytes("t=x"), ctx, batch, *r), PayloadOutcome::kDeadLettered);
  // What the codec appended before it failed is gone.
  EXPECT_EQ(r->metric_count, 0);
  EXPECT_EQ(batch.metrics_free(), 8u);
  EXPECT_EQ((*d)->decode(bytes("big"), ctx, batch, *r), PayloadOutcome::kDeadLettered);
  (*d)->batch_done();
  EXPECT_EQ((*stage)->dead_lettered(), 2u);

  std::ifstream in(std::filesystem::path((*stage)->dead_letter_dir()) / "mqtt_sn-shard1.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["protocol"], "mqtt_sn");
  EXPECT_EQ(j["codec"], "digit");
  EXPECT_EQ(j["reason"], "malformed");
  EXPECT_EQ(j["device_id"], 4);
  EXPECT_EQ(j["topic"], "test/4/\"telemetry\"");
  EXPECT_EQ(j["payload_hex"], "743d78");
  EXPECT_EQ(j["received_ns"], 123);
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(nlohmann::json::parse(line)["reason"], "too_large");
  EXPECT_FALSE(std::getline(in, line));

  core::PromWriter w;
  (*stage)->collect(w);
  const std::string text = w.render();
  EXPECT_NE(text.find("tianhe_codec_failures_total{codec=\"digit\",protocol=\"mqtt_sn\","
                      "reason=\"malformed\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("tianhe_codec_device_failures_total{device=\"4\",protocol=\"mqtt_sn\"} 2"),
            std::string::npos)
      << text;
}

TEST_F(CodecStageTest, TheDeadLetterFileIsBoundedAndWhatDoesNotFitIsCounted) {
  auto stage = CodecStage::create(dir_.string(), registry(), ext_, /*max_dead_letter_bytes=*/700);
  auto d = (*stage)->decoder(0, "mqtt_sn", "empty");
  core::ReportBatch batch(8, 8);
  core::Report* r = batch.add_report();
  r->device_id = 4;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ((*d)->decode(bytes("bad"), {.device_id = 4}, batch, *r),
              PayloadOutcome::kDeadLettered);
    (*d)->batch_done();
  }
  core::PromWriter w;
  (*stage)->collect(w);
  const std::string text = w.render();
  const auto file = std::filesystem::path((*stage)->dead_letter_dir()) / "mqtt_sn-shard0.jsonl";
  EXPECT_LE(std::filesystem::file_size(file), 700u);
  // Every failure is counted; those the file had no room for are counted as lost from it.
  EXPECT_EQ((*stage)->dead_lettered(), 5u);
  std::ifstream in(file);
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_GE(lines, 1);
  EXPECT_LT(lines, 5);
  EXPECT_NE(text.find("tianhe_codec_dead_letter_lost_total{codec=\"digit\",protocol=\"mqtt_sn\"} " +
                      std::to_string(5 - lines)),
            std::string::npos)
      << text;
}

TEST_F(CodecStageTest, ErrorsNameTheUnknownCodec) {
  auto stage = CodecStage::create(dir_.string(), registry(), ext_);
  auto d = (*stage)->decoder(0, "mqtt_sn", "nope");
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("\"nope\""), std::string::npos) << d.error().message;

  Extensions none;
  auto bad = CodecStage::create(dir_.string(), registry(), none);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("digit_model"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace tianhe::runtime
