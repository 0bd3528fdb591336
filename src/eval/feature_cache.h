// The vectors `eval` extracted, kept between runs: one SQLite file per (folder, model),
// holding, per image, one pooled vector per (layer, pooling) asked so far.
//
//   images(id, key, size, mtime_ns, error)   key = absolute path; error: why it could not be
//                                             decoded ("" when it was)
//   vectors(layer, pooling, image_id, data)  data = float32 array, NOT normalised
//   meta(key, value)                         "model": the model's fingerprint
//
// Invalidation: an image whose size or mtime changed loses its vectors (and its error); a
// different model fingerprint (model.json, ONNX file size and mtime, preprocessing) empties
// the file. Writers take SQLite's lock per transaction, so two evals of the same folder
// can share the file (the second waits, then finds the work done or redoes a part).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

struct sqlite3;

namespace imgsearch::eval {

struct CachedImage {
  int64_t id = 0;
  std::string error;                                   // non-empty: decoding failed for this size/mtime; not retried
  std::set<std::pair<std::string, std::string>> have;  // (layer, pooling) vectors present
};

struct FileState {
  std::string key;
  int64_t size = 0;
  int64_t mtime_ns = 0;
};

struct VectorRow {
  int64_t image_id;
  std::string layer, pooling;
  std::span<const float> data;
};

class FeatureCache {
 public:
  ~FeatureCache();
  static Result<std::unique_ptr<FeatureCache>> open(const std::filesystem::path& file, const std::string& fingerprint);

  // Registers the folder's files as they are now (changed ones lose their vectors) and
  // returns what is cached for each, in the order given.
  Result<std::vector<CachedImage>> sync(const std::vector<FileState>& files);

  // One transaction.
  Status put(std::span<const VectorRow> rows, std::span<const std::pair<int64_t, std::string>> errors = {});

  // The vectors of (layer, pooling) for `ids`, row i = ids[i], each `dim` floats; an id
  // without a vector of that size is an error.
  Result<std::vector<float>> load(const std::vector<int64_t>& ids, const std::string& layer, const std::string& pooling,
                                  size_t dim);

  const std::filesystem::path& path() const { return path_; }

 private:
  FeatureCache() = default;
  Status exec(const char* sql);

  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

}  // namespace imgsearch::eval
