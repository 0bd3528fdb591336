// The folder walk of ingest (private to src/ingest).
//
// Lists the image files under DIR (by extension, case-insensitive) without reading them.
// Never throws and never stops for one entry: problems with single entries land in
// `skipped` (a file the user may have meant to index: dangling or looping symlink, empty
// file, FIFO named .jpg, unreadable folder) or `notes` (something unusual that is not a
// failure: a folder named like an image, a symlink to a folder not followed, the database
// folder itself).
//
// Policy
//   - Hidden entries (name starting with '.') are ignored unless include_hidden.
//   - Symbolic links are followed only with follow_links; a link that leads back to a
//     folder being walked is a loop and is reported, a second route to a folder already
//     walked is noted and not walked twice.
//   - exclude globs prune folders too (--exclude .git); include globs select files only.
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
  std::vector<Skipped> skipped;
  std::vector<Note> notes;
  int64_t hidden = 0;    // hidden image files and folders ignored
  int64_t excluded = 0;  // image files and folders left out by --include/--exclude
};

// `skip_dir` (the database directory, if it lies inside DIR) is not entered.
Result<WalkResult> walk_folder(const std::filesystem::path& dir, const Options& options,
                               const std::filesystem::path& skip_dir);

bool has_image_extension(const std::string& name);

}  // namespace imgsearch::ingest
