// VectorIndex on FAISS. The factory string builds the index; how it carries the caller's
// ids depends on what FAISS can do with that kind:
//   - IVF kinds (also behind PCA/OPQ transforms) store the ids in their inverted lists and
//     remove by id in place: used as they are ("native" layout);
//   - everything else sits in an IndexIDMap2 (id_map: position -> id). The flat-codes
//     family compacts on removal; HNSW cannot unlink a node, so a removed vector becomes a
//     tombstone: id_map[pos] = -1 (saved with the index) and search skips it through an
//     IDSelector over positions.
#include <faiss/IndexFlat.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <fcntl.h>   // open (directory fsync)
#include <omp.h>     // omp_set_num_threads
#include <unistd.h>  // fsync, close
#include <xxhash.h>  // XXH3 streaming state

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "index/fast_flat.h"
#include "index/vector_index.h"

namespace imgsearch::index {
namespace {

using idx_t = faiss::Index::idx_t;

constexpr char kMagic[8] = {'I', 'M', 'G', 'S', 'I', 'D', 'X', '\0'};
// Version 2 added the payload checksum: FAISS's reader trusts the sizes it reads, so a
// damaged payload could hang it or make it allocate terabytes; the checksum refuses one first.
// Version 3 puts BuildInfo at the start of the (checksummed) payload, stores IVF kinds
// without an id map, and HNSW tombstones as id_map entries of -1.
constexpr uint32_t kFormatVersion = 3;

// An IDMap2 entry whose vector was removed from a kind that cannot unlink it.
constexpr idx_t kTombstone = -1;

faiss::MetricType faiss_metric(Metric m) { return m == Metric::L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT; }

// PCA (and ITQ) subtract the training mean before projecting. That keeps L2 distances
// (up to the projection) but not inner products: q.x would turn into (q-m).(x-m), whose
// ranking differs by the m.x term. Unit vectors rank the same by L2 as by cosine, so a
// cosine index with such a transform runs on L2 inside and converts the scores back.
bool has_centering_transform(const std::string& spec) {
  std::stringstream ss(spec);
  for (std::string tok; std::getline(ss, tok, ',');)
    if (tok.rfind("PCA", 0) == 0 || tok.rfind("ITQ", 0) == 0) return true;
  return false;
}

// Below the id map (if any) and any transforms: the index that decides the kind.
const faiss::Index* core_of(const faiss::Index* ix) {
  if (auto* m = dynamic_cast<const faiss::IndexIDMap2*>(ix)) ix = m->index;
  while (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(ix)) ix = pt->index;
  return ix;
}

// PCAMatrix keeps the full d_in x d_in eigenvector matrix it trained with (6.5 MB for
// 1280 dims, saved with the index) although projecting needs only the d_out x d_in rows
// already copied into A: drop it, so compressed indexes cost what their codes cost.
void drop_training_only_state(faiss::Index* ix) {
  if (auto* m = dynamic_cast<faiss::IndexIDMap2*>(ix)) ix = m->index;
  while (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(ix)) {
    for (auto* vt : pt->chain)
      if (auto* pca = dynamic_cast<faiss::PCAMatrix*>(vt)) {
        pca->PCAMat.clear();
        pca->PCAMat.shrink_to_fit();
      }
    ix = pt->index;
  }
}

const faiss::IndexHNSW* hnsw_of(const faiss::Index* ix) { return dynamic_cast<const faiss::IndexHNSW*>(ix); }

// The factory turns on polysemous training for PQ codes: a simulated annealing that
// reorders centroids so Hamming distances between codes mean something. It is only used
// by polysemous filtering, which we never enable, and costs minutes per training.
void disable_polysemous(faiss::Index* ix) {
  while (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(ix)) ix = pt->index;
  if (auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(ix)) ivfpq->do_polysemous_training = false;
  if (auto* pq = dynamic_cast<faiss::IndexPQ*>(ix)) pq->do_polysemous_training = false;
}

// FAISS builds HNSW graphs with efConstruction 40 whatever M is, fewer candidates than
// the 2*M links a level-0 node keeps (64 for HNSW32): the graph comes out starved.
// bench/index, 100k x 1280 synthetic vectors, HNSW32 built on one thread: efConstruction
// 40 -> recall@10 0.950 even at efSearch 1024 (4.4 ms/query); 80 -> 0.980 at efSearch 16
// (0.19 ms); 120 -> 0.987; 200 -> 0.997; build time 24, 44, 64, 92 s. At 1M vectors the
// graph needs more: efConstruction 128 -> 0.946 even at efSearch 1024 (2.7 ms/query),
// 256 -> 0.986 at efSearch 16 (0.25 ms); build 298 s -> 485 s on two threads. We take
// 8*M (256 for HNSW32), between 40 and 256.
int hnsw_ef_construction(int m) { return std::clamp(8 * m, 40, 256); }

void set_ef_construction(faiss::Index* ix) {
  while (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(ix)) ix = pt->index;
  if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(ix)) ix = ivf->quantizer;  // IVF<n>_HNSW<m>
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(ix))
    h->hnsw.efConstruction = hnsw_ef_construction(h->hnsw.nb_neighbors(1));
}

