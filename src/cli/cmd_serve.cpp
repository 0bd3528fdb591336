// imgsearch serve --db PATH: the web app (see src/server/server.h). Parses flags only.
#include "cli/commands.h"
#include "server/server.h"

namespace imgsearch::cli {

void register_serve(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<server::Options>();
  auto db = std::make_shared<std::string>();
  auto web = std::make_shared<std::string>(server::default_web_dir().string());
  auto max_mb = std::make_shared<int>(int(o->max_upload_bytes >> 20));
  auto* cmd = app.add_subcommand("serve", "Serve the web app: live search, results, and a map of the collection");
  cmd->add_option("--db", *db, "Database directory made by `imgsearch index`")->required();
  cmd->add_option("--port", o->port, "TCP port (0 = any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--host", o->host, "Address to listen on; other than loopback exposes your photos to the network")
      ->capture_default_str();
  cmd->add_option("--web-dir", *web, "Folder of the built web UI")->capture_default_str();
  cmd->add_option("--max-upload-mb", *max_mb, "Largest accepted upload, MB")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--threads", o->threads, "Inference threads (0 = all cores)");
  cmd->add_flag(
      "--quiet", [o](int64_t) { o->log_requests = false; }, "Do not log requests");
  cmd->callback([o, db, web, max_mb, &exit_code] {
    o->db_dir = *db;
    o->web_dir = *web;
    o->max_upload_bytes = uint64_t(*max_mb) << 20;
    exit_code = server::serve(*o);
  });
}

}  // namespace imgsearch::cli
