// database: the catalog plus the index derived from it. Settings written once and
// enforced, the single-writer lock, commits reaching the index, and readers getting an
// index that agrees with the catalog whether vectors.index is current, stale, missing or
// damaged.
#include "database/database.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "embed/pooling.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace imgsearch;
using database::Database;
using database::Settings;

namespace {

constexpr int kDim = 8;

// ctest runs test processes side by side on a 2-core machine: OpenMP teams spinning
// against each other made FAISS's k-means 30x slower than one thread. One thread each.
const bool kOneThread = (index::set_threads(1), true);

using test_util::TempDir;

Settings settings(const std::string& spec = "Flat", index::Metric metric = index::Metric::Cosine) {
  Settings s;
  s.representation.model = "efficientnet-lite0";
  s.representation.layer = "features.7";
  s.representation.pooling = embed::Pooling::Avg;
  s.preprocessing = "size=224 resize_short_side=256 layout=NCHW color=RGB mean=127,127,127 std=128,128,128";
  s.metric = metric;
  s.index_spec = spec;
  s.dim = kDim;
  return s;
}

std::vector<float> unit_vector(std::mt19937& rng) {
  std::normal_distribution<float> g;
  std::vector<float> v(kDim);
  double s = 0;
  for (auto& x : v) {
    x = g(rng);
    s += double(x) * x;
  }
  for (auto& x : v) x = float(x / std::sqrt(s));
  return v;
}

catalog::NewImage image(const std::string& key, std::vector<float> v) {
  catalog::NewImage n;
  n.record.path = key;
  n.record.key = key;
  n.record.size = 1;
  n.record.width = 2;
  n.record.height = 3;
  n.record.content_hash = "h" + key;
  n.vector = std::move(v);
  return n;
}

std::vector<catalog::NewImage> images(std::mt19937& rng, const std::string& prefix, int n) {
  std::vector<catalog::NewImage> out;
  for (int i = 0; i < n; ++i) out.push_back(image(prefix + std::to_string(i), unit_vector(rng)));
  return out;
}

std::unique_ptr<Database> writer(const fs::path& dir, const Settings& s = settings()) {
  auto db = Database::open_for_writing(dir, s);
  EXPECT_TRUE(db.ok()) << db.error();
  return db.ok() ? std::move(*db) : nullptr;
}

std::unique_ptr<Database> reader(const fs::path& dir) {
  auto db = Database::open_for_reading(dir);
  EXPECT_TRUE(db.ok()) << db.error();
  return db.ok() ? std::move(*db) : nullptr;
}

std::vector<int64_t> commit(Database& db, const std::vector<catalog::NewImage>& adds,
                            const std::vector<int64_t>& removes = {}) {
  auto r = db.commit(adds, removes);
  EXPECT_TRUE(r.ok()) << r.error();
  return r.ok() ? *r : std::vector<int64_t>{};
}

// The index agrees with the catalog exactly: same size, and every image in the catalog is
// found at rank 1 by its own stored vector (distinct random unit vectors, cosine).
void expect_index_matches_catalog(Database& db, const std::string& where) {
  SCOPED_TRACE(where);
  auto idx = db.index();
  ASSERT_TRUE(idx.ok()) << idx.error();
  index::VectorIndex& ix = **idx;
  auto& cat = db.catalog();
  EXPECT_EQ(ix.dim(), kDim);
  EXPECT_EQ(ix.size(), cat.count());
  std::vector<int64_t> ids;
  std::vector<float> vecs;
  ASSERT_TRUE(cat.for_each_vector([&](int64_t id, std::span<const float> v) {
                   ids.push_back(id);
                   vecs.insert(vecs.end(), v.begin(), v.end());
                 })
                  .ok());
  ASSERT_EQ(int64_t(ids.size()), cat.count());
  if (ids.empty()) return;
  const int k = 2;
  std::vector<float> scores(ids.size() * k);
  std::vector<int64_t> got(ids.size() * k);
  ix.search(int64_t(ids.size()), vecs.data(), k, scores.data(), got.data());
  for (size_t i = 0; i < ids.size(); ++i) {
    EXPECT_EQ(got[i * k], ids[i]) << "image " << ids[i] << " not found by its own vector";
    if (db.settings().metric == index::Metric::Cosine) {
      EXPECT_NEAR(scores[i * k], 1.0f, 1e-5);
    }
  }
}

// Ids the index returns for `v` (all of them, best first).
std::vector<int64_t> search_all(Database& db, const std::vector<float>& v) {
  auto idx = db.index();
  EXPECT_TRUE(idx.ok()) << idx.error();
  if (!idx.ok()) return {};
  const int k = int(std::max<int64_t>((*idx)->size(), 1));
  std::vector<float> s(static_cast<size_t>(k));
  std::vector<int64_t> ids(static_cast<size_t>(k));
  (*idx)->search(1, v.data(), k, s.data(), ids.data());
  return ids;
}

std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

void write_all(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

}  // namespace

TEST(Database, OpenForWritingCreatesSettings) {
  TempDir tmp;
  const fs::path dir = tmp / "db";
  {
    auto db = writer(dir);
    ASSERT_TRUE(db);
    EXPECT_EQ(db->dir(), dir);
    EXPECT_EQ(db->index_path(), dir / "vectors.index");
    EXPECT_TRUE(fs::exists(catalog::Catalog::file_in(dir)));
    const auto& s = db->settings();
    EXPECT_EQ(s.representation.model, "efficientnet-lite0");
    EXPECT_EQ(s.representation.layer, "features.7");
    EXPECT_EQ(s.representation.pooling, embed::Pooling::Avg);
    EXPECT_TRUE(s.representation.normalize);
    EXPECT_EQ(s.metric, index::Metric::Cosine);
    EXPECT_EQ(s.index_spec, "Flat");
    EXPECT_EQ(s.dim, kDim);
    auto& c = db->catalog();
    EXPECT_EQ(c.get_meta("model"), "efficientnet-lite0");
    EXPECT_EQ(c.get_meta("layer"), "features.7");
    EXPECT_EQ(c.get_meta("pooling"), embed::pooling_name(embed::Pooling::Avg));
    EXPECT_EQ(c.get_meta("metric"), "cosine");
    EXPECT_EQ(c.get_meta("index_spec"), "Flat");
    EXPECT_EQ(c.get_meta("dim"), std::to_string(kDim));
    // An empty database has an empty index.
    auto idx = db->index();
    ASSERT_TRUE(idx.ok()) << idx.error();
    EXPECT_EQ((*idx)->size(), 0);
  }
  // Same settings again: fine, and the reader sees what was written.
  ASSERT_TRUE(writer(dir));
  auto r = reader(dir);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->settings().representation.model, "efficientnet-lite0");
  EXPECT_EQ(r->settings().representation.layer, "features.7");
  EXPECT_EQ(r->settings().metric, index::Metric::Cosine);
  EXPECT_EQ(r->settings().dim, kDim);
  EXPECT_EQ(r->settings().index_spec, "Flat");
}

