// imgsearch index DIR --db PATH: walk, decode, embed, store.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include "cli/commands.h"
#include "common/file_io.h"
#include "common/json_path.h"
#include "database/database.h"
#include "index/policy.h"
#include "ingest/ingest.h"

namespace imgsearch::cli {
namespace {

struct IndexArgs {
  RepresentationArgs rep;
  std::string dir, db, index_spec, memory_budget;  // empty: keep the database's ("auto" when new)
  std::string report, progress_log;
  int threads = 0, batch = 16;
  int64_t max_pixels = 200'000'000;
  bool follow_links = false, include_hidden = false, quiet = false, json = false;
  std::vector<std::string> include, exclude;
};

// {"path": ..., ["path_bytes": ...,] "status": ..., "reason": ...}: one --report line.
nlohmann::json report_line(const std::string& path, const char* status, const std::string& reason) {
  nlohmann::json j = nlohmann::json::object();
  put_path(j, "path", path);
  j["status"] = status;
  j["reason"] = reason;
  return j;
}

int run_index(const IndexArgs& a) {
  auto requested = settings_from(a.rep);
  if (!requested) return print_error(requested.error()), 2;
  const ingest::ThreadSplit split = ingest::split_threads(a.threads);
  embed::EngineOptions eo;
  eo.threads = split.infer;
  auto embedder = embed::Embedder::open(requested->representation, eo);
  if (!embedder) return print_error(embedder.error()), 1;
  database::Settings settings = *requested;
  settings.representation = (*embedder)->representation();  // default layer filled in
  settings.preprocessing = embed::preprocessing_signature((*embedder)->model());
  settings.index_spec = a.index_spec;
  if (!a.memory_budget.empty()) {
    auto bytes = index::parse_byte_size(a.memory_budget);
    if (!bytes) return print_error("--memory-budget: " + bytes.error()), 2;
    settings.memory_budget = *bytes;
  }
  settings.dim = int((*embedder)->dim());
  // Open the report before the work: a bad path must fail now, not after hours of indexing.
  std::ofstream rep_out;
  if (!a.report.empty()) {
    rep_out.open(a.report, std::ios::trunc);
    if (!rep_out) return print_error("cannot write report " + a.report + ": " + std::strerror(errno)), 2;
  }
  auto db = database::Database::open_for_writing(a.db, settings);
  if (!db) return print_error(db.error()), 1;

  ingest::Options o;
  o.threads = split.decode;
  o.batch_size = a.batch;
  o.max_pixels = a.max_pixels;
  o.follow_links = a.follow_links;
  o.include_hidden = a.include_hidden;
  o.include_globs = a.include;
  o.exclude_globs = a.exclude;
  o.progress_log = a.progress_log;
  o.progress = a.quiet || a.json ? Progress::Style::Quiet : Progress::Style::Auto;
  // Building an approximate index over a large collection takes minutes: say so.
  if (!a.quiet && !a.json)
    (*db)->set_log([](const std::string& line) { std::fprintf(stderr, "index: %s\n", line.c_str()); });
  auto summary = ingest::index_folder(**db, **embedder, a.dir, o);
  if (!summary) return print_error(summary.error()), 1;
  const auto& s = *summary;

  if (!a.report.empty()) {
    for (const auto& k : s.skipped) rep_out << dump_json(report_line(k.path, "skipped", k.reason)) << "\n";
    for (const auto& n : s.notes) rep_out << dump_json(report_line(n.path, "note", n.text)) << "\n";
    if (!rep_out.flush()) return print_error("cannot write report " + a.report), 1;
  }
  std::map<std::string, int64_t> by_reason;
  for (const auto& k : s.skipped) ++by_reason[ingest::reason_category(k.reason)];
  const double rate = s.seconds > 0 ? double(s.indexed) / s.seconds : 0;
  if (a.json) {
    nlohmann::json j = {{"indexed", s.indexed},
                        {"reused", s.reused},
                        {"unchanged", s.unchanged},
                        {"touched", s.touched},
                        {"moved", s.moved},
                        {"removed", s.removed},
                        {"kept", s.kept},
                        {"skipped", s.skipped.size()},
                        {"hidden", s.hidden},
                        {"excluded", s.excluded},
                        {"seconds", s.seconds},
                        {"images_per_second", rate},
                        {"total_in_database", s.in_database},
                        {"skipped_by_reason", by_reason}};
    nlohmann::json sk = nlohmann::json::array(), notes = nlohmann::json::array();
    for (const auto& k : s.skipped) {
      nlohmann::json e = nlohmann::json::object();
      put_path(e, "path", k.path);
      e["reason"] = k.reason;
      sk.push_back(std::move(e));
    }
    for (const auto& n : s.notes) {
      nlohmann::json e = nlohmann::json::object();
      put_path(e, "path", n.path);
      e["note"] = n.text;
      notes.push_back(std::move(e));
    }
    j["skipped_files"] = std::move(sk);
    j["notes"] = std::move(notes);
    std::printf("%s\n", dump_json(j).c_str());
    return 0;
  }
  if (!a.quiet) {
    if (!s.skipped.empty()) {
      std::printf("skipped %zu file(s):\n", s.skipped.size());
      for (const auto& k : s.skipped) std::printf("  %s: %s\n", printable_path(k.path).c_str(), k.reason.c_str());
    }
    if (!s.notes.empty()) {
      std::printf("notes:\n");
      for (const auto& n : s.notes) std::printf("  %s: %s\n", printable_path(n.path).c_str(), n.text.c_str());
    }
  }
  // One line of counts by outcome (zero counts left out after the first), then the reasons.
  std::string line = "indexed " + std::to_string(s.indexed);
  for (auto [name, n] : {std::pair<const char*, int64_t>{"reused (same content)", s.reused},
                         {"unchanged", s.unchanged},
                         {"touched", s.touched},
                         {"moved", s.moved},
                         {"removed", s.removed},
                         {"kept (not walked, still there)", s.kept},
                         {"skipped", int64_t(s.skipped.size())},
                         {"hidden", s.hidden},
                         {"excluded", s.excluded}})
    if (n > 0 || std::string(name) == "unchanged" || std::string(name) == "skipped")
      line += ", " + std::string(name) + " " + std::to_string(n);
  std::printf("%s; %.1f s (%.1f images/s); %lld images in %s\n", line.c_str(), s.seconds, rate,
              (long long)s.in_database, printable_path(a.db).c_str());
  if (!by_reason.empty()) {
    std::string reasons;
    for (const auto& [why, n] : by_reason) reasons += (reasons.empty() ? "" : ", ") + why + " " + std::to_string(n);
    std::printf("skipped by reason: %s\n", reasons.c_str());
  }
  return 0;
}

}  // namespace

void register_index(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<IndexArgs>();
  auto* cmd =
      app.add_subcommand("index", "Index a folder of images (recursively) into a database; re-run to update it");
  cmd->add_option("dir", a->dir, "Folder to index")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--db", a->db, "Database directory (created if missing)")->required();
  add_representation_options(cmd, a->rep);
  cmd->add_option(
      "--index", a->index_spec,
      "auto (default for a new database: chosen by size and --memory-budget) or a FAISS factory string "
      "(Flat = exact, HNSW32, IVF1024,Flat, PCA256,IVF4096,PQ32, SQ8, ...); changing it rebuilds the index");
  cmd->add_option("--memory-budget", a->memory_budget,
                  "Memory the index may use with --index auto, e.g. 4GB, 512MB (default 8GB); kept by the database");
  cmd->add_option("--threads", a->threads, "Threads for decoding and inference (0 = all cores)")->capture_default_str();
  cmd->add_option("--batch-size", a->batch, "Images per inference batch and per commit")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--max-pixels", a->max_pixels, "Refuse images with more pixels (decompression bombs)")
      ->capture_default_str();
  cmd->add_flag("--follow-links", a->follow_links, "Follow symbolic links (loops are detected)");
  cmd->add_flag("--include-hidden", a->include_hidden, "Also index hidden files and folders (names starting with '.')");
  cmd->add_option("--include", a->include, "Only files matching this glob (relative path or file name); repeatable");
  cmd->add_option("--exclude", a->exclude, "Skip files and folders matching this glob; repeatable");
  cmd->add_option("--report", a->report,
                  "Write one JSON line per skipped file (and per note), with the reason: "
                  "{\"path\", [\"path_bytes\" (hex, when the name is not UTF-8)], \"status\", \"reason\"}");
  cmd->add_option("--progress-log", a->progress_log,
                  "Append a JSON line per committed batch to this file (counts; what it reports is never lost)");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress, no list of skipped files");
  cmd->add_flag("--json", a->json, "Print the summary as JSON");
  cmd->callback([a, &exit_code] { exit_code = run_index(*a); });
}

}  // namespace imgsearch::cli
