// database: one imgsearch database directory = the catalog (source of truth, SQLite)
// plus the vector index derived from it (vectors.index).
//
//   DB_DIR/catalog.sqlite   images, their vectors, settings (see catalog/catalog.h)
//   DB_DIR/vectors.index    the ANN index; its header records the catalog change_seq
//                           it reflects. A missing or stale file is rebuilt from the
//                           catalog's vectors, so it can never disagree with the catalog.
//   DB_DIR/lock             held (flock) by the one process allowed to write
//
// Settings fix what the vectors mean (model, layer, pooling, metric) and are written
// once, when the database is created; opening with different settings is refused.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "catalog/catalog.h"
#include "common/result.h"
#include "embed/embedder.h"
#include "index/vector_index.h"

namespace imgsearch::database {

struct Settings {
  embed::Representation representation;
  index::Metric metric = index::Metric::Cosine;
  std::string index_spec = "Flat";
  int dim = 0;
};

class Database {
 public:
  ~Database();
  // Opens (creating if needed) for writing; takes the writer lock or fails with a clear
  // message if another process holds it. `requested` must match an existing database's
  // settings (dim is filled in by the caller from the embedder).
  static Result<std::unique_ptr<Database>> open_for_writing(const std::filesystem::path& dir,
                                                            const Settings& requested);
  // Opens an existing database for reading (search, serve); never blocks on a writer.
  static Result<std::unique_ptr<Database>> open_for_reading(const std::filesystem::path& dir);

  const std::filesystem::path& dir() const { return dir_; }
  const Settings& settings() const { return settings_; }
  catalog::Catalog& catalog() { return *catalog_; }

  // The index as of the catalog's last commit (loaded from vectors.index, or rebuilt
  // in memory from the catalog when that file is missing or stale).
  Result<index::VectorIndex*> index();

  // Writers: commit to the catalog (one transaction) and apply the same change to the
  // in-memory index. Returns the ids of `adds`, in order.
  Result<std::vector<int64_t>> commit(std::span<const catalog::NewImage> adds, std::span<const int64_t> remove_ids);
  // A moved file: new path, same content and vector.
  Status rename(int64_t id, const std::string& new_path, const std::string& new_key, int64_t mtime_ns);
  // Saves the index atomically, tagged with the catalog change_seq it reflects.
  Status save_index();

  std::filesystem::path index_path() const { return dir_ / "vectors.index"; }

 private:
  Database() = default;
  Status load_settings();
  Result<std::unique_ptr<index::VectorIndex>> rebuild_index();

  std::filesystem::path dir_;
  Settings settings_;
  std::unique_ptr<catalog::Catalog> catalog_;
  std::unique_ptr<index::VectorIndex> index_;
  int64_t index_seq_ = -1;  // change_seq the in-memory index reflects
  int lock_fd_ = -1;
};

}  // namespace imgsearch::database
