#include "eval/feature_cache.h"

#include <sqlite3.h>

#include <cstring>
#include <unordered_map>

#include "catalog/sqlite_stmt.h"

namespace imgsearch::eval {

using catalog::Stmt;
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images(
  id INTEGER PRIMARY KEY,
  key BLOB NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  error TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS vectors(
  layer TEXT NOT NULL,
  pooling TEXT NOT NULL,
  image_id INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY(layer, pooling, image_id)) WITHOUT ROWID;
)sql";

// Bumped when the layout of this file changes; an older file is emptied.
constexpr const char* kFormat = "eval-cache-1";

}  // namespace

FeatureCache::~FeatureCache() {
  if (db_) sqlite3_close(db_);
}

Status FeatureCache::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return make_error(path_.string() + ": " + msg);
  }
  return {};
}

Result<std::unique_ptr<FeatureCache>> FeatureCache::open(const std::filesystem::path& file,
                                                         const std::string& fingerprint) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  std::unique_ptr<FeatureCache> c(new FeatureCache());
  c->path_ = file;
  if (sqlite3_open(file.c_str(), &c->db_) != SQLITE_OK)
    return make_error("cannot open eval cache " + file.string() + ": " + sqlite3_errmsg(c->db_));
  sqlite3_busy_timeout(c->db_, 120'000);
  // A cache: losing the last transaction in a crash costs a re-extraction, nothing more.
  if (auto s = c->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"); !s) return make_error(s.error());
  if (auto s = c->exec(kSchema); !s) return make_error(s.error());
  const std::string want = std::string(kFormat) + " " + fingerprint;
  Stmt get(c->db_, "SELECT value FROM meta WHERE key = 'model'");
  const bool same = get.ok() && get.step() == SQLITE_ROW && get.bytes(0) == want;
  if (!same) {
    if (auto s = c->exec("BEGIN IMMEDIATE; DELETE FROM vectors; DELETE FROM images;"); !s) return make_error(s.error());
    Stmt put(c->db_, "INSERT OR REPLACE INTO meta(key, value) VALUES('model', ?)");
    put.bind_text(1, want);
    if (put.step() != SQLITE_DONE) return make_error(file.string() + ": " + sqlite3_errmsg(c->db_));
    if (auto s = c->exec("COMMIT"); !s) return make_error(s.error());
  }
  return c;
}

Result<std::vector<CachedImage>> FeatureCache::sync(const std::vector<FileState>& files) {
  if (auto s = exec("BEGIN IMMEDIATE"); !s) return make_error(s.error());
  struct Row {
    int64_t id, size, mtime;
    std::string error;
  };
  std::unordered_map<std::string, Row> rows;
  {
    Stmt all(db_, "SELECT id, key, size, mtime_ns, error FROM images");
    while (all.step() == SQLITE_ROW) rows[all.bytes(1)] = {all.i64(0), all.i64(2), all.i64(3), all.bytes(4)};
  }
  Stmt ins(db_, "INSERT INTO images(key, size, mtime_ns) VALUES(?, ?, ?)");
  Stmt upd(db_, "UPDATE images SET size = ?, mtime_ns = ?, error = '' WHERE id = ?");
  Stmt drop(db_, "DELETE FROM vectors WHERE image_id = ?");
  auto fail = [&] {
    const std::string msg = path_.string() + ": " + sqlite3_errmsg(db_);
    (void)exec("ROLLBACK");
    return make_error(msg);
  };
  std::vector<CachedImage> out(files.size());
  std::unordered_map<int64_t, size_t> index_of;
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    auto it = rows.find(f.key);
    if (it == rows.end()) {
      ins.bind_blob(1, f.key.data(), f.key.size()).bind(2, f.size).bind(3, f.mtime_ns);
      if (ins.step() != SQLITE_DONE) return fail();
      ins.reset();
      out[i].id = sqlite3_last_insert_rowid(db_);
    } else if (it->second.size != f.size || it->second.mtime != f.mtime_ns) {
      out[i].id = it->second.id;
      upd.bind(1, f.size).bind(2, f.mtime_ns).bind(3, out[i].id);
      drop.bind(1, out[i].id);
      if (upd.step() != SQLITE_DONE || drop.step() != SQLITE_DONE) return fail();
      upd.reset();
      drop.reset();
    } else {
      out[i].id = it->second.id;
      out[i].error = it->second.error;
    }
    index_of[out[i].id] = i;
  }
  Stmt have(db_, "SELECT layer, pooling, image_id FROM vectors");
  while (have.step() == SQLITE_ROW)
    if (auto it = index_of.find(have.i64(2)); it != index_of.end())
      out[it->second].have.insert({have.bytes(0), have.bytes(1)});
  if (auto s = exec("COMMIT"); !s) return make_error(s.error());
  return out;
}

Status FeatureCache::put(std::span<const VectorRow> rows, std::span<const std::pair<int64_t, std::string>> errors) {
  if (auto s = exec("BEGIN IMMEDIATE"); !s) return s;
  Stmt ins(db_, "INSERT OR REPLACE INTO vectors(layer, pooling, image_id, data) VALUES(?, ?, ?, ?)");
  for (const auto& r : rows) {
    ins.bind_text(1, r.layer).bind_text(2, r.pooling).bind(3, r.image_id);
    ins.bind_blob(4, r.data.data(), r.data.size_bytes());
    if (ins.step() != SQLITE_DONE) {
      const std::string msg = sqlite3_errmsg(db_);
      (void)exec("ROLLBACK");
      return make_error(path_.string() + ": " + msg);
    }
    ins.reset();
  }
  Stmt err(db_, "UPDATE images SET error = ? WHERE id = ?");
  for (const auto& [id, reason] : errors) {
    err.bind_text(1, reason).bind(2, id);
    if (err.step() != SQLITE_DONE) {
      const std::string msg = sqlite3_errmsg(db_);
      (void)exec("ROLLBACK");
      return make_error(path_.string() + ": " + msg);
    }
    err.reset();
  }
  return exec("COMMIT");
}

Result<std::vector<float>> FeatureCache::load(const std::vector<int64_t>& ids, const std::string& layer,
                                              const std::string& pooling, size_t dim) {
  std::unordered_map<int64_t, size_t> row_of;
  for (size_t i = 0; i < ids.size(); ++i) row_of[ids[i]] = i;
  std::vector<float> x(ids.size() * dim);
  std::vector<bool> seen(ids.size(), false);
  Stmt q(db_, "SELECT image_id, data FROM vectors WHERE layer = ? AND pooling = ?");
  q.bind_text(1, layer).bind_text(2, pooling);
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    auto it = row_of.find(q.i64(0));
    if (it == row_of.end()) continue;
    const auto b = q.blob(1);
    if (b.size() != dim * sizeof(float))
      return make_error(path_.string() + ": cached " + layer + "/" + pooling + " vector has the wrong size");
    std::memcpy(x.data() + it->second * dim, b.data(), b.size());
    seen[it->second] = true;
  }
  if (rc != SQLITE_DONE) return make_error(path_.string() + ": " + sqlite3_errmsg(db_));
  for (size_t i = 0; i < ids.size(); ++i)
    if (!seen[i]) return make_error(path_.string() + ": no cached " + layer + "/" + pooling + " vector for an image");
  return x;
}

}  // namespace imgsearch::eval
