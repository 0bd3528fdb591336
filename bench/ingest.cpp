// bench/ingest: how fast `imgsearch index` turns realistic photos into a database, and
// where the time goes.
//
//   1. Generates photos from ../shared/photos/scenes into a temporary folder: 12 MP
//      (4000x3000) and 3 MP (2000x1500) JPEGs at quality 90, each a different crop,
//      mirror and exposure of a scene, so no two files have the same content.
//   2. Raw inference: batches of preprocessed tensors through the engine alone, with 1 and
//      with 2 intra-op threads (the better is the "raw inference throughput").
//   3. Decode: one 12 MP and one 3 MP JPEG to the model's input scale, on one thread, as
//      ingest does it (decode::decode_image with the embedder's options), and, for
//      comparison, with JPEG shrink-on-load at the largest factor (libvips directly).
//   4. End to end: index_folder over the photos with `--threads 2`'s split (and, without
//      --quick, every other split of 2 cores between decode workers and inference).
//   5. Memory and re-runs, each in a child process (peak RSS is per process): `index`
//      over 1k and over 10k small files, then the no-change re-run over the 10k.
//      The 10k folder (and the 1k one in --quick) holds fewer distinct pictures than
//      files: the rest are hard links, which ingest recognises by content and gives the
//      vector of the first copy (no inference), so the runs stay short while the
//      catalog, the index and every per-file structure hold all 10k entries.
//
// The machine may be shared: the load average is printed before and after; CPU-time
// figures (cpu ms) do not depend on it, wall-clock ones (images/s) do.
//
// Usage: bench/ingest [--quick] [--keep DIR] [--threads N]
// Ends with one line:
//   RESULT images_per_s=.. infer_images_per_s=.. e2e_vs_infer=.. decode_ms_12mp=.. infer_ms=..
//          rss_mb_1k=.. rss_mb_10k=.. noop_rerun_s_10k=..
#include "ingest/ingest.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>
#include <vips/vips8>

#include "bench_util.h"
#include "common/file_io.h"
#include "database/database.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "embed/engine.h"
#include "embed/preprocess.h"
namespace fs = std::filesystem;
using namespace imgsearch;
using vips::VImage;

namespace {

const fs::path kScenes = fs::path(IMGSEARCH_SHARED_DIR) / "photos" / "scenes";

using bench::process_cpu_now;
using bench::wall_now;

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bench/ingest: %s\n", msg.c_str());
  std::exit(1);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// ---- data ---------------------------------------------------------------------------

std::vector<VImage> load_scenes() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(kScenes))
    if (e.path().extension() == ".jpg") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty()) die("no photos in " + kScenes.string());
  std::vector<VImage> scenes;
  for (const auto& f : files) {
    VImage im = VImage::new_from_file(f.c_str()).autorot();
    if (im.bands() == 1) im = im.bandjoin({im, im});
    scenes.push_back(im.extract_band(0, VImage::option()->set("n", 3)).copy_memory());
  }
  return scenes;
}

// A w x h picture from a random crop (same aspect), mirror and exposure of a scene.
std::vector<uint8_t> variant_jpeg(const VImage& scene, int w, int h, uint32_t seed, int quality) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  const double aspect = double(w) / h;
  int cw = scene.width(), ch = int(cw / aspect);
  if (ch > scene.height()) {
    ch = scene.height();
    cw = int(ch * aspect);
  }
  const double f = 0.7 + 0.3 * u(rng);
  cw = std::max(16, int(cw * f));
  ch = std::max(16, int(ch * f));
  const int x = int(u(rng) * (scene.width() - cw)), y = int(u(rng) * (scene.height() - ch));
  // Bilinear: generation is not what we measure, and lanczos upscaling to 12 MP doubles its cost.
  VImage im =
      scene.crop(x, y, cw, ch)
          .resize(double(w) / cw, VImage::option()->set("vscale", double(h) / ch)->set("kernel", VIPS_KERNEL_LINEAR));
  if (rng() & 1) im = im.fliphor();
  im = im.linear(0.85 + 0.3 * u(rng), 0).cast(VIPS_FORMAT_UCHAR);
  if (im.width() != w || im.height() != h) im = im.embed(0, 0, w, h, VImage::option()->set("extend", "copy"));
  VipsBlob* blob = im.jpegsave_buffer(VImage::option()->set("Q", quality)->set("strip", true));
  size_t size = 0;
  const auto* p = static_cast<const uint8_t*>(
      vips_area_get_data(reinterpret_cast<VipsArea*>(blob), &size, nullptr, nullptr, nullptr));
  std::vector<uint8_t> out(p, p + size);
  vips_area_unref(reinterpret_cast<VipsArea*>(blob));
  return out;
}

