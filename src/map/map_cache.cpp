// map.bin: the cached layout of a database (format in map_cache.h).
#include "map/map_cache.h"

#include <xxhash.h>  // XXH3_64bits: payload checksum, options fingerprint

#include <cmath>
#include <cstring>
#include <sstream>

#include "common/file_io.h"

namespace imgsearch::map {
namespace {

constexpr char kMagic[8] = {'I', 'M', 'G', 'S', 'M', 'A', 'P', '\0'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderBytes = 64;
constexpr size_t kPointBytes = 16;

template <class T>
void put(std::vector<uint8_t>& out, size_t at, T v) {
  std::memcpy(out.data() + at, &v, sizeof v);
}
template <class T>
T get(const std::vector<uint8_t>& in, size_t at) {
  T v;
  std::memcpy(&v, in.data() + at, sizeof v);
  return v;
}

}  // namespace

std::filesystem::path map_cache_path(const std::filesystem::path& db_dir) { return db_dir / "map.bin"; }

uint64_t options_fingerprint(const UmapOptions& o) {
  std::ostringstream s;
  s.precision(9);
  // umap2: the SGD visits edges in two interleaved streams (another, equally valid order).
  s << "umap2 neighbors=" << o.n_neighbors << " min_dist=" << o.min_dist << " spread=" << o.spread
    << " epochs=" << o.n_epochs << " metric=" << index::metric_name(o.metric) << " seed=" << o.seed
    << " exact_below=" << o.exact_knn_below << " init=" << int(o.init) << " lr=" << o.learning_rate
    << " gamma=" << o.repulsion_strength << " negative=" << o.negative_sample_rate << " pca=" << o.knn_pca_dim << "/"
    << o.knn_pca_rows << " candidates=" << o.knn_candidates_factor << " hnsw=" << o.hnsw_m << ","
    << o.hnsw_ef_construction << "," << o.hnsw_ef_search;
  const std::string text = s.str();
  return XXH3_64bits(text.data(), text.size());
}

Status write_map_cache(const std::filesystem::path& path, const MapLayout& layout, uint64_t fingerprint) {
  const size_t n = layout.ids.size();
  if (layout.coords.size() != n * 2)
    return make_error("map layout has " + std::to_string(layout.coords.size()) + " coordinates for " +
                      std::to_string(n) + " ids");
  std::vector<uint8_t> bytes(kHeaderBytes + n * kPointBytes, 0);
  for (size_t i = 0; i < n; ++i) {
    const size_t at = kHeaderBytes + i * kPointBytes;
    put(bytes, at, layout.ids[i]);
    put(bytes, at + 8, layout.coords[i * 2]);
    put(bytes, at + 12, layout.coords[i * 2 + 1]);
  }
  std::memcpy(bytes.data(), kMagic, sizeof kMagic);
  put(bytes, 8, kVersion);
  put(bytes, 12, kHeaderBytes);
  put(bytes, 16, layout.change_seq);
  put(bytes, 24, fingerprint);
  put(bytes, 32, uint64_t(n));
  put(bytes, 40, uint64_t(XXH3_64bits(bytes.data() + kHeaderBytes, n * kPointBytes)));
  return write_file_atomic(path, bytes);
}

Result<MapLayout> read_map_cache(const std::filesystem::path& path, uint64_t* fingerprint) {
  auto bytes = read_file_bytes(path);
  if (!bytes) return make_error(path.string() + ": " + bytes.error());
  const auto& b = *bytes;
  auto bad = [&](const std::string& why) { return make_error(path.string() + ": " + why); };
  if (b.size() < kHeaderBytes || std::memcmp(b.data(), kMagic, sizeof kMagic) != 0) return bad("not a map file");
  if (get<uint32_t>(b, 8) != kVersion) return bad("map format version " + std::to_string(get<uint32_t>(b, 8)));
  if (get<uint32_t>(b, 12) != kHeaderBytes) return bad("unexpected header size");
  const uint64_t n = get<uint64_t>(b, 32);
  if (n > (b.size() - kHeaderBytes) / kPointBytes || b.size() != kHeaderBytes + n * kPointBytes)
    return bad("truncated or padded (" + std::to_string(b.size()) + " bytes for " + std::to_string(n) + " points)");
  if (get<uint64_t>(b, 40) != XXH3_64bits(b.data() + kHeaderBytes, n * kPointBytes)) return bad("checksum mismatch");
  MapLayout m;
  m.change_seq = get<int64_t>(b, 16);
  if (fingerprint) *fingerprint = get<uint64_t>(b, 24);
  m.ids.resize(n);
  m.coords.resize(n * 2);
  for (size_t i = 0; i < n; ++i) {
    const size_t at = kHeaderBytes + i * kPointBytes;
    m.ids[i] = get<int64_t>(b, at);
    m.coords[i * 2] = get<float>(b, at + 8);
    m.coords[i * 2 + 1] = get<float>(b, at + 12);
    if (i > 0 && m.ids[i] <= m.ids[i - 1]) return bad("ids out of order");
    for (int a = 0; a < 2; ++a)
      if (!(m.coords[i * 2 + size_t(a)] >= 0.0f && m.coords[i * 2 + size_t(a)] <= 1.0f))
        return bad("coordinate out of [0, 1]");
  }
  m.from_cache = true;
  return m;
}

Result<MapLayout> load_or_compute_map(database::Database& db, const UmapOptions& options) {
  UmapOptions o = options;
  o.metric = db.settings().metric;  // the vectors' meaning, fixed when the database was made
  const uint64_t fingerprint = options_fingerprint(o);
  const auto path = map_cache_path(db.dir());
  const int64_t seq = db.catalog().change_seq();
  std::string note;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    uint64_t stored = 0;
    auto cached = read_map_cache(path, &stored);
    if (!cached)
      note = cached.error() + "; recomputed";
    else if (cached->change_seq != seq)
      note = "map.bin reflects catalog change " + std::to_string(cached->change_seq) + ", the catalog is at " +
             std::to_string(seq) + "; recomputed";
    else if (stored != fingerprint)
      note = "map.bin was made with other map options; recomputed";
    else
      return std::move(*cached);
  }
  // One read transaction: the ids, vectors and change_seq belong to the same snapshot even
  // while `index` commits.
  MapLayout m;
  std::vector<float> vectors;
  const int dim = db.settings().dim;
  auto snapshot = db.catalog().for_each_vector([&](int64_t id, std::span<const float> v) {
    m.ids.push_back(id);
    vectors.insert(vectors.end(), v.begin(), v.end());
  });
  if (!snapshot) return make_error(snapshot.error());
  if (vectors.size() != m.ids.size() * size_t(dim))
    return make_error("database " + db.dir().string() + ": stored vectors do not have dimension " +
                      std::to_string(dim));
  auto xy = umap_layout(vectors.data(), int64_t(m.ids.size()), dim, o);
  if (!xy) return make_error("map of " + db.dir().string() + ": " + xy.error());
  m.coords = std::move(*xy);
  m.change_seq = *snapshot;
  if (auto s = write_map_cache(path, m, fingerprint); !s)
    note += std::string(note.empty() ? "" : "; ") + "map.bin not written: " + s.error();
  m.cache_note = note;
  return m;
}

}  // namespace imgsearch::map
