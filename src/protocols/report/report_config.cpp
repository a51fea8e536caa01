#include "protocols/report/report_config.h"

namespace tianhe::protocols::report {
namespace {

using config::Field;
using config::kGiB;
using config::Kind;
using config::kKiB;
using P = config::Parsed;

constexpr Field<ReportProtocolConfig> kFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "true",
     .doc = "Receive raw UDP reports.",
     .set = [](ReportProtocolConfig& c, const P& p) { c.enabled = p.b; }},
    {.key = "listen",
     .kind = Kind::kEndpoint,
     .default_text = "\"127.0.0.1:7700\"",
     .doc = "UDP address to bind (every shard binds it with SO_REUSEPORT); port 0 picks a free "
            "port.",
     .set = [](ReportProtocolConfig& c, const P& p) { c.listen = p.ep; }},
    {.key = "recv_buffer_bytes",
     .kind = Kind::kSize,
     .default_text = "\"32MiB\"",
     .doc = "Socket receive buffer requested per socket (SO_RCVBUF, SO_RCVBUFFORCE when "
            "privileged); the size granted is reported at start.",
     .set = [](ReportProtocolConfig& c,
               const P& p) { c.recv_buffer_bytes = static_cast<uint32_t>(p.i); },
     .min = 4 * kKiB,
     .max = kGiB},
    {.key = "send_buffer_bytes",
     .kind = Kind::kSize,
     .default_text = "\"8MiB\"",
     .doc = "Socket send buffer (acknowledgements) requested per socket.",
     .set = [](ReportProtocolConfig& c,
               const P& p) { c.send_buffer_bytes = static_cast<uint32_t>(p.i); },
     .min = 4 * kKiB,
     .max = kGiB},
    {.key = "recv_batch",
     .kind = Kind::kInt,
     .default_text = "64",
     .doc = "Datagrams read by one recvmmsg call.",
     .set = [](ReportProtocolConfig& c, const P& p) { c.recv_batch = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 1024},
    {.key = "max_datagram_bytes",
     .kind = Kind::kSize,
     .default_text = "65507",
     .doc = "Largest datagram accepted; longer ones are dropped and counted as oversized.",
     .set = [](ReportProtocolConfig& c,
               const P& p) { c.max_datagram_bytes = static_cast<uint32_t>(p.i); },
     .min = 64,
     .max = 65507},
};

constexpr config::Section<ReportProtocolConfig> kSection = {
    .header = "protocols.report",
    .doc = "Raw UDP reports (the report protocol).",
    .fields = kFields};

}  // namespace

config::ConfigTable config_table() {
  return config::table(kSection);
}

}  // namespace tianhe::protocols::report
