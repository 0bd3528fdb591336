// A prepared SQLite statement that finalises itself: the catalog and the eval feature
// cache both speak SQL through it.
#pragma once

#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace imgsearch::catalog {

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return s_ != nullptr; }
  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind_text(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // Bytes are copied: paths are raw bytes (not always UTF-8), so they go in as blobs.
  Stmt& bind_blob(int i, const void* p, size_t n) {
    sqlite3_bind_blob64(s_, i, p, n, SQLITE_TRANSIENT);
    return *this;
  }
  int step() { return sqlite3_step(s_); }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  int64_t i64(int c) { return sqlite3_column_int64(s_, c); }
  // Column c as raw bytes (text or blob).
  std::string bytes(int c) {
    const void* p = sqlite3_column_blob(s_, c);
    return p ? std::string(static_cast<const char*>(p), size_t(sqlite3_column_bytes(s_, c))) : std::string();
  }
  // Column c's bytes in place, valid until the next step() or reset().
  std::span<const uint8_t> blob(int c) {
    const void* p = sqlite3_column_blob(s_, c);
    return {static_cast<const uint8_t*>(p), p ? size_t(sqlite3_column_bytes(s_, c)) : 0};
  }
  sqlite3_stmt* raw() { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace imgsearch::catalog
