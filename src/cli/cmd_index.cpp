// imgsearch index DIR --db PATH: walk, decode, embed, store.
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "common/file_io.h"
#include "database/database.h"
#include "ingest/ingest.h"

namespace imgsearch::cli {
namespace {

struct IndexArgs {
  RepresentationArgs rep;
  std::string dir, db, index_spec = "Flat";
  std::string report;
  int threads = 0, batch = 16;
  int64_t max_pixels = 200'000'000;
  bool follow_links = false, include_hidden = false, quiet = false, json = false;
  std::vector<std::string> include, exclude;
};

int run_index(const IndexArgs& a) {
  auto requested = settings_from(a.rep);
  if (!requested) return print_error(requested.error()), 2;
  embed::EngineOptions eo;
  eo.threads = a.threads;
  auto embedder = embed::Embedder::open(requested->representation, eo);
  if (!embedder) return print_error(embedder.error()), 1;
  database::Settings settings = *requested;
  settings.representation = (*embedder)->representation();  // default layer filled in
  settings.index_spec = a.index_spec;
  settings.dim = int((*embedder)->dim());
  auto db = database::Database::open_for_writing(a.db, settings);
  if (!db) return print_error(db.error()), 1;

  ingest::Options o;
  o.threads = a.threads;
  o.batch_size = a.batch;
  o.max_pixels = a.max_pixels;
  o.follow_links = a.follow_links;
  o.include_hidden = a.include_hidden;
  o.include_globs = a.include;
  o.exclude_globs = a.exclude;
  o.progress = a.quiet || a.json ? Progress::Style::Quiet : Progress::Style::Auto;
  auto summary = ingest::index_folder(**db, **embedder, a.dir, o);
  if (!summary) return print_error(summary.error()), 1;
  const auto& s = *summary;

  if (!a.report.empty()) {
    std::ofstream rep_out(a.report);
    if (!rep_out) return print_error("cannot write report " + a.report), 1;
    for (const auto& k : s.skipped)
      rep_out << dump_json({{"path", json_safe(k.path)}, {"status", "skipped"}, {"reason", k.reason}}) << "\n";
  }
  const double rate = s.seconds > 0 ? s.indexed / s.seconds : 0;
  if (a.json) {
    nlohmann::json j = {{"indexed", s.indexed}, {"unchanged", s.unchanged}, {"moved", s.moved},
                        {"removed", s.removed}, {"skipped", s.skipped.size()}, {"seconds", s.seconds},
                        {"images_per_second", rate}, {"total_in_database", (*db)->catalog().count()}};
    nlohmann::json sk = nlohmann::json::array();
    for (const auto& k : s.skipped) sk.push_back({{"path", json_safe(k.path)}, {"reason", k.reason}});
    j["skipped_files"] = sk;
    std::printf("%s\n", dump_json(j).c_str());
    return 0;
  }
  if (!s.skipped.empty() && !a.quiet) {
    std::printf("skipped %zu file(s):\n", s.skipped.size());
    for (const auto& k : s.skipped) std::printf("  %s: %s\n", printable_path(k.path).c_str(), k.reason.c_str());
  }
  std::printf("indexed %lld, unchanged %lld, moved %lld, removed %lld, skipped %zu; %.1f s (%.1f images/s); "
              "%lld images in %s\n",
              (long long)s.indexed, (long long)s.unchanged, (long long)s.moved, (long long)s.removed, s.skipped.size(),
              s.seconds, rate, (long long)(*db)->catalog().count(), a.db.c_str());
  return 0;
}

}  // namespace

void register_index(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<IndexArgs>();
  auto* cmd = app.add_subcommand("index", "Index a folder of images (recursively) into a database; re-run to update it");
  cmd->add_option("dir", a->dir, "Folder to index")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--db", a->db, "Database directory (created if missing)")->required();
  add_representation_options(cmd, a->rep);
  cmd->add_option("--index", a->index_spec, "FAISS index factory string (Flat = exact)")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Worker threads (0 = all cores)")->capture_default_str();
  cmd->add_option("--batch-size", a->batch, "Images per inference batch and per commit")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--max-pixels", a->max_pixels, "Refuse images with more pixels (decompression bombs)")->capture_default_str();
  cmd->add_flag("--follow-links", a->follow_links, "Follow symbolic links (loops are detected)");
  cmd->add_flag("--include-hidden", a->include_hidden, "Also index hidden files and folders (names starting with '.')");
  cmd->add_option("--include", a->include, "Only files matching this glob (relative path or file name); repeatable");
  cmd->add_option("--exclude", a->exclude, "Skip files matching this glob; repeatable");
  cmd->add_option("--report", a->report, "Write one JSON line per skipped file, with the reason");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress, no list of skipped files");
  cmd->add_flag("--json", a->json, "Print the summary as JSON");
  cmd->callback([a, &exit_code] { exit_code = run_index(*a); });
}

}  // namespace imgsearch::cli
