// catalog: SQLite store of images, their vectors and settings. Commits and ids, lookups,
// replacement by key, removal, change_seq, directory listing, raw-byte paths, vector
// streaming, meta, damaged or missing files, and readers beside a writer (WAL).
#include "catalog/catalog.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"

namespace fs = std::filesystem;
using namespace imgsearch;
using namespace imgsearch::catalog;
using Mode = Catalog::Mode;

namespace {

using test_util::TempDir;

constexpr int kDim = 4;

// A distinct, recognisable vector per seed.
std::vector<float> vec(int seed) { return {float(seed), float(seed) * 0.5f, -float(seed), 1.0f / float(seed + 1)}; }

NewImage image(const std::string& key, int seed) {
  NewImage n;
  n.record.path = "given/" + key;
  n.record.key = key;
  n.record.size = 1000 + seed;
  n.record.mtime_ns = 1'700'000'000'000'000'000 + seed;
  n.record.width = 640 + seed;
  n.record.height = 480 + seed;
  n.record.content_hash = "hash" + std::to_string(seed);
  n.record.added_at = 1'700'000'000 + seed;
  n.vector = vec(seed);
  return n;
}

std::unique_ptr<Catalog> open(const fs::path& dir, Mode mode) {
  auto c = Catalog::open(dir, mode);
  EXPECT_TRUE(c.ok()) << c.error();
  return c.ok() ? std::move(*c) : nullptr;
}

std::vector<int64_t> commit(Catalog& c, const std::vector<NewImage>& adds, const std::vector<int64_t>& removes = {}) {
  auto r = c.commit(adds, removes);
  EXPECT_TRUE(r.ok()) << r.error();
  return r.ok() ? *r : std::vector<int64_t>{};
}

std::vector<std::string> keys_of(const std::vector<ImageRecord>& rs) {
  std::vector<std::string> k;
  for (const auto& r : rs) k.push_back(r.key);
  std::sort(k.begin(), k.end());
  return k;
}

void expect_same_record(const ImageRecord& got, const NewImage& want, int64_t id) {
  EXPECT_EQ(got.id, id);
  EXPECT_EQ(got.path, want.record.path);
  EXPECT_EQ(got.key, want.record.key);
  EXPECT_EQ(got.size, want.record.size);
  EXPECT_EQ(got.mtime_ns, want.record.mtime_ns);
  EXPECT_EQ(got.width, want.record.width);
  EXPECT_EQ(got.height, want.record.height);
  EXPECT_EQ(got.content_hash, want.record.content_hash);
  EXPECT_EQ(got.added_at, want.record.added_at);
}

}  // namespace

TEST(Catalog, CreatesDirectoryAndStartsEmpty) {
  TempDir tmp;
  const fs::path dir = tmp / "nested" / "db";
  auto c = open(dir, Mode::ReadWrite);
  ASSERT_TRUE(c);
  EXPECT_TRUE(fs::exists(Catalog::file_in(dir)));
  EXPECT_EQ(Catalog::file_in(dir), dir / "catalog.sqlite");
  EXPECT_EQ(c->count(), 0);
  // A new catalog's change_seq starts at a random value in [2^32, 2^48) (see catalog.h).
  const int64_t start = c->change_seq();
  EXPECT_GE(start, int64_t(1) << 32);
  EXPECT_LT(start, int64_t(1) << 48);
  EXPECT_NE(open(tmp / "other", Mode::ReadWrite)->change_seq(), start);
  EXPECT_TRUE(c->list_images().empty());
  EXPECT_FALSE(c->find_by_id(1).has_value());
  auto seq = c->for_each_vector([](int64_t, std::span<const float>) { ADD_FAILURE() << "no vectors expected"; });
  ASSERT_TRUE(seq.ok()) << seq.error();
  EXPECT_EQ(*seq, start);
}

