// map: UMAP layout quality on clustered data, determinism, awkward sizes, the pieces
// against umap-learn/sklearn reference values, and the map.bin cache.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "database/database.h"
#include "map/map_cache.h"
#include "map/plot.h"
#include "map/umap.h"
#include "map/umap_internal.h"

namespace fs = std::filesystem;
using namespace imgsearch;
using map::UmapOptions;

namespace {

// `clusters` Gaussian blobs in `dim` dimensions: centres N(0, 1), points centre + N(0, noise).
struct Blobs {
  std::vector<float> x;
  std::vector<int> label;
};
Blobs make_blobs(int n, int dim, int clusters, float noise, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> centres(size_t(clusters) * size_t(dim));
  for (auto& c : centres) c = g(rng);
  Blobs b;
  for (int i = 0; i < n; ++i) {
    const int c = i % clusters;
    b.label.push_back(c);
    for (int j = 0; j < dim; ++j) b.x.push_back(centres[size_t(c) * size_t(dim) + size_t(j)] + noise * g(rng));
  }
  return b;
}

bool all_in_unit_square(const std::vector<float>& y) {
  for (float v : y)
    if (!(v >= 0.0f && v <= 1.0f)) return false;
  return true;
}

}  // namespace

TEST(MapPieces, AbParamsMatchUmapLearn) {
  // umap.umap_.find_ab_params (umap-learn 0.5.3, scipy curve_fit).
  const struct {
    double spread, min_dist, a, b;
  } cases[] = {{1.0, 0.1, 1.5769434604035877, 0.8950608780665811},
               {1.0, 0.5, 0.5830300205483709, 1.334166992455648},
               {2.0, 0.01, 0.6353444081392884, 0.7955528898653632}};
  for (const auto& c : cases) {
    double a = 0, b = 0;
    map::detail::find_ab_params(c.spread, c.min_dist, &a, &b);
    EXPECT_NEAR(a, c.a, 1e-4 * c.a) << c.spread << " " << c.min_dist;
    EXPECT_NEAR(b, c.b, 1e-4 * c.b) << c.spread << " " << c.min_dist;
  }
}

TEST(MapPieces, SmoothKnnDistHitsLog2K) {
  map::detail::Knn knn;
  knn.n = 2;
  knn.k = 5;
  knn.idx = {0, 1, 2, 3, 4, 1, 0, 2, 3, 4};
  knn.dist = {0, 0.5f, 0.7f, 1.0f, 2.0f, 0, 0, 0, 0, 0};  // row 1: all duplicates
  std::vector<float> sigma, rho;
  map::detail::smooth_knn_dist(knn, &sigma, &rho, 1);
  EXPECT_FLOAT_EQ(rho[0], 0.5f);
  double psum = 0;
  for (int j = 1; j < 5; ++j) psum += std::exp(-std::max(0.0, double(knn.dist[size_t(j)]) - rho[0]) / sigma[0]);
  EXPECT_NEAR(psum, std::log2(5.0), 1e-4);
  EXPECT_EQ(rho[1], 0.0f);
  EXPECT_TRUE(std::isfinite(sigma[1]));
}

