#include "server/map_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "database/database.h"

#if defined(IMGSEARCH_HAVE_MAP_LIBRARY) && __has_include("map/map_cache.h")
#include "map/map_cache.h"
#define IMGSEARCH_USE_UMAP 1
#else
#define IMGSEARCH_USE_UMAP 0
#endif

namespace imgsearch::server {
namespace fs = std::filesystem;

namespace {

// Scales each axis of n x 2 points to [0, 1] (a constant axis goes to 0.5).
void normalise_unit_square(std::vector<float>& xy) {
  const size_t n = xy.size() / 2;
  for (int axis = 0; axis < 2; ++axis) {
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; ++i) {
      lo = std::min(lo, xy[2 * i + size_t(axis)]);
      hi = std::max(hi, xy[2 * i + size_t(axis)]);
    }
    const float span = hi - lo;
    for (size_t i = 0; i < n; ++i) {
      float& v = xy[2 * i + size_t(axis)];
      v = span > 0 && std::isfinite(span) ? (v - lo) / span : 0.5f;
    }
  }
}

}  // namespace

std::vector<float> pca_layout(const float* x, int64_t n, int dim) {
  std::vector<float> out(size_t(n) * 2, 0.5f);
  if (n < 2 || dim < 1) return out;
  const size_t d = size_t(dim);
  std::vector<double> mean(d, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) mean[j] += x[size_t(i) * d + j];
  for (auto& m : mean) m /= double(n);

  // Power iteration on the covariance, never formed: v <- X^T (X v), X centred.
  std::vector<std::vector<double>> comps;
  std::mt19937_64 rng(42);
  std::normal_distribution<double> gauss;
  std::vector<double> proj(static_cast<size_t>(n));
  for (int c = 0; c < 2; ++c) {
    std::vector<double> v(d);
    for (auto& e : v) e = gauss(rng);
    for (int iter = 0; iter < 40; ++iter) {
      for (const auto& p : comps) {  // deflate: keep v orthogonal to earlier components
        double dot = 0;
        for (size_t j = 0; j < d; ++j) dot += v[j] * p[j];
        for (size_t j = 0; j < d; ++j) v[j] -= dot * p[j];
      }
      double norm = 0;
      for (double e : v) norm += e * e;
      norm = std::sqrt(norm);
      if (norm == 0) break;
      for (auto& e : v) e /= norm;
      for (int64_t i = 0; i < n; ++i) {
        const float* row = x + size_t(i) * d;
        double s = 0;
        for (size_t j = 0; j < d; ++j) s += (row[j] - mean[j]) * v[j];
        proj[size_t(i)] = s;
      }
      std::vector<double> next(d, 0.0);
      for (int64_t i = 0; i < n; ++i) {
        const float* row = x + size_t(i) * d;
        const double s = proj[size_t(i)];
        for (size_t j = 0; j < d; ++j) next[j] += (row[j] - mean[j]) * s;
      }
      v.swap(next);
    }
    for (const auto& p : comps) {
      double dot = 0;
      for (size_t j = 0; j < d; ++j) dot += v[j] * p[j];
      for (size_t j = 0; j < d; ++j) v[j] -= dot * p[j];
    }
    double norm = 0;
    for (double e : v) norm += e * e;
    norm = std::sqrt(norm);
    if (norm > 0)
      for (auto& e : v) e /= norm;
    comps.push_back(v);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = x + size_t(i) * d;
      double s = 0;
      for (size_t j = 0; j < d; ++j) s += (row[j] - mean[j]) * v[j];
      out[size_t(i) * 2 + size_t(c)] = float(s);
    }
  }
  normalise_unit_square(out);
  return out;
}

Result<MapPoints> compute_map(const fs::path& db_dir) {
  const auto t0 = std::chrono::steady_clock::now();
  auto db = database::Database::open_for_reading(db_dir);
  if (!db) return make_error(db.error());
  MapPoints pts;
  std::string note;
#if IMGSEARCH_USE_UMAP
  {
    map::UmapOptions uo;
    uo.metric = (*db)->settings().metric;
    auto layout = map::load_or_compute_map(**db, uo);
    if (layout) {
      pts.ids = layout->ids;
      pts.xy = layout->coords;
      pts.change_seq = layout->change_seq;
      pts.method = "umap";
    } else {
      note = "umap failed: " + layout.error();
      std::fprintf(stderr, "imgsearch serve: map: %s; showing a PCA projection instead\n", note.c_str());
    }
  }
#else
  note = "UMAP module not built in";
#endif
  if (pts.method.empty()) {
    std::vector<float> vecs;
    auto seq = (*db)->catalog().for_each_vector([&](int64_t id, std::span<const float> v) {
      pts.ids.push_back(id);
      vecs.insert(vecs.end(), v.begin(), v.end());
    });
    if (!seq) return make_error(seq.error());
    pts.change_seq = *seq;
    pts.xy = pca_layout(vecs.data(), int64_t(pts.ids.size()), (*db)->settings().dim);
    pts.method = "pca";
    pts.note = note;
  }
  if (pts.xy.size() != pts.ids.size() * 2) return make_error("map layout has the wrong number of coordinates");
  pts.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return pts;
}

struct MapService::Shared {
  mutable std::mutex mu;
  bool computing = false;
  int64_t computing_seq = -1;
  std::shared_ptr<const MapPoints> points;
  std::string error;
  int64_t failed_seq = -2;
};

MapService::MapService(fs::path db_dir) : shared_(std::make_shared<Shared>()), db_dir_(std::move(db_dir)) {}

// The worker owns what it touches (its Shared and its own database connection), so it
// can outlive this object; it is detached because a layout cannot be interrupted.
MapService::~MapService() = default;

void MapService::request(int64_t change_seq) {
  std::lock_guard lock(shared_->mu);
  if (shared_->computing) return;
  if (shared_->points && shared_->points->change_seq >= change_seq) return;
  if (shared_->failed_seq == change_seq) return;  // do not retry a failure for the same state
  shared_->computing = true;
  shared_->computing_seq = change_seq;
  std::thread([shared = shared_, dir = db_dir_, change_seq] {
    auto r = compute_map(dir);
    std::lock_guard lock(shared->mu);
    shared->computing = false;
    if (r) {
      shared->points = std::make_shared<const MapPoints>(std::move(*r));
      shared->error.clear();
    } else {
      shared->error = r.error();
      shared->failed_seq = change_seq;
      std::fprintf(stderr, "imgsearch serve: map: %s\n", r.error().c_str());
    }
  }).detach();
}

MapService::State MapService::state() const {
  std::lock_guard lock(shared_->mu);
  State s;
  s.points = shared_->points;
  s.error = shared_->error;
  s.computing = shared_->computing;
  s.status = shared_->points    ? Status::Ready
             : s.computing      ? Status::Computing
             : !s.error.empty() ? Status::Failed
                                : Status::Idle;
  return s;
}

bool MapService::busy() const {
  std::lock_guard lock(shared_->mu);
  return shared_->computing;
}

}  // namespace imgsearch::server
