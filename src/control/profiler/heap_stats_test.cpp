// Heap statistics: malloc_info's XML parsed (a fixed sample and this process's own), and a
// snapshot of this process that agrees with itself.
#include "control/profiler/heap_stats.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace tianhe::control::profiler {
namespace {

TEST(HeapStats, ParsesMallocInfoTotals) {
  // The shape glibc 2.36 prints (malloc/malloc.c, __malloc_info): arenas, then the totals.
  const std::string xml = R"(<malloc version="1">
<heap nr="0">
<sizes>
<size from="17" to="32" total="64" count="2"/>
</sizes>
<total type="fast" count="2" size="64"/>
<total type="rest" count="1" size="1000"/>
<system type="current" size="135168"/>
<system type="max" size="135168"/>
<aspace type="total" size="135168"/>
<aspace type="mprotect" size="135168"/>
</heap>
<heap nr="1">
<sizes>
</sizes>
<total type="fast" count="0" size="0"/>
<total type="rest" count="0" size="0"/>
<system type="current" size="4096"/>
</heap>
<total type="fast" count="2" size="64"/>
<total type="rest" count="3" size="2000"/>
<total type="mmap" count="4" size="8388608"/>
<system type="current" size="139264"/>
<system type="max" size="200000"/>
<aspace type="total" size="139264"/>
<aspace type="mprotect" size="139264"/>
</malloc>
)";
  const MallocInfoTotals t = parse_malloc_info(xml);
  EXPECT_TRUE(t.parsed);
  EXPECT_EQ(t.arenas, 2u);
  EXPECT_EQ(t.fast_chunks, 2u);
  EXPECT_EQ(t.fast_bytes, 64u);
  EXPECT_EQ(t.rest_chunks, 3u);
  EXPECT_EQ(t.rest_bytes, 2000u);
  EXPECT_EQ(t.mmap_chunks, 4u);
  EXPECT_EQ(t.mmap_bytes, 8388608u);
  EXPECT_EQ(t.system_current, 139264u);
  EXPECT_EQ(t.system_max, 200000u);
  EXPECT_EQ(t.aspace_total, 139264u);
  EXPECT_FALSE(parse_malloc_info("not xml").parsed);
}

TEST(HeapStats, ParsesThisProcessesMallocInfo) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  ASSERT_NE(f, nullptr);
  malloc_info(0, f);
  std::fclose(f);
  const MallocInfoTotals t = parse_malloc_info(std::string_view(buf, len));
  std::free(buf);
  EXPECT_TRUE(t.parsed);
}

TEST(HeapStats, SnapshotIsSane) {
  const HeapStats s = read_heap_stats();
  EXPECT_GT(s.rss_bytes, 0u);
  EXPECT_GE(s.peak_rss_bytes, s.rss_bytes);
  EXPECT_GE(s.virtual_bytes, s.rss_bytes);
  EXPECT_GE(s.threads, 1u);
  EXPECT_GE(s.mallinfo2_ns, 0);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  ASSERT_NE(s.sanitizer, nullptr);
  EXPECT_GT(s.sanitizer_allocated_bytes, 0u);
#else
  EXPECT_EQ(s.sanitizer, nullptr);
  EXPECT_GT(s.in_use_bytes, 0u);
#endif
  const auto j = nlohmann::json::parse(heap_stats_json(s));
  EXPECT_EQ(j["process"]["threads"].get<uint64_t>(), s.threads);
  EXPECT_EQ(j["mallinfo2"]["in_use_bytes"].get<uint64_t>(), s.in_use_bytes);
  EXPECT_TRUE(j.contains("cost_ns"));
}

}  // namespace
}  // namespace tianhe::control::profiler