TEST(MapPieces, FuzzyUnionIsSymmetric) {
  map::detail::Knn knn;
  knn.n = 3;
  knn.k = 2;
  knn.idx = {0, 1, 1, 0, 2, 0};
  knn.dist = {0, 1, 0, 1, 0, 2};
  const std::vector<float> sigma = {1, 1, 1}, rho = {0.5f, 1, 2};
  const auto g = map::detail::fuzzy_simplicial_set(knn, sigma, rho);
  // 0->1: exp(-0.5); 1->0: 1 (d == rho); union 1. 2->0: 1 (d == rho), alone.
  ASSERT_EQ(g.indptr, (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_EQ(g.indices, (std::vector<int32_t>{1, 2, 0, 0}));
  EXPECT_FLOAT_EQ(g.weights[0], 1.0f);
  EXPECT_FLOAT_EQ(g.weights[1], 1.0f);
  EXPECT_FLOAT_EQ(g.weights[2], 1.0f);
  EXPECT_FLOAT_EQ(g.weights[3], 1.0f);
  knn.dist = {0, 2, 0, 3, 0, 2};  // 0->1: exp(-1.5), 1->0: exp(-2): union a + b - ab
  const auto h = map::detail::fuzzy_simplicial_set(knn, sigma, rho);
  const float a = std::exp(-1.5f), b = std::exp(-2.0f);
  EXPECT_FLOAT_EQ(h.weights[0], a + b - a * b);
  EXPECT_FLOAT_EQ(h.weights[2], a + b - a * b);
}

TEST(MapPieces, LanczosFindsPathEigenvalues) {
  // A path of 40: N = D^-1/2 A D^-1/2 has eigenvalues cos(pi j / 39), j = 0..39; the top
  // non-trivial ones are j = 1, 2, with eigenvectors ~ cos(pi j (i + 1/2) / 40)-like shapes.
  map::detail::Graph g;
  const int n = 40;
  g.n = n;
  g.indptr.push_back(0);
  for (int i = 0; i < n; ++i) {
    for (int32_t c : {i - 1, i + 1})
      if (c >= 0 && c < n) g.indices.push_back(c), g.weights.push_back(1.0f);
    g.indptr.push_back(int64_t(g.indices.size()));
  }
  std::vector<double> vec, val;
  ASSERT_TRUE(map::detail::lanczos_top(g, 2, 7, 2, &vec, &val));
  EXPECT_NEAR(val[0], std::cos(M_PI / (n - 1)), 1e-6);
  EXPECT_NEAR(val[1], std::cos(2 * M_PI / (n - 1)), 1e-6);
  // The first non-trivial eigenvector orders the path: D^-1/2 u (the random-walk
  // eigenvector, cos(pi (i + 1/2) / n)-like) is monotone from one end to the other.
  auto f = [&](int i) { return vec[size_t(i) * 2] / std::sqrt(i == 0 || i == n - 1 ? 1.0 : 2.0); };
  const double s = f(0) < f(n - 1) ? 1.0 : -1.0;
  for (int i = 1; i < n; ++i) EXPECT_LT(s * f(i - 1), s * f(i)) << i;
}

TEST(MapTrustworthiness, HandCheckedCase) {
  // 1-D points 0, 1, 3, 7, 15, 31 (no tied distances) and a shuffled 2-D layout.
  // k = 1: 2-D nearest neighbours 0->2, 1->3, 2->0, 3->1, 4->2, 5->3 have original ranks
  // 2, 3, 2, 2, 2, 2: penalty 1+2+1+1+1+1 = 7; T = 1 - 7 * 2 / (6 * 1 * (12 - 3 - 1)) = 17/24.
  // sklearn.manifold.trustworthiness gives 0.7083333333333334 (k=1) and 0.5 (k=2).
  const std::vector<float> x = {0, 1, 3, 7, 15, 31};
  const std::vector<float> y = {0, 0, 10, 0, 1, 0, 12, 0, 3, 0, 16, 0};
  EXPECT_NEAR(map::trustworthiness(x.data(), 6, 1, y.data(), 1, index::Metric::L2), 17.0 / 24.0, 1e-12);
  EXPECT_NEAR(map::trustworthiness(x.data(), 6, 1, y.data(), 2, index::Metric::L2), 0.5, 1e-12);
  const std::vector<float> same = {0, 0, 1, 0, 3, 0, 7, 0, 15, 0, 31, 0};
  EXPECT_DOUBLE_EQ(map::trustworthiness(x.data(), 6, 1, same.data(), 2, index::Metric::L2), 1.0);
  EXPECT_TRUE(std::isnan(map::trustworthiness(x.data(), 6, 1, y.data(), 3, index::Metric::L2)));  // k >= n/2
}

TEST(MapTrustworthiness, ClassAgreement) {
  const std::vector<float> y = {0, 0, 0.1f, 0, 5, 5, 5.1f, 5};
  const std::vector<int> labels = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(map::knn_class_agreement(y.data(), 4, labels.data(), 1), 1.0);
  const std::vector<int> mixed = {0, 1, 0, 1};
  EXPECT_DOUBLE_EQ(map::knn_class_agreement(y.data(), 4, mixed.data(), 1), 0.0);
}

TEST(MapLayout, SeparatesGaussianClusters) {
  const auto b = make_blobs(1000, 64, 10, 0.5f, 1);
  UmapOptions o;
  o.threads = 2;
  auto y = map::umap_layout(b.x.data(), 1000, 64, o);
  ASSERT_TRUE(y.ok()) << y.error();
  ASSERT_EQ(y->size(), 2000u);
  EXPECT_TRUE(all_in_unit_square(*y));
  const double t = map::trustworthiness(b.x.data(), 1000, 64, y->data(), 10, o.metric);
  const double agree = map::knn_class_agreement(y->data(), 1000, b.label.data(), 10);
  std::printf("trustworthiness@10 %.4f, 2-D kNN class agreement %.4f\n", t, agree);
  EXPECT_GE(t, 0.9);
  EXPECT_GE(agree, 0.9);
}

TEST(MapLayout, OverlappingClustersOneComponent) {
  // Close clusters: the kNN graph is connected, so the single-graph Lanczos path runs.
  const auto b = make_blobs(1000, 32, 5, 1.5f, 2);
  UmapOptions o;
  o.metric = index::Metric::L2;
  o.threads = 2;
  auto y = map::umap_layout(b.x.data(), 1000, 32, o);
  ASSERT_TRUE(y.ok()) << y.error();
  EXPECT_TRUE(all_in_unit_square(*y));
  EXPECT_GE(map::trustworthiness(b.x.data(), 1000, 32, y->data(), 10, o.metric), 0.85);
}

TEST(MapLayout, DeterministicForSeedAndThreads) {
  const auto b = make_blobs(600, 16, 4, 0.5f, 3);
  for (int threads : {1, 2, 3}) {
    UmapOptions o;
    o.threads = threads;
    o.n_epochs = 100;
    auto y1 = map::umap_layout(b.x.data(), 600, 16, o);
    auto y2 = map::umap_layout(b.x.data(), 600, 16, o);
    ASSERT_TRUE(y1.ok() && y2.ok());
    EXPECT_EQ(*y1, *y2) << threads << " threads";
    o.seed = 43;
    auto y3 = map::umap_layout(b.x.data(), 600, 16, o);
    ASSERT_TRUE(y3.ok());
    EXPECT_NE(*y1, *y3);
  }
}

TEST(MapLayout, TinyAndDegenerateInputs) {
  UmapOptions o;
  o.threads = 2;
  auto none = map::umap_layout(nullptr, 0, 8, o);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  const auto b = make_blobs(5, 8, 2, 0.1f, 4);
  for (int n : {1, 2, 3, 5}) {
    auto y = map::umap_layout(b.x.data(), n, 8, o);
    ASSERT_TRUE(y.ok()) << n << ": " << y.error();
    ASSERT_EQ(y->size(), size_t(n) * 2);
    EXPECT_TRUE(all_in_unit_square(*y)) << n;
  }
  EXPECT_EQ(*map::umap_layout(b.x.data(), 1, 8, o), (std::vector<float>{0.5f, 0.5f}));
  // All identical, half identical, and zero vectors (cosine of a zero vector).
  std::vector<float> same(50 * 8, 0.25f), half = b.x;
  for (int i = 0; i < 40; ++i) half.insert(half.end(), b.x.begin(), b.x.begin() + 8);
  std::vector<float> zeros(30 * 8, 0.0f);
  for (auto metric : {index::Metric::Cosine, index::Metric::L2}) {
    o.metric = metric;
    for (auto* v : {&same, &half, &zeros}) {
      const int64_t n = int64_t(v->size() / 8);
      auto y = map::umap_layout(v->data(), n, 8, o);
      ASSERT_TRUE(y.ok()) << y.error();
      EXPECT_TRUE(all_in_unit_square(*y)) << n;
    }
  }
  std::vector<float> bad = b.x;
  bad[3] = std::nanf("");
  auto y = map::umap_layout(bad.data(), 5, 8, o);
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.error().find("non-finite"), std::string::npos);
  o.n_neighbors = 1;
  EXPECT_FALSE(map::umap_layout(b.x.data(), 5, 8, o).ok());
}

TEST(MapLayout, InitsAndHnswPath) {
  const auto b = make_blobs(1500, 48, 6, 0.6f, 5);
  // HNSW (forced) against the exact kNN: recall of the 15 neighbours.
  UmapOptions o;
  o.threads = 2;
  o.knn_pca_dim = 0;  // isotropic blobs: neighbours live in every dimension
  auto exact = map::detail::exact_knn(b.x.data(), 1500, 48, 15, false, 2);
  auto approx = map::detail::hnsw_knn(b.x.data(), 1500, 48, 15, false, o, 2);
  ASSERT_TRUE(exact.ok() && approx.ok());
  int64_t hit = 0;
  for (int64_t i = 0; i < 1500; ++i)
    for (int a = 1; a < 15; ++a)
      for (int e = 1; e < 15; ++e) hit += approx->idx[size_t(i * 15 + a)] == exact->idx[size_t(i * 15 + e)];
  const double recall = double(hit) / (1500.0 * 14);
  std::printf("HNSW recall@14 %.4f\n", recall);
  EXPECT_GE(recall, 0.9);
  for (auto init : {map::Init::Spectral, map::Init::Pca, map::Init::Random}) {
    o.init = init;
    o.exact_knn_below = init == map::Init::Spectral ? 0 : 20000;
    o.n_epochs = 200;
    auto y = map::umap_layout(b.x.data(), 1500, 48, o);
    ASSERT_TRUE(y.ok()) << y.error();
    EXPECT_TRUE(all_in_unit_square(*y));
    EXPECT_GE(map::knn_class_agreement(y->data(), 1500, b.label.data(), 10), 0.9) << int(init);
  }
}

// The clustered kNN (the default from 4096 points on) against its exact twin, on data
// like embeddings: a 12-dimensional mixture seen through a random 256 x 12 map plus a
// little noise, so the 32-component projection fitted on 4096 of the 6000 rows holds the
// neighbours' structure.
TEST(MapLayout, ClusteredKnnAgreesWithExact) {
  const int n = 6000, dim = 256, latent = 12, k = 15;
  const auto z = make_blobs(n, latent, 8, 0.7f, 9);
  std::mt19937 rng(10);
  std::normal_distribution<float> g;
  std::vector<float> map_m(size_t(dim) * latent), x(size_t(n) * dim);
  for (auto& v : map_m) v = g(rng);
  for (int i = 0; i < n; ++i)
    for (int d = 0; d < dim; ++d) {
      float v = 0.02f * g(rng);
      for (int l = 0; l < latent; ++l) v += map_m[size_t(d) * latent + size_t(l)] * z.x[size_t(i) * latent + size_t(l)];
      x[size_t(i) * dim + size_t(d)] = v;
    }
  UmapOptions o;
  o.threads = 2;
  o.knn_pca_dim = 32;
  ASSERT_LT(o.knn_pca_rows, n);  // the fit sees a subsample
  auto exact = map::detail::exact_knn(x.data(), n, dim, k, false, 2);
  auto approx = map::detail::clustered_knn(x.data(), n, dim, k, false, o, 2);
  ASSERT_TRUE(exact.ok() && approx.ok());
  int64_t hit = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int a = 1; a < k; ++a)
      for (int e = 1; e < k; ++e) hit += approx->idx[size_t(i * k + a)] == exact->idx[size_t(i * k + e)];
  const double recall = double(hit) / (double(n) * (k - 1));
  std::printf("clustered kNN recall@14 %.4f\n", recall);
  EXPECT_GE(recall, 0.95);
}

