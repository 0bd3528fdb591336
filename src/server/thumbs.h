// thumbs: JPEG thumbnails of indexed images, made on first request and cached on disk.
//
//   DB_DIR/thumbs/<content_hash>-<size>.jpg
//
// The name carries the content hash the catalog recorded for the image, so a re-indexed
// (changed) file gets a new thumbnail and the old one is never served for it. Files are
// written with write_file_atomic; concurrent requests for the same thumbnail wait for
// one decode. EXIF orientation is applied by the decoder. When the cache folder is not
// writable (a read-only database) thumbnails are still served, just not kept.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"

namespace imgsearch::server {

struct ThumbResult {
  std::vector<uint8_t> jpeg;
  bool from_cache = false;
};

class ThumbCache {
 public:
  ThumbCache(std::filesystem::path dir, int short_side) : dir_(std::move(dir)), short_side_(short_side) {}

  // The thumbnail of the file at `source` (an absolute catalog key) whose indexed content
  // hash is `content_hash`. Error messages start with "gone:" when the file cannot be read.
  Result<ThumbResult> get(const std::string& source, const std::string& content_hash);

  std::filesystem::path path_for(const std::string& content_hash) const;
  int short_side() const { return short_side_; }

 private:
  Result<std::vector<uint8_t>> make(const std::string& source, const std::string& content_hash, bool* cacheable);

  std::filesystem::path dir_;
  int short_side_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> in_flight_;  // content hashes being made now
  bool warned_unwritable_ = false;
};

// Scales an image so that its shorter side is at most `short_side` (never enlarges) and
// encodes it as JPEG. Used for thumbnails and for originals browsers cannot show (TIFF, HEIC).
Result<std::vector<uint8_t>> jpeg_of(const std::vector<uint8_t>& encoded, int short_side, int quality);

}  // namespace imgsearch::server
