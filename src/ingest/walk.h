// The folder walk of ingest (private to src/ingest).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ingest/ingest.h"

namespace imgsearch::ingest {

struct WalkEntry {
  std::filesystem::path path;  // DIR as given, joined with the relative path
  std::string rel;             // relative to DIR
  int64_t size = 0;
  int64_t mtime_ns = 0;
};

struct WalkResult {
  std::vector<WalkEntry> files;  // image files, sorted by path
  std::vector<Skipped> skipped;  // dangling links, loops, unreadable folders...
};

// Walks DIR recursively. Never throws; problems with single entries land in `skipped`.
// `skip_dir` (the database directory, if it lies inside DIR) is not entered.
Result<WalkResult> walk_folder(const std::filesystem::path& dir, const Options& options,
                               const std::filesystem::path& skip_dir);

}  // namespace imgsearch::ingest