TEST(Catalog, CommitAssignsIdsInOrderAndFinds) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  std::vector<NewImage> adds;
  for (int i = 0; i < 5; ++i) adds.push_back(image("/photos/img" + std::to_string(i) + ".jpg", i));
  const auto ids = commit(*c, adds);
  ASSERT_EQ(ids.size(), 5u);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_GT(ids[i], ids[i - 1]);
  EXPECT_EQ(c->count(), 5);

  for (size_t i = 0; i < adds.size(); ++i) {
    SCOPED_TRACE(adds[i].record.key);
    auto by_key = c->find_by_key(adds[i].record.key);
    ASSERT_TRUE(by_key.has_value());
    expect_same_record(*by_key, adds[i], ids[i]);
    auto by_id = c->find_by_id(ids[i]);
    ASSERT_TRUE(by_id.has_value());
    expect_same_record(*by_id, adds[i], ids[i]);
    auto by_hash = c->find_by_hash(adds[i].record.content_hash);
    ASSERT_TRUE(by_hash.has_value());
    EXPECT_EQ(by_hash->id, ids[i]);
    auto v = c->vector_of(ids[i]);
    ASSERT_TRUE(v.ok()) << v.error();
    EXPECT_EQ(*v, adds[i].vector);  // float bits round-trip exactly
  }
  EXPECT_FALSE(c->find_by_key("/photos/nope.jpg").has_value());
  EXPECT_FALSE(c->find_by_key("/photos/img0.jp").has_value());  // no prefix matching
  EXPECT_FALSE(c->find_by_hash("hash99").has_value());
  EXPECT_FALSE(c->find_by_id(ids.back() + 1).has_value());
  auto none = c->vector_of(ids.back() + 1);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().find(std::to_string(ids.back() + 1)), std::string::npos) << none.error();

  // A second commit continues the sequence; list_images is in id order.
  const auto more = commit(*c, {image("/photos/z.jpg", 10), image("/photos/a.jpg", 11)});
  ASSERT_EQ(more.size(), 2u);
  EXPECT_GT(more[0], ids.back());
  EXPECT_GT(more[1], more[0]);
  const auto all = c->list_images();
  ASSERT_EQ(all.size(), 7u);
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GT(all[i].id, all[i - 1].id);
  EXPECT_EQ(all.back().key, "/photos/a.jpg");
}

TEST(Catalog, AddedAtDefaultsToNow) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  auto a = image("/x.jpg", 1);
  a.record.added_at = 0;
  const int64_t before = int64_t(std::time(nullptr));
  const auto ids = commit(*c, {a});
  ASSERT_EQ(ids.size(), 1u);
  const int64_t after = int64_t(std::time(nullptr));
  auto r = c->find_by_id(ids[0]);
  ASSERT_TRUE(r.has_value());
  EXPECT_GE(r->added_at, before);
  EXPECT_LE(r->added_at, after);
}

TEST(Catalog, ReplacingSameKeyKeepsIdAndReplacesVector) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  const auto ids = commit(*c, {image("/p/a.jpg", 1), image("/p/b.jpg", 2)});
  ASSERT_EQ(ids.size(), 2u);

  auto changed = image("/p/a.jpg", 7);  // same key, new content and vector
  changed.record.path = "elsewhere/a.jpg";
  const auto again = commit(*c, {changed, image("/p/c.jpg", 3)});
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0], ids[0]);
  EXPECT_GT(again[1], ids[1]);
  EXPECT_EQ(c->count(), 3);

  auto r = c->find_by_key("/p/a.jpg");
  ASSERT_TRUE(r.has_value());
  expect_same_record(*r, changed, ids[0]);
  EXPECT_FALSE(c->find_by_hash("hash1").has_value());
  auto v = c->vector_of(ids[0]);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, vec(7));

  // One vector per image, the new one.
  std::vector<int64_t> streamed;
  ASSERT_TRUE(c->for_each_vector([&](int64_t id, std::span<const float> x) {
                 streamed.push_back(id);
                 if (id == ids[0]) {
                   EXPECT_EQ(std::vector<float>(x.begin(), x.end()), vec(7));
                 }
               }).ok());
  EXPECT_EQ(streamed, (std::vector<int64_t>{ids[0], ids[1], again[1]}));

  // The same key twice in one commit: one row, the last one wins.
  const auto dup = commit(*c, {image("/p/d.jpg", 4), image("/p/d.jpg", 5)});
  ASSERT_EQ(dup.size(), 2u);
  EXPECT_EQ(dup[0], dup[1]);
  EXPECT_EQ(c->count(), 4);
  auto d = c->vector_of(dup[0]);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, vec(5));
}

