// umap_layout(): the UMAP pipeline (see umap.h), and the layout quality measures.
#include "map/umap.h"

#include <sys/resource.h>  // getrusage: CPU time in verbose stage timings

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <queue>
#include <string>

#include "map/linalg.h"
#include "map/umap_internal.h"

namespace imgsearch::map {
namespace {

using detail::parallel_for;

double cpu_seconds() {  // the process's, all threads (BLAS and OpenMP ones included)
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return double(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + 1e-6 * double(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

Status check_options(const UmapOptions& o) {
  if (o.n_neighbors < 2) return make_error("n_neighbors must be at least 2");
  if (!(o.spread > 0) || !std::isfinite(o.spread)) return make_error("spread must be positive");
  if (!(o.min_dist >= 0) || o.min_dist > o.spread) return make_error("min_dist must be in [0, spread]");
  if (o.n_epochs < 0) return make_error("n_epochs must be >= 0");
  if (o.negative_sample_rate < 0) return make_error("negative_sample_rate must be >= 0");
  if (!(o.learning_rate > 0) || !(o.repulsion_strength >= 0)) return make_error("bad learning rate or repulsion");
  return {};
}

// Scales so the largest |coordinate| is 10 and adds N(0, 1e-4) noise (umap-learn's
// noisy_scale_coords), then maps each axis to [0, 10] as umap-learn does before the SGD.
void prepare_start(std::vector<float>* y, uint64_t seed) {
  float big = 0.0f;
  for (float v : *y) big = std::max(big, std::fabs(v));
  const float expansion = big > 0 ? 10.0f / big : 1.0f;
  detail::Rng rng(seed ^ 0x401ceull);
  for (auto& v : *y) v = v * expansion + float(rng.normal() * 1e-4);
  const size_t n = y->size() / 2;
  for (int axis = 0; axis < 2; ++axis) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (size_t i = 0; i < n; ++i)
      lo = std::min(lo, (*y)[i * 2 + size_t(axis)]), hi = std::max(hi, (*y)[i * 2 + size_t(axis)]);
    const float range = hi - lo;
    for (size_t i = 0; i < n; ++i) {
      float& v = (*y)[i * 2 + size_t(axis)];
      v = range > 0 ? 10.0f * (v - lo) / range : 5.0f;
    }
  }
}

// Longest side to [0, 1], the other centred: keeps 2-D distances in proportion.
void normalise_unit(std::vector<float>* y) {
  const size_t n = y->size() / 2;
  float lo[2] = {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity()};
  float hi[2] = {-lo[0], -lo[1]};
  for (size_t i = 0; i < n; ++i)
    for (int a = 0; a < 2; ++a)
      lo[a] = std::min(lo[a], (*y)[i * 2 + size_t(a)]), hi[a] = std::max(hi[a], (*y)[i * 2 + size_t(a)]);
  const float span = std::max(hi[0] - lo[0], hi[1] - lo[1]);
  for (size_t i = 0; i < n; ++i)
    for (int a = 0; a < 2; ++a) {
      float& v = (*y)[i * 2 + size_t(a)];
      v = span > 0 ? std::clamp(0.5f + (v - 0.5f * (lo[a] + hi[a])) / span, 0.0f, 1.0f) : 0.5f;
    }
}

// The k nearest 2-D neighbours of every point (itself excluded), by (squared distance,
// index). out: n x k.
void knn_2d(const float* y, int64_t n, int k, std::vector<int64_t>* out) {
  out->assign(size_t(n) * size_t(k), -1);
  parallel_for(n, 0, [&](int64_t b, int64_t e, int) {
    std::priority_queue<std::pair<float, int64_t>> heap;  // worst on top
    std::vector<std::pair<float, int64_t>> sorted;
    for (int64_t i = b; i < e; ++i) {
      const float xi = y[i * 2], yi = y[i * 2 + 1];
      for (int64_t j = 0; j < n; ++j) {
        if (j == i) continue;
        const float dx = y[j * 2] - xi, dy = y[j * 2 + 1] - yi;
        const std::pair<float, int64_t> c{dx * dx + dy * dy, j};
        if (int(heap.size()) < k) {
          heap.push(c);
        } else if (c < heap.top()) {
          heap.pop();
          heap.push(c);
        }
      }
      sorted.clear();
      while (!heap.empty()) sorted.push_back(heap.top()), heap.pop();
      std::reverse(sorted.begin(), sorted.end());
      for (size_t r = 0; r < sorted.size(); ++r) (*out)[size_t(i) * size_t(k) + r] = sorted[r].second;
    }
  });
}

}  // namespace

Result<std::vector<float>> umap_layout(const float* x, int64_t n, int dim, const UmapOptions& o) {
  if (auto s = check_options(o); !s) return make_error(s.error());
  if (n < 0) return make_error("negative number of vectors");
  if (n == 0) return std::vector<float>{};
  if (x == nullptr || dim < 1) return make_error("no vectors given");
  if (n >= int64_t(std::numeric_limits<int32_t>::max())) return make_error("too many vectors for a map");
  std::atomic<int64_t> bad{-1};
  parallel_for(n, o.threads, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e && bad.load() < 0; ++i)
      for (int j = 0; j < dim; ++j)
        if (!std::isfinite(x[size_t(i) * size_t(dim) + size_t(j)])) {
          int64_t none = -1;
          bad.compare_exchange_strong(none, i);
          break;
        }
  });
  if (bad.load() >= 0) return make_error("vector " + std::to_string(bad.load()) + " has a non-finite component");
  if (n == 1) return std::vector<float>{0.5f, 0.5f};

