// k-nearest-neighbour graph for UMAP: exact (FAISS IndexFlat, BLAS) or HNSW on principal
// components with exact re-ranking; plus the PCA both the HNSW path and PCA init use.
#include <faiss/Clustering.h>  // Clustering: k-means cells for clustered_knn
#include <faiss/IndexFlat.h>   // IndexFlat
#include <faiss/IndexHNSW.h>   // IndexHNSWFlat
#include <omp.h>               // omp_set_num_threads: FAISS parallelises with OpenMP

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <limits>
#include <numeric>
#include <string>

#include "map/linalg.h"
#include "map/umap_internal.h"

namespace imgsearch::map::detail {
namespace {

// omp_set_num_threads changes only the calling thread's setting, so this does not leak
// into other threads of the process (a server thread doing searches).
class OmpThreads {
 public:
  explicit OmpThreads(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~OmpThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

float dot(const float* a, const float* b, int dim) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < dim; ++j) s += a[j] * b[j];
  return s;
}

float l2sq(const float* a, const float* b, int dim) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < dim; ++j) s += (a[j] - b[j]) * (a[j] - b[j]);
  return s;
}

// Row i of the result: i itself at distance 0, then the other candidates by (distance,
// index), without -1 entries or repeats of i; padded with -1 / +inf.
void finish_row(int64_t i, const int64_t* cand, const float* d, int nc, int k, int32_t* out_idx, float* out_d,
                std::vector<std::pair<float, int32_t>>* scratch) {
  auto& s = *scratch;
  s.clear();
  for (int c = 0; c < nc; ++c)
    if (cand[c] >= 0 && cand[c] != i) s.emplace_back(d[c], int32_t(cand[c]));
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end(), [](auto& a, auto& b) { return a.second == b.second; }), s.end());
  out_idx[0] = int32_t(i);
  out_d[0] = 0.0f;
  for (int j = 1; j < k; ++j) {
    const bool have = size_t(j - 1) < s.size();
    out_idx[j] = have ? s[size_t(j - 1)].second : -1;
    out_d[j] = have ? s[size_t(j - 1)].first : std::numeric_limits<float>::infinity();
  }
}

}  // namespace

