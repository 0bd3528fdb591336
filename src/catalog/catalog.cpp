#include "catalog/catalog.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <random>

#include "catalog/sqlite_stmt.h"

namespace imgsearch::catalog {
namespace {

constexpr int kSchemaVersion = 1;

// Where a new catalog's change_seq starts: random in [2^32, 2^48), see the data contract.
int64_t initial_change_seq() {
  std::random_device rd;
  const uint64_t r = (uint64_t(rd()) << 32) | rd();
  return int64_t((uint64_t(1) << 32) + r % ((uint64_t(1) << 48) - (uint64_t(1) << 32)));
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key BLOB NOT NULL UNIQUE,
  path BLOB NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  added_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS images_by_hash ON images(content_hash);
CREATE TABLE IF NOT EXISTS vectors(
  id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
  vec BLOB NOT NULL);
)sql";

constexpr const char* kSelectImage =
    "SELECT id, path, key, size, mtime_ns, width, height, content_hash, added_at FROM images ";

ImageRecord read_record(Stmt& s) {
  ImageRecord r;
  r.id = s.i64(0);
  r.path = s.bytes(1);
  r.key = s.bytes(2);
  r.size = s.i64(3);
  r.mtime_ns = s.i64(4);
  r.width = int(s.i64(5));
  r.height = int(s.i64(6));
  r.content_hash = s.bytes(7);
  r.added_at = s.i64(8);
  return r;
}

}  // namespace

Catalog::~Catalog() { sqlite3_close_v2(db_); }

Status Catalog::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return make_error("catalog: " + msg);
  }
  return {};
}

