// A map as a picture: a PNG scatter plot coloured by class, with a legend, for people
// without a browser (the web app draws its own).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/result.h"

namespace imgsearch::map {

// The class of each path: its first folder below the common root of all the paths
// ("/photos/cal/llama/a.jpg" -> "llama" when every path lies under /photos/cal); paths
// directly in the root get "(top level)". Works on any byte strings; '/' separates.
std::vector<std::string> folder_classes(const std::vector<std::string>& paths);

struct PlotOptions {
  int size = 1600;  // plot height and width in pixels; the legend adds a column on the right
  std::string title;
};

// Draws points xy (n x 2 in [0, 1], y upwards) coloured by classes[i] (n names): up to 20
// classes get their own colour; beyond that the 19 largest do and the rest share grey.
// Writes a PNG (libvips).
Status render_map_png(const std::filesystem::path& out, const std::vector<float>& xy,
                      const std::vector<std::string>& classes, const PlotOptions& options = {});

}  // namespace imgsearch::map