Result<Knn> exact_knn(const float* x, int64_t n, int dim, int k, bool cosine, int threads) {
  // Blocked brute force over the upper triangle only: each block of inner products
  // X_I X_J^T (one BLAS sgemm) serves the rows of I and, transposed, those of J, which
  // halves the work of a plain search. Each row keeps its best kc by (distance, index), a
  // total order, so the result does not depend on the order blocks are visited in.
  const int kc = int(std::min<int64_t>(n, k + 1));  // one spare: a duplicate may rank above i itself
  constexpr int64_t kBlock = 1024;
  std::vector<float> sq(static_cast<size_t>(n), 0.0f);
  if (!cosine)
    parallel_for(n, threads, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i)
        sq[size_t(i)] = dot(x + size_t(i) * size_t(dim), x + size_t(i) * size_t(dim), dim);
    });
  // Per row: a max-heap of (distance, index) with kc entries; worst[i] is its top once full.
  std::vector<std::pair<float, int32_t>> heap(size_t(n) * size_t(kc));
  std::vector<int> fill(static_cast<size_t>(n), 0);
  std::vector<float> worst(static_cast<size_t>(n), std::numeric_limits<float>::infinity());
  auto offer = [&](int64_t i, float d, int32_t j) {
    auto* h = &heap[size_t(i) * size_t(kc)];
    int& f = fill[size_t(i)];
    const std::pair<float, int32_t> c{d, j};
    if (f < kc) {
      h[f++] = c;
      std::push_heap(h, h + f);
      if (f == kc) worst[size_t(i)] = h[0].first;
    } else if (c < h[0]) {
      std::pop_heap(h, h + kc);
      h[kc - 1] = c;
      std::push_heap(h, h + kc);
      worst[size_t(i)] = h[0].first;
    }
  };
  auto distance = [&](float ip, int64_t i, int64_t j) {
    return cosine ? std::max(0.0f, 1.0f - ip) : std::sqrt(std::max(0.0f, sq[size_t(i)] + sq[size_t(j)] - 2.0f * ip));
  };
  std::vector<float> block(size_t(std::min(n, kBlock)) * size_t(std::min(n, kBlock)));
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t bi = std::min(kBlock, n - i0);
    for (int64_t j0 = i0; j0 < n; j0 += kBlock) {
      const int64_t bj = std::min(kBlock, n - j0);
      gemm_abt(int(bi), int(bj), dim, x + size_t(i0) * size_t(dim), dim, x + size_t(j0) * size_t(dim), dim,
               block.data(), int(bj));
      parallel_for(bi, threads, [&](int64_t b, int64_t e, int) {  // rows of I
        for (int64_t r = b; r < e; ++r) {
          const float* g = &block[size_t(r) * size_t(bj)];
          for (int64_t c = 0; c < bj; ++c) {
            const float d = distance(g[c], i0 + r, j0 + c);
            if (d <= worst[size_t(i0 + r)] && i0 + r != j0 + c) offer(i0 + r, d, int32_t(j0 + c));
          }
        }
      });
      if (j0 == i0) continue;
      parallel_for(bj, threads, [&](int64_t b, int64_t e, int) {  // rows of J, from the columns
        for (int64_t c = b; c < e; ++c)
          for (int64_t r = 0; r < bi; ++r) {
            const float d = distance(block[size_t(r) * size_t(bj) + size_t(c)], i0 + r, j0 + c);
            if (d <= worst[size_t(j0 + c)]) offer(j0 + c, d, int32_t(i0 + r));
          }
      });
    }
  }
  Knn out;
  out.n = n;
  out.k = k;
  out.idx.assign(size_t(n) * size_t(k), -1);
  out.dist.assign(size_t(n) * size_t(k), 0.0f);
  parallel_for(n, threads, [&](int64_t b, int64_t e, int) {
    std::vector<std::pair<float, int32_t>> scratch;
    std::vector<int64_t> cand;
    std::vector<float> d;
    for (int64_t i = b; i < e; ++i) {
      const auto* h = &heap[size_t(i) * size_t(kc)];
      cand.clear();
      d.clear();
      for (int c = 0; c < fill[size_t(i)]; ++c) cand.push_back(h[c].second), d.push_back(h[c].first);
      finish_row(i, cand.data(), d.data(), int(cand.size()), k, &out.idx[size_t(i) * size_t(k)],
                 &out.dist[size_t(i) * size_t(k)], &scratch);
    }
  });
  return out;
}

namespace {

// The leading principal components of x (knn_pca_dim of them; none when 0 or dim is
// already small), where approximate candidates are found before exact re-ranking.
Result<std::vector<float>> project_for_search(const float* x, int64_t n, int dim, const UmapOptions& o, int threads,
                                              int* out_dim) {
  *out_dim = dim;
  if (o.knn_pca_dim <= 0 || dim <= o.knn_pca_dim) return std::vector<float>(x, x + size_t(n) * size_t(dim));
  auto pca = fit_pca(x, n, dim, o.knn_pca_dim, std::max<int64_t>(o.knn_pca_rows, o.knn_pca_dim), true);
  if (!pca) return make_error(pca.error());
  std::vector<float> z(size_t(n) * size_t(pca->m));
  pca_project(*pca, x, n, z.data(), threads);
  *out_dim = pca->m;
  return z;
}

// Candidates (n x kc, -1 padded) re-ranked by exact distance in the original space.
Knn rerank(const float* x, int64_t n, int dim, int k, bool cosine, const std::vector<int64_t>& ids, int kc,
           int threads) {
  Knn out;
  out.n = n;
  out.k = k;
  out.idx.assign(size_t(n) * size_t(k), -1);
  out.dist.assign(size_t(n) * size_t(k), 0.0f);
  parallel_for(n, threads, [&](int64_t b, int64_t e, int) {
    std::vector<std::pair<float, int32_t>> scratch;
    std::vector<float> d(static_cast<size_t>(kc));
    for (int64_t i = b; i < e; ++i) {
      const float* xi = x + size_t(i) * size_t(dim);
      const int64_t* cand = &ids[size_t(i) * size_t(kc)];
      for (int c = 0; c < kc; ++c) {
        if (cand[c] < 0) continue;
        const float* xc = x + size_t(cand[c]) * size_t(dim);
        d[size_t(c)] = cosine ? std::max(0.0f, 1.0f - dot(xi, xc, dim)) : std::sqrt(l2sq(xi, xc, dim));
      }
      finish_row(i, cand, d.data(), kc, k, &out.idx[size_t(i) * size_t(k)], &out.dist[size_t(i) * size_t(k)], &scratch);
    }
  });
  return out;
}

}  // namespace