// The randomized PCA fit (the kNN projection's) against the exact LAPACK one: the same
// leading subspace. Data with a decaying spectrum (12 latent factors of falling scale).
TEST(MapPieces, RandomizedPcaSpansTheExactSubspace) {
  const int n = 3000, dim = 200, latent = 12, m = 8;
  std::mt19937 rng(12);
  std::normal_distribution<float> g;
  std::vector<float> basis(size_t(latent) * dim), x(size_t(n) * dim);
  for (auto& v : basis) v = g(rng);
  for (int i = 0; i < n; ++i) {
    float f[latent];
    for (int l = 0; l < latent; ++l) f[l] = g(rng) * std::pow(0.75f, float(l));
    for (int d = 0; d < dim; ++d) {
      float v = 0.01f * g(rng);
      for (int l = 0; l < latent; ++l) v += f[l] * basis[size_t(l) * dim + size_t(d)];
      x[size_t(i) * dim + size_t(d)] = v;
    }
  }
  auto exact = map::detail::fit_pca(x.data(), n, dim, m, n, false);
  auto fast = map::detail::fit_pca(x.data(), n, dim, m, n, true);
  ASSERT_TRUE(exact.ok() && fast.ok());
  // Each exact axis lies in the randomized subspace: its projection keeps ~all its length.
  for (int c = 0; c < m; ++c) {
    double kept = 0;
    for (int r = 0; r < m; ++r) {
      double d = 0;
      for (int j = 0; j < dim; ++j)
        d += double(exact->axes[size_t(c) * dim + size_t(j)]) * fast->axes[size_t(r) * dim + size_t(j)];
      kept += d * d;
    }
    EXPECT_GT(kept, 0.999) << "axis " << c;
  }
}