  const int threads = detail::resolve_threads(o.threads);
  auto t0 = std::chrono::steady_clock::now();
  double c0 = cpu_seconds();
  auto stage = [&](const char* what) {
    if (!o.verbose) return;
    const auto now = std::chrono::steady_clock::now();
    const double c = cpu_seconds();
    std::fprintf(stderr, "umap: %-22s %8.3f s wall %8.3f s cpu\n", what,
                 std::chrono::duration<double>(now - t0).count(), c - c0);
    t0 = now;
    c0 = c;
  };
  const bool cosine = o.metric != index::Metric::L2;
  // Cosine distances come from inner products of unit rows; catalogues already store
  // them so, and a copy is made only when some row is not.
  std::vector<float> unit;
  const float* data = x;
  if (cosine) {
    std::atomic<bool> all_unit{true};
    parallel_for(n, threads, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e && all_unit.load(); ++i) {
        double s = 0;
        for (int j = 0; j < dim; ++j)
          s += double(x[size_t(i) * size_t(dim) + size_t(j)]) * x[size_t(i) * size_t(dim) + size_t(j)];
        if (std::fabs(s - 1.0) > 1e-4 && s != 0.0) all_unit = false;
      }
    });
    if (!all_unit) {
      unit.assign(x, x + size_t(n) * size_t(dim));
      parallel_for(n, threads, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) {
          float* r = &unit[size_t(i) * size_t(dim)];
          double s = 0;
          for (int j = 0; j < dim; ++j) s += double(r[j]) * r[j];
          if (s > 0)
            for (int j = 0; j < dim; ++j) r[j] = float(r[j] / std::sqrt(s));
        }
      });
      data = unit.data();
    }
  }

  const int k = int(std::min<int64_t>(o.n_neighbors, n));
  const bool exact = n < o.exact_knn_below;
  const bool hnsw = o.approx_knn == UmapOptions::ApproxKnn::Hnsw;
  auto knn = exact  ? detail::exact_knn(data, n, dim, k, cosine, threads)
             : hnsw ? detail::hnsw_knn(data, n, dim, k, cosine, o, threads)
                    : detail::clustered_knn(data, n, dim, k, cosine, o, threads);
  if (!knn) return make_error(knn.error());
  stage(exact ? "exact kNN" : hnsw ? "HNSW kNN" : "clustered kNN");
  std::vector<float> sigma, rho;
  detail::smooth_knn_dist(*knn, &sigma, &rho, threads);
  detail::Graph graph = detail::fuzzy_simplicial_set(*knn, sigma, rho);
  knn = Error{};  // free the neighbour lists
  stage("fuzzy simplicial set");

  const int default_epochs = n <= 10000 ? 500 : 200;
  const int n_epochs = o.n_epochs > 0 ? o.n_epochs : default_epochs;
  float wmax = 0.0f;
  for (float w : graph.weights) wmax = std::max(wmax, w);
  detail::prune_graph(&graph, wmax / float(n_epochs > 10 ? n_epochs : default_epochs));

  std::vector<float> y(size_t(n) * 2);
  if (o.init == Init::Spectral) {
    y = detail::spectral_layout(graph, data, dim, cosine, o.seed, threads);
  } else if (o.init == Init::Pca) {
    auto pca = detail::fit_pca(data, n, dim, 2, 20000);
    if (!pca) return make_error(pca.error());
    std::vector<float> proj(size_t(n) * size_t(pca->m), 0.0f);
    detail::pca_project(*pca, data, n, proj.data(), threads);
    for (int64_t i = 0; i < n; ++i)
      for (int c = 0; c < pca->m; ++c) y[size_t(i) * 2 + size_t(c)] = proj[size_t(i) * size_t(pca->m) + size_t(c)];
  } else {
    detail::Rng rng(o.seed);
    for (auto& v : y) v = float(rng.uniform() * 20.0 - 10.0);
  }
  prepare_start(&y, o.seed);
  stage("initialisation");

  detail::SgdParams p;
  detail::find_ab_params(o.spread, o.min_dist, &p.a, &p.b);
  p.n_epochs = n_epochs;
  p.gamma = o.repulsion_strength;
  p.learning_rate = o.learning_rate;
  p.negative_sample_rate = o.negative_sample_rate;
  p.seed = o.seed;
  p.threads = threads;
  detail::optimize_layout(&y, graph, p);
  stage("SGD");
  for (float v : y)
    if (!std::isfinite(v)) return make_error("the layout diverged (non-finite coordinates)");
  normalise_unit(&y);
  return y;
}

