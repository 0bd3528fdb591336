// PNG scatter plot of a map. Points are rasterised here (anti-aliased, alpha-blended: at
// 10^5 points libvips' per-call draw_circle would cost seconds and cannot blend); libvips
// renders the text (Pango), the legend discs and the PNG.
#include "map/plot.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <vips/vips8>

#include "common/text.h"
#include "decode/decode.h"  // decode_init: libvips started once, with the project's settings

namespace imgsearch::map {
namespace {

std::vector<std::string> split_dirs(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string::npos ? path.size() : slash;
    if (end > start) parts.push_back(path.substr(start, end - start));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (!parts.empty()) parts.pop_back();  // the file name
  return parts;
}

// matplotlib's tab20 without its two greys, plus two dark tab20b colours; grey is "other".
constexpr int kColours = 20;
constexpr unsigned char kPalette[kColours][3] = {{31, 119, 180},  {255, 127, 14},  {44, 160, 44},   {214, 39, 40},
                                                 {148, 103, 189}, {140, 86, 75},   {227, 119, 194}, {188, 189, 34},
                                                 {23, 190, 207},  {57, 59, 121},   {174, 199, 232}, {255, 187, 120},
                                                 {152, 223, 138}, {255, 152, 150}, {197, 176, 213}, {196, 156, 148},
                                                 {247, 182, 210}, {219, 219, 141}, {158, 218, 229}, {99, 121, 57}};
constexpr unsigned char kGrey[3] = {150, 150, 150};

std::string markup_escape(const std::string& raw) {
  std::string out;
  for (char c : utf8_lossy(raw)) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::vector<std::string> folder_classes(const std::vector<std::string>& paths) {
  std::vector<std::vector<std::string>> dirs;
  dirs.reserve(paths.size());
  for (const auto& p : paths) dirs.push_back(split_dirs(p));
  size_t root = dirs.empty() ? 0 : dirs[0].size();
  for (const auto& d : dirs) {
    size_t common = 0;
    while (common < root && common < d.size() && d[common] == dirs[0][common]) ++common;
    root = common;
  }
  std::vector<std::string> classes;
  classes.reserve(paths.size());
  for (const auto& d : dirs) classes.push_back(d.size() > root ? d[root] : "(top level)");
  return classes;
}

Status render_map_png(const std::filesystem::path& out, const std::vector<float>& xy,
                      const std::vector<std::string>& classes, const PlotOptions& options) {
  const size_t n = classes.size();
  if (xy.size() != n * 2)
    return make_error("map plot: " + std::to_string(xy.size()) + " coordinates for " + std::to_string(n) + " points");
  decode::decode_init();
  const int s = std::clamp(options.size, 200, 16000);
  const int font_px = std::clamp(s / 70, 10, 40);
  const int legend_w = std::max(14 * font_px, s / 5);
  const int w = s + legend_w, h = s;

  // Classes by decreasing size (then name); beyond kColours, the smallest share grey.
  std::map<std::string, size_t> count;
  for (const auto& c : classes) ++count[c];
  std::vector<std::pair<std::string, size_t>> order(count.begin(), count.end());
  std::stable_sort(order.begin(), order.end(), [](auto& a, auto& b) { return a.second > b.second; });
  std::map<std::string, int> colour;
  const size_t own = order.size() <= size_t(kColours) ? order.size() : size_t(kColours - 1);
  for (size_t i = 0; i < order.size(); ++i) colour[order[i].first] = i < own ? int(i) : -1;

  std::vector<unsigned char> px(size_t(w) * size_t(h) * 3, 255);
  const double r = std::clamp(0.3 * s / std::sqrt(double(n) + 1.0), 1.2, 7.0);
  const double alpha = n > 20000 ? 0.45 : 0.8;
  const double margin = 0.03 * s + r, span = s - 2 * margin;
  // A fixed shuffle of the drawing order, so no class is systematically painted over.
  std::vector<size_t> draw(n);
  std::iota(draw.begin(), draw.end(), size_t(0));
  for (size_t i = n; i > 1; --i) std::swap(draw[i - 1], draw[(i * 2654435761u) % i]);
  for (size_t i : draw) {
    const int c = colour[classes[i]];
    const unsigned char* rgb = c >= 0 ? kPalette[c] : kGrey;
    const double cx = margin + double(xy[i * 2]) * span, cy = margin + (1.0 - double(xy[i * 2 + 1])) * span;
    for (int y = std::max(0, int(cy - r - 1)); y <= std::min(h - 1, int(cy + r + 1)); ++y)
      for (int x = std::max(0, int(cx - r - 1)); x <= std::min(s - 1, int(cx + r + 1)); ++x) {
        const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
        const double a = alpha * std::clamp(r + 0.5 - d, 0.0, 1.0);  // edge coverage
        if (a <= 0) continue;
        unsigned char* p = &px[(size_t(y) * size_t(w) + size_t(x)) * 3];
        for (int k = 0; k < 3; ++k) p[k] = static_cast<unsigned char>(std::lround(p[k] * (1 - a) + rgb[k] * a));
      }
  }
  try {
    vips::VImage img = vips::VImage::new_from_memory(px.data(), px.size(), w, h, 3, VIPS_FORMAT_UCHAR)
                           .copy(vips::VImage::option()->set("interpretation", VIPS_INTERPRETATION_sRGB))
                           .copy_memory();
    // Plot frame and legend separator.
    img.draw_rect({200, 200, 200}, s, 0, 1, h, vips::VImage::option()->set("fill", true));
    auto text = [&](const std::string& markup, int x, int y, int px_size, std::vector<double> ink) {
      vips::VImage mask =
          vips::VImage::text(markup.c_str(), vips::VImage::option()
                                                 ->set("font", ("sans " + std::to_string(px_size)).c_str())
                                                 ->set("dpi", 72)
                                                 ->set("width", std::max(1, w - x - px_size / 2)));
      img.draw_mask(ink, mask, x, y);
      return mask.height();
    };
    int y = font_px;
    const int x0 = s + font_px;
    if (!options.title.empty())
      y += text("<b>" + markup_escape(options.title) + "</b>", x0, y, font_px, {0, 0, 0}) + font_px;
    y += text(std::to_string(n) + " images, " + std::to_string(order.size()) + " classes", x0, y, font_px,
              {80, 80, 80}) +
         font_px;
    struct Row {
      std::string label;
      size_t count;
      const unsigned char* rgb;
    };
    std::vector<Row> rows;
    for (size_t i = 0; i < own; ++i) rows.push_back({markup_escape(order[i].first), order[i].second, kPalette[i]});
    if (own < order.size()) {
      size_t rest = 0;
      for (size_t k = own; k < order.size(); ++k) rest += order[k].second;
      rows.push_back({"other (" + std::to_string(order.size() - own) + " classes)", rest, kGrey});
    }
    const int row = font_px * 3 / 2;
    for (const auto& rw : rows) {
      if (y + row >= h) break;
      img.draw_circle({double(rw.rgb[0]), double(rw.rgb[1]), double(rw.rgb[2])}, x0 + font_px / 2, y + font_px / 2,
                      font_px / 2, vips::VImage::option()->set("fill", true));
      text(rw.label + "  <span foreground=\"#777777\">" + std::to_string(rw.count) + "</span>", x0 + font_px * 3 / 2, y,
           font_px, {0, 0, 0});
      y += row;
    }
    img.pngsave(out.c_str());
  } catch (const vips::VError& e) {
    return make_error("cannot write " + out.string() + ": " + e.what());
  }
  return {};
}

}  // namespace imgsearch::map
