// search: queries through search::Searcher on small databases built in-process -- random
// unit vectors plus a handful of real photos embedded here -- checked against exact
// scores computed in the test: by image, id and path; batches; --min-score; re-ranking
// approximate candidates with the catalog's exact vectors.
#include "search/search.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/file_io.h"
#include "decode/decode.h"
#include "index/policy.h"
#include "ingest/ingest.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace imgsearch;

namespace {

const fs::path kPhotos = fs::path(IMGSEARCH_SHARED_DIR) / "photos" / "caltech20";

// ctest runs test processes side by side on 2 cores; OpenMP teams spinning against each
// other slow FAISS training by an order of magnitude. One thread each.
const bool kOneThread = (index::set_threads(1), true);

using test_util::TempDir;

std::vector<uint8_t> bytes_of(const fs::path& p) {
  auto b = read_file_bytes(p);
  EXPECT_TRUE(b.ok()) << p << ": " << b.error();
  return b.ok() ? *b : std::vector<uint8_t>{};
}

// A database of `n_random` random unit vectors and the given photos (embedded with the
// default model), index kind `spec`, saved so that a Searcher loads it as built.
struct TestDb {
  fs::path dir;
  std::vector<fs::path> photos;
  std::vector<int64_t> photo_ids, random_ids;
  std::vector<std::vector<float>> photo_vecs, random_vecs;
  int dim = 0;
};

TestDb make_db(const fs::path& dir, const std::string& spec, int n_random, const std::vector<fs::path>& photos) {
  TestDb t;
  t.dir = dir;
  t.photos = photos;
  auto embedder = embed::Embedder::open(embed::Representation{});
  EXPECT_TRUE(embedder.ok()) << embedder.error();
  if (!embedder.ok()) return t;
  decode::decode_init();
  auto& e = **embedder;
  t.dim = int(e.dim());
  database::Settings s;
  s.representation = e.representation();
  s.metric = index::Metric::Cosine;
  s.index_spec = spec;
  s.dim = t.dim;
  auto db = database::Database::open_for_writing(dir, s);
  EXPECT_TRUE(db.ok()) << db.error();
  if (!db.ok()) return t;
  std::vector<catalog::NewImage> adds;
  for (const auto& p : photos) {
    auto img = decode::decode_image(bytes_of(p), e.decode_options());
    EXPECT_TRUE(img.ok()) << img.error();
    if (!img.ok()) return t;
    const decode::RgbImage* one[] = {&*img};
    auto v = e.embed(one);
    EXPECT_TRUE(v.ok()) << v.error();
    catalog::NewImage n;
    n.record.path = p.string();
    n.record.key = ingest::path_key(p);
    n.record.content_hash = "photo" + p.string();
    n.vector = *v;
    t.photo_vecs.push_back(*v);
    adds.push_back(std::move(n));
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  for (int i = 0; i < n_random; ++i) {
    std::vector<float> v(size_t(t.dim));
    double s2 = 0;
    for (auto& x : v) {
      x = g(rng);
      s2 += double(x) * x;
    }
    for (auto& x : v) x = float(x / std::sqrt(s2));
    catalog::NewImage n;
    const std::string num = std::to_string(i);
    n.record.path = "/random/" + num + ".jpg";
    n.record.key = n.record.path;
    n.record.content_hash = std::string("r").append(num);  // (GCC 12 -Wrestrict misfires on "r" + s)
    n.vector = v;
    t.random_vecs.push_back(std::move(v));
    adds.push_back(std::move(n));
  }
  auto ids = (*db)->commit(adds, {});
  EXPECT_TRUE(ids.ok()) << ids.error();
  if (!ids.ok()) return t;
  t.photo_ids.assign(ids->begin(), ids->begin() + long(photos.size()));
  t.random_ids.assign(ids->begin() + long(photos.size()), ids->end());
  auto saved = (*db)->save_index();
  EXPECT_TRUE(saved.ok()) << saved.error();
  return t;
}

std::unique_ptr<search::Searcher> open_searcher(const fs::path& dir) {
  auto s = search::Searcher::open(dir);
  EXPECT_TRUE(s.ok()) << s.error();
  return s.ok() ? std::move(*s) : nullptr;
}

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return float(s);
}

// The exact top-k (id, cosine) of `q` over everything in the test database.
std::vector<std::pair<int64_t, float>> exact_top(const TestDb& t, const std::vector<float>& q, int k) {
  std::vector<std::pair<int64_t, float>> all;
  for (size_t i = 0; i < t.photo_vecs.size(); ++i) all.emplace_back(t.photo_ids[i], dot(q, t.photo_vecs[i]));
  for (size_t i = 0; i < t.random_vecs.size(); ++i) all.emplace_back(t.random_ids[i], dot(q, t.random_vecs[i]));
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.second > b.second; });
  all.resize(std::min(all.size(), size_t(k)));
  return all;
}

