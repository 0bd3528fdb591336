// imgsearch models [list] | models add NAME model.onnx ...: installed models, their
// layers, and bringing your own ONNX model.
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "cli/commands.h"
#include "embed/model.h"
#include "embed/model_import.h"

namespace imgsearch::cli {
namespace {

std::string shape_of(const embed::LayerSpec& l) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%5d x %3d x %3d", l.channels, l.height, l.width);
  return buf;
}

nlohmann::json layer_json(const embed::LayerSpec& l) {
  return {{"name", l.name},
          {"channels", l.channels},
          {"height", l.height},
          {"width", l.width},
          {"layout", embed::layout_name(l.layout)}};
}

int run_list(bool json) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& name : embed::installed_models()) {
    auto spec = embed::find_model(name);
    if (!spec) {
      print_error(spec.error());
      continue;
    }
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : spec->layers) layers.push_back(layer_json(l));
    out.push_back({{"name", name},
                   {"input_size", spec->input_size},
                   {"layout", embed::layout_name(spec->layout)},
                   {"preprocessing", embed::preprocessing_signature(*spec)},
                   {"default_layer", spec->default_layer},
                   {"classifier", !spec->logits_output.empty()},
                   {"layers", layers},
                   {"dir", spec->dir.string()}});
    if (!json) {
      std::printf("%s  (input %dx%d %s, default layer %s)\n", name.c_str(), spec->input_size, spec->input_size,
                  embed::layout_name(spec->layout), spec->default_layer.c_str());
      int width = 10;
      for (const auto& l : spec->layers) width = std::max(width, int(l.name.size()));
      for (const auto& l : spec->layers)
        std::printf("    %-*s %s%s\n", width, l.name.c_str(), shape_of(l).c_str(),
                    l.name == spec->default_layer ? "  (default)" : "");
    }
  }
  if (json) std::printf("%s\n", dump_json(out).c_str());
  if (out.empty() && !json)
    std::printf("no models installed in %s (run scripts/setup.sh)\n", embed::models_dir().c_str());
  return 0;
}

struct AddArgs {
  std::string name, onnx, labels, layout, default_layer;
  int input_size = 0, resize = 0;
  std::vector<float> mean, std;
  std::vector<std::string> layers;
  bool force = false, dry_run = false, json = false;
};

int run_add(const AddArgs& a) {
  embed::ImportOptions o;
  o.name = a.name;
  o.onnx_file = a.onnx;
  o.input_size = a.input_size;
  o.resize_short_side = a.resize;
  if (a.mean.size() != 3 || a.std.size() != 3)
    return print_error("--mean and --std take three values (R,G,B), e.g. --mean 123.675,116.28,103.53"), 2;
  std::copy(a.mean.begin(), a.mean.end(), o.mean.begin());
  std::copy(a.std.begin(), a.std.end(), o.std.begin());
  if (a.layout == "NCHW") o.layout = embed::Layout::NCHW;
  if (a.layout == "NHWC") o.layout = embed::Layout::NHWC;
  if (!a.layout.empty() && !o.layout) return print_error("--layout must be NCHW or NHWC"), 2;
  o.labels = a.labels;
  o.layers = a.layers;
  o.default_layer = a.default_layer;
  o.force = a.force;
  o.dry_run = a.dry_run;
  auto r = embed::import_model(o);
  if (!r) return print_error(r.error()), 1;
  const auto& s = r->spec;
  if (a.json) {
    nlohmann::json cands = nlohmann::json::array();
    for (const auto& c : r->candidates) {
      auto j = layer_json(c.layer);
      j["op"] = c.op_type;
      j["exposed"] = c.exposed;
      cands.push_back(j);
    }
    nlohmann::json ops = nlohmann::json::object();
    for (const auto& [op, n] : r->op_counts) ops[op] = n;
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : s.layers) layers.push_back(layer_json(l));
    nlohmann::json j = {{"name", s.name},
                        {"dir", s.dir.string()},
                        {"installed", !a.dry_run},
                        {"input", s.input_name},
                        {"input_size", s.input_size},
                        {"layout", embed::layout_name(s.layout)},
                        {"preprocessing", embed::preprocessing_signature(s)},
                        {"operators", ops},
                        {"default_layer", s.default_layer},
                        {"logits", s.logits_output},
                        {"layers", layers},
                        {"candidates", cands},
                        {"notes", r->notes}};
    std::printf("%s\n", dump_json(j).c_str());
    return 0;
  }
  std::printf("%s model '%s'%s%s\n", a.dry_run ? "would add" : "added", s.name.c_str(), a.dry_run ? "" : " in ",
              a.dry_run ? "" : s.dir.c_str());
  std::printf("  input      '%s', %s, %dx%d (shorter side resized to %d, centre crop), mean %g,%g,%g std %g,%g,%g\n",
              s.input_name.c_str(), embed::layout_name(s.layout), s.input_size, s.input_size, s.resize_short_side,
              s.mean[0], s.mean[1], s.mean[2], s.std[0], s.std[1], s.std[2]);
  std::ostringstream ops;
  for (size_t i = 0; i < r->op_counts.size(); ++i)
    ops << (i ? ", " : "") << r->op_counts[i].first << " x" << r->op_counts[i].second;
  std::ostringstream opsets;
  for (const auto& [d, v] : r->opsets) opsets << " " << (d.empty() ? "ai.onnx" : d) << " v" << v;
  std::printf("  operators  %s (opsets:%s)\n", ops.str().c_str(), opsets.str().c_str());
  if (!s.logits_output.empty()) std::printf("  classifier output '%s'\n", s.logits_output.c_str());
  size_t exposed = 0;
  for (const auto& c : r->candidates) exposed += c.exposed;
  std::printf(
      "  layers     %zu of %zu candidates%s:\n", exposed, r->candidates.size(),
      exposed < r->candidates.size() ? " (--layers all or --layers NAME,... to choose others; * = exposed)" : "");
  const bool mark = exposed < r->candidates.size();
  for (const auto& c : r->candidates) {
    if (!c.exposed && !a.dry_run) continue;
    std::printf("    %s%-40s %s  %-5s %s%s\n", mark ? (c.exposed ? "* " : "  ") : "", c.layer.name.c_str(),
                shape_of(c.layer).c_str(), c.rank == 4 ? embed::layout_name(c.layer.layout) : "", c.op_type.c_str(),
                c.layer.name == s.default_layer ? "  (default)" : "");
  }
  for (const auto& n : r->notes) std::printf("  note: %s\n", n.c_str());
  return 0;
}

}  // namespace

