// decode: encoded image bytes -> upright sRGB pixels.
//
// Data contract
//   RgbImage holds 8-bit RGB, interleaved, row-major, no padding:
//     channel c of pixel (x, y) is pixels[(y * width + x) * 3 + c],  pixels.size() == width*height*3.
//   Every image that leaves this module is upright (EXIF orientation applied), in sRGB
//   (CMYK, grayscale, 16-bit, palette converted), with any alpha composited on white.
//   Animated formats (GIF, WebP) give their first frame.
//   Ownership: RgbImage owns its pixels; inputs are borrowed for the duration of the call.
//
// Errors (Result::error()) are one line, stable first words, no file name (the caller
// knows it and prefixes it):
//   "not an image (...)"             content is not a supported image (text, HTML, unknown magic)
//   "unsupported format (...)"       recognised but not decodable here
//   "truncated or corrupt <FMT>: ..."  the decoder failed part-way
//   "too many pixels (WxH > limit)"  decompression-bomb guard (DecodeOptions::max_pixels)
//   "too small (WxH < N px)"         below DecodeOptions::min_side_px
//   "empty input"
//
// Thread safety: decode_* functions may be called from many threads at once after
// decode_init() has run once in the process.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

namespace imgsearch::decode {

struct RgbImage {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3
};

// What a file holds, read from its header without decoding the pixels.
struct ImageInfo {
  std::string format;  // "jpeg", "png", "webp", "gif", "tiff", "heif", "bmp"
  int width = 0;       // upright (after EXIF orientation)
  int height = 0;
  int orientation = 1;  // EXIF orientation tag, 1..8 (1 when absent)
};

struct DecodeOptions {
  // 0: full resolution. Otherwise the image is resized (shrink-on-load where the format
  // allows, e.g. JPEG DCT scaling) so that its shorter side is exactly target_short_side.
  int target_short_side = 0;
  // Refuse images with more pixels than this (checked from the header, before decoding).
  int64_t max_pixels = 200'000'000;
  // Refuse images whose shorter side is below this many pixels.
  int min_side_px = 16;
};

// Once per process, before any other call (idempotent, thread-safe).
// Initialises libvips, turns its operation cache off (memory stays flat) and blocks
// loaders it marks untrusted except the ones this module calls deliberately.
void decode_init();

// Sniffs the format from the first bytes; no pixels decoded.
Result<ImageInfo> probe_image(std::span<const uint8_t> bytes, const DecodeOptions& options = {});

// Decodes bytes into an upright sRGB image (see the data contract above).
Result<RgbImage> decode_image(std::span<const uint8_t> bytes, const DecodeOptions& options = {});

// Encodes pixels as JPEG (for thumbnails and tests).
Result<std::vector<uint8_t>> encode_jpeg(const RgbImage& image, int quality = 85);

// Encodes pixels as PNG (lossless; for tests and plots).
Result<std::vector<uint8_t>> encode_png(const RgbImage& image);

}  // namespace imgsearch::decode
