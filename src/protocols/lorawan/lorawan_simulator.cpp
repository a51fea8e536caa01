#include "protocols/lorawan/lorawan_simulator.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/args.h"
#include "core/clock.h"
#include "core/config_table.h"
#include "core/hash.h"
#include "protocols/lorawan/lorawan_phy.h"
#include "protocols/lorawan/semtech_parser.h"
#include "transports/udp_socket.h"

namespace tianhe::protocols::lorawan {
namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) {
  g_stop.store(true);
}

std::string hex(uint64_t v, int bytes) {
  char b[17];
  std::snprintf(b, sizeof b, "%0*llx", bytes * 2, static_cast<unsigned long long>(v));
  return b;
}
std::string hex_key(const Key& k) {
  std::string s;
  for (uint8_t b : k) s += hex(b, 1);
  return s;
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

}  // namespace

size_t sim_payload(SimPayload kind, uint64_t i, uint64_t round, uint8_t* out) noexcept {
  const uint64_t v = core::mix64(i ^ round);
  if (kind == SimPayload::kSim12) {
    std::memcpy(out, &v, 8);
    const auto r = static_cast<uint32_t>(round);
    std::memcpy(out + 8, &r, 4);
    return 12;
  }
  // Cayenne LPP (channel, type, big-endian value): temperature 0x67 (0.1 degC, -20.0..43.9),
  // humidity 0x68 (0.5 %), barometer 0x73 (0.1 hPa, 950.0..1052.3), analog input 0x02 (0.01),
  // digital input 0x00. Every value varies with the device and the round.
  const auto temp = static_cast<int16_t>(static_cast<int>(v % 640) - 200);
  const auto baro = static_cast<uint16_t>(9500 + ((v >> 16) % 1024));
  const auto analog = static_cast<int16_t>(static_cast<int>((v >> 32) % 2000) - 1000);
  const uint8_t b[18] = {0x01,
                         0x67,
                         static_cast<uint8_t>(static_cast<uint16_t>(temp) >> 8),
                         static_cast<uint8_t>(temp),
                         0x02,
                         0x68,
                         static_cast<uint8_t>((v >> 10) % 201),
                         0x03,
                         0x73,
                         static_cast<uint8_t>(baro >> 8),
                         static_cast<uint8_t>(baro),
                         0x04,
                         0x02,
                         static_cast<uint8_t>(static_cast<uint16_t>(analog) >> 8),
                         static_cast<uint8_t>(analog),
                         0x05,
                         0x00,
                         static_cast<uint8_t>((v >> 48) & 1)};
  std::memcpy(out, b, sizeof b);
  return sizeof b;
}

void fleet_keys(const FleetSpec& f, uint64_t i, Key& nwk, Key& app) noexcept {
  for (int j = 0; j < 2; ++j) {
    const uint64_t a = core::mix64(f.seed * 0x9E3779B97F4A7C15ull ^ (i << 2) ^ 1);
    const uint64_t b = core::mix64(a ^ (static_cast<uint64_t>(j) + 7));
    Key& k = j == 0 ? nwk : app;
    const uint64_t c = core::mix64(b ^ 0x1234);
    std::memcpy(k.data(), &b, 8);
    std::memcpy(k.data() + 8, &c, 8);
  }
}

Result<void> write_fleet_keys(const FleetSpec& f, const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return make_error("cannot write " + path + ": " + std::strerror(errno));
  ::fchmod(fd, 0600);
  std::string s = "# A simulated fleet (tianhe simulate --protocol lorawan --write-keys).\n";
  for (uint32_t g = 0; g < f.gateways; ++g) {
    s += "[[gateways]]\neui = \"" + hex(f.gateway_eui_base + g, 8) + "\"\n";
  }
  for (uint64_t i = 0; i < f.devices; ++i) {
    Key nwk, app;
    fleet_keys(f, i, nwk, app);
    s += "[[devices]]\ndev_eui = \"" + hex(f.first_dev_eui + i, 8) + "\"\ndev_addr = \"" +
         hex(static_cast<uint32_t>(f.dev_addr_base + i), 4) + "\"\nnwk_s_key = \"" + hex_key(nwk) +
         "\"\napp_s_key = \"" + hex_key(app) + "\"\n";
  }
  const bool ok = ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
  ::close(fd);
  if (!ok) return make_error("cannot write " + path);
  return {};
}

