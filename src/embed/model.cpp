#include "embed/model.h"

#include <algorithm>
#include <cstdlib>  // getenv
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

namespace imgsearch::embed {
namespace fs = std::filesystem;

const char* layout_name(Layout l) { return l == Layout::NHWC ? "NHWC" : "NCHW"; }

namespace {

std::optional<Layout> parse_layout(const std::string& s) {
  if (s == "NCHW") return Layout::NCHW;
  if (s == "NHWC") return Layout::NHWC;
  return std::nullopt;
}

}  // namespace

const LayerSpec* ModelSpec::find_layer(const std::string& layer_name) const {
  for (const auto& l : layers)
    if (l.name == layer_name) return &l;
  return nullptr;
}

fs::path models_dir() {
  if (const char* env = std::getenv("IMGSEARCH_MODELS"); env && *env) return env;
  return IMGSEARCH_MODELS_DIR;
}

Result<ModelSpec> load_model_spec(const fs::path& model_dir) {
  const fs::path json_path = model_dir / "model.json";
  std::ifstream in(json_path);
  if (!in) return make_error("cannot read " + json_path.string());
  try {
    const auto j = nlohmann::json::parse(in);
    if (j.value("format_version", 0) != 1) return make_error(json_path.string() + ": unsupported format_version");
    ModelSpec s;
    s.dir = model_dir;
    s.name = j.at("name").get<std::string>();
    s.onnx_path = model_dir / j.at("onnx").get<std::string>();
    if (j.contains("labels")) s.labels_path = model_dir / j.at("labels").get<std::string>();
    s.logits_output = j.value("logits", "");
    const auto& in_j = j.at("input");
    s.input_name = in_j.value("name", "pixels");
    s.input_size = in_j.at("size").get<int>();
    s.resize_short_side = in_j.value("resize_short_side", s.input_size);
    const auto layout = parse_layout(in_j.value("layout", "NCHW"));
    if (!layout) return make_error(json_path.string() + ": input layout must be NCHW or NHWC");
    s.layout = *layout;
    s.max_batch = in_j.value("max_batch", 0);
    for (int c = 0; c < 3; ++c) {
      s.mean[c] = in_j.at("mean").at(c).get<float>();
      s.std[c] = in_j.at("std").at(c).get<float>();
      if (s.std[c] == 0.f) return make_error(json_path.string() + ": std must not be 0");
    }
    for (const auto& l : j.at("layers")) {
      LayerSpec layer{l.at("name").get<std::string>(), l.at("channels").get<int>(), l.value("height", 1),
                      l.value("width", 1)};
      const auto ll = parse_layout(l.value("layout", "NCHW"));
      if (!ll) return make_error(json_path.string() + ": layer '" + layer.name + "': layout must be NCHW or NHWC");
      layer.layout = *ll;
      if (layer.channels <= 0 || layer.height <= 0 || layer.width <= 0)
        return make_error(json_path.string() + ": layer '" + layer.name + "' has a bad shape");
      s.layers.push_back(std::move(layer));
    }
    s.default_layer = j.value("default_layer", s.layers.empty() ? "" : s.layers.back().name);
    s.flops_per_image = j.value("flops_per_image", int64_t{0});
    if (s.input_size <= 0 || s.resize_short_side < s.input_size)
      return make_error(json_path.string() + ": bad input size");
    if (!s.find_layer(s.default_layer))
      return make_error(json_path.string() + ": default_layer '" + s.default_layer + "' not in layers");
    if (!fs::exists(s.onnx_path)) return make_error("missing " + s.onnx_path.string());
    return s;
  } catch (const std::exception& e) {
    return make_error(json_path.string() + ": invalid model description: " + e.what());
  }
}

std::string model_json(const ModelSpec& s, const std::string& extra_json_object) {
  nlohmann::ordered_json j;
  j["format_version"] = 1;
  j["name"] = s.name;
  j["onnx"] = s.onnx_path.filename().string();
  if (!s.labels_path.empty()) j["labels"] = s.labels_path.filename().string();
  nlohmann::ordered_json in = {{"name", s.input_name},
                               {"size", s.input_size},
                               {"layout", layout_name(s.layout)},
                               {"color", "RGB"},
                               {"mean", {s.mean[0], s.mean[1], s.mean[2]}},
                               {"std", {s.std[0], s.std[1], s.std[2]}},
                               {"resize_short_side", s.resize_short_side}};
  if (s.max_batch > 0) in["max_batch"] = s.max_batch;
  j["input"] = in;
  if (!s.logits_output.empty()) j["logits"] = s.logits_output;
  j["default_layer"] = s.default_layer;
  auto layers = nlohmann::ordered_json::array();
  for (const auto& l : s.layers) {
    nlohmann::ordered_json e = {{"name", l.name}, {"channels", l.channels}, {"height", l.height}, {"width", l.width}};
    if (l.layout != Layout::NCHW) e["layout"] = layout_name(l.layout);
    layers.push_back(e);
  }
  j["layers"] = layers;
  if (s.flops_per_image > 0) j["flops_per_image"] = s.flops_per_image;
  const auto extra = nlohmann::ordered_json::parse(extra_json_object);
  for (const auto& [k, v] : extra.items()) j[k] = v;
  return j.dump(1) + "\n";
}

std::string preprocessing_signature(const ModelSpec& s) {
  std::ostringstream o;
  o << "size=" << s.input_size << " resize_short_side=" << s.resize_short_side << " layout=" << layout_name(s.layout)
    << " color=RGB mean=" << s.mean[0] << "," << s.mean[1] << "," << s.mean[2] << " std=" << s.std[0] << "," << s.std[1]
    << "," << s.std[2];
  return o.str();
}

std::vector<std::string> installed_models() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(models_dir(), ec))
    if (fs::exists(entry.path() / "model.json")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

Result<ModelSpec> find_model(const std::string& name) {
  fs::path dir = models_dir() / name;
  // "lite0" for "efficientnet-lite0": the bundled models' short names.
  if (!fs::exists(dir / "model.json") && name.find('/') == std::string::npos &&
      fs::exists(models_dir() / ("efficientnet-" + name) / "model.json"))
    dir = models_dir() / ("efficientnet-" + name);
  if (!fs::exists(dir / "model.json")) {
    std::string have;
    for (const auto& n : installed_models()) have += (have.empty() ? "" : ", ") + n;
    return make_error("model '" + name + "' is not installed in " + models_dir().string() +
                      (have.empty() ? " (none installed: run scripts/setup.sh)" : " (installed: " + have + ")"));
  }
  return load_model_spec(dir);
}

Result<std::vector<std::string>> load_labels(const ModelSpec& spec) {
  if (spec.labels_path.empty()) return make_error("model '" + spec.name + "' has no labels");
  std::ifstream in(spec.labels_path);
  if (!in) return make_error("cannot read " + spec.labels_path.string());
  std::vector<std::string> labels;
  for (std::string line; std::getline(in, line);) labels.push_back(line);
  return labels;
}

}  // namespace imgsearch::embed
