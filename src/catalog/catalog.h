// catalog: what is indexed. An SQLite database (catalog.sqlite in the database directory)
// holding one row per indexed image, its feature vector, and the database's settings.
//
// Data contract
//   - The catalog is the source of truth: every vector lives in the `vectors` table next
//     to its image row, written in the same transaction, so a crash never leaves an image
//     without its vector or the reverse. The ANN index file is derived from it (see
//     index_state below) and can always be rebuilt.
//   - Paths are stored twice: `path` as the user gave it (for display and --json) and
//     `key`, the absolute, lexically normalised path that identifies the file. Both are
//     raw bytes (file names need not be UTF-8).
//   - Vectors are float32, `dim` of them per image, little-endian as in memory.
//   - change_seq increases with every committed change; an index file records the
//     change_seq it reflects, so a reader can tell whether it is current. A new catalog
//     starts it at a random value (below 2^48, exact as a JSON number), so an index file
//     of another catalog (one replaced, or copied in) never passes for a current one.
//   - WAL mode: readers (search, serve) see the last committed state while `index` writes.
//   Not thread-safe: one Catalog per thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"

struct sqlite3;

namespace imgsearch::catalog {

struct ImageRecord {
  int64_t id = 0;
  std::string path;  // as given to `index`
  std::string key;   // absolute, normalised: the identity of the file
  int64_t size = 0;
  int64_t mtime_ns = 0;
  int width = 0;  // upright, as decoded at full size
  int height = 0;
  std::string content_hash;  // xxh3-128 of the file's bytes, hex
  int64_t added_at = 0;      // unix seconds
};

// An image and its vector, about to be committed.
struct NewImage {
  ImageRecord record;         // id ignored: assigned on insert (or kept when replacing)
  std::vector<float> vector;  // dim floats
};

class Catalog {
 public:
  enum class Mode { ReadOnly, ReadWrite };
  ~Catalog();

  // Opens DB_DIR/catalog.sqlite; ReadWrite creates the directory and schema if needed.
  static Result<std::unique_ptr<Catalog>> open(const std::filesystem::path& db_dir, Mode mode);
  static std::filesystem::path file_in(const std::filesystem::path& db_dir) { return db_dir / "catalog.sqlite"; }

  // Settings (model, layer, pooling, metric, dim, index spec...). Missing key: nullopt.
  std::optional<std::string> get_meta(const std::string& key);
  Status set_meta(const std::string& key, const std::string& value);

  int64_t count();
  int64_t change_seq();
  std::optional<ImageRecord> find_by_key(const std::string& key);
  std::optional<ImageRecord> find_by_id(int64_t id);
  std::optional<ImageRecord> find_by_hash(const std::string& content_hash);
  std::vector<ImageRecord> list_images();
  // Records whose key lies under the directory `dir_key` (absolute, normalised).
  std::vector<ImageRecord> list_under(const std::string& dir_key);

  // One transaction: inserts (or replaces, matching on key) the images with their
  // vectors, removes `remove_ids`, bumps change_seq. Returns the ids of `adds` in order.
  Result<std::vector<int64_t>> commit(std::span<const NewImage> adds, std::span<const int64_t> remove_ids);
  // Changes path/key of an existing image (a moved file) without touching its vector.
  Status rename(int64_t id, const std::string& new_path, const std::string& new_key, int64_t mtime_ns);

  // Streams every (id, vector) in id order, inside one read transaction (a consistent
  // snapshot); returns the change_seq of that snapshot.
  Result<int64_t> for_each_vector(const std::function<void(int64_t id, std::span<const float> v)>& fn);
  Result<std::vector<float>> vector_of(int64_t id);
  // Many vectors at once (re-ranking candidates): out gets ids.size() x dim floats, row i
  // for ids[i]; found[i] is 0 where that image has no vector (row left zero) or a vector
  // of another dimension. One read transaction and one prepared statement; ids are
  // visited in ascending order so neighbouring rows share B-tree pages.
  Status read_vectors(std::span<const int64_t> ids, int dim, float* out, std::vector<uint8_t>& found);

 private:
  explicit Catalog(sqlite3* db) : db_(db) {}
  Status exec(const char* sql);
  sqlite3* db_ = nullptr;
};

}  // namespace imgsearch::catalog