TEST(Catalog, RemoveDeletesImageAndVector) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  const auto ids = commit(*c, {image("/a.jpg", 1), image("/b.jpg", 2), image("/c.jpg", 3)});
  ASSERT_EQ(ids.size(), 3u);
  // Remove one and add one in the same commit; removing an unknown id is harmless.
  const auto added = commit(*c, {image("/d.jpg", 4)}, {ids[1], 999999});
  ASSERT_EQ(added.size(), 1u);
  EXPECT_EQ(c->count(), 3);
  EXPECT_FALSE(c->find_by_id(ids[1]).has_value());
  EXPECT_FALSE(c->find_by_key("/b.jpg").has_value());
  EXPECT_FALSE(c->find_by_hash("hash2").has_value());
  EXPECT_FALSE(c->vector_of(ids[1]).ok());
  std::vector<int64_t> streamed;
  ASSERT_TRUE(c->for_each_vector([&](int64_t id, std::span<const float>) { streamed.push_back(id); }).ok());
  EXPECT_EQ(streamed, (std::vector<int64_t>{ids[0], ids[2], added[0]}));
  // Ids are never reused, even after the highest one is removed.
  commit(*c, {}, {added[0]});
  const auto next = commit(*c, {image("/e.jpg", 5)});
  ASSERT_EQ(next.size(), 1u);
  EXPECT_GT(next[0], added[0]);
  // Re-adding a removed key gives it a new id.
  const auto back = commit(*c, {image("/b.jpg", 2)});
  ASSERT_EQ(back.size(), 1u);
  EXPECT_NE(back[0], ids[1]);
}

TEST(Catalog, ChangeSeqIncreasesWithEveryCommit) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  int64_t last = c->change_seq();
  auto bumped = [&](const char* what) {
    const int64_t now = c->change_seq();
    EXPECT_GT(now, last) << what;
    last = now;
  };
  const auto ids = commit(*c, {image("/a.jpg", 1)});
  bumped("add");
  commit(*c, {image("/a.jpg", 2)});
  bumped("replace");
  commit(*c, {}, {ids[0]});
  bumped("remove");
  commit(*c, {});
  bumped("empty commit");
  const auto r = commit(*c, {image("/r.jpg", 3)});
  bumped("add");
  ASSERT_TRUE(c->rename(r[0], "moved/r.jpg", "/moved/r.jpg", 5).ok());
  bumped("rename");
  // change_seq survives reopening, for writers and readers.
  c.reset();
  auto again = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->change_seq(), last);
  auto reader = open(tmp.path(), Mode::ReadOnly);
  ASSERT_TRUE(reader);
  EXPECT_EQ(reader->change_seq(), last);
}

TEST(Catalog, RenameKeepsIdAndVector) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  const auto ids = commit(*c, {image("/old/a.jpg", 1), image("/old/b.jpg", 2)});
  ASSERT_TRUE(c->rename(ids[0], "new/a.jpg", "/new/a.jpg", 42).ok());
  EXPECT_FALSE(c->find_by_key("/old/a.jpg").has_value());
  auto r = c->find_by_key("/new/a.jpg");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->id, ids[0]);
  EXPECT_EQ(r->path, "new/a.jpg");
  EXPECT_EQ(r->mtime_ns, 42);
  EXPECT_EQ(r->content_hash, "hash1");
  auto v = c->vector_of(ids[0]);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, vec(1));
  // Moving onto another image's key is refused, and nothing changes.
  const int64_t seq = c->change_seq();
  EXPECT_FALSE(c->rename(ids[0], "x", "/old/b.jpg", 1).ok());
  EXPECT_EQ(c->change_seq(), seq);
  EXPECT_EQ(c->find_by_key("/old/b.jpg")->id, ids[1]);
}

