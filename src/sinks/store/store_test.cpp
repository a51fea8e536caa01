#include "sinks/store/store.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include "sinks/common/seq_window_table.h"
#include "sinks/store/store_block.h"
#include "sinks/store/store_test_util.h"
#include "sinks/store/store_writer.h"

namespace tianhe::sinks::store {
namespace {

using testing::encode;
using testing::kSec;
using testing::kT0;
using testing::Spec;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/th-store-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

StoreWriterOptions options(const std::string& dir) {
  StoreWriterOptions o;
  o.dir = dir + "/store";
  o.background_seal = false;  // deterministic: seal() indexes before it returns
  o.cache_bytes = 8 << 20;
  return o;
}

std::unique_ptr<StoreWriter> open_writer(const StoreWriterOptions& o) {
  auto w = StoreWriter::open(o);
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().message);
  return w.ok() ? std::move(w.value()) : nullptr;
}

std::unique_ptr<StoreReader> open_reader(const std::string& dir) {
  auto r = StoreReader::open(dir);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r.value()) : nullptr;
}

TEST(SeqWindowTable, NewDuplicateLateAndReboot) {
  SeqWindowTable t(4);
  EXPECT_EQ(t.check(1, 10, 100), SeqVerdict::kNew);
  EXPECT_EQ(t.check(1, 10, 100), SeqVerdict::kDuplicate);
  EXPECT_EQ(t.check(1, 12, 120), SeqVerdict::kNew);
  EXPECT_EQ(t.check(1, 11, 110), SeqVerdict::kNew);  // late but inside the window
  EXPECT_EQ(t.check(1, 11, 110), SeqVerdict::kDuplicate);
  EXPECT_EQ(t.check(1, 200, 2000), SeqVerdict::kNew);
  EXPECT_EQ(t.check(1, 137, 1370), SeqVerdict::kNew);        // 63 behind: still tracked
  EXPECT_EQ(t.check(1, 136, 1360), SeqVerdict::kDuplicate);  // 64 behind, older time
  EXPECT_EQ(t.check(1, 0, 5000), SeqVerdict::kReboot);       // restarted, clock moved on
  EXPECT_EQ(t.check(1, 0, 5000), SeqVerdict::kDuplicate);
  EXPECT_EQ(t.check(1, 1, 5100), SeqVerdict::kNew);
  EXPECT_EQ(t.check(2, 0, 0), SeqVerdict::kNew);  // devices are independent
  EXPECT_EQ(t.size(), 2u);
}

TEST(SeqWindowTable, SerialArithmeticAcrossWrap) {
  SeqWindowTable t(4);
  EXPECT_EQ(t.check(7, 0xFFFFFFFEu, 1), SeqVerdict::kNew);
  EXPECT_EQ(t.check(7, 1, 4), SeqVerdict::kNew);            // wrapped forward
  EXPECT_EQ(t.check(7, 0xFFFFFFFFu, 2), SeqVerdict::kNew);  // late, sent before seq 1
  EXPECT_EQ(t.check(7, 0xFFFFFFFEu, 1), SeqVerdict::kDuplicate);
}

TEST(SeqWindowTable, RestartInsideTheWindowWithANewerClockIsAReboot) {
  SeqWindowTable t(4);
  EXPECT_EQ(t.check(9, 0, 100), SeqVerdict::kNew);
  EXPECT_EQ(t.check(9, 1, 200), SeqVerdict::kNew);
  EXPECT_EQ(t.check(9, 2, 300), SeqVerdict::kNew);
  EXPECT_EQ(t.check(9, 1, 200), SeqVerdict::kDuplicate);  // a retransmission: same time
  EXPECT_EQ(t.check(9, 0, 1000), SeqVerdict::kReboot);    // numbering restarted, clock moved on
  EXPECT_EQ(t.check(9, 1, 1100), SeqVerdict::kNew);
  EXPECT_EQ(t.check(9, 0, 1000), SeqVerdict::kDuplicate);
}

TEST(SeqWindowTable, SeedMarksEverythingAtOrBelowAsSeen) {
  SeqWindowTable t(4);
  t.seed(5, 100, 1000);
  EXPECT_EQ(t.check(5, 100, 1000), SeqVerdict::kDuplicate);
  EXPECT_EQ(t.check(5, 40, 400), SeqVerdict::kDuplicate);
  EXPECT_EQ(t.check(5, 101, 1010), SeqVerdict::kNew);
}

TEST(SeqWindowTable, GrowsPastManyDevices) {
  SeqWindowTable t(16);
  for (uint64_t d = 0; d < 100000; ++d) ASSERT_EQ(t.check(d * 7919, 1, 1), SeqVerdict::kNew);
  for (uint64_t d = 0; d < 100000; ++d) ASSERT_EQ(t.check(d * 7919, 1, 1), SeqVerdict::kDuplicate);
  EXPECT_EQ(t.size(), 100000u);
}