// Counts what write_index would write: the footprint of the index without writing it.
struct CountingWriter : faiss::IOWriter {
  uint64_t bytes = 0;
  size_t operator()(const void*, size_t size, size_t nitems) override {
    bytes += uint64_t(size) * nitems;
    return nitems;
  }
};

// Writes to a FILE while hashing, so the checksum needs no second copy of the payload.
struct HashingFileWriter : faiss::IOWriter {
  FILE* f = nullptr;
  XXH3_state_t* state = nullptr;
  uint64_t bytes = 0;
  bool failed = false;
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    const size_t n = size * nitems;
    if (n == 0) return nitems;
    if (std::fwrite(ptr, 1, n, f) != n) {
      failed = true;
      return 0;
    }
    XXH3_64bits_update(state, ptr, n);
    bytes += n;
    return nitems;
  }
};

// Reads from a FILE and refuses to go past the end of the payload (FAISS would otherwise
// read into whatever follows, or block on a pipe).
struct BoundedFileReader : faiss::IOReader {
  FILE* f = nullptr;
  uint64_t left = 0;
  size_t operator()(void* ptr, size_t size, size_t nitems) override {
    if (size == 0 || nitems == 0) return 0;
    const uint64_t want = uint64_t(size) * nitems;
    const size_t items = want <= left ? nitems : size_t(left / size);
    const size_t got = std::fread(ptr, size, items, f);
    left -= uint64_t(got) * size;
    return got;
  }
};

std::string encode_info(const BuildInfo& b) {
  std::ostringstream o;
  o.precision(17);
  o << "requested=" << b.requested << "\nfallback=" << b.fallback << "\nbuilt_at=" << b.built_at
    << "\nbuild_seconds=" << b.build_seconds << "\nbuilt_with=" << b.built_with << "\ntrained_on=" << b.trained_on
    << "\nmemory_budget=" << b.memory_budget << "\ntuned_recall=" << b.tuned_recall << "\nrerank=" << b.rerank << "\n";
  return o.str();
}

// Unknown keys are skipped, so a newer writer's extra fields do not break this reader.
BuildInfo decode_info(const std::string& text) {
  BuildInfo b;
  std::stringstream ss(text);
  for (std::string line; std::getline(ss, line);) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    try {
      if (k == "requested")
        b.requested = v;
      else if (k == "fallback")
        b.fallback = v;
      else if (k == "built_at")
        b.built_at = std::stoll(v);
      else if (k == "build_seconds")
        b.build_seconds = std::stod(v);
      else if (k == "built_with")
        b.built_with = std::stoll(v);
      else if (k == "trained_on")
        b.trained_on = std::stoll(v);
      else if (k == "memory_budget")
        b.memory_budget = std::stoull(v);
      else if (k == "tuned_recall")
        b.tuned_recall = std::stod(v);
      else if (k == "rerank")
        b.rerank = std::stoi(v);
    } catch (const std::exception&) {  // the payload checksum passed: a writer bug, not damage
    }
  }
  return b;
}

// Accepts a position when its id_map entry is not a tombstone.
struct LiveSelector : faiss::IDSelector {
  const std::vector<idx_t>* id_map = nullptr;
  bool is_member(idx_t i) const override { return i >= 0 && size_t(i) < id_map->size() && (*id_map)[size_t(i)] >= 0; }
};

