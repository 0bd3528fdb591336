// The fuzzy simplicial set of UMAP (umap-learn's smooth_knn_dist,
// compute_membership_strengths and fuzzy union), the a/b curve fit, and small helpers.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "map/umap_internal.h"

namespace imgsearch::map::detail {

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t, int)>& fn, int64_t min_chunk) {
  const int64_t chunks = (n + std::max<int64_t>(1, min_chunk) - 1) / std::max<int64_t>(1, min_chunk);
  const int t = int(std::max<int64_t>(1, std::min<int64_t>(resolve_threads(threads), chunks)));
  if (t <= 1) {
    if (n > 0) fn(0, n, 0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(size_t(t));
  for (int w = 0; w < t; ++w) pool.emplace_back([&fn, n, t, w] { fn(n * w / t, n * (w + 1) / t, w); });
  for (auto& th : pool) th.join();
}

void smooth_knn_dist(const Knn& knn, std::vector<float>* sigma, std::vector<float>* rho, int threads) {
  constexpr int kIterations = 64;
  constexpr double kTolerance = 1e-5, kMinScale = 1e-3;
  const int k = knn.k;
  const double target = std::log2(double(k));
  sigma->assign(size_t(knn.n), 0.0f);
  rho->assign(size_t(knn.n), 0.0f);
  // umap-learn's floor for sigma uses the mean over all distances; padding (+inf) is left out.
  double total = 0;
  int64_t count = 0;
  for (float d : knn.dist)
    if (std::isfinite(d)) total += d, ++count;
  const double mean_all = count > 0 ? total / double(count) : 0.0;
  parallel_for(knn.n, threads, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      const float* d = &knn.dist[size_t(i) * size_t(k)];
      const int32_t* idx = &knn.idx[size_t(i) * size_t(k)];
      float r = 0.0f;  // first non-zero distance (local_connectivity = 1)
      for (int j = 0; j < k; ++j)
        if (idx[j] >= 0 && d[j] > 0.0f) {
          r = d[j];
          break;
        }
      double lo = 0.0, hi = std::numeric_limits<double>::infinity(), mid = 1.0;
      for (int it = 0; it < kIterations; ++it) {
        double psum = 0.0;
        for (int j = 1; j < k; ++j) {
          if (idx[j] < 0) continue;  // a missing neighbour contributes exp(-inf) = 0
          const double dd = double(d[j]) - r;
          psum += dd > 0 ? std::exp(-(dd / mid)) : 1.0;
        }
        if (std::fabs(psum - target) < kTolerance) break;
        if (psum > target) {
          hi = mid;
          mid = (lo + hi) / 2.0;
        } else {
          lo = mid;
          mid = std::isinf(hi) ? mid * 2 : (lo + hi) / 2.0;
        }
      }
      if (r > 0.0f) {
        double row_mean = 0;
        int valid = 0;
        for (int j = 0; j < k; ++j)
          if (idx[j] >= 0) row_mean += d[j], ++valid;
        row_mean /= std::max(valid, 1);
        mid = std::max(mid, kMinScale * row_mean);
      } else {
        mid = std::max(mid, kMinScale * mean_all);
      }
      (*sigma)[size_t(i)] = float(mid);
      (*rho)[size_t(i)] = r;
    }
  });
}

Graph fuzzy_simplicial_set(const Knn& knn, const std::vector<float>& sigma, const std::vector<float>& rho) {
  const int64_t n = knn.n;
  const int k = knn.k;
  // Directed memberships A (row i: its neighbours), in CSR with rows sorted by column.
  std::vector<int64_t> a_ptr(size_t(n) + 1, 0);
  std::vector<int32_t> a_col;
  std::vector<float> a_val;
  a_col.reserve(size_t(n) * size_t(k));
  a_val.reserve(size_t(n) * size_t(k));
  std::vector<std::pair<int32_t, float>> row;
  for (int64_t i = 0; i < n; ++i) {
    row.clear();
    for (int j = 0; j < k; ++j) {
      const int32_t c = knn.idx[size_t(i) * size_t(k) + size_t(j)];
      if (c < 0 || c == i) continue;
      const float d = knn.dist[size_t(i) * size_t(k) + size_t(j)];
      const float s = sigma[size_t(i)], r = rho[size_t(i)];
      const float v = (d - r <= 0.0f || s == 0.0f) ? 1.0f : std::exp(-((d - r) / s));
      if (v > 0.0f) row.emplace_back(c, v);  // eliminate_zeros
    }
    std::sort(row.begin(), row.end());
    for (auto [c, v] : row) a_col.push_back(c), a_val.push_back(v);
    a_ptr[size_t(i) + 1] = int64_t(a_col.size());
  }
  // A^T by counting; filling rows in increasing i keeps each of its rows sorted.
  std::vector<int64_t> t_ptr(size_t(n) + 1, 0);
  for (int32_t c : a_col) ++t_ptr[size_t(c) + 1];
  std::partial_sum(t_ptr.begin(), t_ptr.end(), t_ptr.begin());
  std::vector<int32_t> t_col(a_col.size());
  std::vector<float> t_val(a_col.size());
  {
    std::vector<int64_t> fill(t_ptr.begin(), t_ptr.end() - 1);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = a_ptr[size_t(i)]; p < a_ptr[size_t(i) + 1]; ++p) {
        const auto c = size_t(a_col[size_t(p)]);
        t_col[size_t(fill[c])] = int32_t(i);
        t_val[size_t(fill[c]++)] = a_val[size_t(p)];
      }
  }
  // Fuzzy union, row by row: a + b - a b where both directions exist.
  Graph g;
  g.n = n;
  g.indptr.assign(size_t(n) + 1, 0);
  g.indices.reserve(a_col.size() * 2);
  g.weights.reserve(a_col.size() * 2);
  for (int64_t i = 0; i < n; ++i) {
    int64_t p = a_ptr[size_t(i)], q = t_ptr[size_t(i)];
    const int64_t pe = a_ptr[size_t(i) + 1], qe = t_ptr[size_t(i) + 1];
    while (p < pe || q < qe) {
      const int32_t cp = p < pe ? a_col[size_t(p)] : std::numeric_limits<int32_t>::max();
      const int32_t cq = q < qe ? t_col[size_t(q)] : std::numeric_limits<int32_t>::max();
      float w;
      int32_t c;
      if (cp == cq) {
        const float x = a_val[size_t(p++)], y = t_val[size_t(q++)];
        w = x + y - x * y;
        c = cp;
      } else if (cp < cq) {
        w = a_val[size_t(p++)];
        c = cp;
      } else {
        w = t_val[size_t(q++)];
        c = cq;
      }
      if (w > 0.0f) g.indices.push_back(c), g.weights.push_back(w);
    }
    g.indptr[size_t(i) + 1] = int64_t(g.indices.size());
  }
  return g;
}