TEST(MetricsJson, RendersEveryType) {
  auto e = encode({{1, 1, kT0, 21.5}});
  EXPECT_EQ(metrics_json(e.batch->begin()->raw_metrics),
            R"({"temperature":21.5,"door_open":true,"#9":3})");
  std::vector<uint8_t> bad = {5, 1};
  EXPECT_EQ(metrics_json(bad), R"({"#malformed":true})");
}

TEST(StoreReader, NoStoreNamesTheDirectory) {
  TempDir tmp;
  auto r = StoreReader::open(tmp.path() + "/nothing");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(tmp.path() + "/nothing"), std::string::npos);
  EXPECT_NE(r.error().message.find("no store here"), std::string::npos);
}

TEST(StoreWriter, WritesQueriesAndKeepsCursors) {
  TempDir tmp;
  auto o = options(tmp.path());
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  EXPECT_TRUE(w->cursors().empty());
  std::vector<Spec> specs;
  for (uint32_t s = 0; s < 10; ++s) {
    for (uint64_t d = 1; d <= 3; ++d) specs.push_back({d, s, kT0 + s * kSec, 20.0 + s});
  }
  auto e = encode(specs);
  auto reports = e.reports();
  ShardCursor cur[] = {{0, 1234}, {1, 99}};
  auto res = w->write(reports, cur, true);
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->written, 30u);
  EXPECT_EQ(res->duplicates, 0u);
  EXPECT_EQ(w->cursors().at(0), 1234u);

  auto r = open_reader(o.dir);
  ASSERT_TRUE(r);
  HistoryQuery q{.device_id = 2, .from_ns = kT0 + 2 * kSec, .to_ns = kT0 + 5 * kSec};
  auto h = r->history(q);
  ASSERT_TRUE(h.ok()) << h.error().message;
  ASSERT_EQ(h->size(), 4u);
  EXPECT_EQ((*h)[0].seq, 2u);
  EXPECT_EQ((*h)[3].seq, 5u);
  EXPECT_EQ((*h)[0].device_id, 2u);
  EXPECT_EQ((*h)[0].tenant, 1u);
  EXPECT_EQ((*h)[0].received_ns, kT0 + 2 * kSec + 1000);
  EXPECT_EQ(metrics_json((*h)[0].raw_metrics), R"({"temperature":22,"door_open":true,"#9":3})");
  q.newest_first = true;
  q.limit = 2;
  h = r->history(q);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 2u);
  EXPECT_EQ((*h)[0].seq, 5u);
  EXPECT_EQ((*h)[1].seq, 4u);

  auto l = r->latest(3);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(l->has_value());
  EXPECT_EQ((*l)->seq, 9u);
  auto none = r->latest(77);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto c = r->counts();
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->reports, 30u);
  EXPECT_EQ(c->devices, 3u);
  EXPECT_EQ(c->chunks, 1u);
  EXPECT_GT(c->bytes, 0u);
  auto n = r->count_device(1, kT0, kT0 + 3 * kSec);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 4u);

  // Reopen: cursors come back, every report already stored is a duplicate.
  w.reset();
  w = open_writer(o);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->cursors().at(0), 1234u);
  EXPECT_EQ(w->cursors().at(1), 99u);
  EXPECT_EQ(w->devices(), 3u);
  res = w->write(reports, cur, false);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->written, 0u);
  EXPECT_EQ(res->duplicates, 30u);
}

TEST(StoreWriter, DuplicatesInsideOneBatchAreStoredOnce) {
  TempDir tmp;
  auto o = options(tmp.path());
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  auto e = encode({{5, 1, kT0}, {5, 2, kT0 + kSec}, {5, 1, kT0}, {6, 1, kT0}, {5, 2, kT0 + kSec}});
  auto res = w->write(e.reports(), {}, false);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->written, 3u);
  EXPECT_EQ(res->duplicates, 2u);
  auto r = open_reader(o.dir);
  auto n = r->count_device(5, INT64_MIN, INT64_MAX);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 2u);
}

