// ingest: a folder -> catalog + index.
//
//   walk ─> stat: same size and mtime as indexed? unchanged, skip (no read)
//        ─> workers (pool of `threads`): read -> hash
//              same content as this key had?      touched: new mtime, same vector
//              same content as a vanished record? moved: renamed, same vector
//              same content as another record?    reused: its vector copied
//              otherwise decode (reduced-scale, upright RGB)
//        ─> bounded queue ─> this thread: batched inference, then ONE transaction per
//           batch holding records and vectors; then the next batch.
//        ─> at the end: records of files gone from DIR (and of files no longer
//           indexable) removed, the index file saved, tagged with the catalog change it
//           reflects. A record whose file is still there but was not walked (filtered
//           out by --exclude, hidden, unreadable folder) is kept: only deletion deletes.
//
// Memory stays flat whatever the folder size: the queue holds at most 4 batches of
// decoded images, and nothing per file is kept beyond its walk entry and catalog record.
//
// Crash safety: an image counts as done only once its transaction has committed (the
// progress bar, Progress log and summary count nothing earlier), so a run killed at any
// point keeps everything it reported, and the next run starts where it stopped (what was
// committed is then "unchanged"). The index file is derived from the catalog and rebuilt
// when stale, so the two never disagree (see database/database.h).
//
// Bad input never stops a run: a file that cannot be indexed gets a one-line reason in
// Summary::skipped; the run goes on. Only a failing database stops it.
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
  int threads = 0;      // read/decode workers; 0 = all cores
  int batch_size = 16;  // images per inference call and per commit
  int64_t max_pixels = 200'000'000;
  int min_side_px = 16;
  uint64_t max_file_bytes = uint64_t(1) << 30;
  bool follow_links = false;
  bool include_hidden = false;
  std::vector<std::string> include_globs;  // match the path relative to DIR or the file name; empty = all
  std::vector<std::string> exclude_globs;  // also prune folders
  Progress::Style progress = Progress::Style::Auto;
  // When set, one JSON object per line is appended to this file: {"event":"start",...},
  // then {"event":"commit",...} after every committed transaction, {"event":"end",...}.
  // Each line is one write(2), so it survives a kill -9 whole; "in_database" in a commit
  // line is a lower bound on what the catalog holds from then on.
  std::filesystem::path progress_log;
  // Called after the walk, before any file is read (tests use it to make a listed file
  // vanish at exactly the wrong moment).
  std::function<void()> after_walk;
};

// How `--threads N` is split between decode workers and inference threads; the figures
// behind it are in bench/ingest.cpp's output.
struct ThreadSplit {
  int decode = 1;
  int infer = 1;
};
ThreadSplit split_threads(int threads);

struct Skipped {
  std::string path;    // raw bytes, as walked
  std::string reason;  // one line; stable first words (see reason_category)
};

// Something unusual that is not a failure (a folder named like an image, a link not followed).
struct Note {
  std::string path;
  std::string text;
};

struct Summary {
  int64_t seen = 0;       // image files found by the walk
  int64_t indexed = 0;    // new or changed content: decoded, embedded, committed
  int64_t reused = 0;     // same content as an image already indexed: its vector copied
  int64_t unchanged = 0;  // same size and mtime as indexed: not even read
  int64_t touched = 0;    // mtime changed, content the same: record updated, not re-embedded
  int64_t moved = 0;      // same content as an indexed file that is gone: renamed
  int64_t removed = 0;    // indexed before, gone (or no longer indexable) now
  int64_t kept = 0;       // indexed before, not walked this time but still there (filtered out): kept
  int64_t hidden = 0;     // hidden files and folders ignored (--include-hidden)
  int64_t excluded = 0;   // left out by --include / --exclude
  std::vector<Skipped> skipped;
  std::vector<Note> notes;
  int64_t in_database = 0;  // images in the catalog at the end
  double seconds = 0;
  double decode_seconds = 0;  // read + hash + decode, summed over workers
  double infer_seconds = 0;   // inference (preprocessing included), on the committing thread
  double commit_seconds = 0;  // catalog transactions and index updates
};

// "too small (8x8 < 16 px)" -> "too small": the reason without its details, for counts.
std::string reason_category(const std::string& reason);

// The file extensions the walk treats as images (lower case, with the dot).
const std::vector<std::string>& image_extensions();

// Indexes DIR into `db` with `embedder` (whose representation must match the database).
// Fails only when the database cannot be read or written.
Result<Summary> index_folder(database::Database& db, embed::Embedder& embedder, const std::filesystem::path& dir,
                             const Options& options);

// Absolute, lexically normalised form of a path: the identity of a file in the catalog.
std::string path_key(const std::filesystem::path& p);

// Content hash used by the catalog (xxh3-128, 32 hex digits).
std::string content_hash(const uint8_t* data, size_t size);

}  // namespace imgsearch::ingest
