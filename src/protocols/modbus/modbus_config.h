// `[protocols.modbus]`: the Modbus TCP poller's settings, its `[[protocols.modbus.devices]]`
// (one PLC or one unit behind a gateway each), and the `modbus = { ... }` options of a model's
// metrics (where the value lives in the device). Parsed once, immutable, shared by all shards.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config_table.h"
#include "protocols/modbus/modbus_map.h"

namespace tianhe::protocols::modbus {

/// Most transactions one connection may have in flight.
inline constexpr uint32_t kMaxInFlight = 16;

/// One `[[protocols.modbus.devices]]` entry.
struct ModbusDevice {
  uint64_t device = 0;                     ///< a registered device id (its model has the map)
  config::Endpoint address{"", 502};       ///< the PLC's or the gateway's host:port
  uint32_t unit = 1;                       ///< unit identifier (0..255; a slave behind a gateway)
  int64_t interval_ns = 1 * config::kSec;  ///< poll interval
  uint32_t in_flight = 0;                  ///< transactions in flight; 0: the protocol's
  int64_t request_timeout_ns = 0;          ///< 0: the protocol's
};

/// `[protocols.modbus]`.
struct ModbusConfig {
  bool enabled = false;               ///< poll the devices listed
  std::vector<ModbusDevice> devices;  ///< [[protocols.modbus.devices]]
  uint32_t max_gap = 8;               ///< unused registers read through to join two blocks
  uint32_t max_gap_bits = 64;         ///< unused coils / inputs read through
  uint32_t max_registers = 125;       ///< registers a request (FC 3/4)
  uint32_t max_bits = 2000;           ///< bits a request (FC 1/2)
  uint32_t in_flight = 1;             ///< transactions in flight a connection (default)
  int64_t request_timeout_ns = 1 * config::kSec;    ///< a response not here by then: reset
  int64_t connect_timeout_ns = 3 * config::kSec;    ///< a TCP connect not done by then: retry
  int64_t backoff_min_ns = 100 * config::kMs;       ///< first reconnect delay
  int64_t backoff_max_ns = 30 * config::kSec;       ///< reconnect and exception back-off ceiling
  int64_t exception_backoff_ns = 1 * config::kSec;  ///< first delay after an exception cycle
};

/// `modbus = { ... }` in a `[[models.metrics]]` entry.
struct ModbusMetricOptions {
  Table table = Table::kHolding;
  uint32_t address = 0;
  DataType type = DataType::kUint16;
  Order word_order = Order::kBig;
  Order byte_order = Order::kBig;
  double scale = 1;
  double offset = 0;
  bool has_type = false;  ///< `type` given (else: bool for bit tables, uint16 for registers)
};

/// The `[protocols.modbus]` table (with its devices array).
config::ConfigTable config_table();

/// The table of a metric's `modbus = { ... }` options.
config::ConfigTable metric_options_table();

}  // namespace tianhe::protocols::modbus
