#include "eval/folder_eval.h"

#include <xxhash.h>  // XXH3_64bits

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

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

fs::path default_cache_root() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "imgsearch" / "eval";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "imgsearch" / "eval";
  return fs::temp_directory_path() / "imgsearch-eval";
}

}  // namespace

Result<FolderEvalResult> evaluate_folder(const fs::path& dir, const database::Settings& requested,
                                         const FolderEvalOptions& options) {
  embed::EngineOptions eo;
  eo.threads = options.threads;
  auto embedder = embed::Embedder::open(requested.representation, eo);
  if (!embedder) return make_error(embedder.error());
  database::Settings settings = requested;
  settings.representation = (*embedder)->representation();
  settings.dim = int((*embedder)->dim());
  settings.index_spec = "Flat";

  // One cache database per (folder, representation).
  const std::string dir_key = ingest::path_key(dir);
  const auto& rep = settings.representation;
  const std::string id = dir_key + "|" + rep.model + "|" + rep.layer + "|" + embed::pooling_name(rep.pooling) + "|" +
                         index::metric_name(settings.metric);
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", (unsigned long long)XXH3_64bits(id.data(), id.size()));
  FolderEvalResult out;
  out.settings = settings;
  out.cache_db = (options.cache_root.empty() ? default_cache_root() : options.cache_root) /
                 (rep.model + "-" + rep.layer + "-" + embed::pooling_name(rep.pooling) + "-" +
                  index::metric_name(settings.metric) + "-" + hash);
  auto db = database::Database::open_for_writing(out.cache_db, settings);
  if (!db) return make_error(db.error());
  ingest::Options io;
  io.threads = options.threads;
  io.progress = options.progress;
  auto summary = ingest::index_folder(**db, **embedder, dir, io);
  if (!summary) return make_error(summary.error());
  out.skipped = int64_t(summary->skipped.size());

  // Labels from folder names; images directly in DIR have no class and are left out.
  auto& cat = (*db)->catalog();
  std::map<int64_t, std::string> class_by_id;
  for (const auto& r : cat.list_under(dir_key))
    if (auto c = class_of(r.key, dir_key); !c.empty()) class_by_id.emplace(r.id, c);
  std::vector<std::string> names;
  for (const auto& [id_, c] : class_by_id) names.push_back(c);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  if (names.size() < 2) return make_error(dir.string() + " needs at least two class sub-folders with images");
  std::vector<float> x;
  std::vector<int> labels;
  auto seq = cat.for_each_vector([&](int64_t image_id, std::span<const float> v) {
    auto it = class_by_id.find(image_id);
    if (it == class_by_id.end()) return;
    labels.push_back(int(std::lower_bound(names.begin(), names.end(), it->second) - names.begin()));
    x.insert(x.end(), v.begin(), v.end());
  });
  if (!seq) return make_error(seq.error());
  out.images = int64_t(labels.size());
  out.retrieval = evaluate_retrieval(x.data(), out.images, settings.dim, labels, names, settings.metric, options.ks);
  return out;
}

}  // namespace imgsearch::eval
