// map internals: the steps of umap_layout(), exposed for tests and the benchmark.
// Not a stable interface; include map/umap.h instead.
//
// Index type: points are int32 inside the graph and the optimiser (n < 2^31 is checked
// at the entry point) to halve the memory the SGD streams through.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "common/result.h"
#include "map/umap.h"

namespace imgsearch::map::detail {

// xoshiro256** seeded by splitmix64: the same stream on every platform and compiler, so a
// seed means the same layout everywhere (std::normal_distribution is not portable).
class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& w : s_) w = splitmix(seed);
  }
  uint64_t next() {
    const uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  // Uniform in [0, n) without division (Lemire); the bias is below 2^-32 * n.
  uint32_t below(uint32_t n) { return uint32_t((uint64_t(uint32_t(next() >> 32)) * n) >> 32); }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {  // Box-Muller; one value per call keeps the stream simple
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  static uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// Runs fn(begin, end, worker) over [0, n) split into `threads` contiguous ranges of at
// least min_chunk items, on std::threads (inline when one range): static ranges keep
// results independent of timing.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t, int)>& fn, int64_t min_chunk = 1);
int resolve_threads(int threads);

// k nearest neighbours of every point, itself included: row i of idx/dist (n x k) starts
// with i at distance 0, then the others by (distance, index); -1 / +inf pads rows that
// found fewer. Distances: 1 - dot for cosine (rows of x unit-length), Euclidean for L2.
struct Knn {
  int64_t n = 0;
  int k = 0;
  std::vector<int32_t> idx;
  std::vector<float> dist;
};
// Exact (FAISS IndexFlat: blocked BLAS inner products).
Result<Knn> exact_knn(const float* x, int64_t n, int dim, int k, bool cosine, int threads);
// Approximate, both over the leading principal components (knn_pca_dim) with the best
// knn_candidates_factor * k + 1 candidates re-ranked by exact distance in the original space:
// - clustered_knn: k-means cells (about sqrt(n) points each); each cell is searched by
//   blocked BLAS brute force against the points of its knn_probe nearest cells.
// - hnsw_knn: FAISS HNSW (hnsw_* options).
Result<Knn> clustered_knn(const float* x, int64_t n, int dim, int k, bool cosine, const UmapOptions& options,
                          int threads);
Result<Knn> hnsw_knn(const float* x, int64_t n, int dim, int k, bool cosine, const UmapOptions& options, int threads);

// umap-learn's smooth_knn_dist with local_connectivity 1: rho = distance to the nearest
// neighbour at a non-zero distance, sigma by bisection so that
// sum_j exp(-(d_ij - rho_i) / sigma_i) = log2(k) over the row without its first entry.
void smooth_knn_dist(const Knn& knn, std::vector<float>* sigma, std::vector<float>* rho, int threads);

// Symmetric sparse graph in CSR form: row i holds columns indices[indptr[i]..indptr[i+1])
// in increasing order, no self loops, weights in (0, 1].
struct Graph {
  int64_t n = 0;
  std::vector<int64_t> indptr;
  std::vector<int32_t> indices;
  std::vector<float> weights;
};
// Membership strengths exp(-(d - rho) / sigma), then the fuzzy union A + A^T - A o A^T.
Graph fuzzy_simplicial_set(const Knn& knn, const std::vector<float>& sigma, const std::vector<float>& rho);
// Drops edges lighter than `threshold` (umap-learn: max weight / n_epochs).
void prune_graph(Graph* g, float threshold);

// umap-learn's find_ab_params: least-squares fit of 1 / (1 + a x^(2b)) to the curve that is
// 1 below min_dist and exp(-(x - min_dist) / spread) above, on 300 points of [0, 3 spread].
void find_ab_params(double spread, double min_dist, double* a, double* b);

// Connected components: label per point (0..count-1, numbered by first point). Returns count.
int connected_components(const Graph& g, std::vector<int32_t>* labels);

// umap-learn's spectral_layout: the eigenvectors of the normalised Laplacian for its 2nd and
// 3rd smallest eigenvalues (Lanczos); disconnected graphs get one such layout per component,
// placed by a spectral layout of the component centroids (multi_component_layout). Points
// in components too small for it are placed at random near their component's spot.
// x: the prepared data (unit rows for cosine), used only for the component centroids.
// Returns n x 2, not scaled.
std::vector<float> spectral_layout(const Graph& g, const float* x, int dim, bool cosine, uint64_t seed, int threads);

// Eigenvectors of N = D^-1/2 W D^-1/2 for its `want` largest eigenvalues other than the
// trivial 1 (eigenvector D^1/2 1) of a connected graph, by Lanczos with full
// reorthogonalisation: out is n x want row-major. False if the graph is too small.
bool lanczos_top(const Graph& g, int want, uint64_t seed, int threads, std::vector<double>* out,
                 std::vector<double>* values);

// Principal axes: mean (dim) and the top m axes (m x dim row-major), from at most
// max_rows rows (every (n / max_rows)-th row).
struct Pca {
  int dim = 0, m = 0;
  std::vector<float> mean, axes;
};
// `randomized`: the leading m axes by subspace iteration on the scatter matrix (m + 16
// vectors, 2 power steps, Halko et al. 2011) instead of a full LAPACK eigensolver: the
// same subspace to within what ranking neighbour candidates can tell, at a fraction of
// the cost for m << dim (the solver took 0.19 s of the 10k-point neighbour search).
Result<Pca> fit_pca(const float* x, int64_t n, int dim, int m, int64_t max_rows, bool randomized = false);
// out: n x m.
void pca_project(const Pca& p, const float* x, int64_t n, float* out, int threads);

// The SGD of umap-learn's optimize_layout_euclidean: edge sampling by epochs_per_sample,
// negative_sample_rate negatives per positive, gradients clipped at 4, learning rate
// decaying linearly. Parallel: each worker owns a range of points (balanced by sampling
// work) and updates them in place (Hogwild-style, no locks); points of other workers are
// read from a snapshot taken at each synchronisation and moved through per-worker
// buffers applied there, so the result depends only on the seed and thread count.
struct SgdParams {
  int n_epochs = 200;
  double a = 1.577, b = 0.895, gamma = 1.0, learning_rate = 1.0;
  int negative_sample_rate = 5;
  uint64_t seed = 42;
  int threads = 1;
  int syncs_per_epoch = 2;
};
void optimize_layout(std::vector<float>* embedding, const Graph& g, const SgdParams& p);

}  // namespace imgsearch::map::detail
