#include "server/thumbs.h"

#include <algorithm>
#include <cstdio>

#include "common/file_io.h"
#include "decode/decode.h"
#include "ingest/ingest.h"

namespace imgsearch::server {
namespace fs = std::filesystem;

Result<std::vector<uint8_t>> jpeg_of(const std::vector<uint8_t>& encoded, int short_side, int quality) {
  auto info = decode::probe_image(encoded);
  if (!info) return make_error(info.error());
  decode::DecodeOptions opt;
  opt.min_side_px = 1;
  if (short_side > 0 && std::min(info->width, info->height) > short_side) opt.target_short_side = short_side;
  auto img = decode::decode_image(encoded, opt);
  if (!img) return make_error(img.error());
  return decode::encode_jpeg(*img, quality);
}

fs::path ThumbCache::path_for(const std::string& content_hash) const {
  return dir_ / (content_hash + "-" + std::to_string(short_side_) + ".jpg");
}

Result<std::vector<uint8_t>> ThumbCache::make(const std::string& source, const std::string& content_hash,
                                              bool* cacheable) {
  auto bytes = read_file_bytes(source, uint64_t(1) << 31);
  if (!bytes) return make_error("gone: " + bytes.error());
  // The file may have changed since it was indexed: show what is there now, but only
  // keep it under the indexed hash when it is still that content.
  *cacheable = ingest::content_hash(bytes->data(), bytes->size()) == content_hash;
  return jpeg_of(*bytes, short_side_, 82);
}

Result<ThumbResult> ThumbCache::get(const std::string& source, const std::string& content_hash) {
  // Only names we made ourselves: the hash is the catalog's hex digest.
  const bool hash_ok = !content_hash.empty() && content_hash.size() <= 64 &&
                       std::all_of(content_hash.begin(), content_hash.end(),
                                   [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (!hash_ok) {
    bool cacheable = false;
    auto jpeg = make(source, content_hash, &cacheable);
    if (!jpeg) return make_error(jpeg.error());
    return ThumbResult{std::move(*jpeg), false};
  }
  const fs::path file = path_for(content_hash);
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !in_flight_.count(content_hash); });
    std::error_code ec;
    if (fs::is_regular_file(file, ec)) {
      lock.unlock();
      auto cached = read_file_bytes(file, uint64_t(1) << 26);
      if (cached) return ThumbResult{std::move(*cached), true};
      lock.lock();
    }
    in_flight_.insert(content_hash);
  }
  bool cacheable = false;
  auto jpeg = make(source, content_hash, &cacheable);
  if (jpeg && cacheable) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    Status st = ec ? Status(make_error(ec.message())) : write_file_atomic(file, *jpeg);
    if (!st) {
      std::lock_guard lock(mu_);
      if (!warned_unwritable_)
        std::fprintf(stderr, "imgsearch serve: thumbnails are not cached (%s: %s)\n", dir_.c_str(), st.error().c_str());
      warned_unwritable_ = true;
    }
  }
  {
    std::lock_guard lock(mu_);
    in_flight_.erase(content_hash);
  }
  cv_.notify_all();
  if (!jpeg) return make_error(jpeg.error());
  return ThumbResult{std::move(*jpeg), false};
}

}  // namespace imgsearch::server