// ---- map.bin: the database's cached layout ----

namespace {

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("imgsearch_map_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

constexpr int kDbDim = 16;

// A database of `n` unit vectors in 4 clusters, paths /photos/<cluster>/<i>.jpg.
std::unique_ptr<database::Database> make_db(const fs::path& dir, int n) {
  database::Settings s;
  s.representation.model = "efficientnet-lite0";
  s.representation.layer = "head";
  s.metric = index::Metric::Cosine;
  s.dim = kDbDim;
  auto db = database::Database::open_for_writing(dir, s);
  EXPECT_TRUE(db.ok()) << db.error();
  const auto b = make_blobs(n, kDbDim, 4, 0.3f, 9);
  std::vector<catalog::NewImage> adds;
  for (int i = 0; i < n; ++i) {
    catalog::NewImage img;
    img.record.path = img.record.key =
        "/photos/c" + std::to_string(b.label[size_t(i)]) + "/" + std::to_string(i) + ".jpg";
    img.record.size = 1;
    img.record.content_hash = "h" + std::to_string(i);
    img.vector.assign(b.x.begin() + i * kDbDim, b.x.begin() + (i + 1) * kDbDim);
    double norm = 0;
    for (float v : img.vector) norm += double(v) * v;
    for (float& v : img.vector) v = float(v / std::sqrt(norm));
    adds.push_back(std::move(img));
  }
  auto ids = (*db)->commit(adds, {});
  EXPECT_TRUE(ids.ok()) << ids.error();
  return std::move(*db);
}

}  // namespace

TEST(MapCache, RoundTripAndReuse) {
  TempDir dir;
  auto db = make_db(dir.path() / "db", 200);
  UmapOptions o;
  o.threads = 2;
  o.n_epochs = 50;
  auto first = map::load_or_compute_map(*db, o);
  ASSERT_TRUE(first.ok()) << first.error();
  EXPECT_FALSE(first->from_cache);
  EXPECT_EQ(first->cache_note, "");
  EXPECT_EQ(first->ids.size(), 200u);
  EXPECT_EQ(first->coords.size(), 400u);
  EXPECT_EQ(first->change_seq, db->catalog().change_seq());
  EXPECT_TRUE(std::is_sorted(first->ids.begin(), first->ids.end()));
  EXPECT_TRUE(all_in_unit_square(first->coords));
  ASSERT_TRUE(fs::exists(map::map_cache_path(db->dir())));

  auto again = map::load_or_compute_map(*db, o);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->from_cache);
  EXPECT_EQ(again->ids, first->ids);
  EXPECT_EQ(again->coords, first->coords);
  EXPECT_EQ(again->change_seq, first->change_seq);
  o.threads = 1;  // not part of the cache key
  EXPECT_TRUE(map::load_or_compute_map(*db, o)->from_cache);
  o.seed = 7;  // part of it
  auto reseeded = map::load_or_compute_map(*db, o);
  ASSERT_TRUE(reseeded.ok());
  EXPECT_FALSE(reseeded->from_cache);
  EXPECT_NE(reseeded->cache_note.find("other map options"), std::string::npos) << reseeded->cache_note;