TEST(Database, ReadingMissingDatabaseFails) {
  TempDir tmp;
  auto r = Database::open_for_reading(tmp / "nothing");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("no imgsearch database"), std::string::npos) << r.error();
}

TEST(Database, SecondWriterIsRefusedWhileFirstIsAlive) {
  TempDir tmp;
  auto first = writer(tmp.path());
  ASSERT_TRUE(first);
  for (int attempt = 0; attempt < 2; ++attempt) {  // a refused open must not steal the lock either
    auto second = Database::open_for_writing(tmp.path(), settings());
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.error().find("being written by another imgsearch process"), std::string::npos) << second.error();
    EXPECT_NE(second.error().find(tmp.path().string()), std::string::npos) << second.error();
  }
  // Readers are not blocked by the writer.
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  // The writer still works, and once it is gone another can open.
  std::mt19937 rng(1);
  commit(*first, images(rng, "/a/", 3));
  first.reset();
  auto next = writer(tmp.path());
  ASSERT_TRUE(next);
  EXPECT_EQ(next->catalog().count(), 3);
}

TEST(Database, DifferentSettingsAreRefusedNamingBoth) {
  TempDir tmp;
  ASSERT_TRUE(writer(tmp.path()));
  struct Case {
    Settings s;
    const char* have;
    const char* want;
  };
  std::vector<Case> cases;
  {
    Settings s = settings();
    s.representation.model = "mobilenet-v3";
    cases.push_back({s, "efficientnet-lite0", "mobilenet-v3"});
  }
  {
    Settings s = settings();
    s.representation.layer = "features.5";
    cases.push_back({s, "features.7", "features.5"});
  }
  {
    Settings s = settings();
    s.dim = 16;
    cases.push_back({s, "8", "16"});
  }
  {
    Settings s = settings();
    s.metric = index::Metric::L2;
    cases.push_back({s, "cosine", "l2"});
  }
  {
    Settings s = settings();
    s.representation.pooling = embed::Pooling::Max;
    cases.push_back({s, "avg", "max"});
  }
  {
    Settings s = settings();
    s.preprocessing = "size=240 resize_short_side=274 layout=NCHW color=RGB mean=127,127,127 std=128,128,128";
    cases.push_back({s, "size=224 resize_short_side=256", "size=240 resize_short_side=274"});
  }
  for (const auto& c : cases) {
    auto db = Database::open_for_writing(tmp.path(), c.s);
    ASSERT_FALSE(db.ok()) << "accepted " << c.want;
    EXPECT_NE(db.error().find(c.have), std::string::npos) << db.error();
    EXPECT_NE(db.error().find(c.want), std::string::npos) << db.error();
    EXPECT_NE(db.error().find(tmp.path().string()), std::string::npos) << db.error();
  }
  // Nothing was changed by the refusals.
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->settings().representation.model, "efficientnet-lite0");
  EXPECT_EQ(r->settings().representation.layer, "features.7");
  EXPECT_EQ(r->settings().dim, kDim);
  EXPECT_EQ(r->settings().metric, index::Metric::Cosine);
  ASSERT_TRUE(writer(tmp.path()));
}

