// `[sinks.store]`: the embedded store's settings and their field table.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "core/config_table.h"

namespace tianhe::sinks::store {

/// `[sinks.store]`: the embedded store (default sink).
struct StoreConfig {
  bool enabled = true;                            ///< deliver reports to the store
  std::string dir;                                ///< default: <data_dir>/store
  uint32_t batch_reports = 65536;                 ///< reports per store transaction at most
  std::chrono::milliseconds commit_interval{20};  ///< a transaction waits this long to fill
  uint64_t chunk_reports = 4u << 20;          ///< a time chunk is sealed after this many reports
  std::chrono::seconds chunk_duration{3600};  ///< ... or after this long
  std::chrono::seconds retention{0};          ///< drop sealed chunks older than this; 0 = keep all
};

/// The `[sinks.store]` table (registered by register.cpp); dir defaults to <data_dir>/store.
config::ConfigTable config_table();

}  // namespace tianhe::sinks::store
