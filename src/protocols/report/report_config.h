// `[protocols.report]`: the report protocol's settings and their field table.
#pragma once

#include <cstdint>

#include "core/config_table.h"

namespace tianhe::protocols::report {

/// `[protocols.report]`: raw UDP reports (protobuf).
struct ReportProtocolConfig {
  bool enabled = true;                         ///< receive UDP reports
  config::Endpoint listen{"127.0.0.1", 7700};  ///< UDP address every shard binds (SO_REUSEPORT)
  uint32_t recv_buffer_bytes = 32u << 20;      ///< SO_RCVBUF(FORCE) request per socket
  uint32_t send_buffer_bytes = 8u << 20;       ///< SO_SNDBUF request per socket (acks)
  uint32_t recv_batch = 64;                    ///< datagrams per recvmmsg
  uint32_t max_datagram_bytes = 65507;         ///< longer datagrams are dropped (counted)
};

/// The `[protocols.report]` table (registered by register.cpp).
config::ConfigTable config_table();

}  // namespace tianhe::protocols::report
