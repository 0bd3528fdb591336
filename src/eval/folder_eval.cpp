#include "eval/folder_eval.h"

#include <sys/stat.h>
#include <xxhash.h>  // XXH3_64bits

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/file_io.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "embed/preprocess.h"
#include "eval/feature_cache.h"
#include "ingest/ingest.h"

namespace imgsearch::eval {
namespace fs = std::filesystem;

std::string class_of(const std::string& image_key, const std::string& dir_key) {
  std::string prefix = dir_key;
  if (prefix.empty() || prefix.back() != '/') prefix += '/';
  if (image_key.compare(0, prefix.size(), prefix) != 0) return "";
  const std::string rest = image_key.substr(prefix.size());
  const size_t slash = rest.find('/');
  return slash == std::string::npos ? "" : rest.substr(0, slash);
}

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

fs::path default_cache_root() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "imgsearch" / "eval";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "imgsearch" / "eval";
  return fs::temp_directory_path() / "imgsearch-eval";
}

std::string hex64(const std::string& s) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)XXH3_64bits(s.data(), s.size()));
  return buf;
}

struct LabelledFile {
  fs::path path;
  FileState state;
  int label = -1;
};

// DIR/<class>/.../<image>, sorted by path; hidden files and folders are left out, as
// `index` does by default.
Result<std::vector<LabelledFile>> list_labelled(const fs::path& dir, std::vector<std::string>& classes) {
  const std::string dir_key = ingest::path_key(dir);
  const auto& exts = ingest::image_extensions();
  std::vector<LabelledFile> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) return make_error("cannot read " + dir.string() + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return make_error("cannot read " + dir.string() + ": " + ec.message());
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    std::string ext = it->path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    if (std::find(exts.begin(), exts.end(), ext) == exts.end()) continue;
    LabelledFile f;
    f.path = it->path();
    f.state.key = ingest::path_key(f.path);
    if (class_of(f.state.key, dir_key).empty()) continue;  // directly in DIR: no class
    struct stat st {};
    if (::stat(f.path.c_str(), &st) != 0) continue;
    f.state.size = int64_t(st.st_size);
    f.state.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.state.key < b.state.key; });
  std::set<std::string> names;
  for (const auto& f : files) names.insert(class_of(f.state.key, dir_key));
  classes.assign(names.begin(), names.end());
  if (classes.size() < 2) return make_error(dir.string() + " needs at least two class sub-folders with images");
  for (auto& f : files)
    f.label = int(std::lower_bound(classes.begin(), classes.end(), class_of(f.state.key, dir_key)) - classes.begin());
  return files;
}

// What decides the vectors a model makes: its description, its weights file, its
// preprocessing. A change to any of them empties the model's cache.
Result<std::string> model_fingerprint(const embed::ModelSpec& spec) {
  auto json = read_file_bytes(spec.dir / "model.json");
  if (!json) return make_error(json.error());
  struct stat st {};
  if (::stat(spec.onnx_path.c_str(), &st) != 0) return make_error("cannot stat " + spec.onnx_path.string());
  std::ostringstream o;
  o << hex64(std::string(json->begin(), json->end())) << " onnx=" << st.st_size << ":" << st.st_mtim.tv_sec << "."
    << st.st_mtim.tv_nsec << " " << embed::preprocessing_signature(spec);
  return o.str();
}

struct Decoded {
  decode::RgbImage image;
  std::string error;
};

// Reads and decodes files[idx[i]] for i in [begin, end) on `threads` workers.
std::vector<Decoded> decode_batch(const std::vector<LabelledFile>& files, const std::vector<size_t>& idx, size_t begin,
                                  size_t end, const decode::DecodeOptions& dopt, int threads) {
  std::vector<Decoded> out(end - begin);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < out.size();) {
      auto bytes = read_file_bytes(files[idx[begin + i]].path, uint64_t(1) << 30);
      if (!bytes) {
        out[i].error = bytes.error();
        continue;
      }
      auto img = decode::decode_image(*bytes, dopt);
      if (img)
        out[i].image = std::move(*img);
      else
        out[i].error = img.error();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::min<int>(threads, int(out.size())); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return out;
}

struct PlannedModel {
  embed::ModelSpec spec;
  std::vector<int> layers;  // indices into spec.layers, depth order
  std::unique_ptr<FeatureCache> cache;
  std::vector<CachedImage> cached;  // per file
};

}  // namespace

