#include "database/database.h"

#include <fcntl.h>     // open
#include <sys/file.h>  // flock
#include <unistd.h>    // close

#include <vector>

namespace imgsearch::database {
namespace fs = std::filesystem;

Database::~Database() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

Status Database::load_settings() {
  auto& c = *catalog_;
  auto model = c.get_meta("model"), layer = c.get_meta("layer"), pooling = c.get_meta("pooling");
  auto metric = c.get_meta("metric"), spec = c.get_meta("index_spec"), dim = c.get_meta("dim");
  if (!model || !layer || !pooling || !metric || !spec || !dim)
    return make_error("database " + dir_.string() + " has no settings yet (was its first `index` interrupted?)");
  settings_.representation.model = *model;
  settings_.representation.layer = *layer;
  auto p = embed::parse_pooling(*pooling);
  auto m = index::parse_metric(*metric);
  if (!p || !m) return make_error("database " + dir_.string() + " has unknown settings");
  settings_.representation.pooling = *p;
  settings_.representation.normalize = c.get_meta("normalize").value_or("1") == "1";
  settings_.metric = *m;
  settings_.index_spec = *spec;
  settings_.dim = std::stoi(*dim);
  return {};
}

Result<std::unique_ptr<Database>> Database::open_for_writing(const fs::path& dir, const Settings& requested) {
  std::unique_ptr<Database> db(new Database());
  db->dir_ = dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error("cannot create database directory " + dir.string() + ": " + ec.message());
  db->lock_fd_ = ::open((dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (db->lock_fd_ < 0) return make_error("cannot create " + (dir / "lock").string());
  if (::flock(db->lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return make_error("database " + dir.string() + " is being written by another imgsearch process; wait for it to finish");
  auto cat = catalog::Catalog::open(dir, catalog::Catalog::Mode::ReadWrite);
  if (!cat) return make_error(cat.error());
  db->catalog_ = std::move(*cat);
  auto& c = *db->catalog_;
  if (!c.get_meta("model")) {
    const auto& r = requested.representation;
    for (auto [k, v] : {std::pair<std::string, std::string>{"model", r.model}, {"layer", r.layer},
                        {"pooling", embed::pooling_name(r.pooling)}, {"normalize", r.normalize ? "1" : "0"},
                        {"metric", index::metric_name(requested.metric)}, {"index_spec", requested.index_spec},
                        {"dim", std::to_string(requested.dim)}})
      if (auto s = c.set_meta(k, v); !s) return make_error(s.error());
  }
  if (auto s = db->load_settings(); !s) return make_error(s.error());
  const auto& have = db->settings_;
  const auto& want = requested;
  if (have.representation.model != want.representation.model || have.representation.layer != want.representation.layer ||
      have.representation.pooling != want.representation.pooling || have.metric != want.metric ||
      have.dim != want.dim)
    return make_error("database " + dir.string() + " holds vectors of model " + have.representation.model + ", layer " +
                      have.representation.layer + ", pooling " + embed::pooling_name(have.representation.pooling) +
                      ", metric " + index::metric_name(have.metric) + ", dim " + std::to_string(have.dim) +
                      "; it cannot mix them with " + want.representation.model + "/" + want.representation.layer + "/" +
                      embed::pooling_name(want.representation.pooling) + "/" + index::metric_name(want.metric) +
                      "/dim " + std::to_string(want.dim) + " (use another --db)");
  return db;
}

Result<std::unique_ptr<Database>> Database::open_for_reading(const fs::path& dir) {
  std::unique_ptr<Database> db(new Database());
  db->dir_ = dir;
  auto cat = catalog::Catalog::open(dir, catalog::Catalog::Mode::ReadOnly);
  if (!cat) return make_error(cat.error());
  db->catalog_ = std::move(*cat);
  if (auto s = db->load_settings(); !s) return make_error(s.error());
  return db;
}

Result<std::unique_ptr<index::VectorIndex>> Database::rebuild_index() {
  auto idx = index::make_index(settings_.index_spec, settings_.dim, settings_.metric);
  if (!idx) return make_error(idx.error());
  std::vector<int64_t> ids;
  std::vector<float> vecs;
  auto seq = catalog_->for_each_vector([&](int64_t id, std::span<const float> v) {
    ids.push_back(id);
    vecs.insert(vecs.end(), v.begin(), v.end());
  });
  if (!seq) return make_error(seq.error());
  if (vecs.size() != ids.size() * size_t(settings_.dim))
    return make_error("database " + dir_.string() + ": stored vectors do not have dimension " +
                      std::to_string(settings_.dim));
  if ((*idx)->needs_training() && !ids.empty())
    if (auto s = (*idx)->train(int64_t(ids.size()), vecs.data()); !s) return make_error(s.error());
  if (!ids.empty())
    if (auto s = (*idx)->add(int64_t(ids.size()), vecs.data(), ids.data()); !s) return make_error(s.error());
  index_seq_ = *seq;
  return std::move(*idx);
}

Result<index::VectorIndex*> Database::index() {
  const int64_t seq = catalog_->change_seq();
  if (index_ && index_seq_ == seq) return index_.get();
  uint64_t tag = 0;
  if (fs::exists(index_path())) {
    auto loaded = index::load_index(index_path(), &tag);
    if (loaded && int64_t(tag) == seq && (*loaded)->dim() == settings_.dim) {
      index_ = std::move(*loaded);
      index_seq_ = seq;
      return index_.get();
    }
  }
  auto rebuilt = rebuild_index();
  if (!rebuilt) return make_error(rebuilt.error());
  index_ = std::move(*rebuilt);
  return index_.get();
}

Result<std::vector<int64_t>> Database::commit(std::span<const catalog::NewImage> adds,
                                              std::span<const int64_t> remove_ids) {
  for (const auto& a : adds)
    if (a.vector.size() != size_t(settings_.dim))
      return make_error("database " + dir_.string() + ": vector for " + a.record.path + " has " +
                        std::to_string(a.vector.size()) + " values, not " + std::to_string(settings_.dim));
  // Current as of the previous commit; an index still waiting for training data is not
  // rebuilt per commit (it would train on the first batch, or fail with too few vectors):
  // the next index() call builds and trains it from the whole catalog.
  index::VectorIndex* ix = nullptr;
  if (!index_ || !index_->needs_training()) {
    auto idx = index();
    if (!idx) return make_error(idx.error());
    ix = *idx;
  }
  auto ids = catalog_->commit(adds, remove_ids);
  if (!ids) return ids;
  // The catalog has committed: from here on a failure to update the in-memory index only
  // makes it stale (the next index() rebuilds it from the catalog), never a failed commit.
  if (!ix || ix->needs_training()) {
    index_seq_ = -1;
    return ids;
  }
  std::vector<int64_t> gone(remove_ids.begin(), remove_ids.end());
  gone.insert(gone.end(), ids->begin(), ids->end());  // replaced images keep their id
  if (auto s = ix->remove(gone); !s) {  // e.g. HNSW and IVF cannot remove in place
    index_seq_ = -1;
    return ids;
  }
  std::vector<float> flat;
  flat.reserve(adds.size() * size_t(settings_.dim));
  for (const auto& a : adds) flat.insert(flat.end(), a.vector.begin(), a.vector.end());
  if (!adds.empty())
    if (auto s = ix->add(int64_t(adds.size()), flat.data(), ids->data()); !s) {
      index_seq_ = -1;
      return ids;
    }
  index_seq_ = catalog_->change_seq();
  return ids;
}

Status Database::rename(int64_t id, const std::string& new_path, const std::string& new_key, int64_t mtime_ns) {
  const bool current = index_ && index_seq_ == catalog_->change_seq();
  if (auto s = catalog_->rename(id, new_path, new_key, mtime_ns); !s) return s;
  if (current) index_seq_ = catalog_->change_seq();  // vectors unchanged
  return {};
}

Status Database::save_index() {
  auto idx = index();
  if (!idx) return make_error(idx.error());
  return (*idx)->save(index_path(), uint64_t(index_seq_));
}

}  // namespace imgsearch::database