TEST(Database, CommitReachesTheIndex) {
  TempDir tmp;
  auto db = writer(tmp.path());
  ASSERT_TRUE(db);
  std::mt19937 rng(2);
  const auto adds = images(rng, "/p/", 100);
  const auto ids = commit(*db, adds);
  ASSERT_EQ(ids.size(), 100u);
  expect_index_matches_catalog(*db, "after first commit");
  for (size_t i = 0; i < adds.size(); i += 17) EXPECT_EQ(search_all(*db, adds[i].vector)[0], ids[i]);

  // Replace one image's vector and remove another, in one commit.
  const auto moved = unit_vector(rng);
  const auto again = commit(*db, {image("/p/5", moved)}, {ids[7]});
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0], ids[5]);
  expect_index_matches_catalog(*db, "after replace + remove");
  const auto for_old = search_all(*db, adds[5].vector);
  EXPECT_NE(for_old[0], ids[5]);  // its old vector is gone from the index
  EXPECT_EQ(search_all(*db, moved)[0], ids[5]);
  const auto for_removed = search_all(*db, adds[7].vector);
  EXPECT_EQ(std::count(for_removed.begin(), for_removed.end(), ids[7]), 0);
  EXPECT_EQ(int64_t(for_removed.size()), 99);
}

TEST(Database, ReaderLoadsTheSavedIndex) {
  TempDir tmp;
  std::mt19937 rng(3);
  {
    auto db = writer(tmp.path());
    ASSERT_TRUE(db);
    commit(*db, images(rng, "/p/", 50));
    ASSERT_TRUE(db->save_index().ok());
    uint64_t tag = 0;
    auto file = index::load_index(db->index_path(), &tag);
    ASSERT_TRUE(file.ok()) << file.error();
    EXPECT_EQ(int64_t(tag), db->catalog().change_seq());
    EXPECT_EQ((*file)->size(), 50);
    EXPECT_EQ((*file)->spec(), "Flat");
    EXPECT_EQ((*file)->metric(), index::Metric::Cosine);
  }
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  expect_index_matches_catalog(*r, "reader of a saved index");
}

// A current file is used as is (not rebuilt): an index file carrying the catalog's
// change_seq but different contents shows through.
TEST(Database, ReaderUsesACurrentIndexFileAsIs) {
  TempDir tmp;
  std::mt19937 rng(4);
  int64_t seq = 0;
  {
    auto db = writer(tmp.path());
    ASSERT_TRUE(db);
    commit(*db, images(rng, "/p/", 20));
    ASSERT_TRUE(db->save_index().ok());
    seq = db->catalog().change_seq();
  }
  auto marker = index::make_index("Flat", kDim, index::Metric::Cosine);
  ASSERT_TRUE(marker.ok());
  const auto v = unit_vector(rng);
  const int64_t id = 777777;
  ASSERT_TRUE((*marker)->add(1, v.data(), &id).ok());
  ASSERT_TRUE((*marker)->save(tmp / "vectors.index", uint64_t(seq)).ok());
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  auto idx = r->index();
  ASSERT_TRUE(idx.ok()) << idx.error();
  EXPECT_EQ((*idx)->size(), 1);
  EXPECT_EQ(search_all(*r, v)[0], id);
  // The same file with another tag is stale: rebuilt from the catalog.
  ASSERT_TRUE((*marker)->save(tmp / "vectors.index", uint64_t(seq - 1)).ok());
  auto r2 = reader(tmp.path());
  ASSERT_TRUE(r2);
  expect_index_matches_catalog(*r2, "stale marker");
}

