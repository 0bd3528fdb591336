#include "embed/preprocess.h"

#include <algorithm>
#include <cmath>

namespace imgsearch::embed {

decode::DecodeOptions decode_options_for(const ModelSpec& spec) {
  decode::DecodeOptions o;
  o.target_short_side = spec.resize_short_side;
  return o;
}

void preprocess(const decode::RgbImage& image, const ModelSpec& spec, float* out) {
  const int S = spec.input_size;
  const int w = image.width, h = image.height;
  // Side of the centre crop in source pixels.
  const double crop = double(std::min(w, h)) * S / spec.resize_short_side;
  const double scale = crop / S;
  // When no resampling is needed, crop at whole pixels (rounding the offset down, as
  // the reference preprocessing does) so the crop is an exact copy.
  const bool exact = std::abs(scale - 1.0) < 1e-9;
  const double x0 = exact ? std::floor((w - S) / 2.0) : (w - crop) / 2.0;
  const double y0 = exact ? std::floor((h - S) / 2.0) : (h - crop) / 2.0;
  const uint8_t* px = image.pixels.data();
  float inv_std[3], mean[3];
  for (int c = 0; c < 3; ++c) {
    inv_std[c] = 1.f / spec.std[c];
    mean[c] = spec.mean[c];
  }
  const size_t plane = size_t(S) * S;
  // Where channel c of pixel (x, y) goes: planar (NCHW) or interleaved (NHWC).
  const bool nhwc = spec.layout == Layout::NHWC;
  const size_t c_stride = nhwc ? 1 : plane, px_stride = nhwc ? 3 : 1;
  for (int y = 0; y < S; ++y) {
    for (int x = 0; x < S; ++x) {
      float v[3];
      if (exact) {
        const uint8_t* p = px + (size_t(y + int(y0)) * w + size_t(x + int(x0))) * 3;
        for (int c = 0; c < 3; ++c) v[c] = p[c];
      } else {
        // Bilinear sample at the centre of the destination pixel.
        const double sx = std::clamp(x0 + (x + 0.5) * scale - 0.5, 0.0, double(w - 1));
        const double sy = std::clamp(y0 + (y + 0.5) * scale - 0.5, 0.0, double(h - 1));
        const int ix = int(sx), iy = int(sy);
        const int ix1 = std::min(ix + 1, w - 1), iy1 = std::min(iy + 1, h - 1);
        const float fx = float(sx - ix), fy = float(sy - iy);
        const uint8_t* p00 = px + (size_t(iy) * w + ix) * 3;
        const uint8_t* p01 = px + (size_t(iy) * w + ix1) * 3;
        const uint8_t* p10 = px + (size_t(iy1) * w + ix) * 3;
        const uint8_t* p11 = px + (size_t(iy1) * w + ix1) * 3;
        for (int c = 0; c < 3; ++c)
          v[c] = (p00[c] * (1 - fx) + p01[c] * fx) * (1 - fy) + (p10[c] * (1 - fx) + p11[c] * fx) * fy;
      }
      float* o = out + (size_t(y) * S + x) * px_stride;
      for (int c = 0; c < 3; ++c) o[c * c_stride] = (v[c] - mean[c]) * inv_std[c];
    }
  }
}

}  // namespace imgsearch::embed
