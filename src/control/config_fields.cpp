#include "control/config_fields.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

#include "core/assert.h"
#include "runtime/extensions.h"
#include "runtime/tracing.h"

namespace tianhe::control::config_fields {
namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

using config::kDay;
using config::kGiB;
using config::kKiB;
using config::kMiB;
using config::kMs;
using config::kSec;
using config::kUs;

// Tenant and model names appear in paths, metric labels and URLs: keep them plain.
bool is_plain_name(std::string_view s, bool allow_dash) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (allow_dash && c == '-');
  });
}

using config::check_non_empty;

std::string check_model_name(const Parsed& p) {
  if (is_plain_name(p.s, false)) return "";
  return "\"" + p.s + "\" is not a valid model name; use 1 to 64 characters of a-z, 0-9 and _";
}

std::string check_tenant_name(const Parsed& p) {
  if (is_plain_name(p.s, true)) return "";
  return "\"" + p.s + "\" is not a valid tenant name; use 1 to 64 characters of a-z, 0-9, _ and -";
}

std::string check_optional_model_name(const Parsed& p) {
  return p.s.empty() ? "" : check_model_name(p);
}

std::string check_metric_name(const Parsed& p) {
  if (p.s.empty()) return "must not be empty; name the metric, e.g. \"temperature\"";
  if (p.s.size() > kMaxMetricNameBytes) {
    return "is " + std::to_string(p.s.size()) + " bytes long; metric names have at most " +
           std::to_string(kMaxMetricNameBytes) + " bytes";
  }
  for (char c : p.s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return "contains a control character; use printable characters only";
    }
  }
  return "";
}

constexpr std::string_view kDurabilityChoices[] = {"sync", "batch", "none"};
constexpr std::string_view kPolicyChoices[] = {"reject", "auto_register"};
constexpr std::string_view kTypeChoices[] = {"double", "int64", "bool", "string"};
constexpr std::string_view kMetricsSubtable[] = {"metrics"};

using G = GatewayConfig;
using P = Parsed;