// Two databases with the same history (same number of commits, ids given in another
// order): the index file of one copied into the other must not pass for current. This
// is what happened when a test process replaced a database another one was serving.
TEST(Database, IndexFileOfAnotherDatabaseIsNotUsed) {
  TempDir tmp;
  std::mt19937 rng(11);
  auto adds = images(rng, "/p/", 12);
  auto reversed = adds;
  std::reverse(reversed.begin(), reversed.end());
  for (const auto& [dir, batch] : {std::pair{tmp / "a", adds}, std::pair{tmp / "b", reversed}}) {
    auto db = writer(dir);
    ASSERT_TRUE(db);
    commit(*db, batch);
    ASSERT_TRUE(db->save_index().ok());
  }
  EXPECT_NE(reader(tmp / "a")->catalog().change_seq(), reader(tmp / "b")->catalog().change_seq());
  fs::copy_file(tmp / "b" / "vectors.index", tmp / "a" / "vectors.index", fs::copy_options::overwrite_existing);
  auto r = reader(tmp / "a");
  ASSERT_TRUE(r);
  expect_index_matches_catalog(*r, "index file copied from another database");
}

TEST(Database, StaleIndexIsRebuiltToMatchCatalog) {
  TempDir tmp;
  std::mt19937 rng(5);
  {
    auto db = writer(tmp.path());
    ASSERT_TRUE(db);
    const auto first = images(rng, "/p/", 60);
    const auto ids = commit(*db, first);
    ASSERT_TRUE(db->save_index().ok());
    // Further commits, not saved: adds, replacements and removals.
    commit(*db, images(rng, "/q/", 30));
    commit(*db, {image("/p/1", unit_vector(rng)), image("/p/2", unit_vector(rng))}, {ids[10], ids[11], ids[12]});
    ASSERT_TRUE(db->rename(ids[20], "/r/20", "/r/20", 9).ok());
    expect_index_matches_catalog(*db, "writer");
  }
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->catalog().count(), 60 + 30 - 3);
  expect_index_matches_catalog(*r, "reader of a stale index");
}

TEST(Database, ReaderSeesCommitsMadeAfterItOpened) {
  TempDir tmp;
  std::mt19937 rng(6);
  auto w = writer(tmp.path());
  ASSERT_TRUE(w);
  const auto ids = commit(*w, images(rng, "/p/", 10));
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  expect_index_matches_catalog(*r, "before");
  const auto late = images(rng, "/late/", 5);
  const auto late_ids = commit(*w, late, {ids[0]});
  expect_index_matches_catalog(*r, "after the writer's commit");
  EXPECT_EQ(search_all(*r, late[3].vector)[0], late_ids[3]);
  ASSERT_TRUE(w->save_index().ok());
  expect_index_matches_catalog(*r, "after the writer's save");
}

TEST(Database, MissingOrDamagedIndexFileIsRebuilt) {
  TempDir tmp;
  std::mt19937 rng(7);
  {
    auto db = writer(tmp.path());
    ASSERT_TRUE(db);
    commit(*db, images(rng, "/p/", 40));
    ASSERT_TRUE(db->save_index().ok());
  }
  const fs::path file = tmp / "vectors.index";
  const auto good = read_all(file);
  ASSERT_GT(good.size(), 100u);
  std::mt19937 junk_rng(8);
  std::vector<uint8_t> junk(4096);
  for (auto& b : junk) b = uint8_t(junk_rng());

  struct Case {
    const char* what;
    std::vector<uint8_t> bytes;  // empty vector + remove: deleted
    bool remove = false;
  };
  std::vector<Case> cases;
  cases.push_back({"deleted", {}, true});
  cases.push_back({"zero bytes", {}});
  cases.push_back({"random bytes", junk});
  cases.push_back({"truncated", std::vector<uint8_t>(good.begin(), good.begin() + long(good.size() / 2))});
  cases.push_back({"header only", std::vector<uint8_t>(good.begin(), good.begin() + 40)});
  auto flip = [&](size_t at) {
    auto b = good;
    b[at] ^= 0x5A;
    return b;
  };
  cases.push_back({"version byte flipped", flip(8)});
  cases.push_back({"payload byte flipped", flip(good.size() - 5)});
  cases.push_back({"payload byte flipped early", flip(64)});  // in FAISS's ntotal field
  for (const auto& c : cases) {
    if (c.remove) {
      fs::remove(file);
    } else {
      write_all(file, c.bytes);
    }
    auto r = reader(tmp.path());
    ASSERT_TRUE(r) << c.what;
    expect_index_matches_catalog(*r, c.what);
  }
  // A writer also recovers, and its save puts a good file back.
  write_all(file, junk);
  auto db = writer(tmp.path());
  ASSERT_TRUE(db);
  expect_index_matches_catalog(*db, "writer over a damaged file");
  ASSERT_TRUE(db->save_index().ok());
  EXPECT_TRUE(index::load_index(file).ok());
}

