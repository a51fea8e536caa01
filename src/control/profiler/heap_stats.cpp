// glibc's allocator reports through mallinfo2(3) (glibc 2.33+, size_t fields, unlike
// mallinfo's int ones that wrap past 2 GiB) and malloc_info(3) (XML, per arena then totals).
// Both lock each arena in turn while they sum its bins, so a call costs about the number of
// arenas times the number of bins; the JSON carries the time each took.
#include "control/profiler/heap_stats.h"

#include <malloc.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/clock.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TH_SANITIZER_ALLOCATOR 1
// The sanitizer runtime's allocator interface (compiler-rt's sanitizer/allocator_interface.h,
// which GCC does not install; libasan and libtsan export the functions).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
extern "C" size_t __sanitizer_get_heap_size();
#endif

namespace tianhe::control::profiler {

namespace {

// The value of attribute `name` in one XML start tag, or 0.
uint64_t attr(std::string_view tag, std::string_view name) {
  const std::string key = " " + std::string(name) + "=\"";
  const size_t at = tag.find(key);
  if (at == std::string_view::npos) return 0;
  const char* b = tag.data() + at + key.size();
  uint64_t v = 0;
  std::from_chars(b, tag.data() + tag.size(), v);
  return v;
}

// "VmRSS:	  12345 kB" -> 12345 * unit; "Threads:	7" -> 7 (proc(5), /proc/pid/status).
uint64_t status_value(std::string_view status, std::string_view key, uint64_t unit) {
  for (size_t at = 0; at < status.size();) {
    size_t eol = status.find('\n', at);
    if (eol == std::string_view::npos) eol = status.size();
    std::string_view line = status.substr(at, eol - at);
    at = eol + 1;
    if (!line.starts_with(key) || line.size() <= key.size() || line[key.size()] != ':') continue;
    line.remove_prefix(key.size() + 1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    uint64_t v = 0;
    std::from_chars(line.data(), line.data() + line.size(), v);
    return v * unit;
  }
  return 0;
}

}  // namespace

MallocInfoTotals parse_malloc_info(std::string_view xml) {
  MallocInfoTotals t;
  t.parsed = xml.find("<malloc version=") != std::string_view::npos;
  // The per-arena blocks are <heap nr="N"> ... </heap>; the process totals follow the last.
  size_t totals_from = 0;
  for (size_t at = xml.find("<heap nr="); at != std::string_view::npos;
       at = xml.find("<heap nr=", at + 1)) {
    ++t.arenas;
  }
  if (const size_t last = xml.rfind("</heap>"); last != std::string_view::npos) {
    totals_from = last;
  }
  std::string_view rest = xml.substr(totals_from);
  for (size_t at = rest.find('<'); at != std::string_view::npos; at = rest.find('<', at + 1)) {
    const size_t end = rest.find('>', at);
    if (end == std::string_view::npos) break;
    const std::string_view tag = rest.substr(at, end - at);
    if (tag.starts_with("<total ")) {
      if (tag.find("type=\"fast\"") != std::string_view::npos) {
        t.fast_chunks = attr(tag, "count");
        t.fast_bytes = attr(tag, "size");
      } else if (tag.find("type=\"rest\"") != std::string_view::npos) {
        t.rest_chunks = attr(tag, "count");
        t.rest_bytes = attr(tag, "size");
      } else if (tag.find("type=\"mmap\"") != std::string_view::npos) {
        t.mmap_chunks = attr(tag, "count");
        t.mmap_bytes = attr(tag, "size");
      }
    } else if (tag.starts_with("<system ")) {
      if (tag.find("type=\"current\"") != std::string_view::npos)
        t.system_current = attr(tag, "size");
      if (tag.find("type=\"max\"") != std::string_view::npos) t.system_max = attr(tag, "size");
    } else if (tag.starts_with("<aspace ") &&
               tag.find("type=\"total\"") != std::string_view::npos) {
      t.aspace_total = attr(tag, "size");
    }
  }
  return t;
}

HeapStats read_heap_stats() {
  HeapStats s;
  int64_t t0 = core::mono_ns();
  const struct mallinfo2 mi = mallinfo2();
  s.mallinfo2_ns = core::mono_ns() - t0;
  s.arena_bytes = mi.arena;
  s.free_chunks = mi.ordblks;
  s.mmap_chunks = mi.hblks;
  s.mmap_bytes = mi.hblkhd;
  s.in_use_bytes = mi.uordblks;
  s.free_bytes = mi.fordblks;
  s.releasable_bytes = mi.keepcost;

  char* buf = nullptr;
  size_t len = 0;
  t0 = core::mono_ns();
  if (FILE* f = open_memstream(&buf, &len)) {
    malloc_info(0, f);
    std::fclose(f);
    s.malloc_info_ns = core::mono_ns() - t0;
    s.malloc_info = parse_malloc_info(std::string_view(buf, len));
  }
  std::free(buf);  // open_memstream(3): the caller frees the buffer

  std::ifstream in("/proc/self/status");
  std::ostringstream text;
  text << in.rdbuf();
  const std::string status = text.str();
  s.rss_bytes = status_value(status, "VmRSS", 1024);
  s.peak_rss_bytes = status_value(status, "VmHWM", 1024);
  s.virtual_bytes = status_value(status, "VmSize", 1024);
  s.threads = status_value(status, "Threads", 1);
#if defined(TH_SANITIZER_ALLOCATOR)
#if defined(__SANITIZE_ADDRESS__)
  s.sanitizer = "address";
#else
  s.sanitizer = "thread";
#endif
  s.sanitizer_allocated_bytes = __sanitizer_get_current_allocated_bytes();
  s.sanitizer_heap_bytes = __sanitizer_get_heap_size();
#endif
  return s;
}

std::string heap_stats_json(const HeapStats& s) {
  using Json = nlohmann::json;
  const MallocInfoTotals& m = s.malloc_info;
  Json j{
      {"mallinfo2",
       {{"arena_bytes", s.arena_bytes},
        {"in_use_bytes", s.in_use_bytes},
        {"free_bytes", s.free_bytes},
        {"free_chunks", s.free_chunks},
        {"mmap_bytes", s.mmap_bytes},
        {"mmap_chunks", s.mmap_chunks},
        {"releasable_bytes", s.releasable_bytes}}},
      {"process",
       {{"rss_bytes", s.rss_bytes},
        {"peak_rss_bytes", s.peak_rss_bytes},
        {"virtual_bytes", s.virtual_bytes},
        {"threads", s.threads}}},
      {"cost_ns", {{"mallinfo2", s.mallinfo2_ns}, {"malloc_info", s.malloc_info_ns}}},
  };
  if (m.parsed) {
    j["malloc_info"] = {{"arenas", m.arenas},
                        {"fast_free_chunks", m.fast_chunks},
                        {"fast_free_bytes", m.fast_bytes},
                        {"rest_free_chunks", m.rest_chunks},
                        {"rest_free_bytes", m.rest_bytes},
                        {"mmap_chunks", m.mmap_chunks},
                        {"mmap_bytes", m.mmap_bytes},
                        {"system_current_bytes", m.system_current},
                        {"system_max_bytes", m.system_max},
                        {"address_space_bytes", m.aspace_total}};
  }
  if (s.sanitizer != nullptr) {
    j["sanitizer"] = {{"name", s.sanitizer},
                      {"allocated_bytes", s.sanitizer_allocated_bytes},
                      {"heap_bytes", s.sanitizer_heap_bytes},
                      {"note",
                       "sanitizer build: malloc is the sanitizer's allocator, so the mallinfo2 and "
                       "malloc_info figures cover only what glibc allocated itself"}};
  }
  return j.dump(2);
}

}  // namespace tianhe::control::profiler
