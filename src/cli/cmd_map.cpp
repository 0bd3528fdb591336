// imgsearch map --db PATH: a 2-D map of the collection (UMAP), cached in DB/map.bin,
// optionally drawn as a PNG coloured by folder.
#include <chrono>
#include <cstdio>
#include <unordered_map>

#include "cli/commands.h"
#include "common/file_io.h"
#include "common/json_path.h"
#include "map/map_cache.h"
#include "map/plot.h"

namespace imgsearch::cli {
namespace {

struct MapArgs {
  std::string db, png;
  int size = 1600, neighbors = 15, threads = 0;
  float min_dist = 0.1f;
  uint64_t seed = 42;
  bool json = false, verbose = false;
};

int run_map(const MapArgs& a) {
  auto db = database::Database::open_for_reading(a.db);
  if (!db) return print_error(db.error()), 1;
  map::UmapOptions o;
  o.n_neighbors = a.neighbors;
  o.min_dist = a.min_dist;
  o.seed = a.seed;
  o.threads = a.threads;
  o.verbose = a.verbose;
  const auto t0 = std::chrono::steady_clock::now();
  auto layout = map::load_or_compute_map(**db, o);
  if (!layout) return print_error(layout.error()), 1;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!layout->cache_note.empty()) std::fprintf(stderr, "imgsearch: note: %s\n", layout->cache_note.c_str());

  // Paths and classes (first folder below the common root) of the mapped ids. An image
  // removed since the layout's snapshot has no record: it keeps its id, without a path.
  std::unordered_map<int64_t, catalog::ImageRecord> records;
  for (auto& r : (*db)->catalog().list_images()) records.emplace(r.id, std::move(r));
  std::vector<std::string> keys;
  keys.reserve(layout->ids.size());
  for (int64_t id : layout->ids) {
    auto it = records.find(id);
    keys.push_back(it == records.end() ? "" : it->second.key);
  }
  const auto classes = map::folder_classes(keys);
  if (!a.png.empty()) {
    map::PlotOptions p;
    p.size = a.size;
    p.title = "imgsearch map of " + (*db)->dir().filename().string();
    if (auto s = map::render_map_png(a.png, layout->coords, classes, p); !s) return print_error(s.error()), 1;
  }
  const auto cache = map::map_cache_path((*db)->dir()).string();
  if (a.json) {
    nlohmann::json points = nlohmann::json::array();
    for (size_t i = 0; i < layout->ids.size(); ++i) {
      nlohmann::json pt = {{"id", layout->ids[i]}, {"x", layout->coords[i * 2]}, {"y", layout->coords[i * 2 + 1]}};
      auto it = records.find(layout->ids[i]);
      put_path(pt, "path", it == records.end() ? "" : it->second.path);
      put_path(pt, "class", classes[i]);
      points.push_back(std::move(pt));
    }
    nlohmann::json j = {{"images", layout->ids.size()},
                        {"change_seq", layout->change_seq},
                        {"from_cache", layout->from_cache},
                        {"seconds", secs},
                        {"points", std::move(points)}};
    put_path(j, "database", a.db);
    put_path(j, "cache", cache);
    if (!a.png.empty()) put_path(j, "png", a.png);
    std::printf("%s\n", dump_json(j).c_str());
    return 0;
  }
  std::printf("%zu images mapped %s in %.2f s (catalog change %lld)\n", layout->ids.size(),
              layout->from_cache ? "from the cache" : "and cached", secs, (long long)layout->change_seq);
  std::printf("cache  %s\n", printable_path(cache).c_str());
  if (!a.png.empty()) std::printf("png    %s\n", printable_path(a.png).c_str());
  return 0;
}

}  // namespace

void register_map(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<MapArgs>();
  auto* cmd = app.add_subcommand(
      "map",
      "Lay the collection out in 2-D (UMAP): similar images end up close together.\n"
      "The layout is cached in the database directory (map.bin) until the collection or the options change.\n"
      "Example: imgsearch map --db pics.imgsearch --png map.png");
  cmd->add_option("--db", a->db, "Database directory made by `imgsearch index`")->required();
  cmd->add_option("--png", a->png, "Also draw the map as a PNG scatter plot coloured by folder");
  cmd->add_option("--size", a->size, "PNG plot size in pixels (a legend column is added)")
      ->capture_default_str()
      ->check(CLI::Range(200, 16000));
  cmd->add_option("--neighbors", a->neighbors, "UMAP neighbours: larger keeps more global structure")
      ->capture_default_str()
      ->check(CLI::Range(2, 200));
  cmd->add_option("--min-dist", a->min_dist, "UMAP minimum distance between points in the layout (0..1)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->seed, "Random seed (same seed and threads: same map)")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Worker threads (0 = all cores)")->check(CLI::Range(0, 1024));
  cmd->add_flag("--json", a->json, "Print the points as JSON: id, path, class, x, y in [0, 1]");
  cmd->add_flag("--verbose", a->verbose, "Print the time of each UMAP stage on stderr");
  cmd->callback([a, &exit_code] { exit_code = run_map(*a); });
}

}  // namespace imgsearch::cli