const std::vector<fs::path> kFour = {kPhotos / "llama" / "image_0003.jpg", kPhotos / "llama" / "image_0026.jpg",
                                     kPhotos / "Leopards" / "image_0001.jpg",
                                     kPhotos / "Motorbikes" / "image_0001.jpg"};

}  // namespace

// The same indexed photo as a file, by id and by path gives the same results: itself
// first with cosine 1.
TEST(Search, ByImageByIdAndByPathAgree) {
  TempDir tmp;
  const TestDb t = make_db(tmp.path() / "db", "Flat", 50, kFour);
  ASSERT_EQ(t.photo_ids.size(), 4u);
  auto s = open_searcher(t.dir);
  ASSERT_TRUE(s);
  search::Query q;
  q.k = 5;
  auto a = s->by_image(bytes_of(kFour[0]), q);
  ASSERT_TRUE(a.ok()) << a.error();
  ASSERT_EQ(a->size(), 5u);
  EXPECT_EQ((*a)[0].id, t.photo_ids[0]);
  EXPECT_EQ((*a)[0].path, kFour[0].string());
  EXPECT_NEAR((*a)[0].score, 1.0f, 1e-4);
  EXPECT_EQ((*a)[1].id, t.photo_ids[1]);  // the other llama beats leopards, motorbikes and noise
  auto b = s->by_id(t.photo_ids[0], q);
  ASSERT_TRUE(b.ok()) << b.error();
  // Another spelling of the same file, and the path exactly as stored.
  const fs::path odd = kPhotos / "llama" / ".." / "llama" / "." / "image_0003.jpg";
  for (const std::string& p : {kFour[0].string(), odd.string()}) {
    auto c = s->by_path(p, q);
    ASSERT_TRUE(c.ok()) << p << ": " << c.error();
    ASSERT_EQ(c->size(), b->size());
    for (size_t i = 0; i < c->size(); ++i) EXPECT_EQ((*c)[i].id, (*b)[i].id);
  }
  for (size_t i = 0; i < a->size(); ++i) {
    EXPECT_EQ((*a)[i].id, (*b)[i].id) << i;
    EXPECT_NEAR((*a)[i].score, (*b)[i].score, 1e-4) << i;
    EXPECT_EQ((*a)[i].rank, int(i) + 1);
  }
  // The search key is the one ingest stores.
  EXPECT_EQ(search::path_key(odd), ingest::path_key(odd));
  auto missing = s->by_path((kPhotos / "llama" / "image_0001.jpg").string(), q);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().find("not in the database"), std::string::npos) << missing.error();
  auto bad_id = s->by_id(999999, q);
  EXPECT_FALSE(bad_id.ok());
  // Leaving the query out.
  q.exclude_id = t.photo_ids[0];
  auto ex = s->by_id(t.photo_ids[0], q);
  ASSERT_TRUE(ex.ok());
  ASSERT_EQ(ex->size(), 5u);
  EXPECT_EQ((*ex)[0].id, t.photo_ids[1]);
  for (const auto& h : *ex) EXPECT_NE(h.id, t.photo_ids[0]);
}

// A batch gives, query by query, what single queries give; a bad image fails alone.
TEST(Search, BatchMatchesSingleQueries) {
  TempDir tmp;
  const TestDb t = make_db(tmp.path() / "db", "Flat", 30, kFour);
  auto s = open_searcher(t.dir);
  ASSERT_TRUE(s);
  search::Query q;
  q.k = 4;
  const std::vector<uint8_t> junk = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  const auto b0 = bytes_of(kFour[2]), b1 = bytes_of(kFour[1]), b3 = bytes_of(kFour[3]);
  const std::vector<std::span<const uint8_t>> batch = {b0, b1, junk, b3};
  auto results = s->by_images(batch, q);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_FALSE(results[2].ok());
  for (size_t i : {size_t(0), size_t(1), size_t(3)}) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].error();
    auto single = s->by_image(batch[i], q);
    ASSERT_TRUE(single.ok());
    ASSERT_EQ(results[i]->size(), single->size());
    for (size_t r = 0; r < single->size(); ++r) {
      EXPECT_EQ((*results[i])[r].id, (*single)[r].id);
      EXPECT_NEAR((*results[i])[r].score, (*single)[r].score, 1e-4);
    }
  }
  // Many vectors at once (FAISS's batched path) equal one at a time.
  std::vector<float> many;
  for (int i = 0; i < 25; ++i)
    many.insert(many.end(), t.random_vecs[size_t(i)].begin(), t.random_vecs[size_t(i)].end());
  auto all = s->by_vectors(many, q);
  ASSERT_TRUE(all.ok()) << all.error();
  ASSERT_EQ(all->size(), 25u);
  for (int i = 0; i < 25; ++i) {
    auto one = s->by_vector(t.random_vecs[size_t(i)], q);
    ASSERT_TRUE(one.ok());
    ASSERT_EQ((*all)[size_t(i)].size(), one->size());
    for (size_t r = 0; r < one->size(); ++r) EXPECT_EQ((*all)[size_t(i)][r].id, (*one)[r].id);
    EXPECT_EQ((*one)[0].id, t.random_ids[size_t(i)]);
  }
  EXPECT_FALSE(s->by_vectors(std::span<const float>(many.data(), 7), q).ok());  // not a multiple of dim
}

