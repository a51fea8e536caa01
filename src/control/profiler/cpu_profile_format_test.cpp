// The writer's output read back by our reader, and its words checked against the layout
// google-pprof's ReadCPUProfile expects (header, records, trailer, maps text).
#include "control/profiler/cpu_profile_format.h"

#include <gtest/gtest.h>

#include <cstring>

namespace tianhe::control::profiler {
namespace {

std::span<const uint8_t> as_bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

uint64_t word(const std::string& s, size_t i) {
  uint64_t w = 0;
  std::memcpy(&w, s.data() + i * 8, 8);
  return w;
}

TEST(CpuProfileFormat, WordsAreTheLegacyLayout) {
  const std::vector<CpuProfileSample> samples = {{3, {0x1000, 0x2000}}, {1, {0x3000}}};
  const std::string out = write_cpu_profile(10000, samples, "maps\n");
  ASSERT_EQ(out.size(), (5 + 4 + 3 + 3) * 8 + 5);
  const std::vector<uint64_t> want = {0,      3, 0, 10000,  0, 3, 2, 0x1000,
                                      0x2000, 1, 1, 0x3000, 0, 1, 0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(word(out, i), want[i]) << "word " << i;
  EXPECT_EQ(out.substr(want.size() * 8), "maps\n");
}

TEST(CpuProfileFormat, RoundTrips) {
  std::vector<CpuProfileSample> samples;
  for (uint64_t i = 1; i <= 50; ++i) {
    CpuProfileSample s{i * 7, {}};
    for (uint64_t d = 0; d < i % 9 + 1; ++d) s.pcs.push_back(0x400000 + i * 0x100 + d);
    samples.push_back(s);
  }
  const std::string maps = "55d0c0000000-55d0c0100000 r-xp 00000000 08:01 42 /usr/bin/tianhe\n";
  const std::string out = write_cpu_profile(5000, samples, maps);
  auto parsed = parse_cpu_profile(as_bytes(out));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->period_us, 5000u);
  ASSERT_EQ(parsed->samples.size(), samples.size());
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(parsed->samples[i].count, samples[i].count);
    EXPECT_EQ(parsed->samples[i].pcs, samples[i].pcs);
  }
  EXPECT_EQ(parsed->maps, maps);
}

TEST(CpuProfileFormat, SkipsRecordsPprofWouldMisread) {
  // A first pc of 0 reads as the trailer; depth 0 or count 0 carry nothing.
  const std::vector<CpuProfileSample> samples = {
      {1, {0, 0x10}}, {1, {}}, {0, {0x20}}, {2, {0x30, 0x40}}};
  auto parsed = parse_cpu_profile(as_bytes(write_cpu_profile(10000, samples, "")));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->samples.size(), 1u);
  EXPECT_EQ(parsed->samples[0].pcs, (std::vector<uint64_t>{0x30, 0x40}));
  EXPECT_EQ(parsed->samples[0].count, 2u);
}

TEST(CpuProfileFormat, CutsDeepStacksToTheirInnermostFrames) {
  CpuProfileSample s{1, {}};
  for (uint64_t i = 1; i <= kMaxStackDepth + 10; ++i) s.pcs.push_back(i);
  auto parsed = parse_cpu_profile(as_bytes(write_cpu_profile(10000, {&s, 1}, "")));
  ASSERT_TRUE(parsed.ok());
  ASSERT_EQ(parsed->samples[0].pcs.size(), kMaxStackDepth);
  EXPECT_EQ(parsed->samples[0].pcs.front(), 1u);
  EXPECT_EQ(parsed->samples[0].pcs.back(), kMaxStackDepth);
}

TEST(CpuProfileFormat, EmptyProfileIsHeaderAndTrailer) {
  auto parsed = parse_cpu_profile(as_bytes(write_cpu_profile(10000, {}, "m")));
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed->samples.empty());
  EXPECT_EQ(parsed->maps, "m");
}

TEST(CpuProfileFormat, RefusesWhatIsNotAProfile) {
  const std::string good = write_cpu_profile(10000, std::vector<CpuProfileSample>{{1, {5}}}, "");
  EXPECT_FALSE(parse_cpu_profile(as_bytes(good.substr(0, 16))).ok());     // short header
  EXPECT_FALSE(parse_cpu_profile(as_bytes(good.substr(0, 7 * 8))).ok());  // record cut
  std::string bad = good;
  bad[0] = 1;
  auto r = parse_cpu_profile(as_bytes(bad));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("word 0"), std::string::npos);
  std::string deep = good;
  const uint64_t huge = 1ULL << 40;
  std::memcpy(deep.data() + 6 * 8, &huge, 8);  // the record's depth
  EXPECT_FALSE(parse_cpu_profile(as_bytes(deep)).ok());
}

}  // namespace
}  // namespace tianhe::control::profiler
