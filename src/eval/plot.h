// A chart of a sweep: score by layer, written as SVG (text, no plotting library).
#pragma once

#include <string>

#include "eval/folder_eval.h"

namespace imgsearch::eval {

// One panel per model, layers in depth order along x, 0..1 along y; one line per
// (pooling, metric) for precision@ks[k_index] (solid) and, when the sweep ran the probe,
// one per pooling for the probe accuracy (dashed). A model's default representation is
// ringed. Returns the SVG document.
std::string plot_svg(const SweepResult& result, size_t k_index, const std::string& title);

}  // namespace imgsearch::eval
