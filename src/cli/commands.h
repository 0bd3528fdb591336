// The `imgsearch` command line: one subcommand per file, registered in main.cpp.
// Each register_* adds its subcommand to the app and sets its callback; the callback
// stores its exit code in `exit_code` (0 ok, 1 the work failed, 2 bad usage).
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

namespace imgsearch::cli {

void register_index(CLI::App& app, int& exit_code);
void register_search(CLI::App& app, int& exit_code);
void register_classify(CLI::App& app, int& exit_code);
void register_info(CLI::App& app, int& exit_code);
void register_models(CLI::App& app, int& exit_code);
void register_serve(CLI::App& app, int& exit_code);
void register_map(CLI::App& app, int& exit_code);

// Prints "imgsearch: error: MESSAGE" on stderr.
void print_error(const std::string& message);
// JSON text for a path that may hold bytes that are not UTF-8: such bytes are replaced by
// U+FFFD; json_path_bytes() gives the exact bytes (hex) for round-tripping.
std::string json_safe(const std::string& raw);
std::string dump_json(const nlohmann::json& j);

}  // namespace imgsearch::cli

#include "database/database.h"

namespace imgsearch::cli {

// The options that choose what a vector means; shared by `index` and `eval`.
struct RepresentationArgs {
  std::string model = "efficientnet-lite0", layer, pool = "avg", metric = "cosine";
};
void add_representation_options(CLI::App* cmd, RepresentationArgs& a);
// Validated representation + metric; the error names the bad option.
Result<database::Settings> settings_from(const RepresentationArgs& a);

void register_eval(CLI::App& app, int& exit_code);

}  // namespace imgsearch::cli
