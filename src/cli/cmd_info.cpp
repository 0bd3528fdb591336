// imgsearch info --db PATH: what a database holds. (`models` lives in cmd_models.cpp.)
#include <cstdio>
#include <ctime>

#include "cli/commands.h"
#include "database/database.h"
#include "embed/model.h"
#include "index/policy.h"

namespace imgsearch::cli {
namespace {

uint64_t dir_bytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

std::string local_time(int64_t unix_seconds) {
  if (unix_seconds <= 0) return "";
  const std::time_t t = std::time_t(unix_seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %z", &tm);
  return buf;
}

int run_info(const std::string& db_dir, bool json) {
  auto db = database::Database::open_for_reading(db_dir);
  if (!db) return print_error(db.error()), 1;
  const auto& s = (*db)->settings();
  auto& cat = (*db)->catalog();
  const int64_t n = cat.count();
  auto idx = (*db)->index();
  if (!idx) return print_error(idx.error()), 1;
  const index::VectorIndex& ix = **idx;
  const auto stats = ix.stats();
  const auto& bi = ix.build_info();
  const uint64_t disk = dir_bytes(db_dir);
  std::error_code ec;
  const auto file_bytes = std::filesystem::file_size((*db)->index_path(), ec);
  const int64_t live = ix.size();
  // Memory per live vector: codes, ids, graph links, and the fixed parts (centroids,
  // transforms) spread over the collection.
  const double per_vector = live > 0 ? double(stats.memory_bytes) / double(live) : 0.0;
  const uint64_t budget = s.memory_budget ? s.memory_budget : index::kDefaultMemoryBudget;
  nlohmann::json params = nlohmann::json::object();
  for (const auto& [k, v] : stats.params) params[k] = v;
  nlohmann::json j = {{"database", db_dir},
                      {"images", n},
                      {"model", s.representation.model},
                      {"layer", s.representation.layer},
                      {"pooling", embed::pooling_name(s.representation.pooling)},
                      {"metric", index::metric_name(s.metric)},
                      {"dim", s.dim},
                      {"index", s.index_spec},
                      {"index_requested", s.index_spec},
                      {"index_active", ix.spec()},
                      {"index_fallback", bi.fallback},
                      {"index_params", params},
                      {"memory_budget_bytes", budget},
                      {"vectors_in_index", live},
                      {"tombstones", ix.tombstones()},
                      {"index_memory_bytes", stats.memory_bytes},
                      {"bytes_per_vector_index", per_vector},
                      {"code_bytes_per_vector", stats.code_bytes},
                      {"id_bytes_per_vector", stats.id_bytes},
                      {"bytes_per_vector_stored", s.dim * 4},
                      {"lossy", stats.lossy},
                      {"rerank_default", bi.rerank},
                      {"tuned_recall_at_10", bi.tuned_recall},
                      {"built_at", bi.built_at},
                      {"built_at_local", local_time(bi.built_at)},
                      {"build_seconds", bi.build_seconds},
                      {"built_with", bi.built_with},
                      {"trained_on", bi.trained_on},
                      {"index_file_bytes", ec ? 0 : uint64_t(file_bytes)},
                      {"disk_bytes", disk},
                      {"change_seq", cat.change_seq()}};
  if (json) {
    std::printf("%s\n", dump_json(j).c_str());
    return 0;
  }
  std::string param_text;
  for (const auto& [k, v] : stats.params) param_text += (param_text.empty() ? "" : ", ") + k + " " + v;
  std::printf(
      "database      %s\nimages        %lld\nmodel         %s\nlayer         %s\npooling       %s\n"
      "metric        %s\ndimension     %d\n",
      db_dir.c_str(), (long long)n, s.representation.model.c_str(), s.representation.layer.c_str(),
      embed::pooling_name(s.representation.pooling).c_str(), index::metric_name(s.metric).c_str(), s.dim);
  std::printf("index         %s -> %s (%lld vectors", s.index_spec.c_str(), ix.spec().c_str(), (long long)live);
  if (ix.tombstones()) std::printf(", %lld tombstones", (long long)ix.tombstones());
  std::printf(")\n");
  if (!bi.fallback.empty()) std::printf("              %s\n", bi.fallback.c_str());
  if (!param_text.empty()) std::printf("parameters    %s\n", param_text.c_str());
  if (index::is_auto(s.index_spec)) std::printf("memory budget %s\n", index::format_bytes(budget).c_str());
  std::printf("memory        %s in the index, %.1f bytes per vector (codes %lld + ids %lld; stored floats %d)%s\n",
              index::format_bytes(uint64_t(stats.memory_bytes)).c_str(), per_vector, (long long)stats.code_bytes,
              (long long)stats.id_bytes, s.dim * 4, stats.lossy ? ", lossy" : "");
  if (bi.tuned_recall >= 0)
    std::printf("recall@10     %.3f vs exact at the default knobs (measured at build)%s\n", bi.tuned_recall,
                bi.rerank ? (", re-ranking " + std::to_string(bi.rerank) + " candidates").c_str() : "");
  if (bi.built_at > 0)
    std::printf("built         %s in %.1f s, with %lld vectors%s\n", local_time(bi.built_at).c_str(), bi.build_seconds,
                (long long)bi.built_with,
                bi.trained_on ? (", trained on " + std::to_string(bi.trained_on)).c_str() : "");
  std::printf("disk          %.1f MB (index file %.1f MB)\n", disk / 1e6, ec ? 0.0 : double(file_bytes) / 1e6);
  return 0;
}

}  // namespace

void register_info(CLI::App& app, int& exit_code) {
  auto db = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("info", "Describe a database: model, layer, index, counts, size");
  cmd->add_option("--db", *db, "Database directory")->required();
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([db, json, &exit_code] { exit_code = run_info(*db, *json); });
}

}  // namespace imgsearch::cli
