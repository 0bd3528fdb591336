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
  // The installed name, not an alias, is what databases and caches record.
  e->rep_.model = e->spec_.dir.filename().string();
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
  const size_t per = input_floats();
  std::vector<float> input(per * images.size());
  for (size_t i = 0; i < images.size(); ++i) preprocess(*images[i], spec_, input.data() + i * per);
  return input;
}

void Embedder::preprocess_into(const decode::RgbImage& image, float* out) const { preprocess(image, spec_, out); }

Result<std::vector<float>> Embedder::embed(std::span<const decode::RgbImage* const> images) {
  const FeatureRequest req[] = {{rep_.layer, rep_.pooling}};
  auto out = extract(images, req);
  if (!out) return make_error(out.error());
  std::vector<float>& vectors = (*out)[0];
  if (rep_.normalize)
    for (size_t i = 0; i < images.size(); ++i) l2_normalize(vectors.data() + i * dim_, dim_);
  return std::move(vectors);
}

Result<std::vector<std::vector<float>>> Embedder::extract(std::span<const decode::RgbImage* const> images,
                                                          std::span<const FeatureRequest> requests) {
  std::vector<const LayerSpec*> layers;
  std::vector<std::string> outputs;  // distinct layers, in first-asked order
  std::vector<size_t> output_of;     // request -> index into outputs
  for (const auto& r : requests) {
    const LayerSpec* l = spec_.find_layer(r.layer);
    if (!l) return make_error("model '" + spec_.name + "' has no layer '" + r.layer + "'");
    const auto it = std::find(outputs.begin(), outputs.end(), r.layer);
    output_of.push_back(size_t(it - outputs.begin()));
    if (it == outputs.end()) {
      outputs.push_back(r.layer);
      layers.push_back(l);
    }
  }
  std::vector<std::vector<float>> result(requests.size());
  if (images.empty() || requests.empty()) return result;
  const auto input = make_input(images);
  auto out = engine_->run(input.data(), int64_t(images.size()), outputs);
  if (!out) return make_error(out.error());
  std::vector<float> chw;  // scratch for NHWC maps
  for (size_t r = 0; r < requests.size(); ++r) {
    const LayerSpec& l = *layers[output_of[r]];
    const Tensor& map = (*out)[output_of[r]];
    const int c = l.channels, h = l.height, w = l.width;
    // The graph decides the real shape; model.json only describes it. A mismatch means
    // model.json is stale (the ONNX file was replaced), which must not pass silently.
    if (map.per_item() != int64_t(c) * h * w)
      return make_error("layer '" + l.name + "' output size differs from model.json");
    const size_t d = pooled_dim(requests[r].pooling, c, h, w);
    result[r].resize(images.size() * d);
    for (size_t i = 0; i < images.size(); ++i) {
      const float* m = map.data.data() + i * size_t(map.per_item());
      if (l.layout == Layout::NHWC && size_t(h) * w > 1) {
        chw.resize(size_t(c) * h * w);
        for (size_t p = 0; p < size_t(h) * w; ++p)
          for (int k = 0; k < c; ++k) chw[size_t(k) * h * w + p] = m[p * c + size_t(k)];
        m = chw.data();
      }
      pool(m, c, h, w, requests[r].pooling, result[r].data() + i * d);
    }
  }
  return result;
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