void prune_graph(Graph* g, float threshold) {
  int64_t out = 0, start = 0;
  for (int64_t i = 0; i < g->n; ++i) {
    const int64_t end = g->indptr[size_t(i) + 1];
    for (int64_t p = start; p < end; ++p)
      if (g->weights[size_t(p)] >= threshold) {
        g->indices[size_t(out)] = g->indices[size_t(p)];
        g->weights[size_t(out++)] = g->weights[size_t(p)];
      }
    start = end;
    g->indptr[size_t(i) + 1] = out;
  }
  g->indices.resize(size_t(out));
  g->weights.resize(size_t(out));
}

void find_ab_params(double spread, double min_dist, double* a_out, double* b_out) {
  // Levenberg-Marquardt from (1, 1), as scipy's curve_fit does (MINPACK lmdif).
  constexpr int kPoints = 300;
  std::vector<double> xs(kPoints), ys(kPoints);
  for (int i = 0; i < kPoints; ++i) {
    xs[size_t(i)] = spread * 3.0 * i / (kPoints - 1);
    ys[size_t(i)] = xs[size_t(i)] < min_dist ? 1.0 : std::exp(-(xs[size_t(i)] - min_dist) / spread);
  }
  auto cost = [&](double a, double b) {
    double c = 0;
    for (int i = 0; i < kPoints; ++i) {
      const double r = 1.0 / (1.0 + a * std::pow(xs[size_t(i)], 2 * b)) - ys[size_t(i)];
      c += r * r;
    }
    return c;
  };
  double a = 1.0, b = 1.0, lambda = 1e-3, c = cost(a, b);
  bool converged = false;
  for (int it = 0; it < 500 && !converged; ++it) {
    double jaa = 0, jab = 0, jbb = 0, ga = 0, gb = 0;
    for (int i = 0; i < kPoints; ++i) {
      const double x = xs[size_t(i)];
      const double p = x > 0 ? std::pow(x, 2 * b) : 0.0;
      const double f = 1.0 / (1.0 + a * p), r = f - ys[size_t(i)];
      const double da = -p * f * f;
      const double db = x > 0 ? -a * p * 2.0 * std::log(x) * f * f : 0.0;
      jaa += da * da, jab += da * db, jbb += db * db, ga += da * r, gb += db * r;
    }
    bool improved = false;
    for (int tries = 0; tries < 30 && !improved; ++tries) {
      const double m11 = jaa * (1 + lambda), m22 = jbb * (1 + lambda), det = m11 * m22 - jab * jab;
      if (det == 0) break;
      const double step_a = -(m22 * ga - jab * gb) / det, step_b = -(m11 * gb - jab * ga) / det;
      const double nc = cost(a + step_a, b + step_b);
      if (nc < c) {
        improved = true;
        const double rel = (c - nc) / std::max(c, 1e-300);
        a += step_a, b += step_b, c = nc;
        lambda = std::max(lambda / 10, 1e-12);
        converged = rel < 1e-15;
      } else {
        lambda *= 10;
      }
    }
    if (!improved) break;
  }
  *a_out = a;
  *b_out = b;
}

int connected_components(const Graph& g, std::vector<int32_t>* labels) {
  labels->assign(size_t(g.n), -1);
  int count = 0;
  std::vector<int32_t> stack;
  for (int64_t s = 0; s < g.n; ++s) {
    if ((*labels)[size_t(s)] >= 0) continue;
    (*labels)[size_t(s)] = count;
    stack.assign(1, int32_t(s));
    while (!stack.empty()) {
      const int32_t v = stack.back();
      stack.pop_back();
      for (int64_t p = g.indptr[size_t(v)]; p < g.indptr[size_t(v) + 1]; ++p) {
        const int32_t u = g.indices[size_t(p)];
        if ((*labels)[size_t(u)] < 0) (*labels)[size_t(u)] = count, stack.push_back(u);
      }
    }
    ++count;
  }
  return count;
}

}  // namespace imgsearch::map::detail