struct Job {
  fs::path path;
  int w, h, quality;
  uint32_t seed;
};

// Writes the files that are not there yet, on `threads` threads.
void generate(const std::vector<VImage>& scenes, const std::vector<Job>& jobs, int threads) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      const Job& j = jobs[i];
      if (fs::exists(j.path)) continue;
      fs::create_directories(j.path.parent_path());
      auto bytes = variant_jpeg(scenes[j.seed % scenes.size()], j.w, j.h, j.seed, j.quality);
      if (auto s = write_file_atomic(j.path, bytes); !s) die(s.error());
    }
  };
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(work);
  for (auto& t : pool) t.join();
}

// `files` paths under `dir`, in 100-file subfolders, hard-linked round-robin to `distinct`.
void link_folder(const std::vector<fs::path>& distinct, const fs::path& dir, int files) {
  if (fs::exists(dir)) return;
  for (int i = 0; i < files; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "d%03d/f%05d.jpg", i / 100, i);
    const fs::path p = dir / name;
    fs::create_directories(p.parent_path());
    fs::create_hard_link(distinct[size_t(i) % distinct.size()], p);
  }
}

// ---- measurements -------------------------------------------------------------------

struct InferFigure {
  int threads;
  double images_per_s, cpu_ms_per_image;
};

InferFigure raw_inference(const embed::ModelSpec& spec, const std::vector<float>& batch_input, int batch, int threads,
                          double seconds) {
  embed::EngineOptions eo;
  eo.threads = threads;
  eo.spin_wait = true;  // the engine alone, at its fastest (ingest turns spinning off: decoders share the cores)
  auto engine = embed::make_engine(spec, eo);
  if (!engine) die(engine.error());
  const std::vector<std::string> out{spec.default_layer};
  if (auto r = (*engine)->run(batch_input.data(), batch, out); !r) die(r.error());  // warm-up
  int n = 0;
  const double t0 = wall_now(), c0 = process_cpu_now();
  while (wall_now() - t0 < seconds || n < 4 * batch) {
    if (auto r = (*engine)->run(batch_input.data(), batch, out); !r) die(r.error());
    n += batch;
  }
  const double wall = wall_now() - t0, cpu = process_cpu_now() - c0;
  return {threads, n / wall, cpu * 1e3 / n};
}

struct DecodeFigure {
  double wall_ms, cpu_ms;
};

// decode::decode_image as ingest calls it, one thread, median over the files. CPU time is
// the process's: libvips evaluates on a worker thread of its own even at concurrency 1
// (nothing else of ours runs meanwhile).
DecodeFigure decode_cost(const std::vector<fs::path>& files, const decode::DecodeOptions& opt) {
  std::vector<double> wall, cpu;
  for (int rep = 0; rep < 2; ++rep)
    for (const auto& f : files) {
      auto bytes = read_file_bytes(f);
      if (!bytes) die(bytes.error());
      const double w0 = wall_now(), c0 = process_cpu_now();
      auto img = decode::decode_image(*bytes, opt);
      if (!img) die(f.string() + ": " + img.error());
      wall.push_back((wall_now() - w0) * 1e3);
      cpu.push_back((process_cpu_now() - c0) * 1e3);
    }
  return {median(wall), median(cpu)};
}

// The same decode with JPEG shrink-on-load at the largest factor that keeps the short side
// >= target (libvips' thumbnail leaves a factor of 2 for its own resize), then a resize.
DecodeFigure decode_cost_max_shrink(const std::vector<fs::path>& files, int target) {
  std::vector<double> wall, cpu;
  for (int rep = 0; rep < 2; ++rep)
    for (const auto& f : files) {
      auto bytes = read_file_bytes(f);
      if (!bytes) die(bytes.error());
      const double w0 = wall_now(), c0 = process_cpu_now();
      VImage head = VImage::new_from_buffer(bytes->data(), bytes->size(), "");
      const int short_side = std::min(head.width(), head.height());
      int shrink = 8;
      while (shrink > 1 && short_side / shrink < target) shrink /= 2;
      VImage im =
          VImage::new_from_buffer(bytes->data(), bytes->size(), "",
                                  VImage::option()->set("shrink", shrink)->set("fail_on", VIPS_FAIL_ON_TRUNCATED))
              .autorot();
      const double scale = double(target) / std::min(im.width(), im.height());
      im = im.resize(scale);
      std::vector<uint8_t> px(size_t(im.width()) * im.height() * im.bands());
      im.write(VImage::new_from_memory(px.data(), px.size(), im.width(), im.height(), im.bands(), im.format()));
      wall.push_back((wall_now() - w0) * 1e3);
      cpu.push_back((process_cpu_now() - c0) * 1e3);
    }
  return {median(wall), median(cpu)};
}