// An approximate kind that cannot remove vectors in place (HNSW): commits that add,
// replace and remove still keep the index in agreement with the catalog.
TEST(Database, HnswCommitsKeepIndexInAgreement) {
  TempDir tmp;
  std::mt19937 rng(9);
  auto db = writer(tmp.path(), settings("HNSW32"));
  ASSERT_TRUE(db);
  const auto ids = commit(*db, images(rng, "/p/", 40));
  ASSERT_EQ(ids.size(), 40u);
  commit(*db, images(rng, "/q/", 10));
  expect_index_matches_catalog(*db, "after adds");
  commit(*db, {image("/p/3", unit_vector(rng))}, {ids[4]});
  expect_index_matches_catalog(*db, "after replace + remove");
  ASSERT_TRUE(db->save_index().ok());
  commit(*db, images(rng, "/r/", 5));
  db.reset();
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  expect_index_matches_catalog(*r, "reader");
}

// A kind that needs training (IVF) is trained from the catalog's vectors, all of them:
// small first commits (an ingest's batches) neither fail for want of training points nor
// leave it trained on the first batch only.
TEST(Database, IvfIsTrainedFromTheCatalog) {
  TempDir tmp;
  std::mt19937 rng(10);
  auto db = writer(tmp.path(), settings("IVF16,Flat", index::Metric::L2));
  ASSERT_TRUE(db);
  for (int batch = 0; batch < 3; ++batch) commit(*db, images(rng, "/b" + std::to_string(batch) + "/", 5));
  const auto ids = commit(*db, images(rng, "/p/", 640));  // FAISS wants >= 39 points per list
  ASSERT_EQ(ids.size(), 640u);
  expect_index_matches_catalog(*db, "after training");
  commit(*db, images(rng, "/q/", 20), {ids[0], ids[1]});
  expect_index_matches_catalog(*db, "after more commits");
  ASSERT_TRUE(db->save_index().ok());
  db.reset();
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  expect_index_matches_catalog(*r, "reader");
}

