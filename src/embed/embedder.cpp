#include "embed/embedder.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "embed/preprocess.h"

namespace imgsearch::embed {

Result<std::unique_ptr<Embedder>> Embedder::open(const Representation& rep, const EngineOptions& options) {
  auto spec = find_model(rep.model);
  if (!spec) return make_error(spec.error());
  std::unique_ptr<Embedder> e(new Embedder());
  e->spec_ = std::move(*spec);
  e->rep_ = rep;
  if (e->rep_.layer.empty()) e->rep_.layer = e->spec_.default_layer;
  const LayerSpec* layer = e->spec_.find_layer(e->rep_.layer);
  if (!layer) {
    std::string names;
    for (const auto& l : e->spec_.layers) names += (names.empty() ? "" : ", ") + l.name;
    return make_error("model '" + rep.model + "' has no layer '" + e->rep_.layer + "' (layers: " + names + ")");
  }
  e->layer_ = *layer;
  e->dim_ = pooled_dim(rep.pooling, layer->channels, layer->height, layer->width);
  auto engine = make_engine(e->spec_, options);
  if (!engine) return make_error(engine.error());
  e->engine_ = std::move(*engine);
  if (!e->spec_.labels_path.empty()) {
    auto labels = load_labels(e->spec_);
    if (labels) e->labels_ = std::move(*labels);
  }
  return e;
}

decode::DecodeOptions Embedder::decode_options() const { return decode_options_for(spec_); }

std::vector<float> Embedder::make_input(std::span<const decode::RgbImage* const> images) const {
  const size_t per = size_t(3) * spec_.input_size * spec_.input_size;
  std::vector<float> input(per * images.size());
  for (size_t i = 0; i < images.size(); ++i) preprocess(*images[i], spec_, input.data() + i * per);
  return input;
}

Result<std::vector<float>> Embedder::embed(std::span<const decode::RgbImage* const> images) {
  if (images.empty()) return std::vector<float>{};
  const auto input = make_input(images);
  auto out = engine_->run(input.data(), int64_t(images.size()), {layer_.name});
  if (!out) return make_error(out.error());
  const Tensor& map = (*out)[0];
  if (map.shape.size() != 4 || map.shape[1] != layer_.channels)
    return make_error("layer '" + layer_.name + "' has an unexpected shape");
  const int c = int(map.shape[1]), h = int(map.shape[2]), w = int(map.shape[3]);
  const size_t d = pooled_dim(rep_.pooling, c, h, w);
  if (d != dim_) return make_error("layer '" + layer_.name + "' output size differs from model.json");
  std::vector<float> vectors(images.size() * d);
  for (size_t i = 0; i < images.size(); ++i) {
    float* v = vectors.data() + i * d;
    pool(map.data.data() + i * size_t(map.per_item()), c, h, w, rep_.pooling, v);
    if (rep_.normalize) l2_normalize(v, d);
  }
  return vectors;
}

Result<std::vector<std::vector<ClassScore>>> Embedder::classify(std::span<const decode::RgbImage* const> images,
                                                                int top_k) {
  if (spec_.logits_output.empty()) return make_error("model '" + spec_.name + "' has no classifier output");
  const auto input = make_input(images);
  auto out = engine_->run(input.data(), int64_t(images.size()), {spec_.logits_output});
  if (!out) return make_error(out.error());
  const Tensor& logits = (*out)[0];
  const size_t n_classes = size_t(logits.per_item());
  std::vector<std::vector<ClassScore>> result;
  for (size_t i = 0; i < images.size(); ++i) {
    const float* z = logits.data.data() + i * n_classes;
    const float zmax = *std::max_element(z, z + n_classes);
    std::vector<double> p(n_classes);
    double sum = 0;
    for (size_t k = 0; k < n_classes; ++k) sum += p[k] = std::exp(double(z[k] - zmax));
    std::vector<int> order(n_classes);
    std::iota(order.begin(), order.end(), 0);
    const size_t k = std::min(size_t(top_k), n_classes);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return p[a] > p[b]; });
    std::vector<ClassScore> top;
    for (size_t r = 0; r < k; ++r) {
      const int idx = order[r];
      top.push_back({idx, size_t(idx) < labels_.size() ? labels_[idx] : std::to_string(idx), float(p[idx] / sum)});
    }
    result.push_back(std::move(top));
  }
  return result;
}

}  // namespace imgsearch::embed
