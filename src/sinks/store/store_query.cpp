// `tianhe query`: reads the embedded store (works while the gateway runs); a command the store
// registers (register.cpp).
#include "sinks/store/store_query.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/args.h"
#include "core/clock.h"
#include "core/config_table.h"
#include "sinks/store/store.h"
#include "sinks/store/store_config.h"

namespace tianhe::sinks::store {

using core::Args;
using core::format_time;
using core::parse_device_range;
using core::parse_time;
using core::usage_error;
using core::wants_help;

int cmd_query(int argc, char** argv, const runtime::CommandContext& context) {
  if (wants_help(argc, argv)) {
    std::puts(R"(tianhe query — read the embedded store (works while the gateway runs)

Options:
  --data-dir DIR     the gateway's data directory (default: from --config, else ./data)
  --config FILE      take the store location from this config
  --device ID        history of one device (with --from/--to/--limit/--order);
                     a range A-B reads each device in turn (at most 1000000)
  --from T --to T    time range: RFC 3339 (2026-11-22T03:00:00Z), ns since epoch, now, -15m
  --limit N          at most N reports (default 100)
  --order asc|desc   oldest or newest first (default asc)
  --latest           the latest report (of --device, or of every device with --all)
  --all              with --latest: every device, in device order (paginate with --after ID)
  --count            count reports (of --device in the range, or of the whole store)
  --format F         table (default), json or csv

Examples:
  tianhe query --device 42 --from -1h
  tianhe query --latest --all --limit 20 --format csv
  tianhe query --count)");
    return 0;
  }
  auto args = Args::parse(
      argc, argv, 2, {"latest", "all", "count"},
      {"data-dir", "config", "device", "from", "to", "limit", "order", "format", "after"});
  if (!args.ok()) return usage_error("query", args.error().message);
  std::string dir;
  if (args->has("config") || !args->has("data-dir")) {
    auto table = context.load_table(args->str("config"), args->str("data-dir"), "sinks.store");
    if (!table.ok()) return usage_error("query", table.error().message);
    dir = std::any_cast<const StoreConfig&>(*table).dir;
  } else {
    dir = args->str("data-dir") + "/store";
  }
  // Every value is checked before the store is opened: a typo is a usage error (exit 2).
  const std::string format = args->str("format", "table");
  if (format != "table" && format != "json" && format != "csv") {
    return usage_error("query",
                       "--format: \"" + format + "\" is not a format; use table, json or csv");
  }
  const std::string order = args->str("order", "asc");
  if (order != "asc" && order != "desc") {
    return usage_error("query", "--order: \"" + order + "\" is not an order; use asc or desc");
  }
  const bool newest_first = order == "desc";
  auto limit_arg = args->u64("limit", 100, 1, UINT32_MAX);
  if (!limit_arg.ok()) return usage_error("query", limit_arg.error().message);
  const auto limit = static_cast<uint32_t>(*limit_arg);
  // --device takes one id or a range "A-B" (history of each device in turn); 0: none given.
  uint64_t device = 0, range_last = 0;
  if (args->has("device")) {
    auto range = parse_device_range(args->str("device"), "--device");
    if (!range.ok()) return usage_error("query", range.error().message);
    device = range->first;
    range_last = range->last;
  }
  auto after_arg = args->u64("after", 0);
  if (!after_arg.ok()) return usage_error("query", after_arg.error().message);
  const uint64_t after = *after_arg;
  const bool count = args->has("count"), latest = args->has("latest"), all = args->has("all");
  if (count && latest) return usage_error("query", "--count and --latest: choose one");
  if (all && !latest) {
    return usage_error("query", "--all goes with --latest (the latest report of every device)");
  }
  if (all && device != 0) return usage_error("query", "--all reads every device: drop --device");
  if (args->has("after") && !all) {
    return usage_error("query", "--after goes with --latest --all (the next page of devices)");
  }
  if (range_last != device && (count || latest)) {
    return usage_error("query", "--count and --latest take one --device, not a range");
  }
  if (device == 0 && !count && !all) {
    return usage_error("query", latest ? "--latest needs --device ID or --all"
                                       : "say what to read: --device ID, --latest, or --count");
  }
  const int64_t now = core::wall_ns();
  int64_t from = INT64_MIN, to = INT64_MAX;
  if (args->has("from")) {
    auto t = parse_time(args->str("from"), now, "--from");
    if (!t.ok()) return usage_error("query", t.error().message);
    from = *t;
  }
  if (args->has("to")) {
    auto t = parse_time(args->str("to"), now, "--to");
    if (!t.ok()) return usage_error("query", t.error().message);
    to = *t;
  }
  if (from > to) {
    return usage_error("query", "--from " + args->str("from") + " is after --to " +
                                    args->str("to") + "; swap them");
  }
  auto reader = StoreReader::open(dir);
  if (!reader.ok()) {
    std::fprintf(stderr, "tianhe query: %s\n", reader.error().message.c_str());
    return 1;
  }

  if (count) {
    if (device != 0) {
      auto n = (*reader)->count_device(device, from, to);
      if (!n.ok()) return std::fprintf(stderr, "tianhe query: %s\n", n.error().message.c_str()), 1;
      if (format == "json")
        std::printf("{\"device_id\":%llu,\"reports\":%llu}\n",
                    static_cast<unsigned long long>(device), static_cast<unsigned long long>(*n));
      else
        std::printf("%llu\n", static_cast<unsigned long long>(*n));
      return 0;
    }
    auto c = (*reader)->counts();
    if (!c.ok()) return std::fprintf(stderr, "tianhe query: %s\n", c.error().message.c_str()), 1;
    if (format == "json") {
      std::printf("%s\n", nlohmann::json{{"reports", c->reports},
                                         {"devices", c->devices},
                                         {"chunks", c->chunks},
                                         {"bytes", c->bytes}}
                              .dump()
                              .c_str());
    } else if (format == "csv") {
      std::printf(
          "reports,devices,chunks,bytes\n%llu,%llu,%llu,%llu\n",
          static_cast<unsigned long long>(c->reports), static_cast<unsigned long long>(c->devices),
          static_cast<unsigned long long>(c->chunks), static_cast<unsigned long long>(c->bytes));
    } else {
      std::printf(
          "reports  %llu\ndevices  %llu\nchunks   %llu\nbytes    %llu (%s)\n",
          static_cast<unsigned long long>(c->reports), static_cast<unsigned long long>(c->devices),
          static_cast<unsigned long long>(c->chunks), static_cast<unsigned long long>(c->bytes),
          config::format_bytes_approx(c->bytes).c_str());
    }
    return 0;
  }

  std::vector<StoredReport> rows;
  if (latest) {
    if (all) {
      auto r = (*reader)->latest_all(after, limit);
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      rows = std::move(*r);
    } else {
      auto r = (*reader)->latest(device);
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      if (r->has_value()) rows.push_back(std::move(**r));
    }
  } else {
    for (uint64_t id = device; id <= range_last; ++id) {
      HistoryQuery q;
      q.device_id = id;
      q.from_ns = from;
      q.to_ns = to;
      q.limit = limit;
      q.newest_first = newest_first;
      auto r = (*reader)->history(q);
      if (!r.ok()) return std::fprintf(stderr, "tianhe query: %s\n", r.error().message.c_str()), 1;
      for (auto& row : *r) rows.push_back(std::move(row));
    }
  }

  if (format == "json") {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) {
      arr.push_back({{"device_id", r.device_id},
                     {"seq", r.seq},
                     {"time", format_time(r.device_time_ns)},
                     {"time_ns", r.device_time_ns},
                     {"received_ns", r.received_ns},
                     {"protocol", std::string(core::protocol_name(r.protocol))},
                     {"metrics", nlohmann::json::parse(metrics_json(r.raw_metrics))}});
    }
    std::printf("%s\n", arr.dump(2).c_str());
  } else if (format == "csv") {
    std::printf("device_id,seq,time,received_ns,protocol,metrics\n");
    for (const auto& r : rows) {
      std::string m = metrics_json(r.raw_metrics);
      std::string quoted = "\"";
      for (char c : m) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
      quoted += "\"";
      std::printf("%llu,%u,%s,%lld,%s,%s\n", static_cast<unsigned long long>(r.device_id), r.seq,
                  format_time(r.device_time_ns).c_str(), static_cast<long long>(r.received_ns),
                  std::string(core::protocol_name(r.protocol)).c_str(), quoted.c_str());
    }
  } else {
    std::printf("%-12s %-10s %-32s %s\n", "DEVICE", "SEQ", "TIME", "METRICS");
    for (const auto& r : rows) {
      std::printf("%-12llu %-10u %-32s %s\n", static_cast<unsigned long long>(r.device_id), r.seq,
                  format_time(r.device_time_ns).c_str(), metrics_json(r.raw_metrics).c_str());
    }
    std::printf("(%zu reports)\n", rows.size());
  }
  return 0;
}

}  // namespace tianhe::sinks::store
