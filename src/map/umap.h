// map: high-dimensional vectors -> a 2-D layout for people to look at (UMAP).
//
// Data contract
//   umap_layout() reads n x dim float32 vectors, row-major (vector i at x[i*dim]), and
//   returns n x 2 float32 coordinates, row-major (point i at [2i, 2i+1]), normalised to
//   [0, 1] on both axes. Deterministic for a given seed and thread count.
//   The steps follow McInnes et al. (UMAP): a k-nearest-neighbour graph (exact for small
//   n, approximate above UmapOptions::exact_knn_below), the fuzzy simplicial set
//   (per-point sigma/rho by binary search, symmetrised with fuzzy union), a spectral or
//   random initialisation, then SGD with negative sampling on the attractive/repulsive
//   cross-entropy terms (a, b fitted from min_dist and spread).
#pragma once

#include <cstdint>
#include <vector>

#include "common/result.h"
#include "index/vector_index.h"

namespace imgsearch::map {

enum class Init { Spectral, Pca, Random };

struct UmapOptions {
  int n_neighbors = 15;  // including the point itself, as umap-learn; capped at n
  float min_dist = 0.1f;
  float spread = 1.0f;
  int n_epochs = 0;  // 0: 500 for n <= 10000, else 200 (as umap-learn)
  // Cosine: distance 1 - cos. InnerProduct is laid out as Cosine (a raw inner product is
  // not a distance). L2: Euclidean distance.
  index::Metric metric = index::Metric::Cosine;
  uint64_t seed = 42;
  int threads = 0;                 // 0 = all cores; also FAISS's OpenMP threads for the kNN
  int64_t exact_knn_below = 4096;  // as umap-learn, which switches to NN-descent at 4096
  Init init = Init::Spectral;      // Spectral falls back to random where the graph is too small
  float learning_rate = 1.0f;
  float repulsion_strength = 1.0f;  // umap-learn's gamma
  int negative_sample_rate = 5;
  // From exact_knn_below points on, neighbours are approximate: searched in the first
  // knn_pca_dim principal components (0: all dimensions), the best
  // knn_candidates_factor * n_neighbors + 1 candidates re-ranked by exact distance.
  // Clusters: k-means cells searched by blocked BLAS brute force against their knn_probe
  // nearest cells (recall ~0.97 at 100k caltech-like vectors). Hnsw: FAISS HNSW, slower
  // with Debian's generic FAISS build and recall ~0.77 there (see bench/map).
  enum class ApproxKnn { Clusters, Hnsw };
  ApproxKnn approx_knn = ApproxKnn::Clusters;
  int knn_pca_dim = 128;
  // Rows (evenly spaced) the projection is fitted on: the leading components of 4096
  // rows rank candidates as well as those of all rows, and the fit's X^T X is the
  // largest cost of the neighbour search at 10k points.
  int64_t knn_pca_rows = 4096;
  int knn_candidates_factor = 2;
  int knn_probe = 12;
  int hnsw_m = 16;
  int hnsw_ef_construction = 64;
  int hnsw_ef_search = 48;
  bool verbose = false;  // stage timings on stderr
};

// x: n x dim (not modified, may be nullptr when n == 0). Returns n x 2. The longer side of
// the layout spans [0, 1] and the shorter one is centred, so 2-D distances keep their
// proportions; a single point sits at (0.5, 0.5). Fails on non-finite input or bad options.
// Memory: a normalised copy of x when metric is Cosine and the rows are not unit-length.
Result<std::vector<float>> umap_layout(const float* x, int64_t n, int dim, const UmapOptions& options = {});

// Trustworthiness (Venna & Kaski) of a layout: how well the k nearest neighbours in 2-D
// were neighbours in the original space; 1 = perfect. O(n^2): for n up to ~10^4.
// Exactly sklearn.manifold.trustworthiness(x, y2d, n_neighbors=k, metric=...) with metric
// "cosine" (Cosine, InnerProduct) or "euclidean" (L2); 2-D neighbours are Euclidean.
// Ties in distance are broken by index (sklearn leaves them to its sort). y2d: n x 2.
// Returns NaN when k < 1 or k >= n / 2 (sklearn raises there).
double trustworthiness(const float* x, int64_t n, int dim, const float* y2d, int k, index::Metric metric);

// Mean over points of the fraction of their k nearest 2-D neighbours (itself excluded,
// ties by index) that have the same label. labels: n. O(n^2). NaN when n < 2 or k < 1.
double knn_class_agreement(const float* y2d, int64_t n, const int* labels, int k);

}  // namespace imgsearch::map