TEST(Catalog, ListUnderSelectsOnlyThatDirectory) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  const std::vector<std::string> keys = {
      "/a/b/1.jpg", "/a/b/sub/2.jpg", "/a/b/sub/deeper/3.jpg", "/a/b/\xff\xfe.jpg", "/a/bc/4.jpg",
      "/a/b.jpg",   "/a/b",           "/a/b-c/5.jpg",          "/a/b0/6.jpg",       "/a/B/7.jpg",
      "/a/8.jpg",   "/x/a/b/9.jpg",   "/a/b\xc3\xa9/10.jpg"};
  std::vector<NewImage> adds;
  for (size_t i = 0; i < keys.size(); ++i) adds.push_back(image(keys[i], int(i)));
  ASSERT_EQ(commit(*c, adds).size(), keys.size());

  const std::vector<std::string> under_ab = {"/a/b/1.jpg", "/a/b/sub/2.jpg", "/a/b/sub/deeper/3.jpg",
                                             "/a/b/\xff\xfe.jpg"};
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(keys_of(c->list_under("/a/b")), sorted(under_ab));
  EXPECT_EQ(keys_of(c->list_under("/a/b/")), sorted(under_ab));  // trailing slash is the same
  EXPECT_EQ(keys_of(c->list_under("/a/b/sub")), sorted({"/a/b/sub/2.jpg", "/a/b/sub/deeper/3.jpg"}));
  EXPECT_EQ(keys_of(c->list_under("/a/bc")), sorted({"/a/bc/4.jpg"}));
  EXPECT_TRUE(c->list_under("/a/b/1.jpg").empty());  // a file is not a directory
  EXPECT_TRUE(c->list_under("/nowhere").empty());
  EXPECT_EQ(c->list_under("/").size(), keys.size());
  std::vector<std::string> under_a;
  for (const auto& k : keys)
    if (k.rfind("/a/", 0) == 0) under_a.push_back(k);
  EXPECT_EQ(keys_of(c->list_under("/a")), sorted(under_a));
  // Listed records are complete and in id order.
  const auto recs = c->list_under("/a/b");
  for (size_t i = 1; i < recs.size(); ++i) EXPECT_GT(recs[i].id, recs[i - 1].id);
  EXPECT_EQ(recs[0].path, "given//a/b/1.jpg");
}

TEST(Catalog, RawBytePathsRoundTrip) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  const std::string nfc = "/photos/caf\xc3\xa9.jpg";   // é precomposed
  const std::string nfd = "/photos/cafe\xcc\x81.jpg";  // e + combining acute
  const std::string latin1 = "/photos/caf\xe9.jpg";    // not UTF-8
  const std::string junk = "/photos/\x80\xff\xc3(\x01\x7f.jpg";
  std::vector<NewImage> adds;
  int seed = 0;
  for (const auto& k : {nfc, nfd, latin1, junk}) {
    auto n = image(k, seed++);
    n.record.path = "rel" + k.substr(7);  // the path as given differs from the key
    adds.push_back(n);
  }
  const auto ids = commit(*c, adds);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), 4u);  // NFC and NFD are different files
  c.reset();

  auto r = open(tmp.path(), Mode::ReadOnly);  // from disk, not from a cache
  ASSERT_TRUE(r);
  for (size_t i = 0; i < adds.size(); ++i) {
    auto got = r->find_by_key(adds[i].record.key);
    ASSERT_TRUE(got.has_value()) << i;
    EXPECT_EQ(got->id, ids[i]);
    EXPECT_EQ(got->key, adds[i].record.key);
    EXPECT_EQ(got->key.size(), adds[i].record.key.size());
    EXPECT_EQ(got->path, adds[i].record.path);
    auto by_id = r->find_by_id(ids[i]);
    ASSERT_TRUE(by_id.has_value());
    EXPECT_EQ(by_id->key, adds[i].record.key);
    EXPECT_EQ(by_id->path, adds[i].record.path);
  }
  const auto all = r->list_images();
  ASSERT_EQ(all.size(), 4u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].key, adds[i].record.key);
}

TEST(Catalog, ForEachVectorStreamsEverythingInIdOrder) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  std::mt19937 rng(3);
  std::normal_distribution<float> g;
  std::vector<NewImage> adds;
  for (int i = 0; i < 300; ++i) {
    auto n = image("/v/" + std::to_string(rng()) + "_" + std::to_string(i), i);
    n.vector.assign(kDim, 0);
    for (auto& x : n.vector) x = g(rng);
    adds.push_back(n);
  }
  const auto ids = commit(*c, adds);
  ASSERT_EQ(ids.size(), adds.size());
  std::vector<int64_t> removed = {ids[0], ids[150], ids[299]};
  commit(*c, {}, removed);

  std::vector<int64_t> seen;
  size_t next = 0;
  auto seq = c->for_each_vector([&](int64_t id, std::span<const float> v) {
    seen.push_back(id);
    while (next < ids.size() && ids[next] != id) ++next;
    ASSERT_LT(next, ids.size()) << "unexpected id " << id;
    EXPECT_EQ(std::vector<float>(v.begin(), v.end()), adds[next].vector) << id;
  });
  ASSERT_TRUE(seq.ok()) << seq.error();
  EXPECT_EQ(*seq, c->change_seq());
  EXPECT_EQ(seen.size(), 297u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());
  for (int64_t r : removed) EXPECT_EQ(std::count(seen.begin(), seen.end(), r), 0);
}

