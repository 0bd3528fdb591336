#include "search/search.h"

#include "decode/decode.h"

namespace imgsearch::search {

Result<std::unique_ptr<Searcher>> Searcher::open(const std::filesystem::path& db_dir,
                                                 const embed::EngineOptions& engine) {
  auto db = database::Database::open_for_reading(db_dir);
  if (!db) return make_error(db.error());
  auto embedder = embed::Embedder::open((*db)->settings().representation, engine);
  if (!embedder) return make_error(embedder.error());
  if (int((*embedder)->dim()) != (*db)->settings().dim)
    return make_error("database vectors have dimension " + std::to_string((*db)->settings().dim) +
                      " but the model gives " + std::to_string((*embedder)->dim()));
  decode::decode_init();
  std::unique_ptr<Searcher> s(new Searcher());
  s->db_ = std::move(*db);
  s->embedder_ = std::move(*embedder);
  return s;
}

Result<std::vector<Hit>> Searcher::by_image(std::span<const uint8_t> encoded, const Query& q) {
  auto img = decode::decode_image(encoded, embedder_->decode_options());
  if (!img) return make_error(img.error());
  const decode::RgbImage* images[] = {&*img};
  auto v = embedder_->embed(images);
  if (!v) return make_error(v.error());
  return by_vector(*v, q);
}

Result<std::vector<Hit>> Searcher::by_id(int64_t id, const Query& q) {
  auto v = db_->catalog().vector_of(id);
  if (!v) return make_error(v.error());
  return by_vector(*v, q);
}

Result<std::vector<Hit>> Searcher::by_vector(std::span<const float> v, const Query& q) {
  if (int(v.size()) != db_->settings().dim) return make_error("query vector has the wrong dimension");
  if (q.k <= 0) return make_error("k must be positive");
  auto idx = db_->index();
  if (!idx) return make_error(idx.error());
  const int k = q.k + (q.exclude_id >= 0 ? 1 : 0);
  std::vector<float> scores(static_cast<size_t>(k));
  std::vector<int64_t> ids(static_cast<size_t>(k));
  (*idx)->search(1, v.data(), k, scores.data(), ids.data());
  std::vector<Hit> hits;
  for (int i = 0; i < k && int(hits.size()) < q.k; ++i) {
    if (ids[size_t(i)] < 0 || ids[size_t(i)] == q.exclude_id) continue;
    auto rec = db_->catalog().find_by_id(ids[size_t(i)]);
    if (!rec) continue;  // removed since the index snapshot
    hits.push_back({int(hits.size()) + 1, rec->id, rec->path, scores[size_t(i)]});
  }
  return hits;
}

}  // namespace imgsearch::search
