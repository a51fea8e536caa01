#include "sinks/store/store_block.h"

#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

namespace tianhe::sinks::store {
namespace {

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

uint64_t zigzag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

int64_t unzigzag(uint64_t v) {
  return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1);
}

void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

/// Bounded reader over a block's bytes.
struct Cursor {
  const uint8_t* p;
  const uint8_t* end;
  bool ok = true;

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p == end) break;
      uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    ok = false;
    return 0;
  }
  uint64_t u64() {
    if (end - p < 8) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    p += 8;
    return v;
  }
  uint8_t u8() {
    if (p == end) {
      ok = false;
      return 0;
    }
    return *p++;
  }
};

}  // namespace

std::string merged_chunk_file_name(int64_t id) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "chunk-%06lld.merged.db", static_cast<long long>(id));
  return buf;
}

StoredReport to_stored(const PackedReport& p) {
  StoredReport r;
  r.device_id = p.device_id;
  r.seq = p.seq;
  r.tenant = p.tenant;
  r.device_time_ns = p.device_time_ns;
  r.received_ns = p.received_ns;
  r.protocol = static_cast<core::Protocol>(p.protocol);
  r.raw_metrics.assign(p.metrics.begin(), p.metrics.end());
  return r;
}

void BlockEncoder::clear() noexcept {
  body_.clear();
  info_ = BlockInfo{};
}

void BlockEncoder::add(uint64_t device_id, uint32_t seq, uint32_t tenant, int64_t device_time_ns,
                       int64_t received_ns, uint8_t protocol, std::span<const uint8_t> metrics) {
  if (info_.count == 0) {
    info_.first_device = device_id;
    first_time_ = device_time_ns;
    info_.min_time_ns = device_time_ns;
    info_.max_time_ns = device_time_ns;
    prev_device_ = device_id;
    prev_time_ = device_time_ns;
  }
  put_varint(body_, device_id - prev_device_);
  // Wrapping arithmetic: deltas of arbitrary int64 times round-trip through uint64.
  put_varint(body_, zigzag(static_cast<int64_t>(static_cast<uint64_t>(device_time_ns) -
                                                static_cast<uint64_t>(prev_time_))));
  put_varint(body_, seq);
  put_varint(body_, tenant);
  put_varint(body_, zigzag(static_cast<int64_t>(static_cast<uint64_t>(received_ns) -
                                                static_cast<uint64_t>(device_time_ns))));
  body_.push_back(protocol);
  put_varint(body_, metrics.size());
  body_.insert(body_.end(), metrics.begin(), metrics.end());
  prev_device_ = device_id;
  prev_time_ = device_time_ns;
  info_.last_device = device_id;
  info_.min_time_ns = std::min(info_.min_time_ns, device_time_ns);
  info_.max_time_ns = std::max(info_.max_time_ns, device_time_ns);
  ++info_.count;
}

// The marker bytes of a compressed block (a raw block starts with its count, never 0).
constexpr uint8_t kPackedMarker = 0x00;
constexpr uint8_t kCodecZstd = 0x01;

void BlockEncoder::ZstdFree::operator()(ZSTD_CCtx* c) const noexcept {
  ZSTD_freeCCtx(c);
}

std::span<const uint8_t> BlockEncoder::raw_bytes() {
  out_.clear();
  put_varint(out_, info_.count);
  put_u64(out_, info_.first_device);
  put_u64(out_, static_cast<uint64_t>(first_time_));
  out_.insert(out_.end(), body_.begin(), body_.end());
  return out_;
}

std::span<const uint8_t> BlockEncoder::bytes() {
  std::span<const uint8_t> raw = raw_bytes();
  if (raw.size() > kMaxCompressedBlockBytes) return raw;
  if (!zstd_) zstd_.reset(ZSTD_createCCtx());
  if (!zstd_) return raw;  // out of memory: stored uncompressed
  packed_.resize(2 + ZSTD_compressBound(raw.size()));
  packed_[0] = kPackedMarker;
  packed_[1] = kCodecZstd;
  const size_t n = ZSTD_compressCCtx(zstd_.get(), packed_.data() + 2, packed_.size() - 2,
                                     raw.data(), raw.size(), kBlockZstdLevel);
  if (ZSTD_isError(n) || n + 2 >= raw.size()) return raw;
  packed_.resize(n + 2);
  return packed_;
}

