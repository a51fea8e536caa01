// UDP sockets for the data plane: one SO_REUSEPORT socket per shard, batched receive
// (recvmmsg) and send (sendmmsg), kernel drop counters (SO_RXQ_OVFL).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/result.h"

namespace tianhe::transports {

/// A peer address (IPv4 or IPv6), copyable, no allocation.
struct PeerAddress {
  sockaddr_storage addr{};
  socklen_t len = 0;
  /// "127.0.0.1:5000" / "[::1]:5000".
  std::string to_string() const;
};

/// Resolves a numeric host and port ("127.0.0.1", "::1", "localhost") into an address.
Result<PeerAddress> resolve(const std::string& host, uint16_t port);

/// Options for opening a socket.
struct UdpOptions {
  bool reuse_port = true;
  /// With reuse_port: fail when sockets already hold the address (another process's group)
  /// instead of silently joining them and taking a share of their datagrams. The first socket
  /// of a group sets it; the ones that join the group later do not.
  bool exclusive = false;
  uint32_t recv_buffer_bytes = 0;  ///< 0 = kernel default
  uint32_t send_buffer_bytes = 0;
  bool nonblocking = true;
};

/// One UDP socket (RAII). Thread-compatible: one owner thread.
class UdpSocket {
 public:
  UdpSocket() = default;
  ~UdpSocket();
  UdpSocket(UdpSocket&& other) noexcept;
  UdpSocket& operator=(UdpSocket&& other) noexcept;

  /// Binds to `local` (port 0 picks one). Errors name the address and the cause.
  static Result<UdpSocket> bind(const PeerAddress& local, const UdpOptions& options);
  /// An unbound socket of the family of `peer` (for senders).
  static Result<UdpSocket> open_for(const PeerAddress& peer, const UdpOptions& options);

  int fd() const noexcept { return fd_; }
  /// The bound port.
  uint16_t local_port() const noexcept;
  /// The receive buffer the kernel granted (SO_RCVBUF reads back twice the request).
  uint32_t recv_buffer_bytes() const noexcept;
  uint32_t send_buffer_bytes() const noexcept;

 private:
  explicit UdpSocket(int fd) : fd_(fd) {}
  int fd_ = -1;
};

/// Reusable recvmmsg/sendmmsg state for batches of up to `capacity` datagrams of at most
/// `max_datagram_bytes`; allocated once. One per shard thread.
class DatagramBatch {
 public:
  DatagramBatch(uint32_t capacity, uint32_t max_datagram_bytes);
  ~DatagramBatch();
  DatagramBatch(const DatagramBatch&) = delete;
  DatagramBatch& operator=(const DatagramBatch&) = delete;

  /// Receives up to capacity datagrams without blocking. Returns the count (0 when none),
  /// or -errno. Updates the kernel drop counter when the socket reports it.
  int receive(int fd) noexcept;
  /// Number of datagrams from the last receive().
  uint32_t size() const noexcept { return count_; }
  /// Datagram i's bytes; truncated(i) is true when it was larger than max_datagram_bytes.
  std::span<const uint8_t> data(uint32_t i) const noexcept;
  bool truncated(uint32_t i) const noexcept;
  /// The sender of datagram i.
  const sockaddr_storage& peer(uint32_t i) const noexcept { return addrs_[i]; }
  socklen_t peer_len(uint32_t i) const noexcept { return hdrs_[i].msg_hdr.msg_namelen; }
  /// The kernel's cumulative count of datagrams dropped on this socket (SO_RXQ_OVFL).
  uint32_t kernel_drops() const noexcept { return kernel_drops_; }
  /// When datagram i reached the socket (CLOCK_REALTIME, ns), on a socket with
  /// enable_receive_timestamps(); 0 otherwise, and for i > 0 after set_first_arrival_only().
  int64_t arrival_wall_ns(uint32_t i) const noexcept { return has_arrivals_ ? arrivals_[i] : 0; }
  /// Reads only the first (oldest) datagram's arrival time of each receive: enough to know how
  /// long the batch waited in the socket, without a pass over every datagram's controls.
  void set_first_arrival_only(bool first_only) noexcept { first_arrival_only_ = first_only; }

 private:
  uint32_t capacity_;
  uint32_t max_bytes_;
  uint32_t count_ = 0;
  uint32_t kernel_drops_ = 0;
  std::unique_ptr<uint8_t[]> buffers_;
  std::unique_ptr<mmsghdr[]> hdrs_;
  std::unique_ptr<iovec[]> iovs_;
  std::unique_ptr<sockaddr_storage[]> addrs_;
  std::unique_ptr<uint8_t[]> controls_;
  std::unique_ptr<int64_t[]> arrivals_;
  bool has_arrivals_ = false;  // the last receive's datagrams carry arrival times
  bool first_arrival_only_ = false;

  /// Reads datagram i's control messages (the drop count too when `drops`); true when it
  /// carried an arrival time.
  bool read_controls(uint32_t i, bool drops) noexcept;
};

/// Enables SO_RXQ_OVFL on `fd` so DatagramBatch can report kernel drops.
bool enable_drop_counter(int fd) noexcept;
/// Enables SO_TIMESTAMPNS on `fd`: DatagramBatch then reports when each datagram arrived,
/// independent of when the receiving thread got to run (load generators measure with it).
bool enable_receive_timestamps(int fd) noexcept;

/// Sends up to `count` datagrams with one sendmmsg; returns how many were sent or -errno.
int send_batch(int fd, mmsghdr* msgs, uint32_t count) noexcept;

}  // namespace tianhe::transports
