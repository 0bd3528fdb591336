// index: vectors -> nearest neighbours.
//
// Data contract
//   Vectors are float32, row-major n x dim: component j of vector i is x[i*dim + j].
//   Every vector carries an int64 id chosen by the caller (the catalog's image id, >= 0).
//   search() writes k results per query, best first, into caller-owned buffers of size
//   nq*k: `scores` (similarity: higher is better; for Metric::L2 it is the negated
//   squared distance, so "higher is better" always holds) and `ids` (-1 where fewer than k
//   vectors exist).
//   An index owns copies of what it was given; add()/remove() are not thread-safe,
//   search() is safe to call from several threads when no add/remove runs.
//
// Kinds are named by FAISS factory strings ("Flat", "HNSW32", "IVF1024,Flat",
// "PCA256,IVF4096,PQ32", "SQ8", ...). Every kind can add and remove:
//   - the flat-codes family (Flat, SQ8, PQ, LSH, behind transforms too) removes in place;
//   - IVF kinds keep the caller's ids in their inverted lists and remove in place;
//   - HNSW (and other graphs) cannot unlink a node: remove() leaves a tombstone that
//     search filters out (IDSelector), and the memory stays used until a rebuild
//     (tombstones() says how much; the database rebuilds when they pile up).
// Approximate kinds have search-time knobs (IVF nprobe, HNSW efSearch); the defaults
// stored with the index are used unless SearchOptions overrides them, and tune_defaults()
// (index/exact.h) sets them from measured recall.
//
// Files are versioned: a header (magic, format version, metric, dim, spec, tag, payload
// size, payload checksum) precedes the payload (BuildInfo, then FAISS's own bytes), so an
// old, foreign or damaged file gives a clear error. Files are written and read in a
// streaming way: saving or loading never holds a second copy of a large index in memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/result.h"

namespace imgsearch::index {

enum class Metric { Cosine, L2, InnerProduct };

std::optional<Metric> parse_metric(const std::string& name);
std::string metric_name(Metric m);

// Search-time knobs; 0 means "the index's stored default".
struct SearchOptions {
  int nprobe = 0;     // IVF: inverted lists visited per query
  int ef_search = 0;  // HNSW: size of the candidate list walked per query
};

// How and when an index was built: stored in the index file, shown by `imgsearch info`.
struct BuildInfo {
  std::string requested;       // what the database asked for: "auto" or a factory string
  std::string fallback;        // non-empty: this index stands in for `requested` (why)
  int64_t built_at = 0;        // unix seconds of the last full (re)build
  double build_seconds = 0;    // wall time of that build (training + adds + tuning)
  int64_t built_with = 0;      // vectors in the collection at that build
  int64_t trained_on = 0;      // training sample size (0: the kind needs no training)
  uint64_t memory_budget = 0;  // the budget `auto` resolved against (bytes)
  double tuned_recall = -1;    // recall@10 vs exact at the stored default knobs, on a
                               // sample of the collection; -1: not measured
  int rerank = 0;              // candidates to re-rank exactly by default (lossy kinds)
};

// What an index costs and how it is configured (for `info` and the benchmark).
struct IndexStats {
  int64_t memory_bytes = 0;                   // the index's footprint (its serialized size: codes, ids,
                                              // graph links, centroids, transforms)
  int64_t code_bytes = 0;                     // bytes per vector of its stored codes (4*dim for Flat)
  int64_t id_bytes = 0;                       // bytes per vector spent on ids (in lists or the id map)
  bool lossy = false;                         // stores an approximation of the vectors (PQ, SQ, PCA):
                                              // scores are approximate, re-rank with exact vectors
  std::map<std::string, std::string> params;  // "nlist", "nprobe", "M", "efSearch", ...
};

class VectorIndex {
 public:
  virtual ~VectorIndex() = default;
  virtual int dim() const = 0;
  virtual int64_t size() const = 0;  // live vectors (tombstones not counted)
  virtual Metric metric() const = 0;
  virtual std::string spec() const = 0;  // the factory string
  virtual bool needs_training() const = 0;
  // Vectors FAISS needs to train this kind well (0 when it needs no training): 39 per IVF
  // list and per PQ centroid, as FAISS's own k-means warns below that.
  virtual int64_t min_training_vectors() const = 0;
  // A good training-sample size for this kind (>= min_training_vectors(), 0 if none).
  virtual int64_t ideal_training_vectors() const = 0;
  virtual Status train(int64_t n, const float* x) = 0;
  virtual Status add(int64_t n, const float* x, const int64_t* ids) = 0;
  // Ids not in the index are ignored. Never fails for a kind that cannot remove in place:
  // those leave tombstones (see tombstones()).
  virtual Status remove(std::span<const int64_t> ids) = 0;
  // Removed vectors that still occupy memory (HNSW); 0 for kinds that remove in place.
  virtual int64_t tombstones() const = 0;
  // `scores` and `ids` hold nq*k values each (see the data contract). `options` overrides
  // the stored knobs for this call only (thread-safe: nothing in the index changes).
  virtual void search(int64_t nq, const float* queries, int k, float* scores, int64_t* ids,
                      const SearchOptions& options = {}) const = 0;
  // The stored default knobs (0 where the kind has none) and setting them.
  virtual SearchOptions default_options() const = 0;
  virtual void set_default_options(const SearchOptions& options) = 0;
  virtual IndexStats stats() const = 0;
  virtual const BuildInfo& build_info() const = 0;
  virtual void set_build_info(const BuildInfo& info) = 0;
  // Writes the index atomically. `tag` is stored in the header and returned by
  // load_index (the database uses it for the catalog change_seq the index reflects).
  virtual Status save(const std::filesystem::path& path, uint64_t tag = 0) const = 0;
};

// Vectors given to a Cosine index must already be L2-normalised (the embedder does it);
// cosine is then the inner product.
Result<std::unique_ptr<VectorIndex>> make_index(const std::string& spec, int dim, Metric metric);
Result<std::unique_ptr<VectorIndex>> load_index(const std::filesystem::path& path, uint64_t* tag = nullptr);

// Threads FAISS may use (OpenMP) for what the calling thread runs next: training, adds,
// batched searches; 0 = all cores. Single queries scan on one thread regardless.
void set_threads(int n);

// The exact similarity the index promises between two vectors (higher is better; L2 is
// the negated squared distance). Used to re-rank approximate candidates.
float exact_score(Metric m, const float* a, const float* b, int dim);

}  // namespace imgsearch::index