bool unpack_block(std::span<const uint8_t> stored, std::vector<uint8_t>& raw) {
  if (stored.empty()) return false;
  if (stored[0] != kPackedMarker) {
    raw.assign(stored.begin(), stored.end());
    return true;
  }
  if (stored.size() < 2 || stored[1] != kCodecZstd) return false;
  const std::span<const uint8_t> frame = stored.subspan(2);
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size == 0 ||
      size > kMaxCompressedBlockBytes) {
    return false;
  }
  raw.resize(static_cast<size_t>(size));
  thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(),
                                                                         &ZSTD_freeDCtx);
  if (!dctx) return false;
  const size_t n =
      ZSTD_decompressDCtx(dctx.get(), raw.data(), raw.size(), frame.data(), frame.size());
  return !ZSTD_isError(n) && n == size;
}

bool decode_block(std::span<const uint8_t> data, std::vector<PackedReport>& out) {
  out.clear();
  Cursor c{data.data(), data.data() + data.size()};
  uint64_t count = c.varint();
  uint64_t device = c.u64();
  auto time = static_cast<int64_t>(c.u64());
  // Each report takes at least 8 bytes: a count beyond that is corrupt.
  if (!c.ok || count > data.size() / 8 + 1) return false;
  out.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    PackedReport r;
    device += c.varint();
    time = static_cast<int64_t>(static_cast<uint64_t>(time) +
                                static_cast<uint64_t>(unzigzag(c.varint())));
    r.device_id = device;
    r.device_time_ns = time;
    r.seq = static_cast<uint32_t>(c.varint());
    r.tenant = static_cast<uint32_t>(c.varint());
    r.received_ns = static_cast<int64_t>(static_cast<uint64_t>(time) +
                                         static_cast<uint64_t>(unzigzag(c.varint())));
    r.protocol = c.u8();
    uint64_t len = c.varint();
    if (!c.ok || len > static_cast<uint64_t>(c.end - c.p)) return false;
    r.metrics = {c.p, static_cast<size_t>(len)};
    c.p += len;
    out.push_back(r);
  }
  return c.ok && c.p == c.end;
}

