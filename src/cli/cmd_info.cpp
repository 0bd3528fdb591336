// imgsearch info --db PATH and imgsearch models: what a database and the installation hold.
#include <cstdio>
#include <ctime>

#include "cli/commands.h"
#include "database/database.h"
#include "embed/model.h"

namespace imgsearch::cli {
namespace {

uint64_t dir_bytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) total += e.file_size(ec);
  return total;
}

int run_info(const std::string& db_dir, bool json) {
  auto db = database::Database::open_for_reading(db_dir);
  if (!db) return print_error(db.error()), 1;
  const auto& s = (*db)->settings();
  auto& cat = (*db)->catalog();
  const int64_t n = cat.count();
  auto idx = (*db)->index();
  if (!idx) return print_error(idx.error()), 1;
  const uint64_t disk = dir_bytes(db_dir);
  nlohmann::json j = {{"database", db_dir},
                      {"images", n},
                      {"model", s.representation.model},
                      {"layer", s.representation.layer},
                      {"pooling", embed::pooling_name(s.representation.pooling)},
                      {"metric", index::metric_name(s.metric)},
                      {"dim", s.dim},
                      {"index", s.index_spec},
                      {"vectors_in_index", (*idx)->size()},
                      {"bytes_per_vector_stored", s.dim * 4},
                      {"disk_bytes", disk},
                      {"change_seq", cat.change_seq()}};
  if (json) {
    std::printf("%s\n", dump_json(j).c_str());
    return 0;
  }
  std::printf("database      %s\nimages        %lld\nmodel         %s\nlayer         %s\npooling       %s\n"
              "metric        %s\ndimension     %d\nindex         %s (%lld vectors)\ndisk          %.1f MB\n",
              db_dir.c_str(), (long long)n, s.representation.model.c_str(), s.representation.layer.c_str(),
              embed::pooling_name(s.representation.pooling).c_str(), index::metric_name(s.metric).c_str(), s.dim,
              s.index_spec.c_str(), (long long)(*idx)->size(), disk / 1e6);
  return 0;
}

int run_models(bool json) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& name : embed::installed_models()) {
    auto spec = embed::find_model(name);
    if (!spec) {
      print_error(spec.error());
      continue;
    }
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : spec->layers)
      layers.push_back({{"name", l.name}, {"channels", l.channels}, {"height", l.height}, {"width", l.width}});
    out.push_back({{"name", name}, {"input_size", spec->input_size}, {"default_layer", spec->default_layer},
                   {"layers", layers}, {"dir", spec->dir.string()}});
    if (!json) {
      std::printf("%s  (input %dx%d, default layer %s)\n", name.c_str(), spec->input_size, spec->input_size,
                  spec->default_layer.c_str());
      for (const auto& l : spec->layers)
        std::printf("    %-10s %5d x %3d x %3d\n", l.name.c_str(), l.channels, l.height, l.width);
    }
  }
  if (json) std::printf("%s\n", dump_json(out).c_str());
  if (out.empty() && !json)
    std::printf("no models installed in %s (run scripts/setup.sh)\n", embed::models_dir().c_str());
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

void register_models(CLI::App& app, int& exit_code) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("models", "List installed models and their layers");
  cmd->add_flag("--json", *json, "Print JSON");
  cmd->callback([json, &exit_code] { exit_code = run_models(*json); });
}

}  // namespace imgsearch::cli
