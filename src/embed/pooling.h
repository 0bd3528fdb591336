// Feature map -> vector.
//
// pool() reads one image's feature map, C x H x W floats (planar, contiguous), and
// writes the representation at `out`:
//   avg:  C floats, the mean over H x W (global average pooling)
//   max:  C floats, the maximum over H x W
//   gem:  C floats, generalised mean (p = 3) over H x W of max(x, 0)
//   none: C*H*W floats, the map itself flattened (memory: C*H*W*4 bytes per image)
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace imgsearch::embed {

enum class Pooling { Avg, Max, Gem, None };

std::optional<Pooling> parse_pooling(const std::string& name);
std::string pooling_name(Pooling p);
size_t pooled_dim(Pooling p, int channels, int height, int width);
void pool(const float* map, int channels, int height, int width, Pooling p, float* out);

// Scales v (n floats) to unit L2 norm; leaves an all-zero vector as it is.
void l2_normalize(float* v, size_t n);

}  // namespace imgsearch::embed