Result<LoRaWanSimSummary> run_lorawan_simulator(const LoRaWanSimOptions& o,
                                                const std::atomic<bool>* stop) {
  auto target = transports::resolve(o.host, o.port);
  if (!target.ok()) return target.error();
  const uint32_t gws = std::max<uint32_t>(1, o.fleet.gateways);
  const uint32_t copies = std::clamp<uint32_t>(o.copies, 1, gws);
  std::vector<transports::UdpSocket> socks;
  for (uint32_t g = 0; g < gws; ++g) {
    auto s = transports::UdpSocket::open_for(
        *target,
        {.reuse_port = false, .recv_buffer_bytes = 4u << 20, .send_buffer_bytes = 4u << 20});
    if (!s.ok()) return s.error();
    if (::connect(s->fd(), reinterpret_cast<const sockaddr*>(&target->addr), target->len) != 0) {
      return make_error("connect: " + std::string(std::strerror(errno)));
    }
    socks.push_back(std::move(*s));
  }
  // Per gateway socket: when each token's PUSH_DATA went (0: acked or never sent).
  std::vector<std::vector<int64_t>> sent_at(gws, std::vector<int64_t>(65536, 0));
  std::vector<uint16_t> token(gws, 0);
  LoRaWanSimSummary sum;
  std::vector<double> lat;
  lat.reserve(1 << 20);
  auto header = [&](uint8_t* b, uint32_t g, uint8_t type) {
    b[0] = kSemtechVersion;
    b[1] = static_cast<uint8_t>(token[g] >> 8);
    b[2] = static_cast<uint8_t>(token[g]);
    b[3] = type;
    const uint64_t eui = o.fleet.gateway_eui_base + g;
    for (int i = 0; i < 8; ++i) b[4 + i] = static_cast<uint8_t>(eui >> (56 - 8 * i));
  };
  auto drain = [&](int timeout_ms) {
    std::vector<pollfd> fds(gws);
    for (uint32_t g = 0; g < gws; ++g) fds[g] = {socks[g].fd(), POLLIN, 0};
    if (::poll(fds.data(), gws, timeout_ms) <= 0) return;
    const int64_t now = core::mono_ns();
    for (uint32_t g = 0; g < gws; ++g) {
      uint8_t b[2048];
      for (;;) {
        const ssize_t n = ::recv(socks[g].fd(), b, sizeof b, MSG_DONTWAIT);
        if (n < 4) break;
        const uint16_t t = static_cast<uint16_t>((b[1] << 8) | b[2]);
        if (b[3] == static_cast<uint8_t>(SemtechType::kPushAck) && sent_at[g][t] != 0) {
          ++sum.acked;
          lat.push_back(static_cast<double>(now - sent_at[g][t]) / 1e6);
          sent_at[g][t] = 0;
        } else if (b[3] == static_cast<uint8_t>(SemtechType::kPullResp)) {
          ++sum.downlinks;
        }
      }
    }
  };
  // PULL_DATA first: the gateway learns where downlinks go.
  for (uint32_t g = 0; g < gws; ++g) {
    uint8_t b[12];
    header(b, g, static_cast<uint8_t>(SemtechType::kPullData));
    (void)::send(socks[g].fd(), b, 12, 0);
  }
  // A new session's first frames must have counters below 2^16: the network server cannot
  // guess the upper 16 bits of a device it has not heard yet (§4.3.1.5).
  const uint32_t fcnt0 = o.first_fcnt;
  LoRaWanCrypto crypto;
  const int64_t start = core::mono_ns();
  const int64_t end = start + static_cast<int64_t>(o.duration_s * 1e9);
  uint64_t next_device = 0, round = 0;
  int64_t last_progress = start;
  std::string json;
  json.reserve(8192);
  while (!(stop != nullptr && stop->load()) && !g_stop.load()) {
    const int64_t now = core::mono_ns();
    if (now >= end) break;
    if (o.rate > 0) {
      const double due = static_cast<double>(now - start) / 1e9 * o.rate;
      if (static_cast<double>(sum.sent) >= due) {
        drain(0);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
    }
    // One PUSH_DATA per gateway hearing this group of frames.
    json = "{\"rxpk\":[";
    for (uint32_t k = 0; k < o.per_datagram; ++k) {
      const uint64_t i = next_device;
      if (++next_device == o.fleet.devices) {
        next_device = 0;
        ++round;
      }
      Key nwk, app;
      fleet_keys(o.fleet, i, nwk, app);
      uint8_t payload[18];
      const size_t payload_len = sim_payload(o.payload, i, round, payload);
      ++sum.sent;
      UplinkData u{.confirmed = o.confirmed_every != 0 && sum.sent % o.confirmed_every == 0,
                   .dev_addr = static_cast<uint32_t>(o.fleet.dev_addr_base + i),
                   .fcnt = fcnt0 + static_cast<uint32_t>(round),
                   .fctrl = 0,
                   .has_port = true,
                   .fport = 1,
                   .payload = {payload, payload_len}};
      uint8_t phy[64];
      const size_t n = encode_data_up(crypto, nwk, app, u, phy);
      char b64[128];
      const size_t nb = encode_base64({phy, n}, b64);
      if (k > 0) json += ',';
      char entry[384];
      std::snprintf(entry, sizeof entry,
                    "{\"tmst\":%u,\"chan\":0,\"rfch\":0,\"freq\":868.100000,\"stat\":1,"
                    "\"modu\":\"LORA\",\"datr\":\"SF7BW125\",\"codr\":\"4/5\",\"rssi\":-%d,"
                    "\"lsnr\":7.5,\"size\":%zu,\"data\":\"%.*s\"}",
                    static_cast<uint32_t>(now / 1000), 40 + static_cast<int>(i % 60), n,
                    static_cast<int>(nb), b64);
      json += entry;
    }
    json += "]}";
    for (uint32_t c = 0; c < copies; ++c) {
      const uint32_t g = static_cast<uint32_t>((next_device + c) % gws);
      uint8_t dgram[8192 + 12];
      header(dgram, g, static_cast<uint8_t>(SemtechType::kPushData));
      const size_t len = std::min(json.size(), sizeof dgram - 12);
      std::memcpy(dgram + 12, json.data(), len);
      if (::send(socks[g].fd(), dgram, 12 + len, 0) < 0) {
        ++sum.send_errors;
        continue;
      }
      if (sent_at[g][token[g]] != 0) ++sum.lost;  // its token came round unacknowledged
      sent_at[g][token[g]] = core::mono_ns();
      ++token[g];
      ++sum.datagrams;
    }
    if ((sum.datagrams & 63) == 0) drain(0);
    if (o.progress && now - last_progress > 1'000'000'000) {
      last_progress = now;
      std::fprintf(stderr, "  %.0f s: %llu uplinks sent, %llu PUSH_ACKs\n",
                   static_cast<double>(now - start) / 1e9,
                   static_cast<unsigned long long>(sum.sent),
                   static_cast<unsigned long long>(sum.acked));
    }
  }
  const int64_t sent_end = core::mono_ns();
  const int64_t drain_end = sent_end + static_cast<int64_t>(o.drain_s * 1e9);
  while (core::mono_ns() < drain_end && sum.acked + sum.lost < sum.datagrams) drain(20);
  for (uint32_t g = 0; g < gws; ++g) {
    for (int64_t t : sent_at[g]) sum.lost += t != 0 ? 1 : 0;
  }
  sum.last_fcnt = fcnt0 + static_cast<uint32_t>(round);
  sum.elapsed_s = static_cast<double>(sent_end - start) / 1e9;
  sum.rate = sum.elapsed_s > 0 ? static_cast<double>(sum.sent) / sum.elapsed_s : 0;
  sum.acked_rate = sum.elapsed_s > 0 ? static_cast<double>(sum.acked) / sum.elapsed_s : 0;
  sum.p50_ms = percentile(lat, 0.5);
  sum.p99_ms = percentile(lat, 0.99);
  sum.p999_ms = percentile(lat, 0.999);
  sum.max_ms = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  return sum;
}

std::string LoRaWanSimSummary::json() const {
  nlohmann::json j{
      {"sent", sent},
      {"datagrams", datagrams},
      {"acked", acked},
      {"acked_means", "PUSH_ACK received"},
      {"lost", lost},
      {"downlinks", downlinks},
      {"send_errors", send_errors},
      {"elapsed_s", elapsed_s},
      {"rate", rate},
      {"acked_rate", acked_rate},
      {"ack_latency_ms", {{"p50", p50_ms}, {"p99", p99_ms}, {"p999", p999_ms}, {"max", max_ms}}}};
  return j.dump();
}

std::string LoRaWanSimSummary::text() const {
  char buf[768];
  std::snprintf(buf, sizeof buf,
                "sent          %llu uplinks in %llu PUSH_DATA over %.1f s (%.0f uplinks/s)\n"
                "acked         %llu PUSH_ACKs (%.0f/s; acked = PUSH_ACK received)\n"
                "lost          %llu (PUSH_DATA never acknowledged)\n"
                "downlinks     %llu PULL_RESP\n"
                "send errors   %llu\n"
                "last FCnt     %u (a next run against the same gateway: --first-fcnt %u)\n"
                "latency       p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms "
                "(PUSH_DATA to PUSH_ACK)\n",
                static_cast<unsigned long long>(sent), static_cast<unsigned long long>(datagrams),
                elapsed_s, rate, static_cast<unsigned long long>(acked), acked_rate,
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(downlinks),
                static_cast<unsigned long long>(send_errors), last_fcnt, last_fcnt + 1, p50_ms,
                p99_ms, p999_ms, max_ms);
  return buf;
}

int cmd_simulate(int argc, char** argv) {
  using core::Args;
  using core::usage_error;
  if (core::wants_help(argc, argv)) {
    std::puts(R"(tianhe simulate --protocol lorawan — packet forwarders carrying ABP devices

Options:
  --target HOST:PORT   the gateway's [protocols.lorawan] listen address (default 127.0.0.1:1700)
  --devices N          fleet size (default 1000); DevEUIs start at --first-device (1)
  --gateways G         packet forwarders (default 1)
  --copies C           gateways that hear each frame (duplicates; default 1)
  --rate R             uplinks per second (default 1000; 0 = as fast as possible)
  --duration S         seconds to send (default 10)
  --per-datagram K     rxpk entries per PUSH_DATA (default 1)
  --confirmed-every N  every Nth uplink is a confirmed one (its ACK comes as PULL_RESP)
  --payload KIND       sim12 (default: 8 random bytes and the round, 12 bytes) or lpp (Cayenne
                       LPP: temperature, humidity, barometer, analog and digital input, 18 bytes;
                       for a model with codec = "cayenne_lpp" or an LPP decoder of your own)
  --first-fcnt N       first frame counter (default 0; a rerun against the same gateway
                       continues above the last run's, which the summary prints)
  --seed N             key seed (must match the keys file)
  --write-keys FILE    write the fleet's keys file (mode 0600) and exit
  --json               print the summary as JSON ("acked" = PUSH_ACK received)
  --quiet              no progress lines

Example:
  tianhe simulate --protocol lorawan --devices 1000 --gateways 3 --write-keys lorawan-keys.toml
  tianhe simulate --protocol lorawan --target 127.0.0.1:1700 --devices 1000 --gateways 3 \
      --copies 2 --rate 5000 --duration 10)");
    return 0;
  }
  auto args = Args::parse(
      argc, argv, 2, {"json", "quiet"},
      {"target", "devices", "gateways", "copies", "rate", "duration", "per-datagram",
       "confirmed-every", "first-fcnt", "seed", "write-keys", "first-device", "drain", "payload"});
  if (!args.ok()) return usage_error("simulate", args.error().message);
  LoRaWanSimOptions o;
  auto ep = config::parse_endpoint(args->str("target", "127.0.0.1:1700"), "--target");
  if (!ep.ok()) return usage_error("simulate", ep.error().message);
  o.host = ep->host;
  o.port = ep->port;
  auto devices = args->u64("devices", 1000, 1, 10'000'000);
  auto gateways = args->u64("gateways", 1, 1, 1000);
  auto copies = args->u64("copies", 1, 1, 32);
  auto per = args->u64("per-datagram", 1, 1, 8);
  auto confirmed = args->u64("confirmed-every", 0, 0, UINT32_MAX);
  auto fcnt = args->u64("first-fcnt", 0, 0, UINT32_MAX);
  auto seed = args->u64("seed", 1);
  auto first = args->u64("first-device", 1, 1);
  for (const auto* r : {&devices, &gateways, &copies, &per, &confirmed, &fcnt, &seed, &first}) {
    if (!r->ok()) return usage_error("simulate", r->error().message);
  }
  auto rate = args->f64("rate", 1000, 0);
  auto duration = args->seconds("duration", 10);
  auto drain = args->seconds("drain", 1);
  if (!rate.ok()) return usage_error("simulate", rate.error().message);
  if (!duration.ok()) return usage_error("simulate", duration.error().message);
  if (!drain.ok()) return usage_error("simulate", drain.error().message);
  o.fleet.devices = *devices;
  o.fleet.gateways = static_cast<uint32_t>(*gateways);
  o.fleet.seed = *seed;
  o.fleet.first_dev_eui = *first;
  o.copies = static_cast<uint32_t>(*copies);
  o.per_datagram = static_cast<uint32_t>(*per);
  o.confirmed_every = static_cast<uint32_t>(*confirmed);
  o.first_fcnt = static_cast<uint32_t>(*fcnt);
  o.rate = *rate;
  o.duration_s = *duration;
  o.drain_s = *drain;
  o.progress = !args->has("quiet");
  if (const std::string kind = args->str("payload", "sim12"); kind == "lpp") {
    o.payload = SimPayload::kLpp;
  } else if (kind != "sim12") {
    return usage_error("simulate", "--payload: expected sim12 or lpp, got \"" + kind + "\"");
  }
  if (const std::string path = args->str("write-keys"); !path.empty()) {
    if (auto r = write_fleet_keys(o.fleet, path); !r.ok()) {
      std::fprintf(stderr, "tianhe simulate: %s\n", r.error().message.c_str());
      return 1;
    }
    return 0;
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  auto sum = run_lorawan_simulator(o);
  if (!sum.ok()) {
    std::fprintf(stderr, "tianhe simulate: %s\n", sum.error().message.c_str());
    return 1;
  }
  std::printf("%s\n", args->has("json") ? sum->json().c_str() : sum->text().c_str());
  return 0;
}

Result<runtime::ProtocolBenchPlan> bench_plan(const std::string& dir, uint64_t devices) {
  // Its own model and device range (DevEUIs from 10^9, clear of the bench's env_sensor ids):
  // the reports carry the payload and radio metrics, which env_sensor does not list.
  constexpr uint64_t kFirst = 1'000'000'000;
  FleetSpec f;
  f.devices = devices;
  f.gateways = 2;
  f.first_dev_eui = kFirst;
  const std::string keys = dir + "/lorawan-keys.toml";
  if (auto r = write_fleet_keys(f, keys); !r.ok()) return r.error();
  runtime::ProtocolBenchPlan p;
  p.what = "ABP uplinks, MIC + decrypt, 2 gateways per frame deduplicated (acked = PUSH_ACK)";
  p.toml = "[protocols.lorawan]\nenabled = true\nlisten = \"127.0.0.1:0\"\nkeys_file = \"" + keys +
           "\"\nmax_pending_frames = 200000\n"
           "[[models]]\nname = \"lorawan_bench\"\ncodec = \"raw\"\nallow_unknown_metrics = true\n"
           "[[devices]]\nid = " +
           std::to_string(kFirst) + "\ncount = " + std::to_string(devices) +
           "\ntenant = \"bench\"\nmodel = \"lorawan_bench\"\n";
  p.simulate_args = {"--devices",      std::to_string(devices),
                     "--first-device", std::to_string(kFirst),
                     "--gateways",     "2",
                     "--copies",       "2",
                     "--per-datagram", "8",
                     "--rate",         "0",
                     "--quiet"};
  return p;
}

}  // namespace tianhe::protocols::lorawan