TEST(Database, CommitRefusesVectorsOfTheWrongDimension) {
  TempDir tmp;
  std::mt19937 rng(11);
  auto db = writer(tmp.path());
  ASSERT_TRUE(db);
  commit(*db, images(rng, "/p/", 5));
  const int64_t seq = db->catalog().change_seq();
  auto bad = images(rng, "/q/", 3);
  bad[1].vector.resize(kDim - 3);
  auto r = db->commit(bad, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("/q/1"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find(std::to_string(kDim)), std::string::npos) << r.error();
  // Nothing of the batch was committed.
  EXPECT_EQ(db->catalog().count(), 5);
  EXPECT_EQ(db->catalog().change_seq(), seq);
  expect_index_matches_catalog(*db, "after the refused commit");
}

// ---------------------------------------------------------------------------------------
// Index kinds over the life of a database: `auto`, training, deletions, rebuilds.

namespace {

// For approximate kinds: the index holds exactly the catalog's images (size, and no
// id it returns is unknown or removed), and nearly every image is found at rank 1 by
// its own vector (all of them for kinds that keep exact vectors and probe enough).
void expect_index_agrees(Database& db, double min_self, const std::string& where) {
  SCOPED_TRACE(where);
  auto idx = db.index();
  ASSERT_TRUE(idx.ok()) << idx.error();
  index::VectorIndex& ix = **idx;
  EXPECT_EQ(ix.size(), db.catalog().count());
  std::vector<int64_t> ids;
  std::vector<float> vecs;
  ASSERT_TRUE(db.catalog()
                  .for_each_vector([&](int64_t id, std::span<const float> v) {
                    ids.push_back(id);
                    vecs.insert(vecs.end(), v.begin(), v.end());
                  })
                  .ok());
  if (ids.empty()) return;
  const std::set<int64_t> known(ids.begin(), ids.end());
  const int k = 3;
  std::vector<float> scores(ids.size() * k);
  std::vector<int64_t> got(ids.size() * k);
  ix.search(int64_t(ids.size()), vecs.data(), k, scores.data(), got.data());
  size_t self = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    self += got[i * k] == ids[i];
    for (int r = 0; r < k; ++r)
      if (got[i * k + size_t(r)] >= 0) {
        EXPECT_EQ(known.count(got[i * k + size_t(r)]), 1u) << "unknown or removed id " << got[i * k + size_t(r)];
      }
  }
  EXPECT_GE(double(self), min_self * double(ids.size()));
}

// Commits n random unit vectors under `prefix` in batches (as an ingest would).
std::vector<int64_t> fill(Database& db, std::mt19937& rng, const std::string& prefix, int n, int batch = 2000) {
  std::vector<int64_t> all;
  for (int start = 0; start < n; start += batch) {
    std::vector<catalog::NewImage> adds;
    for (int i = start; i < std::min(n, start + batch); ++i)
      adds.push_back(image(prefix + std::to_string(i), unit_vector(rng)));
    const auto ids = commit(db, adds);
    all.insert(all.end(), ids.begin(), ids.end());
  }
  return all;
}

const index::BuildInfo& info_of(Database& db) {
  auto idx = db.index();
  EXPECT_TRUE(idx.ok()) << idx.error();
  return (*idx)->build_info();
}

std::string kind_of(Database& db) {
  auto idx = db.index();
  EXPECT_TRUE(idx.ok()) << idx.error();
  return idx.ok() ? (*idx)->spec() : "";
}

}  // namespace

TEST(DatabaseIndex, NewDatabaseDefaultsToAutoAndKeepsBudget) {
  TempDir tmp;
  Settings s = settings("");
  s.memory_budget = uint64_t(3) << 30;
  {
    auto db = writer(tmp.path(), s);
    ASSERT_TRUE(db);
    EXPECT_EQ(db->settings().index_spec, "auto");
    EXPECT_EQ(db->settings().memory_budget, uint64_t(3) << 30);
  }
  {
    auto db = writer(tmp.path(), settings(""));  // no spec, no budget: both kept
    ASSERT_TRUE(db);
    EXPECT_EQ(db->settings().index_spec, "auto");
    EXPECT_EQ(db->settings().memory_budget, uint64_t(3) << 30);
  }
  auto bad = Database::open_for_writing(tmp.path(), settings("IVF,Nonsense"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("invalid index spec"), std::string::npos) << bad.error();
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->settings().index_spec, "auto");
}

// `auto` stays exact while small, becomes IVF past kExactBelow vectors, and compressed
// IVF-PQ when the budget is cut; the file records what was asked and what was built.
TEST(DatabaseIndex, AutoFollowsTheCollectionAndTheBudget) {
  TempDir tmp;
  std::mt19937 rng(40);
  Settings s = settings("auto");
  s.memory_budget = uint64_t(1) << 30;
  {
    auto db = writer(tmp.path(), s);
    ASSERT_TRUE(db);
    fill(*db, rng, "/a/", 50);
    ASSERT_TRUE(db->save_index().ok());
  }
  {
    auto r = reader(tmp.path());
    ASSERT_TRUE(r);
    EXPECT_EQ(kind_of(*r), "Flat");
    const auto& bi = info_of(*r);
    EXPECT_EQ(bi.requested, "auto");
    EXPECT_TRUE(bi.fallback.empty()) << bi.fallback;
    EXPECT_EQ(bi.built_with, 50);
    EXPECT_GT(bi.built_at, 1600000000);
    EXPECT_EQ(bi.memory_budget, uint64_t(1) << 30);
    expect_index_matches_catalog(*r, "auto small");
  }
  {
    auto db = writer(tmp.path(), s);
    ASSERT_TRUE(db);
    fill(*db, rng, "/b/", 11950);  // 12,000 in all
    ASSERT_TRUE(db->save_index().ok());
    EXPECT_EQ(kind_of(*db), "IVF256,Flat");
    EXPECT_GE(info_of(*db).tuned_recall, 0.95);
  }
  {
    auto r = reader(tmp.path());
    ASSERT_TRUE(r);
    EXPECT_EQ(kind_of(*r), "IVF256,Flat");
    EXPECT_EQ(info_of(*r).built_with, 12000);
    expect_index_agrees(*r, 0.99, "auto IVF");
  }
  {
    Settings small = s;
    small.memory_budget = uint64_t(256) << 10;  // full vectors would need ~470 KiB
    auto db = writer(tmp.path(), small);
    ASSERT_TRUE(db);
    ASSERT_TRUE(db->save_index().ok());
    EXPECT_EQ(kind_of(*db), "IVF256,PQ8");
    const auto& bi = info_of(*db);
    EXPECT_EQ(bi.memory_budget, uint64_t(256) << 10);
    EXPECT_GT(bi.rerank, 0);           // lossy: searches re-rank by default
    EXPECT_GE(bi.tuned_recall, 0.95);  // of the candidates, as re-ranking recovers them
  }
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  EXPECT_EQ(kind_of(*r), "IVF256,PQ8");
  expect_index_agrees(*r, 0.5, "auto PQ");
}

