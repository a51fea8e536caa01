// The kernel's UDP request/reply floor: how many "one datagram in, one reply datagram out"
// exchanges this machine's loopback carries when nothing but the kernel does any work. A protocol
// that must answer every message with a datagram of its own (an MQTT-SN PUBACK per PUBLISH)
// cannot go above it, whatever the gateway does; the report protocol, whose acks cover several
// reports each, can. `tianhe bench --protocols` measures it in the same run as the rows, so a
// row is read as a ratio to what the kernel allows for its shape of traffic.
#pragma once

#include <cstdint>
#include <string>

namespace tianhe::tools::bench {

/// How probe_udp_request_reply() drives the exchange.
struct UdpFloorOptions {
  double seconds = 2;           ///< how long the clients send
  uint32_t sockets = 16;        ///< client sockets (each its own source address for the replies)
  uint32_t window = 64;         ///< requests in flight per client socket
  uint32_t request_bytes = 48;  ///< a request's size (about an MQTT-SN PUBLISH with JSON)
  uint32_t reply_bytes = 7;     ///< a reply's size (an MQTT-SN PUBACK)
};

/// Measured by probe_udp_request_reply().
struct UdpFloor {
  double exchanges_per_s = 0;   ///< replies the clients received, per second
  uint64_t exchanges = 0;       ///< replies received
  uint64_t requests = 0;        ///< requests sent
  uint64_t resent_windows = 0;  ///< windows sent again after a stall (datagrams the kernel dropped)
  double server_cpu_s = 0;      ///< CPU time of the answering thread (user + system)
  double client_cpu_s = 0;      ///< CPU time of the sending thread
  std::string error;            ///< "" when measured
  /// The answering thread's CPU per exchange, in microseconds (receive, reply, the kernel's
  /// loopback delivery of the reply).
  double server_us_per_exchange() const {
    return exchanges > 0 ? server_cpu_s * 1e6 / static_cast<double>(exchanges) : 0;
  }
};

/// Runs an answering thread (one socket on 127.0.0.1, port 0, recvmmsg in batches, one reply
/// per request to its sender with sendmmsg) and, on the calling thread, `sockets` clients that
/// keep `window` requests each in flight (sendmmsg), sending one new request per reply. No
/// payload is looked at: what remains is the kernel's cost, on the same cores a gateway and its
/// simulator would share. `error` says why when a socket cannot be made.
UdpFloor probe_udp_request_reply(const UdpFloorOptions& o);

}  // namespace tianhe::tools::bench
