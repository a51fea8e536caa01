#include "core/result.h"

#include <cstring>

namespace tianhe {

std::string errno_text(int err) {
  char buf[128];
  // GNU strerror_r returns the message, which may be a static string rather than buf.
  return ::strerror_r(err, buf, sizeof buf);
}

}  // namespace tianhe
