// server: `imgsearch serve` — the web app's HTTP server (cpp-httplib): a JSON API over one
// database plus the built web UI (web/dist).
//
// API (also in web/openapi.yaml and README.md):
//   GET  /api/health                   {"status": "ok", "images": N}
//   GET  /api/stats                    count, model, layer, pooling, metric, index, dim, classes, map state
//   GET  /api/search?id=N&k=K          the K nearest to indexed image N (N itself first)
//   GET  /api/search?path=P&k=K        same, P exactly an indexed path (as indexed, or absolute)
//   POST /api/search?k=K               multipart/form-data, field `image` (a raw image body works too)
//   GET  /api/neighbors/N?k=K          the K nearest to N, N left out
//   GET  /api/image/N, /api/thumb/N    the original / a JPEG thumbnail (by id only, never by path)
//   GET  /api/map                      [{id, x, y, class, path}]; 202 {"status": "computing"} until ready
// Errors are JSON {"error": "..."} with 400 (bad parameter or body), 404 (unknown id, path
// or route), 405 (wrong method), 413 (upload or image too large), 415 (not an image),
// 500 (the server's own failure). A request can never make the server open a file the
// catalog does not list.
//
// Threading: httplib serves each connection on a pool thread. Decoding and inference run
// unlocked (both are thread-safe); the database (one SQLite connection, the index) is used
// under one mutex, for the short index search and lookups.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "common/result.h"

namespace imgsearch::server {

// Where the built UI lives unless --web-dir says otherwise (${PROJECT_SOURCE_DIR}/web/dist).
std::filesystem::path default_web_dir();

struct Options {
  std::filesystem::path db_dir;
  std::string host = "127.0.0.1";  // loopback only unless asked
  int port = 8080;                 // 0 = any free port (see Server::port())
  std::filesystem::path web_dir = default_web_dir();
  uint64_t max_upload_bytes = uint64_t(32) << 20;  // request bodies above this: 413
  int64_t max_upload_pixels = 100'000'000;         // decoded images above this: 413
  int max_k = 1000;
  int default_k = 24;
  int thumb_size = 320;      // thumbnails' shorter side, px
  int threads = 0;           // inference threads (0 = all cores)
  bool log_requests = true;  // one line per request on stderr
  bool compute_map = true;   // start the map layout at startup (else on the first /api/map)
};

int serve(const Options& options);

class Server {
 public:
  // Opens the database read-only and the model it was indexed with.
  static Result<std::unique_ptr<Server>> open(const Options& options);
  ~Server();

  // Binds host:port; returns the port bound (the chosen one when port is 0).
  Result<int> bind();
  // Serves until stop(); call after bind().
  Status run();
  // Safe from any thread; run() returns soon after.
  void stop();

  int port() const;
  std::string url() const;  // http://host:port/
  // True while a map layout is being computed (it cannot be interrupted).
  bool map_busy() const;

 private:
  Server();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  friend int serve(const Options& options);
};

// `imgsearch serve`: open, bind, print the URL, serve until SIGINT/SIGTERM.
// Returns the process exit code (0, or 1 when the database or the port cannot be opened).
int serve(const Options& options);

}  // namespace imgsearch::server