TEST(Catalog, MetaSetGetAndOverwrite) {
  TempDir tmp;
  auto c = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->get_meta("model").has_value());
  ASSERT_TRUE(c->set_meta("model", "efficientnet-lite0").ok());
  ASSERT_TRUE(c->set_meta("empty", "").ok());
  EXPECT_EQ(c->get_meta("model"), "efficientnet-lite0");
  EXPECT_EQ(c->get_meta("empty"), "");
  ASSERT_TRUE(c->set_meta("model", "other").ok());
  EXPECT_EQ(c->get_meta("model"), "other");
  EXPECT_FALSE(c->get_meta("Model").has_value());
  c.reset();
  auto r = open(tmp.path(), Mode::ReadOnly);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get_meta("model"), "other");
  EXPECT_EQ(r->get_meta("empty"), "");
  // A reader cannot write.
  EXPECT_FALSE(r->set_meta("model", "x").ok());
  EXPECT_FALSE(r->commit(std::vector<NewImage>{image("/a.jpg", 1)}, {}).ok());
  EXPECT_EQ(r->get_meta("model"), "other");
  EXPECT_EQ(r->count(), 0);
}

TEST(Catalog, ReadOnlyOpenOfMissingDatabase) {
  TempDir tmp;
  const fs::path dir = tmp / "no-such-db";
  auto r = Catalog::open(dir, Mode::ReadOnly);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("no imgsearch database"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find(dir.string()), std::string::npos) << r.error();
  EXPECT_FALSE(fs::exists(dir));  // a reader creates nothing
  // An existing directory without a catalog is just as missing.
  auto empty_dir = Catalog::open(tmp.path(), Mode::ReadOnly);
  ASSERT_FALSE(empty_dir.ok());
  EXPECT_NE(empty_dir.error().find("no imgsearch database"), std::string::npos) << empty_dir.error();
}

TEST(Catalog, ForeignFileIsAClearError) {
  TempDir tmp;
  std::mt19937 rng(4);
  std::string junk(8192, '\0');
  for (auto& ch : junk) ch = char(rng());
  const fs::path file = Catalog::file_in(tmp.path());
  std::ofstream(file, std::ios::binary) << junk;
  for (Mode mode : {Mode::ReadOnly, Mode::ReadWrite}) {
    auto r = Catalog::open(tmp.path(), mode);
    ASSERT_FALSE(r.ok()) << "opened random bytes";
    EXPECT_NE(r.error().find(file.string()), std::string::npos) << r.error();
    EXPECT_NE(r.error().find("not"), std::string::npos) << r.error();
  }
  // Untouched by the failed opens.
  std::ifstream in(file, std::ios::binary);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), junk);
}

TEST(Catalog, OtherSqliteDatabaseIsRefusedByReader) {
  TempDir tmp;
  const fs::path file = Catalog::file_in(tmp.path());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES(1);", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto r = Catalog::open(tmp.path(), Mode::ReadOnly);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("not an imgsearch catalog"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find(file.string()), std::string::npos) << r.error();
}

TEST(Catalog, NewerSchemaVersionIsRefused) {
  TempDir tmp;
  {
    auto c = open(tmp.path(), Mode::ReadWrite);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->set_meta("schema_version", "99").ok());
  }
  for (Mode mode : {Mode::ReadOnly, Mode::ReadWrite}) {
    auto r = Catalog::open(tmp.path(), mode);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().find("schema version 99"), std::string::npos) << r.error();
  }
}

