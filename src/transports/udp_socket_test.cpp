#include "transports/udp_socket.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <ctime>
#include <string>

namespace tianhe::transports {
namespace {

PeerAddress loopback(uint16_t port) {
  auto a = resolve("127.0.0.1", port);
  EXPECT_TRUE(a.ok());
  return *a;
}

int wait_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 5000);
}

TEST(UdpSocket, BatchReceiveKeepsBytesAndPeers) {
  auto rx = UdpSocket::bind(loopback(0), UdpOptions{.recv_buffer_bytes = 1 << 20});
  ASSERT_TRUE(rx.ok()) << rx.error().message;
  ASSERT_TRUE(enable_drop_counter(rx->fd()));
  EXPECT_GE(rx->recv_buffer_bytes(), 1u << 20);
  uint16_t port = rx->local_port();
  ASSERT_NE(port, 0);

  auto to = loopback(port);
  auto tx = UdpSocket::open_for(to, UdpOptions{.reuse_port = false, .nonblocking = false});
  ASSERT_TRUE(tx.ok());
  for (int i = 0; i < 5; ++i) {
    std::string msg = "datagram-" + std::to_string(i);
    ASSERT_EQ(::sendto(tx->fd(), msg.data(), msg.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to.addr), to.len),
              static_cast<ssize_t>(msg.size()));
  }
  DatagramBatch batch(8, 64);
  uint32_t got = 0;
  std::string seen;
  while (got < 5) {
    ASSERT_EQ(wait_readable(rx->fd()), 1);
    int n = batch.receive(rx->fd());
    ASSERT_GE(n, 0);
    for (uint32_t i = 0; i < batch.size(); ++i) {
      auto d = batch.data(i);
      seen += std::string(reinterpret_cast<const char*>(d.data()), d.size()) + ";";
      EXPECT_FALSE(batch.truncated(i));
      EXPECT_EQ(batch.peer(i).ss_family, AF_INET);
    }
    got += batch.size();
  }
  EXPECT_EQ(seen, "datagram-0;datagram-1;datagram-2;datagram-3;datagram-4;");
  EXPECT_EQ(batch.kernel_drops(), 0u);
}

TEST(UdpSocket, ArrivalTimesOnlyWhereEnabled) {
  auto rx = UdpSocket::bind(loopback(0), UdpOptions{});
  ASSERT_TRUE(rx.ok());
  ASSERT_TRUE(enable_drop_counter(rx->fd()));  // both control messages on one datagram
  auto to = loopback(rx->local_port());
  auto tx = UdpSocket::open_for(to, UdpOptions{.reuse_port = false, .nonblocking = false});
  ASSERT_TRUE(tx.ok());
  auto send = [&] {
    ASSERT_EQ(::sendto(tx->fd(), "x", 1, 0, reinterpret_cast<const sockaddr*>(&to.addr), to.len),
              1);
  };
  DatagramBatch batch(8, 64);
  send();
  ASSERT_EQ(wait_readable(rx->fd()), 1);
  ASSERT_EQ(batch.receive(rx->fd()), 1);
  EXPECT_EQ(batch.arrival_wall_ns(0), 0);  // not asked for

  ASSERT_TRUE(enable_receive_timestamps(rx->fd()));
  timespec before{};
  clock_gettime(CLOCK_REALTIME, &before);
  send();
  send();
  send();
  uint32_t got = 0;
  while (got < 3) {
    ASSERT_EQ(wait_readable(rx->fd()), 1);
    ASSERT_GT(batch.receive(rx->fd()), 0);
    timespec after{};
    clock_gettime(CLOCK_REALTIME, &after);
    for (uint32_t i = 0; i < batch.size(); ++i) {
      // Stamped when it reached the socket: between the first send and this receive.
      EXPECT_GE(batch.arrival_wall_ns(i), before.tv_sec * 1'000'000'000LL + before.tv_nsec);
      EXPECT_LE(batch.arrival_wall_ns(i), after.tv_sec * 1'000'000'000LL + after.tv_nsec);
    }
    got += batch.size();
  }
  EXPECT_EQ(batch.kernel_drops(), 0u);

  // First-arrival mode: the oldest datagram's time only, the others read as 0.
  batch.set_first_arrival_only(true);
  clock_gettime(CLOCK_REALTIME, &before);
  send();
  send();
  send();
  got = 0;
  while (got < 3) {
    ASSERT_EQ(wait_readable(rx->fd()), 1);
    ASSERT_GT(batch.receive(rx->fd()), 0);
    EXPECT_GE(batch.arrival_wall_ns(0), before.tv_sec * 1'000'000'000LL + before.tv_nsec);
    for (uint32_t i = 1; i < batch.size(); ++i) EXPECT_EQ(batch.arrival_wall_ns(i), 0);
    got += batch.size();
  }
}

TEST(UdpSocket, OversizedDatagramIsFlaggedTruncated) {
  auto rx = UdpSocket::bind(loopback(0), UdpOptions{});
  ASSERT_TRUE(rx.ok());
  auto to = loopback(rx->local_port());
  auto tx = UdpSocket::open_for(to, UdpOptions{.reuse_port = false, .nonblocking = false});
  ASSERT_TRUE(tx.ok());
  std::string big(100, 'x');
  ASSERT_EQ(::sendto(tx->fd(), big.data(), big.size(), 0,
                     reinterpret_cast<const sockaddr*>(&to.addr), to.len),
            100);
  DatagramBatch batch(4, 16);
  ASSERT_EQ(wait_readable(rx->fd()), 1);
  ASSERT_EQ(batch.receive(rx->fd()), 1);
  EXPECT_TRUE(batch.truncated(0));
  EXPECT_EQ(batch.data(0).size(), 16u);
}

TEST(UdpSocket, BindConflictNamesTheAddress) {
  auto a = UdpSocket::bind(loopback(0), UdpOptions{.reuse_port = false});
  ASSERT_TRUE(a.ok());
  auto b = UdpSocket::bind(loopback(a->local_port()), UdpOptions{.reuse_port = false});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("127.0.0.1:"), std::string::npos) << b.error().message;
}

TEST(UdpSocket, ExclusiveBindRefusesToJoinAnotherGroup) {
  // A group of SO_REUSEPORT sockets, as another gateway's shards would hold the port.
  auto a = UdpSocket::bind(loopback(0), UdpOptions{.exclusive = true});
  ASSERT_TRUE(a.ok()) << a.error().message;
  const uint16_t port = a->local_port();
  auto joined = UdpSocket::bind(loopback(port), UdpOptions{});
  ASSERT_TRUE(joined.ok()) << joined.error().message;  // the same group joins, as shards do
  // A new group's first socket does not silently take a share of the port's datagrams.
  auto b = UdpSocket::bind(loopback(port), UdpOptions{.exclusive = true});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.error().message.find("another process holds the port"), std::string::npos)
      << b.error().message;
  // Once the port is free again, the exclusive bind takes it.
  a = UdpSocket();
  joined = UdpSocket();
  EXPECT_TRUE(UdpSocket::bind(loopback(port), UdpOptions{.exclusive = true}).ok());
}

TEST(UdpSocket, ResolveRejectsNames) {
  EXPECT_TRUE(resolve("::1", 1).ok());
  EXPECT_FALSE(resolve("no such host.invalid", 1).ok());
}

}  // namespace
}  // namespace tianhe::transports
