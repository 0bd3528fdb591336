// bench/infer: imgsearch's inference engine alone, and single-query latency. Prints JSON
// lines (one per measurement); bench/speed runs it beside ONNX Runtime's Python API.
//
//   infer [--model NAME] [--batch 1,16] [--threads 1,2] [--seconds S] [--no-spin]
//         [--images DIR]
//     embed::InferenceEngine::run() on preprocessed input, asking for the model's default
//     layer (what `index` asks for), for every batch x threads pair. Input: the first
//     images of DIR (sorted by name), decoded and preprocessed as ingest does, repeated
//     to fill the batch; without --images, uniform random values in [-1, 1] (seed 1).
//     Idle intra-op threads spin (the engine at its fastest, as ONNX Runtime's own
//     default) unless --no-spin. One warm-up run per configuration, then runs until S
//     seconds (default 3) have passed and at least 3 runs were made.
//     Line: {"kind":"infer","model":..,"batch":..,"threads":..,"spin":..,"runs":..,
//            "images_per_s":..,"ms_per_run_p50":..,"cpu_ms_per_image":..}
//
//   infer --grow-db DB --to N
//     Adds synthetic vectors to an existing database until it holds N images, then saves
//     its index (the `auto` policy chooses and tunes it as after an ingest). Each synthetic
//     vector: a real one of the database, moved part of the way (0-50%) towards another
//     from the same folder (its class), plus Gaussian noise scaled by the real vectors'
//     per-dimension spread (log-uniform over [0.15, 0.6] of it), re-normalised -- as
//     bench/index makes them: clusters, continua inside them, no exact duplicates. Seeded.
//     Records are named synthetic/NNNNNN (no file behind them).
//     Line: {"kind":"grow","images_in_db":..,"added":..,"index":..,"seconds":..}
//
//   infer --query IMAGE --db DB [--threads 2] [--repeat 30] [-k 10]
//     What a query costs once the database is open (as in `serve`): the encoded bytes are
//     in memory; decode (decode::decode_image with the embedder's options), embed
//     (Embedder::embed, one image), search (Searcher::by_vector, k results). One warm-up
//     query, then `repeat` timed ones.
//     Line: {"kind":"query","images_in_db":..,"index":..,"decode_ms_p50":..,
//            "embed_ms_p50":..,"search_ms_p50":..,"total_ms_p50":..,"total_ms_p90":..}
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "catalog/catalog.h"
#include "common/file_io.h"
#include "database/database.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "embed/engine.h"
#include "embed/model.h"
#include "embed/preprocess.h"
#include "search/search.h"
namespace fs = std::filesystem;
using namespace imgsearch;

namespace {

using bench::process_cpu_now;
using bench::wall_now;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bench/infer: %s\n", msg.c_str());
  std::exit(1);
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(std::atoi(item.c_str()));
  if (out.empty() || *std::min_element(out.begin(), out.end()) <= 0) die("bad list '" + s + "'");
  return out;
}

void print_json(const nlohmann::json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

// `count` preprocessed inputs: from the images of `dir`, or random.
std::vector<float> make_inputs(const embed::ModelSpec& spec, const fs::path& dir, int count) {
  const size_t per = size_t(3) * spec.input_size * spec.input_size;
  std::vector<float> input(per * size_t(count));
  if (dir.empty()) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& x : input) x = u(rng);
    return input;
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) die("no files in " + dir.string());
  embed::Representation rep;
  rep.model = spec.name;
  auto embedder = embed::Embedder::open(rep, {});
  if (!embedder) die(embedder.error());
  const auto dopt = (*embedder)->decode_options();
  const int distinct = std::min<int>(count, int(files.size()));
  for (int i = 0; i < distinct; ++i) {
    auto bytes = read_file_bytes(files[size_t(i)]);
    if (!bytes) die(files[size_t(i)].string() + ": " + bytes.error());
    auto img = decode::decode_image(*bytes, dopt);
    if (!img) die(files[size_t(i)].string() + ": " + img.error());
    (*embedder)->preprocess_into(*img, input.data() + size_t(i) * per);
  }
  for (int i = distinct; i < count; ++i)
    std::copy_n(input.data() + size_t(i % distinct) * per, per, input.data() + size_t(i) * per);
  return input;
}

