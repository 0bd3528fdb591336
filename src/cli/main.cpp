// imgsearch: semantic image search. One entry point; see `imgsearch --help`.
#include <cstdio>
#include <string>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "imgsearch: find the images most similar in meaning to a query image.\n"
      "A pretrained CNN (EfficientNet-Lite0 by default) turns every image into a vector; FAISS finds the nearest.\n\n"
      "Quick start:\n"
      "  imgsearch index ~/Pictures --db pics.imgsearch\n"
      "  imgsearch search query.jpg --db pics.imgsearch -k 10\n",
      "imgsearch"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "imgsearch 0.1.0");
  int exit_code = 0;
  imgsearch::cli::register_index(app, exit_code);
  imgsearch::cli::register_search(app, exit_code);
  imgsearch::cli::register_classify(app, exit_code);
  imgsearch::cli::register_info(app, exit_code);
  imgsearch::cli::register_models(app, exit_code);
  imgsearch::cli::register_eval(app, exit_code);
  imgsearch::cli::register_serve(app, exit_code);
  imgsearch::cli::register_map(app, exit_code);
  // CLI11 would call an unknown command "a subcommand is required"; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      imgsearch::cli::print_error(std::string("unknown command '") + argv[1] + "' (commands: " + names + ")");
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    imgsearch::cli::print_error(e.what());
    std::fprintf(stderr, "Run 'imgsearch --help' or 'imgsearch <command> --help' for usage.\n");
    return 2;
  } catch (const std::exception& e) {
    // Nothing below should throw; if something does, say so plainly rather than abort.
    imgsearch::cli::print_error(std::string("internal error: ") + e.what());
    return 1;
  }
  return exit_code;
}