TEST(StoreWriter, SealsChunksAndQueriesSpanThem) {
  TempDir tmp;
  auto o = options(tmp.path());
  o.chunk_reports = 20;
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  // 4 devices x 25 seqs in batches of 8 reports: 100 reports -> several sealed chunks.
  std::vector<Spec> all;
  for (uint32_t s = 0; s < 25; ++s) {
    for (uint64_t d = 10; d < 14; ++d) all.push_back({d, s, kT0 + s * kSec, double(s)});
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < all.size(); i += 8) {
    std::vector<Spec> part(all.begin() + i, all.begin() + std::min(all.size(), i + 8));
    auto e = encode(part);
    offset += 100;
    ShardCursor cur[] = {{0, offset}};
    auto res = w->write(e.reports(), cur, false);
    ASSERT_TRUE(res.ok()) << res.error().message;
  }
  EXPECT_GE(w->stats().chunks_sealed.load(), 4u);
  EXPECT_EQ(w->stats().chunks_indexed.load(), w->stats().chunks_sealed.load());

  auto r = open_reader(o.dir);
  ASSERT_TRUE(r);
  auto h = r->history({.device_id = 11});
  ASSERT_TRUE(h.ok()) << h.error().message;
  ASSERT_EQ(h->size(), 25u);
  for (uint32_t s = 0; s < 25; ++s) EXPECT_EQ((*h)[s].seq, s);
  h = r->history({.device_id = 11,
                  .from_ns = kT0 + 3 * kSec,
                  .to_ns = kT0 + 21 * kSec,
                  .limit = 5,
                  .newest_first = true});
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 5u);
  EXPECT_EQ((*h)[0].seq, 21u);
  EXPECT_EQ((*h)[4].seq, 17u);

  auto c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 100u);
  EXPECT_EQ(c->devices, 4u);
  EXPECT_EQ(c->chunks, w->stats().chunks_sealed.load() + 1);

  auto page = r->latest_all(0, 3);
  ASSERT_TRUE(page.ok()) << page.error().message;
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].device_id, 10u);
  EXPECT_EQ((*page)[2].device_id, 12u);
  EXPECT_EQ((*page)[0].seq, 24u);
  page = r->latest_all(12, 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].device_id, 13u);

  // Restart: windows rebuilt from the latest table and the open chunk.
  w.reset();
  w = open_writer(o);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->cursors().at(0), offset);
  auto again = encode(all);
  auto res = w->write(again.reports(), {}, false);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->duplicates, 100u);
  auto fresh = encode({{10, 25, kT0 + 25 * kSec}});
  res = w->write(fresh.reports(), {}, false);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->written, 1u);
  auto l = r->latest(10);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(l->has_value());
  EXPECT_EQ((*l)->seq, 25u);
}

TEST(StoreWriter, LatestAllPagesInUnsignedDeviceOrder) {
  TempDir tmp;
  auto o = options(tmp.path());
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  const uint64_t big = 0xF000000000000000ull;
  auto e = encode({{big, 1, kT0}, {3, 1, kT0}, {big + 1, 1, kT0}, {1, 1, kT0}});
  ASSERT_TRUE(w->write(e.reports(), {}, false).ok());
  ASSERT_TRUE(w->seal().ok());
  auto e2 = encode({{2, 1, kT0}, {big + 2, 1, kT0}});
  ASSERT_TRUE(w->write(e2.reports(), {}, false).ok());
  auto r = open_reader(o.dir);
  std::vector<uint64_t> ids;
  uint64_t after = 0;
  for (;;) {
    auto page = r->latest_all(after, 2);
    ASSERT_TRUE(page.ok()) << page.error().message;
    if (page->empty()) break;
    for (auto& x : *page) ids.push_back(x.device_id);
    after = page->back().device_id;
  }
  EXPECT_EQ(ids, (std::vector<uint64_t>{1, 2, 3, big, big + 1, big + 2}));
  auto l = r->latest(big + 1);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(l->has_value());
  EXPECT_EQ((*l)->device_id, big + 1);
}

TEST(BlockCodec, RoundTripsExtremes) {
  BlockEncoder enc;
  std::vector<uint8_t> m1 = {1, 2, 3}, m2;
  enc.clear();
  enc.add(5, 0xFFFFFFFFu, 7, INT64_MIN, INT64_MAX, 5, m1);
  enc.add(5, 1, 0, INT64_MAX, INT64_MIN, 1, m2);
  enc.add(UINT64_MAX, 2, 3, -1, 0, 2, m1);
  std::vector<uint8_t> bytes(enc.raw_bytes().begin(), enc.raw_bytes().end());
  EXPECT_EQ(enc.info().first_device, 5u);
  EXPECT_EQ(enc.info().last_device, UINT64_MAX);
  EXPECT_EQ(enc.info().min_time_ns, INT64_MIN);
  EXPECT_EQ(enc.info().max_time_ns, INT64_MAX);
  std::vector<PackedReport> out;
  ASSERT_TRUE(decode_block(bytes, out));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].seq, 0xFFFFFFFFu);
  EXPECT_EQ(out[0].device_time_ns, INT64_MIN);
  EXPECT_EQ(out[0].received_ns, INT64_MAX);
  EXPECT_EQ(out[1].device_time_ns, INT64_MAX);
  EXPECT_EQ(out[1].received_ns, INT64_MIN);
  EXPECT_TRUE(out[1].metrics.empty());
  EXPECT_EQ(out[2].device_id, UINT64_MAX);
  EXPECT_EQ(out[2].tenant, 3u);
  EXPECT_EQ(std::vector<uint8_t>(out[2].metrics.begin(), out[2].metrics.end()), m1);
  // Truncated or padded bytes are rejected, never read past the end.
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decode_block(std::span<const uint8_t>(bytes.data(), n), out)) << n;
  }
  bytes.push_back(0);
  EXPECT_FALSE(decode_block(bytes, out));
}