// A kind that trains waits, with exact search, until the collection can train it; then it
// is trained on a sample and filled with everything; it is retrained once the collection
// has outgrown the sample.
TEST(DatabaseIndex, TrainedKindsWaitThenTrainThenRetrain) {
  TempDir tmp;
  std::mt19937 rng(41);
  auto db = writer(tmp.path(), settings("IVF16,PQ4x4", index::Metric::L2));  // needs 39 x 16 = 624
  ASSERT_TRUE(db);
  fill(*db, rng, "/a/", 300);
  ASSERT_TRUE(db->save_index().ok());
  EXPECT_EQ(kind_of(*db), "Flat");
  EXPECT_NE(info_of(*db).fallback.find("needs 624 vectors"), std::string::npos) << info_of(*db).fallback;
  expect_index_matches_catalog(*db, "waiting: exact");
  {
    auto r = reader(tmp.path());
    ASSERT_TRUE(r);
    EXPECT_EQ(kind_of(*r), "Flat");
    EXPECT_FALSE(info_of(*r).fallback.empty());
  }
  fill(*db, rng, "/b/", 400);  // 700
  ASSERT_TRUE(db->save_index().ok());
  EXPECT_EQ(kind_of(*db), "IVF16,PQ4x4");
  EXPECT_EQ(info_of(*db).trained_on, 700);
  EXPECT_TRUE(info_of(*db).fallback.empty());
  expect_index_agrees(*db, 0.3, "trained");
  fill(*db, rng, "/c/", 1000);  // 1700: the ideal sample (4096) has grown past 2 x 700
  ASSERT_TRUE(db->save_index().ok());
  EXPECT_EQ(info_of(*db).trained_on, 1700);
  EXPECT_EQ(info_of(*db).built_with, 1700);
  fill(*db, rng, "/d/", 100);  // not enough growth to retrain: added in place
  ASSERT_TRUE(db->save_index().ok());
  EXPECT_EQ(info_of(*db).trained_on, 1700);
  EXPECT_EQ(info_of(*db).built_with, 1700);
  db.reset();
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  EXPECT_EQ(kind_of(*r), "IVF16,PQ4x4");
  EXPECT_EQ(r->index().value()->size(), 1800);
  expect_index_agrees(*r, 0.3, "reader");
}