// The SearchParameters tree FAISS wants for `ix` (each kind checks the exact type it gets),
// carrying the knobs and the selector down to the level that uses them. Returns nullptr
// when nothing needs overriding, since some kinds refuse any parameters.
struct ParamTree {
  std::vector<std::unique_ptr<faiss::SearchParameters>> owned;
  faiss::SearchParameters* build(const faiss::Index* ix, const SearchOptions& o, const faiss::IDSelector* sel) {
    if (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(ix)) {
      faiss::SearchParameters* inner = build(pt->index, o, sel);
      if (!inner) return nullptr;
      auto p = std::make_unique<faiss::SearchParametersPreTransform>();
      p->index_params = inner;
      return keep(std::move(p));
    }
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(ix)) {
      faiss::SearchParameters* q = o.ef_search > 0 ? build(ivf->quantizer, o, nullptr) : nullptr;
      if (o.nprobe <= 0 && !sel && !q) return nullptr;
      auto p = std::make_unique<faiss::SearchParametersIVF>();
      p->nprobe = o.nprobe > 0 ? size_t(std::min<size_t>(size_t(o.nprobe), ivf->nlist)) : ivf->nprobe;
      p->sel = const_cast<faiss::IDSelector*>(sel);
      p->quantizer_params = q;
      return keep(std::move(p));
    }
    if (auto* h = hnsw_of(ix)) {
      if (o.ef_search <= 0 && !sel) return nullptr;
      auto p = std::make_unique<faiss::SearchParametersHNSW>();
      p->efSearch = o.ef_search > 0 ? o.ef_search : h->hnsw.efSearch;
      p->sel = const_cast<faiss::IDSelector*>(sel);
      return keep(std::move(p));
    }
    if (!sel) return nullptr;
    if (dynamic_cast<const faiss::IndexPQ*>(ix)) {
      auto p = std::make_unique<faiss::SearchParametersPQ>();
      auto* pq = static_cast<const faiss::IndexPQ*>(ix);
      p->search_type = pq->search_type;
      p->polysemous_ht = pq->polysemous_ht;
      p->sel = const_cast<faiss::IDSelector*>(sel);
      return keep(std::move(p));
    }
    auto p = std::make_unique<faiss::SearchParameters>();
    p->sel = const_cast<faiss::IDSelector*>(sel);
    return keep(std::move(p));
  }
  faiss::SearchParameters* keep(std::unique_ptr<faiss::SearchParameters> p) {
    owned.push_back(std::move(p));
    return owned.back().get();
  }
};

class FaissIndex final : public VectorIndex {
 public:
  // `root` is either an IndexIDMap2 or an index that keeps ids natively (IVF).
  FaissIndex(std::unique_ptr<faiss::Index> root, Metric metric, std::string spec, BuildInfo info = {})
      : root_(std::move(root)), metric_(metric), spec_(std::move(spec)), info_(std::move(info)) {
    accelerate(root_);  // first: it may replace the root and the object core_ points to
    idmap_ = dynamic_cast<faiss::IndexIDMap2*>(root_.get());
    core_ = core_of(root_.get());
    removes_in_place_ = !idmap_ || dynamic_cast<const faiss::IndexFlatCodes*>(core_) != nullptr;
    if (idmap_)
      for (idx_t id : idmap_->id_map) dead_ += id == kTombstone;
    recount_max_id();
  }

  int dim() const override { return int(root_->d); }
  int64_t size() const override { return root_->ntotal - dead_; }
  Metric metric() const override { return metric_; }
  std::string spec() const override { return spec_; }
  bool needs_training() const override { return !root_->is_trained; }
  int64_t tombstones() const override { return dead_; }
  const BuildInfo& build_info() const override { return info_; }
  void set_build_info(const BuildInfo& info) override { info_ = info; }

  int64_t min_training_vectors() const override {
    if (root_->is_trained && !needs_training_kind()) return 0;
    return training_sizes().first;
  }
  int64_t ideal_training_vectors() const override {
    if (!needs_training_kind()) return 0;
    return training_sizes().second;
  }

  Status train(int64_t n, const float* x) override {
    try {
      root_->train(n, x);
      drop_training_only_state(root_.get());
      return {};
    } catch (const faiss::FaissException& e) {
      return make_error(std::string("index training failed: ") + e.what());
    }
  }

  Status add(int64_t n, const float* x, const int64_t* ids) override {
    if (needs_training()) return make_error("index '" + spec_ + "' must be trained before adding vectors");
    try {
      root_->add_with_ids(n, x, ids);
      for (int64_t i = 0; i < n; ++i) max_id_ = std::max(max_id_, ids[i]);
      return {};
    } catch (const faiss::FaissException& e) {
      return make_error(std::string("index add failed: ") + e.what());
    }
  }

