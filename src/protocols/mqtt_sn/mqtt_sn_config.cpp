#include "protocols/mqtt_sn/mqtt_sn_config.h"

#include "protocols/mqtt_sn/mqtt_sn_session.h"
#include "protocols/mqtt_sn/mqtt_sn_topics.h"

namespace tianhe::protocols::mqtt_sn {
namespace {

using config::Field;
using config::kGiB;
using config::Kind;
using config::kKiB;
using config::kSec;
using P = config::Parsed;
using C = MqttSnConfig;

std::string check_topics(const P& p) {
  auto t = TopicTemplate::parse(p.s);
  return t.ok() ? "" : t.error().message;
}

std::string check_predefined(const P& p) {
  auto t = parse_predefined_topics(p.s);
  return t.ok() ? "" : t.error().message;
}

std::string check_forwarders(const P& p) {
  auto f = parse_forwarders(p.s);
  return f.ok() ? "" : f.error().message;
}

std::string check_advertise_to(const P& p) {
  if (p.s.empty()) return "";
  auto ep = config::parse_endpoint(p.s, "protocols.mqtt_sn.advertise_to");
  return ep.ok() ? "" : ep.error().message;
}

constexpr Field<C> kFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Serve MQTT-SN v1.2 clients over UDP (off by default: a gateway binds no port it "
            "was not asked to).",
     .set = [](C& c, const P& p) { c.enabled = p.b; }},
    {.key = "listen",
     .kind = Kind::kEndpoint,
     .default_text = "\"127.0.0.1:1884\"",
     .doc = "UDP address to bind (every shard binds it with SO_REUSEPORT; a client's address "
            "always reaches the same shard); port 0 picks a free port.",
     .set = [](C& c, const P& p) { c.listen = p.ep; }},
    {.key = "topics",
     .kind = Kind::kString,
     .default_text = "\"{tenant}/{device}/telemetry\"",
     .doc = "Topic names devices publish to: {device} is the registered device id in decimal, "
            "{tenant} its tenant. A template without {device} takes the device from the "
            "client id's trailing digits.",
     .set = [](C& c, const P& p) { c.topics = p.s; },
     .check = check_topics},
    {.key = "codec",
     .kind = Kind::kString,
     .default_text = "\"json\"",
     .doc = "Payload codec for devices whose model names none.",
     .set = [](C& c, const P& p) { c.codec = p.s; },
     .check = config::check_non_empty},
    {.key = "predefined_topics",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Predefined topic ids (MQTT-SN §2.2), \"ID=TOPIC, ...\"; the only way a QoS -1 "
            "client (no session) names its device.",
     .set = [](C& c, const P& p) { c.predefined_topics = p.s; },
     .check = check_predefined},
    {.key = "recv_buffer_bytes",
     .kind = Kind::kSize,
     .default_text = "\"8MiB\"",
     .doc = "Socket receive buffer requested per socket (SO_RCVBUF, SO_RCVBUFFORCE when "
            "privileged); the size granted is reported at start.",
     .set = [](C& c, const P& p) { c.recv_buffer_bytes = static_cast<uint32_t>(p.i); },
     .min = 4 * kKiB,
     .max = kGiB},
    {.key = "send_buffer_bytes",
     .kind = Kind::kSize,
     .default_text = "\"8MiB\"",
     .doc = "Socket send buffer (replies) requested per socket.",
     .set = [](C& c, const P& p) { c.send_buffer_bytes = static_cast<uint32_t>(p.i); },
     .min = 4 * kKiB,
     .max = kGiB},
    {.key = "recv_batch",
     .kind = Kind::kInt,
     .default_text = "256",
     .doc = "Datagrams read by one recvmmsg call (MQTT-SN messages are small: a larger batch "
            "than the report protocol's costs little memory and saves system calls).",
     .set = [](C& c, const P& p) { c.recv_batch = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 1024},
    {.key = "max_frame_bytes",
     .kind = Kind::kSize,
     .default_text = "1024",
     .doc = "Largest MQTT-SN message accepted; longer datagrams are dropped and counted as "
            "oversized.",
     .set = [](C& c, const P& p) { c.max_frame_bytes = static_cast<uint32_t>(p.i); },
     .min = 64,
     .max = 65507},
    {.key = "max_sessions",
     .kind = Kind::kInt,
     .default_text = "100000",
     .doc = "Client sessions held, over every shard (each shard holds its share); a CONNECT "
            "beyond it gets \"rejected: congestion\" and is counted.",
     .set = [](C& c, const P& p) { c.max_sessions = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 8'000'000},
    {.key = "max_pending_per_session",
     .kind = Kind::kInt,
     .default_text = "8",
     .doc = "QoS 1 and 2 messages a session may have unacknowledged; a PUBLISH beyond it gets "
            "\"rejected: congestion\" and is counted.",
     .set = [](C& c, const P& p) { c.max_pending_per_session = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 8},
    {.key = "max_topics_per_session",
     .kind = Kind::kInt,
     .default_text = "8",
     .doc = "Topic ids a session may REGISTER; one more gets \"rejected: congestion\".",
     .set = [](C& c, const P& p) { c.max_topics_per_session = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 8},
    {.key = "max_sleep_buffer_bytes",
     .kind = Kind::kSize,
     .default_text = "512",
     .doc = "Replies buffered for one sleeping client (MQTT-SN §6.14) until it wakes; beyond "
            "it they are dropped and counted (the client retries).",
     .set = [](C& c, const P& p) { c.max_sleep_buffer_bytes = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 16 * kKiB},
    {.key = "max_sleeping_clients",
     .kind = Kind::kInt,
     .default_text = "4096",
     .doc = "Sleeping clients that may hold buffered replies at once, over every shard.",
     .set = [](C& c, const P& p) { c.max_sleeping_clients = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 1'000'000},
    {.key = "max_keep_alive",
     .kind = Kind::kDuration,
     .default_text = "\"1h\"",
     .doc = "Longest keep-alive a client gets: a CONNECT asking for more (or for 0, none) is "
            "held to it; a session silent for 1.5 times its keep-alive is reaped.",
     .set = [](C& c, const P& p) { c.max_keep_alive_ns = p.i; },
     .min = kSec,
     .max = 65535 * kSec,
     .unit_ns = kSec},
    {.key = "max_sleep",
     .kind = Kind::kDuration,
     .default_text = "\"18h\"",
     .doc = "Longest sleep (DISCONNECT duration) a client gets before its session is reaped.",
     .set = [](C& c, const P& p) { c.max_sleep_ns = p.i; },
     .min = kSec,
     .max = 65535 * kSec,
     .unit_ns = kSec},
    {.key = "connect_rate",
     .kind = Kind::kInt,
     .default_text = "2000",
     .doc = "CONNECTs admitted per second, gateway-wide (a reconnect storm after a power cut): "
            "the rest get \"rejected: congestion\" and retry; counted.",
     .set = [](C& c, const P& p) { c.connect_rate = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 10'000'000},
    {.key = "connect_burst",
     .kind = Kind::kInt,
     .default_text = "2000",
     .doc = "CONNECTs admitted at once after a quiet spell (the token bucket's depth).",
     .set = [](C& c, const P& p) { c.connect_burst = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 10'000'000},
    {.key = "allow_takeover",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Let a CONNECT take over a client id held by a session at another address (the "
            "old session ends); otherwise it is refused and counted.",
     .set = [](C& c, const P& p) { c.allow_takeover = p.b; }},
    {.key = "max_will_bytes",
     .kind = Kind::kSize,
     .default_text = "256",
     .doc = "Bytes a will may take, its topic name plus its message (MQTT-SN §6.3); a longer "
            "will gets CONNACK \"rejected: congestion\" (WILLTOPICUPD and WILLMSGUPD: "
            "\"rejected\") and is counted.",
     .set = [](C& c, const P& p) { c.max_will_bytes = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 16 * kKiB},
    {.key = "max_wills",
     .kind = Kind::kInt,
     .default_text = "10000",
     .doc = "Wills held at once, over every shard (a fixed pool of max_will_bytes buffers); a "
            "will beyond it is refused like one too long, and counted.",
     .set = [](C& c, const P& p) { c.max_wills = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 8'000'000},
    {.key = "forwarders",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Forwarders (MQTT-SN §5.5) that may send encapsulated messages: \"10.0.0.5, "
            "10.0.0.6:1885, [fd00::7]:1885\" (no port: any). Each (forwarder, Wireless Node "
            "Id) is a client of its own. Empty: encapsulated messages are refused and counted "
            "(forwarder_refused), unless allow_all_forwarders.",
     .set = [](C& c, const P& p) { c.forwarders = p.s; },
     .check = check_forwarders},
    {.key = "allow_all_forwarders",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Accept encapsulated messages from any address (a closed network only: whoever "
            "can reach the port can then speak for any node id).",
     .set = [](C& c, const P& p) { c.allow_all_forwarders = p.b; }},
    {.key = "gateway_id",
     .kind = Kind::kInt,
     .default_text = "1",
     .doc = "GwId sent in GWINFO and ADVERTISE.",
     .set = [](C& c, const P& p) { c.gateway_id = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 255},
    {.key = "advertise_interval",
     .kind = Kind::kDuration,
     .default_text = "\"0\"",
     .doc = "How often ADVERTISE is sent to advertise_to (0: never).",
     .set = [](C& c, const P& p) { c.advertise_interval_ns = p.i; },
     .min = 0,
     .max = 65535 * kSec,
     .unit_ns = kSec},
    {.key = "advertise_to",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Where ADVERTISE goes, \"host:port\" (a broadcast or multicast address); empty: "
            "nowhere.",
     .set = [](C& c, const P& p) { c.advertise_to = p.s; },
     .check = check_advertise_to},
};

constexpr config::Section<C> kSection = {
    .header = "protocols.mqtt_sn", .doc = "MQTT-SN v1.2 clients over UDP.", .fields = kFields};

std::string finish(C& c, std::string_view) {
  if (c.advertise_interval_ns > 0 && c.advertise_to.empty()) {
    return "protocols.mqtt_sn.advertise_to: needed when advertise_interval is set; give the "
           "address ADVERTISE goes to, or set advertise_interval = \"0\"";
  }
  return "";
}

}  // namespace

config::ConfigTable config_table() {
  return config::table(kSection, finish);
}

}  // namespace tianhe::protocols::mqtt_sn