struct RunFigure {
  ingest::Summary summary;
  double cpu_s = 0;
};

RunFigure index_in_process(const fs::path& photos, const fs::path& db, int decode_threads, int infer_threads) {
  fs::remove_all(db);
  embed::EngineOptions eo;
  eo.threads = infer_threads;
  auto embedder = embed::Embedder::open({}, eo);
  if (!embedder) die(embedder.error());
  database::Settings s;
  s.representation = (*embedder)->representation();
  s.dim = int((*embedder)->dim());
  auto d = database::Database::open_for_writing(db, s);
  if (!d) die(d.error());
  ingest::Options o;
  o.threads = decode_threads;
  o.progress = Progress::Style::Quiet;
  const double c0 = process_cpu_now();
  auto sum = ingest::index_folder(**d, **embedder, photos, o);
  if (!sum) die(sum.error());
  if (!sum->skipped.empty()) die("skipped " + sum->skipped[0].path + ": " + sum->skipped[0].reason);
  return {*sum, process_cpu_now() - c0};
}

struct ChildFigure {
  double wall_s = 0, rss_mb = 0;
  nlohmann::json summary;
};

// Runs this program as `--child-index DIR DB THREADS` and measures it from outside.
ChildFigure index_in_child(const fs::path& photos, const fs::path& db, int threads, const fs::path& work) {
  const fs::path out = work / "child.out";
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args{self, "--child-index", photos.string(), db.string(), std::to_string(threads)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const double t0 = wall_now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  ::wait4(pid, &status, 0, &ru);
  ChildFigure f;
  f.wall_s = wall_now() - t0;
  f.rss_mb = double(ru.ru_maxrss) / 1024.0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("child index run failed on " + photos.string());
  std::ifstream in(out);
  std::string line;
  std::getline(in, line);
  f.summary = nlohmann::json::parse(line, nullptr, false);
  return f;
}

// The child: what `imgsearch index DIR --db DB --threads N --quiet` does.
int child_index(const fs::path& photos, const fs::path& db, int threads) {
  const auto split = ingest::split_threads(threads);
  embed::EngineOptions eo;
  eo.threads = split.infer;
  auto embedder = embed::Embedder::open({}, eo);
  if (!embedder) die(embedder.error());
  database::Settings s;
  s.representation = (*embedder)->representation();
  s.dim = int((*embedder)->dim());
  auto d = database::Database::open_for_writing(db, s);
  if (!d) die(d.error());
  ingest::Options o;
  o.threads = split.decode;
  o.progress = Progress::Style::Quiet;
  auto sum = ingest::index_folder(**d, **embedder, photos, o);
  if (!sum) die(sum.error());
  std::printf("%s\n", nlohmann::json{{"indexed", sum->indexed},
                                     {"reused", sum->reused},
                                     {"unchanged", sum->unchanged},
                                     {"skipped", sum->skipped.size()},
                                     {"in_database", sum->in_database},
                                     {"seconds", sum->seconds}}
                          .dump()
                          .c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--child-index") {
    decode::decode_init();
    return child_index(argv[2], argv[3], std::atoi(argv[4]));
  }
  bool quick = false;
  int threads = 2;
  fs::path keep;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--keep" && i + 1 < argc)
      keep = argv[++i];
    else if (a == "--threads" && i + 1 < argc)
      threads = std::atoi(argv[++i]);
    else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: %s [--quick] [--keep DIR] [--threads N]\n"
          "  --quick    about 3 minutes: fewer photos, no sweep of thread splits\n"
          "  --keep DIR generate the photos into DIR and keep them for the next run\n"
          "  --threads  threads for the end-to-end runs (default 2)\n",
          argv[0]);
      return 0;
    } else {
      die("unknown argument " + a + " (see --help)");
    }
  }
  decode::decode_init();
  const double bench_t0 = wall_now();
  std::printf("bench/ingest%s: %u cores, load average %s\n", quick ? " --quick" : "",
              std::thread::hardware_concurrency(), loadavg().c_str());

  const fs::path work =
      keep.empty() ? fs::temp_directory_path() / ("imgsearch_bench_ingest_" + std::to_string(::getpid())) : keep;
  fs::create_directories(work);
  const int n12 = quick ? 150 : 300, n3 = quick ? 150 : 300;
  const int distinct_small = quick ? 250 : 1000;

  // ---- 1. photos ----
  double t = wall_now();
  {
    const auto scenes = load_scenes();
    std::vector<Job> jobs;
    for (int i = 0; i < n12; ++i)
      jobs.push_back({work / "photos" / ("p12_" + std::to_string(i) + ".jpg"), 4000, 3000, 90, uint32_t(i)});
    for (int i = 0; i < n3; ++i)
      jobs.push_back({work / "photos" / ("p3_" + std::to_string(i) + ".jpg"), 2000, 1500, 90, uint32_t(10000 + i)});
    for (int i = 0; i < distinct_small; ++i)
      jobs.push_back(
          {work / "small" / ("s_" + std::to_string(i) + ".jpg"), 320 + int(i % 5) * 40, 240, 85, uint32_t(20000 + i)});
    generate(scenes, jobs, int(std::max(1u, std::thread::hardware_concurrency())));
  }
  uint64_t bytes12 = 0, bytes3 = 0;
  for (int i = 0; i < n12; ++i) bytes12 += fs::file_size(work / "photos" / ("p12_" + std::to_string(i) + ".jpg"));
  for (int i = 0; i < n3; ++i) bytes3 += fs::file_size(work / "photos" / ("p3_" + std::to_string(i) + ".jpg"));
  std::printf(
      "photos: %d x 12 MP (4000x3000, q90, mean %.2f MB) + %d x 3 MP (2000x1500, q90, mean %.2f MB), "
      "%d small distinct; ready in %.0f s\n",
      n12, bytes12 / 1e6 / n12, n3, bytes3 / 1e6 / n3, distinct_small, wall_now() - t);

  // ---- 2. raw inference ----
  auto spec = embed::find_model(embed::kDefaultModel);
  if (!spec) die(spec.error());
  const int batch = ingest::Options{}.batch_size;
  auto embedder = embed::Embedder::open({}, {});
  if (!embedder) die(embedder.error());
  const decode::DecodeOptions dopt = (*embedder)->decode_options();
  const size_t per_image = size_t(3) * spec->input_size * spec->input_size;
  std::vector<float> batch_input(per_image * size_t(batch));
  for (int i = 0; i < batch; ++i) {
    auto bytes = read_file_bytes(work / "photos" / ("p3_" + std::to_string(i) + ".jpg"));
    auto img = decode::decode_image(*bytes, dopt);
    if (!img) die(img.error());
    embed::preprocess(*img, *spec, batch_input.data() + size_t(i) * per_image);
  }
  std::vector<InferFigure> infer;
  for (int th = 1; th <= std::max(1, threads); ++th) {
    infer.push_back(raw_inference(*spec, batch_input, batch, th, quick ? 4 : 8));
    std::printf("raw inference, %s, batch %d, %d intra-op thread(s): %.1f images/s, %.1f cpu ms/image\n",
                spec->name.c_str(), batch, th, infer.back().images_per_s, infer.back().cpu_ms_per_image);
  }
  const InferFigure best_infer =
      *std::max_element(infer.begin(), infer.end(), [](auto& a, auto& b) { return a.images_per_s < b.images_per_s; });
  const double infer_ms = 1e3 / best_infer.images_per_s;

  // ---- 3. decode ----
  std::vector<fs::path> f12, f3;
  for (int i = 0; i < 6; ++i) {
    f12.push_back(work / "photos" / ("p12_" + std::to_string(i) + ".jpg"));
    f3.push_back(work / "photos" / ("p3_" + std::to_string(i) + ".jpg"));
  }
  const DecodeFigure d12 = decode_cost(f12, dopt), d3 = decode_cost(f3, dopt);
  const DecodeFigure m12 = decode_cost_max_shrink(f12, dopt.target_short_side),
                     m3 = decode_cost_max_shrink(f3, dopt.target_short_side);
  std::printf("decode to short side %d, one thread (median): 12 MP %.1f ms (%.1f cpu ms), 3 MP %.1f ms (%.1f cpu ms)\n",
              dopt.target_short_side, d12.wall_ms, d12.cpu_ms, d3.wall_ms, d3.cpu_ms);
  std::printf(
      "  for comparison, JPEG shrink-on-load at the largest factor: 12 MP %.1f ms (%.1f cpu ms), "
      "3 MP %.1f ms (%.1f cpu ms)\n",
      m12.wall_ms, m12.cpu_ms, m3.wall_ms, m3.cpu_ms);
  std::printf("  decode 12 MP vs inference per image (best raw, %d thread(s)): %.1f vs %.1f ms: %s\n",
              best_infer.threads, d12.wall_ms, infer_ms, d12.wall_ms <= infer_ms ? "ok" : "DECODE COSTS MORE");

  // ---- 4. end to end ----
  const auto split = ingest::split_threads(threads);
  std::vector<std::pair<int, int>> splits{{split.decode, split.infer}};
  if (!quick)
    for (auto s : std::vector<std::pair<int, int>>{{1, 1}, {1, 2}, {2, 1}, {2, 2}, {3, 1}, {3, 2}})
      if (s != splits[0]) splits.push_back(s);
  double e2e = 0;
  const std::string default_mark = " [--threads " + std::to_string(threads) + "]";
  for (auto [dec, inf] : splits) {
    const RunFigure r = index_in_process(work / "photos", work / "e2e.imgsearch", dec, inf);
    const auto& s = r.summary;
    const double rate = double(s.indexed) / s.seconds;
    const double busy = s.decode_seconds + s.infer_seconds;
    std::printf(
        "end to end, %d decode worker(s) + %d inference thread(s)%s: %lld images in %.1f s = %.1f images/s; "
        "cpu %.0f%% of %u cores; decode %.1f s (summed over workers) vs inference %.1f s: %.0f%% / %.0f%%; "
        "commits %.2f s\n",
        dec, inf, (dec == split.decode && inf == split.infer) ? default_mark.c_str() : "", (long long)s.indexed,
        s.seconds, rate, 100 * r.cpu_s / s.seconds / std::thread::hardware_concurrency(),
        std::thread::hardware_concurrency(), s.decode_seconds, s.infer_seconds, 100 * s.decode_seconds / busy,
        100 * s.infer_seconds / busy, s.commit_seconds);
    if (dec == split.decode && inf == split.infer) e2e = rate;
  }
  fs::remove_all(work / "e2e.imgsearch");
  const double ratio = e2e / best_infer.images_per_s;
  std::printf("end to end vs raw inference: %.1f / %.1f = %.2f (bar: >= 0.8)\n", e2e, best_infer.images_per_s, ratio);

  // ---- 5. memory and the no-change re-run ----
  std::vector<fs::path> small;
  for (int i = 0; i < distinct_small; ++i) small.push_back(work / "small" / ("s_" + std::to_string(i) + ".jpg"));
  link_folder(small, work / "files_1k", 1000);
  link_folder(small, work / "files_10k", 10000);
  fs::remove_all(work / "db_1k");
  fs::remove_all(work / "db_10k");
  const ChildFigure c1 = index_in_child(work / "files_1k", work / "db_1k", threads, work);
  std::printf("index 1k files (%d distinct): %.1f s, peak RSS %.0f MB; %s\n", distinct_small, c1.wall_s, c1.rss_mb,
              c1.summary.dump().c_str());
  const ChildFigure c10 = index_in_child(work / "files_10k", work / "db_10k", threads, work);
  std::printf("index 10k files (%d distinct): %.1f s, peak RSS %.0f MB (%.2fx the 1k run); %s\n", distinct_small,
              c10.wall_s, c10.rss_mb, c10.rss_mb / c1.rss_mb, c10.summary.dump().c_str());
  const ChildFigure noop = index_in_child(work / "files_10k", work / "db_10k", threads, work);
  std::printf(
      "no-change re-run over 10k files: %.2f s for the whole process (%.2f s in index_folder), "
      "peak RSS %.0f MB; %s\n",
      noop.wall_s, noop.summary.value("seconds", 0.0), noop.rss_mb, noop.summary.dump().c_str());
  if (noop.summary.value("unchanged", 0) != 10000) die("the re-run was not a no-op");

  if (keep.empty()) fs::remove_all(work);
  std::printf("load average at the end %s; bench took %.0f s\n", loadavg().c_str(), wall_now() - bench_t0);
  std::printf(
      "RESULT images_per_s=%.1f infer_images_per_s=%.1f e2e_vs_infer=%.2f decode_ms_12mp=%.1f infer_ms=%.1f "
      "rss_mb_1k=%.0f rss_mb_10k=%.0f noop_rerun_s_10k=%.2f\n",
      e2e, best_infer.images_per_s, ratio, d12.wall_ms, infer_ms, c1.rss_mb, c10.rss_mb, noop.wall_s);
  return 0;
}