  Status remove(std::span<const int64_t> ids) override {
    std::vector<int64_t> present;
    for (int64_t id : ids) {
      if (id < 0 || id > max_id_) continue;  // new images have ids above every stored one
      if (idmap_ && !idmap_->rev_map.count(id)) continue;
      present.push_back(id);
    }
    if (present.empty()) return {};
    try {
      if (removes_in_place_) {
        // IVF scans its lists for the ids; IDMap2 over flat codes compacts both.
        faiss::IDSelectorBatch sel(present.size(), present.data());
        root_->remove_ids(sel);
        return {};
      }
      for (int64_t id : present) {
        auto it = idmap_->rev_map.find(id);
        idmap_->id_map[size_t(it->second)] = kTombstone;
        idmap_->rev_map.erase(it);
        ++dead_;
      }
      return {};
    } catch (const faiss::FaissException& e) {
      return make_error(std::string("index remove failed: ") + e.what());
    }
  }

  void search(int64_t nq, const float* queries, int k, float* scores, int64_t* ids,
              const SearchOptions& options) const override {
    const float missing = std::numeric_limits<float>::lowest();
    if (size() == 0) {  // FAISS (1.7) leaves the outputs unset for an empty index
      std::fill_n(scores, nq * k, missing);
      std::fill_n(ids, nq * k, int64_t(-1));
      return;
    }
    if (!idmap_) {
      ParamTree tree;
      root_->search(nq, queries, k, scores, ids, tree.build(root_.get(), options, nullptr));
    } else {
      search_positions(nq, queries, k, scores, ids, options);
      for (int64_t i = 0; i < nq * k; ++i) ids[i] = ids[i] < 0 ? -1 : idmap_->id_map[size_t(ids[i])];
    }
    const bool l2_inside = root_->metric_type == faiss::METRIC_L2;
    for (int64_t i = 0; i < nq * k; ++i) {
      if (ids[i] < 0) {
        scores[i] = missing;  // a missing result never outranks a real one
      } else if (l2_inside) {
        scores[i] = metric_ == Metric::Cosine ? 1.f - scores[i] / 2 : -scores[i];
      }
    }
  }

