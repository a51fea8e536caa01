// GCC 12 at -O3 reports std::any(ModbusConfig{}) in config::table's make_default as reading an
// uninitialised std::string: a false positive (every member has an initialiser), reported where
// the template is expanded, so it is off file-wide.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "protocols/modbus/modbus_config.h"

#include <algorithm>
#include <string>

namespace tianhe::protocols::modbus {
namespace {

using config::Field;
using config::Kind;
using P = config::Parsed;
using C = ModbusConfig;
using D = ModbusDevice;
using M = ModbusMetricOptions;

constexpr std::string_view kTables[] = {"coil", "discrete", "holding", "input"};
constexpr std::string_view kTypes[] = {"bool",    "int16", "uint16", "int32",  "uint32",
                                       "float32", "int64", "uint64", "float64"};
constexpr std::string_view kOrders[] = {"big", "little"};

template <typename E, size_t N>
E choice(const std::string_view (&names)[N], const std::string& s) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<E>(i);
  }
  return static_cast<E>(0);
}

constexpr Field<C> kFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Poll the devices of [[protocols.modbus.devices]] (off unless true, even when devices "
            "are listed).",
     .set = [](C& c, const P& p) { c.enabled = p.b; }},
    {.key = "max_gap",
     .kind = Kind::kInt,
     .default_text = "8",
     .doc = "Unused registers between two metrics that are read through so that one request "
            "covers both (0: only adjacent registers are joined).",
     .set = [](C& c, const P& p) { c.max_gap = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 124},
    {.key = "max_gap_bits",
     .kind = Kind::kInt,
     .default_text = "64",
     .doc = "Unused coils or discrete inputs read through to join two blocks of bits.",
     .set = [](C& c, const P& p) { c.max_gap_bits = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 1999},
    {.key = "max_registers",
     .kind = Kind::kInt,
     .default_text = "125",
     .doc = "Registers one read (FC 3/4) asks for; lower it for devices that refuse long reads.",
     .set = [](C& c, const P& p) { c.max_registers = static_cast<uint32_t>(p.i); },
     .min = 4,
     .max = 125},
    {.key = "max_bits",
     .kind = Kind::kInt,
     .default_text = "2000",
     .doc = "Coils or discrete inputs one read (FC 1/2) asks for.",
     .set = [](C& c, const P& p) { c.max_bits = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 2000},
    {.key = "in_flight",
     .kind = Kind::kInt,
     .default_text = "1",
     .doc = "Requests sent on a connection before the first is answered; raise it only for "
            "slaves and gateways that queue requests (a device's in_flight overrides it).",
     .set = [](C& c, const P& p) { c.in_flight = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = kMaxInFlight},
    {.key = "request_timeout",
     .kind = Kind::kDuration,
     .default_text = "\"1s\"",
     .doc = "A response not received by then is counted as a timeout and the connection is "
            "reset (a late answer can no longer be told from the next one).",
     .set = [](C& c, const P& p) { c.request_timeout_ns = p.i; },
     .min = config::kMs,
     .max = 600 * config::kSec},
    {.key = "connect_timeout",
     .kind = Kind::kDuration,
     .default_text = "\"3s\"",
     .doc = "A TCP connect not established by then fails and is retried after the back-off.",
     .set = [](C& c, const P& p) { c.connect_timeout_ns = p.i; },
     .min = config::kMs,
     .max = 600 * config::kSec},
    {.key = "backoff_min",
     .kind = Kind::kDuration,
     .default_text = "\"100ms\"",
     .doc = "Delay before the first reconnect; it doubles with each failure up to backoff_max, "
            "each delay drawn between half and all of it (jitter).",
     .set = [](C& c, const P& p) { c.backoff_min_ns = p.i; },
     .min = config::kMs,
     .max = 3600 * config::kSec},
    {.key = "backoff_max",
     .kind = Kind::kDuration,
     .default_text = "\"30s\"",
     .doc = "Longest delay between reconnects, and between poll cycles of a slave that keeps "
            "answering exceptions.",
     .set = [](C& c, const P& p) { c.backoff_max_ns = p.i; },
     .min = config::kMs,
     .max = 3600 * config::kSec},
    {.key = "exception_backoff",
     .kind = Kind::kDuration,
     .default_text = "\"1s\"",
     .doc = "A cycle that drew an exception response delays the next one by this much, doubling "
            "while exceptions continue (up to backoff_max); a clean cycle clears it.",
     .set = [](C& c, const P& p) { c.exception_backoff_ns = p.i; },
     .min = 0,
     .max = 3600 * config::kSec},
};

constexpr config::Section<C> kSection = {
    .header = "protocols.modbus",
    .doc =
        "Modbus TCP poller: Tianhe connects to PLCs and gateways and reads coils, discrete "
        "inputs, holding and input registers (FC 1-4) on an interval per device.",
    .fields = kFields};

constexpr Field<D> kDeviceFields[] = {
    {.key = "device",
     .kind = Kind::kInt,
     .doc = "A registered device id ([[devices]]); its model's metrics say what to read "
            "(`modbus = { table, address, type }`).",
     .set = [](D& d, const P& p) { d.device = static_cast<uint64_t>(p.i); },
     .min = 1,
     .required = true},
    {.key = "address",
     .kind = Kind::kEndpoint,
     .doc = "host:port of the PLC or of the Modbus TCP gateway in front of it (502 is the "
            "standard port).",
     .set = [](D& d, const P& p) { d.address = p.ep; },
     .required = true},
    {.key = "unit",
     .kind = Kind::kInt,
     .default_text = "1",
     .doc = "Unit identifier: the serial slave address behind a gateway (1-247), or what a "
            "TCP device expects (often 1, 0 or 255).",
     .set = [](D& d, const P& p) { d.unit = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 255},
    {.key = "interval",
     .kind = Kind::kDuration,
     .default_text = "\"1s\"",
     .doc = "Poll interval: one cycle (every block of the map read once) becomes one report.",
     .set = [](D& d, const P& p) { d.interval_ns = p.i; },
     .min = config::kMs,
     .max = 86400 * config::kSec},
    {.key = "in_flight",
     .kind = Kind::kInt,
     .default_text = "0",
     .doc = "Requests in flight on this device's connection; 0 takes protocols.modbus.in_flight.",
     .set = [](D& d, const P& p) { d.in_flight = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = kMaxInFlight},
    {.key = "request_timeout",
     .kind = Kind::kDuration,
     .default_text = "\"0\"",
     .doc = "This device's request timeout; 0 takes protocols.modbus.request_timeout.",
     .set = [](D& d, const P& p) { d.request_timeout_ns = p.i; },
     .min = 0,
     .max = 600 * config::kSec},
};

constexpr config::Section<D> kDeviceSection = {
    .header = "protocols.modbus.devices",
    .doc = "One polled device: a PLC, or one unit behind a Modbus TCP gateway.",
    .fields = kDeviceFields};

constexpr Field<M> kMetricFields[] = {
    {.key = "table",
     .kind = Kind::kEnum,
     .default_text = "\"holding\"",
     .doc = "The data table: coil (FC 1), discrete (FC 2), holding (FC 3) or input (FC 4).",
     .set = [](M& m, const P& p) { m.table = choice<Table>(kTables, p.s); },
     .choices = kTables,
     .what = "a table"},
    {.key = "address",
     .kind = Kind::kInt,
     .doc = "The first register or bit, as the protocol numbers it (0-based: holding register "
            "40001 is address 0).",
     .set = [](M& m, const P& p) { m.address = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 65535,
     .required = true},
    {.key = "type",
     .kind = Kind::kEnum,
     .default_text = "\"uint16\"",
     .doc = "How the registers are read: bool (the only type of coils and discrete inputs; a "
            "register: non-zero), int16, uint16, int32, uint32, float32 (two registers), "
            "int64, uint64, float64 (four).",
     .set =
         [](M& m, const P& p) {
           m.type = choice<DataType>(kTypes, p.s);
           m.has_type = true;
         },
     .choices = kTypes,
     .what = "a type"},
    {.key = "word_order",
     .kind = Kind::kEnum,
     .default_text = "\"big\"",
     .doc = "big: the first register holds the most significant word (Modbus convention); "
            "little: the least significant (word-swapped devices).",
     .set = [](M& m, const P& p) { m.word_order = choice<Order>(kOrders, p.s); },
     .choices = kOrders,
     .what = "an order"},
    {.key = "byte_order",
     .kind = Kind::kEnum,
     .default_text = "\"big\"",
     .doc = "big: each register high byte first (the standard); little: bytes swapped in each "
            "register.",
     .set = [](M& m, const P& p) { m.byte_order = choice<Order>(kOrders, p.s); },
     .choices = kOrders,
     .what = "an order"},
    {.key = "scale",
     .kind = Kind::kNumber,
     .default_text = "1",
     .doc = "The stored value is raw * scale + offset.",
     .set = [](M& m, const P& p) { m.scale = p.d; }},
    {.key = "offset",
     .kind = Kind::kNumber,
     .default_text = "0",
     .doc = "Added after scaling.",
     .set = [](M& m, const P& p) { m.offset = p.d; }},
};

constexpr config::Section<M> kMetricSection = {
    .header = "models.metrics.modbus",
    .doc = "Where a metric lives in a Modbus device (protocols.modbus reads it).",
    .fields = kMetricFields};

std::string finish(C& c, std::string_view) {
  std::vector<std::pair<uint64_t, size_t>> ids;
  ids.reserve(c.devices.size());
  for (size_t i = 0; i < c.devices.size(); ++i) {
    const ModbusDevice& d = c.devices[i];
    if (d.address.port == 0) {
      return "protocols.modbus.devices[" + std::to_string(i) +
             "].address: port 0 names no "
             "server; write the PLC's port (502 is the standard one)";
    }
    ids.emplace_back(d.device, i);
  }
  std::sort(ids.begin(), ids.end());
  for (size_t i = 1; i < ids.size(); ++i) {
    if (ids[i].first == ids[i - 1].first) {
      return "protocols.modbus.devices[" + std::to_string(ids[i].second) + "].device: device " +
             std::to_string(ids[i].first) + " is listed twice (also entry " +
             std::to_string(ids[i - 1].second) + "); give each entry its own device id";
    }
  }
  return "";
}

}  // namespace

config::ConfigTable config_table() {
  config::ConfigTable t = config::table(kSection, finish);
  t.arrays.push_back(config::array_table("devices", kDeviceSection, &ModbusConfig::devices));
  return t;
}

config::ConfigTable metric_options_table() {
  return config::table(kMetricSection);
}

}  // namespace tianhe::protocols::modbus
