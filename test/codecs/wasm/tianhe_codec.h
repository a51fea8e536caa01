/* Helpers for a Tianhe WebAssembly codec in C (ABI version 1, docs/codecs/wasm.md): a bump
 * allocator over the module's memory, and a writer of the output layout. Freestanding: no libc,
 * so it builds with `clang --target=wasm32 -nostdlib`. */
#ifndef TIANHE_CODEC_H
#define TIANHE_CODEC_H

#include <stdint.h>

#define TIANHE_ABI_VERSION 1
#define TIANHE_EXPORT(name) __attribute__((export_name(name)))

enum { TIANHE_F64 = 1, TIANHE_I64 = 2, TIANHE_BOOL = 3, TIANHE_STRING = 4 };
enum { TIANHE_ERR_MALFORMED = 1, TIANHE_ERR_NO_MEMORY = 2 };

/* -nostdlib has no libc, but the compiler turns copy loops into memcpy calls: one is defined
 * here (no_builtin, so its own loop stays a loop). */
__attribute__((no_builtin("memcpy"))) void* memcpy(void* dst, const void* src, unsigned long n) {
  unsigned char* d = (unsigned char*)dst;
  const unsigned char* s = (const unsigned char*)src;
  while (n--) *d++ = *s++;
  return dst;
}

extern unsigned char __heap_base; /* the linker's end of data and stack */
static uintptr_t tianhe_heap_top;

/* Bump allocation, growing the memory by whole pages; 0 when the memory cannot grow (over the
 * gateway's memory budget). The host calls alloc once per instance, for its input buffer. */
TIANHE_EXPORT("alloc") uint32_t alloc(uint32_t len) {
  if (tianhe_heap_top == 0) tianhe_heap_top = (uintptr_t)&__heap_base;
  const uintptr_t p = (tianhe_heap_top + 15u) & ~(uintptr_t)15u;
  const uintptr_t end = p + len;
  const uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
  if (end > have &&
      __builtin_wasm_memory_grow(0, (end - have + 65535u) / 65536u) == (uintptr_t)-1) {
    return 0;
  }
  tianhe_heap_top = end;
  return (uint32_t)p;
}

TIANHE_EXPORT("tianhe_abi_version") int32_t tianhe_abi_version(void) {
  return TIANHE_ABI_VERSION;
}

/* The output of one call: written from the start at each call, then returned by decode(). */
typedef struct {
  unsigned char *base, *at, *end;
} tianhe_out;

static inline void tianhe_out_begin(tianhe_out* o, unsigned char* buf, uint32_t size) {
  o->base = buf;
  o->at = buf + 4; /* the count goes first, written by tianhe_out_finish */
  o->end = buf + size;
}

static inline void tianhe_put_u32(unsigned char* p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

/* Starts a metric: type, name, and the number of value bytes that follow; 0 if it does not fit. */
static inline unsigned char* tianhe_metric(tianhe_out* o, uint8_t type, const char* name,
                                           uint32_t name_len, uint32_t value_bytes) {
  if ((uint32_t)(o->end - o->at) < 2 + name_len + value_bytes) return 0;
  unsigned char* p = o->at;
  *p++ = type;
  *p++ = (unsigned char)name_len;
  for (uint32_t i = 0; i < name_len; ++i) *p++ = (unsigned char)name[i];
  o->at = p + value_bytes;
  return p;
}

static inline int tianhe_f64(tianhe_out* o, const char* name, uint32_t name_len, double v) {
  unsigned char* p = tianhe_metric(o, TIANHE_F64, name, name_len, 8);
  if (p == 0) return 0;
  __builtin_memcpy(p, &v, 8); /* wasm is little-endian, as the layout is */
  return 1;
}

static inline int tianhe_i64(tianhe_out* o, const char* name, uint32_t name_len, int64_t v) {
  unsigned char* p = tianhe_metric(o, TIANHE_I64, name, name_len, 8);
  if (p == 0) return 0;
  __builtin_memcpy(p, &v, 8);
  return 1;
}

/* The count of metrics written; returns the pointer decode() returns. */
static inline uint32_t tianhe_out_finish(tianhe_out* o, uint32_t count) {
  tianhe_put_u32(o->base, count);
  return (uint32_t)(uintptr_t)o->base;
}

/* The error form: the call fails with `code` and a message (dead-lettered with it). */
static inline uint32_t tianhe_out_error(tianhe_out* o, uint32_t code, const char* msg,
                                        uint32_t len) {
  if (len > (uint32_t)(o->end - o->base) - 10) len = (uint32_t)(o->end - o->base) - 10;
  tianhe_put_u32(o->base, 0xffffffffu);
  tianhe_put_u32(o->base + 4, code);
  o->base[8] = (unsigned char)len;
  o->base[9] = (unsigned char)(len >> 8);
  for (uint32_t i = 0; i < len; ++i) o->base[10 + i] = (unsigned char)msg[i];
  return (uint32_t)(uintptr_t)o->base;
}

#endif