Result<SweepResult> evaluate_sweep(const fs::path& dir, const SweepOptions& o) {
  decode::decode_init();
  SweepResult result;
  result.dir = dir.string();
  auto files = list_labelled(dir, result.classes);
  if (!files) return make_error(files.error());
  const int threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  if (o.models.empty() || o.layers.empty() || o.poolings.empty() || o.metrics.empty())
    return make_error("nothing to evaluate: give at least one model, layer, pooling and metric");

  // Resolve every name before any work, so a typo fails in a second, not after a pass.
  std::vector<PlannedModel> plan;
  std::set<std::string> seen_models;
  for (const auto& name : o.models) {
    if (!seen_models.insert(name).second) continue;
    auto spec = embed::find_model(name);
    if (!spec) return make_error(spec.error());
    PlannedModel pm;
    pm.spec = std::move(*spec);
    std::set<int> chosen;
    for (const auto& l : o.layers) {
      if (l == "all") {
        for (size_t i = 0; i < pm.spec.layers.size(); ++i) chosen.insert(int(i));
        continue;
      }
      const std::string want = l.empty() || l == "default" ? pm.spec.default_layer : l;
      const auto* layer = pm.spec.find_layer(want);
      if (!layer) {
        std::string names;
        for (const auto& x : pm.spec.layers) names += (names.empty() ? "" : ", ") + x.name;
        return make_error("model '" + name + "' has no layer '" + want + "' (layers: " + names + ")");
      }
      chosen.insert(int(layer - pm.spec.layers.data()));
    }
    pm.layers.assign(chosen.begin(), chosen.end());
    for (int li : pm.layers)
      for (auto p : o.poolings) {
        const auto& l = pm.spec.layers[size_t(li)];
        const uint64_t bytes = uint64_t(files->size()) * embed::pooled_dim(p, l.channels, l.height, l.width) * 4;
        if (bytes > o.max_set_bytes)
          return make_error("model '" + name + "' layer '" + l.name + "' with --pool " + embed::pooling_name(p) +
                            " needs " + std::to_string(bytes >> 20) + " MiB for " + std::to_string(files->size()) +
                            " images (limit " + std::to_string(o.max_set_bytes >> 20) +
                            " MiB): pool it, or pick a later layer");
      }
    plan.push_back(std::move(pm));
  }

  // --- Extraction: each model once per image that lacks any requested vector.
  const fs::path root = o.cache_root.empty() ? default_cache_root() : o.cache_root;
  const std::string dir_key = ingest::path_key(dir);
  std::vector<FileState> states;
  for (const auto& f : *files) states.push_back(f.state);
  std::vector<bool> usable(files->size(), true);
  std::map<size_t, std::string> failures;  // file -> reason (first model that failed it)
  for (auto& pm : plan) {
    ModelPass pass;
    pass.model = pm.spec.name;
    pass.input_size = pm.spec.input_size;
    auto fp = model_fingerprint(pm.spec);
    if (!fp) return make_error(fp.error());
    std::string safe = pm.spec.name;
    for (char& c : safe)
      if (c == '/' || c == '\\') c = '_';
    pass.cache = root / (safe + "-" + hex64(dir_key + "\n" + pm.spec.name) + ".sqlite");
    auto cache = FeatureCache::open(pass.cache, *fp);
    if (!cache) return make_error(cache.error());
    pm.cache = std::move(*cache);
    auto cached = pm.cache->sync(states);
    if (!cached) return make_error(cached.error());
    pm.cached = std::move(*cached);

    std::vector<embed::FeatureRequest> requests;
    for (int li : pm.layers)
      for (auto p : o.poolings) requests.push_back({pm.spec.layers[size_t(li)].name, p});
    std::vector<size_t> todo;
    for (size_t i = 0; i < files->size(); ++i) {
      const auto& c = pm.cached[i];
      if (!c.error.empty()) continue;
      const bool complete = std::all_of(requests.begin(), requests.end(), [&](const embed::FeatureRequest& r) {
        return c.have.count({r.layer, embed::pooling_name(r.pooling)}) > 0;
      });
      if (!complete) todo.push_back(i);
    }
    pass.cached = int64_t(files->size()) - int64_t(todo.size());
    const auto t0 = Clock::now();
    if (!todo.empty()) {
      embed::Representation rep;
      rep.model = pm.spec.name;
      embed::EngineOptions eo;
      eo.threads = o.threads;
      auto embedder = embed::Embedder::open(rep, eo);
      if (!embedder) return make_error(embedder.error());
      const auto dopt = (*embedder)->decode_options();
      Progress progress("eval " + pm.spec.name, o.progress);
      progress.set_total(int64_t(todo.size()));
      const size_t batch = size_t(std::max(1, o.batch_size));
      for (size_t start = 0; start < todo.size(); start += batch) {
        const size_t stop = std::min(todo.size(), start + batch);
        auto decoded = decode_batch(*files, todo, start, stop, dopt, threads);
        std::vector<const decode::RgbImage*> ok;
        std::vector<int64_t> ok_ids;
        std::vector<std::pair<int64_t, std::string>> errors;
        for (size_t i = 0; i < decoded.size(); ++i) {
          const size_t f = todo[start + i];
          if (decoded[i].error.empty()) {
            ok.push_back(&decoded[i].image);
            ok_ids.push_back(pm.cached[f].id);
          } else {
            errors.push_back({pm.cached[f].id, decoded[i].error});
            pm.cached[f].error = decoded[i].error;
          }
        }
        auto vectors = (*embedder)->extract(ok, requests);
        if (!vectors) return make_error(pm.spec.name + ": " + vectors.error());
        std::vector<VectorRow> rows;
        std::vector<std::string> pool_names;
        for (const auto& r : requests) pool_names.push_back(embed::pooling_name(r.pooling));
        for (size_t r = 0; r < requests.size(); ++r) {
          const size_t d = (*vectors)[r].size() / std::max<size_t>(1, ok.size());
          for (size_t i = 0; i < ok.size(); ++i)
            rows.push_back(
                {ok_ids[i], requests[r].layer, pool_names[r], std::span<const float>((*vectors)[r].data() + i * d, d)});
        }
        if (auto st = pm.cache->put(rows, errors); !st) return make_error(st.error());
        pass.extracted += int64_t(stop - start);
        progress.update(int64_t(stop));
      }
      progress.finish();
    }
    pass.extract_seconds = seconds_since(t0);
    for (size_t i = 0; i < files->size(); ++i)
      if (!pm.cached[i].error.empty()) {
        usable[i] = false;
        failures.emplace(i, pm.cached[i].error);
      }
    result.passes.push_back(pass);
  }
  for (const auto& [i, reason] : failures) result.skipped.push_back({(*files)[i].path.string(), reason});

  // --- Scoring, on the images every model could read (so all rows compare the same set).
  std::vector<size_t> rows;
  std::vector<int> labels;
  for (size_t i = 0; i < files->size(); ++i)
    if (usable[i]) {
      rows.push_back(i);
      labels.push_back((*files)[i].label);
    }
  result.images = int64_t(rows.size());
  if (rows.size() < 2) return make_error(dir.string() + ": fewer than two readable images");
  for (auto& pm : plan) {
    std::vector<int64_t> ids;
    for (size_t i : rows) ids.push_back(pm.cached[i].id);
    for (int li : pm.layers) {
      const auto& l = pm.spec.layers[size_t(li)];
      for (auto p : o.poolings) {
        const size_t dim = embed::pooled_dim(p, l.channels, l.height, l.width);
        auto x = pm.cache->load(ids, l.name, embed::pooling_name(p), dim);
        if (!x) return make_error(x.error());
        std::optional<ProbeResult> probe;
        if (o.probe && dim <= size_t(o.probe_max_dim)) {
          const auto t = Clock::now();
          probe = linear_probe(x->data(), int64_t(ids.size()), int(dim), labels, int(result.classes.size()),
                               o.probe_options);
          result.probe_seconds += seconds_since(t);
        }
        for (auto m : o.metrics) {
          const auto t = Clock::now();
          const auto s = similarity_matrix(x->data(), int64_t(ids.size()), int(dim), m);
          ConfigResult c;
          c.model = pm.spec.name;
          c.layer = l.name;
          c.layer_index = li;
          c.layer_count = int(pm.spec.layers.size());
          c.pooling = p;
          c.metric = m;
          c.dim = int(dim);
          c.channels = l.channels;
          c.height = l.height;
          c.width = l.width;
          c.is_default = l.name == pm.spec.default_layer && p == embed::Pooling::Avg && m == index::Metric::Cosine;
          c.retrieval = evaluate_ranking(s.data(), int64_t(ids.size()), labels, result.classes, o.ks);
          c.probe = probe;
          result.score_seconds += seconds_since(t);
          result.configs.push_back(std::move(c));
        }
      }
    }
  }
  return result;
}

}  // namespace imgsearch::eval