  // The file format on its own.
  uint64_t fp = 0;
  auto read = map::read_map_cache(map::map_cache_path(db->dir()), &fp);
  ASSERT_TRUE(read.ok()) << read.error();
  EXPECT_EQ(fp, map::options_fingerprint([&] {
              auto c = o;
              c.metric = index::Metric::Cosine;
              return c;
            }()));
  EXPECT_EQ(read->coords, reseeded->coords);
  map::MapLayout empty;
  empty.change_seq = 5;
  ASSERT_TRUE(map::write_map_cache(dir.path() / "empty.bin", empty, 1).ok());
  auto e = map::read_map_cache(dir.path() / "empty.bin", &fp);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e->ids.empty());
  EXPECT_EQ(e->change_seq, 5);
}

TEST(MapCache, RecomputedWhenCatalogChanges) {
  TempDir dir;
  auto db = make_db(dir.path() / "db", 120);
  UmapOptions o;
  o.n_epochs = 50;
  auto first = map::load_or_compute_map(*db, o);
  ASSERT_TRUE(first.ok()) << first.error();
  catalog::NewImage img;
  img.record.path = img.record.key = "/photos/new/x.jpg";
  img.record.content_hash = "new";
  img.vector.assign(kDbDim, 0.25f);
  ASSERT_TRUE(db->commit(std::vector<catalog::NewImage>{img}, {}).ok());
  auto second = map::load_or_compute_map(*db, o);
  ASSERT_TRUE(second.ok()) << second.error();
  EXPECT_FALSE(second->from_cache);
  EXPECT_NE(second->cache_note.find("catalog"), std::string::npos) << second->cache_note;
  EXPECT_EQ(second->ids.size(), 121u);
  EXPECT_GT(second->change_seq, first->change_seq);
  const std::vector<int64_t> gone = {second->ids[0]};
  ASSERT_TRUE(db->commit({}, gone).ok());
  auto third = map::load_or_compute_map(*db, o);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->ids.size(), 120u);
  EXPECT_TRUE(map::load_or_compute_map(*db, o)->from_cache);
}