constexpr Field<G> kGatewayFields[] = {
    {.key = "data_dir",
     .kind = Kind::kString,
     .default_text = "\"./data\"",
     .doc = "Root of everything the gateway writes; log.dir and sinks.store.dir default to "
            "subdirectories of it.",
     .set = [](G& c, const P& p) { c.data_dir = p.s; },
     .check = check_non_empty},
    {.key = "shards",
     .kind = Kind::kIntOrAuto,
     .default_text = "\"auto\"",
     .doc = "Number of shards (threads, each with its own sockets and log); \"auto\" = one per "
            "core. Where other busy processes share the cores, fewer can carry more (measured in "
            "docs/performance.md).",
     .set = [](G& c, const P& p) { c.shards = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 256},
    {.key = "receive_window",
     .kind = Kind::kDuration,
     .default_text = "\"400us\"",
     .doc = "Receive coalescing, like a network card's: when a shard's receive found a few "
            "datagrams (more than one, fewer than a full recv_batch), it waits this long before "
            "the next, so that what arrives meanwhile is validated, logged and acknowledged as "
            "one batch: fewer system calls and wake-ups per report under load, for at most this "
            "much added latency. A lone datagram is never held. \"0\": receive again at once.",
     .set = [](G& c,
               const P& p) { c.receive_window = duration_cast<microseconds>(nanoseconds(p.i)); },
     .min = 0,
     .max = 10 * kMs,
     .unit_ns = kUs},
};

constexpr Field<G> kLogFields[] = {
    {.key = "dir",
     .kind = Kind::kString,
     .default_text = "\"<data_dir>/log\"",
     .doc = "Directory of the shard logs; shard N writes to dir/shard-N/.",
     .set = [](G& c, const P& p) { c.log.dir = p.s; },
     .check = check_non_empty},
    {.key = "durability",
     .kind = Kind::kEnum,
     .default_text = "\"batch\"",
     .doc = "When a report is acknowledged: \"sync\" after its own fdatasync, \"batch\" after "
            "the group commit that covers it (survives power loss), \"none\" after write(2) "
            "(survives a crash, not power loss).",
     .set =
         [](G& c, const P& p) {
           auto d = log::parse_durability(p.s);
           TH_CHECK(d.ok(), "the choices listed in the field table are the durability names");
           c.log.durability = *d;
         },
     .choices = kDurabilityChoices,
     .what = "a durability mode"},
    {.key = "flush_interval",
     .kind = Kind::kDuration,
     .default_text = "\"1ms\"",
     .doc = "Longest wait before a group commit (durability \"batch\"). An append wakes the "
            "commit at once; one fdatasync covers every append made while the previous one ran, "
            "and this bounds the wait should a wake-up be missed.",
     .set =
         [](G& c, const P& p) {
           c.log.flush_interval = duration_cast<microseconds>(nanoseconds(p.i));
         },
     .min = 10 * kUs,
     .max = 10 * kSec,
     .unit_ns = kUs},
    {.key = "sync_time_slice",
     .kind = Kind::kDuration,
     .default_text = "\"100us\"",
     .doc = "CPU time slice the group-commit threads ask the scheduler for (Linux 6.12 and "
            "later; no effect before): woken by an append or a finished flush, they preempt a "
            "busy thread with a longer slice instead of waiting for its slice to end, so acks "
            "wait less. Their share of the CPU is unchanged. The kernel takes 100us at least. "
            "\"0\": the kernel's default.",
     .set =
         [](G& c, const P& p) {
           c.log.sync_time_slice = duration_cast<microseconds>(nanoseconds(p.i));
         },
     .min = 0,
     .max = 100 * kMs,
     .unit_ns = kUs},
    {.key = "recycle_segments",
     .kind = Kind::kInt,
     .default_text = "4",
     .doc = "Passed segments each shard keeps to become later spares (renamed, nothing "
            "written), so that a burst after a quiet time writes no zeros; others are "
            "deleted. Holds up to this many segment_bytes of disk per shard.",
     .set = [](G& c, const P& p) { c.log.recycle_segments = static_cast<uint32_t>(p.i); },
     .min = 0,
     .max = log::kMaxRecycledSegments},
    {.key = "segment_bytes",
     .kind = Kind::kSize,
     .default_text = "\"64MiB\"",
     .doc = "A log segment file rolls over past this size.",
     .set = [](G& c, const P& p) { c.log.segment_bytes = static_cast<uint64_t>(p.i); },
     .min = 64 * kKiB,
     .max = 64 * kGiB},
    {.key = "max_backlog_bytes",
     .kind = Kind::kSize,
     .default_text = "\"8GiB\"",
     .doc = "Log bytes not yet consumed by the slowest sink before the gateway pushes back "
            "(stops acknowledging).",
     .set = [](G& c, const P& p) { c.log.max_backlog_bytes = static_cast<uint64_t>(p.i); },
     .min = kMiB,
     .max = int64_t{1} << 50},
    {.key = "max_record_bytes",
     .kind = Kind::kSize,
     .default_text = "\"4MiB\"",
     .doc = "Largest log record (one batch of reports); larger appends are refused. Shards "
            "write records of at most 1 MiB.",
     .set = [](G& c, const P& p) { c.log.max_record_bytes = static_cast<uint32_t>(p.i); },
     .min = kMiB,
     .max = kGiB},
};

constexpr Field<G> kHttpFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "true",
     .doc = "Serve the HTTP API, /metrics and /debug.",
     .set = [](G& c, const P& p) { c.http.enabled = p.b; }},
    {.key = "listen",
     .kind = Kind::kEndpoint,
     .default_text = "\"127.0.0.1:8080\"",
     .doc = "TCP address to listen on; port 0 picks a free port.",
     .set = [](G& c, const P& p) { c.http.listen = p.ep; }},
    {.key = "max_connections",
     .kind = Kind::kInt,
     .default_text = "256",
     .doc = "Open connections at most; further ones are refused.",
     .set = [](G& c, const P& p) { c.http.max_connections = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 65536},
    {.key = "idle_timeout",
     .kind = Kind::kDuration,
     .default_text = "\"60s\"",
     .doc = "A connection with no traffic for this long is closed.",
     .set = [](G& c,
               const P& p) { c.http.idle_timeout = duration_cast<milliseconds>(nanoseconds(p.i)); },
     .min = 10 * kMs,
     .max = kDay,
     .unit_ns = kMs},
    {.key = "request_timeout",
     .kind = Kind::kDuration,
     .default_text = "\"10s\"",
     .doc = "A request not received whole this long after its first byte is answered 408 and its "
            "connection closed (a client trickling bytes never reaches the idle timeout).",
     .set =
         [](G& c, const P& p) {
           c.http.request_timeout = duration_cast<milliseconds>(nanoseconds(p.i));
         },
     .min = 10 * kMs,
     .max = kDay,
     .unit_ns = kMs},
};

