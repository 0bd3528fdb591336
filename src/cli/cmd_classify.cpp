// imgsearch classify IMAGE...: top-k ImageNet classes, a sanity check of the model.
#include <cstdio>

#include "cli/commands.h"
#include "common/file_io.h"
#include "decode/decode.h"
#include "embed/embedder.h"

namespace imgsearch::cli {
namespace {

struct ClassifyArgs {
  std::vector<std::string> images;
  std::string model = embed::kDefaultModel;
  int top = 5;
  bool json = false;
  int threads = 0;
};

int run_classify(const ClassifyArgs& a) {
  embed::Representation rep;
  rep.model = a.model;
  embed::EngineOptions eo;
  eo.threads = a.threads;
  auto e = embed::Embedder::open(rep, eo);
  if (!e) return print_error(e.error()), 1;
  decode::decode_init();
  int failures = 0;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& path : a.images) {
    auto fail = [&](const std::string& why) {
      ++failures;
      if (a.json)
        out.push_back({{"path", json_safe(path)}, {"error", why}});
      else
        print_error(printable_path(path) + ": " + why);
    };
    auto bytes = read_file_bytes(path);
    if (!bytes) {
      fail(bytes.error());
      continue;
    }
    auto img = decode::decode_image(*bytes, (*e)->decode_options());
    if (!img) {
      fail(img.error());
      continue;
    }
    const decode::RgbImage* batch[] = {&*img};
    auto top = (*e)->classify(batch, a.top);
    if (!top) {
      fail(top.error());
      continue;
    }
    if (a.json) {
      nlohmann::json classes = nlohmann::json::array();
      for (const auto& c : (*top)[0])
        classes.push_back({{"index", c.index}, {"label", c.label}, {"probability", c.probability}});
      out.push_back({{"path", json_safe(path)}, {"classes", classes}});
    } else {
      std::printf("%s\n", printable_path(path).c_str());
      for (const auto& c : (*top)[0])
        std::printf("  %6.2f%%  %s (%d)\n", 100.0 * c.probability, c.label.c_str(), c.index);
    }
  }
  if (a.json) std::printf("%s\n", dump_json(out).c_str());
  return failures ? 1 : 0;
}

}  // namespace

void register_classify(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ClassifyArgs>();
  auto* cmd = app.add_subcommand("classify", "Top ImageNet classes of images (a quick check of the model)");
  cmd->add_option("images", a->images, "Image files")->required();
  cmd->add_option("--model", a->model, "Model name")->capture_default_str();
  cmd->add_option("-k,--top", a->top, "Classes per image")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", a->json, "Print JSON");
  cmd->add_option("--threads", a->threads, "Inference threads (0 = all cores)");
  cmd->callback([a, &exit_code] { exit_code = run_classify(*a); });
}

}  // namespace imgsearch::cli
