// Replacement global operator new/delete that count allocations per thread. Linked only into
// the tianhe executable (not the libraries or sanitizer builds, which bring their own).
#include "runtime/alloc_counter.h"

#include <cstdlib>
#include <new>

#ifndef __SANITIZE_ADDRESS__
void* operator new(std::size_t size) {
  ++tianhe::runtime::tls_allocations;
  if (size == 0) size = 1;
  if (void* p = std::malloc(size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  return ::operator new(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  ++tianhe::runtime::tls_allocations;
  return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t& t) noexcept {
  return ::operator new(size, t);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
#endif