TEST(BlockCodec, StoredBlocksAreCompressedAndUnpackToTheRawBlock) {
  // Realistic metrics: the same names in every report, as the report codec writes them.
  BlockEncoder enc;
  std::vector<uint8_t> metrics;
  for (const char* name : {"temperature", "humidity", "pressure", "battery_mv", "door_open"}) {
    metrics.push_back(static_cast<uint8_t>(std::strlen(name)));
    metrics.insert(metrics.end(), name, name + std::strlen(name));
    metrics.push_back(1);
    for (int i = 0; i < 8; ++i) metrics.push_back(static_cast<uint8_t>(i * 37));
  }
  enc.clear();
  for (uint32_t i = 0; i < kDefaultBlockReports; ++i) {
    metrics.back() = static_cast<uint8_t>(i);
    enc.add(1000 + i * 7, i, 1, kT0 + i * kSec, kT0 + i * kSec + 5, 1, metrics);
  }
  const std::vector<uint8_t> raw(enc.raw_bytes().begin(), enc.raw_bytes().end());
  const std::vector<uint8_t> stored(enc.bytes().begin(), enc.bytes().end());
  ASSERT_GE(stored.size(), 2u);
  EXPECT_EQ(stored[0], 0x00);  // compressed
  EXPECT_EQ(stored[1], 0x01);  // zstd
  EXPECT_LT(stored.size() * 2, raw.size()) << stored.size() << " of " << raw.size();
  std::vector<uint8_t> unpacked;
  ASSERT_TRUE(unpack_block(stored, unpacked));
  EXPECT_EQ(unpacked, raw);
  std::vector<PackedReport> out;
  ASSERT_TRUE(decode_block(unpacked, out));
  ASSERT_EQ(out.size(), kDefaultBlockReports);
  EXPECT_EQ(out[255].device_id, 1000u + 255 * 7);
  EXPECT_EQ(out[255].metrics.back(), 255);
  // A raw block (older stores, or one zstd did not shrink) unpacks as itself.
  ASSERT_TRUE(unpack_block(raw, unpacked));
  EXPECT_EQ(unpacked, raw);
}

TEST(BlockCodec, MalformedCompressedBlocksAreRejected) {
  BlockEncoder enc;
  std::vector<uint8_t> metrics(60, 7);
  enc.clear();
  for (uint32_t i = 0; i < 64; ++i) enc.add(i, i, 1, kT0 + i, kT0 + i, 1, metrics);
  const std::vector<uint8_t> stored(enc.bytes().begin(), enc.bytes().end());
  ASSERT_EQ(stored[0], 0x00);
  std::vector<uint8_t> raw;
  std::vector<PackedReport> out;
  // Every truncation fails to unpack or to decode; none reads past the end.
  for (size_t n = 0; n < stored.size(); ++n) {
    const std::span<const uint8_t> cut(stored.data(), n);
    EXPECT_FALSE(unpack_block(cut, raw) && decode_block(raw, out)) << n;
  }
  // An unknown codec.
  std::vector<uint8_t> other = stored;
  other[1] = 0x7f;
  EXPECT_FALSE(unpack_block(other, raw));
  // A frame that would expand beyond the bound is refused before any allocation.
  std::vector<uint8_t> zeros(kMaxCompressedBlockBytes + 1, 0);
  std::vector<uint8_t> big(2 + ZSTD_compressBound(zeros.size()));
  big[0] = 0x00;
  big[1] = 0x01;
  const size_t n = ZSTD_compress(big.data() + 2, big.size() - 2, zeros.data(), zeros.size(), 1);
  ASSERT_FALSE(ZSTD_isError(n));
  big.resize(n + 2);
  EXPECT_FALSE(unpack_block(big, raw));
  EXPECT_LT(raw.capacity(), zeros.size());
}

TEST(StoreWriter, DeviceStraddlingBlocksAndChunks) {
  TempDir tmp;
  auto o = options(tmp.path());
  o.block_reports = 4;  // device 20's 10 reports of a commit span 3-4 blocks
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  auto commit = [&](uint32_t first_seq) {
    std::vector<Spec> specs;
    for (uint32_t s = first_seq; s < first_seq + 10; ++s) {
      specs.push_back({20, s, kT0 + s * kSec});
      if (s % 3 == 0) specs.push_back({19, s, kT0 + s * kSec});
      if (s % 4 == 0) specs.push_back({21, s, kT0 + s * kSec});
    }
    auto e = encode(specs);
    auto res = w->write(e.reports(), {}, false);
    ASSERT_TRUE(res.ok()) << res.error().message;
  };
  commit(0);
  commit(10);
  ASSERT_TRUE(w->seal().ok());  // seqs 0..19 merged into one sealed run
  commit(20);
  commit(30);  // the open chunk: two runs
  auto r = open_reader(o.dir);
  ASSERT_TRUE(r);
  auto h = r->history({.device_id = 20});
  ASSERT_TRUE(h.ok()) << h.error().message;
  ASSERT_EQ(h->size(), 40u);
  for (uint32_t s = 0; s < 40; ++s) EXPECT_EQ((*h)[s].seq, s);
  // A range cutting inside blocks, in both chunks.
  h = r->history({.device_id = 20, .from_ns = kT0 + 5 * kSec, .to_ns = kT0 + 33 * kSec});
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 29u);
  EXPECT_EQ(h->front().seq, 5u);
  EXPECT_EQ(h->back().seq, 33u);
  // limit and newest_first across blocks and chunks.
  h = r->history({.device_id = 20,
                  .from_ns = kT0 + 5 * kSec,
                  .to_ns = kT0 + 33 * kSec,
                  .limit = 16,
                  .newest_first = true});
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 16u);
  for (uint32_t i = 0; i < 16; ++i) EXPECT_EQ((*h)[i].seq, 33 - i);
  h = r->history({.device_id = 20, .from_ns = kT0 + 7 * kSec, .limit = 6});
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 6u);
  EXPECT_EQ(h->front().seq, 7u);
  EXPECT_EQ(h->back().seq, 12u);
  auto n = r->count_device(20, kT0 + 5 * kSec, kT0 + 33 * kSec);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 29u);
  n = r->count_device(21, INT64_MIN, INT64_MAX);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 10u);
  auto l = r->latest(20);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(l->has_value());
  EXPECT_EQ((*l)->seq, 39u);
  auto page = r->latest_all(0, 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].device_id, 19u);
  EXPECT_EQ((*page)[0].seq, 39u);
  EXPECT_EQ((*page)[1].seq, 39u);
  auto c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 40u + 14u + 10u);
}