namespace {

constexpr uint8_t kFilterVersion = 1;
constexpr size_t kFilterHeader = 2;
/// Devices per 64-bit word: 16 bits each (0.4-0.5 % false positives; 6 per word, 10.7 bits
/// each, gave 1.3-1.5 %). Readers size a filter from its bytes, so both read alike.
constexpr size_t kFilterDevicesPerWord = 4;

uint64_t mix64(uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// The word a hash selects (its high half scaled to n) and the 4 bits it sets there.
size_t filter_word(uint64_t h, size_t n) noexcept {
  return static_cast<size_t>(((h >> 32) * static_cast<uint64_t>(n)) >> 32);
}
uint64_t filter_bits(uint64_t h) noexcept {
  return (uint64_t{1} << (h & 63)) | (uint64_t{1} << ((h >> 6) & 63)) |
         (uint64_t{1} << ((h >> 12) & 63)) | (uint64_t{1} << ((h >> 18) & 63));
}

}  // namespace

void DeviceFilterBuilder::reset(size_t reports) {
  const size_t n = std::clamp<size_t>((reports + kFilterDevicesPerWord - 1) / kFilterDevicesPerWord,
                                      1, size_t{1} << 31);
  words_.assign(n, 0);
  any_ = false;
}

void DeviceFilterBuilder::add(uint64_t device) noexcept {
  if (any_ && device == last_) return;
  any_ = true;
  last_ = device;
  const uint64_t h = mix64(device);
  words_[filter_word(h, words_.size())] |= filter_bits(h);
}

std::span<const uint8_t> DeviceFilterBuilder::bytes() {
  out_.assign(kFilterHeader + words_.size() * 8, 0);
  out_[0] = kFilterVersion;
  for (size_t i = 0; i < words_.size(); ++i) {
    for (size_t b = 0; b < 8; ++b) {
      out_[kFilterHeader + i * 8 + b] = static_cast<uint8_t>(words_[i] >> (8 * b));
    }
  }
  return out_;
}

bool filter_may_contain(std::span<const uint8_t> filter, uint64_t device) noexcept {
  if (filter.size() < kFilterHeader + 8 || filter[0] != kFilterVersion ||
      (filter.size() - kFilterHeader) % 8 != 0) {
    return true;
  }
  const size_t n = (filter.size() - kFilterHeader) / 8;
  const uint64_t h = mix64(device);
  const uint8_t* w = filter.data() + kFilterHeader + filter_word(h, n) * 8;
  uint64_t word = 0;
  for (size_t b = 0; b < 8; ++b) word |= uint64_t{w[b]} << (8 * b);
  const uint64_t bits = filter_bits(h);
  return (word & bits) == bits;
}

Result<std::vector<BlockRun>> read_runs(Db& db) {
  auto st = db.prepare("SELECT first_block, last_block, reports FROM runs ORDER BY first_block");
  if (!st) return st.error();
  std::vector<BlockRun> runs;
  int rc;
  while ((rc = st->step()) == SQLITE_ROW) runs.push_back({st->i64(0), st->i64(1), st->i64(2)});
  if (rc != SQLITE_DONE) return db.error("read runs");
  return runs;
}

Result<BlockSearch> BlockSearch::open(Db& db, RunCache* cache) {
  BlockSearch bs;
  if (auto r = db.exec("BEGIN"); !r) return r.error();
  bs.db_ = &db;  // from here the destructor ends the transaction
  bs.cache_ = cache;
  // The pragma starts the read transaction: its value names the state this search sees.
  int64_t version = -1;
  if (cache != nullptr) {
    auto v = db.query_i64("PRAGMA data_version", -1);
    if (!v) return v.error();
    version = v.value();
  }
  if (version >= 0 && version == cache->data_version) {
    bs.runs_ = cache->runs;
  } else {
    auto runs = read_runs(db);
    if (!runs) return runs.error();
    bs.runs_ = std::move(runs.value());
    if (cache != nullptr) {
      cache->runs = bs.runs_;
      cache->data_version = version;
    }
  }
  if (cache != nullptr && cache->by_first_block.size() > bs.runs_.size()) {
    // Runs merged away since: forget them (the map stays within the runs listed).
    std::unordered_map<int64_t, RunCache::Run> kept;
    for (const BlockRun& r : bs.runs_) {
      auto it = cache->by_first_block.find(r.first_block);
      if (it != cache->by_first_block.end()) kept.emplace(r.first_block, std::move(it->second));
    }
    cache->by_first_block = std::move(kept);
  }
  auto probe = db.prepare(
      "SELECT first_device, last_device, min_time_ns, max_time_ns, count FROM blocks WHERE id = ?");
  if (!probe) return probe.error();
  bs.probe_ = std::move(probe.value());
  auto fetch = db.prepare("SELECT data FROM block_data WHERE id = ?");
  if (!fetch) return fetch.error();
  bs.fetch_ = std::move(fetch.value());
  return bs;
}

BlockSearch::BlockSearch(BlockSearch&& o) noexcept
    : db_(std::exchange(o.db_, nullptr)),
      runs_(std::move(o.runs_)),
      probe_(std::move(o.probe_)),
      fetch_(std::move(o.fetch_)),
      cache_(std::exchange(o.cache_, nullptr)),
      filter_(std::move(o.filter_)),
      dir_(std::move(o.dir_)),
      buf_(std::move(o.buf_)) {}

BlockSearch::~BlockSearch() {
  probe_ = Stmt();
  fetch_ = Stmt();
  filter_ = Stmt();
  dir_ = Stmt();
  if (db_ != nullptr) (void)db_->exec("COMMIT");
}

RunCache::Run* BlockSearch::cached(const BlockRun& run) {
  if (cache_ == nullptr) return nullptr;
  return &cache_->by_first_block[run.first_block];
}

bool BlockSearch::may_hold_device(const BlockRun& run, uint64_t device) {
  if (cache_ == nullptr || cache_->unsupported) return true;
  RunCache::Run* c = cached(run);
  if (!c->filter_read) {
    if (filter_.get() == nullptr) {
      auto st = db_->prepare("SELECT filter FROM run_filters WHERE first_block = ?");
      if (!st) {
        // A file written before runs had filters: search every run, as then.
        cache_->unsupported = true;
        return true;
      }
      filter_ = std::move(st.value());
    }
    filter_.reset();
    filter_.bind(1, run.first_block);
    const int rc = filter_.step();
    if (rc == SQLITE_ROW) {
      auto b = filter_.blob(0);
      c->filter.assign(b.begin(), b.end());
    }
    filter_.reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return true;  // not kept: read again next time
    c->filter_read = true;  // none for this run: kept empty, so it is searched
  }
  return c->filter.empty() || filter_may_contain(c->filter, device);
}

const std::vector<BlockInfo>* BlockSearch::directory(const BlockRun& run) {
  RunCache::Run* c = cached(run);
  if (c == nullptr) return nullptr;
  if (!c->blocks_read) {
    if (dir_.get() == nullptr) {
      auto st = db_->prepare(
          "SELECT id, first_device, last_device, min_time_ns, max_time_ns, count FROM blocks "
          "WHERE id BETWEEN ? AND ? ORDER BY id");
      if (!st) return nullptr;
      dir_ = std::move(st.value());
    }
    c->blocks_read = true;
    dir_.reset();
    dir_.bind(1, run.first_block);
    dir_.bind(2, run.last_block);
    const auto want = static_cast<size_t>(run.last_block - run.first_block + 1);
    c->blocks.reserve(want);
    int rc;
    while ((rc = dir_.step()) == SQLITE_ROW) {
      const int64_t id = dir_.i64(0);
      if (id != run.first_block + static_cast<int64_t>(c->blocks.size())) break;  // a gap
      c->blocks.push_back({id, dir_.u64(1), dir_.u64(2), dir_.i64(3), dir_.i64(4),
                           static_cast<uint32_t>(dir_.i64(5))});
    }
    dir_.reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) c->blocks_read = false;  // read again next time
    if (c->blocks.size() != want) {  // not whole (cannot happen in a committed run)
      c->blocks.clear();
      c->blocks.shrink_to_fit();
    }
  }
  return c->blocks.empty() ? nullptr : &c->blocks;
}

