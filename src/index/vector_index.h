// index: vectors -> nearest neighbours.
//
// Data contract
//   Vectors are float32, row-major n x dim: component j of vector i is x[i*dim + j].
//   Every vector carries an int64 id chosen by the caller (the catalog's image id).
//   search() writes k results per query, best first, into caller-owned buffers of size
//   nq*k: `scores` (similarity: higher is better; for Metric::L2 it is the negated
//   squared distance, so "higher is better" always holds) and `ids` (-1 where fewer than k
//   vectors exist).
//   An index owns copies of what it was given; add()/remove() are not thread-safe,
//   search() is safe to call from several threads when no add/remove runs.
//
// Kinds are named by FAISS factory strings ("Flat", "HNSW32", "IVF1024,Flat", ...).
// Files are versioned: a header (magic, format version, metric, dim, spec) precedes the
// FAISS payload, so an old, foreign or damaged file gives a clear error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/result.h"

namespace imgsearch::index {

enum class Metric { Cosine, L2, InnerProduct };

std::optional<Metric> parse_metric(const std::string& name);
std::string metric_name(Metric m);

class VectorIndex {
 public:
  virtual ~VectorIndex() = default;
  virtual int dim() const = 0;
  virtual int64_t size() const = 0;
  virtual Metric metric() const = 0;
  virtual std::string spec() const = 0;  // the factory string
  virtual bool needs_training() const = 0;
  virtual Status train(int64_t n, const float* x) = 0;
  virtual Status add(int64_t n, const float* x, const int64_t* ids) = 0;
  // Ids not in the index are ignored. Kinds that cannot remove in place (HNSW, IVF) fail
  // when asked to remove an id they hold; rebuild those instead.
  virtual Status remove(std::span<const int64_t> ids) = 0;
  virtual void search(int64_t nq, const float* queries, int k, float* scores, int64_t* ids) const = 0;
  // Writes the index atomically. `tag` is stored in the header and returned by
  // load_index (the database uses it for the catalog change_seq the index reflects).
  virtual Status save(const std::filesystem::path& path, uint64_t tag = 0) const = 0;
};

// Vectors given to a Cosine index must already be L2-normalised (the embedder does it);
// cosine is then the inner product.
Result<std::unique_ptr<VectorIndex>> make_index(const std::string& spec, int dim, Metric metric);
Result<std::unique_ptr<VectorIndex>> load_index(const std::filesystem::path& path, uint64_t* tag = nullptr);

}  // namespace imgsearch::index
