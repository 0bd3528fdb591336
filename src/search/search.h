// search: a query (image bytes, an indexed image, or a vector) -> ranked indexed images.
//
// A Searcher opens a database read-only and an embedder with the database's own
// representation, so queries are always embedded exactly as the indexed images were.
// Results are best first; `score` is the similarity (cosine for cosine databases;
// negated squared distance for L2).
//
// Approximate indexes return candidates; with re-ranking (Query::rerank) the Searcher
// fetches that many candidates, reads their exact vectors from the catalog in one batch,
// rescores them exactly and keeps the best k. Lossy kinds (PQ, SQ, PCA) re-rank by
// default, with the depth their build was tuned for.
#pragma once

#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "database/database.h"
#include "embed/embedder.h"

namespace imgsearch::search {

struct Hit {
  int rank = 0;  // 1-based
  int64_t id = 0;
  std::string path;
  float score = 0;
};

struct Query {
  int k = 10;
  int64_t exclude_id = -1;  // leave this image out (e.g. the query itself)
  // Hits scoring below this are dropped (so fewer than k may come back).
  float min_score = std::numeric_limits<float>::lowest();
  // Candidates to re-rank with exact vectors: -1 = the index's default (its tuned depth
  // for lossy kinds, none for exact-vector kinds), 0 = never, N = fetch max(N, k).
  int rerank = -1;
  index::SearchOptions knobs;  // nprobe / efSearch for this query; 0 = the index's defaults
};

class Searcher {
 public:
  static Result<std::unique_ptr<Searcher>> open(const std::filesystem::path& db_dir,
                                                const embed::EngineOptions& engine = {});

  database::Database& db() { return *db_; }
  embed::Embedder& embedder() { return *embedder_; }

  // Decodes and embeds an encoded image, then searches.
  Result<std::vector<Hit>> by_image(std::span<const uint8_t> encoded, const Query& q);
  // Uses an indexed image's stored vector (no decoding, no inference).
  Result<std::vector<Hit>> by_id(int64_t id, const Query& q);
  // An indexed image named by its path: as given to `index`, or any path to the same file
  // (compared in absolute, normalised form, as the catalog's key).
  Result<std::vector<Hit>> by_path(const std::string& path, const Query& q);
  Result<std::vector<Hit>> by_vector(std::span<const float> v, const Query& q);

  // Several queries in one index call (FAISS batches them; re-ranking reads all
  // candidates' vectors in one catalog transaction). `vs` holds n x dim floats; the
  // result has n lists, in order.
  Result<std::vector<std::vector<Hit>>> by_vectors(std::span<const float> vs, const Query& q);
  // Several encoded images: decoded one by one, embedded in batches, searched together.
  // One result per image, in order; an image that cannot be decoded gets its error.
  std::vector<Result<std::vector<Hit>>> by_images(std::span<const std::span<const uint8_t>> encoded, const Query& q);

 private:
  std::unique_ptr<database::Database> db_;
  std::unique_ptr<embed::Embedder> embedder_;
};

// The catalog key of a path, as ingest computes it: absolute and lexically normalised.
std::string path_key(const std::filesystem::path& p);

}  // namespace imgsearch::search