/// A brute-force model of the store: every stored report.
struct Model {
  std::vector<StoredReport> all;

  static bool older(const StoredReport& a, const StoredReport& b) {
    return a.device_time_ns != b.device_time_ns ? a.device_time_ns < b.device_time_ns
                                                : a.seq < b.seq;
  }
  std::vector<StoredReport> history(const HistoryQuery& q) const {
    std::vector<StoredReport> out;
    for (const auto& r : all) {
      if (r.device_id == q.device_id && r.device_time_ns >= q.from_ns &&
          r.device_time_ns <= q.to_ns)
        out.push_back(r);
    }
    std::sort(out.begin(), out.end(), older);
    if (q.newest_first) std::reverse(out.begin(), out.end());
    if (out.size() > q.limit) out.resize(q.limit);
    return out;
  }
  std::map<uint64_t, StoredReport> latest() const {
    std::map<uint64_t, StoredReport> out;
    for (const auto& r : all) {
      auto it = out.find(r.device_id);
      if (it == out.end() || older(it->second, r)) out[r.device_id] = r;
    }
    return out;
  }
};

void expect_same(const std::vector<StoredReport>& got, const std::vector<StoredReport>& want,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].device_id, want[i].device_id) << what << " #" << i;
    EXPECT_EQ(got[i].seq, want[i].seq) << what << " #" << i;
    EXPECT_EQ(got[i].device_time_ns, want[i].device_time_ns) << what << " #" << i;
    EXPECT_EQ(got[i].received_ns, want[i].received_ns) << what << " #" << i;
    EXPECT_EQ(got[i].raw_metrics, want[i].raw_metrics) << what << " #" << i;
  }
}

void check_against_model(StoreReader& r, const Model& m, std::mt19937_64& rng,
                         const std::vector<uint64_t>& devices, const std::string& stage) {
  for (int q = 0; q < 60; ++q) {
    HistoryQuery hq;
    hq.device_id = devices[rng() % devices.size()];
    if (q % 3 != 0) {
      int64_t a = kT0 + static_cast<int64_t>(rng() % 4000) * kSec / 10;
      int64_t b = kT0 + static_cast<int64_t>(rng() % 4000) * kSec / 10;
      hq.from_ns = std::min(a, b);
      hq.to_ns = std::max(a, b);
    }
    hq.limit = q % 4 == 0 ? 1000 : static_cast<uint32_t>(1 + rng() % 20);
    hq.newest_first = (q % 2) == 1;
    auto h = r.history(hq);
    ASSERT_TRUE(h.ok()) << h.error().message;
    expect_same(h.value(), m.history(hq),
                stage + " history dev " + std::to_string(hq.device_id) + " from " +
                    std::to_string(hq.from_ns) + " to " + std::to_string(hq.to_ns) + " limit " +
                    std::to_string(hq.limit) + (hq.newest_first ? " desc" : " asc"));
    auto n = r.count_device(hq.device_id, hq.from_ns, hq.to_ns);
    ASSERT_TRUE(n.ok());
    HistoryQuery all = hq;
    all.limit = UINT32_MAX;
    EXPECT_EQ(n.value(), m.history(all).size()) << stage;
  }
  auto want = m.latest();
  for (uint64_t d : devices) {
    auto l = r.latest(d);
    ASSERT_TRUE(l.ok());
    auto it = want.find(d);
    ASSERT_EQ(l->has_value(), it != want.end()) << stage;
    if (it != want.end()) {
      expect_same({**l}, {it->second}, stage + " latest " + std::to_string(d));
    }
  }
  std::vector<StoredReport> paged;
  uint64_t after = 0;
  for (;;) {
    auto page = r.latest_all(after, 7);
    ASSERT_TRUE(page.ok()) << page.error().message;
    if (page->empty()) break;
    for (auto& x : *page) paged.push_back(x);
    after = page->back().device_id;
  }
  std::vector<StoredReport> want_all;
  want_all.reserve(want.size());
  for (auto& [d, x] : want) want_all.push_back(x);  // device 0 is never used
  expect_same(paged, want_all, stage + " latest_all");
  auto c = r.counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, m.all.size()) << stage;
  EXPECT_EQ(c->devices, want.size()) << stage;
}

