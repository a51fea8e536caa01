// The json codec: flattening (dotted names, indexed arrays), value types, null skipped, every
// limit with its status, all-or-nothing on failure, text storage reused after batch_done(), no
// allocation in steady state, and its registration.
#include "codecs/json/json_codec.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "runtime/alloc_counter.h"
#include "runtime/extensions.h"

namespace tianhe::codecs::json {
namespace {

using pipeline::DecodeStatus;

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

struct Decoded {
  DecodeStatus status;
  std::vector<core::Metric> metrics;
};

Decoded decode(JsonCodec& codec, std::string_view text, core::ReportBatch& batch) {
  core::Report* r = batch.add_report();
  EXPECT_NE(r, nullptr);
  const DecodeStatus st = codec.decode(bytes(text), {.device_id = 7}, batch, *r);
  const auto ms = batch.metrics(*r);
  return {st, {ms.begin(), ms.end()}};
}

// Decodes with a fresh codec, kept (with its text) until the next call.
Decoded decode(std::string_view text, JsonCodecLimits limits = {}) {
  static core::ReportBatch batch(16, 1024);
  static std::unique_ptr<JsonCodec> codec;
  batch.clear();
  codec = std::make_unique<JsonCodec>(limits);
  return decode(*codec, text, batch);
}

// Whether this build counts allocations (runtime/alloc_counter.cpp stands down under the
// sanitizers, which bring their own operator new): the release build runs the check.
bool counting_allocations() {
  const uint64_t before = runtime::thread_allocations();
  void* p = ::operator new(16);
  ::operator delete(p);
  return runtime::thread_allocations() != before;
}

TEST(JsonCodec, FlattensObjectsAndArraysToDottedNames) {
  const std::string text =
      R"({"temp":21.5,"env":{"hum":40,"deep":{"x":true}},"vals":[1,2.5,[3,"s"],{"k":false}],)"
      R"("fw":"1.2.3","nothing":null,"empty":{},"none":[]})";
  const Decoded d = decode(text);
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  std::vector<std::string> names;
  for (const auto& m : d.metrics) names.emplace_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"temp", "env.hum", "env.deep.x", "vals.0", "vals.1",
                                             "vals.2.0", "vals.2.1", "vals.3.k", "fw"}));
  EXPECT_EQ(d.metrics[0].value.type, core::ValueType::kDouble);
  EXPECT_EQ(d.metrics[0].value.f64, 21.5);
  EXPECT_EQ(d.metrics[1].value.type, core::ValueType::kInt64);
  EXPECT_EQ(d.metrics[1].value.i64, 40);
  EXPECT_EQ(d.metrics[2].value.type, core::ValueType::kBool);
  EXPECT_TRUE(d.metrics[2].value.b);
  EXPECT_EQ(d.metrics[6].value.type, core::ValueType::kString);
  EXPECT_EQ(d.metrics[6].value.str, "s");
  EXPECT_EQ(d.metrics[8].value.str, "1.2.3");
  // Top-level names and plain strings view into the payload: nothing copied for them.
  EXPECT_GE(d.metrics[0].name.data(), text.data());
  EXPECT_LT(d.metrics[0].name.data(), text.data() + text.size());
}

TEST(JsonCodec, NumbersAreInt64WhenIntegralAndInRangeElseDouble) {
  const Decoded d =
      decode(R"({"a":9223372036854775807,"b":-9223372036854775808,"c":9223372036854775808,"d":1.0,)"
             R"("e":1e2,"f":-0})");
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  EXPECT_EQ(d.metrics[0].value.type, core::ValueType::kInt64);
  EXPECT_EQ(d.metrics[0].value.i64, INT64_MAX);
  EXPECT_EQ(d.metrics[1].value.i64, INT64_MIN);
  EXPECT_EQ(d.metrics[2].value.type, core::ValueType::kDouble);
  EXPECT_EQ(d.metrics[2].value.f64, 9223372036854775808.0);
  EXPECT_EQ(d.metrics[3].value.type, core::ValueType::kDouble);
  EXPECT_EQ(d.metrics[4].value.type, core::ValueType::kDouble);
  EXPECT_EQ(d.metrics[4].value.f64, 100.0);
  EXPECT_EQ(d.metrics[5].value.type, core::ValueType::kInt64);
}

TEST(JsonCodec, UnescapesNamesAndStringsIntoItsOwnStorage) {
  core::ReportBatch batch(4, 64);
  JsonCodec codec;
  const Decoded d =
      decode(codec, R"({"caf\u00e9":"line\nnext","o":{"\"q\"":"\ud83d\ude00"}})", batch);
  ASSERT_EQ(d.status, DecodeStatus::kOk);
  ASSERT_EQ(d.metrics.size(), 2u);
  EXPECT_EQ(d.metrics[0].name, "caf\xC3\xA9");
  EXPECT_EQ(d.metrics[0].value.str, "line\nnext");
  EXPECT_EQ(d.metrics[1].name, "o.\"q\"");
  EXPECT_EQ(d.metrics[1].value.str, "\xF0\x9F\x98\x80");
  EXPECT_GT(codec.text_used(), 0u);
  codec.batch_done();
  EXPECT_EQ(codec.text_used(), 0u);
}

TEST(JsonCodec, RefusesWhatIsNotOneObjectOfReadings) {
  for (std::string_view text : {"", "[1,2]", "1", "\"s\"", "null", "{", R"({"a":1,})",
                                R"({"a":1} x)", R"({"a":01})", R"({"":1})", R"({"a":{"":1}})",
                                R"({"a\n":1})", R"({"a":1,"a":2})", R"({"a.b":1,"a":{"b":2}})",
                                R"({"a":1e400})", "{\"a\":\"\xC3\x28\"}", R"({"a":"\ud800"})"}) {
    const Decoded d = decode(text);
    EXPECT_EQ(d.status, DecodeStatus::kMalformed) << text;
    EXPECT_TRUE(d.metrics.empty()) << text;
  }
}

