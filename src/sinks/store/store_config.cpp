#include "sinks/store/store_config.h"

#include <filesystem>

namespace tianhe::sinks::store {
namespace {

using config::Field;
using config::kDay;
using config::Kind;
using config::kMs;
using config::kSec;
using P = config::Parsed;
using config::check_non_empty;

constexpr Field<StoreConfig> kFields[] = {
    {.key = "enabled",
     .kind = Kind::kBool,
     .default_text = "true",
     .doc = "Deliver reports to the embedded store (the default sink).",
     .set = [](StoreConfig& c, const P& p) { c.enabled = p.b; }},
    {.key = "dir",
     .kind = Kind::kString,
     .default_text = "\"<data_dir>/store\"",
     .doc = "Directory of the store's files.",
     .set = [](StoreConfig& c, const P& p) { c.dir = p.s; },
     .check = check_non_empty},
    {.key = "batch_reports",
     .kind = Kind::kInt,
     .default_text = "65536",
     .doc = "Reports written per store transaction at most.",
     .set = [](StoreConfig& c, const P& p) { c.batch_reports = static_cast<uint32_t>(p.i); },
     .min = 1,
     .max = 1 << 24},
    {.key = "commit_interval",
     .kind = Kind::kDuration,
     .default_text = "\"20ms\"",
     .doc = "Unless batch_reports are waiting, a store transaction starts at most this often, "
            "taking what arrived meanwhile: fewer, larger transactions and sorted runs (cheaper "
            "sealing and queries) for up to this much more store lag. \"0\": write at once.",
     .set =
         [](StoreConfig& c, const P& p) {
           c.commit_interval = config::to_duration<std::chrono::milliseconds>(p.i);
         },
     .min = 0,
     .max = 10 * kSec,
     .unit_ns = kMs},
    {.key = "chunk_reports",
     .kind = Kind::kInt,
     .default_text = "4194304",
     .doc = "A time chunk is sealed after this many reports ...",
     .set = [](StoreConfig& c, const P& p) { c.chunk_reports = static_cast<uint64_t>(p.i); },
     .min = 1,
     .max = int64_t{1} << 32},
    {.key = "chunk_duration",
     .kind = Kind::kDuration,
     .default_text = "\"1h\"",
     .doc = "... or after this long, whichever comes first (whole seconds).",
     .set = [](StoreConfig& c, const P& p) { c.chunk_duration = std::chrono::seconds(p.i / kSec); },
     .min = kSec,
     .max = 366 * kDay,
     .unit_ns = kSec},
    {.key = "retention",
     .kind = Kind::kDuration,
     .default_text = "\"0\"",
     .doc = "Sealed chunks older than this are deleted (whole seconds); \"0\" keeps everything.",
     .set = [](StoreConfig& c, const P& p) { c.retention = std::chrono::seconds(p.i / kSec); },
     .min = 0,
     .max = 100 * 366 * kDay,
     .unit_ns = kSec},
};

constexpr config::Section<StoreConfig> kSection = {
    .header = "sinks.store", .doc = "The embedded store, the default sink.", .fields = kFields};

// Relative paths stay relative: they resolve against the working directory at start.
std::string finish(StoreConfig& c, std::string_view data_dir) {
  if (c.dir.empty()) c.dir = (std::filesystem::path(data_dir) / "store").string();
  return "";
}

}  // namespace

config::ConfigTable config_table() {
  return config::table(kSection, finish);
}

}  // namespace tianhe::sinks::store