/// Writes 30 random batches, checking every query against the model along the way. With
/// `time_ordered`, device times grow from batch to batch (as from a live fleet), so sealed chunks
/// cover successive time ranges and history's chunk pruning is exercised; times still repeat at
/// batch edges, where only the seq orders two reports. Otherwise times are spread over the whole
/// range in every batch and every chunk overlaps every other.
void model_test(bool time_ordered) {
  TempDir tmp;
  auto o = options(tmp.path());
  o.block_reports = 5;
  o.chunk_reports = time_ordered ? 40 : 400;
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  auto r = open_reader(o.dir);
  ASSERT_TRUE(r);
  std::mt19937_64 rng(1234);
  std::vector<uint64_t> devices;
  devices.reserve(41);
  for (int i = 0; i < 40; ++i) devices.push_back(1 + rng() % 1000);
  devices.push_back(0x8000000000000000ull);  // sorts above every other id as unsigned
  devices.push_back(UINT64_MAX);
  std::map<uint64_t, uint32_t> next_seq;
  Model m;
  for (int batch = 0; batch < 30; ++batch) {
    std::vector<Spec> specs;
    size_t n = 1 + rng() % 60;
    for (size_t i = 0; i < n; ++i) {
      uint64_t d = devices[rng() % devices.size()];
      uint32_t s = next_seq[d]++;
      // Times out of order within a device (seqs only grow, so none of these is judged a
      // duplicate or a reboot).
      int64_t t = time_ordered ? kT0 + batch * 13 * kSec +
                                     static_cast<int64_t>(rng() % 4) * 6500 * kSec / 1000
                               : kT0 + static_cast<int64_t>(rng() % 4000) * kSec / 10 + s;
      specs.push_back({d, s, t, static_cast<double>(rng() % 1000)});
    }
    auto e = encode(specs);
    auto res = w->write(e.reports(), {}, false);
    ASSERT_TRUE(res.ok()) << res.error().message;
    for (size_t i = 0; i < n; ++i) {
      StoredReport sr;
      const core::Report& rep = (*e.batch)[static_cast<uint32_t>(i)];
      sr.device_id = rep.device_id;
      sr.seq = rep.seq;
      sr.tenant = rep.tenant;
      sr.device_time_ns = rep.device_time_ns;
      sr.received_ns = rep.received_ns;
      sr.protocol = rep.protocol;
      sr.raw_metrics.assign(rep.raw_metrics.begin(), rep.raw_metrics.end());
      m.all.push_back(std::move(sr));
    }
    if (batch % 7 == 6) check_against_model(*r, m, rng, devices, "batch " + std::to_string(batch));
  }
  EXPECT_GE(w->stats().chunks_sealed.load(), 2u);
  // Small commits: the open chunk's runs merge (time-ordered chunks fill before eight runs).
  if (!time_ordered) {
    EXPECT_GT(w->stats().runs_merged.load(), 0u);
  }
  check_against_model(*r, m, rng, devices, "final");
  ASSERT_TRUE(w->seal().ok());
  check_against_model(*r, m, rng, devices, "all sealed");
  w.reset();
  w = open_writer(o);
  ASSERT_TRUE(w);
  check_against_model(*r, m, rng, devices, "reopened");
}

TEST(StoreWriter, BlocksAndSealMergeMatchABruteForceModel) {
  model_test(false);
}

TEST(StoreWriter, TimeOrderedChunksMatchABruteForceModel) {
  model_test(true);
}

TEST(StoreWriter, BackgroundSealAndRetention) {
  TempDir tmp;
  // The store's wall clock, moved by the test: the chunks' ages do not depend on how long the
  // test takes to run. Read on the writer's seal thread too.
  auto now = std::make_shared<std::atomic<int64_t>>(kT0);
  auto o = options(tmp.path());
  o.wall_clock = [now] { return now->load(); };
  o.background_seal = true;
  o.chunk_reports = 10;
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  for (uint32_t s = 0; s < 5; ++s) {
    std::vector<Spec> specs;
    for (uint64_t d = 0; d < 10; ++d) specs.push_back({d, s, kT0 + s * kSec});
    auto e = encode(specs);
    ASSERT_TRUE(w->write(e.reports(), {}, false).ok());
  }
  w->wait_idle();
  EXPECT_EQ(w->stats().chunks_sealed.load(), 5u);
  EXPECT_EQ(w->stats().chunks_indexed.load(), 5u);
  auto r = open_reader(o.dir);
  auto c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 50u);
  EXPECT_EQ(c->chunks, 6u);
  w.reset();
  // Retention of one second: at once, every sealed chunk is younger and stays; two seconds
  // later they are older and go when the store reopens.
  o.retention = std::chrono::seconds(1);
  w = open_writer(o);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->stats().chunks_deleted.load(), 0u);
  w.reset();
  now->fetch_add(2 * kSec);
  w = open_writer(o);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->stats().chunks_deleted.load(), 5u);
  c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 0u);
  EXPECT_EQ(c->chunks, 1u);
  EXPECT_EQ(c->devices, 10u);  // the latest report of each device is kept
  auto l = r->latest(3);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(l->has_value());
  EXPECT_EQ((*l)->seq, 4u);
  EXPECT_FALSE(std::filesystem::exists(o.dir + "/" + chunk_file_name(1)));
}