int run_infer(const std::string& model, const std::vector<int>& batches, const std::vector<int>& threads,
              double seconds, bool spin, const fs::path& images) {
  auto spec = embed::find_model(model);
  if (!spec) die(spec.error());
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const std::vector<float> input = make_inputs(*spec, images, max_batch);
  const std::vector<std::string> outputs{spec->default_layer};
  for (int th : threads) {
    embed::EngineOptions eo;
    eo.threads = th;
    eo.spin_wait = spin;
    auto engine = embed::make_engine(*spec, eo);
    if (!engine) die(engine.error());
    for (int batch : batches) {
      if (auto r = (*engine)->run(input.data(), batch, outputs); !r) die(r.error());  // warm-up
      std::vector<double> run_ms;
      const double t0 = wall_now(), c0 = process_cpu_now();
      while (wall_now() - t0 < seconds || run_ms.size() < 3) {
        const double r0 = wall_now();
        if (auto r = (*engine)->run(input.data(), batch, outputs); !r) die(r.error());
        run_ms.push_back((wall_now() - r0) * 1e3);
      }
      const double wall = wall_now() - t0, cpu = process_cpu_now() - c0;
      const double n = double(run_ms.size()) * batch;
      print_json({{"kind", "infer"},
                  {"engine", (*engine)->name()},
                  {"model", spec->name},
                  {"layer", spec->default_layer},
                  {"input", images.empty() ? "random" : images.string()},
                  {"batch", batch},
                  {"threads", th},
                  {"spin", spin},
                  {"runs", run_ms.size()},
                  {"images_per_s", n / wall},
                  {"ms_per_run_p50", quantile(run_ms, 0.5)},
                  {"cpu_ms_per_image", cpu * 1e3 / n},
                  {"flops_per_image", spec->flops_per_image}});
    }
  }
  return 0;
}

int run_grow(const fs::path& db_dir, int64_t target) {
  database::Settings settings;
  {
    auto r = database::Database::open_for_reading(db_dir);
    if (!r) die(r.error());
    settings = (*r)->settings();
  }
  settings.index_spec.clear();  // keep the stored kind and budget
  settings.memory_budget = 0;
  auto db = database::Database::open_for_writing(db_dir, settings);
  if (!db) die(db.error());
  auto& cat = (*db)->catalog();
  const auto records = cat.list_images();
  const int dim = settings.dim;
  const size_t n = records.size();
  if (n < 2) die("the database needs real vectors to grow from");
  std::vector<float> real(n * size_t(dim));
  std::vector<std::vector<size_t>> by_folder;
  std::map<std::string, size_t> folder_index;
  std::vector<size_t> folder_of(n);
  for (size_t i = 0; i < n; ++i) {
    auto v = cat.vector_of(records[i].id);
    if (!v) die(v.error());
    std::copy(v->begin(), v->end(), real.begin() + ptrdiff_t(i * size_t(dim)));
    const std::string folder = fs::path(records[i].path).parent_path().string();
    auto [it, added] = folder_index.emplace(folder, by_folder.size());
    if (added) by_folder.emplace_back();
    by_folder[it->second].push_back(i);
    folder_of[i] = it->second;
  }
  std::vector<double> mean(static_cast<size_t>(dim)), sq(static_cast<size_t>(dim));
  for (size_t i = 0; i < n; ++i)
    for (int k = 0; k < dim; ++k) {
      const double x = real[i * size_t(dim) + size_t(k)];
      mean[size_t(k)] += x;
      sq[size_t(k)] += x * x;
    }
  std::vector<float> spread(static_cast<size_t>(dim));
  for (int k = 0; k < dim; ++k) {
    const double m = mean[size_t(k)] / double(n);
    spread[size_t(k)] = float(std::sqrt(std::max(0.0, sq[size_t(k)] / double(n) - m * m)));
  }
  const double t0 = wall_now();
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<float> g(0.f, 1.f);
  int64_t have = int64_t(n), added = 0;
  while (have < target) {
    std::vector<catalog::NewImage> batch;
    for (int j = 0; j < 1000 && have + int64_t(batch.size()) < target; ++j) {
      const size_t a = size_t(rng() % n);
      const auto& mates = by_folder[folder_of[a]];
      const size_t b = mates[size_t(rng() % mates.size())];
      const float t = float(0.5 * u(rng));
      const float noise = float(0.6 * std::exp(-std::log(4.0) * u(rng)));
      catalog::NewImage im;
      im.vector.resize(size_t(dim));
      double norm = 0;
      for (int k = 0; k < dim; ++k) {
        const float x = real[a * size_t(dim) + size_t(k)], y = real[b * size_t(dim) + size_t(k)];
        const float v = x + t * (y - x) + noise * spread[size_t(k)] * g(rng);
        im.vector[size_t(k)] = v;
        norm += double(v) * v;
      }
      for (auto& v : im.vector) v = float(v / std::sqrt(norm));
      char name[64];
      std::snprintf(name, sizeof name, "synthetic/%06lld", (long long)(have + int64_t(batch.size())));
      im.record.path = name;
      im.record.key = std::string("/") + name;
      im.record.content_hash = std::string("synthetic-") + name;
      im.record.width = im.record.height = 1;
      batch.push_back(std::move(im));
    }
    auto ids = (*db)->commit(batch, {});
    if (!ids) die(ids.error());
    have += int64_t(batch.size());
    added += int64_t(batch.size());
  }
  if (auto st = (*db)->save_index(); !st) die(st.error());
  auto index = (*db)->index();
  if (!index) die(index.error());
  print_json({{"kind", "grow"},
              {"images_in_db", (*index)->size()},
              {"added", added},
              {"index", (*index)->spec()},
              {"seconds", wall_now() - t0}});
  return 0;
}

