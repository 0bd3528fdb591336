#include "eval/retrieval.h"

#include <algorithm>
#include <numeric>

namespace imgsearch::eval {

RetrievalResult evaluate_retrieval(const float* x, int64_t n, int dim, std::span<const int> labels,
                                   std::span<const std::string> label_names, index::Metric metric,
                                   std::vector<int> ks) {
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

  // Exact ranking: every query against every vector (the brute-force reference).
  std::vector<float> scores(static_cast<size_t>(n));
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) {
    const float* qv = x + size_t(q) * dim;
    for (int64_t i = 0; i < n; ++i) {
      const float* v = x + size_t(i) * dim;
      double s = 0;
      if (metric == index::Metric::L2) {
        for (int j = 0; j < dim; ++j) s -= double(qv[j] - v[j]) * (qv[j] - v[j]);
      } else {
        for (int j = 0; j < dim; ++j) s += double(qv[j]) * v[j];
      }
      scores[size_t(i)] = float(s);
    }
    std::iota(order.begin(), order.end(), 0);
    // Ties broken by index so results are deterministic.
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return scores[size_t(a)] != scores[size_t(b)] ? scores[size_t(a)] > scores[size_t(b)] : a < b;
    });
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

}  // namespace imgsearch::eval