TEST(StoreWriter, ReaderInAnotherConnectionSeesCommittedRowsWhileWriting) {
  TempDir tmp;
  auto o = options(tmp.path());
  o.background_seal = true;
  o.chunk_reports = 500;
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> committed{0};
  std::thread writer([&] {
    for (uint32_t s = 0; s < 40; ++s) {
      std::vector<Spec> specs;
      for (uint64_t d = 0; d < 100; ++d) specs.push_back({d, s, kT0 + s * kSec});
      auto e = encode(specs);
      auto res = w->write(e.reports(), {}, false);
      ASSERT_TRUE(res.ok());
      committed.fetch_add(res->written);
    }
    done = true;
  });
  auto r = open_reader(o.dir);
  uint64_t last = 0;
  while (!done.load()) {
    uint64_t before = committed.load();
    auto c = r->counts();
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_GE(c->reports, last);  // never goes backwards
    EXPECT_GE(c->reports, before);
    last = c->reports;
    auto h = r->history({.device_id = 7});
    ASSERT_TRUE(h.ok()) << h.error().message;
    for (size_t i = 0; i < h->size(); ++i) EXPECT_EQ((*h)[i].seq, i);  // no gaps, no duplicates
  }
  writer.join();
  w->wait_idle();
  auto c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 4000u);
}

TEST(StoreWriter, TinyCommitsMergeIntoFewRuns) {
  // 200 commits of one report each, as a trickle with a short commit interval makes: the open
  // chunk keeps a few runs, every report stays readable, and a reopened writer goes on merging.
  TempDir tmp;
  auto o = options(tmp.path());
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  Model m;
  std::vector<uint64_t> devices = {3, 9, 27, 81};
  auto commit = [&](uint32_t seq) {
    const uint64_t d = devices[seq % devices.size()];
    auto e = encode({{d, seq, kT0 + static_cast<int64_t>(seq) * kSec, static_cast<double>(seq)}});
    auto res = w->write(e.reports(), {}, false);
    ASSERT_TRUE(res.ok()) << res.error().message;
    StoredReport sr;
    sr.device_id = d;
    sr.seq = seq;
    sr.device_time_ns = kT0 + static_cast<int64_t>(seq) * kSec;
    m.all.push_back(sr);
  };
  for (uint32_t seq = 0; seq < 100; ++seq) commit(seq);
  // Twelve merges of eight single-report runs, and one of eight of those: runs of 64, 8 (x4)
  // and 1 (x4) are left.
  EXPECT_EQ(w->stats().runs_merged.load(), 13u * 8);
  w.reset();
  w = open_writer(o);
  ASSERT_TRUE(w);
  for (uint32_t seq = 100; seq < 200; ++seq) commit(seq);
  auto r = open_reader(o.dir);
  ASSERT_TRUE(r);
  auto c = r->counts();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->reports, 200u);
  for (uint64_t d : devices) {
    auto h = r->history({.device_id = d});
    ASSERT_TRUE(h.ok()) << h.error().message;
    auto want = m.history({.device_id = d});
    ASSERT_EQ(h->size(), want.size());
    for (size_t i = 0; i < h->size(); ++i) EXPECT_EQ((*h)[i].seq, want[i].seq) << d;
    auto l = r->latest(d);
    ASSERT_TRUE(l.ok());
    ASSERT_TRUE(l->has_value());
    EXPECT_EQ((*l)->seq, want.back().seq);
  }
}

TEST(DeviceFilter, NoFalseNegativesAndFewFalsePositives) {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> devices(4100);
  for (auto& d : devices) d = rng() % 500'000;
  std::sort(devices.begin(), devices.end());
  DeviceFilterBuilder b;
  b.reset(devices.size());
  for (uint64_t d : devices) b.add(d);
  const auto bytes = b.bytes();
  const std::vector<uint8_t> f(bytes.begin(), bytes.end());
  for (uint64_t d : devices) ASSERT_TRUE(filter_may_contain(f, d)) << d;
  int false_positives = 0;
  constexpr int kProbes = 100'000;
  for (int i = 0; i < kProbes; ++i) {
    const uint64_t d = 1'000'000 + rng() % 1'000'000;  // never added
    false_positives += filter_may_contain(f, d) ? 1 : 0;
  }
  EXPECT_LT(false_positives, kProbes / 100);  // 0.5 % measured
  EXPECT_GT(false_positives, 0);              // a Bloom filter, not a set: some must pass
  // The extremes of the id space, and a one-device filter.
  b.reset(1);
  b.add(UINT64_MAX);
  const auto one = b.bytes();
  EXPECT_TRUE(filter_may_contain(one, UINT64_MAX));
  // Bytes that are no filter of this version mean "search".
  EXPECT_TRUE(filter_may_contain({}, 5));
  std::vector<uint8_t> other(f);
  other[0] = 2;
  EXPECT_TRUE(filter_may_contain(other, 1'500'000));
  std::vector<uint8_t> torn(f.begin(), f.end() - 3);
  EXPECT_TRUE(filter_may_contain(torn, 1'500'000));
}