int run_query(const fs::path& image, const fs::path& db, int threads, int repeat, int k) {
  decode::decode_init();
  embed::EngineOptions eo;
  eo.threads = threads;
  auto searcher = search::Searcher::open(db, eo);
  if (!searcher) die(searcher.error());
  auto bytes = read_file_bytes(image);
  if (!bytes) die(image.string() + ": " + bytes.error());
  auto& embedder = (*searcher)->embedder();
  const auto dopt = embedder.decode_options();
  search::Query q;
  q.k = k;
  std::vector<double> dec, emb, sea, tot;
  int width = 0, height = 0;
  size_t hits = 0;
  for (int i = 0; i <= repeat; ++i) {
    const double t0 = wall_now();
    auto img = decode::decode_image(*bytes, dopt);
    if (!img) die(image.string() + ": " + img.error());
    const double t1 = wall_now();
    const decode::RgbImage* one[] = {&*img};
    auto v = embedder.embed(one);
    if (!v) die(v.error());
    const double t2 = wall_now();
    auto h = (*searcher)->by_vector(*v, q);
    if (!h) die(h.error());
    const double t3 = wall_now();
    if (i == 0) continue;  // warm-up
    dec.push_back((t1 - t0) * 1e3);
    emb.push_back((t2 - t1) * 1e3);
    sea.push_back((t3 - t2) * 1e3);
    tot.push_back((t3 - t0) * 1e3);
    hits = h->size();
  }
  {
    auto info = decode::probe_image(*bytes, dopt);
    if (info) width = info->width, height = info->height;
  }
  auto& database = (*searcher)->db();
  auto index = database.index();
  if (!index) die(index.error());
  print_json({{"kind", "query"},
              {"image", image.string()},
              {"width", width},
              {"height", height},
              {"bytes", bytes->size()},
              {"images_in_db", (*index)->size()},
              {"index", (*index)->spec()},
              {"threads", threads},
              {"k", k},
              {"hits", hits},
              {"repeat", repeat},
              {"decode_ms_p50", quantile(dec, 0.5)},
              {"embed_ms_p50", quantile(emb, 0.5)},
              {"search_ms_p50", quantile(sea, 0.5)},
              {"total_ms_p50", quantile(tot, 0.5)},
              {"total_ms_p90", quantile(tot, 0.9)}});
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = embed::kDefaultModel;
  std::vector<int> batches{1, 16}, threads{1, 2};
  double seconds = 3;
  bool spin = true;
  fs::path images, query, db, grow;
  int64_t grow_to = 10000;
  int query_threads = 2, repeat = 30, k = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--model")
      model = value();
    else if (a == "--batch")
      batches = parse_list(value());
    else if (a == "--threads") {
      threads = parse_list(value());
      query_threads = threads.front();
    } else if (a == "--seconds")
      seconds = std::atof(value().c_str());
    else if (a == "--no-spin")
      spin = false;
    else if (a == "--images")
      images = value();
    else if (a == "--query")
      query = value();
    else if (a == "--grow-db")
      grow = value();
    else if (a == "--to")
      grow_to = std::atoll(value().c_str());
    else if (a == "--db")
      db = value();
    else if (a == "--repeat")
      repeat = std::max(1, std::atoi(value().c_str()));
    else if (a == "-k")
      k = std::max(1, std::atoi(value().c_str()));
    else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: %s [--model NAME] [--batch 1,16] [--threads 1,2] [--seconds 3] [--no-spin] [--images DIR]\n"
          "       %s --grow-db DB --to N\n"
          "       %s --query IMAGE --db DB [--threads 2] [--repeat 30] [-k 10]\n"
          "Prints one JSON line per measurement (see the top of bench/infer.cpp).\n",
          argv[0], argv[0], argv[0]);
      return 0;
    } else
      die("unknown argument " + a + " (see --help)");
  }
  decode::decode_init();
  if (!grow.empty()) return run_grow(grow, grow_to);
  if (!query.empty()) {
    if (db.empty()) die("--query needs --db");
    return run_query(query, db, query_threads, repeat, k);
  }
  return run_infer(model, batches, threads, seconds, spin, images);
}
