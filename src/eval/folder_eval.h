// Evaluation of a representation on a labelled folder: DIR/<class>/<images>.
//
// The folder is indexed (incrementally) into a cache database per representation, so a
// second evaluation of the same folder and representation extracts nothing again; the
// vectors are then scored with evaluate_retrieval (exact ranking).
#pragma once

#include <filesystem>
#include <string>

#include "common/progress.h"
#include "common/result.h"
#include "database/database.h"
#include "eval/retrieval.h"
#include "ingest/ingest.h"

namespace imgsearch::eval {

struct FolderEvalOptions {
  std::filesystem::path cache_root;  // empty: $XDG_CACHE_HOME/imgsearch/eval or ~/.cache/imgsearch/eval
  std::vector<int> ks = {1, 5, 10};
  int threads = 0;
  Progress::Style progress = Progress::Style::Auto;
};

struct FolderEvalResult {
  database::Settings settings;  // layer filled in
  RetrievalResult retrieval;
  int64_t images = 0;
  int64_t skipped = 0;            // files that could not be indexed
  std::filesystem::path cache_db;  // where the vectors are kept
};

Result<FolderEvalResult> evaluate_folder(const std::filesystem::path& dir, const database::Settings& requested,
                                         const FolderEvalOptions& options);

// The class of an image: the first folder of its path below DIR ("" if directly in DIR).
std::string class_of(const std::string& image_key, const std::string& dir_key);

}  // namespace imgsearch::eval