// WAL: a reader sees the last committed state while a writer holds an open, uncommitted
// transaction, without waiting for it; once the writer commits, the reader sees that.
TEST(Catalog, ReaderSeesLastCommitBesideOpenWriteTransaction) {
  TempDir tmp;
  auto w = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(w);
  const auto ids = commit(*w, {image("/a.jpg", 1), image("/b.jpg", 2)});
  const int64_t seq = w->change_seq();
  auto r = open(tmp.path(), Mode::ReadOnly);
  ASSERT_TRUE(r);

  // A second writer connection (as another process would) starts a transaction and
  // leaves it open.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(Catalog::file_in(tmp.path()).c_str(), &raw), SQLITE_OK);
  auto exec = [&](const char* sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(raw, sql, nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  };
  exec("BEGIN IMMEDIATE");
  exec(
      "INSERT INTO images(key, path, size, mtime_ns, width, height, content_hash, added_at) "
      "VALUES(CAST('/c.jpg' AS BLOB), CAST('c.jpg' AS BLOB), 1, 1, 1, 1, 'hashc', 1)");
  exec("INSERT INTO vectors(id, vec) VALUES(last_insert_rowid(), zeroblob(16))");
  exec(("DELETE FROM vectors WHERE id = " + std::to_string(ids[0])).c_str());
  exec(("DELETE FROM images WHERE id = " + std::to_string(ids[0])).c_str());
  exec("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='change_seq'");

  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(r->count(), 2);
  EXPECT_EQ(r->change_seq(), seq);
  EXPECT_FALSE(r->find_by_key("/c.jpg").has_value());
  EXPECT_TRUE(r->find_by_id(ids[0]).has_value());
  std::vector<int64_t> streamed;
  auto snap = r->for_each_vector([&](int64_t id, std::span<const float>) { streamed.push_back(id); });
  ASSERT_TRUE(snap.ok()) << snap.error();
  EXPECT_EQ(*snap, seq);
  EXPECT_EQ(streamed, ids);
  // The in-process writer's view is also the committed one.
  EXPECT_EQ(w->count(), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2)) << "reader waited for the writer";

  exec("COMMIT");
  sqlite3_close(raw);
  EXPECT_EQ(r->count(), 2);
  EXPECT_EQ(r->change_seq(), seq + 1);
  EXPECT_TRUE(r->find_by_key("/c.jpg").has_value());
  EXPECT_FALSE(r->find_by_id(ids[0]).has_value());
}

// A reader opened before a writer's commits sees them; one streaming vectors keeps its
// snapshot while a commit lands in the middle of the stream.
TEST(Catalog, ReaderSeesLaterCommitsAndStreamsASnapshot) {
  TempDir tmp;
  auto w = open(tmp.path(), Mode::ReadWrite);
  ASSERT_TRUE(w);
  std::vector<NewImage> first;
  for (int i = 0; i < 20; ++i) first.push_back(image("/s/" + std::to_string(i), i));
  const auto ids = commit(*w, first);
  auto r = open(tmp.path(), Mode::ReadOnly);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->count(), 20);

  const auto more = commit(*w, {image("/s/new", 50)}, {ids[3]});
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(r->count(), 20);
  EXPECT_EQ(r->change_seq(), w->change_seq());
  EXPECT_TRUE(r->find_by_key("/s/new").has_value());
  EXPECT_FALSE(r->find_by_id(ids[3]).has_value());

  const int64_t seq_before = r->change_seq();
  std::vector<int64_t> streamed;
  bool committed = false;
  auto snap = r->for_each_vector([&](int64_t id, std::span<const float>) {
    streamed.push_back(id);
    if (!committed) {
      committed = true;  // the writer commits while the reader is mid-stream
      auto late = w->commit(std::vector<NewImage>{image("/s/late", 60)}, std::vector<int64_t>{ids[10]});
      EXPECT_TRUE(late.ok()) << late.error();
    }
  });
  ASSERT_TRUE(snap.ok()) << snap.error();
  EXPECT_TRUE(committed);
  EXPECT_EQ(*snap, seq_before);
  EXPECT_EQ(streamed.size(), 20u);  // 19 first + new; not "late", and ids[10] still there
  EXPECT_NE(std::find(streamed.begin(), streamed.end(), ids[10]), streamed.end());
  EXPECT_EQ(r->change_seq(), seq_before + 1);
  EXPECT_TRUE(r->find_by_key("/s/late").has_value());
}