  SearchOptions default_options() const override {
    SearchOptions o;
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(core_)) {
      o.nprobe = int(ivf->nprobe);
      if (auto* h = hnsw_of(ivf->quantizer)) o.ef_search = h->hnsw.efSearch;
    }
    if (auto* h = hnsw_of(core_)) o.ef_search = h->hnsw.efSearch;
    return o;
  }

  void set_default_options(const SearchOptions& o) override {
    auto* core = const_cast<faiss::Index*>(core_);
    if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(core)) {
      if (o.nprobe > 0) ivf->nprobe = std::min<size_t>(size_t(o.nprobe), ivf->nlist);
      if (auto* h = dynamic_cast<faiss::IndexHNSW*>(ivf->quantizer); h && o.ef_search > 0)
        h->hnsw.efSearch = o.ef_search;
    }
    if (auto* h = dynamic_cast<faiss::IndexHNSW*>(core); h && o.ef_search > 0) h->hnsw.efSearch = o.ef_search;
  }

  IndexStats stats() const override {
    IndexStats s;
    CountingWriter w;
    try {
      faiss::write_index(root_.get(), &w);
    } catch (const faiss::FaissException&) {
    }
    s.memory_bytes = int64_t(w.bytes);
    // IDMap2's reverse map lives only in memory: an unordered_map node (id, position, next
    // pointer) plus its bucket slot, about 40 bytes with libstdc++.
    if (idmap_) s.memory_bytes += int64_t(idmap_->rev_map.size()) * 40;
    s.id_bytes = idmap_ ? 8 + 40 : 8;
    auto& p = s.params;
    const faiss::Index* ix = root_.get();
    if (idmap_) ix = idmap_->index;
    bool reduces = false;
    while (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(ix)) {
      for (auto* vt : pt->chain) {
        std::string name = "transform";
        if (auto* pca = dynamic_cast<const faiss::PCAMatrix*>(vt)) {
          name = "pca";
          if (pca->eigen_power != 0) p["pca_eigen_power"] = std::to_string(pca->eigen_power);
        } else if (dynamic_cast<const faiss::OPQMatrix*>(vt)) {
          name = "opq";
        }
        p[name + "_out"] = std::to_string(vt->d_out);
        reduces |= vt->d_out < vt->d_in;
      }
      ix = pt->index;
    }
    const faiss::Index* storage = ix;
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(ix)) {
      p["nlist"] = std::to_string(ivf->nlist);
      p["nprobe"] = std::to_string(ivf->nprobe);
      if (auto* h = hnsw_of(ivf->quantizer)) p["quantizer_efSearch"] = std::to_string(h->hnsw.efSearch);
      s.code_bytes = int64_t(ivf->code_size);
      if (auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(ivf)) {
        p["pq_m"] = std::to_string(pq->pq.M);
        p["pq_nbits"] = std::to_string(pq->pq.nbits);
      }
      s.lossy = reduces || !dynamic_cast<const faiss::IndexIVFFlat*>(ivf);
      return s;
    }
    if (auto* h = hnsw_of(ix)) {
      p["M"] = std::to_string(h->hnsw.nb_neighbors(1));
      p["efSearch"] = std::to_string(h->hnsw.efSearch);
      p["efConstruction"] = std::to_string(h->hnsw.efConstruction);
      storage = h->storage;
      // Level-0 links dominate: 2*M neighbour slots of 4 bytes per vector.
      if (ix->ntotal > 0)
        p["graph_bytes_per_vector"] = std::to_string(h->hnsw.neighbors.size() * 4 / size_t(ix->ntotal));
    }
    if (auto* fc = dynamic_cast<const faiss::IndexFlatCodes*>(storage)) s.code_bytes = int64_t(fc->code_size);
    if (auto* pq = dynamic_cast<const faiss::IndexPQ*>(storage)) {
      p["pq_m"] = std::to_string(pq->pq.M);
      p["pq_nbits"] = std::to_string(pq->pq.nbits);
    }
    if (dynamic_cast<const faiss::IndexScalarQuantizer*>(storage)) p["sq"] = "8bit or less per component";
    if (dead_ > 0) p["tombstones"] = std::to_string(dead_);
    s.lossy = reduces || !dynamic_cast<const faiss::IndexFlat*>(storage);
    return s;
  }

  Status save(const std::filesystem::path& path, uint64_t tag) const override;

 private:
  // Is this a kind that trains (IVF, PQ, SQ, PCA, OPQ...)? Trained ones stay such.
  bool needs_training_kind() const {
    if (!root_->is_trained) return true;
    const faiss::Index* ix = idmap_ ? idmap_->index : root_.get();
    if (dynamic_cast<const faiss::IndexPreTransform*>(ix)) return true;
    return dynamic_cast<const faiss::IndexIVF*>(core_) || dynamic_cast<const faiss::IndexPQ*>(core_) ||
           dynamic_cast<const faiss::IndexScalarQuantizer*>(core_);
  }

  // {minimum, ideal} training-set sizes from the parts that learn from data. FAISS's
  // k-means warns below 39 points per centroid and samples at most 256 per centroid.
  std::pair<int64_t, int64_t> training_sizes() const {
    int64_t lo = 1, hi = 1;
    auto need = [&](int64_t a, int64_t b) {
      lo = std::max(lo, a);
      hi = std::max(hi, b);
    };
    const faiss::Index* ix = idmap_ ? idmap_->index : root_.get();
    while (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(ix)) {
      for (auto* vt : pt->chain) {
        if (auto* opq = dynamic_cast<const faiss::OPQMatrix*>(vt))
          need(39 * 256, std::max<int64_t>(opq->max_train_points, 39 * 256));
        else if (vt->d_out > 0)
          need(vt->d_out, 16 * int64_t(vt->d_out));
      }
      ix = pt->index;
    }
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(ix)) {
      // 64 per list: k-means cost grows with the sample, and 64 already gives lists
      // within a few percent of what 256 gives on embedding data.
      need(39 * int64_t(ivf->nlist), 64 * int64_t(ivf->nlist));
      if (auto* pq = dynamic_cast<const faiss::IndexIVFPQ*>(ivf))
        need(39 * int64_t(pq->pq.ksub), 256 * int64_t(pq->pq.ksub));
    }
    if (auto* pq = dynamic_cast<const faiss::IndexPQ*>(ix)) need(39 * int64_t(pq->pq.ksub), 256 * int64_t(pq->pq.ksub));
    if (dynamic_cast<const faiss::IndexScalarQuantizer*>(ix)) need(1, 65536);
    return {lo, std::max(lo, hi)};
  }

  // Searches the index below the id map; ids hold positions (-1: none). Tombstones are
  // filtered by an IDSelector where the kind honours one, else by asking for more
  // results and dropping them.
  void search_positions(int64_t nq, const float* queries, int k, float* scores, int64_t* ids,
                        const SearchOptions& options) const {
    const faiss::Index* inner = idmap_->index;
    LiveSelector live;
    live.id_map = &idmap_->id_map;
    ParamTree tree;
    if (dead_ == 0 || hnsw_of(core_)) {
      inner->search(nq, queries, k, scores, ids, tree.build(inner, options, dead_ ? &live : nullptr));
      return;
    }
    const int64_t wide = std::min<int64_t>(int64_t(k) + dead_, inner->ntotal);
    std::vector<float> s(size_t(nq * wide));
    std::vector<idx_t> l(size_t(nq * wide));
    inner->search(nq, queries, wide, s.data(), l.data(), tree.build(inner, options, nullptr));
    for (int64_t q = 0; q < nq; ++q) {
      int out = 0;
      for (int64_t j = 0; j < wide && out < k; ++j) {
        const idx_t pos = l[size_t(q * wide + j)];
        if (pos < 0 || !live.is_member(pos)) continue;
        scores[q * k + out] = s[size_t(q * wide + j)];
        ids[q * k + out] = pos;
        ++out;
      }
      for (; out < k; ++out) {
        scores[q * k + out] = 0;
        ids[q * k + out] = -1;
      }
    }
  }

  void recount_max_id() {
    max_id_ = -1;
    if (idmap_) {
      for (idx_t id : idmap_->id_map) max_id_ = std::max<int64_t>(max_id_, id);
      return;
    }
    auto* ivf = dynamic_cast<const faiss::IndexIVF*>(core_);
    if (!ivf || !ivf->invlists) return;
    for (size_t l = 0; l < ivf->nlist; ++l) {
      const size_t n = ivf->invlists->list_size(l);
      if (n == 0) continue;
      faiss::InvertedLists::ScopedIds lids(ivf->invlists, l);
      for (size_t i = 0; i < n; ++i) max_id_ = std::max<int64_t>(max_id_, lids[i]);
    }
  }

  std::unique_ptr<faiss::Index> root_;
  faiss::IndexIDMap2* idmap_ = nullptr;  // root_ when the layout has an id map
  const faiss::Index* core_ = nullptr;   // what decides the kind (IVF, HNSW, flat codes...)
  bool removes_in_place_ = true;
  Metric metric_;
  std::string spec_;
  BuildInfo info_;
  int64_t dead_ = 0;     // tombstones
  int64_t max_id_ = -1;  // largest id ever added (ids above it cannot be present)
};

