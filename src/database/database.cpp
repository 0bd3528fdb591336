#include "database/database.h"

#include <fcntl.h>     // open
#include <sys/file.h>  // flock
#include <unistd.h>    // close

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>
#include <vector>

#include "index/exact.h"
#include "index/policy.h"

namespace imgsearch::database {
namespace fs = std::filesystem;

namespace {

// Vectors per add() while streaming the catalog into an index: large enough for FAISS to
// parallelise, small enough (80 MB at dim 1280) to keep the build's memory flat.
constexpr int64_t kChunk = 16384;

std::string with_commas(int64_t n) {
  const std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out = n < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

}  // namespace

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
  settings_.preprocessing = c.get_meta("preprocessing").value_or("");
  settings_.metric = *m;
  settings_.index_spec = *spec;
  settings_.dim = std::stoi(*dim);
  settings_.memory_budget = 0;
  if (auto b = c.get_meta("memory_budget"))
    if (auto v = index::parse_byte_size(*b)) settings_.memory_budget = *v;
  return {};
}

uint64_t Database::budget() const {
  return settings_.memory_budget ? settings_.memory_budget : index::kDefaultMemoryBudget;
}

Result<std::unique_ptr<Database>> Database::open_for_writing(const fs::path& dir, const Settings& requested) {
  if (!requested.index_spec.empty() && !index::is_auto(requested.index_spec)) {
    // Refuse a bad spec now, not after an ingest's worth of embedding.
    auto probe = index::make_index(requested.index_spec, std::max(requested.dim, 1), requested.metric);
    if (!probe) return make_error(probe.error());
  }
  std::unique_ptr<Database> db(new Database());
  db->dir_ = dir;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error("cannot create database directory " + dir.string() + ": " + ec.message());
  db->lock_fd_ = ::open((dir / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (db->lock_fd_ < 0) return make_error("cannot create " + (dir / "lock").string());
  if (::flock(db->lock_fd_, LOCK_EX | LOCK_NB) != 0)
    return make_error("database " + dir.string() +
                      " is being written by another imgsearch process; wait for it to finish");
  auto cat = catalog::Catalog::open(dir, catalog::Catalog::Mode::ReadWrite);
  if (!cat) return make_error(cat.error());
  db->catalog_ = std::move(*cat);
  auto& c = *db->catalog_;
  const bool fresh = !c.get_meta("model");
  if (fresh) {
    const auto& r = requested.representation;
    for (auto [k, v] : {std::pair<std::string, std::string>{"model", r.model},
                        {"layer", r.layer},
                        {"pooling", embed::pooling_name(r.pooling)},
                        {"normalize", r.normalize ? "1" : "0"},
                        {"preprocessing", requested.preprocessing},
                        {"metric", index::metric_name(requested.metric)},
                        {"index_spec", requested.index_spec.empty() ? "auto" : requested.index_spec},
                        {"dim", std::to_string(requested.dim)}})
      if (auto s = c.set_meta(k, v); !s) return make_error(s.error());
  }
  if (auto s = db->load_settings(); !s) return make_error(s.error());
  const auto& have = db->settings_;
  const auto& want = requested;
  if (have.representation.model != want.representation.model ||
      have.representation.layer != want.representation.layer ||
      have.representation.pooling != want.representation.pooling || have.metric != want.metric || have.dim != want.dim)
    return make_error("database " + dir.string() + " holds vectors of model " + have.representation.model + ", layer " +
                      have.representation.layer + ", pooling " + embed::pooling_name(have.representation.pooling) +
                      ", metric " + index::metric_name(have.metric) + ", dim " + std::to_string(have.dim) +
                      "; it cannot mix them with " + want.representation.model + "/" + want.representation.layer + "/" +
                      embed::pooling_name(want.representation.pooling) + "/" + index::metric_name(want.metric) +
                      "/dim " + std::to_string(want.dim) + " (use another --db)");
  if (!want.preprocessing.empty() && !have.preprocessing.empty() && want.preprocessing != have.preprocessing)
    return make_error("database " + dir.string() + " holds vectors of model " + have.representation.model +
                      " made with preprocessing " + have.preprocessing + "; the installed model now preprocesses as " +
                      want.preprocessing + ", and vectors of the two cannot be mixed (use another --db, or " +
                      "re-add the model with its old settings)");
  // How the vectors are searched may change at any time: save_index() rebuilds to match.
  if (!fresh && !want.index_spec.empty() && want.index_spec != have.index_spec)
    if (auto s = c.set_meta("index_spec", want.index_spec); !s) return make_error(s.error());
  if (want.memory_budget != 0 && want.memory_budget != have.memory_budget)
    if (auto s = c.set_meta("memory_budget", std::to_string(want.memory_budget)); !s) return make_error(s.error());
  if (auto s = db->load_settings(); !s) return make_error(s.error());
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

Result<std::unique_ptr<index::VectorIndex>> Database::build_index(const std::string& spec, index::BuildInfo info) {
  const auto t0 = std::chrono::steady_clock::now();
  const int dim = settings_.dim;
  auto made = index::make_index(spec, dim, settings_.metric);
  if (!made) return make_error(made.error());
  std::unique_ptr<index::VectorIndex> ix = std::move(*made);
  const int64_t n = catalog_->count();
  const bool trains = ix->needs_training();
  const bool tunes = spec != "Flat" && n > 0;
  const int64_t train_n = trains ? std::min(n, ix->ideal_training_vectors()) : 0;
  const int64_t nq = tunes ? std::min<int64_t>(n, kTuningQueries) : 0;
  const std::string bad_dim =
      "database " + dir_.string() + ": stored vectors do not have dimension " + std::to_string(dim);

  // Pass 1 (only when training or tuning): a uniform random sample of the collection
  // (reservoir sampling; fixed seed, so rebuilding the same catalog gives the same index).
  std::vector<float> sample;
  std::vector<int64_t> sample_ids;
  const int64_t want = std::max(train_n, nq);
  if (want > 0) {
    sample.resize(size_t(want) * size_t(dim));
    sample_ids.reserve(size_t(want));
    std::mt19937_64 rng(0x1a2b3c4d);
    int64_t seen = 0;
    bool wrong_dim = false;
    auto seq = catalog_->for_each_vector([&](int64_t id, std::span<const float> v) {
      if (v.size() != size_t(dim)) {
        wrong_dim = true;
        return;
      }
      int64_t slot = seen < want ? seen : int64_t(rng() % uint64_t(seen + 1));
      ++seen;
      if (slot >= want) return;
      if (slot == int64_t(sample_ids.size()))
        sample_ids.push_back(id);
      else
        sample_ids[size_t(slot)] = id;
      std::copy(v.begin(), v.end(), sample.begin() + slot * dim);
    });
    if (!seq) return make_error(seq.error());
    if (wrong_dim) return make_error(bad_dim);
    sample.resize(sample_ids.size() * size_t(dim));
  }
  if (trains) {
    const int64_t ts = std::min<int64_t>(train_n, int64_t(sample_ids.size()));
    log("training " + spec + " on " + with_commas(ts) + " of " + with_commas(n) + " vectors");
    // The reservoir is in random order, so its first ts rows are a uniform sample too.
    if (auto s = ix->train(ts, sample.data()); !s) return make_error(s.error());
    info.trained_on = ts;
  }
  // The tuning queries: the first nq rows of the sample; the rest is no longer needed.
  const int64_t q_n = std::min<int64_t>(nq, int64_t(sample_ids.size()));
  sample.resize(size_t(q_n) * size_t(dim));
  sample.shrink_to_fit();
  sample_ids.resize(size_t(q_n));

  // Pass 2: every vector into the index (in chunks) and into the exact twin that gives
  // the tuning queries their true neighbours.
  const int k = 10;
  index::ExactKnn truth(settings_.metric, dim, q_n, sample.data(), k + 1);  // +1: the query itself
  if (n > 0) log("adding " + with_commas(n) + " vectors to " + spec);
  std::vector<float> chunk;
  std::vector<int64_t> chunk_ids;
  chunk.reserve(size_t(std::min(n, kChunk)) * size_t(dim));
  Status failed;
  bool wrong_dim = false;
  auto flush = [&]() {
    if (chunk_ids.empty() || !failed.ok()) return;
    failed = ix->add(int64_t(chunk_ids.size()), chunk.data(), chunk_ids.data());
    if (q_n > 0) truth.add(int64_t(chunk_ids.size()), chunk.data(), chunk_ids.data());
    chunk.clear();
    chunk_ids.clear();
  };
  auto seq = catalog_->for_each_vector([&](int64_t id, std::span<const float> v) {
    if (v.size() != size_t(dim)) {
      wrong_dim = true;
      return;
    }
    chunk.insert(chunk.end(), v.begin(), v.end());
    chunk_ids.push_back(id);
    if (int64_t(chunk_ids.size()) == kChunk) flush();
  });
  if (!seq) return make_error(seq.error());
  if (wrong_dim) return make_error(bad_dim);
  flush();
  if (!failed.ok()) return make_error(failed.error());
  index_seq_ = *seq;

  if (q_n > 0) {
    const bool lossy = ix->stats().lossy;
    const int candidates = lossy ? kDefaultRerank : k;
    auto t = index::tune_defaults(*ix, q_n, sample.data(), truth.ids().data(), k + 1, k, candidates, kTunedRecallTarget,
                                  sample_ids.data());
    info.tuned_recall = t.recall;
    info.rerank = lossy ? candidates : 0;
    log("tuned " + spec + ": recall@10 " + std::to_string(t.recall).substr(0, 5) +
        (t.options.nprobe ? " at nprobe " + std::to_string(t.options.nprobe) : "") +
        (t.options.ef_search ? " at efSearch " + std::to_string(t.options.ef_search) : "") +
        (lossy ? " with " + std::to_string(candidates) + " candidates re-ranked" : ""));
  }
  info.built_at = int64_t(std::time(nullptr));
  info.built_with = ix->size();
  info.build_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ix->set_build_info(info);
  return ix;
}

Result<index::VectorIndex*> Database::index() {
  const int64_t seq = catalog_->change_seq();
  if (index_ && index_seq_ == seq) return index_.get();
  uint64_t tag = 0;
  std::string why = "the index file is missing";
  if (fs::exists(index_path())) {
    auto loaded = index::load_index(index_path(), &tag);
    if (loaded && int64_t(tag) == seq && (*loaded)->dim() == settings_.dim && !(*loaded)->needs_training()) {
      index_ = std::move(*loaded);
      index_seq_ = seq;
      saved_seq_ = seq;
      return index_.get();
    }
    // Say which: a damaged or foreign file must not pass for a merely stale one.
    if (!loaded)
      why = "the index file cannot be used (" + loaded.error() + ")";
    else if ((*loaded)->dim() != settings_.dim)
      why = "the index file holds vectors of another dimension";
    else if ((*loaded)->needs_training())
      why = "the index file is untrained";
    else
      why = "the index file is out of date (a writer is mid-way or was stopped)";
  }
  // No current file: exact search over the stored vectors, which builds in one pass with
  // no training.
  index::BuildInfo info;
  info.requested = settings_.index_spec;
  info.memory_budget = budget();
  info.fallback = why + "; exact search until `imgsearch index` rebuilds it";
  auto built = build_index("Flat", info);
  if (!built) return make_error(built.error());
  index_ = std::move(*built);
  return index_.get();
}

Result<std::vector<int64_t>> Database::commit(std::span<const catalog::NewImage> adds,
                                              std::span<const int64_t> remove_ids) {
  for (const auto& a : adds)
    if (a.vector.size() != size_t(settings_.dim))
      return make_error("database " + dir_.string() + ": vector for " + a.record.path + " has " +
                        std::to_string(a.vector.size()) + " values, not " + std::to_string(settings_.dim));
  auto idx = index();  // current as of the previous commit
  if (!idx) return make_error(idx.error());
  index::VectorIndex* ix = *idx;
  auto ids = catalog_->commit(adds, remove_ids);
  if (!ids) return ids;
  // The catalog has committed: from here on a failure to update the in-memory index only
  // makes it stale (the next index() rebuilds it from the catalog), never a failed commit.
  index_seq_ = -1;
  std::vector<int64_t> gone(remove_ids.begin(), remove_ids.end());
  gone.insert(gone.end(), ids->begin(), ids->end());  // replaced images keep their id
  if (auto s = ix->remove(gone); !s) return ids;
  std::vector<float> flat;
  flat.reserve(adds.size() * size_t(settings_.dim));
  for (const auto& a : adds) flat.insert(flat.end(), a.vector.begin(), a.vector.end());
  if (!adds.empty())
    if (auto s = ix->add(int64_t(adds.size()), flat.data(), ids->data()); !s) return ids;
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
  index::VectorIndex* ix = *idx;
  const index::BuildInfo have = ix->build_info();
  const std::string& requested = settings_.index_spec;
  const uint64_t b = budget();
  const int64_t n = ix->size();

  // What the settings ask for at this size.
  std::string spec = requested, reason;
  if (index::is_auto(requested)) {
    // Hysteresis: the kind (and IVF's list count) is re-chosen only when the collection
    // has doubled or halved since the build, so a growing collection is rebuilt
    // O(log n) times, not per ingest.
    const bool keep = have.requested == requested && have.fallback.empty() && have.memory_budget == b &&
                      have.built_with > 0 && n < 2 * have.built_with && 2 * n >= have.built_with;
    if (keep) {
      spec = ix->spec();
    } else {
      auto plan = index::resolve_auto(n, settings_.dim, b);
      spec = plan.spec;
      reason = plan.reason;
    }
  }
  auto probe = index::make_index(spec, settings_.dim, settings_.metric);
  if (!probe) return make_error(probe.error());
  const int64_t min_train = (*probe)->min_training_vectors();
  const int64_t ideal = (*probe)->ideal_training_vectors();

  index::BuildInfo info;
  info.requested = requested;
  info.memory_budget = b;
  bool rebuild = false;
  std::string build_spec = spec;
  if (n < min_train) {
    // Too few vectors to train `spec`: exact search over the stored vectors meanwhile.
    info.fallback = spec + " needs " + with_commas(min_train) + " vectors to train; " + with_commas(n) +
                    " so far: exact search until then";
    build_spec = "Flat";
    rebuild = ix->spec() != "Flat";
  } else {
    rebuild = ix->spec() != spec || !have.fallback.empty() || have.requested != requested ||
              (ix->tombstones() > 0 && ix->tombstones() * 4 > n) ||
              (ideal > 0 && have.trained_on < std::min(n, ideal) / 2);
  }
  if (rebuild) {
    log("building " + build_spec + (reason.empty() ? "" : " (" + reason + ")"));
    auto built = build_index(build_spec, info);
    if (!built) return make_error(built.error());
    index_ = std::move(*built);
    ix = index_.get();
  } else if (have.requested != info.requested || have.memory_budget != info.memory_budget ||
             have.fallback != info.fallback) {
    // Same index, new description (e.g. still waiting for training data).
    index::BuildInfo keep = have;
    keep.requested = info.requested;
    keep.memory_budget = info.memory_budget;
    keep.fallback = info.fallback;
    ix->set_build_info(keep);
    saved_seq_ = -1;
  }
  if (!rebuild && saved_seq_ == index_seq_ && fs::exists(index_path())) return {};  // the file already holds it
  if (auto s = ix->save(index_path(), uint64_t(index_seq_)); !s) return s;
  saved_seq_ = index_seq_;
  return {};
}

}  // namespace imgsearch::database