constexpr Field<G> kRegistryFields[] = {
    {.key = "unknown_devices",
     .kind = Kind::kEnum,
     .default_text = "\"reject\"",
     .doc = "Reports from devices not declared in [[devices]]: \"reject\" (counted) or "
            "\"auto_register\" (registered with default_model and default_tenant).",
     .set =
         [](G& c, const P& p) {
           c.registry.unknown_devices = p.s == "auto_register" ? UnknownDevicePolicy::kAutoRegister
                                                               : UnknownDevicePolicy::kReject;
         },
     .choices = kPolicyChoices,
     .what = "a policy"},
    {.key = "default_model",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Model of auto-registered devices; required (and must name a [[models]] entry) "
            "when unknown_devices = \"auto_register\".",
     .set = [](G& c, const P& p) { c.registry.default_model = p.s; },
     .check = check_optional_model_name},
    {.key = "default_tenant",
     .kind = Kind::kString,
     .default_text = "\"default\"",
     .doc = "Tenant of auto-registered devices.",
     .set = [](G& c, const P& p) { c.registry.default_tenant = p.s; },
     .check = check_tenant_name},
};

constexpr Section<G> kGatewaySections[] = {
    {.header = "gateway", .doc = "Process-wide settings.", .fields = kGatewayFields},
    {.header = "log",
     .doc = "The shard log: every accepted report is appended here (and made durable per "
            "`durability`) before any sink sees it.",
     .fields = kLogFields},
    {.header = "http", .doc = "The HTTP server: API, /metrics, /debug.", .fields = kHttpFields},
    {.header = "registry",
     .doc = "What happens to reports from devices the registry does not know.",
     .fields = kRegistryFields},
};

constexpr Field<ModelSpec> kModelFields[] = {
    {.key = "name",
     .kind = Kind::kString,
     .doc = "Unique model name (a-z, 0-9, _), referenced by [[devices]] model.",
     .set = [](ModelSpec& m, const P& p) { m.name = p.s; },
     .check = check_model_name,
     .required = true},
    {.key = "allow_unknown_metrics",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "Accept (and store) metrics the model does not list instead of rejecting the report.",
     .set = [](ModelSpec& m, const P& p) { m.allow_unknown_metrics = p.b; }},
    {.key = "codec",
     .kind = Kind::kString,
     .default_text = "\"\" (the protocol's default)",
     .doc = "How its devices' payloads are decoded on protocols that carry opaque payloads "
            "(MQTT-SN, LoRaWAN, MQTT): a built-in codec (json, cayenne_lpp, raw, report; "
            "see docs/codecs/builtin.md), or the path of a JavaScript codec ending in .js "
            "(docs/codecs/js.md) or a WebAssembly codec ending in .wasm (docs/codecs/wasm.md), "
            "relative to the config file's directory. Empty: the "
            "protocol's default (json on MQTT-SN, raw on LoRaWAN). The report protocol carries "
            "typed metrics and needs none.",
     .set = [](ModelSpec& m, const P& p) { m.codec = p.s; }},
};

constexpr Section<ModelSpec> kModelSection = {
    .header = "[models]",
    .doc =
        "A device model: the data contract its devices' reports must meet. Repeat the table "
        "for each model.",
    .fields = kModelFields,
    .subtables = kMetricsSubtable};

constexpr Field<MetricSpec> kMetricFields[] = {
    {.key = "name",
     .kind = Kind::kString,
     .doc = "Metric name as devices send it; unique within the model, at most 64 bytes.",
     .set = [](MetricSpec& m, const P& p) { m.name = p.s; },
     .check = check_metric_name,
     .required = true},
    {.key = "type",
     .kind = Kind::kEnum,
     .doc = "Value type.",
     .set =
         [](MetricSpec& m, const P& p) {
           m.type = p.s == "int64"    ? core::ValueType::kInt64
                    : p.s == "bool"   ? core::ValueType::kBool
                    : p.s == "string" ? core::ValueType::kString
                                      : core::ValueType::kDouble;
         },
     .choices = kTypeChoices,
     .what = "a type",
     .required = true},
    {.key = "unit",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "Unit text (UCUM style: \"Cel\", \"%\", \"hPa\"); informational.",
     .set = [](MetricSpec& m, const P& p) { m.unit = p.s; }},
    {.key = "min",
     .kind = Kind::kNumber,
     .default_text = "none",
     .doc = "Smallest valid value, inclusive (double and int64 only).",
     .set = [](MetricSpec& m, const P& p) { m.min = p.d; }},
    {.key = "max",
     .kind = Kind::kNumber,
     .default_text = "none",
     .doc = "Largest valid value, inclusive (double and int64 only); at least min.",
     .set = [](MetricSpec& m, const P& p) { m.max = p.d; }},
    {.key = "required",
     .kind = Kind::kBool,
     .default_text = "false",
     .doc = "A report without this metric breaks the model.",
     .set = [](MetricSpec& m, const P& p) { m.required = p.b; }},
};