Status FaissIndex::save(const std::filesystem::path& path, uint64_t tag) const {
  const std::string tmp = path.string() + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return make_error("cannot create " + tmp + ": " + std::strerror(errno));
  auto fail = [&](const std::string& why) -> Status {
    std::fclose(f);
    std::remove(tmp.c_str());
    return make_error("cannot write " + path.string() + ": " + why);
  };
  std::vector<uint8_t> head(kMagic, kMagic + sizeof(kMagic));
  auto put = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) head.push_back(uint8_t(v >> (8 * i)));
  };
  put(kFormatVersion, 4);
  put(uint32_t(metric_), 4);
  put(uint32_t(root_->d), 4);
  put(uint32_t(spec_.size()), 4);
  head.insert(head.end(), spec_.begin(), spec_.end());
  put(tag, 8);
  const long sizes_at = long(head.size());
  put(0, 8);  // payload size and checksum: patched once the payload is written
  put(0, 8);
  if (std::fwrite(head.data(), 1, head.size(), f) != head.size()) return fail(std::strerror(errno));

  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  HashingFileWriter w;
  w.f = f;
  w.state = state;
  const std::string info = encode_info(info_);
  const uint32_t info_len = uint32_t(info.size());
  uint8_t len_bytes[4];
  for (int i = 0; i < 4; ++i) len_bytes[i] = uint8_t(info_len >> (8 * i));
  w(len_bytes, 1, 4);
  w(info.data(), 1, info.size());
  try {
    faiss::write_index(root_.get(), &w);
  } catch (const faiss::FaissException& e) {
    XXH3_freeState(state);
    return fail(e.what());
  }
  const uint64_t sum = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  if (w.failed) return fail(std::strerror(errno));
  head.resize(size_t(sizes_at));
  put(w.bytes, 8);
  put(sum, 8);
  if (std::fseek(f, sizes_at, SEEK_SET) != 0 || std::fwrite(head.data() + sizes_at, 1, 16, f) != 16 ||
      std::fflush(f) != 0 || ::fsync(fileno(f)) != 0)
    return fail(std::strerror(errno));
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    return make_error("cannot write " + path.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    return make_error("cannot rename " + tmp + ": " + ec.message());
  }
  // Make the rename itself durable.
  const int d = ::open(path.parent_path().empty() ? "." : path.parent_path().c_str(), O_RDONLY | O_CLOEXEC);
  if (d >= 0) {
    ::fsync(d);
    ::close(d);
  }
  return {};
}