// Removals and replacements reach every kind without a rebuild (in place, or as HNSW
// tombstones), in the writer and in the saved file.
TEST(DatabaseIndex, DeletionsAndUpdatesWorkForEveryKind) {
  for (const char* spec : {"Flat", "HNSW32", "IVF16,Flat", "SQ8", "PCA8,IVF16,Flat", "IVF16,PQ4x4"}) {
    SCOPED_TRACE(spec);
    TempDir tmp;
    std::mt19937 rng(42);
    const bool exact_vectors = std::string(spec) != "SQ8" && std::string(spec) != "IVF16,PQ4x4";
    auto db = writer(tmp.path(), settings(spec));
    ASSERT_TRUE(db);
    const auto ids = fill(*db, rng, "/p/", 800, 400);
    ASSERT_TRUE(db->save_index().ok());
    ASSERT_EQ(kind_of(*db), spec);
    const int64_t built_at = info_of(*db).built_at;
    const double min_self = exact_vectors ? 0.99 : 0.3;

    std::vector<int64_t> removed(ids.begin() + 100, ids.begin() + 110);
    std::vector<catalog::NewImage> replaced;
    for (int i = 0; i < 5; ++i) replaced.push_back(image("/p/" + std::to_string(i), unit_vector(rng)));
    const auto same = commit(*db, replaced, removed);
    ASSERT_EQ(same.size(), 5u);
    EXPECT_EQ(same[0], ids[0]);     // a replaced image keeps its id
    EXPECT_EQ(kind_of(*db), spec);  // updated in place, not rebuilt
    EXPECT_EQ(info_of(*db).built_at, built_at);
    if (std::string(spec) == "HNSW32") {
      EXPECT_EQ(db->index().value()->tombstones(), 15);
    }
    expect_index_agrees(*db, min_self, "writer after deletions");
    for (int64_t gone : removed) {
      const auto all = search_all(*db, unit_vector(rng));
      EXPECT_EQ(std::count(all.begin(), all.end(), gone), 0);
    }
    if (exact_vectors) {
      EXPECT_EQ(search_all(*db, replaced[3].vector)[0], ids[3]);
    }
    ASSERT_TRUE(db->save_index().ok());
    db.reset();
    auto r = reader(tmp.path());
    ASSERT_TRUE(r);
    EXPECT_EQ(kind_of(*r), spec);
    EXPECT_TRUE(info_of(*r).fallback.empty());
    EXPECT_EQ(r->index().value()->size(), 790);
    expect_index_agrees(*r, min_self, "reader after deletions");
  }
}

// HNSW tombstones past a quarter of the live vectors are compacted by a rebuild.
TEST(DatabaseIndex, HnswTombstonesAreCompacted) {
  TempDir tmp;
  std::mt19937 rng(43);
  auto db = writer(tmp.path(), settings("HNSW16"));
  ASSERT_TRUE(db);
  const auto ids = fill(*db, rng, "/p/", 400);
  ASSERT_TRUE(db->save_index().ok());
  commit(*db, {}, std::vector<int64_t>(ids.begin(), ids.begin() + 50));
  ASSERT_TRUE(db->save_index().ok());
  EXPECT_EQ(db->index().value()->tombstones(), 50);  // 50 of 350: kept
  commit(*db, {}, std::vector<int64_t>(ids.begin() + 50, ids.begin() + 100));
  EXPECT_EQ(db->index().value()->tombstones(), 100);
  ASSERT_TRUE(db->save_index().ok());  // 100 of 300: rebuilt
  EXPECT_EQ(db->index().value()->tombstones(), 0);
  EXPECT_EQ(db->index().value()->size(), 300);
  expect_index_agrees(*db, 0.99, "compacted");
}

// The kind can change on an existing database: the next save rebuilds it.
TEST(DatabaseIndex, ChangingTheKindRebuilds) {
  TempDir tmp;
  std::mt19937 rng(44);
  {
    auto db = writer(tmp.path(), settings("Flat"));
    ASSERT_TRUE(db);
    fill(*db, rng, "/p/", 300);
    ASSERT_TRUE(db->save_index().ok());
  }
  {
    auto db = writer(tmp.path(), settings("HNSW16"));
    ASSERT_TRUE(db);
    EXPECT_EQ(db->settings().index_spec, "HNSW16");
    ASSERT_TRUE(db->save_index().ok());
  }
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->settings().index_spec, "HNSW16");
  EXPECT_EQ(kind_of(*r), "HNSW16");
  expect_index_agrees(*r, 0.99, "after the change");
}

// A reader of a stale file searches exactly (and says why) until the writer saves.
TEST(DatabaseIndex, StaleFileMeansExactSearchMeanwhile) {
  TempDir tmp;
  std::mt19937 rng(45);
  auto db = writer(tmp.path(), settings("HNSW16"));
  ASSERT_TRUE(db);
  fill(*db, rng, "/p/", 200);
  ASSERT_TRUE(db->save_index().ok());
  fill(*db, rng, "/q/", 10);
  auto r = reader(tmp.path());
  ASSERT_TRUE(r);
  EXPECT_EQ(kind_of(*r), "Flat");
  EXPECT_NE(info_of(*r).fallback.find("out of date"), std::string::npos);
  expect_index_matches_catalog(*r, "stand-in");
  ASSERT_TRUE(db->save_index().ok());
  auto r2 = reader(tmp.path());
  ASSERT_TRUE(r2);
  EXPECT_EQ(kind_of(*r2), "HNSW16");
}