Result<Knn> clustered_knn(const float* x, int64_t n, int dim, int k, bool cosine, const UmapOptions& o, int threads) {
  auto t0 = std::chrono::steady_clock::now();
  auto step = [&](const char* what) {  // sub-stage wall times with UmapOptions::verbose
    if (!o.verbose) return;
    const auto now = std::chrono::steady_clock::now();
    std::fprintf(stderr, "umap:   %-20s %8.3f s wall\n", what, std::chrono::duration<double>(now - t0).count());
    t0 = now;
  };
  int wd = 0;
  auto z = project_for_search(x, n, dim, o, threads, &wd);
  if (!z) return make_error(z.error());
  step("PCA projection");
  // About sqrt(n) cells of about sqrt(n) points; each is searched against its knn_probe
  // nearest cells. L2 in the projection ranks like cosine for unit rows.
  const int cells = int(std::clamp<int64_t>(int64_t(std::lround(std::sqrt(double(n)))), 1, 65536));
  const int probe = std::clamp(o.knn_probe, 1, cells);
  const int kc = int(std::min<int64_t>(n, int64_t(std::max(1, o.knn_candidates_factor)) * k + 1));
  std::vector<int64_t> cell_of(static_cast<size_t>(n)), near_cells(size_t(cells) * size_t(probe));
  std::vector<float> centroids;
  try {
    faiss::ClusteringParameters cp;
    cp.niter = 20;
    // OpenMP pays a fork/join per step, and many when a core is busy elsewhere (1.3 s
    // instead of 0.2 s for 10k points under load): one thread unless the k-means is large.
    const double flops = 2.0 * double(n) * cells * wd * cp.niter;
    OmpThreads omp(flops < 2e10 ? 1 : threads);
    cp.seed = int(o.seed & 0x7fffffff);
    cp.min_points_per_centroid = 1;  // no warning for small inputs
    cp.max_points_per_centroid = 256;
    faiss::Clustering km(wd, cells, cp);
    faiss::IndexFlatL2 quantizer(wd);
    km.train(n, z->data(), quantizer);
    std::vector<float> d(static_cast<size_t>(n));
    quantizer.search(n, z->data(), 1, d.data(), cell_of.data());
    d.resize(size_t(cells) * size_t(probe));
    quantizer.search(cells, km.centroids.data(), probe, d.data(), near_cells.data());
  } catch (const std::exception& e) {
    return make_error(std::string("k-means for the neighbour search failed: ") + e.what());
  }
  step("k-means cells");
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(cells));
  for (int64_t i = 0; i < n; ++i) members[size_t(std::max<int64_t>(0, cell_of[size_t(i)]))].push_back(i);
  std::vector<float> sq(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) sq[size_t(i)] = dot(&(*z)[size_t(i) * size_t(wd)], &(*z)[size_t(i) * size_t(wd)], wd);
  std::vector<int64_t> ids(size_t(n) * size_t(kc), -1);
  std::vector<float> queries, cand_rows, block;
  std::vector<int64_t> cand;
  for (int c = 0; c < cells; ++c) {
    const auto& mine = members[size_t(c)];
    if (mine.empty()) continue;
    cand.clear();
    for (int p = 0; p < probe; ++p) {
      const int64_t nc = near_cells[size_t(c) * size_t(probe) + size_t(p)];
      if (nc >= 0) cand.insert(cand.end(), members[size_t(nc)].begin(), members[size_t(nc)].end());
    }
    if (std::find(near_cells.begin() + c * probe, near_cells.begin() + (c + 1) * probe, c) ==
        near_cells.begin() + (c + 1) * probe)  // a cell is always searched against itself
      cand.insert(cand.end(), mine.begin(), mine.end());
    const int64_t nq = int64_t(mine.size()), nb = int64_t(cand.size());
    queries.resize(size_t(nq) * size_t(wd));
    cand_rows.resize(size_t(nb) * size_t(wd));
    for (int64_t r = 0; r < nq; ++r)
      std::copy_n(&(*z)[size_t(mine[size_t(r)]) * size_t(wd)], wd, &queries[size_t(r) * size_t(wd)]);
    for (int64_t r = 0; r < nb; ++r)
      std::copy_n(&(*z)[size_t(cand[size_t(r)]) * size_t(wd)], wd, &cand_rows[size_t(r) * size_t(wd)]);
    block.resize(size_t(nq) * size_t(nb));
    gemm_abt(int(nq), int(nb), wd, queries.data(), wd, cand_rows.data(), wd, block.data(), int(nb));
    parallel_for(nq, threads, [&](int64_t b, int64_t e, int) {
      std::vector<std::pair<float, int64_t>> best;
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = mine[size_t(r)];
        best.clear();
        for (int64_t j = 0; j < nb; ++j) {
          const std::pair<float, int64_t> c2{
              sq[size_t(i)] + sq[size_t(cand[size_t(j)])] - 2.0f * block[size_t(r) * size_t(nb) + size_t(j)],
              cand[size_t(j)]};
          if (int(best.size()) < kc) {
            best.push_back(c2);
            std::push_heap(best.begin(), best.end());
          } else if (c2 < best.front()) {
            std::pop_heap(best.begin(), best.end());
            best.back() = c2;
            std::push_heap(best.begin(), best.end());
          }
        }
        for (size_t t = 0; t < best.size(); ++t) ids[size_t(i) * size_t(kc) + t] = best[t].second;
      }
    });
  }
  z = Error{};  // free the projection before re-ranking
  step("cell searches");
  auto out = rerank(x, n, dim, k, cosine, ids, kc, threads);
  step("exact re-ranking");
  return out;
}

