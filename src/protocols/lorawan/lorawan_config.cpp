// GCC 12 at -O3 reports std::any(LoRaWanConfig{}) in config::table's make_default (instantiated
// in this file) as reading an uninitialised std::string: a false positive, every member has an
// initialiser. The warning is reported where the template is expanded, so it is off file-wide.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "protocols/lorawan/lorawan_config.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace tianhe::protocols::lorawan {
namespace {

using config::Field;
using config::Kind;
using P = config::Parsed;
using C = LoRaWanConfig;

// A hex string of exactly `digits` digits; "" or the problem and the fix.
std::string check_hex(const P& p, size_t digits, std::string_view what) {
  if (p.s.size() != digits) {
    return "expected " + std::string(what) + " as " + std::to_string(digits) +
           " hex digits; got \"" + p.s + "\"";
  }
  for (char c : p.s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return "\"" + p.s + "\" is not hexadecimal; write " + std::to_string(digits) +
             " digits 0-9a-f";
    }
  }
  return "";
}

uint32_t hex32(const std::string& s) {
  return static_cast<uint32_t>(std::strtoul(s.c_str(), nullptr, 16));
}

constexpr Field<C> kFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Receive LoRaWAN uplinks from Semtech UDP packet forwarders.",
     .set = [](C& c, const P& p) { c.enabled = p.b; }},
    {.key = "listen",
     .kind = Kind::kEndpoint,
     .default_text = "\"127.0.0.1:1700\"",
     .doc = "UDP address the packet forwarders send to (serv_port_up and serv_port_down); "
            "port 0 picks a free port.",
     .set = [](C& c, const P& p) { c.listen = p.ep; }},
    {.key = "keys_file",
     .kind = Kind::kString,
     .default_text = "\"lorawan-keys.toml\"",
     .doc = "TOML file with [[devices]] (keys) and [[gateways]] (allowed EUIs); refused unless "
            "its mode is 0600.",
     .set = [](C& c, const P& p) { c.keys_file = p.s; },
     .check = config::check_non_empty},
    {.key = "dedup_window",
     .kind = Kind::kDuration,
     .default_text = "\"200ms\"",
     .doc = "Copies of one frame heard by several gateways within this window are delivered "
            "once, with every gateway's RSSI and SNR.",
     .set = [](C& c, const P& p) { c.dedup_window_ns = p.i; },
     .min = config::kMs,
     .max = 900 * config::kMs},
    {.key = "max_sessions",
     .kind = Kind::kInt,
     .default_text = "1000000",
     .doc = "Device sessions held (ABP devices and joined OTAA devices); a join beyond it is "
            "refused and counted.",
     .set = [](C& c, const P& p) { c.max_sessions = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 16'000'000},
    {.key = "max_pending_frames",
     .kind = Kind::kInt,
     .default_text = "8192",
     .doc = "Frames waiting for their dedup window to close; further frames are refused and "
            "counted.",
     .set = [](C& c, const P& p) { c.max_pending_frames = static_cast<uint32_t>(p.i); },
     .min = 16,
     .max = 1'000'000},
    {.key = "max_gateways_per_frame",
     .kind = Kind::kInt,
     .default_text = "8",
     .doc = "Gateways whose radio metrics are kept for one frame; further copies are counted.",
     .set = [](C& c, const P& p) { c.max_gateways_per_frame = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 32},
    {.key = "max_downlinks",
     .kind = Kind::kInt,
     .default_text = "4096",
     .doc = "Downlinks (ACKs, Join-Accepts) waiting to be sent; further ones are dropped and "
            "counted.",
     .set = [](C& c, const P& p) { c.max_downlinks = static_cast<uint32_t>(p.i); },
     .min = 16,
     .max = 1'000'000},
    {.key = "net_id",
     .kind = Kind::kString,
     .default_text = "\"000013\"",
     .doc = "NetID sent in Join-Accepts (6 hex digits).",
     .set = [](C& c, const P& p) { c.net_id = hex32(p.s); },
     .check = [](const P& p) { return check_hex(p, 6, "a NetID"); }},
    {.key = "dev_addr_base",
     .kind = Kind::kString,
     .default_text = "\"26000000\"",
     .doc = "First DevAddr given to a joining device (8 hex digits); each join takes the next.",
     .set = [](C& c, const P& p) { c.dev_addr_base = hex32(p.s); },
     .check = [](const P& p) { return check_hex(p, 8, "a DevAddr"); }},
    {.key = "rx1_delay",
     .kind = Kind::kDuration,
     .default_text = "\"1s\"",
     .doc = "RECEIVE_DELAY1: an ACK downlink is sent for the first receive window this long "
            "after the uplink.",
     .set = [](C& c, const P& p) { c.rx1_delay_ns = p.i; },
     .min = config::kSec,
     .max = 15 * config::kSec,
     .unit_ns = config::kSec},
    {.key = "join_accept_delay",
     .kind = Kind::kDuration,
     .default_text = "\"5s\"",
     .doc = "JOIN_ACCEPT_DELAY1: a Join-Accept is sent for this long after the Join-Request.",
     .set = [](C& c, const P& p) { c.join_accept_delay_ns = p.i; },
     .min = config::kSec,
     .max = 15 * config::kSec,
     .unit_ns = config::kSec},
    {.key = "rx2_frequency",
     .kind = Kind::kNumber,
     .default_text = "869.525",
     .doc = "RX2 frequency (MHz) for downlinks RX1 cannot carry; must be the devices' RX2 "
            "frequency (the region's default: EU868 869.525).",
     .set = [](C& c, const P& p) { c.rx2_frequency_mhz = p.d; },
     .check = [](const P& p) -> std::string {
       if (p.d >= 137 && p.d <= 1020) return "";
       return "expected a frequency in MHz between 137 and 1020, e.g. 869.525";
     }},
    {.key = "rx2_datarate",
     .kind = Kind::kInt,
     .default_text = "0",
     .doc = "RX2 data rate (EU868 DR0..DR6: SF12BW125 .. SF7BW250), sent to joining devices in "
            "the Join-Accept's DLSettings; ABP devices must be configured with it.",
     .set = [](C& c, const P& p) { c.rx2_datarate = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 6},
    {.key = "downlink_lead",
     .kind = Kind::kDuration,
     .default_text = "\"50ms\"",
     .doc = "A downlink is sent for RX1 only if it leaves this long before RX1 opens (counted "
            "from the uplink's arrival); else it goes in RX2, or is dropped and counted.",
     .set = [](C& c, const P& p) { c.downlink_lead_ns = p.i; },
     .min = 0,
     .max = 900 * config::kMs},
    {.key = "gateway_pin",
     .kind = Kind::kDuration,
     .default_text = "\"600s\"",
     .doc = "A gateway is pinned to the address it first sent from; the pin lapses after this "
            "much silence.",
     .set = [](C& c, const P& p) { c.gateway_pin_ns = p.i; },
     .min = config::kSec},
    {.key = "tx_power",
     .kind = Kind::kInt,
     .default_text = "14",
     .doc = "Transmit power (dBm) asked of the gateway for downlinks (txpk powe).",
     .set = [](C& c, const P& p) { c.tx_power_dbm = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 30},
    {.key = "recv_buffer_bytes",
     .kind = Kind::kSize,
     .default_text = "\"8MiB\"",
     .doc = "Socket receive buffer requested (SO_RCVBUF, SO_RCVBUFFORCE when privileged).",
     .set = [](C& c, const P& p) { c.recv_buffer_bytes = static_cast<uint32_t>(p.i); },
     .min = 4 * config::kKiB,
     .max = config::kGiB},
    {.key = "recv_batch",
     .kind = Kind::kInt,
     .default_text = "64",
     .doc = "Datagrams read by one recvmmsg call.",
     .set = [](C& c, const P& p) { c.recv_batch = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 1024},
    {.key = "journal_sync",
     .kind = Kind::kBool,
     .default_text = "true",
     .doc = "fdatasync the session journal (frame counters, DevNonces, join keys) before an "
            "uplink is stored or a Join-Accept sent; false only for benchmarks.",
     .set = [](C& c, const P& p) { c.journal_sync = p.b; }},
    {.key = "journal_commit_delay",
     .kind = Kind::kDuration,
     .default_text = "\"10ms\"",
     .doc = "Frames whose dedup window closed wait up to this long (or until 1024 are due) so "
            "that one journal sync covers them all: the sync blocks the shard, and one per "
            "handful of frames caps the uplink rate. Adds up to this to an uplink's latency; "
            "\"0s\" syncs as soon as any frame is due.",
     .set = [](C& c, const P& p) { c.journal_commit_delay_ns = p.i; },
     .min = 0,
     .max = 100 * config::kMs},
    {.key = "journal_compact_bytes",
     .kind = Kind::kSize,
     .default_text = "\"4MiB\"",
     .doc = "The session journal is rewritten compacted (one record per device) while running "
            "once it outgrows the larger of this and 4 times its last compacted size.",
     .set = [](C& c, const P& p) { c.journal_compact_bytes = static_cast<uint64_t>(p.i); },
     .min = 64 * config::kKiB,
     .max = 64 * config::kGiB},
};

constexpr Field<GatewayConfig> kGatewayFields[] = {
    {.key = "eui",
     .kind = Kind::kString,
     .doc = "The gateway's EUI (16 hex digits, as its packet forwarder's gateway_ID); datagrams "
            "from any other EUI are refused and counted.",
     .set = [](GatewayConfig& g, const P& p) { g.eui = std::strtoull(p.s.c_str(), nullptr, 16); },
     .check = [](const P& p) { return check_hex(p, 16, "a gateway EUI"); },
     .required = true},
};

constexpr config::Section<GatewayConfig> kGatewaySection = {
    .header = "protocols.lorawan.gateways",
    .doc =
        "A packet forwarder allowed to send (one entry per gateway); it is pinned to the "
        "address it first sends from. Gateways may be listed in the keys file's [[gateways]] "
        "too.",
    .fields = kGatewayFields};

std::string finish(C& c, std::string_view /*data_dir*/) {
  std::vector<uint64_t> euis;
  for (const GatewayConfig& g : c.gateways) euis.push_back(g.eui);
  std::sort(euis.begin(), euis.end());
  auto dup = std::adjacent_find(euis.begin(), euis.end());
  if (dup != euis.end()) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(*dup));
    return "gateways: eui " + std::string(hex) + " is listed twice; remove one entry";
  }
  return "";
}

constexpr config::Section<C> kSection = {
    .header = "protocols.lorawan",
    .doc = "LoRaWAN 1.0.x through Semtech UDP packet forwarders (protocol v2).",
    .fields = kFields};

}  // namespace

config::ConfigTable config_table() {
  config::ConfigTable t = config::table(kSection, finish);
  t.arrays.push_back(config::array_table("gateways", kGatewaySection, &C::gateways));
  return t;
}

}  // namespace tianhe::protocols::lorawan
