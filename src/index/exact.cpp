#include "index/exact.h"

#include <faiss/utils/distances.h>  // knn_inner_product, knn_L2sqr

#include <algorithm>
#include <limits>
#include <unordered_set>

namespace imgsearch::index {

ExactKnn::ExactKnn(Metric metric, int dim, int64_t nq, const float* queries, int k)
    : metric_(metric),
      dim_(dim),
      k_(k),
      nq_(nq),
      queries_(queries, queries + nq * dim),
      ids_(size_t(nq * k), -1),
      scores_(size_t(nq * k), std::numeric_limits<float>::lowest()) {}

void ExactKnn::add(int64_t n, const float* x, const int64_t* ids) {
  if (n <= 0 || nq_ == 0) return;
  const int kk = int(std::min<int64_t>(k_, n));
  std::vector<float> d(size_t(nq_ * kk));
  std::vector<int64_t> l(size_t(nq_ * kk));
  if (metric_ == Metric::L2) {
    faiss::knn_L2sqr(queries_.data(), x, size_t(dim_), size_t(nq_), size_t(n), size_t(kk), d.data(), l.data());
    for (auto& v : d) v = -v;
  } else {
    faiss::knn_inner_product(queries_.data(), x, size_t(dim_), size_t(nq_), size_t(n), size_t(kk), d.data(), l.data());
  }
  // Merge each query's two best-first lists, keeping the best k.
  std::vector<float> ms(static_cast<size_t>(k_));
  std::vector<int64_t> mi(static_cast<size_t>(k_));
  for (int64_t q = 0; q < nq_; ++q) {
    float* bs = scores_.data() + q * k_;
    int64_t* bi = ids_.data() + q * k_;
    const float* cs = d.data() + q * kk;
    const int64_t* ci = l.data() + q * kk;
    int a = 0, c = 0;
    for (int o = 0; o < k_; ++o) {
      const bool take_new = c < kk && ci[c] >= 0 && (bi[a] < 0 || cs[c] > bs[a]);
      if (take_new) {
        ms[size_t(o)] = cs[c];
        mi[size_t(o)] = ids[ci[c]];
        ++c;
      } else {
        ms[size_t(o)] = bs[a];
        mi[size_t(o)] = bi[a];
        ++a;
      }
    }
    std::copy(ms.begin(), ms.end(), bs);
    std::copy(mi.begin(), mi.end(), bi);
  }
}

double recall_at_k(int64_t nq, const int64_t* truth, int truth_stride, const int64_t* got, int got_stride, int k,
                   const int64_t* exclude) {
  double sum = 0;
  int64_t counted = 0;
  std::unordered_set<int64_t> found;
  for (int64_t q = 0; q < nq; ++q) {
    const int64_t self = exclude ? exclude[q] : -1;
    found.clear();
    for (int j = 0; j < got_stride; ++j) {
      const int64_t id = got[q * got_stride + j];
      if (id >= 0 && id != self) found.insert(id);
    }
    int want = 0, hit = 0;
    for (int j = 0; j < truth_stride && want < k; ++j) {
      const int64_t id = truth[q * truth_stride + j];
      if (id < 0 || id == self) continue;
      ++want;
      hit += int(found.count(id));
    }
    if (want == 0) continue;
    sum += double(hit) / want;
    ++counted;
  }
  return counted ? sum / double(counted) : 1.0;
}

Tuning tune_defaults(VectorIndex& index, int64_t nq, const float* queries, const int64_t* truth, int truth_stride,
                     int k, int candidates, double target, const int64_t* exclude) {
  Tuning t;
  t.candidates = std::max(k, candidates);
  t.queries = nq;
  // A query drawn from the collection finds itself; fetch one more so that its own id
  // does not take a place from the neighbours being counted.
  const int c = t.candidates + (exclude ? 1 : 0);
  std::vector<float> s(size_t(nq * c));
  std::vector<int64_t> l(size_t(nq * c));
  auto measure = [&](const SearchOptions& o) {
    index.search(nq, queries, c, s.data(), l.data(), o);
    return recall_at_k(nq, truth, truth_stride, l.data(), c, k, exclude);
  };
  const SearchOptions current = index.default_options();
  std::vector<SearchOptions> ladder;
  if (current.nprobe > 0) {
    const auto st = index.stats();
    const int nlist = std::stoi(st.params.at("nlist"));
    // Steps of at most 1.5x, not 2x: the scan costs in proportion to nprobe, so a 2x ladder
    // can cost up to twice the time the target needs.
    for (int p = 1; p < nlist; p *= 2) {  // 1, 2, 3, 4, 6, 8, 12, 16, 24, ...
      ladder.push_back({p, 0});
      if (p >= 2 && p * 3 / 2 < nlist) ladder.push_back({p * 3 / 2, 0});
    }
    ladder.push_back({nlist, 0});
  } else if (current.ef_search > 0) {
    for (int ef : {16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024}) ladder.push_back({0, std::max(ef, k)});
  }
  if (ladder.empty()) {
    t.options = current;
    t.recall = measure({});
    return t;
  }
  // Recall grows with the knob: binary search for the first setting that reaches target.
  size_t lo = 0, hi = ladder.size() - 1;
  double at_hi = measure(ladder[hi]);
  if (at_hi < target) {
    lo = hi;  // nothing reaches it: the largest setting is the best available
  }
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    const double r = measure(ladder[mid]);
    if (r >= target) {
      hi = mid;
      at_hi = r;
    } else {
      lo = mid + 1;
    }
  }
  t.options = ladder[hi];
  t.recall = at_hi;
  index.set_default_options(t.options);
  t.options = index.default_options();
  return t;
}

}  // namespace imgsearch::index