Result<Knn> hnsw_knn(const float* x, int64_t n, int dim, int k, bool cosine, const UmapOptions& o, int threads) {
  int wd = 0;
  auto z = project_for_search(x, n, dim, o, threads, &wd);
  if (!z) return make_error(z.error());
  const int kc = int(std::min<int64_t>(n, int64_t(std::max(1, o.knn_candidates_factor)) * k + 1));
  std::vector<float> d(size_t(n) * size_t(kc));
  std::vector<int64_t> ids(size_t(n) * size_t(kc));
  try {
    OmpThreads omp(threads);
    // L2 in the projection ranks like cosine for unit rows (|a - b|^2 = 2 - 2 cos).
    faiss::IndexHNSWFlat index(wd, std::max(4, o.hnsw_m), faiss::METRIC_L2);
    index.hnsw.efConstruction = std::max(o.hnsw_ef_construction, 8);
    index.add(n, z->data());
    index.hnsw.efSearch = std::max(o.hnsw_ef_search, kc);
    index.search(n, z->data(), kc, d.data(), ids.data());
  } catch (const std::exception& e) {
    return make_error(std::string("HNSW nearest-neighbour search failed: ") + e.what());
  }
  z = Error{};
  return rerank(x, n, dim, k, cosine, ids, kc, threads);
}

namespace {

// The m leading eigenvectors of the symmetric dim x dim matrix a by subspace iteration on
// l >= m vectors (2 power steps); as symmetric_eigen lays them out (m rows of dim,
// ascending eigenvalue).
// Empty on failure.
std::vector<double> top_eigenvectors_randomized(int dim, const float* a, int m, int l) {
  Rng rng(0x5eed);
  std::vector<double> q(size_t(l) * size_t(dim));
  std::vector<float> qf(q.size()), yf(q.size());
  for (auto& v : q) v = rng.normal();
  // Rows of Q^T A (A symmetric) in float, the basis kept orthonormal in double.
  auto times_a = [&] {
    std::copy(q.begin(), q.end(), qf.begin());
    gemm_abt(l, dim, dim, qf.data(), dim, a, dim, yf.data(), dim);
  };
  for (int step = 0; step < 2; ++step) {  // Q <- orth(A Q)
    if (!orthonormalise_rows(l, dim, q.data())) return {};
    times_a();
    std::copy(yf.begin(), yf.end(), q.begin());
  }
  if (!orthonormalise_rows(l, dim, q.data())) return {};
  // The l x l projection B = Q^T A Q and its top m eigenvectors, mapped back through Q.
  times_a();
  std::vector<double> y(yf.begin(), yf.end()), b(size_t(l) * size_t(l)), values, small, out(size_t(m) * size_t(dim));
  gemm_abt(l, l, dim, y.data(), dim, q.data(), dim, b.data(), l);
  if (!symmetric_eigen(l, b.data(), l - m, l - 1, &values, &small)) return {};
  // out (m x dim) = small (m x l) * Q (l x dim); column-major: out^T = Q^T small^T.
  const double one = 1.0, zero = 0.0;
  dgemm_("N", "N", &dim, &m, &l, &one, q.data(), &dim, small.data(), &l, &zero, out.data(), &dim);
  return out;
}

}  // namespace

