// Heap statistics of the running process: glibc's allocator totals (mallinfo2, malloc_info),
// the kernel's view of memory (/proc/self/status) and, in sanitizer builds, the sanitizer's
// allocator. Control plane only: reading them walks every malloc arena under its lock.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tianhe::control::profiler {

/// Totals parsed from malloc_info(3)'s XML (the <total>, <system> and <aspace> lines of the
/// whole heap, after the per-arena <heap> blocks).
struct MallocInfoTotals {
  uint64_t fast_chunks = 0;     ///< free chunks in fastbins (<total type="fast" count=...>)
  uint64_t fast_bytes = 0;      ///< their bytes
  uint64_t rest_chunks = 0;     ///< free chunks in the other bins (<total type="rest" ...>)
  uint64_t rest_bytes = 0;      ///< their bytes
  uint64_t mmap_chunks = 0;     ///< chunks given their own mmap (<total type="mmap" ...>)
  uint64_t mmap_bytes = 0;      ///< their bytes
  uint64_t system_current = 0;  ///< bytes the arenas hold from the system now
  uint64_t system_max = 0;      ///< the most they ever held
  uint64_t aspace_total = 0;    ///< address space of the arenas
  uint64_t arenas = 0;          ///< <heap nr=...> blocks
  bool parsed = false;          ///< the XML had a <malloc version=...> root
};

/// A snapshot of the process's memory.
struct HeapStats {
  // glibc mallinfo2(3)
  uint64_t arena_bytes =
      0;  ///< arena: bytes every arena holds from the system (not mmapped chunks)
  uint64_t free_chunks = 0;       ///< ordblks: free chunks
  uint64_t mmap_chunks = 0;       ///< hblks: chunks allocated with mmap
  uint64_t mmap_bytes = 0;        ///< hblkhd: their bytes
  uint64_t in_use_bytes = 0;      ///< uordblks: bytes in allocated chunks
  uint64_t free_bytes = 0;        ///< fordblks: bytes in free chunks
  uint64_t releasable_bytes = 0;  ///< keepcost: top-most free bytes malloc_trim could return
  MallocInfoTotals malloc_info;   ///< malloc_info(3) totals
  // /proc/self/status
  uint64_t rss_bytes = 0;       ///< VmRSS
  uint64_t peak_rss_bytes = 0;  ///< VmHWM
  uint64_t virtual_bytes = 0;   ///< VmSize
  uint64_t threads = 0;         ///< Threads
  // A sanitizer's allocator (ASan and TSan builds, where malloc is the sanitizer's)
  const char* sanitizer = nullptr;         ///< "address", "thread", or nullptr: glibc's malloc
  uint64_t sanitizer_allocated_bytes = 0;  ///< __sanitizer_get_current_allocated_bytes
  uint64_t sanitizer_heap_bytes = 0;       ///< __sanitizer_get_heap_size
  // cost of this snapshot
  int64_t mallinfo2_ns = 0;    ///< time mallinfo2() took
  int64_t malloc_info_ns = 0;  ///< time malloc_info() took (including its XML)
};

/// Parses malloc_info(3) XML (pure; unknown elements are skipped).
MallocInfoTotals parse_malloc_info(std::string_view xml);

/// Reads a snapshot now (a few syscalls and two walks of the malloc arenas).
HeapStats read_heap_stats();

/// The snapshot as the JSON of GET /debug/heap.
std::string heap_stats_json(const HeapStats& s);

}  // namespace tianhe::control::profiler
