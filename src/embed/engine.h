// The inference backend seam: everything above this interface (preprocessing, pooling,
// ingest, search) is independent of which engine runs the graph.
//
// Data contract
//   run() takes a float32 input tensor [batch, 3, S, S] (NCHW, contiguous, S = the
//   model's input size) and returns one float32 tensor per requested output name, in the
//   order asked, each contiguous with shape[0] == batch.
//   The engine borrows `input` for the call only. run() may be called from several
//   threads at once.
#pragma once

#include <cstdint>
#include <memory>
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

}  // namespace imgsearch::embed
