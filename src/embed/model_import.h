// Bring your own ONNX model: `imgsearch models add NAME model.onnx ...`.
//
// import_model() validates a user's graph and installs it as models_dir()/NAME:
//   1. reads the ONNX protobuf (embed/onnx_proto.h): nodes, inputs, outputs;
//   2. checks the input is ONE 4-D float image tensor with 3 channels (NCHW or NHWC,
//      square if its size is fixed);
//   3. loads it in ONNX Runtime and runs it once: an operator the runtime cannot run is
//      refused with its name;
//   4. lists the candidate layers: every float tensor computed from the input with shape
//      [N, C, H, W], [N, H, W, C] or [N, C] (sizes from that run, not guessed);
//   5. rewrites the graph so the chosen layers are graph outputs, and writes model.onnx,
//      model.json and labels.txt into a new directory that is renamed into place only
//      after the installed model has embedded a test image.
#pragma once

#include <array>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "embed/model.h"

namespace imgsearch::embed {

struct ImportOptions {
  std::string name;
  std::filesystem::path onnx_file;
  int input_size = 0;                  // 0: the graph's fixed input size (required when it has none)
  int resize_short_side = 0;           // 0: input_size / 0.875, the ImageNet evaluation crop
  std::array<float, 3> mean{}, std{};  // in 0..255 pixel units
  std::optional<Layout> layout;        // empty: read from the input shape
  std::filesystem::path labels;        // optional class names, one per line
  // Layers to expose: empty = a selection (the last map at each spatial size, every
  // [N, C] tensor); {"all"} = every candidate; otherwise these candidate names.
  std::vector<std::string> layers;
  std::string default_layer;  // empty: the last 4-D layer
  bool force = false;         // replace an installed model of that name
  bool dry_run = false;       // inspect only; install nothing
};

struct CandidateLayer {
  LayerSpec layer;
  std::string op_type;  // of the node that computes it
  int rank = 4;
  bool exposed = false;
};

struct ImportReport {
  ModelSpec spec;  // as installed (or as it would be, for a dry run)
  std::vector<CandidateLayer> candidates;
  std::vector<std::pair<std::string, int>> op_counts;  // operator -> nodes, in first-use order
  std::vector<std::pair<std::string, int64_t>> opsets;
  std::vector<std::string> notes;  // things the user should know (units, batch size...)
};

Result<ImportReport> import_model(const ImportOptions& options);

}  // namespace imgsearch::embed