constexpr Section<MetricSpec> kMetricSection = {
    .header = "[models.metrics]",
    .doc = "One metric of the model above; at most 64 per model.",
    .fields = kMetricFields};

constexpr Field<DeviceRange> kDeviceFields[] = {
    {.key = "id",
     .kind = Kind::kInt,
     .doc = "Device id (1 .. 2^63-1); with count, the first id of a range.",
     .set = [](DeviceRange& d, const P& p) { d.first_id = static_cast<uint64_t>(p.i); },
     .min = 1,
     .required = true},
    {.key = "count",
     .kind = Kind::kInt,
     .default_text = "1",
     .doc = "Number of devices: ids id .. id+count-1. Ranges must not overlap; 10,000,000 "
            "devices in all at most.",
     .set = [](DeviceRange& d, const P& p) { d.count = static_cast<uint64_t>(p.i); },
     .min = 1,
     .max = static_cast<int64_t>(kMaxDevices)},
    {.key = "tenant",
     .kind = Kind::kString,
     .default_text = "\"default\"",
     .doc = "Tenant owning the devices (a-z, 0-9, _, -).",
     .set = [](DeviceRange& d, const P& p) { d.tenant = p.s; },
     .check = check_tenant_name},
    {.key = "model",
     .kind = Kind::kString,
     .doc = "Name of the [[models]] entry the devices' reports must meet.",
     .set = [](DeviceRange& d, const P& p) { d.model = p.s; },
     .check = check_model_name,
     .required = true},
};

constexpr Section<DeviceRange> kDeviceSection = {
    .header = "[devices]",
    .doc = "Registered devices: one device, or a range of ids sharing tenant and model.",
    .fields = kDeviceFields};

using L = runtime::CodecLimits;
constexpr Field<L> kCodecFields[] = {
    {.key = "time_budget",
     .kind = Kind::kDuration,
     .default_text = "\"10ms\"",
     .doc = "Longest one call of a user codec (a .js or .wasm file a model names) may run: a "
            "watchdog stops it past this, the payload is dead-lettered with reason \"timeout\" "
            "and the shard goes on with the next.",
     .set = [](L& l, const P& p) { l.time_budget_ns = p.i; },
     .min = 100 * config::kUs,
     .max = 10 * config::kSec},
    {.key = "memory_budget",
     .kind = Kind::kSize,
     .default_text = "\"16MiB\"",
     .doc = "Heap a user codec may hold (per codec and shard): a call past it is stopped "
            "(reason \"out_of_memory\"), as is a single allocation over it.",
     .set = [](L& l, const P& p) { l.memory_budget = static_cast<uint64_t>(p.i); },
     .min = config::kMiB,
     .max = 1 * config::kGiB},
    {.key = "max_output_bytes",
     .kind = Kind::kSize,
     .default_text = "\"64KiB\"",
     .doc = "Most bytes of metric names and string values one user codec call may return: "
            "more is refused (reason \"output_too_large\").",
     .set = [](L& l, const P& p) { l.max_output_bytes = static_cast<uint64_t>(p.i); },
     .min = 64,
     .max = 16 * config::kMiB},
};

constexpr Section<L> kCodecSection = {
    .header = "codecs",
    .doc =
        "Budgets of user codecs (JavaScript files a model names as its codec; see "
        "docs/codecs/js.md), the same for every codec.",
    .fields = kCodecFields};

