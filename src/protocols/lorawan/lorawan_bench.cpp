// Micro-benchmarks of the LoRaWAN hot path on one core: the per-uplink cost of reading a
// PUSH_DATA's rxpk JSON, parsing the PHYPayload, finding the session, checking the MIC and
// decrypting the payload, the cost of a session table of 100,000 devices, and the stall of a
// session journal compaction of 100,000 sessions.
#include <benchmark/benchmark.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "protocols/lorawan/lorawan_crypto.h"
#include "protocols/lorawan/lorawan_phy.h"
#include "protocols/lorawan/lorawan_session.h"
#include "protocols/lorawan/lorawan_simulator.h"
#include "protocols/lorawan/semtech_parser.h"

namespace {

using namespace tianhe::protocols::lorawan;  // NOLINT(google-build-using-namespace)

constexpr uint64_t kDevices = 100'000;

// Resident set size now (/proc/self/statm), bytes.
double rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long pages = 0, resident = 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
  std::fclose(f);
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

std::vector<Device> fleet_devices(const FleetSpec& f) {
  std::vector<Device> v(f.devices);
  for (uint64_t i = 0; i < f.devices; ++i) {
    v[i].dev_eui = f.first_dev_eui + i;
    v[i].dev_addr = static_cast<uint32_t>(f.dev_addr_base + i);
    v[i].has_session = true;
    fleet_keys(f, i, v[i].nwk_s_key, v[i].app_s_key);
  }
  return v;
}

// One PUSH_DATA of 8 rxpk entries, as the simulator sends them.
std::string push_json(const FleetSpec& f, LoRaWanCrypto& c, uint64_t first, uint32_t fcnt) {
  std::string j = "{\"rxpk\":[";
  for (uint64_t k = 0; k < 8; ++k) {
    Key nwk, app;
    fleet_keys(f, first + k, nwk, app);
    uint8_t pl[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    UplinkData u{.dev_addr = static_cast<uint32_t>(f.dev_addr_base + first + k),
                 .fcnt = fcnt,
                 .payload = pl};
    uint8_t phy[64];
    const size_t n = encode_data_up(c, nwk, app, u, phy);
    char b64[128];
    const size_t nb = encode_base64({phy, n}, b64);
    if (k > 0) j += ",";
    j += "{\"tmst\":3512348611,\"chan\":2,\"rfch\":0,\"freq\":868.1,\"stat\":1,\"modu\":\"LORA\","
         "\"datr\":\"SF7BW125\",\"codr\":\"4/5\",\"rssi\":-35,\"lsnr\":5.1,\"size\":" +
         std::to_string(n) + ",\"data\":\"" + std::string(b64, nb) + "\"}";
  }
  return j + "]}";
}

// AES-CMAC of a 40-byte message (B0 + a typical uplink), re-keyed each time as every frame
// needs. Arg 1: AES-NI; arg 0: OpenSSL's cipher context alone (EVP re-keying).
void BM_Cmac(benchmark::State& state) {
  LoRaWanCrypto c(state.range(0) != 0);
  Key k{};
  uint8_t msg[40] = {}, out[16];
  for (auto _ : state) {
    c.cmac(k, msg, out);
    benchmark::DoNotOptimize(out);
  }
  state.SetLabel(c.uses_aesni() ? "aes-ni" : "openssl");
}
BENCHMARK(BM_Cmac)->Arg(1)->Arg(0);

// The same CMAC through OpenSSL's EVP_MAC, keyed per message as every frame needs.
void BM_EvpMacCmac(benchmark::State& state) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "CMAC", nullptr);
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  char cipher[] = "AES-128-CBC";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                         OSSL_PARAM_construct_end()};
  uint8_t k[16] = {}, msg[40] = {}, out[16];
  for (auto _ : state) {
    size_t n = 0;
    EVP_MAC_init(ctx, k, 16, params);
    EVP_MAC_update(ctx, msg, sizeof msg);
    EVP_MAC_final(ctx, out, &n, sizeof out);
    benchmark::DoNotOptimize(out);
  }
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
}
BENCHMARK(BM_EvpMacCmac);

