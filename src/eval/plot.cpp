#include "eval/plot.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

namespace imgsearch::eval {
namespace {

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += c;
    }
  }
  return o;
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}

// Colour-blind-safe palette (Okabe-Ito).
const char* kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"};

}  // namespace

std::string plot_svg(const SweepResult& r, size_t k_index, const std::string& title) {
  std::vector<std::string> models;
  for (const auto& c : r.configs)
    if (std::find(models.begin(), models.end(), c.model) == models.end()) models.push_back(c.model);
  // Series: (pooling, metric) for retrieval; pooling for the probe.
  std::vector<std::pair<embed::Pooling, index::Metric>> series;
  std::vector<embed::Pooling> probe_series;
  for (const auto& c : r.configs) {
    if (std::find(series.begin(), series.end(), std::make_pair(c.pooling, c.metric)) == series.end())
      series.push_back({c.pooling, c.metric});
    if (c.probe && std::find(probe_series.begin(), probe_series.end(), c.pooling) == probe_series.end())
      probe_series.push_back(c.pooling);
  }
  const int k =
      r.configs.empty() || k_index >= r.configs[0].retrieval.ks.size() ? 0 : r.configs[0].retrieval.ks[k_index];
  const double pw = 380, ph = 260, left = 50, top = 50, gap = 40, bottom = 110;
  const double width = left + models.size() * (pw + gap), legend_h = 24.0 * double(series.size() + probe_series.size());
  const double height = top + ph + bottom + legend_h;
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << fmt(width) << "\" height=\"" << fmt(height)
    << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"" << fmt(left) << "\" y=\"22\" font-size=\"15\" font-weight=\"bold\">" << esc(title) << "</text>\n";
  s << "<text x=\"" << fmt(left) << "\" y=\"40\" fill=\"#555\">precision@" << k
    << " (solid) and linear-probe accuracy (dashed) by layer; ringed: the model's default representation</text>\n";
  for (size_t mi = 0; mi < models.size(); ++mi) {
    const double x0 = left + mi * (pw + gap), y0 = top;
    std::vector<std::pair<int, std::string>> layers;  // (index, name), depth order
    for (const auto& c : r.configs)
      if (c.model == models[mi] &&
          std::find(layers.begin(), layers.end(), std::make_pair(c.layer_index, c.layer)) == layers.end())
        layers.push_back({c.layer_index, c.layer});
    std::sort(layers.begin(), layers.end());
    auto px = [&](int layer_index) {
      const auto it = std::find_if(layers.begin(), layers.end(), [&](auto& l) { return l.first == layer_index; });
      const double pos = double(it - layers.begin());
      return x0 + (layers.size() < 2 ? pw / 2 : 10 + pos * (pw - 20) / double(layers.size() - 1));
    };
    auto py = [&](double v) { return y0 + ph - std::clamp(v, 0.0, 1.0) * ph; };
    s << "<text x=\"" << fmt(x0 + pw / 2) << "\" y=\"" << fmt(y0 - 4)
      << "\" text-anchor=\"middle\" font-weight=\"bold\">" << esc(models[mi]) << "</text>\n";
    s << "<rect x=\"" << fmt(x0) << "\" y=\"" << fmt(y0) << "\" width=\"" << fmt(pw) << "\" height=\"" << fmt(ph)
      << "\" fill=\"none\" stroke=\"#999\"/>\n";
    for (int g = 0; g <= 5; ++g) {
      const double v = g / 5.0, y = py(v);
      s << "<line x1=\"" << fmt(x0) << "\" x2=\"" << fmt(x0 + pw) << "\" y1=\"" << fmt(y) << "\" y2=\"" << fmt(y)
        << "\" stroke=\"#e5e5e5\"/>\n";
      if (mi == 0)
        s << "<text x=\"" << fmt(x0 - 6) << "\" y=\"" << fmt(y + 4) << "\" text-anchor=\"end\">" << fmt(v)
          << "</text>\n";
    }
    for (const auto& [li, name] : layers) {
      const double x = px(li);
      std::string label = name.size() > 18 ? "…" + name.substr(name.size() - 17) : name;
      s << "<text transform=\"translate(" << fmt(x + 4) << "," << fmt(y0 + ph + 10) << ") rotate(60)\">" << esc(label)
        << "</text>\n";
    }
    auto line = [&](const std::vector<std::pair<double, double>>& pts, const char* colour, bool dashed) {
      if (pts.empty()) return;
      s << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"2\""
        << (dashed ? " stroke-dasharray=\"6,4\"" : "") << " points=\"";
      for (const auto& [x, y] : pts) s << fmt(x) << "," << fmt(y) << " ";
      s << "\"/>\n";
      for (const auto& [x, y] : pts)
        s << "<circle cx=\"" << fmt(x) << "\" cy=\"" << fmt(y) << "\" r=\"2.5\" fill=\"" << colour << "\"/>\n";
    };
    for (size_t si = 0; si < series.size(); ++si) {
      std::vector<std::pair<double, double>> pts;
      for (const auto& c : r.configs)
        if (c.model == models[mi] && c.pooling == series[si].first && c.metric == series[si].second) {
          pts.push_back({px(c.layer_index), py(c.retrieval.precision[k_index])});
          if (c.is_default)
            s << "<circle cx=\"" << fmt(pts.back().first) << "\" cy=\"" << fmt(pts.back().second)
              << "\" r=\"7\" fill=\"none\" stroke=\"black\"/>\n";
        }
      line(pts, kColours[si % 8], false);
    }
    for (size_t pi = 0; pi < probe_series.size(); ++pi) {
      std::vector<std::pair<double, double>> pts;
      std::set<int> done;
      for (const auto& c : r.configs)
        if (c.model == models[mi] && c.pooling == probe_series[pi] && c.probe && done.insert(c.layer_index).second)
          pts.push_back({px(c.layer_index), py(c.probe->accuracy)});
      line(pts, kColours[(series.size() + pi) % 8], true);
    }
  }
  double ly = top + ph + bottom;
  for (size_t si = 0; si < series.size(); ++si, ly += 24) {
    s << "<line x1=\"" << fmt(left) << "\" x2=\"" << fmt(left + 30) << "\" y1=\"" << fmt(ly) << "\" y2=\"" << fmt(ly)
      << "\" stroke=\"" << kColours[si % 8] << "\" stroke-width=\"2\"/>\n";
    s << "<text x=\"" << fmt(left + 38) << "\" y=\"" << fmt(ly + 4) << "\">precision@" << k << ", "
      << embed::pooling_name(series[si].first) << " pooling, " << index::metric_name(series[si].second) << "</text>\n";
  }
  for (size_t pi = 0; pi < probe_series.size(); ++pi, ly += 24) {
    s << "<line x1=\"" << fmt(left) << "\" x2=\"" << fmt(left + 30) << "\" y1=\"" << fmt(ly) << "\" y2=\"" << fmt(ly)
      << "\" stroke=\"" << kColours[(series.size() + pi) % 8] << "\" stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\n";
    s << "<text x=\"" << fmt(left + 38) << "\" y=\"" << fmt(ly + 4) << "\">linear probe accuracy, "
      << embed::pooling_name(probe_series[pi]) << " pooling</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace imgsearch::eval
