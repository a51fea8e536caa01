#include "sinks/store/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "sinks/store/seq_window_table.h"
#include "sinks/store/store_test_util.h"
#include "sinks/store/store_writer.h"

namespace tianhe::sinks::store {
namespace {

using testing::encode;
using testing::Spec;

constexpr int64_t kT0 = 1'700'000'000'000'000'000;
constexpr int64_t kSec = 1'000'000'000;

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

TEST(StoreWriter, BackgroundSealAndRetention) {
  TempDir tmp;
  auto o = options(tmp.path());
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
  // Retention of one second: wait until the sealed chunks are older, then reopen.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  o.retention = std::chrono::seconds(1);
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

}  // namespace
}  // namespace tianhe::sinks::store