// Per uplink: rxpk JSON + base64, PHYPayload, session by DevAddr, MIC, FRMPayload decryption.
// Each frame is read twice (two gateways' copies); the second copy's cost is the JSON and the
// dedup lookup, which this approximates by parsing it and hashing the payload. Arg as BM_Cmac.
void BM_UplinkPath(benchmark::State& state) {
  FleetSpec f;
  f.devices = kDevices;
  SessionTable table(fleet_devices(f));
  LoRaWanCrypto c(state.range(0) != 0);
  state.SetLabel(c.uses_aesni() ? "aes-ni" : "openssl");
  std::vector<std::string> datagrams;
  for (uint64_t i = 0; i < 1024; ++i) datagrams.push_back(push_json(f, c, (i * 8) % kDevices, 9));
  auto push = std::make_unique<PushData>();
  uint8_t plain[256];
  uint64_t frames = 0, ok = 0;
  size_t d = 0;
  for (auto _ : state) {
    const std::string& j = datagrams[d++ % datagrams.size()];
    parse_push_data({reinterpret_cast<const uint8_t*>(j.data()), j.size()}, *push);
    for (uint32_t i = 0; i < push->count; ++i) {
      PhyFrame fr;
      if (parse_phy(push->rxpk[i].data, fr) != PhyStatus::kOk) continue;
      const DataFrame& df = fr.data;
      const int64_t idx = table.find_addr(df.dev_addr, [&](uint32_t k) {
        return c.data_mic(table[k].nwk_s_key, Dir::kUp, df.dev_addr, df.fcnt16, df.signed_part) ==
               df.mic;
      });
      if (idx >= 0) {
        c.payload_crypt(table[static_cast<uint32_t>(idx)].app_s_key, Dir::kUp, df.dev_addr,
                        df.fcnt16, df.frm_payload, plain);
        ++ok;
      }
      ++frames;
    }
    benchmark::DoNotOptimize(plain);
  }
  state.counters["uplinks/s"] =
      benchmark::Counter(static_cast<double>(frames), benchmark::Counter::kIsRate);
  state.counters["mic_ok"] =
      static_cast<double>(ok) / static_cast<double>(std::max<uint64_t>(frames, 1));
}
BENCHMARK(BM_UplinkPath)->Arg(1)->Arg(0);

// Bytes per idle device session in a table of 100,000 (devices, DevAddr and DevEUI indexes).
void BM_SessionBytes(benchmark::State& state) {
  FleetSpec f;
  f.devices = kDevices;
  double bytes = 0, rss = 0;
  for (auto _ : state) {
    const double before = rss_bytes();
    SessionTable t(fleet_devices(f));
    rss = rss_bytes() - before;
    bytes = static_cast<double>(t.bytes());
    benchmark::DoNotOptimize(bytes);
  }
  state.counters["rss_bytes_per_session"] = rss / static_cast<double>(kDevices);
  state.counters["bytes_per_session"] = bytes / static_cast<double>(kDevices);
  state.counters["sessions"] = static_cast<double>(kDevices);
}
BENCHMARK(BM_SessionBytes)->Iterations(1);

// One journal compaction of 100,000 sessions (one state record each, written through the 64 KiB
// buffer, fdatasync, rename, directory fsync): the shard's stall when the journal outgrows its
// threshold. Counters: ms per compaction, journal bytes.
void BM_JournalCompaction(benchmark::State& state) {
  FleetSpec f;
  f.devices = kDevices;
  SessionTable t(fleet_devices(f));
  for (uint32_t i = 0; i < t.size(); ++i) {
    t[i].fcnt_up = i;
    t[i].has_fcnt = true;
  }
  char tmpl[] = "/tmp/lorawan-bench-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  auto j = SessionJournal::open(dir, t, state.range(0) != 0);
  if (!j.ok()) {
    state.SkipWithError(j.error().message.c_str());
    return;
  }
  for (auto _ : state) {
    if (!j->compact(t)) state.SkipWithError("compaction failed");
  }
  state.counters["ms_per_compaction"] = static_cast<double>(j->last_compaction_ns()) / 1e6;
  state.counters["journal_bytes"] = static_cast<double>(j->file_bytes());
  state.counters["sessions"] = static_cast<double>(kDevices);
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_JournalCompaction)->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
