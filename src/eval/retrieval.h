// eval: how well a representation retrieves images of the same class.
//
// Data contract
//   x: n x dim float32 row-major vectors; labels[i] in [0, n_classes) is vector i's class.
//   Every vector is a query against all the others (itself excluded); a result is
//   relevant when it has the query's label. Ranking is exact (brute force) under the
//   given metric, so these figures measure the representation, not an ANN index.
//   Scores are float32 products (BLAS); rankings are exact up to float rounding.
//   precision@k = relevant among the first k / k; AP = mean of precision@rank over the
//   ranks of all relevant results; mAP = mean AP over queries.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "index/vector_index.h"

namespace imgsearch::eval {

struct ClassResult {
  std::string label;
  int count = 0;
  std::vector<double> precision;  // one per k, mean over this class's queries
  double average_precision = 0;   // mean AP over this class's queries
};

struct RetrievalResult {
  std::vector<int> ks;
  int queries = 0;
  std::vector<double> precision;  // one per k, mean over all queries
  double mean_average_precision = 0;
  std::vector<ClassResult> per_class;  // in label order
};

// As above, from a ready n x n score matrix (row q: query q against every vector; higher
// is more similar; the diagonal is ignored).
RetrievalResult evaluate_ranking(const float* scores, int64_t n, std::span<const int> labels,
                                 std::span<const std::string> label_names, std::vector<int> ks = {1, 5, 10});

// The n x n score matrix of x under `metric` (cosine: x need not be normalised).
std::vector<float> similarity_matrix(const float* x, int64_t n, int dim, index::Metric metric);

RetrievalResult evaluate_retrieval(const float* x, int64_t n, int dim, std::span<const int> labels,
                                   std::span<const std::string> label_names, index::Metric metric,
                                   std::vector<int> ks = {1, 5, 10});

}  // namespace imgsearch::eval
