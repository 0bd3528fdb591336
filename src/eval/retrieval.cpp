#include "eval/retrieval.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "eval/linalg.h"

namespace imgsearch::eval {

RetrievalResult evaluate_ranking(const float* scores, int64_t n, std::span<const int> labels,
                                 std::span<const std::string> label_names, std::vector<int> ks) {
  RetrievalResult r;
  r.ks = ks;
  r.queries = int(n);
  r.precision.assign(ks.size(), 0.0);
  const size_t n_classes = label_names.size();
  r.per_class.resize(n_classes);
  for (size_t c = 0; c < n_classes; ++c) {
    r.per_class[c].label = label_names[c];
    r.per_class[c].precision.assign(ks.size(), 0.0);
  }
  if (n < 2) return r;

  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) {
    const float* row = scores + size_t(q) * size_t(n);
    std::iota(order.begin(), order.end(), 0);
    // Ties broken by index so results are deterministic.
    std::sort(order.begin(), order.end(),
              [&](int64_t a, int64_t b) { return row[a] != row[b] ? row[a] > row[b] : a < b; });
    const int label = labels[size_t(q)];
    int hits = 0, rank = 0;
    double ap_sum = 0;
    std::vector<int> hits_at(ks.size(), 0);
    for (int64_t i : order) {
      if (i == q) continue;
      ++rank;
      if (labels[size_t(i)] == label) {
        ++hits;
        ap_sum += double(hits) / rank;
      }
      for (size_t t = 0; t < ks.size(); ++t)
        if (rank == ks[t]) hits_at[t] = hits;
    }
    const int relevant = hits;
    const double ap = relevant > 0 ? ap_sum / relevant : 0.0;
    auto& cls = r.per_class[size_t(label)];
    ++cls.count;
    cls.average_precision += ap;
    r.mean_average_precision += ap;
    for (size_t t = 0; t < ks.size(); ++t) {
      // Fewer than k other images: precision over those that exist.
      const int k = std::min<int64_t>(ks[t], n - 1);
      const int h = ks[t] <= n - 1 ? hits_at[t] : relevant;
      const double p = double(h) / k;
      r.precision[t] += p;
      cls.precision[t] += p;
    }
  }
  r.mean_average_precision /= double(n);
  for (auto& p : r.precision) p /= double(n);
  for (auto& c : r.per_class) {
    if (c.count == 0) continue;
    c.average_precision /= c.count;
    for (auto& p : c.precision) p /= c.count;
  }
  return r;
}

std::vector<float> similarity_matrix(const float* x, int64_t n, int dim, index::Metric metric) {
  // One Gram matrix G = X X^T serves every metric: cosine = G_ij / (|x_i| |x_j|),
  // L2 = -(G_ii + G_jj - 2 G_ij) (negated so higher is closer), inner product = G.
  std::vector<float> s(size_t(n) * size_t(n));
  gemm(false, true, int(n), int(n), dim, 1.f, x, x, 0.f, s.data());
  std::vector<double> diag(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) diag[size_t(i)] = s[size_t(i) * size_t(n) + size_t(i)];
  if (metric == index::Metric::InnerProduct) return s;
  for (int64_t i = 0; i < n; ++i) {
    float* row = s.data() + size_t(i) * size_t(n);
    for (int64_t j = 0; j < n; ++j) {
      const double g = row[j];
      if (metric == index::Metric::L2) {
        row[j] = float(-(diag[size_t(i)] + diag[size_t(j)] - 2 * g));
      } else {
        // A zero vector stays zero when normalised (l2_normalize), so its cosine is 0.
        const double norms = std::sqrt(diag[size_t(i)] * diag[size_t(j)]);
        row[j] = norms > 0 ? float(g / norms) : 0.f;
      }
    }
  }
  return s;
}

RetrievalResult evaluate_retrieval(const float* x, int64_t n, int dim, std::span<const int> labels,
                                   std::span<const std::string> label_names, index::Metric metric,
                                   std::vector<int> ks) {
  const auto s = similarity_matrix(x, n, dim, metric);
  return evaluate_ranking(s.data(), n, labels, label_names, std::move(ks));
}

}  // namespace imgsearch::eval
