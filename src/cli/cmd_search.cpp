// imgsearch search IMAGE --db PATH: the k most similar indexed images.
// Queries: an image file, an indexed image (--id N, --path P), or many (--batch FILE).
#include <cstdio>
#include <fstream>

#include "cli/commands.h"
#include "common/file_io.h"
#include "search/search.h"

namespace imgsearch::cli {
namespace {

struct SearchArgs {
  std::string image, db, path, batch;
  int k = 10;
  int64_t id = -1;
  bool json = false;
  int threads = 0;
  double min_score = -1e30;
  int rerank = -1, nprobe = 0, ef_search = 0;
};

// Files read per by_images call in --batch mode: bounds the encoded bytes held at once.
constexpr size_t kBatchChunk = 64;

nlohmann::json hits_json(const std::vector<search::Hit>& hits) {
  nlohmann::json results = nlohmann::json::array();
  for (const auto& h : hits)
    results.push_back({{"rank", h.rank}, {"id", h.id}, {"path", json_safe(h.path)}, {"score", h.score}});
  return results;
}

void print_hits(const std::vector<search::Hit>& hits) {
  for (const auto& h : hits) std::printf("%3d  %.4f  %s\n", h.rank, h.score, printable_path(h.path).c_str());
}

// One query's outcome in batch mode: a JSON line, or a "== QUERY" group of text lines.
void print_one(const std::string& label, const Result<std::vector<search::Hit>>& r, bool json) {
  if (json) {
    nlohmann::json j = {{"query", json_safe(label)}};
    if (r)
      j["results"] = hits_json(*r);
    else
      j["error"] = r.error();
    std::printf("%s\n", dump_json(j).c_str());
    return;
  }
  std::printf("== %s\n", printable_path(label).c_str());
  if (r)
    print_hits(*r);
  else
    std::printf("  error: %s\n", r.error().c_str());
}

int run_batch(search::Searcher& s, const SearchArgs& a, const search::Query& q) {
  std::ifstream in(a.batch);
  if (!in) return print_error(printable_path(a.batch) + ": cannot read the batch file"), 1;
  std::vector<std::string> paths;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;  // blank lines and comments
    paths.push_back(line);
  }
  int failures = 0;
  for (size_t start = 0; start < paths.size(); start += kBatchChunk) {
    const size_t end = std::min(paths.size(), start + kBatchChunk);
    std::vector<Result<std::vector<uint8_t>>> bytes;
    std::vector<std::span<const uint8_t>> readable;
    std::vector<size_t> at;
    for (size_t i = start; i < end; ++i) {
      bytes.push_back(read_file_bytes(paths[i]));
      if (bytes.back()) {
        readable.emplace_back(*bytes.back());
        at.push_back(i - start);
      }
    }
    auto results = s.by_images(readable, q);
    size_t next = 0;
    for (size_t i = start; i < end; ++i) {
      const auto& b = bytes[i - start];
      if (!b) {
        ++failures;
        print_one(paths[i], Result<std::vector<search::Hit>>(make_error(b.error())), a.json);
        continue;
      }
      const auto& r = results[next++];
      failures += r ? 0 : 1;
      print_one(paths[i], r, a.json);
    }
  }
  if (failures) print_error(std::to_string(failures) + " of " + std::to_string(paths.size()) + " queries failed");
  return failures ? 1 : 0;
}

int run_search(const SearchArgs& a) {
  const int sources = int(!a.image.empty()) + int(a.id >= 0) + int(!a.path.empty()) + int(!a.batch.empty());
  if (sources == 0) return print_error("give a query IMAGE, --id, --path or --batch"), 2;
  if (sources > 1) return print_error("give only one of IMAGE, --id, --path, --batch"), 2;
  embed::EngineOptions eo;
  eo.threads = a.threads;
  auto s = search::Searcher::open(a.db, eo);
  if (!s) return print_error(s.error()), 1;
  search::Query q;
  q.k = a.k;
  q.min_score = float(a.min_score);
  q.rerank = a.rerank;
  q.knobs.nprobe = a.nprobe;
  q.knobs.ef_search = a.ef_search;
  if (!a.batch.empty()) return run_batch(**s, a, q);

  Result<std::vector<search::Hit>> hits = std::vector<search::Hit>{};
  std::string query_label;
  if (a.id >= 0) {
    hits = (*s)->by_id(a.id, q);
    query_label = "id:" + std::to_string(a.id);
  } else if (!a.path.empty()) {
    hits = (*s)->by_path(a.path, q);
    query_label = a.path;
  } else {
    auto bytes = read_file_bytes(a.image);
    if (!bytes) return print_error(printable_path(a.image) + ": " + bytes.error()), 1;
    hits = (*s)->by_image(*bytes, q);
    query_label = a.image;
    if (!hits) return print_error(printable_path(a.image) + ": " + hits.error()), 1;
  }
  if (!hits) return print_error(hits.error()), 1;
  if (a.json) {
    std::printf("%s\n", dump_json({{"query", json_safe(query_label)}, {"results", hits_json(*hits)}}).c_str());
    return 0;
  }
  print_hits(*hits);
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
  cmd->add_option("--path", a->path, "Query with an indexed image, named by its path (no decoding)");
  cmd->add_option("--batch", a->batch,
                  "File with one query image path per line; prints one JSON line per query with --json, "
                  "else a '== PATH' group per query");
  cmd->add_option("--min-score", a->min_score, "Drop results scoring below this (cosine: -1..1)");
  cmd->add_option("--rerank", a->rerank,
                  "Re-rank this many approximate candidates with exact vectors (0 = off; default: on for "
                  "compressed indexes, at the depth tuned when the index was built)");
  cmd->add_option("--nprobe", a->nprobe, "IVF indexes: lists to visit (default: tuned at build for recall@10 >= 0.95)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--ef-search", a->ef_search,
                  "HNSW indexes: candidate list size (default: tuned at build for recall@10 >= 0.95)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_flag("--json", a->json, "Print results as JSON");
  cmd->add_option("--threads", a->threads, "Inference threads (0 = all cores)");
  cmd->callback([a, &exit_code] { exit_code = run_search(*a); });
}

}  // namespace imgsearch::cli