TEST(JsonCodec, LimitsHaveTheirOwnStatus) {
  JsonCodecLimits limits;
  limits.max_depth = 3;
  EXPECT_EQ(decode(R"({"a":{"b":{"c":1}}})", limits).status, DecodeStatus::kOk);
  EXPECT_EQ(decode(R"({"a":{"b":{"c":{"d":1}}}})", limits).status, DecodeStatus::kMalformed);
  EXPECT_EQ(decode(R"({"a":[[[1]]]})", limits).status, DecodeStatus::kMalformed);

  std::string many = "{";
  for (int i = 0; i < 65; ++i) many += (i ? ",\"m" : "\"m") + std::to_string(i) + "\":1";
  many += "}";
  EXPECT_EQ(decode(many).status, DecodeStatus::kTooManyMetrics);
  std::string array = R"({"a":[0)";
  for (int i = 1; i < 64; ++i) array += ",1";
  EXPECT_EQ(decode(array + "]}").status, DecodeStatus::kOk);
  EXPECT_EQ(decode(array + ",1]}").status, DecodeStatus::kTooManyMetrics);

  const std::string name64(64, 'n');
  EXPECT_EQ(decode("{\"" + name64 + "\":1}").status, DecodeStatus::kOk);
  EXPECT_EQ(decode("{\"" + name64 + "x\":1}").status, DecodeStatus::kTooLarge);
  EXPECT_EQ(decode("{\"" + std::string(60, 'n') + "\":{\"abcd\":1}}").status,
            DecodeStatus::kTooLarge);
  EXPECT_EQ(decode("{\"" + std::string(62, 'n') + "\":[0,1]}").status, DecodeStatus::kOk);
  EXPECT_EQ(decode("{\"" + std::string(62, 'n') + "\":[0,1,2,3,4,5,6,7,8,9,10]}").status,
            DecodeStatus::kTooLarge);  // "nnn….10" is 65 bytes

  EXPECT_EQ(decode("{\"s\":\"" + std::string(1024, 'x') + "\"}").status, DecodeStatus::kOk);
  EXPECT_EQ(decode("{\"s\":\"" + std::string(1025, 'x') + "\"}").status, DecodeStatus::kTooLarge);
  EXPECT_EQ(decode("{\"s\":\"\\n" + std::string(1024, 'x') + "\"}").status,
            DecodeStatus::kTooLarge);
}

TEST(JsonCodec, AFullBatchIsTooManyMetricsAndNothingIsAppended) {
  core::ReportBatch batch(2, 3);
  JsonCodec codec;
  const Decoded d = decode(codec, R"({"a":1,"b":2,"c":3,"d":4})", batch);
  EXPECT_EQ(d.status, DecodeStatus::kTooManyMetrics);
  EXPECT_TRUE(d.metrics.empty());
  EXPECT_EQ(batch.metrics_free(), 3u);
}

TEST(JsonCodec, FullTextStorageIsTooLargeUntilBatchDone) {
  JsonCodecLimits limits;
  limits.text_bytes = 64;
  JsonCodec codec(limits);
  core::ReportBatch batch(8, 64);
  // Each payload keeps "outer.inner" (11 bytes) in the text storage.
  const std::string_view text = R"({"outer":{"inner":1}})";
  int ok = 0;
  DecodeStatus last = DecodeStatus::kOk;
  for (int i = 0; i < 8 && last == DecodeStatus::kOk; ++i) {
    last = decode(codec, text, batch).status;
    ok += last == DecodeStatus::kOk ? 1 : 0;
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(last, DecodeStatus::kTooLarge);
  EXPECT_EQ(codec.text_used(), 55u);  // the failed payload's text was given back
  codec.batch_done();
  batch.clear();
  EXPECT_EQ(decode(codec, text, batch).status, DecodeStatus::kOk);
  EXPECT_EQ(decode(codec, text, batch).metrics[0].name, "outer.inner");
}

TEST(JsonCodec, SteadyStateAllocatesNothing) {
  if (!counting_allocations()) GTEST_SKIP() << "allocations are not counted in this build";
  JsonCodec codec;
  core::ReportBatch batch(64, 64 * 64);
  const std::string_view text =
      R"({"temp":21.5,"env":{"hum":40,"note":"a\tb"},"vals":[1,2,3],"ok":true,"fw":"1.2.3"})";
  for (int round = 0; round < 10; ++round) {
    batch.clear();
    for (int i = 0; i < 64; ++i) ASSERT_EQ(decode(codec, text, batch).status, DecodeStatus::kOk);
    codec.batch_done();
  }
  // decode() above copies metrics into a vector (the test's own allocations): count only the
  // codec's by decoding once more with no test code around it.
  batch.clear();
  core::Report* r = batch.add_report();
  const uint64_t start = runtime::thread_allocations();
  EXPECT_EQ(codec.decode(bytes(text), {}, batch, *r), DecodeStatus::kOk);
  EXPECT_EQ(runtime::thread_allocations(), start);
}

TEST(JsonCodec, IsRegistered) {
  const runtime::CodecSpec* spec = runtime::builtin_extensions().codec("json");
  ASSERT_NE(spec, nullptr);
  auto codec = spec->create();
  core::ReportBatch batch(1, 4);
  core::Report* r = batch.add_report();
  EXPECT_EQ(codec->decode(bytes(R"({"a":{"b":1}})"), {}, batch, *r), DecodeStatus::kOk);
  EXPECT_EQ(batch.metrics(*r)[0].name, "a.b");
}

}  // namespace
}  // namespace tianhe::codecs::json
