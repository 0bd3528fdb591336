#include "embed/pooling.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace imgsearch::embed {

std::optional<Pooling> parse_pooling(const std::string& name) {
  if (name == "avg") return Pooling::Avg;
  if (name == "max") return Pooling::Max;
  if (name == "gem") return Pooling::Gem;
  if (name == "none") return Pooling::None;
  return std::nullopt;
}

std::string pooling_name(Pooling p) {
  switch (p) {
    case Pooling::Avg:
      return "avg";
    case Pooling::Max:
      return "max";
    case Pooling::Gem:
      return "gem";
    case Pooling::None:
      return "none";
  }
  return "?";
}

size_t pooled_dim(Pooling p, int channels, int height, int width) {
  return p == Pooling::None ? size_t(channels) * height * width : size_t(channels);
}

void pool(const float* map, int channels, int height, int width, Pooling p, float* out) {
  const size_t hw = size_t(height) * width;
  if (p == Pooling::None) {
    std::memcpy(out, map, sizeof(float) * hw * channels);
    return;
  }
  for (int c = 0; c < channels; ++c) {
    const float* m = map + size_t(c) * hw;
    switch (p) {
      case Pooling::Avg: {
        double s = 0;
        for (size_t i = 0; i < hw; ++i) s += m[i];
        out[c] = float(s / hw);
        break;
      }
      case Pooling::Max:
        out[c] = *std::max_element(m, m + hw);
        break;
      case Pooling::Gem: {
        double s = 0;
        for (size_t i = 0; i < hw; ++i) {
          const double x = std::max(m[i], 0.f);
          s += x * x * x;
        }
        out[c] = float(std::cbrt(s / hw));
        break;
      }
      case Pooling::None:
        break;
    }
  }
}

void l2_normalize(float* v, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += double(v[i]) * v[i];
  if (s <= 0) return;
  const float inv = float(1.0 / std::sqrt(s));
  for (size_t i = 0; i < n; ++i) v[i] *= inv;
}

}  // namespace imgsearch::embed