Result<Pca> fit_pca(const float* x, int64_t n, int dim, int m, int64_t max_rows, bool randomized) {
  Pca p;
  p.dim = dim;
  p.m = std::min(m, dim);
  if (n < 1 || p.m < 1) return make_error("PCA needs at least one row and one component");
  const int64_t step = std::max<int64_t>(1, (n + max_rows - 1) / max_rows);
  const int s = int((n + step - 1) / step);
  std::vector<double> mean(size_t(dim), 0.0);
  for (int r = 0; r < s; ++r)
    for (int j = 0; j < dim; ++j) mean[size_t(j)] += x[size_t(r * step) * size_t(dim) + size_t(j)];
  p.mean.resize(size_t(dim));
  for (int j = 0; j < dim; ++j) p.mean[size_t(j)] = float(mean[size_t(j)] / s);
  std::vector<float> centred(size_t(s) * size_t(dim));
  for (int r = 0; r < s; ++r)
    for (int j = 0; j < dim; ++j)
      centred[size_t(r) * size_t(dim) + size_t(j)] = x[size_t(r * step) * size_t(dim) + size_t(j)] - p.mean[size_t(j)];
  // Scatter matrix X^T X (column-major view of row-major X is X^T).
  std::vector<float> scatter(size_t(dim) * size_t(dim));
  const float one = 1.0f, zero = 0.0f;
  sgemm_("N", "T", &dim, &dim, &s, &one, centred.data(), &dim, centred.data(), &dim, &zero, scatter.data(), &dim);
  std::vector<double> a(scatter.begin(), scatter.end()), values, vectors;
  const int l = std::min(dim, p.m + 16);  // subspace size with oversampling
  if (randomized && l < dim) {
    vectors = top_eigenvectors_randomized(dim, scatter.data(), p.m, l);
  } else if (!symmetric_eigen(dim, a.data(), dim - p.m, dim - 1, &values, &vectors)) {
    return make_error("PCA: LAPACK eigen-decomposition failed");
  }
  if (vectors.size() != size_t(p.m) * size_t(dim)) return make_error("PCA: eigen-decomposition failed");
  p.axes.resize(size_t(p.m) * size_t(dim));
  for (int c = 0; c < p.m; ++c) {  // ascending eigenvalues (as LAPACK gives them): largest first here
    const double* v = &vectors[size_t(p.m - 1 - c) * size_t(dim)];
    // Sign: largest-magnitude component positive, so the axes do not flip between builds.
    int big = 0;
    for (int j = 1; j < dim; ++j)
      if (std::fabs(v[j]) > std::fabs(v[big])) big = j;
    const double sign = v[big] < 0 ? -1.0 : 1.0;
    for (int j = 0; j < dim; ++j) p.axes[size_t(c) * size_t(dim) + size_t(j)] = float(sign * v[j]);
  }
  return p;
}

void pca_project(const Pca& p, const float* x, int64_t n, float* out, int threads) {
  std::vector<float> offset(size_t(p.m));
  for (int c = 0; c < p.m; ++c) offset[size_t(c)] = dot(p.mean.data(), &p.axes[size_t(c) * size_t(p.dim)], p.dim);
  // Blocks keep each gemm's int sizes small and let OpenBLAS use its own threads.
  const int64_t block = 65536;
  for (int64_t b = 0; b < n; b += block) {
    const int rows = int(std::min(block, n - b));
    gemm_abt(rows, p.m, p.dim, x + size_t(b) * size_t(p.dim), p.dim, p.axes.data(), p.dim,
             out + size_t(b) * size_t(p.m), p.m);
  }
  parallel_for(n, threads, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i)
      for (int c = 0; c < p.m; ++c) out[size_t(i) * size_t(p.m) + size_t(c)] -= offset[size_t(c)];
  });
}

}  // namespace imgsearch::map::detail
