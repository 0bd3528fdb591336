// embed: decoded pixels -> feature vectors (and class scores).
//
// Data contract
//   embed() takes n decoded images (any size; best with the shorter side equal to
//   decode_options().target_short_side, which makes preprocessing a pure crop) and returns
//   n x dim() floats, row-major (vector i at [i*dim, (i+1)*dim)), each L2-normalised when
//   the representation asks for it (the default: cosine similarity = inner product).
//   Images are borrowed for the call. embed() is safe to call from several threads.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "decode/decode.h"
#include "embed/engine.h"
#include "embed/model.h"
#include "embed/pooling.h"

namespace imgsearch::embed {

// What a vector means. Vectors made with different representations are not comparable;
// the catalog stores this and refuses to mix them.
struct Representation {
  std::string model = kDefaultModel;
  std::string layer;  // empty = the model's default layer
  Pooling pooling = Pooling::Avg;
  bool normalize = true;  // L2-normalise each vector
};

// One vector set asked of a single model run: a layer and how to pool it.
struct FeatureRequest {
  std::string layer;
  Pooling pooling = Pooling::Avg;
};

struct ClassScore {
  int index = 0;
  std::string label;
  float probability = 0;
};

class Embedder {
 public:
  static Result<std::unique_ptr<Embedder>> open(const Representation& rep, const EngineOptions& options = {});

  const ModelSpec& model() const { return spec_; }
  const Representation& representation() const { return rep_; }  // layer filled in
  size_t dim() const { return dim_; }
  decode::DecodeOptions decode_options() const;

  Result<std::vector<float>> embed(std::span<const decode::RgbImage* const> images);

  // Several representations from ONE run of the model (what `eval` sweeps use: running a
  // network once and pooling every requested layer costs one inference, not one per
  // layer). result[r] holds images.size() x pooled_dim(requests[r]) floats, row-major,
  // NOT normalised. Any layer of the model may be asked, whatever representation() is.
  Result<std::vector<std::vector<float>>> extract(std::span<const decode::RgbImage* const> images,
                                                  std::span<const FeatureRequest> requests);

  // One image's input tensor, input_floats() floats, written at `out` (thread-safe).
  size_t input_floats() const { return size_t(3) * spec_.input_size * spec_.input_size; }
  void preprocess_into(const decode::RgbImage& image, float* out) const;

  // Top-k classes (softmax over the logits) per image; needs a model with logits.
  Result<std::vector<std::vector<ClassScore>>> classify(std::span<const decode::RgbImage* const> images, int top_k = 5);

 private:
  Embedder() = default;
  std::vector<float> make_input(std::span<const decode::RgbImage* const> images) const;

  ModelSpec spec_;
  Representation rep_;
  LayerSpec layer_;
  size_t dim_ = 0;
  std::unique_ptr<InferenceEngine> engine_;
  std::vector<std::string> labels_;
};

}  // namespace imgsearch::embed