using TO = runtime::TracingOptions;
constexpr std::string_view kKeepChoices[] = {"rejected", "dead_lettered", "retried", "slow"};
constexpr Field<TO> kTracingFields[] = {
    {.key = "endpoint",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "OTLP/HTTP traces endpoint spans are exported to, e.g. "
            "\"http://127.0.0.1:4318/v1/traces\"; empty: no spans are recorded (report fates "
            "still are: `tianhe trace`).",
     .set = [](TO& t, const P& p) { t.endpoint = p.s; },
     .check = [](const P& p) -> std::string {
       if (p.s.empty() || p.s.starts_with("http://") || p.s.starts_with("https://")) return "";
       return "must be an http:// or https:// URL such as \"http://127.0.0.1:4318/v1/traces\"";
     }},
    {.key = "sample_rate",
     .kind = Kind::kNumber,
     .default_text = "0.01",
     .doc = "Fraction of traces recorded, one decision per trace from its trace id (consistent "
            "across hops); a report with a traceparent follows its sampled flag.",
     .set = [](TO& t, const P& p) { t.sample_rate = p.d; },
     .check = [](const P& p) -> std::string {
       return p.d >= 0 && p.d <= 1 ? "" : "must be between 0 and 1 (0.01 = one trace in 100)";
     }},
    {.key = "max_spans_per_second",
     .kind = Kind::kInt,
     .default_text = "20000",
     .doc = "Spans per second the gateway records at most: above it the sampling rate adapts "
            "down, second by second (always_keep reports still count).",
     .set = [](TO& t, const P& p) { t.max_spans_per_second = static_cast<uint64_t>(p.i); },
     .min = 1,
     .max = 100'000'000},
    {.key = "always_keep",
     .kind = Kind::kEnumList,
     .default_text = "[\"rejected\", \"dead_lettered\", \"retried\", \"slow\"]",
     .doc = "Reports traced whatever the sampling rate: rejected by validation, dead-lettered "
            "by their codec, refused by the log (the device retries), slower than the shard's "
            "recent p99 to become durable.",
     .set =
         [](TO& t, const P& p) {
           t.always_keep = 0;
           for (const auto& k : p.list) t.always_keep |= runtime::keep_reason_bit(k);
         },
     .choices = kKeepChoices,
     .what = "a keep reason"},
    {.key = "consistent",
     .kind = Kind::kBool,
     .default_text = "true",
     .doc = "Sample consistently (from the trace id, following a parent's flag). false samples "
            "each hop on its own, which breaks traces across hops: only for comparison.",
     .set = [](TO& t, const P& p) { t.consistent = p.b; }},
    {.key = "ring_spans",
     .kind = Kind::kInt,
     .default_text = "16384",
     .doc = "Spans each shard and each sink can hold until the exporter takes them; a full "
            "ring drops spans, counted (tianhe_tracing_spans_dropped_total).",
     .set = [](TO& t, const P& p) { t.ring_spans = static_cast<uint64_t>(p.i); },
     .min = 64,
     .max = 1 << 24},
    {.key = "fate_devices",
     .kind = Kind::kInt,
     .default_text = "65536",
     .doc = "Devices per shard whose last 4 report fates are kept for `tianhe trace` (about "
            "128 bytes each); a device beyond it takes the slot of one not heard from longest.",
     .set = [](TO& t, const P& p) { t.fate_devices = static_cast<uint64_t>(p.i); },
     .min = 8,
     .max = 1 << 26},
    {.key = "service_instance",
     .kind = Kind::kString,
     .default_text = "\"\"",
     .doc = "The service.instance.id of exported spans; empty: the log's identity.",
     .set = [](TO& t, const P& p) { t.service_instance = p.s; }},
    {.key = "export_interval",
     .kind = Kind::kDuration,
     .default_text = "\"1s\"",
     .doc = "How often the exporter sends what the rings hold (sooner when a batch is full).",
     .set = [](TO& t, const P& p) { t.export_interval_ns = p.i; },
     .min = 10 * config::kMs,
     .max = 60 * config::kSec},
    {.key = "export_timeout",
     .kind = Kind::kDuration,
     .default_text = "\"5s\"",
     .doc = "Longest one export request may take before it is retried.",
     .set = [](TO& t, const P& p) { t.export_timeout_ns = p.i; },
     .min = 100 * config::kMs,
     .max = 60 * config::kSec},
};

constexpr Section<TO> kTracingSection = {
    .header = "tracing",
    .doc =
        "Traces (OpenTelemetry, exported over OTLP/HTTP) and report fates; see "
        "docs/observability.md.",
    .fields = kTracingFields};

}  // namespace

const config::ConfigTable& tracing_table() {
  static const config::ConfigTable table = config::table(kTracingSection);
  return table;
}

const config::ConfigTable& codecs_table() {
  static const config::ConfigTable table = config::table(kCodecSection);
  return table;
}

std::span<const Section<GatewayConfig>> gateway_sections() noexcept {
  return kGatewaySections;
}
const Section<ModelSpec>& model_section() noexcept {
  return kModelSection;
}
const Section<MetricSpec>& metric_section() noexcept {
  return kMetricSection;
}
const Section<DeviceRange>& device_section() noexcept {
  return kDeviceSection;
}

}  // namespace tianhe::control::config_fields
