#include "core/crc32c.h"

#include <gtest/gtest.h>

#include <string>

namespace tianhe::core {
namespace {

TEST(Crc32c, KnownVectors) {
  // RFC 3720 B.4 test vectors.
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  std::string ones(32, '\xFF');
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
}

TEST(Crc32c, Incremental) {
  std::string s = "the quick brown fox jumps over the lazy dog";
  uint32_t whole = crc32c(s.data(), s.size());
  uint32_t part = crc32c(s.data(), 10);
  part = crc32c(s.data() + 10, s.size() - 10, part);
  EXPECT_EQ(whole, part);
}

}  // namespace
}  // namespace tianhe::core
