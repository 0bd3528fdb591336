// Evaluation of representations on a labelled folder: DIR/<class>/<images>.
//
// A sweep asks for models x layers x poolings x metrics. Each model runs ONCE per image:
// one inference returns every requested layer's feature map, each pooled every requested
// way, and the pooled vectors go into the model's feature cache (eval/feature_cache.h), so
// a later sweep over more layers, poolings or metrics extracts nothing it already has.
// Each (model, layer, pooling) vector set is then scored under every metric from one
// Gram matrix (eval/retrieval.h), and optionally by a linear probe (eval/probe.h).
//
// Vectors are cached as pooled, not normalised: cosine normalises them (as `index` does),
// L2 and inner product use them as they are. The probe is per (model, layer, pooling): it
// standardises features, so it does not depend on the metric.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/progress.h"
#include "common/result.h"
#include "embed/pooling.h"
#include "eval/probe.h"
#include "eval/retrieval.h"
#include "index/vector_index.h"

namespace imgsearch::eval {

struct SweepOptions {
  std::vector<std::string> models = {"efficientnet-lite0"};
  // Per model: "" or "default" = its default layer; "all" = every layer; else a name.
  std::vector<std::string> layers = {""};
  std::vector<embed::Pooling> poolings = {embed::Pooling::Avg};
  std::vector<index::Metric> metrics = {index::Metric::Cosine};
  std::vector<int> ks = {1, 5, 10};
  bool probe = false;
  ProbeOptions probe_options;
  int probe_max_dim = 65536;         // wider vector sets are not probed (cost ~ dim x classes)
  std::filesystem::path cache_root;  // empty: $XDG_CACHE_HOME/imgsearch/eval or ~/.cache/imgsearch/eval
  int threads = 0;                   // decode workers and inference threads; 0 = all cores
  int batch_size = 16;
  // Largest vector set (images x dim x 4 bytes) a sweep may hold in memory; `--pool none`
  // on an early layer is what reaches it.
  uint64_t max_set_bytes = uint64_t(4) << 30;
  Progress::Style progress = Progress::Style::Auto;
};

struct ConfigResult {
  std::string model, layer;
  int layer_index = 0;  // position in the model's layer list (depth order)
  int layer_count = 0;  // layers the model has
  embed::Pooling pooling = embed::Pooling::Avg;
  index::Metric metric = index::Metric::Cosine;
  int dim = 0;
  int channels = 0, height = 0, width = 0;  // the layer's map (what --pool none would keep)
  bool is_default = false;                  // the model's default layer, avg pooling, cosine: what `index` uses
  RetrievalResult retrieval;
  std::optional<ProbeResult> probe;
};

struct ModelPass {
  std::string model;
  int input_size = 0;
  int64_t extracted = 0;  // images run through the model in this sweep
  int64_t cached = 0;     // images whose vectors all came from the cache
  double extract_seconds = 0;
  std::filesystem::path cache;
};

struct SkippedImage {
  std::string path, reason;
};

struct SweepResult {
  std::string dir;
  int64_t images = 0;                // labelled images scored (in every configuration)
  std::vector<std::string> classes;  // label order
  std::vector<SkippedImage> skipped;
  std::vector<ModelPass> passes;
  std::vector<ConfigResult> configs;  // model, layer (depth), pooling, metric order
  double score_seconds = 0, probe_seconds = 0;
};

Result<SweepResult> evaluate_sweep(const std::filesystem::path& dir, const SweepOptions& options);

// The class of an image: the first folder of its path below DIR ("" if directly in DIR).
std::string class_of(const std::string& image_key, const std::string& dir_key);

}  // namespace imgsearch::eval