int64_t BlockSearch::lower_bound(const BlockRun& run, uint64_t device) {
  if (const std::vector<BlockInfo>* dir = directory(run)) {
    auto it = std::partition_point(dir->begin(), dir->end(),
                                   [&](const BlockInfo& b) { return b.last_device < device; });
    return run.first_block + (it - dir->begin());
  }
  int64_t a = run.first_block, b = run.last_block + 1;
  while (a < b) {
    int64_t mid = a + (b - a) / 2;
    BlockInfo bi;
    // A missing entry cannot happen inside a run's range; treat it as "after".
    if (probe(mid, bi) && bi.last_device < device)
      a = mid + 1;
    else
      b = mid;
  }
  return a;
}

bool BlockSearch::info(const BlockRun& run, int64_t id, BlockInfo& out) {
  if (id < run.first_block || id > run.last_block) return false;
  if (const std::vector<BlockInfo>* dir = directory(run)) {
    out = (*dir)[static_cast<size_t>(id - run.first_block)];
    return true;
  }
  return probe(id, out);
}

bool BlockSearch::probe(int64_t id, BlockInfo& out) {
  probe_.reset();
  probe_.bind(1, id);
  if (probe_.step() != SQLITE_ROW) return false;
  out.id = id;
  out.first_device = probe_.u64(0);
  out.last_device = probe_.u64(1);
  out.min_time_ns = probe_.i64(2);
  out.max_time_ns = probe_.i64(3);
  out.count = static_cast<uint32_t>(probe_.i64(4));
  return true;
}

Result<void> BlockSearch::decode(int64_t id, std::vector<PackedReport>& out) {
  fetch_.reset();
  fetch_.bind(1, id);
  if (fetch_.step() != SQLITE_ROW) return db_->error("read block " + std::to_string(id));
  const bool unpacked = unpack_block(fetch_.blob(0), buf_);
  fetch_.reset();
  if (!unpacked || !decode_block(buf_, out)) {
    return make_error(db_->path() + ": block " + std::to_string(id) + " is corrupt");
  }
  return {};
}

}  // namespace tianhe::sinks::store