Result<std::unique_ptr<Catalog>> Catalog::open(const std::filesystem::path& db_dir, Mode mode) {
  const auto file = file_in(db_dir);
  if (mode == Mode::ReadOnly) {
    if (!std::filesystem::exists(file))
      return make_error("no imgsearch database at " + db_dir.string() + " (create one with `imgsearch index DIR --db " +
                        db_dir.string() + "`)");
  } else {
    std::error_code ec;
    std::filesystem::create_directories(db_dir, ec);
    if (ec) return make_error("cannot create database directory " + db_dir.string() + ": " + ec.message());
  }
  sqlite3* db = nullptr;
  const int flags = mode == Mode::ReadOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(file.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return make_error("cannot open catalog " + file.string() + ": " + msg);
  }
  std::unique_ptr<Catalog> c(new Catalog(db));
  sqlite3_busy_timeout(db, 10000);  // wait for a concurrent writer's commit rather than fail
  if (mode == Mode::ReadWrite) {
    // WAL: readers keep reading the last commit while a writer works; synchronous=NORMAL
    // in WAL mode is durable across process crashes (kill -9), which is what we promise.
    // SQLite reads the file lazily: a foreign or damaged file fails here, so name it.
    if (auto s = c->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"); !s)
      return make_error("cannot open " + file.string() + " (" + s.error() + ")");
    if (auto s = c->exec(kSchema); !s) return make_error("cannot open " + file.string() + " (" + s.error() + ")");
    auto v = c->get_meta("schema_version");
    if (!v) {
      if (auto s = c->set_meta("schema_version", std::to_string(kSchemaVersion)); !s) return make_error(s.error());
      if (auto s = c->set_meta("change_seq", std::to_string(initial_change_seq())); !s) return make_error(s.error());
    }
  }
  {
    Stmt probe(db, "SELECT value FROM meta WHERE key='schema_version'");
    if (!probe.ok() || probe.step() != SQLITE_ROW)
      return make_error(file.string() + " is not an imgsearch catalog (or is damaged)");
    if (probe.bytes(0) != std::to_string(kSchemaVersion))
      return make_error(file.string() + ": catalog schema version " + probe.bytes(0) +
                        " is not supported by this build");
  }
  return c;
}

std::optional<std::string> Catalog::get_meta(const std::string& key) {
  Stmt s(db_, "SELECT value FROM meta WHERE key=?");
  if (!s.ok()) return std::nullopt;
  s.bind_text(1, key);
  if (s.step() != SQLITE_ROW) return std::nullopt;
  return s.bytes(0);
}

Status Catalog::set_meta(const std::string& key, const std::string& value) {
  Stmt s(db_, "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value");
  if (!s.ok()) return make_error(std::string("catalog: ") + sqlite3_errmsg(db_));
  s.bind_text(1, key).bind_text(2, value);
  if (s.step() != SQLITE_DONE) return make_error(std::string("catalog: ") + sqlite3_errmsg(db_));
  return {};
}

int64_t Catalog::count() {
  Stmt s(db_, "SELECT COUNT(*) FROM images");
  return s.ok() && s.step() == SQLITE_ROW ? s.i64(0) : 0;
}

int64_t Catalog::change_seq() {
  auto v = get_meta("change_seq");
  return v ? std::stoll(*v) : 0;
}

std::optional<ImageRecord> Catalog::find_by_key(const std::string& key) {
  Stmt s(db_, (std::string(kSelectImage) + "WHERE key=?").c_str());
  s.bind_blob(1, key.data(), key.size());
  if (s.step() != SQLITE_ROW) return std::nullopt;
  return read_record(s);
}

std::optional<ImageRecord> Catalog::find_by_id(int64_t id) {
  Stmt s(db_, (std::string(kSelectImage) + "WHERE id=?").c_str());
  s.bind(1, id);
  if (s.step() != SQLITE_ROW) return std::nullopt;
  return read_record(s);
}

std::optional<ImageRecord> Catalog::find_by_hash(const std::string& content_hash) {
  Stmt s(db_, (std::string(kSelectImage) + "WHERE content_hash=? LIMIT 1").c_str());
  s.bind_text(1, content_hash);
  if (s.step() != SQLITE_ROW) return std::nullopt;
  return read_record(s);
}

std::vector<ImageRecord> Catalog::list_images() {
  std::vector<ImageRecord> out;
  Stmt s(db_, (std::string(kSelectImage) + "ORDER BY id").c_str());
  while (s.step() == SQLITE_ROW) out.push_back(read_record(s));
  return out;
}

std::vector<ImageRecord> Catalog::list_under(const std::string& dir_key) {
  std::vector<ImageRecord> out;
  std::string prefix = dir_key;
  if (prefix.empty() || prefix.back() != '/') prefix += '/';
  // Blob range scan [prefix, prefix + 0xFF...) selects keys that start with prefix.
  std::string upper = prefix;
  upper.back() = char('/' + 1);
  Stmt s(db_, (std::string(kSelectImage) + "WHERE key >= ? AND key < ? ORDER BY id").c_str());
  s.bind_blob(1, prefix.data(), prefix.size()).bind_blob(2, upper.data(), upper.size());
  while (s.step() == SQLITE_ROW) out.push_back(read_record(s));
  return out;
}

Result<std::vector<int64_t>> Catalog::commit(std::span<const NewImage> adds, std::span<const int64_t> remove_ids) {
  if (auto s = exec("BEGIN IMMEDIATE"); !s) return make_error(s.error());
  auto fail = [&](const std::string& what) -> Result<std::vector<int64_t>> {
    std::string msg = "catalog: " + what + ": " + sqlite3_errmsg(db_);
    (void)exec("ROLLBACK");
    return make_error(msg);
  };
  std::vector<int64_t> ids;
  {
    Stmt del(db_, "DELETE FROM images WHERE id=?");
    Stmt del_vec(db_, "DELETE FROM vectors WHERE id=?");
    for (int64_t id : remove_ids) {
      del_vec.bind(1, id);
      if (del_vec.step() != SQLITE_DONE) return fail("delete vector");
      del_vec.reset();
      del.bind(1, id);
      if (del.step() != SQLITE_DONE) return fail("delete image");
      del.reset();
    }
    Stmt up(db_,
            "INSERT INTO images(key, path, size, mtime_ns, width, height, content_hash, added_at) "
            "VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET path=excluded.path, size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, width=excluded.width, height=excluded.height, "
            "content_hash=excluded.content_hash, added_at=excluded.added_at RETURNING id");
    Stmt vec(db_, "INSERT OR REPLACE INTO vectors(id, vec) VALUES(?, ?)");
    if (!up.ok() || !vec.ok()) return fail("prepare");
    const int64_t now = int64_t(std::time(nullptr));
    for (const auto& a : adds) {
      const auto& r = a.record;
      up.bind_blob(1, r.key.data(), r.key.size()).bind_blob(2, r.path.data(), r.path.size());
      up.bind(3, r.size).bind(4, r.mtime_ns).bind(5, r.width).bind(6, r.height).bind_text(7, r.content_hash);
      up.bind(8, r.added_at ? r.added_at : now);
      if (up.step() != SQLITE_ROW) return fail("insert image");
      const int64_t id = up.i64(0);
      if (up.step() != SQLITE_DONE) return fail("insert image");
      up.reset();
      vec.bind(1, id).bind_blob(2, a.vector.data(), a.vector.size() * sizeof(float));
      if (vec.step() != SQLITE_DONE) return fail("insert vector");
      vec.reset();
      ids.push_back(id);
    }
    Stmt seq(db_, "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='change_seq'");
    if (seq.step() != SQLITE_DONE) return fail("bump change_seq");
  }
  if (auto s = exec("COMMIT"); !s) {
    (void)exec("ROLLBACK");
    return make_error(s.error());
  }
  return ids;
}

Status Catalog::rename(int64_t id, const std::string& new_path, const std::string& new_key, int64_t mtime_ns) {
  Stmt s(db_, "UPDATE images SET path=?, key=?, mtime_ns=? WHERE id=?");
  s.bind_blob(1, new_path.data(), new_path.size()).bind_blob(2, new_key.data(), new_key.size());
  s.bind(3, mtime_ns).bind(4, id);
  if (s.step() != SQLITE_DONE) return make_error(std::string("catalog: rename: ") + sqlite3_errmsg(db_));
  return exec("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='change_seq'");
}

Result<int64_t> Catalog::for_each_vector(const std::function<void(int64_t, std::span<const float>)>& fn) {
  if (auto s = exec("BEGIN"); !s) return make_error(s.error());
  int64_t seq = 0;
  {
    Stmt q(db_, "SELECT value FROM meta WHERE key='change_seq'");
    if (q.step() == SQLITE_ROW) seq = std::stoll(q.bytes(0));
    Stmt s(db_, "SELECT id, vec FROM vectors ORDER BY id");
    std::vector<float> buf;
    while (s.step() == SQLITE_ROW) {
      const int n = sqlite3_column_bytes(s.raw(), 1);
      buf.resize(size_t(n) / sizeof(float));
      std::memcpy(buf.data(), sqlite3_column_blob(s.raw(), 1), buf.size() * sizeof(float));
      fn(s.i64(0), buf);
    }
  }
  (void)exec("COMMIT");
  return seq;
}

Result<std::vector<float>> Catalog::vector_of(int64_t id) {
  Stmt s(db_, "SELECT vec FROM vectors WHERE id=?");
  s.bind(1, id);
  if (s.step() != SQLITE_ROW) return make_error("no vector for image id " + std::to_string(id));
  const int n = sqlite3_column_bytes(s.raw(), 0);
  std::vector<float> v(size_t(n) / sizeof(float));
  std::memcpy(v.data(), sqlite3_column_blob(s.raw(), 0), v.size() * sizeof(float));
  return v;
}

Status Catalog::read_vectors(std::span<const int64_t> ids, int dim, float* out, std::vector<uint8_t>& found) {
  found.assign(ids.size(), 0);
  if (ids.empty()) return {};
  std::fill_n(out, ids.size() * size_t(dim), 0.f);
  std::vector<size_t> order(ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a] < ids[b]; });
  if (auto s = exec("BEGIN"); !s) return s;
  {
    Stmt s(db_, "SELECT vec FROM vectors WHERE id=?");
    if (!s.ok()) {
      (void)exec("COMMIT");
      return make_error(std::string("catalog: ") + sqlite3_errmsg(db_));
    }
    const size_t want = size_t(dim) * sizeof(float);
    for (size_t i : order) {
      s.bind(1, ids[i]);
      if (s.step() == SQLITE_ROW && size_t(sqlite3_column_bytes(s.raw(), 0)) == want) {
        std::memcpy(out + i * size_t(dim), sqlite3_column_blob(s.raw(), 0), want);
        found[i] = 1;
      }
      s.reset();
    }
  }
  (void)exec("COMMIT");
  return {};
}

}  // namespace imgsearch::catalog
