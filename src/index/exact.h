// exact: the ground truth beside every approximate path -- exact k-NN over a stream of
// vectors, recall against it, and tuning the stored search knobs from measured recall.
#pragma once

#include <cstdint>
#include <vector>

#include "index/vector_index.h"

namespace imgsearch::index {

// Exact k nearest neighbours of nq fixed queries among all vectors add()ed, in chunks
// (nothing but the queries and the current top-k is kept, so it runs over collections
// that do not fit in memory). Same scores as VectorIndex::search (higher is better).
class ExactKnn {
 public:
  // Queries are copied: nq x dim floats.
  ExactKnn(Metric metric, int dim, int64_t nq, const float* queries, int k);
  // Adds n vectors (n x dim) with their ids. Batches of 20+ queries use BLAS.
  void add(int64_t n, const float* x, const int64_t* ids);
  int k() const { return k_; }
  int64_t nq() const { return nq_; }
  // nq*k, best first; -1 / lowest() where fewer than k vectors were added.
  const std::vector<int64_t>& ids() const { return ids_; }
  const std::vector<float>& scores() const { return scores_; }

 private:
  Metric metric_;
  int dim_, k_;
  int64_t nq_;
  std::vector<float> queries_;
  std::vector<int64_t> ids_;
  std::vector<float> scores_;
};

// Mean over queries of |truth top-k  ∩  got row| / |truth top-k|. `truth` rows have
// truth_stride ids (the first k count; -1 entries are ignored), `got` rows got_stride
// (all of them count: with got_stride > k this is the recall of a candidate list, what
// re-ranking can recover). exclude (nq ids, or nullptr) drops each query's own id from
// both rows: a query drawn from the collection must not find itself for free.
double recall_at_k(int64_t nq, const int64_t* truth, int truth_stride, const int64_t* got, int got_stride, int k,
                   const int64_t* exclude = nullptr);

struct Tuning {
  SearchOptions options;  // the defaults chosen (also stored in the index)
  double recall = 0;      // recall@k measured at them
  int candidates = 0;     // results fetched per query while measuring (k, or the re-rank depth)
  int64_t queries = 0;
};

// Finds the cheapest stored knob (IVF nprobe, HNSW efSearch) whose recall@k against
// `truth` reaches `target`, fetching `candidates` results per query (>= k; for lossy
// kinds the re-rank depth), and stores it as the index's default. Kinds without knobs
// are only measured. Returns what it measured at the chosen setting.
Tuning tune_defaults(VectorIndex& index, int64_t nq, const float* queries, const int64_t* truth, int truth_stride,
                     int k, int candidates, double target, const int64_t* exclude = nullptr);

}  // namespace imgsearch::index
