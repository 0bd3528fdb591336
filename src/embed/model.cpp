#include "embed/model.h"

#include <algorithm>
#include <cstdlib>  // getenv
#include <fstream>
#include <nlohmann/json.hpp>

namespace imgsearch::embed {
namespace fs = std::filesystem;

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
    if (j.value("format_version", 0) != 1)
      return make_error(json_path.string() + ": unsupported format_version");
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
    if (in_j.value("layout", "NCHW") != "NCHW")
      return make_error(json_path.string() + ": only NCHW input layout is supported");
    for (int c = 0; c < 3; ++c) {
      s.mean[c] = in_j.at("mean").at(c).get<float>();
      s.std[c] = in_j.at("std").at(c).get<float>();
      if (s.std[c] == 0.f) return make_error(json_path.string() + ": std must not be 0");
    }
    for (const auto& l : j.at("layers"))
      s.layers.push_back({l.at("name").get<std::string>(), l.at("channels").get<int>(),
                          l.value("height", 1), l.value("width", 1)});
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

std::vector<std::string> installed_models() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(models_dir(), ec))
    if (fs::exists(entry.path() / "model.json")) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

Result<ModelSpec> find_model(const std::string& name) {
  const fs::path dir = models_dir() / name;
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