TEST(StoreWriter, RunsWithoutFiltersFromAnOlderVersionStayReadable) {
  // An open chunk written before runs had device filters: it has no run_filters table.
  // Readers search those runs as before; a writer reopening the chunk adds the table and
  // writes filters for new runs only.
  TempDir tmp;
  auto o = options(tmp.path());
  Model m;
  uint32_t seq = 0;
  auto commit = [&](StoreWriter& w) {
    std::vector<Spec> batch;
    for (uint64_t d = 1; d <= 40; ++d) {
      const int64_t t = kT0 + static_cast<int64_t>(seq) * kSec;
      batch.push_back({d * 1000, seq, t, static_cast<double>(seq)});
      StoredReport sr;
      sr.device_id = d * 1000;
      sr.seq = seq;
      sr.device_time_ns = t;
      m.all.push_back(sr);
      ++seq;
    }
    auto e = encode(batch);
    auto res = w.write(e.reports(), {}, false);
    ASSERT_TRUE(res.ok()) << res.error().message;
  };
  auto w = open_writer(o);
  ASSERT_TRUE(w);
  for (int i = 0; i < 3; ++i) commit(*w);
  w.reset();
  std::string chunk;
  for (const auto& e : std::filesystem::directory_iterator(o.dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("chunk-", 0) == 0 && name.size() > 3 && name.ends_with(".db") &&
        name.find("merged") == std::string::npos) {
      chunk = e.path().string();
    }
  }
  ASSERT_FALSE(chunk.empty());
  {
    auto db = Db::open(chunk, false);
    ASSERT_TRUE(db.ok()) << db.error().message;
    ASSERT_TRUE(db->exec("DROP TABLE run_filters").ok());
  }
  auto check = [&](StoreReader& r) {
    for (uint64_t d = 1; d <= 40; ++d) {
      auto h = r.history({.device_id = d * 1000});
      ASSERT_TRUE(h.ok()) << h.error().message;
      auto want = m.history({.device_id = d * 1000});
      ASSERT_EQ(h->size(), want.size()) << d;
      auto l = r.latest(d * 1000);
      ASSERT_TRUE(l.ok() && l->has_value()) << d;
      EXPECT_EQ((*l)->seq, want.back().seq);
      auto n = r.count_device(d * 1000, INT64_MIN, INT64_MAX);
      ASSERT_TRUE(n.ok());
      EXPECT_EQ(n.value(), want.size());
    }
    // A device in no run.
    auto none = r.latest(999);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
  };
  auto old_reader = open_reader(o.dir);
  ASSERT_TRUE(old_reader);
  check(*old_reader);
  w = open_writer(o);
  ASSERT_TRUE(w);
  for (int i = 0; i < 3; ++i) commit(*w);
  check(*old_reader);  // it saw the file without filters, and searches every run
  auto new_reader = open_reader(o.dir);
  ASSERT_TRUE(new_reader);
  check(*new_reader);
}

TEST(StoreReader, HistoryReadsEveryChunkThatTiesTheLimitEdge) {
  // Two sealed chunks whose whole time range is one instant: the second holds the newer report
  // (higher seq). Once the first chunk fills the limit, the second may not be skipped.
  TempDir tmp;
  auto w = open_writer(options(tmp.path()));
  ASSERT_TRUE(w);
  for (uint32_t seq = 1; seq <= 2; ++seq) {
    auto e = encode({{7, seq, kT0, static_cast<double>(seq)}});
    ASSERT_TRUE(w->write(e.reports(), {}, false).ok());
    ASSERT_TRUE(w->seal().ok());
  }
  auto r = open_reader(options(tmp.path()).dir);
  ASSERT_TRUE(r);
  ASSERT_EQ(w->stats().chunks_sealed.load(), 2u);
  auto newest = r->history(HistoryQuery{.device_id = 7, .limit = 1, .newest_first = true});
  ASSERT_TRUE(newest.ok()) << newest.error().message;
  ASSERT_EQ(newest->size(), 1u);
  EXPECT_EQ(newest->front().seq, 2u);
  auto oldest = r->history(HistoryQuery{.device_id = 7, .limit = 1});
  ASSERT_TRUE(oldest.ok()) << oldest.error().message;
  ASSERT_EQ(oldest->size(), 1u);
  EXPECT_EQ(oldest->front().seq, 1u);
}

}  // namespace
}  // namespace tianhe::sinks::store
