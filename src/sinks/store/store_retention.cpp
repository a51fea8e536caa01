// Retention: replaced files deleted once no reader can still open them, sealed chunks older
// than sinks.store.retention deleted (StoreWriter::apply_retention).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <thread>

#include "core/clock.h"
#include "sinks/store/paced_vfs.h"
#include "sinks/store/store.h"
#include "sinks/store/store_files.h"
#include "sinks/store/store_writer.h"

namespace tianhe::sinks::store {

using files::kRetireDelayNs;
using files::merged_path_of;
using files::path_of;
using files::unlink_db;

Result<void> StoreWriter::apply_retention() {
  auto cat = Db::open(opt_.dir + "/catalog.db", false, paced_vfs_name());
  if (!cat) return cat.error();
  // Per-commit files replaced by a merged one, once no reader can still be opening them.
  std::vector<int64_t> retired;
  {
    auto st = cat->prepare("SELECT id FROM retired WHERE retired_ns < ?");
    if (!st) return st.error();
    st->bind(1, opt_.wall_clock() - kRetireDelayNs);
    while (st->step() == SQLITE_ROW) retired.push_back(st->i64(0));
  }
  for (int64_t id : retired) {
    unlink_db(path_of(opt_.dir, id), &hurry_);
    if (auto r = cat->exec("DELETE FROM retired WHERE id = " + std::to_string(id)); !r) return r;
  }
  if (opt_.retention.count() <= 0) return {};
  int64_t cutoff = opt_.wall_clock() -
                   std::chrono::duration_cast<std::chrono::nanoseconds>(opt_.retention).count();
  std::vector<int64_t> ids;
  {
    auto st = cat->prepare("SELECT id FROM chunks WHERE state = 2 AND sealed_ns < ?");
    if (!st) return st.error();
    st->bind(1, cutoff);
    while (st->step() == SQLITE_ROW) ids.push_back(st->i64(0));
  }
  for (int64_t id : ids) {
    // Catalog first: a reader never looks for a file the catalog still lists as gone.
    if (auto r = cat->exec("DELETE FROM chunks WHERE id = " + std::to_string(id) +
                           "; DELETE FROM retired WHERE id = " + std::to_string(id));
        !r) {
      return r;
    }
    unlink_db(path_of(opt_.dir, id), &hurry_);
    unlink_db(merged_path_of(opt_.dir, id), &hurry_);
    stats_.chunks_deleted.fetch_add(1, std::memory_order_relaxed);
  }
  return {};
}

}  // namespace tianhe::sinks::store
