// imgsearch eval DIR: retrieval quality of a representation on a labelled folder.
#include <cstdio>

#include "cli/commands.h"
#include "eval/folder_eval.h"

namespace imgsearch::cli {
namespace {

struct EvalArgs {
  RepresentationArgs rep;
  std::string dir, cache;
  std::vector<int> ks = {1, 5, 10};
  bool json = false, csv = false, quiet = false;
  int threads = 0;
};

int run_eval(const EvalArgs& a) {
  auto settings = settings_from(a.rep);
  if (!settings) return print_error(settings.error()), 2;
  eval::FolderEvalOptions o;
  o.cache_root = a.cache;
  o.ks = a.ks;
  o.threads = a.threads;
  o.progress = a.quiet || a.json || a.csv ? Progress::Style::Quiet : Progress::Style::Auto;
  auto r = eval::evaluate_folder(a.dir, *settings, o);
  if (!r) return print_error(r.error()), 1;
  const auto& s = r->settings;
  const auto& ret = r->retrieval;
  const std::string model = s.representation.model, layer = s.representation.layer;
  const std::string pool = embed::pooling_name(s.representation.pooling), metric = index::metric_name(s.metric);
  if (a.json) {
    nlohmann::json j = {{"dir", a.dir}, {"model", model}, {"layer", layer}, {"pooling", pool}, {"metric", metric},
                        {"images", r->images}, {"skipped", r->skipped}, {"classes", ret.per_class.size()},
                        {"map", ret.mean_average_precision}};
    for (size_t t = 0; t < ret.ks.size(); ++t) j["precision_at_" + std::to_string(ret.ks[t])] = ret.precision[t];
    nlohmann::json pc = nlohmann::json::array();
    for (const auto& c : ret.per_class) {
      nlohmann::json e = {{"class", json_safe(c.label)}, {"count", c.count}, {"ap", c.average_precision}};
      for (size_t t = 0; t < ret.ks.size(); ++t) e["precision_at_" + std::to_string(ret.ks[t])] = c.precision[t];
      pc.push_back(e);
    }
    j["per_class"] = pc;
    std::printf("%s\n", dump_json(j).c_str());
    return 0;
  }
  if (a.csv) {
    std::printf("model,layer,pooling,metric,class,count");
    for (int k : ret.ks) std::printf(",precision_at_%d", k);
    std::printf(",ap\n");
    auto row = [&](const std::string& cls, int count, const std::vector<double>& p, double ap) {
      std::printf("%s,%s,%s,%s,%s,%d", model.c_str(), layer.c_str(), pool.c_str(), metric.c_str(), cls.c_str(), count);
      for (double v : p) std::printf(",%.4f", v);
      std::printf(",%.4f\n", ap);
    };
    for (const auto& c : ret.per_class) row(json_safe(c.label), c.count, c.precision, c.average_precision);
    row("ALL", ret.queries, ret.precision, ret.mean_average_precision);
    return 0;
  }
  std::printf("%s: %lld images in %zu classes (%lld skipped)\nmodel %s, layer %s, pooling %s, metric %s\n\n",
              a.dir.c_str(), (long long)r->images, ret.per_class.size(), (long long)r->skipped, model.c_str(),
              layer.c_str(), pool.c_str(), metric.c_str());
  std::printf("%-24s %5s", "class", "n");
  for (int k : ret.ks) std::printf("  P@%-4d", k);
  std::printf("  AP\n");
  for (const auto& c : ret.per_class) {
    std::printf("%-24s %5d", json_safe(c.label).c_str(), c.count);
    for (double v : c.precision) std::printf("  %.3f ", v);
    std::printf("  %.3f\n", c.average_precision);
  }
  std::printf("%-24s %5d", "ALL (mean over queries)", ret.queries);
  for (double v : ret.precision) std::printf("  %.3f ", v);
  std::printf("  %.3f (mAP)\n", ret.mean_average_precision);
  return 0;
}

}  // namespace

void register_eval(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval", "Retrieval quality on a labelled folder (DIR/<class>/<image>): precision@k, mAP, per class");
  cmd->add_option("dir", a->dir, "Labelled folder: one sub-folder per class")->required()->check(CLI::ExistingDirectory);
  add_representation_options(cmd, a->rep);
  cmd->add_option("-k", a->ks, "Cut-offs for precision@k")->capture_default_str()->delimiter(',');
  cmd->add_option("--cache", a->cache, "Where extracted vectors are kept (default: ~/.cache/imgsearch/eval)");
  cmd->add_option("--threads", a->threads, "Worker threads (0 = all cores)");
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_flag("--csv", a->csv, "Print CSV (one row per class, then ALL)");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress");
  cmd->callback([a, &exit_code] { exit_code = run_eval(*a); });
}

}  // namespace imgsearch::cli
