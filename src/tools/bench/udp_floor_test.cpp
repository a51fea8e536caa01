// The UDP request/reply floor probe: replies come back, one per request, and the figures it
// derives from them agree with each other. No rate is asserted (speed is measured, not tested).
#include "tools/bench/udp_floor.h"

#include <gtest/gtest.h>

namespace tianhe::tools::bench {
namespace {

TEST(UdpFloor, EveryReplyAnswersARequestAndTheRateFollowsFromTheCount) {
  UdpFloorOptions o;
  o.seconds = 0.3;
  o.sockets = 4;
  o.window = 8;
  const UdpFloor f = probe_udp_request_reply(o);
  ASSERT_TRUE(f.error.empty()) << f.error;
  EXPECT_GT(f.exchanges, 0u);
  // A reply is only sent for a request received, so never more replies than requests.
  EXPECT_LE(f.exchanges, f.requests);
  EXPECT_GT(f.exchanges_per_s, 0);
  EXPECT_GE(f.server_cpu_s, 0);
  EXPECT_GE(f.server_us_per_exchange(), 0);
}

TEST(UdpFloor, OutOfRangeOptionsAreClampedNotRefused) {
  UdpFloorOptions o;
  o.seconds = 0.1;
  o.sockets = 0;
  o.window = 100000;
  o.request_bytes = 1 << 20;
  o.reply_bytes = 0;
  const UdpFloor f = probe_udp_request_reply(o);
  ASSERT_TRUE(f.error.empty()) << f.error;
  EXPECT_GT(f.exchanges, 0u);
}

}  // namespace
}  // namespace tianhe::tools::bench
