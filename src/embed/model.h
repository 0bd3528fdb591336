// Installed models: a directory per model holding model.json (written by
// tools/convert_efficientnet_lite.py or `imgsearch models add`), the ONNX graph and labels.
//
// model.json (format_version 1):
//   {"name", "onnx", "labels"?, "logits"?, "default_layer",
//    "input": {"name", "size", "layout": "NCHW"|"NHWC", "color": "RGB", "mean": [3], "std": [3],
//              "resize_short_side", "max_batch"?},
//    "layers": [{"name", "channels", "height", "width", "layout"?}...], "flops_per_image"?,
//    "source"?: {"file", "sha256"?, "added"?}}
// Pixels are normalised as (pixel_0_255 - mean[c]) / std[c]. A layer's "layout" (default
// NCHW) says how its feature map is laid out; a 2-D output [N, C] is a layer with
// height = width = 1. "max_batch": 1 marks a graph that only runs one image at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/result.h"

namespace imgsearch::embed {

enum class Layout { NCHW, NHWC };
const char* layout_name(Layout l);

struct LayerSpec {
  std::string name;  // also the ONNX output name
  int channels = 0;
  int height = 0;
  int width = 0;
  Layout layout = Layout::NCHW;  // of the feature map
};

struct ModelSpec {
  std::string name;
  std::filesystem::path dir;
  std::filesystem::path onnx_path;
  std::filesystem::path labels_path;  // empty when the model has no class labels
  std::string input_name = "pixels";
  int input_size = 224;
  int resize_short_side = 256;  // shorter side before the centre crop
  float mean[3] = {127.f, 127.f, 127.f};
  float std[3] = {128.f, 128.f, 128.f};
  Layout layout = Layout::NCHW;  // of the input tensor
  int max_batch = 0;             // 0: any batch size; otherwise the engine splits batches
  std::string logits_output;     // empty when the model cannot classify
  std::string default_layer;
  std::vector<LayerSpec> layers;
  int64_t flops_per_image = 0;

  const LayerSpec* find_layer(const std::string& layer_name) const;
};

// The directory holding installed models: $IMGSEARCH_MODELS if set, else the path
// compiled in by CMake (IMGSEARCH_MODELS_DIR, the repository's models/).
std::filesystem::path models_dir();

// The model that `index` uses when none is named.
inline constexpr const char* kDefaultModel = "efficientnet-lite0";

Result<ModelSpec> load_model_spec(const std::filesystem::path& model_dir);
// model.json for `spec` (paths relative to spec.dir); `extra` keys are merged in.
std::string model_json(const ModelSpec& spec, const std::string& extra_json_object = "{}");

// Everything that decides the pixels a model sees, as one line (input size, crop, layout,
// mean, std): vectors made under different preprocessing are not comparable.
std::string preprocessing_signature(const ModelSpec& spec);
// Looks NAME up under models_dir() ("lite0" also finds "efficientnet-lite0"); the error
// lists what is installed.
Result<ModelSpec> find_model(const std::string& name);
std::vector<std::string> installed_models();

// Class names, one per line, in logit order.
Result<std::vector<std::string>> load_labels(const ModelSpec& spec);

}  // namespace imgsearch::embed
