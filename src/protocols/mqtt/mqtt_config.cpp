#include "protocols/mqtt/mqtt_config.h"

#include <charconv>

#include "protocols/mqtt/mqtt_topics.h"

namespace tianhe::protocols::mqtt {
namespace {

using config::Field;
using config::Kind;
using config::kKiB;
using config::kMiB;
using config::kMs;
using config::kSec;
using P = config::Parsed;
using C = MqttConfig;

std::string check_url(const P& p) {
  auto a = parse_broker_url(p.s);
  return a.ok() ? "" : a.error().message;
}

std::string check_topics(const P& p) {
  auto t = TopicTemplate::parse(p.s);
  return t.ok() ? "" : t.error().message;
}

std::string check_group(const P& p) {
  if (p.s.empty() || valid_share_group(p.s)) return "";
  return "protocols.mqtt.shared_group: \"" + p.s +
         "\" holds '/', '+' or '#' (MQTT 5 §4.8.2); use a plain name such as \"tianhe\"";
}

std::string check_client_id(const P& p) {
  if (p.s.empty() || p.s.size() > 200 || !valid_utf8(p.s)) {
    return "protocols.mqtt.client_id: must be 1..200 bytes of UTF-8 (a shard suffix \"-N\" is "
           "added)";
  }
  return "";
}

constexpr std::string_view kVersions[] = {"5", "3.1.1"};

constexpr Field<C> kFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Subscribe to an MQTT broker that devices publish to (off by default).",
     .set = [](C& c, const P& p) { c.enabled = p.b; }},
    {.key = "url",
     .kind = Kind::kString,
     .default_text = "\"mqtt://127.0.0.1:1883\"",
     .doc = "The broker: \"mqtt://host:port\" (TCP, port 1883 when omitted) or "
            "\"unix:///path/to/socket\". TLS (mqtts://) is not supported.",
     .set = [](C& c, const P& p) { c.url = p.s; },
     .check = check_url},
    {.key = "topics",
     .kind = Kind::kString,
     .default_text = "\"{tenant}/{device}/telemetry\"",
     .doc = "Topic names devices publish to; subscribed with + for each placeholder. {device} "
            "is the registered device id in decimal, {tenant} its tenant (optional).",
     .set = [](C& c, const P& p) { c.topics = p.s; },
     .check = check_topics},
    {.key = "qos",
     .kind = Kind::kInt,
     .default_text = "1",
     .doc = "Subscription QoS: 1 (PUBACK only once the report is durable; nothing acknowledged "
            "is lost) or 0 (at most once).",
     .set = [](C& c, const P& p) { c.qos = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = 1},
    {.key = "codec",
     .kind = Kind::kString,
     .default_text = "\"json\"",
     .doc = "Payload codec for devices whose model names none (\"json\", \"report\" for the "
            "report protobuf, ...).",
     .set = [](C& c, const P& p) { c.codec = p.s; },
     .check = config::check_non_empty},
    {.key = "protocol_version",
     .kind = Kind::kEnum,
     .default_text = "\"5\"",
     .doc = "MQTT version: \"5\" (Receive Maximum, Maximum Packet Size, shared subscriptions, "
            "user properties such as traceparent) or \"3.1.1\".",
     .set = [](C& c, const P& p) { c.version = p.s == "5" ? Version::k5 : Version::k311; },
     .choices = kVersions,
     .what = "a protocol version"},
    {.key = "client_id",
     .kind = Kind::kString,
     .default_text = "\"tianhe\"",
     .doc = "Client identifier; shard i connects as \"<client_id>-<i>\". Give each Tianhe node "
            "its own: the broker keeps one session per id.",
     .set = [](C& c, const P& p) { c.client_id = p.s; },
     .check = check_client_id},
    {.key = "clean_start",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Start a new session on every connect. false (the default) keeps a persistent "
            "session: the broker queues QoS 1 messages while Tianhe is away or restarting.",
     .set = [](C& c, const P& p) { c.clean_start = p.b; }},
    {.key = "session_expiry",
     .kind = Kind::kDuration,
     .default_text = "\"1d\"",
     .doc = "MQTT 5: how long the broker keeps the session (and queues messages) after the "
            "connection drops (3.1.1 sessions do not expire).",
     .set = [](C& c, const P& p) { c.session_expiry_ns = p.i; },
     .min = 0,
     .max = int64_t{0xFFFFFFFE} * kSec,
     .unit_ns = kSec},
    {.key = "shared_group",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Shared subscription group (\"$share/<group>/<filter>\"): each gateway subscribes "
            "once (on shard 0) as a member and the broker splits the messages among the "
            "gateways of the group. Empty: a plain subscription.",
     .set = [](C& c, const P& p) { c.shared_group = p.s; },
     .check = check_group},
    {.key = "keep_alive",
     .kind = Kind::kDuration,
     .default_text = "\"30s\"",
     .doc = "Keep Alive: a PINGREQ when nothing was sent for this long; a broker silent for "
            "1.5 times it is taken as gone and reconnected.",
     .set = [](C& c, const P& p) { c.keep_alive_ns = p.i; },
     .min = kSec,
     .max = 65535 * kSec,
     .unit_ns = kSec},
    {.key = "connect_timeout",
     .kind = Kind::kDuration,
     .default_text = "\"10s\"",
     .doc = "How long a TCP connect, CONNACK or SUBACK may take before the attempt is retried.",
     .set = [](C& c, const P& p) { c.connect_timeout_ns = p.i; },
     .min = 100 * kMs,
     .max = 600 * kSec},
    {.key = "reconnect_min",
     .kind = Kind::kDuration,
     .default_text = "\"100ms\"",
     .doc = "First wait before reconnecting to a broker that went away; doubled (with jitter) "
            "after each failed attempt up to reconnect_max.",
     .set = [](C& c, const P& p) { c.reconnect_min_ns = p.i; },
     .min = kMs,
     .max = 600 * kSec},
    {.key = "reconnect_max",
     .kind = Kind::kDuration,
     .default_text = "\"30s\"",
     .doc = "Longest wait between reconnect attempts.",
     .set = [](C& c, const P& p) { c.reconnect_max_ns = p.i; },
     .min = kMs,
     .max = 3600 * kSec},
    {.key = "username",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "User Name in CONNECT (empty: none).",
     .set = [](C& c, const P& p) { c.username = p.s; }},
    {.key = "password_env",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Environment variable holding the password (needs username); the password itself "
            "never goes in the file.",
     .set = [](C& c, const P& p) { c.password_env = p.s; }},
    {.key = "max_inflight",
     .kind = Kind::kInt,
     .default_text = "1024",
     .doc = "QoS 1 deliveries the broker may have unacknowledged to one shard (MQTT 5 Receive "
            "Maximum). PUBACKs wait for the log sync, so this bounds the rate: raise it with "
            "the flush interval. MQTT 3.1.1: set the broker's own limit (mosquitto "
            "max_inflight_messages).",
     .set = [](C& c, const P& p) { c.max_inflight = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 65535},
    {.key = "max_packet_bytes",
     .kind = Kind::kSize,
     .default_text = "\"256KiB\"",
     .doc = "Largest packet accepted (MQTT 5 Maximum Packet Size: the broker drops longer "
            "messages for us). A longer packet from a 3.1.1 broker closes the connection, "
            "counted.",
     .set = [](C& c, const P& p) { c.max_packet_bytes = static_cast<uint32_t>(p.i); },
     .min = 1 * kKiB,
     .max = 16 * kMiB},
    {.key = "recv_batch",
     .kind = Kind::kInt,
     .default_text = "256",
     .doc = "PUBLISH packets turned into one batch (one log append) per poll at most.",
     .set = [](C& c, const P& p) { c.recv_batch = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 4096},
};

constexpr config::Section<C> kSection = {
    .header = "protocols.mqtt",
    .doc = "Subscribe to an MQTT 3.1.1 / 5 broker devices publish to.",
    .fields = kFields};

std::string finish(C& c, std::string_view) {
  if (!c.password_env.empty() && c.username.empty()) {
    return "protocols.mqtt.password_env: needs username (MQTT 3.1.1 §3.1.2.9); set username";
  }
  if (c.reconnect_max_ns < c.reconnect_min_ns) {
    return "protocols.mqtt.reconnect_max: shorter than reconnect_min; raise it";
  }
  if (!c.shared_group.empty() && c.version != Version::k5) {
    return "protocols.mqtt.shared_group: shared subscriptions are MQTT 5 (§4.8.2); set "
           "protocol_version = \"5\" (many 3.1.1 brokers accept $share too: then subscribe "
           "without it)";
  }
  return "";
}

}  // namespace

Result<BrokerAddress> parse_broker_url(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return make_error("protocols.mqtt.url: \"" + std::string(url) + "\" " + std::string(why) +
                      "; write \"mqtt://host:1883\" or \"unix:///path/to/socket\"");
  };
  BrokerAddress a;
  if (url.starts_with("unix://")) {
    a.path = std::string(url.substr(7));
    if (a.path.empty() || a.path[0] != '/') return bad("needs an absolute socket path");
    if (a.path.size() >= 108) return bad("has a socket path longer than 107 bytes");
    return a;
  }
  std::string_view rest;
  if (url.starts_with("mqtt://")) {
    rest = url.substr(7);
  } else if (url.starts_with("tcp://")) {
    rest = url.substr(6);
  } else if (url.starts_with("mqtts://") || url.starts_with("ssl://")) {
    return bad("asks for TLS, which is not supported (terminate TLS in front of Tianhe)");
  } else {
    return bad("has no mqtt:// or unix:// scheme");
  }
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  std::string_view port;
  if (!rest.empty() && rest[0] == '[') {
    const size_t end = rest.find(']');
    if (end == std::string_view::npos) return bad("has an unclosed '['");
    a.host = std::string(rest.substr(1, end - 1));
    rest = rest.substr(end + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return bad("has text after ']'");
      port = rest.substr(1);
    }
  } else {
    const size_t colon = rest.rfind(':');
    a.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port = rest.substr(colon + 1);
  }
  if (a.host.empty()) return bad("has no host");
  if (a.host.find_first_of("/?#@") != std::string::npos) return bad("has a path or user part");
  if (!port.empty() || rest.ends_with(":")) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc{} || p != port.data() + port.size() || v == 0 || v > 65535) {
      return bad("has a bad port (1..65535)");
    }
    a.port = static_cast<uint16_t>(v);
  }
  return a;
}

config::ConfigTable config_table() {
  return config::table(kSection, finish);
}

}  // namespace tianhe::protocols::mqtt
