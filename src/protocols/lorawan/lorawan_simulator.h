// `tianhe simulate --protocol lorawan`: packet forwarders carrying a fleet of ABP devices (real
// MIC and FRMPayload encryption), optionally each frame heard by several gateways; and the
// keys file describing that fleet, for the gateway it talks to.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"
#include "protocols/lorawan/lorawan_crypto.h"
#include "runtime/extensions.h"

namespace tianhe::protocols::lorawan {

/// A simulated fleet: device i (0-based) has DevEUI first_dev_eui + i, DevAddr
/// dev_addr_base + i and keys derived from the seed; gateway g has EUI gateway_eui_base + g.
struct FleetSpec {
  uint64_t devices = 1000;
  uint64_t first_dev_eui = 1;
  uint32_t dev_addr_base = 0x02000000;
  uint32_t gateways = 1;
  uint64_t gateway_eui_base = 0xAA55000000000001ull;
  uint64_t seed = 1;
};

/// Device i's session keys.
void fleet_keys(const FleetSpec& f, uint64_t i, Key& nwk_s_key, Key& app_s_key) noexcept;
/// Writes the fleet's keys file (mode 0600).
Result<void> write_fleet_keys(const FleetSpec& f, const std::string& path);

/// What the simulated devices send in FRMPayload (port 1).
enum class SimPayload : uint8_t {
  kSim12,  ///< 8 pseudo-random bytes and the frame round (little-endian u32): 12 bytes
  kLpp,    ///< Cayenne LPP: temperature, humidity, barometer, analog and digital input: 18 bytes
};

/// Device `i`'s payload in `round` (`out` holds 18 bytes); returns its length.
size_t sim_payload(SimPayload kind, uint64_t i, uint64_t round, uint8_t* out) noexcept;

/// What to simulate.
struct LoRaWanSimOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 1700;
  FleetSpec fleet;
  double rate = 1000;  ///< uplinks per second (0: as fast as possible)
  double duration_s = 10;
  uint32_t copies = 1;           ///< gateways that hear each frame (<= fleet.gateways)
  uint32_t per_datagram = 1;     ///< rxpk entries per PUSH_DATA
  uint32_t first_fcnt = 0;       ///< 0: derived from the clock, so reruns are not replays
  uint32_t confirmed_every = 0;  ///< every Nth uplink is confirmed (0: none)
  SimPayload payload = SimPayload::kSim12;
  double drain_s = 1;
  bool progress = true;
};

/// What the fleet saw. "acked" means PUSH_ACK received (the gateway read the datagram), not
/// that the report is durable: LoRaWAN has no per-uplink acknowledgement except for confirmed
/// frames, whose ACK downlinks are counted separately.
struct LoRaWanSimSummary {
  uint64_t sent = 0;       ///< uplinks (frames, not copies)
  uint64_t datagrams = 0;  ///< PUSH_DATA sent
  uint64_t acked = 0;      ///< PUSH_ACKs received
  uint64_t lost = 0;       ///< PUSH_DATA never acknowledged
  uint64_t downlinks = 0;  ///< PULL_RESP received
  uint64_t send_errors = 0;
  uint32_t last_fcnt = 0;  ///< the counter of the last round sent
  double elapsed_s = 0, rate = 0, acked_rate = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;  ///< PUSH_DATA to PUSH_ACK
  std::string json() const;                                ///< the report simulator's keys
  std::string text() const;
};

/// Runs the fleet.
Result<LoRaWanSimSummary> run_lorawan_simulator(const LoRaWanSimOptions& o,
                                                const std::atomic<bool>* stop = nullptr);

/// `tianhe simulate --protocol lorawan ...`.
int cmd_simulate(int argc, char** argv);

/// `tianhe bench --protocols`: the LoRaWAN row (keys file written into `dir`).
Result<runtime::ProtocolBenchPlan> bench_plan(const std::string& dir, uint64_t devices);

}  // namespace tianhe::protocols::lorawan