// --min-score keeps the prefix of the ranking that scores at least the threshold.
TEST(Search, MinScoreKeepsTheBestPrefix) {
  TempDir tmp;
  const TestDb t = make_db(tmp.path() / "db", "Flat", 30, kFour);
  auto s = open_searcher(t.dir);
  ASSERT_TRUE(s);
  search::Query q;
  q.k = 10;
  auto all = s->by_id(t.photo_ids[0], q);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 10u);
  const float threshold = ((*all)[1].score + (*all)[2].score) / 2;  // between ranks 2 and 3
  q.min_score = threshold;
  auto kept = s->by_id(t.photo_ids[0], q);
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 2u);
  EXPECT_EQ((*kept)[0].id, (*all)[0].id);
  EXPECT_EQ((*kept)[1].id, (*all)[1].id);
  q.min_score = 1.5f;  // nothing scores above 1
  auto none = s->by_id(t.photo_ids[0], q);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// A compressed index returns approximate candidates and scores; re-ranking them with the
// catalog's exact vectors gives exact scores and, with enough candidates, the exact top k.
// Compressed kinds re-rank by default.
TEST(Search, RerankRefinesCompressedCandidates) {
  TempDir tmp;
  const TestDb t = make_db(tmp.path() / "db", "IVF16,PQ16x4", 700, kFour);  // trains at 624
  auto s = open_searcher(t.dir);
  ASSERT_TRUE(s);
  auto idx = s->db().index();
  ASSERT_TRUE(idx.ok());
  ASSERT_EQ((*idx)->spec(), "IVF16,PQ16x4");
  EXPECT_GT((*idx)->build_info().rerank, 0);
  int exact_top_hits = 0, approx_exact_scores = 0;
  for (int i = 0; i < 20; ++i) {
    const auto& v = t.random_vecs[size_t(i) * 7];
    const auto truth = exact_top(t, v, 10);
    search::Query q;
    q.k = 10;
    q.rerank = 704;  // every vector: exact
    auto exact = s->by_vector(v, q);
    ASSERT_TRUE(exact.ok()) << exact.error();
    ASSERT_EQ(exact->size(), 10u);
    for (size_t r = 0; r < 10; ++r) {
      EXPECT_EQ((*exact)[r].id, truth[r].first) << "query " << i << " rank " << r;
      EXPECT_NEAR((*exact)[r].score, truth[r].second, 1e-4);
    }
    q.rerank = -1;  // the index's default depth
    auto dflt = s->by_vector(v, q);
    ASSERT_TRUE(dflt.ok());
    exact_top_hits += (*dflt)[0].id == truth[0].first;
    q.rerank = 0;  // PQ scores as they are
    q.knobs.nprobe = 16;
    auto raw = s->by_vector(v, q);
    ASSERT_TRUE(raw.ok());
    ASSERT_FALSE(raw->empty());
    approx_exact_scores += std::abs((*raw)[0].score - dot(v, t.random_vecs[size_t(i) * 7])) < 1e-4;
  }
  EXPECT_EQ(exact_top_hits, 20);      // default re-ranking finds each query's own vector
  EXPECT_LT(approx_exact_scores, 5);  // PQ's own scores are approximations
  // A photo query through the compressed index finds its own image first, score 1.
  search::Query q;
  q.k = 3;
  auto photo = s->by_image(bytes_of(kFour[3]), q);
  ASSERT_TRUE(photo.ok()) << photo.error();
  EXPECT_EQ((*photo)[0].id, t.photo_ids[3]);
  EXPECT_NEAR((*photo)[0].score, 1.0f, 1e-4);
}

// The HNSW/IVF knobs reach the index: visiting every IVF list is exact.
TEST(Search, KnobsReachTheIndex) {
  TempDir tmp;
  const TestDb t = make_db(tmp.path() / "db", "IVF16,Flat", 700, kFour);
  auto s = open_searcher(t.dir);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->db().index().value()->spec(), "IVF16,Flat");
  for (int i = 0; i < 10; ++i) {
    const auto& v = t.random_vecs[size_t(i) * 13];
    search::Query q;
    q.k = 10;
    q.knobs.nprobe = 16;
    auto r = s->by_vector(v, q);
    ASSERT_TRUE(r.ok());
    const auto truth = exact_top(t, v, 10);
    for (size_t j = 0; j < 10; ++j) EXPECT_EQ((*r)[j].id, truth[j].first);
  }
}
