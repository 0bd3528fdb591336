// database: one imgsearch database directory = the catalog (source of truth, SQLite)
// plus the vector index derived from it (vectors.index).
//
//   DB_DIR/catalog.sqlite   images, their vectors, settings (see catalog/catalog.h)
//   DB_DIR/vectors.index    the ANN index; its header records the catalog change_seq
//                           it reflects, its payload how it was built (BuildInfo).
//   DB_DIR/lock             held (flock) by the one process allowed to write
//
// Settings fix what the vectors mean (model, layer, pooling, metric, preprocessing) and are written
// once, when the database is created; opening with different settings is refused. The
// index kind and memory budget only decide how the vectors are searched: a writer may
// change them, and the index is rebuilt to match.
//
// Index life cycle
//   - index() returns an index that agrees with the catalog's last commit: the saved file
//     when it is current, else an exact (Flat) index built from the catalog's vectors --
//     quick to build and always correct; it says so in BuildInfo::fallback.
//   - commit() applies each change to that in-memory index (adds; removals in place or as
//     tombstones), so a running ingest never rebuilds anything.
//   - save_index() (end of an ingest) brings the index to what the settings ask for, then
//     writes it: it resolves `auto` (index/policy.h) when the collection has doubled or
//     halved since the last build, trains kinds that need it on a sample once the
//     collection has enough vectors (until then it keeps exact search), retrains when
//     the collection has outgrown the sample, compacts HNSW tombstones past 25% of the
//     live vectors, and tunes the default search knobs for recall@10 >= 0.95.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "catalog/catalog.h"
#include "common/result.h"
#include "embed/embedder.h"
#include "index/vector_index.h"

namespace imgsearch::database {

struct Settings {
  embed::Representation representation;
  // embed::preprocessing_signature() of the model (input size, crop, mean, std, layout):
  // a model re-added under the same name with other preprocessing makes other vectors.
  // Empty = not checked (callers that feed vectors they made themselves).
  std::string preprocessing;
  index::Metric metric = index::Metric::Cosine;
  // "auto" or a FAISS factory string. Empty when opening for writing: keep the stored
  // one ("auto" for a new database).
  std::string index_spec = "Flat";
  // Memory the index may use when index_spec is "auto" (bytes). 0 when opening for
  // writing: keep the stored one (index::kDefaultMemoryBudget for a new database).
  uint64_t memory_budget = 0;
  int dim = 0;
};

// Recall target for the default search knobs, and the sample it is measured on.
constexpr double kTunedRecallTarget = 0.96;  // 0.95 with a margin for sampling error
constexpr int kTuningQueries = 200;
// Candidates re-ranked with exact vectors by default on lossy kinds (PQ, SQ, PCA).
constexpr int kDefaultRerank = 1000;

class Database {
 public:
  ~Database();
  // Opens (creating if needed) for writing; takes the writer lock or fails with a clear
  // message if another process holds it. `requested` must match an existing database's
  // settings (dim is filled in by the caller from the embedder); a non-empty index_spec
  // or non-zero memory_budget replaces the stored one.
  static Result<std::unique_ptr<Database>> open_for_writing(const std::filesystem::path& dir,
                                                            const Settings& requested);
  // Opens an existing database for reading (search, serve); never blocks on a writer.
  static Result<std::unique_ptr<Database>> open_for_reading(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  // index_spec is the requested kind ("auto" or a factory string); the index in use says
  // what it actually is (index()->spec(), index()->build_info()).
  const Settings& settings() const { return settings_; }
  catalog::Catalog& catalog() { return *catalog_; }

  // The index as of the catalog's last commit (see "Index life cycle").
  Result<index::VectorIndex*> index();

  // Writers: commit to the catalog (one transaction) and apply the same change to the
  // in-memory index. Returns the ids of `adds`, in order.
  Result<std::vector<int64_t>> commit(std::span<const catalog::NewImage> adds, std::span<const int64_t> remove_ids);
  // A moved file: new path, same content and vector.
  Status rename(int64_t id, const std::string& new_path, const std::string& new_key, int64_t mtime_ns);
  // Brings the index to what the settings ask for (may rebuild: minutes for a million
  // vectors) and saves it atomically, tagged with the catalog change_seq it reflects.
  Status save_index();

  // Receives one line per long step of save_index ("training IVF4096,PQ32 on 262144
  // vectors"); nothing by default.
  void set_log(std::function<void(const std::string&)> log) { log_ = std::move(log); }

  std::filesystem::path index_path() const { return dir_ / "vectors.index"; }

 private:
  Database() = default;
  Status load_settings();
  uint64_t budget() const;
  // Builds `spec` from the catalog's vectors (train on a sample, add everything, tune).
  Result<std::unique_ptr<index::VectorIndex>> build_index(const std::string& spec, index::BuildInfo info);
  void log(const std::string& line) const {
    if (log_) log_(line);
  }

  std::filesystem::path dir_;
  Settings settings_;
  std::unique_ptr<catalog::Catalog> catalog_;
  std::unique_ptr<index::VectorIndex> index_;
  int64_t index_seq_ = -1;  // change_seq the in-memory index reflects
  int64_t saved_seq_ = -1;  // change_seq of vectors.index when it holds index_ as is
  int lock_fd_ = -1;
  std::function<void(const std::string&)> log_;
};

}  // namespace imgsearch::database