TEST(MapCache, DamagedFileIsRecomputed) {
  TempDir dir;
  auto db = make_db(dir.path() / "db", 100);
  UmapOptions o;
  o.n_epochs = 30;
  auto good = map::load_or_compute_map(*db, o);
  ASSERT_TRUE(good.ok());
  const auto path = map::map_cache_path(db->dir());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto damage = [&](const std::string& content) { std::ofstream(path, std::ios::binary | std::ios::trunc) << content; };
  std::string flipped = bytes;
  flipped[100] ^= 0x55;  // payload: checksum
  std::string bad_version = bytes;
  bad_version[8] = 9;
  std::string far = bytes;  // consistent checksum, coordinate out of range: caught too
  const struct {
    std::string name, content;
  } cases[] = {{"empty", ""},
               {"truncated", bytes.substr(0, bytes.size() - 5)},
               {"header only", bytes.substr(0, 40)},
               {"garbage", std::string(2000, 'x')},
               {"flipped", flipped},
               {"version", bad_version},
               {"padded", bytes + "zz"}};
  for (const auto& c : cases) {
    damage(c.content);
    auto r = map::load_or_compute_map(*db, o);
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.error();
    EXPECT_FALSE(r->from_cache) << c.name;
    EXPECT_FALSE(r->cache_note.empty()) << c.name;
    EXPECT_EQ(r->coords, good->coords) << c.name;  // same seed and threads: same layout
    EXPECT_TRUE(map::load_or_compute_map(*db, o)->from_cache) << c.name << ": rewritten";
  }
}

TEST(MapPlot, FolderClassesAndPng) {
  EXPECT_EQ(map::folder_classes({"/a/b/cat/1.jpg", "/a/b/dog/x/2.jpg", "/a/b/3.jpg"}),
            (std::vector<std::string>{"cat", "dog", "(top level)"}));
  EXPECT_EQ(map::folder_classes({"/a/b/1.jpg", "/a/b/2.jpg"}),
            (std::vector<std::string>{"(top level)", "(top level)"}));
  EXPECT_EQ(map::folder_classes({"rel/x/1.jpg", "rel/y/2.jpg"}), (std::vector<std::string>{"x", "y"}));
  EXPECT_TRUE(map::folder_classes({}).empty());
  TempDir dir;
  std::vector<float> xy;
  std::vector<std::string> classes;
  for (int i = 0; i < 300; ++i) {  // 25 classes: more than the palette, and a name needing escapes
    xy.push_back(float(i % 17) / 16.0f);
    xy.push_back(float(i % 13) / 12.0f);
    classes.push_back(i % 25 == 0 ? "a<b>&\xff" : "class" + std::to_string(i % 25));
  }
  const auto png = dir.path() / "map.png";
  map::PlotOptions p;
  p.size = 400;
  p.title = "test";
  auto s = map::render_map_png(png, xy, classes, p);
  ASSERT_TRUE(s.ok()) << s.error();
  std::ifstream in(png, std::ios::binary);
  char sig[8] = {};
  in.read(sig, 8);
  EXPECT_EQ(std::string(sig + 1, 3), "PNG");
  EXPECT_FALSE(map::render_map_png(png, {0.5f}, classes, p).ok());
  EXPECT_FALSE(map::render_map_png(dir.path() / "no" / "such" / "dir.png", xy, classes, p).ok());
}
