// search: a query (image bytes, an indexed image, or a vector) -> ranked indexed images.
//
// A Searcher opens a database read-only and an embedder with the database's own
// representation, so queries are always embedded exactly as the indexed images were.
// Results are best first; `score` is the similarity (cosine for cosine databases;
// negated squared distance for L2).
#pragma once

#include <cstdint>
#include <filesystem>
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
  Result<std::vector<Hit>> by_vector(std::span<const float> v, const Query& q);

 private:
  std::unique_ptr<database::Database> db_;
  std::unique_ptr<embed::Embedder> embedder_;
};

}  // namespace imgsearch::search
