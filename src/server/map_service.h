// map_service: the 2-D layout of a database's vectors for the web app's map, computed
// off the request path.
//
// The layout comes from map::load_or_compute_map (UMAP, cached as DB_DIR/map.bin) when
// that module is built in (src/map/map_cache.h); otherwise, or if it fails, from a PCA
// projection (the two leading principal components), so the map always has something to
// show. Coordinates
// are in [0, 1] on both axes. A computation runs on its own thread with its own read-only
// database connection; callers poll state(). request() starts one when the layout is
// missing or older than the catalog's change_seq.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace imgsearch::server {

struct MapPoints {
  std::vector<int64_t> ids;
  std::vector<float> xy;  // 2 per id, in [0, 1]
  int64_t change_seq = -1;
  std::string method;  // "umap" or "pca"
  std::string note;    // why the fallback was used, when it was
  double seconds = 0;
};

class MapService {
 public:
  enum class Status { Idle, Computing, Ready, Failed };
  struct State {
    Status status = Status::Idle;
    std::shared_ptr<const MapPoints> points;  // the latest finished layout (may be older than asked)
    std::string error;
    bool computing = false;
  };

  explicit MapService(std::filesystem::path db_dir);
  ~MapService();
  MapService(const MapService&) = delete;
  MapService& operator=(const MapService&) = delete;

  // Starts a computation unless one is running or the finished layout reflects change_seq.
  void request(int64_t change_seq);
  State state() const;
  // True while a computation runs (it cannot be interrupted; see serve()).
  bool busy() const;

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
  std::filesystem::path db_dir_;
};

// The PCA fallback: n x dim row-major vectors -> n x 2 in [0, 1].
std::vector<float> pca_layout(const float* x, int64_t n, int dim);

// The layout of the database at db_dir, as MapService computes it (blocking).
Result<MapPoints> compute_map(const std::filesystem::path& db_dir);

}  // namespace imgsearch::server
