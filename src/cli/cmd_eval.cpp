// imgsearch eval DIR: which representation retrieves best on a labelled folder.
// Sweeps models x layers x poolings x metrics (each model runs once per image; see
// eval/folder_eval.h), prints precision@k, mAP, per-class precision and, with --probe, a
// linear probe's accuracy, as text, JSON, CSV or Markdown, and can draw score by layer.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "eval/folder_eval.h"
#include "eval/plot.h"

namespace imgsearch::cli {
namespace {

struct EvalArgs {
  std::string dir, cache, plot;
  std::vector<std::string> models = {"efficientnet-lite0"}, layers, pools = {"avg"}, metrics = {"cosine"};
  std::vector<int> ks = {1, 5, 10};
  bool json = false, csv = false, markdown = false, quiet = false, probe = false;
  int threads = 0, batch = 16, probe_folds = 5;
};

std::string fmt3(double v) {
  char b[16];
  std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

std::string join(const std::vector<std::string>& v, const char* sep = ",") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

// The command line that reproduces this output (printed at the top of --markdown).
std::string command_line(const EvalArgs& a) {
  auto q = [](const std::string& s) { return s.find_first_of(" '\"$\\") == std::string::npos ? s : "'" + s + "'"; };
  std::string c = "imgsearch eval " + q(a.dir) + " --model " + q(join(a.models));
  if (!a.layers.empty()) c += " --layer " + q(join(a.layers));
  c += " --pool " + join(a.pools) + " --metric " + join(a.metrics);
  std::vector<std::string> ks;
  for (int k : a.ks) ks.push_back(std::to_string(k));
  if (a.ks != std::vector<int>{1, 5, 10}) c += " -k " + join(ks);
  if (a.probe) c += " --probe" + (a.probe_folds != 5 ? " --probe-folds " + std::to_string(a.probe_folds) : "");
  if (!a.plot.empty()) c += " --plot " + q(a.plot);
  return c + " --markdown";
}

// Index of k = 10 among the cut-offs (the headline figure), else the last one.
size_t headline_k(const std::vector<int>& ks) {
  for (size_t i = 0; i < ks.size(); ++i)
    if (ks[i] == 10) return i;
  return ks.size() - 1;
}

size_t best_config(const eval::SweepResult& r, size_t ki) {
  size_t best = 0;
  for (size_t i = 1; i < r.configs.size(); ++i) {
    const auto& a = r.configs[i].retrieval;
    const auto& b = r.configs[best].retrieval;
    if (a.precision[ki] > b.precision[ki] + 1e-12 ||
        (a.precision[ki] > b.precision[ki] - 1e-12 && a.mean_average_precision > b.mean_average_precision + 1e-12))
      best = i;
  }
  return best;
}

std::string describe(const eval::ConfigResult& c) {
  return c.model + " " + c.layer + " / " + embed::pooling_name(c.pooling) + " / " + index::metric_name(c.metric);
}

std::string memory_note(const eval::ConfigResult& c, int64_t images) {
  char b[160];
  std::snprintf(b, sizeof b, "%d floats = %.1f KB per image, %.1f MB for %lld images", c.dim, c.dim * 4 / 1e3,
                double(c.dim) * 4 * double(images) / 1e6, (long long)images);
  return b;
}

nlohmann::json config_json(const eval::ConfigResult& c) {
  const auto& ret = c.retrieval;
  nlohmann::json j = {{"model", c.model},
                      {"layer", c.layer},
                      {"layer_index", c.layer_index},
                      {"layer_count", c.layer_count},
                      {"pooling", embed::pooling_name(c.pooling)},
                      {"metric", index::metric_name(c.metric)},
                      {"dim", c.dim},
                      {"bytes_per_vector", c.dim * 4},
                      {"default", c.is_default},
                      {"map", ret.mean_average_precision}};
  for (size_t t = 0; t < ret.ks.size(); ++t) j["precision_at_" + std::to_string(ret.ks[t])] = ret.precision[t];
  if (c.probe) {
    j["probe_accuracy"] = c.probe->accuracy;
    j["probe_fold_accuracy"] = c.probe->fold_accuracy;
  }
  nlohmann::json pc = nlohmann::json::array();
  for (size_t k = 0; k < ret.per_class.size(); ++k) {
    const auto& cl = ret.per_class[k];
    nlohmann::json e = {{"class", json_safe(cl.label)}, {"count", cl.count}, {"ap", cl.average_precision}};
    for (size_t t = 0; t < ret.ks.size(); ++t) e["precision_at_" + std::to_string(ret.ks[t])] = cl.precision[t];
    if (c.probe) e["probe_accuracy"] = c.probe->per_class[k];
    pc.push_back(e);
  }
  j["per_class"] = pc;
  return j;
}

void print_json(const EvalArgs& a, const eval::SweepResult& r) {
  const size_t ki = headline_k(a.ks);
  nlohmann::json configs = nlohmann::json::array();
  for (const auto& c : r.configs) configs.push_back(config_json(c));
  nlohmann::json passes = nlohmann::json::array();
  for (const auto& p : r.passes)
    passes.push_back({{"model", p.model},
                      {"input_size", p.input_size},
                      {"extracted", p.extracted},
                      {"cached", p.cached},
                      {"seconds", p.extract_seconds},
                      {"cache", p.cache.string()}});
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& s : r.skipped) skipped.push_back({{"path", json_safe(s.path)}, {"reason", s.reason}});
  nlohmann::json classes = nlohmann::json::array();
  for (const auto& c : r.classes) classes.push_back(json_safe(c));
  nlohmann::json j = {{"dir", json_safe(a.dir)},
                      {"images", r.images},
                      {"classes", classes},
                      {"skipped", skipped},
                      {"passes", passes},
                      {"score_seconds", r.score_seconds},
                      {"probe_seconds", r.probe_seconds},
                      {"best", config_json(r.configs[best_config(r, ki)])},
                      {"configs", configs}};
  // Keep the single-configuration shape of earlier versions at the top level too.
  if (r.configs.size() == 1) {
    const auto only = config_json(r.configs[0]);
    for (const auto& [k, v] : only.items()) j[k] = v;
  }
  std::printf("%s\n", dump_json(j).c_str());
}

void print_csv(const eval::SweepResult& r) {
  const auto& ks = r.configs[0].retrieval.ks;
  std::printf("model,layer,pooling,metric,dim,class,count");
  for (int k : ks) std::printf(",precision_at_%d", k);
  std::printf(",ap,probe_accuracy\n");
  for (const auto& c : r.configs) {
    auto row = [&](const std::string& cls, int count, const std::vector<double>& p, double ap, double probe) {
      std::printf("%s,%s,%s,%s,%d,%s,%d", c.model.c_str(), c.layer.c_str(), embed::pooling_name(c.pooling).c_str(),
                  index::metric_name(c.metric).c_str(), c.dim, cls.c_str(), count);
      for (double v : p) std::printf(",%.4f", v);
      std::printf(",%.4f,", ap);
      if (probe >= 0) std::printf("%.4f", probe);
      std::printf("\n");
    };
    const auto& ret = c.retrieval;
    for (size_t k = 0; k < ret.per_class.size(); ++k)
      row(json_safe(ret.per_class[k].label), ret.per_class[k].count, ret.per_class[k].precision,
          ret.per_class[k].average_precision, c.probe ? c.probe->per_class[k] : -1);
    row("ALL", ret.queries, ret.precision, ret.mean_average_precision, c.probe ? c.probe->accuracy : -1);
  }
}

// The columns of the per-class table: the best configuration and each model's default.
std::vector<size_t> highlighted(const eval::SweepResult& r, size_t ki) {
  std::vector<size_t> cols{best_config(r, ki)};
  for (size_t i = 0; i < r.configs.size(); ++i)
    if (r.configs[i].is_default && i != cols[0]) cols.push_back(i);
  return cols;
}

void print_single(const EvalArgs& a, const eval::SweepResult& r) {
  const auto& c = r.configs[0];
  const auto& ret = c.retrieval;
  std::printf("%s: %lld images in %zu classes (%zu skipped)\nmodel %s, layer %s, pooling %s, metric %s (%s)\n\n",
              a.dir.c_str(), (long long)r.images, ret.per_class.size(), r.skipped.size(), c.model.c_str(),
              c.layer.c_str(), embed::pooling_name(c.pooling).c_str(), index::metric_name(c.metric).c_str(),
              memory_note(c, r.images).c_str());
  std::printf("%-24s %5s", "class", "n");
  for (int k : ret.ks) std::printf("  P@%-4d", k);
  std::printf("  AP%s\n", c.probe ? "     probe" : "");
  for (size_t k = 0; k < ret.per_class.size(); ++k) {
    const auto& cl = ret.per_class[k];
    std::printf("%-24s %5d", json_safe(cl.label).c_str(), cl.count);
    for (double v : cl.precision) std::printf("  %.3f ", v);
    std::printf("  %.3f", cl.average_precision);
    if (c.probe) std::printf("  %.3f", c.probe->per_class[k]);
    std::printf("\n");
  }
  std::printf("%-24s %5d", "ALL (mean over queries)", ret.queries);
  for (double v : ret.precision) std::printf("  %.3f ", v);
  std::printf("  %.3f (mAP)", ret.mean_average_precision);
  if (c.probe) std::printf("  %.3f (linear probe, %d-fold)", c.probe->accuracy, c.probe->folds);
  std::printf("\n");
}

void print_table(const EvalArgs& a, const eval::SweepResult& r) {
  const size_t ki = headline_k(a.ks);
  const size_t best = best_config(r, ki);
  const bool probe = a.probe;
  std::printf("%s: %lld images in %zu classes (%zu skipped), %zu configurations\n\n", a.dir.c_str(),
              (long long)r.images, r.classes.size(), r.skipped.size(), r.configs.size());
  std::printf("%-20s %-14s %-4s %-6s %7s", "model", "layer", "pool", "metric", "dim");
  for (int k : a.ks) std::printf("  P@%-4d", k);
  std::printf("   mAP%s\n", probe ? "   probe" : "");
  for (size_t i = 0; i < r.configs.size(); ++i) {
    const auto& c = r.configs[i];
    std::printf("%-20s %-14s %-4s %-6s %7d", c.model.c_str(), c.layer.c_str(), embed::pooling_name(c.pooling).c_str(),
                index::metric_name(c.metric).c_str(), c.dim);
    for (double v : c.retrieval.precision) std::printf("  %.3f ", v);
    std::printf("  %.3f", c.retrieval.mean_average_precision);
    if (probe) std::printf(c.probe ? "   %.3f" : "       -", c.probe ? c.probe->accuracy : 0.0);
    std::printf("%s%s\n", i == best ? "  <- best" : "", c.is_default ? "  (default)" : "");
  }
  const auto cols = highlighted(r, ki);
  std::printf("\nper-class precision@%d:\n%-24s", a.ks[ki], "class");
  for (size_t i = 0; i < cols.size(); ++i) std::printf("  %-10s", i == 0 ? "best" : "default");
  std::printf("\n");
  for (size_t k = 0; k < r.classes.size(); ++k) {
    std::printf("%-24s", json_safe(r.classes[k]).c_str());
    for (size_t i : cols) std::printf("  %-10s", fmt3(r.configs[i].retrieval.per_class[k].precision[ki]).c_str());
    std::printf("\n");
  }
  for (size_t i = 0; i < cols.size(); ++i)
    std::printf("%s: %s\n", i == 0 ? "best" : "default", describe(r.configs[cols[i]]).c_str());
}

void print_markdown(const EvalArgs& a, const eval::SweepResult& r) {
  const size_t ki = headline_k(a.ks);
  const int k = a.ks[ki];
  const size_t best = best_config(r, ki);
  const bool probe = a.probe;
  std::string title = a.dir;
  while (title.size() > 1 && title.back() == '/') title.pop_back();
  title = title.substr(title.find_last_of('/') == std::string::npos ? 0 : title.find_last_of('/') + 1);
  std::printf(
      "# Representation sweep on %s\n\nGenerated by this command (from the repository root):\n\n```sh\n"
      "build/%s > docs/eval-%s.md\n```\n\n",
      title.c_str(), command_line(a).c_str(), title.c_str());
  std::printf(
      "%lld labelled images in %zu classes (%zu unreadable, left out); every image is a query against all "
      "the others, ranked exactly (brute force). P@k = share of the k nearest that are of the query's "
      "class; mAP = mean average precision over the full ranking.",
      (long long)r.images, r.classes.size(), r.skipped.size());
  if (probe)
    std::printf(
        " Probe = accuracy of a softmax-regression classifier on the standardised vectors (L2 penalty, "
        "L-BFGS), %d-fold stratified cross-validation; it does not depend on the metric.",
        a.probe_folds);
  std::printf("\n\n## Headline\n\n| | configuration | dim | P@%d | mAP |%s\n|---|---|---:|---:|---:|%s\n", k,
              probe ? " probe |" : "", probe ? "---:|" : "");
  auto headline_row = [&](const char* what, const eval::ConfigResult& c) {
    std::printf("| %s | %s | %d | %s | %s |", what, describe(c).c_str(), c.dim, fmt3(c.retrieval.precision[ki]).c_str(),
                fmt3(c.retrieval.mean_average_precision).c_str());
    if (probe) std::printf(" %s |", c.probe ? fmt3(c.probe->accuracy).c_str() : "-");
    std::printf("\n");
  };
  headline_row("**best**", r.configs[best]);
  for (const auto& c : r.configs)
    if (c.is_default) headline_row("default", c);
  const eval::ConfigResult* first_default = nullptr;
  for (const auto& c : r.configs)
    if (c.is_default && !first_default) first_default = &c;
  if (first_default) {
    const double d = r.configs[best].retrieval.precision[ki] - first_default->retrieval.precision[ki];
    std::printf("\nBest vs the default (%s): P@%d %+.3f.\n", describe(*first_default).c_str(), k, d);
  }
  if (!a.plot.empty()) {
    const std::string file =
        a.plot.substr(a.plot.find_last_of('/') == std::string::npos ? 0 : a.plot.find_last_of('/') + 1);
    std::printf("\n![P@%d by layer](%s)\n", k, file.c_str());
  }
  std::printf("\n## Every configuration\n\n| model | layer | pool | metric | dim |");
  for (int kk : a.ks) std::printf(" P@%d |", kk);
  std::printf(" mAP |%s\n|---|---|---|---|---:|", probe ? " probe |" : "");
  for (size_t i = 0; i < a.ks.size() + 1 + (probe ? 1 : 0); ++i) std::printf("---:|");
  std::printf("\n");
  for (size_t i = 0; i < r.configs.size(); ++i) {
    const auto& c = r.configs[i];
    const char* b = i == best ? "**" : "";
    std::printf("| %s | %s%s%s | %s | %s | %d |", c.model.c_str(), b, c.layer.c_str(), b,
                embed::pooling_name(c.pooling).c_str(), index::metric_name(c.metric).c_str(), c.dim);
    for (double v : c.retrieval.precision) std::printf(" %s |", fmt3(v).c_str());
    std::printf(" %s |", fmt3(c.retrieval.mean_average_precision).c_str());
    if (probe) std::printf(" %s |", c.probe ? fmt3(c.probe->accuracy).c_str() : "-");
    std::printf("\n");
  }
  const auto cols = highlighted(r, ki);
  std::printf("\n## Per-class precision@%d\n\n| class |", k);
  for (size_t i = 0; i < cols.size(); ++i)
    std::printf(" %s: %s |", i == 0 ? "best" : "default", describe(r.configs[cols[i]]).c_str());
  std::printf("\n|---|");
  for (size_t i = 0; i < cols.size(); ++i) std::printf("---:|");
  std::printf("\n");
  for (size_t c = 0; c < r.classes.size(); ++c) {
    std::printf("| %s |", json_safe(r.classes[c]).c_str());
    for (size_t i : cols) std::printf(" %s |", fmt3(r.configs[i].retrieval.per_class[c].precision[ki]).c_str());
    std::printf("\n");
  }
  std::printf(
      "\n## Cost\n\n| model | input | images run through the model | from cache | seconds |\n"
      "|---|---:|---:|---:|---:|\n");
  for (const auto& p : r.passes)
    std::printf("| %s | %d | %lld | %lld | %.1f |\n", p.model.c_str(), p.input_size, (long long)p.extracted,
                (long long)p.cached, p.extract_seconds);
  const auto& d = first_default ? *first_default : r.configs[best];
  const double map_floats = double(d.channels) * d.height * d.width;
  std::printf(
      "\nScoring (all metrics): %.1f s; linear probes: %.1f s. Each model runs once per image for all its "
      "layers and poolings; the vectors are cached, so a rerun extracts nothing. A vector costs dim x 4 "
      "bytes; `--pool none` keeps the whole C x H x W map instead: for %s %s that is %d x %d x %d = %.0f "
      "floats, %.1f KB per image, %.1f MB for these %lld images (vs %.1f KB pooled).\n",
      r.score_seconds, r.probe_seconds, d.model.c_str(), d.layer.c_str(), d.channels, d.height, d.width, map_floats,
      map_floats * 4 / 1e3, map_floats * 4 * double(r.images) / 1e6, (long long)r.images, d.dim * 4 / 1e3);
}

int run_eval(const EvalArgs& a) {
  eval::SweepOptions o;
  o.models = a.models;
  o.layers = a.layers.empty() ? std::vector<std::string>{""} : a.layers;
  o.poolings.clear();
  for (const auto& p : a.pools) {
    auto pooling = embed::parse_pooling(p);
    if (!pooling) return print_error("unknown --pool '" + p + "' (avg, max, gem, none)"), 2;
    o.poolings.push_back(*pooling);
  }
  o.metrics.clear();
  for (const auto& m : a.metrics) {
    auto metric = index::parse_metric(m);
    if (!metric) return print_error("unknown --metric '" + m + "' (cosine, l2, ip)"), 2;
    o.metrics.push_back(*metric);
  }
  if (a.ks.empty() || std::any_of(a.ks.begin(), a.ks.end(), [](int k) { return k < 1; }))
    return print_error("-k takes positive cut-offs, e.g. -k 1,5,10"), 2;
  if (a.probe_folds < 2) return print_error("--probe-folds must be at least 2"), 2;
  if (int(a.json) + int(a.csv) + int(a.markdown) > 1) return print_error("choose one of --json, --csv, --markdown"), 2;
  o.ks = a.ks;
  o.probe = a.probe;
  o.probe_options.folds = a.probe_folds;
  o.cache_root = a.cache;
  o.threads = a.threads;
  o.batch_size = a.batch;
  o.progress = a.quiet || a.json || a.csv || a.markdown ? Progress::Style::Quiet : Progress::Style::Auto;
  auto r = eval::evaluate_sweep(a.dir, o);
  if (!r) return print_error(r.error()), 1;
  if (r->configs.empty()) return print_error("nothing was evaluated"), 1;
  if (!a.plot.empty()) {
    std::string title = "Layer sweep on " + a.dir;
    std::ofstream out(a.plot);
    out << eval::plot_svg(*r, headline_k(a.ks), title);
    if (!out) return print_error("cannot write " + a.plot), 1;
  }
  if (a.json)
    print_json(a, *r);
  else if (a.csv)
    print_csv(*r);
  else if (a.markdown)
    print_markdown(a, *r);
  else if (r->configs.size() == 1)
    print_single(a, *r);
  else
    print_table(a, *r);
  if (!a.json && !a.csv && !a.markdown && !a.quiet) {
    for (const auto& p : r->passes)
      std::fprintf(stderr, "%s: %lld images through the model, %lld from cache (%.1f s)\n", p.model.c_str(),
                   (long long)p.extracted, (long long)p.cached, p.extract_seconds);
  }
  return 0;
}

}  // namespace

void register_eval(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval",
      "Which representation retrieves best on a labelled folder (DIR/<class>/<image>): precision@k, mAP, per-class "
      "precision, optional linear probe, over lists of models, layers, poolings and metrics");
  cmd->add_option("dir", a->dir, "Labelled folder: one sub-folder per class")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--model", a->models, "Models, comma-separated (e.g. lite0,lite1,lite2; see `imgsearch models`)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--layer,--layers", a->layers,
                  "Layers, comma-separated: names, 'default' (the model's default), or 'all' (every layer)")
      ->delimiter(',');
  cmd->add_option("--pool", a->pools,
                  "Poolings, comma-separated: avg, max, gem, none (none = the flattened C x H x W map: C*H*W*4 bytes "
                  "per image, e.g. 251 KB for Lite0's head, 1280 x 7 x 7, and 1.6 MB for its stem, vs 5 KB pooled)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--metric", a->metrics, "Similarities, comma-separated: cosine, l2, ip")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("-k", a->ks, "Cut-offs for precision@k")->capture_default_str()->delimiter(',');
  cmd->add_flag("--probe", a->probe,
                "Also train a linear probe (softmax regression, stratified k-fold) per vector set");
  cmd->add_option("--probe-folds", a->probe_folds, "Folds of the probe's cross-validation")->capture_default_str();
  cmd->add_option("--plot", a->plot, "Write an SVG chart of precision@10 (and probe accuracy) by layer");
  cmd->add_option("--cache", a->cache, "Where extracted vectors are kept (default: ~/.cache/imgsearch/eval)");
  cmd->add_option("--threads", a->threads, "Worker threads (0 = all cores)");
  cmd->add_option("--batch-size", a->batch, "Images per inference call")->capture_default_str();
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_flag("--csv", a->csv, "Print CSV (one row per configuration and class, then ALL)");
  cmd->add_flag("--markdown", a->markdown, "Print a Markdown report (the command that made it at the top)");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress");
  cmd->callback([a, &exit_code] { exit_code = run_eval(*a); });
}

}  // namespace imgsearch::cli