// Closes a FILE when the scope ends.
struct FileCloser {
  FILE* f;
  ~FileCloser() {
    if (f) std::fclose(f);
  }
};

}  // namespace

std::optional<Metric> parse_metric(const std::string& name) {
  if (name == "cosine") return Metric::Cosine;
  if (name == "l2") return Metric::L2;
  if (name == "ip") return Metric::InnerProduct;
  return std::nullopt;
}

std::string metric_name(Metric m) {
  switch (m) {
    case Metric::Cosine:
      return "cosine";
    case Metric::L2:
      return "l2";
    case Metric::InnerProduct:
      return "ip";
  }
  return "?";
}

void set_threads(int n) { omp_set_num_threads(n > 0 ? n : omp_get_num_procs()); }

float exact_score(Metric m, const float* a, const float* b, int dim) {
  if (m == Metric::L2) return -l2_squared(a, b, dim);
  return inner_product(a, b, dim);
}

Result<std::unique_ptr<VectorIndex>> make_index(const std::string& spec, int dim, Metric metric) {
  if (dim <= 0) return make_error("index dimension must be positive");
  // FAISS divides by some parameters before checking them ("PQ0" raises SIGFPE).
  for (size_t i = 0; i < spec.size();) {
    if (!std::isdigit(static_cast<unsigned char>(spec[i]))) {
      ++i;
      continue;
    }
    bool zero = true;
    for (; i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])); ++i) zero &= spec[i] == '0';
    if (zero) return make_error("invalid index spec '" + spec + "': sizes must be positive");
  }
  const faiss::MetricType fm =
      metric == Metric::Cosine && has_centering_transform(spec) ? faiss::METRIC_L2 : faiss_metric(metric);
  try {
    std::unique_ptr<faiss::Index> ix(faiss::index_factory(dim, spec.c_str(), fm));
    disable_polysemous(ix.get());
    set_ef_construction(ix.get());
    if (dynamic_cast<faiss::IndexIDMap*>(ix.get()) || dynamic_cast<faiss::IndexIDMap2*>(ix.get()))
      return make_error("invalid index spec '" + spec + "': ids are managed by imgsearch (drop IDMap)");
    if (dynamic_cast<const faiss::IndexIVF*>(core_of(ix.get())))
      return std::unique_ptr<VectorIndex>(new FaissIndex(std::move(ix), metric, spec));
    auto idmap = std::make_unique<faiss::IndexIDMap2>(ix.release());
    idmap->own_fields = true;
    return std::unique_ptr<VectorIndex>(new FaissIndex(std::move(idmap), metric, spec));
  } catch (const std::out_of_range&) {  // FAISS's std::stoi on "IVF99999999999"
    return make_error("invalid index spec '" + spec + "': a number is too large");
  } catch (const std::exception& e) {
    return make_error("invalid index spec '" + spec + "': " + e.what());
  }
}

