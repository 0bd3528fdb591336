// ingest: a folder -> catalog + index.
//
//   walk -> (per file) stat: unchanged? skip -> read -> hash -> moved? rename
//        -> decode (reduced-scale) -> batch -> embed -> commit (catalog + index)
//
// Reading and decoding run on a pool of `threads` workers; inference batches on one
// thread (the engine parallelises inside); queues are bounded so memory stays flat
// whatever the folder size. Work is committed batch by batch: a run killed at any point
// keeps every image it reported as indexed, and the next run picks up the rest.
// A file that cannot be indexed is skipped with a one-line reason; the run goes on.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "database/database.h"
#include "embed/embedder.h"

namespace imgsearch::ingest {

struct Options {
  int threads = 0;             // decode workers; 0 = all cores
  int batch_size = 16;         // images per inference call and per commit
  int64_t max_pixels = 200'000'000;
  int min_side_px = 16;
  uint64_t max_file_bytes = uint64_t(1) << 30;
  bool follow_links = false;
  bool include_hidden = false;
  std::vector<std::string> include_globs;  // match on the path relative to DIR; empty = all
  std::vector<std::string> exclude_globs;
  Progress::Style progress = Progress::Style::Auto;
};

struct Skipped {
  std::string path;    // as walked (raw bytes)
  std::string reason;  // one line
};

struct Summary {
  int64_t seen = 0;       // image files found by the walk
  int64_t indexed = 0;    // new or changed, embedded and committed
  int64_t unchanged = 0;  // same size and mtime as already indexed
  int64_t moved = 0;      // same content as a vanished indexed file: renamed, not re-embedded
  int64_t removed = 0;    // indexed before, gone from the folder now
  std::vector<Skipped> skipped;
  double seconds = 0;
  double decode_seconds = 0;  // summed over workers
  double infer_seconds = 0;
};

// The file extensions the walk treats as images (lower case, with the dot).
const std::vector<std::string>& image_extensions();

// Indexes DIR into `db` with `embedder` (whose representation must match the database).
Result<Summary> index_folder(database::Database& db, embed::Embedder& embedder, const std::filesystem::path& dir,
                             const Options& options);

// Absolute, lexically normalised form of a path: the identity of a file in the catalog.
std::string path_key(const std::filesystem::path& p);

// Content hash used by the catalog (xxh3-128, 32 hex digits).
std::string content_hash(const uint8_t* data, size_t size);

}  // namespace imgsearch::ingest
