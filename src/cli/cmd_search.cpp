// imgsearch search IMAGE --db PATH: the k most similar indexed images.
#include <cstdio>

#include "cli/commands.h"
#include "common/file_io.h"
#include "ingest/ingest.h"
#include "search/search.h"

namespace imgsearch::cli {
namespace {

struct SearchArgs {
  std::string image, db;
  int k = 10;
  int64_t id = -1;
  bool json = false;
  int threads = 0;
};

int run_search(const SearchArgs& a) {
  if (a.image.empty() && a.id < 0) return print_error("give a query IMAGE or --id"), 2;
  embed::EngineOptions eo;
  eo.threads = a.threads;
  auto s = search::Searcher::open(a.db, eo);
  if (!s) return print_error(s.error()), 1;
  search::Query q;
  q.k = a.k;
  Result<std::vector<search::Hit>> hits = std::vector<search::Hit>{};
  std::string query_label;
  if (a.id >= 0) {
    hits = (*s)->by_id(a.id, q);
    query_label = "id:" + std::to_string(a.id);
  } else {
    auto bytes = read_file_bytes(a.image);
    if (!bytes) return print_error(printable_path(a.image) + ": " + bytes.error()), 1;
    hits = (*s)->by_image(*bytes, q);
    query_label = a.image;
    if (!hits) return print_error(printable_path(a.image) + ": " + hits.error()), 1;
  }
  if (!hits) return print_error(hits.error()), 1;
  if (a.json) {
    nlohmann::json results = nlohmann::json::array();
    for (const auto& h : *hits)
      results.push_back({{"rank", h.rank}, {"id", h.id}, {"path", json_safe(h.path)}, {"score", h.score}});
    std::printf("%s\n", dump_json({{"query", json_safe(query_label)}, {"results", results}}).c_str());
    return 0;
  }
  for (const auto& h : *hits) std::printf("%3d  %.4f  %s\n", h.rank, h.score, printable_path(h.path).c_str());
  return 0;
}

}  // namespace

void register_search(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<SearchArgs>();
  auto* cmd = app.add_subcommand("search", "Find the indexed images most similar to a query image");
  cmd->add_option("image", a->image, "Query image file");
  cmd->add_option("--db", a->db, "Database directory made by `imgsearch index`")->required();
  cmd->add_option("-k", a->k, "Number of results")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--id", a->id, "Query with an indexed image's id instead of a file");
  cmd->add_flag("--json", a->json, "Print results as JSON");
  cmd->add_option("--threads", a->threads, "Inference threads (0 = all cores)");
  cmd->callback([a, &exit_code] { exit_code = run_search(*a); });
}

}  // namespace imgsearch::cli
