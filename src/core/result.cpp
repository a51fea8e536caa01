#include "core/result.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tianhe {

namespace detail {

void result_holds_error(const Error& error) noexcept {
  std::fprintf(stderr, "tianhe: fatal: a Result was read without checking it; it holds: %s\n",
               error.message.c_str());
  std::fflush(stderr);
  std::abort();
}

void result_holds_value() noexcept {
  std::fprintf(stderr, "tianhe: fatal: error() of a Result that holds a value\n");
  std::fflush(stderr);
  std::abort();
}

}  // namespace detail

std::string errno_text(int err) {
  char buf[128];
  // GNU strerror_r returns the message, which may be a static string rather than buf.
  return ::strerror_r(err, buf, sizeof buf);
}

}  // namespace tianhe