void register_models(CLI::App& app, int& exit_code) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("models", "Installed models and their layers; add your own ONNX model");
  cmd->require_subcommand(0, 1);
  cmd->add_flag("--json", *json, "Print JSON");

  auto* list = cmd->add_subcommand("list", "Installed models, their layers (names, output shapes C x H x W)");
  auto list_json = std::make_shared<bool>(false);
  list->add_flag("--json", *list_json, "Print JSON");
  list->callback([list_json, &exit_code] { exit_code = run_list(*list_json); });

  auto a = std::make_shared<AddArgs>();
  auto* add = cmd->add_subcommand(
      "add",
      "Install an ONNX model: validates the graph (one 4-D float image input; operators ONNX Runtime can run), "
      "lists its layers, exposes them as outputs and writes models/NAME/{model.onnx,model.json}");
  add->add_option("name", a->name, "Name to install it under (letters, digits, . _ -)")->required();
  add->add_option("model", a->onnx, "The .onnx file")->required()->check(CLI::ExistingFile);
  add->add_option("--input-size", a->input_size, "Side of the square input in pixels (default: the graph's)");
  add->add_option("--resize", a->resize, "Shorter side before the centre crop (default: input size / 0.875)");
  add->add_option("--mean", a->mean, "Per-channel R,G,B mean in 0..255 units (ImageNet: 123.675,116.28,103.53)")
      ->required()
      ->delimiter(',');
  add->add_option("--std", a->std, "Per-channel R,G,B std in 0..255 units (ImageNet: 58.395,57.12,57.375)")
      ->required()
      ->delimiter(',');
  add->add_option("--layout", a->layout, "Input layout NCHW or NHWC (default: read from the input shape)");
  add->add_option("--labels", a->labels, "Class names, one per line, in output order (enables classify)")
      ->check(CLI::ExistingFile);
  add->add_option("--layers", a->layers,
                  "Layers to expose: 'all', or names from --dry-run (default: the last feature map at each "
                  "spatial size and every [N, C] output)")
      ->delimiter(',');
  add->add_option("--default-layer", a->default_layer, "Layer used when --layer is not given (default: the last map)");
  add->add_flag("--force", a->force, "Replace an installed model of the same name");
  add->add_flag("--dry-run", a->dry_run, "Check the model and list every candidate layer; install nothing");
  add->add_flag("--json", a->json, "Print JSON");
  add->callback([a, &exit_code] { exit_code = run_add(*a); });

  // `imgsearch models` alone lists, as it always did.
  cmd->callback([cmd, json, &exit_code] {
    if (cmd->get_subcommands().empty()) exit_code = run_list(*json);
  });
}

}  // namespace imgsearch::cli