Result<std::unique_ptr<VectorIndex>> load_index(const std::filesystem::path& path, uint64_t* tag) {
  const std::string what = path.string() + ": ";
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) return make_error(what + "not found");
  if (std::filesystem::is_directory(st)) return make_error(what + "is a directory");
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    return make_error(what +
                      (errno == EACCES ? "permission denied" : std::string("read error: ") + std::strerror(errno)));
  FileCloser closer{f};
  if (std::fseek(f, 0, SEEK_END) != 0) return make_error(what + "read error: cannot seek");
  const uint64_t file_size = uint64_t(std::ftell(f));
  std::rewind(f);
  if (file_size == 0) return make_error(what + "empty file (0 bytes)");

  // The fixed part and the spec: at most 8 + 16 + 4096 + 24 bytes.
  std::vector<uint8_t> b(size_t(std::min<uint64_t>(file_size, sizeof(kMagic) + 16 + 4096 + 24)));
  if (std::fread(b.data(), 1, b.size(), f) != b.size()) return make_error(what + "read error");
  if (b.size() < sizeof(kMagic) + 16 || std::memcmp(b.data(), kMagic, sizeof(kMagic)) != 0)
    return make_error(what + "not an imgsearch index file");
  size_t pos = sizeof(kMagic);
  auto get = [&](int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= uint64_t(b[pos + size_t(i)]) << (8 * i);
    pos += size_t(bytes);
    return v;
  };
  const uint32_t version = uint32_t(get(4));
  if (version != kFormatVersion)
    return make_error(what + "index format version " + std::to_string(version) +
                      " is not supported (this build reads " + std::to_string(kFormatVersion) +
                      "); rebuild with `imgsearch index`");
  const uint32_t metric = uint32_t(get(4));
  const uint32_t dim = uint32_t(get(4));
  const uint32_t spec_len = uint32_t(get(4));
  if (metric > 2 || spec_len > 4096 || pos + spec_len + 24 > b.size()) return make_error(what + "corrupt header");
  std::string spec(reinterpret_cast<const char*>(b.data() + pos), spec_len);
  pos += spec_len;
  const uint64_t stored_tag = get(8);
  const uint64_t payload = get(8);
  const uint64_t sum = get(8);
  if (payload != file_size - pos) return make_error(what + "truncated or corrupt (payload size mismatch)");

  // First pass: the checksum, before FAISS parses a single byte.
  if (std::fseek(f, long(pos), SEEK_SET) != 0) return make_error(what + "read error: cannot seek");
  {
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    std::vector<uint8_t> chunk(size_t(1) << 20);
    uint64_t left = payload;
    while (left > 0) {
      const size_t want = size_t(std::min<uint64_t>(left, chunk.size()));
      if (std::fread(chunk.data(), 1, want, f) != want) break;
      XXH3_64bits_update(state, chunk.data(), want);
      left -= want;
    }
    const uint64_t got = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    if (left != 0) return make_error(what + "read error");
    if (got != sum) return make_error(what + "corrupt payload (checksum mismatch)");
  }
  // Second pass: BuildInfo, then FAISS's bytes, read straight from the file.
  if (std::fseek(f, long(pos), SEEK_SET) != 0) return make_error(what + "read error: cannot seek");
  uint8_t len_bytes[4];
  if (payload < 4 || std::fread(len_bytes, 1, 4, f) != 4) return make_error(what + "corrupt payload");
  const uint32_t info_len = uint32_t(len_bytes[0]) | uint32_t(len_bytes[1]) << 8 | uint32_t(len_bytes[2]) << 16 |
                            uint32_t(len_bytes[3]) << 24;
  if (info_len > payload - 4 || info_len > (1u << 20)) return make_error(what + "corrupt payload");
  std::string info(info_len, '\0');
  if (std::fread(info.data(), 1, info_len, f) != info_len) return make_error(what + "read error");
  try {
    BoundedFileReader r;
    r.f = f;
    r.left = payload - 4 - info_len;
    std::unique_ptr<faiss::Index> raw(faiss::read_index(&r));
    if (r.left != 0 || raw->d != int(dim)) return make_error(what + "corrupt payload");
    const bool idmapped = dynamic_cast<faiss::IndexIDMap2*>(raw.get()) != nullptr;
    if (!idmapped && !dynamic_cast<const faiss::IndexIVF*>(core_of(raw.get())))
      return make_error(what + "corrupt payload (unexpected index layout)");
    if (tag) *tag = stored_tag;
    return std::unique_ptr<VectorIndex>(new FaissIndex(std::move(raw), Metric(metric), spec, decode_info(info)));
  } catch (const std::exception& e) {  // FaissException, or bad_alloc from a size it read
    return make_error(what + "corrupt payload: " + e.what());
  }
}

}  // namespace imgsearch::index