double trustworthiness(const float* x, int64_t n, int dim, const float* y2d, int k, index::Metric metric) {
  if (n < 2 || k < 1 || double(k) >= double(n) / 2.0 || dim < 1) return std::numeric_limits<double>::quiet_NaN();
  std::vector<int64_t> emb;
  knn_2d(y2d, n, k, &emb);
  // Original-space distances in double (sklearn upcasts float32 for Euclidean distances).
  const bool cosine = metric != index::Metric::L2;
  std::vector<double> xd(size_t(n) * size_t(dim)), sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (int j = 0; j < dim; ++j)
      s += double(x[size_t(i) * size_t(dim) + size_t(j)]) * x[size_t(i) * size_t(dim) + size_t(j)];
    const double scale = cosine && s > 0 ? 1.0 / std::sqrt(s) : 1.0;
    for (int j = 0; j < dim; ++j)
      xd[size_t(i) * size_t(dim) + size_t(j)] = x[size_t(i) * size_t(dim) + size_t(j)] * scale;
    sq[size_t(i)] = cosine ? (s > 0 ? 1.0 : 0.0) : s;
  }
  constexpr int64_t kBlock = 256;
  std::vector<double> dots(size_t(kBlock) * size_t(n));
  std::vector<double> penalty(size_t(n), 0.0);
  for (int64_t b = 0; b < n; b += kBlock) {
    const int rows = int(std::min(kBlock, n - b));
    detail::gemm_abt(rows, int(n), dim, &xd[size_t(b) * size_t(dim)], dim, xd.data(), dim, dots.data(), int(n));
    parallel_for(rows, 0, [&](int64_t rb, int64_t re, int) {
      std::vector<double> d(static_cast<size_t>(n));
      for (int64_t r = rb; r < re; ++r) {
        const int64_t i = b + r;
        const double* row = &dots[size_t(r) * size_t(n)];
        for (int64_t j = 0; j < n; ++j)
          d[size_t(j)] = cosine ? 1.0 - row[j] : sq[size_t(i)] + sq[size_t(j)] - 2.0 * row[j];
        double t = 0;
        for (int c = 0; c < k; ++c) {
          const int64_t j = emb[size_t(i) * size_t(k) + size_t(c)];
          if (j < 0) continue;
          const double dj = d[size_t(j)];
          int64_t rank = 1;  // 1 + points ranked before j, as sklearn's inverted index
          for (int64_t l = 0; l < n; ++l) rank += (l != i) & ((d[size_t(l)] < dj) | ((d[size_t(l)] == dj) & (l < j)));
          t += double(std::max<int64_t>(0, rank - k));
        }
        penalty[size_t(i)] = t;
      }
    });
  }
  double t = 0;
  for (double v : penalty) t += v;
  const double nn = double(n), kk = double(k);
  return 1.0 - t * (2.0 / (nn * kk * (2.0 * nn - 3.0 * kk - 1.0)));
}

double knn_class_agreement(const float* y2d, int64_t n, const int* labels, int k) {
  if (n < 2 || k < 1) return std::numeric_limits<double>::quiet_NaN();
  const int kk = int(std::min<int64_t>(k, n - 1));
  std::vector<int64_t> nb;
  knn_2d(y2d, n, kk, &nb);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    int same = 0;
    for (int c = 0; c < kk; ++c) same += labels[nb[size_t(i) * size_t(kk) + size_t(c)]] == labels[i];
    total += double(same) / kk;
  }
  return total / double(n);
}

}  // namespace imgsearch::map
