#include "search/search.h"

#include <algorithm>
#include <unordered_map>

#include "decode/decode.h"

namespace imgsearch::search {
namespace {

// Images embedded per inference call in by_images (as ingest's default batch).
constexpr size_t kEmbedBatch = 16;

}  // namespace

std::string path_key(const std::filesystem::path& p) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(p, ec);
  return (ec ? p : abs).lexically_normal().string();
}

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

Result<std::vector<Hit>> Searcher::by_path(const std::string& path, const Query& q) {
  auto& cat = db_->catalog();
  auto rec = cat.find_by_key(path_key(path));
  if (!rec) {
    // Also accept the path exactly as it was given to `index` (relative to where that ran).
    for (const auto& r : cat.list_images())
      if (r.path == path) {
        rec = r;
        break;
      }
  }
  if (!rec) return make_error(path + ": not in the database (index it first, or query with the file itself)");
  return by_id(rec->id, q);
}

Result<std::vector<Hit>> Searcher::by_vector(std::span<const float> v, const Query& q) {
  auto all = by_vectors(v, q);
  if (!all) return make_error(all.error());
  return std::move((*all)[0]);
}

Result<std::vector<std::vector<Hit>>> Searcher::by_vectors(std::span<const float> vs, const Query& q) {
  const int dim = db_->settings().dim;
  if (vs.empty() || vs.size() % size_t(dim) != 0) return make_error("query vector has the wrong dimension");
  if (q.k <= 0) return make_error("k must be positive");
  auto idx = db_->index();
  if (!idx) return make_error(idx.error());
  const index::VectorIndex& ix = **idx;
  const int64_t nq = int64_t(vs.size()) / dim;
  const int want = q.k + (q.exclude_id >= 0 ? 1 : 0);
  const int rerank = q.rerank < 0 ? ix.build_info().rerank : q.rerank;
  const int fetch = std::max(want, rerank);
  std::vector<float> scores(size_t(nq) * size_t(fetch));
  std::vector<int64_t> ids(size_t(nq) * size_t(fetch));
  ix.search(nq, vs.data(), fetch, scores.data(), ids.data(), q.knobs);

  if (rerank > 0) {
    // Exact scores for every candidate of every query, from one batched catalog read.
    std::unordered_map<int64_t, size_t> row_of;
    std::vector<int64_t> unique;
    for (int64_t id : ids)
      if (id >= 0 && row_of.emplace(id, unique.size()).second) unique.push_back(id);
    std::vector<float> vecs(unique.size() * size_t(dim));
    std::vector<uint8_t> found;
    if (auto s = db_->catalog().read_vectors(unique, dim, vecs.data(), found); !s) return make_error(s.error());
    const index::Metric m = ix.metric();
    std::vector<std::pair<float, int64_t>> cand;
    for (int64_t qi = 0; qi < nq; ++qi) {
      cand.clear();
      const float* query = vs.data() + qi * dim;
      for (int j = 0; j < fetch; ++j) {
        const int64_t id = ids[size_t(qi * fetch + j)];
        if (id < 0) continue;
        const size_t row = row_of[id];
        if (!found[row]) continue;  // removed since the index snapshot
        cand.emplace_back(index::exact_score(m, query, vecs.data() + row * size_t(dim), dim), id);
      }
      // Best first; equal scores by id, so results do not depend on the candidates' order.
      std::sort(cand.begin(), cand.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      });
      for (int j = 0; j < fetch; ++j) {
        const bool has = size_t(j) < cand.size();
        scores[size_t(qi * fetch + j)] = has ? cand[size_t(j)].first : 0.f;
        ids[size_t(qi * fetch + j)] = has ? cand[size_t(j)].second : -1;
      }
    }
  }

  std::vector<std::vector<Hit>> out(static_cast<size_t>(nq));
  for (int64_t qi = 0; qi < nq; ++qi) {
    auto& hits = out[size_t(qi)];
    for (int j = 0; j < fetch && int(hits.size()) < q.k; ++j) {
      const int64_t id = ids[size_t(qi * fetch + j)];
      const float score = scores[size_t(qi * fetch + j)];
      if (id < 0 || id == q.exclude_id) continue;
      if (score < q.min_score) break;  // best first: the rest score lower still
      auto rec = db_->catalog().find_by_id(id);
      if (!rec) continue;  // removed since the index snapshot
      hits.push_back({int(hits.size()) + 1, rec->id, rec->path, score});
    }
  }
  return out;
}

std::vector<Result<std::vector<Hit>>> Searcher::by_images(std::span<const std::span<const uint8_t>> encoded,
                                                          const Query& q) {
  const size_t dim = size_t(db_->settings().dim);
  std::vector<Result<std::vector<Hit>>> out(encoded.size(), Result<std::vector<Hit>>(std::vector<Hit>{}));
  std::vector<float> vecs;
  std::vector<size_t> where;  // query row -> position in `encoded`
  for (size_t start = 0; start < encoded.size(); start += kEmbedBatch) {
    const size_t end = std::min(encoded.size(), start + kEmbedBatch);
    std::vector<decode::RgbImage> images;
    std::vector<size_t> pos;
    images.reserve(end - start);
    for (size_t i = start; i < end; ++i) {
      auto img = decode::decode_image(encoded[i], embedder_->decode_options());
      if (!img) {
        out[i] = make_error(img.error());
        continue;
      }
      images.push_back(std::move(*img));
      pos.push_back(i);
    }
    if (images.empty()) continue;
    std::vector<const decode::RgbImage*> ptrs;
    for (const auto& im : images) ptrs.push_back(&im);
    auto v = embedder_->embed(ptrs);
    if (!v) {
      for (size_t i : pos) out[i] = make_error(v.error());
      continue;
    }
    vecs.insert(vecs.end(), v->begin(), v->end());
    where.insert(where.end(), pos.begin(), pos.end());
  }
  if (where.empty()) return out;
  auto all = by_vectors(std::span<const float>(vecs.data(), where.size() * dim), q);
  for (size_t r = 0; r < where.size(); ++r) {
    if (!all)
      out[where[r]] = make_error(all.error());
    else
      out[where[r]] = std::move((*all)[r]);
  }
  return out;
}

}  // namespace imgsearch::search
