// The inference backend seam: everything above this interface (preprocessing, pooling,
// ingest, search) is independent of which engine runs the graph.
//
// Data contract
//   run() takes a float32 input tensor [batch, 3, S, S] (NCHW) or [batch, S, S, 3] (NHWC),
//   as the model's input layout says, contiguous, S = the model's input size, and returns
//   one float32 tensor per requested output name, in the order asked, each contiguous with
//   shape[0] == batch (a model with max_batch is run in slices and the slices joined).
//   The engine borrows `input` for the call only. run() may be called from several
//   threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "embed/model.h"

namespace imgsearch::embed {

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t per_item() const {  // elements per batch item
    int64_t n = 1;
    for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
    return n;
  }
};

struct EngineOptions {
  int threads = 0;  // intra-op threads; 0 = all cores
  // Idle intra-op threads busy-wait for the next operator when true. Off by default: during
  // ingest the decode workers share the cores, and spinning steals their time (bench/ingest
  // and `index` on caltech20: ~8% faster end to end without it).
  bool spin_wait = false;
};

class InferenceEngine {
 public:
  virtual ~InferenceEngine() = default;
  virtual std::string name() const = 0;
  virtual Result<std::vector<Tensor>> run(const float* input, int64_t batch,
                                          const std::vector<std::string>& outputs) = 0;
};

// backend: "onnxruntime" (the default and, today, the only one).
Result<std::unique_ptr<InferenceEngine>> make_engine(const ModelSpec& spec, const EngineOptions& options,
                                                     const std::string& backend = "onnxruntime");

// What the backend makes of a serialised graph; the validation behind `models add`.
//   load_error: the backend's message when it cannot load the graph (an operator it has no
//     kernel for, an invalid graph); nothing else is filled in then.
//   outputs: every graph output, its element type, and its shape after one run on a
//     constant input of `input_shape` (run_error says why when that run fails).
struct ProbedOutput {
  std::string name;
  bool is_float = false;       // float32 tensor
  std::vector<int64_t> shape;  // from the run; empty when it did not run
};
struct GraphProbe {
  std::string load_error, run_error;
  std::vector<ProbedOutput> outputs;
};
GraphProbe probe_graph(std::span<const uint8_t> model, const std::string& input_name,
                       const std::vector<int64_t>& input_shape);

}  // namespace imgsearch::embed
