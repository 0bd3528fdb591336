// bench/map: imgsearch's UMAP against umap-learn on the same vectors, in one run.
//
//   build/bench/map [--quick] [--db PATH] [--threads N] [--repeat N]
//
// 1. caltech20 embeddings: indexes ../shared/photos/caltech20 into a temporary database
//    with build/imgsearch (or reads the database given by --db).
// 2. Lays them out with imgsearch (in process) and umap-learn (bench/map.py, Debian's
//    umap-learn on /usr/bin/python3), both with n_neighbors 15, min_dist 0.1, cosine, and
//    scores both layouts with the same code: trustworthiness@10 and 2-D kNN class agreement.
// 3. Times both on 10k (and, without --quick, 100k) synthetic vectors made from the real
//    ones: each is a random mix of two images of one class plus Gaussian noise, normalised.
//    umap-learn at 100k is stopped after --umap-timeout seconds (default 600).
//    The 10k set is fitted --repeat times (default 3) by each, umap-learn in one process
//    after an untimed warm-up (numba's compilation is not charged to it); the speedup is
//    best vs best, with the median ratio beside it. This 2-vCPU machine's speed drifts by
//    up to 1.7x from minute to minute (imgsearch's own 10k fit took 2.1-3.0 s in back-to-back
//    runs), so a single pair of timings says more about the minute than the code.
// Ends with one RESULT line.
#include <sys/wait.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "database/database.h"
#include "map/plot.h"
#include "map/umap.h"
#include "map/umap_internal.h"

namespace fs = std::filesystem;
using namespace imgsearch;

namespace {

struct Args {
  std::string db, imgsearch = IMGSEARCH_BINARY, photos = IMGSEARCH_SHARED_DIR "/photos/caltech20";
  std::string python = "/usr/bin/python3", peer = IMGSEARCH_SOURCE_DIR "/bench/map.py";
  bool quick = false, keep = false, skip_umap_learn = false, verbose = false, cold = true;
  int threads = 0, umap_timeout = 600, repeat = 3;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool write_f32(const fs::path& path, const std::vector<float>& v) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  return bool(out);
}

std::vector<float> read_f32(const fs::path& path, size_t count) {
  std::vector<float> v(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(count * sizeof(float)));
  if (!in) v.clear();
  return v;
}

// Runs a shell command; its stdout lines that parse as JSON objects come back.
std::vector<nlohmann::json> run_json_lines(const std::string& cmd, int* status) {
  std::vector<nlohmann::json> out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return *status = -1, out;
  char line[65536];
  while (std::fgets(line, sizeof line, p)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object()) out.push_back(std::move(j));
  }
  const int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return out;
}

// n synthetic vectors from real ones: for a random class, a random mix of two of its
// images plus N(0, sigma^2) per dimension (noise norm ~0.35, about half the typical
// distance between two images of a class), normalised. Deterministic.
void make_synthetic(const std::vector<float>& x, int dim, const std::vector<int>& labels, int64_t n,
                    std::vector<float>* out, std::vector<int>* out_labels) {
  std::map<int, std::vector<int64_t>> by_class;
  for (size_t i = 0; i < labels.size(); ++i) by_class[labels[i]].push_back(int64_t(i));
  std::vector<int> classes;
  for (auto& [c, _] : by_class) classes.push_back(c);
  std::mt19937_64 rng(12345);
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const float sigma = 0.35f / std::sqrt(float(dim));
  out->assign(size_t(n) * size_t(dim), 0.0f);
  out_labels->assign(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) {
    const int c = classes[rng() % classes.size()];
    const auto& members = by_class[c];
    const int64_t a = members[rng() % members.size()], b = members[rng() % members.size()];
    const float lambda = u(rng);
    float* v = &(*out)[size_t(i) * size_t(dim)];
    double norm = 0;
    for (int j = 0; j < dim; ++j) {
      v[j] = lambda * x[size_t(a) * size_t(dim) + size_t(j)] + (1 - lambda) * x[size_t(b) * size_t(dim) + size_t(j)] +
             sigma * g(rng);
      norm += double(v[j]) * v[j];
    }
    for (int j = 0; j < dim; ++j) v[j] = float(v[j] / std::sqrt(norm));
    (*out_labels)[size_t(i)] = c;
  }
}

// Trustworthiness@10 on a fixed random subset (O(n^2) in full).
double trust_sample(const std::vector<float>& x, int dim, const std::vector<float>& y, int64_t sample) {
  const int64_t n = int64_t(y.size() / 2);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::shuffle(idx.begin(), idx.end(), std::mt19937_64(7));
  idx.resize(size_t(std::min(n, sample)));
  std::vector<float> xs, ys;
  for (int64_t i : idx) {
    xs.insert(xs.end(), x.begin() + i * dim, x.begin() + (i + 1) * dim);
    ys.push_back(y[size_t(i) * 2]);
    ys.push_back(y[size_t(i) * 2 + 1]);
  }
  return map::trustworthiness(xs.data(), int64_t(idx.size()), dim, ys.data(), 10, index::Metric::Cosine);
}

// Recall of the approximate kNN the layout uses (o.approx_knn) against brute force, on
// `sample` points.
double knn_recall(const std::vector<float>& x, int64_t n, int dim, const map::UmapOptions& o, int sample) {
  const int threads = map::detail::resolve_threads(o.threads);
  auto approx = o.approx_knn == map::UmapOptions::ApproxKnn::Hnsw
                    ? map::detail::hnsw_knn(x.data(), n, dim, o.n_neighbors, true, o, threads)
                    : map::detail::clustered_knn(x.data(), n, dim, o.n_neighbors, true, o, threads);
  if (!approx) return std::nan("");
  const int k = o.n_neighbors;
  std::mt19937_64 rng(3);
  int64_t hit = 0, total = 0;
  std::vector<std::pair<float, int64_t>> d(static_cast<size_t>(n));
  for (int s = 0; s < sample; ++s) {
    const int64_t q = int64_t(rng() % uint64_t(n));
    const float* xq = &x[size_t(q) * size_t(dim)];
    for (int64_t i = 0; i < n; ++i) {
      float dot = 0;
      for (int j = 0; j < dim; ++j) dot += xq[j] * x[size_t(i) * size_t(dim) + size_t(j)];
      d[size_t(i)] = {1.0f - dot, i};
    }
    d[size_t(q)].first = -1.0f;  // itself first, as in the lists
    std::partial_sort(d.begin(), d.begin() + k, d.end());
    for (int a = 1; a < k; ++a, ++total)
      for (int b = 1; b < k; ++b) hit += approx->idx[size_t(q) * size_t(k) + size_t(a)] == int32_t(d[size_t(b)].second);
  }
  return double(hit) / double(std::max<int64_t>(total, 1));
}

std::string fmt(double v, const char* f = "%.4f") {
  if (std::isnan(v)) return "na";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Best (fastest) and median of repeated timings; NaN when there are none.
double best(const std::vector<double>& v) { return v.empty() ? std::nan("") : *std::min_element(v.begin(), v.end()); }
double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}
std::string list(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ", ") + fmt(x, "%.2f");
  return s.empty() ? "-" : s;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"imgsearch's UMAP against umap-learn on caltech20 embeddings and synthetic 10k/100k sets"};
  app.add_flag("--quick", a.quick, "Only caltech20 and 10k");
  app.add_option("--db", a.db, "Use this caltech20 database instead of indexing the photos");
  app.add_option("--threads", a.threads, "Threads for both (0 = all cores)");
  app.add_option("--imgsearch", a.imgsearch, "imgsearch binary (to index the photos)")->capture_default_str();
  app.add_option("--photos", a.photos, "Labelled photo folder to index")->capture_default_str();
  app.add_option("--python", a.python, "Python with umap-learn")->capture_default_str();
  app.add_option("--umap-timeout", a.umap_timeout, "Stop umap-learn at 100k after this many seconds")
      ->capture_default_str();
  app.add_option("--repeat", a.repeat,
                 "Fits of the 10k set per implementation; the best and the median are reported (this "
                 "machine's speed drifts by up to 1.7x from minute to minute)")
      ->capture_default_str()
      ->check(CLI::Range(1, 20));
  app.add_flag("!--no-cold", a.cold, "Skip umap-learn's fresh-process (first fit, numba compiling) timing");
  app.add_flag("--skip-umap-learn", a.skip_umap_learn, "Only imgsearch's figures");
  app.add_flag("--keep", a.keep, "Keep the temporary directory");
  app.add_flag("--verbose", a.verbose, "imgsearch's UMAP stage timings on stderr");
  CLI11_PARSE(app, argc, argv);

  const int threads = map::detail::resolve_threads(a.threads);
  char tmpl[] = "/tmp/imgsearch_map_bench_XXXXXX";
  if (!mkdtemp(tmpl)) return std::perror("mkdtemp"), 1;
  const fs::path tmp = tmpl;
  std::printf("imgsearch map benchmark: %d threads, load average %s at start\n", threads, loadavg().c_str());

  // 1. caltech20 vectors.
  std::string db_dir = a.db;
  if (db_dir.empty()) {
    db_dir = (tmp / "cal.imgsearch").string();
    const auto t0 = std::chrono::steady_clock::now();
    const std::string cmd = quote(a.imgsearch) + " index " + quote(a.photos) + " --db " + quote(db_dir) + " --quiet";
    if (std::system(cmd.c_str()) != 0) return std::fprintf(stderr, "failed: %s\n", cmd.c_str()), 1;
    std::printf("indexed %s in %.1f s\n", a.photos.c_str(), seconds_since(t0));
  }
  auto db = database::Database::open_for_reading(db_dir);
  if (!db) return std::fprintf(stderr, "%s\n", db.error().c_str()), 1;
  const int dim = (*db)->settings().dim;
  std::vector<int64_t> ids;
  std::vector<float> cal;
  auto seq = (*db)->catalog().for_each_vector([&](int64_t id, std::span<const float> v) {
    ids.push_back(id);
    cal.insert(cal.end(), v.begin(), v.end());
  });
  if (!seq) return std::fprintf(stderr, "%s\n", seq.error().c_str()), 1;
  std::map<int64_t, std::string> key_of;
  for (auto& r : (*db)->catalog().list_images()) key_of[r.id] = r.key;
  std::vector<std::string> keys;
  for (int64_t id : ids) keys.push_back(key_of[id]);
  const auto class_names = map::folder_classes(keys);
  std::map<std::string, int> class_id;
  std::vector<int> labels;
  for (const auto& c : class_names) labels.push_back(class_id.emplace(c, int(class_id.size())).first->second);
  const int64_t n_cal = int64_t(ids.size());
  std::printf("caltech20: %lld vectors of %d dimensions, %zu classes (%s)\n", (long long)n_cal, dim, class_id.size(),
              db_dir.c_str());

  // 2. Ours.
  map::UmapOptions o;
  o.threads = threads;
  o.verbose = a.verbose;
  auto run_ours = [&](const std::vector<float>& x, int64_t n, double* secs) {
    const auto t0 = std::chrono::steady_clock::now();
    auto y = map::umap_layout(x.data(), n, dim, o);
    *secs = seconds_since(t0);
    if (!y) std::fprintf(stderr, "imgsearch UMAP failed: %s\n", y.error().c_str()), std::exit(1);
    return std::move(*y);
  };
  double cal_secs_ours = 0;
  const auto cal_ours = run_ours(cal, n_cal, &cal_secs_ours);
  const double trust_ours = map::trustworthiness(cal.data(), n_cal, dim, cal_ours.data(), 10, index::Metric::Cosine);
  const double agree_ours = map::knn_class_agreement(cal_ours.data(), n_cal, labels.data(), 10);
  if (auto s =
          map::render_map_png(tmp / "caltech20_imgsearch.png", cal_ours, class_names, {1000, "imgsearch, caltech20"});
      !s)
    std::fprintf(stderr, "%s\n", s.error().c_str());

  std::vector<float> s10k, s100k;
  std::vector<int> l10k, l100k;
  make_synthetic(cal, dim, labels, 10000, &s10k, &l10k);
  double secs_100k_ours = std::nan("");
  std::vector<double> runs_10k_ours;
  std::vector<float> y10k_ours;
  for (int r = 0; r < a.repeat; ++r) {
    double secs = 0;
    y10k_ours = run_ours(s10k, 10000, &secs);  // the same seed: the same layout each time
    runs_10k_ours.push_back(secs);
  }
  const double secs_10k_ours = best(runs_10k_ours);
  std::printf("imgsearch: caltech20 %.2f s, 10k %s s\n", cal_secs_ours, list(runs_10k_ours).c_str());
  double recall_100k = std::nan("");
  if (!a.quick) {
    make_synthetic(cal, dim, labels, 100000, &s100k, &l100k);
    auto y = run_ours(s100k, 100000, &secs_100k_ours);
    std::printf("imgsearch: 100k %.2f s\n", secs_100k_ours);
    recall_100k = knn_recall(s100k, 100000, dim, o, 300);
  }

  // 3. umap-learn on the same vectors.
  double trust_ul = std::nan(""), agree_ul = std::nan(""), secs_100k_ul = std::nan("");
  std::vector<double> runs_10k_ul;
  double cold_fit_ul = std::nan(""), cold_process_ul = std::nan("");
  double cal_secs_ul = std::nan(""), sk_ours = std::nan(""), sk_ul = std::nan(""), warmup = std::nan("");
  std::vector<float> y10k_ul;
  std::string note_100k = a.quick ? "skipped (--quick)" : "";
  if (!a.skip_umap_learn) {
    write_f32(tmp / "cal.f32", cal);
    write_f32(tmp / "cal_imgsearch.f32", cal_ours);
    write_f32(tmp / "s10k.f32", s10k);
    const std::string shape = ":" + std::to_string(dim) + ":";
    std::string jobs_10k;
    for (int r = 0; r < a.repeat; ++r)
      jobs_10k +=
          " --job " + quote("s10k:" + (tmp / "s10k.f32").string() + ":10000" + shape + (tmp / "s10k_ul.f32").string());
    std::string cmd =
        quote(a.python) + " " + quote(a.peer) + " --threads " + std::to_string(threads) + " --warmup" + jobs_10k +
        " --job " +
        quote("cal:" + (tmp / "cal.f32").string() + ":" + std::to_string(n_cal) + shape +
              (tmp / "cal_ul.f32").string()) +
        " --sklearn-check " +
        quote((tmp / "cal.f32").string() + ":" + std::to_string(n_cal) + shape + (tmp / "cal_imgsearch.f32").string()) +
        " --sklearn-check " +
        quote((tmp / "cal.f32").string() + ":" + std::to_string(n_cal) + shape + (tmp / "cal_ul.f32").string()) +
        " 2>" + quote((tmp / "umap_learn.log").string());
    int status = 0;
    for (const auto& j : run_json_lines(cmd, &status)) {
      const std::string ev = j.value("event", "");
      if (ev == "warmup") warmup = j.value("seconds", 0.0);
      if (ev == "fit" && j.value("job", "") == "cal") cal_secs_ul = j.value("seconds", 0.0);
      if (ev == "fit" && j.value("job", "") == "s10k") runs_10k_ul.push_back(j.value("seconds", 0.0));
      if (ev == "sklearn_trustworthiness")
        (fs::path(j.value("layout", "")).filename() == "cal_imgsearch.f32" ? sk_ours : sk_ul) = j.value("value", 0.0);
    }
    if (status != 0)
      std::fprintf(stderr, "umap-learn peer exited with %d; see %s (is Debian's umap-learn installed?)\n", status,
                   (tmp / "umap_learn.log").c_str());
    const auto cal_ul = read_f32(tmp / "cal_ul.f32", size_t(n_cal) * 2);
    if (!cal_ul.empty()) {
      trust_ul = map::trustworthiness(cal.data(), n_cal, dim, cal_ul.data(), 10, index::Metric::Cosine);
      agree_ul = map::knn_class_agreement(cal_ul.data(), n_cal, labels.data(), 10);
      if (auto s = map::render_map_png(tmp / "caltech20_umap_learn.png", cal_ul, class_names,
                                       {1000, "umap-learn, caltech20"});
          !s)
        std::fprintf(stderr, "%s\n", s.error().c_str());
    }
    y10k_ul = read_f32(tmp / "s10k_ul.f32", 20000);
    if (a.cold) {
      // As a user's script meets it: a fresh process, its first fit (numba compiles what it
      // has not cached on disk), the way ../shared/MEASURED.md's 46 s was measured.
      cmd = quote(a.python) + " " + quote(a.peer) + " --threads " + std::to_string(threads) + " --job " +
            quote("s10k:" + (tmp / "s10k.f32").string() + ":10000" + shape + (tmp / "s10k_cold.f32").string()) +
            " 2>>" + quote((tmp / "umap_learn.log").string());
      const auto t0 = std::chrono::steady_clock::now();
      for (const auto& j : run_json_lines(cmd, &status))
        if (j.value("event", "") == "fit") cold_fit_ul = j.value("seconds", 0.0);
      cold_process_ul = seconds_since(t0);
    }
    fs::remove(tmp / "s10k.f32");
    if (!a.quick) {
      write_f32(tmp / "s100k.f32", s100k);
      s100k = {};
      cmd = "timeout --signal=KILL " + std::to_string(a.umap_timeout + 120) + " " + quote(a.python) + " " +
            quote(a.peer) + " --threads " + std::to_string(threads) + " --warmup --job " +
            quote("s100k:" + (tmp / "s100k.f32").string() + ":100000" + shape + (tmp / "s100k_ul.f32").string()) +
            " 2>>" + quote((tmp / "umap_learn.log").string());
      for (const auto& j : run_json_lines(cmd, &status))
        if (j.value("event", "") == "fit") secs_100k_ul = j.value("seconds", 0.0);
      if (std::isnan(secs_100k_ul) || secs_100k_ul > a.umap_timeout)
        note_100k = "did not finish within " + std::to_string(a.umap_timeout) + " s (stopped)";
      fs::remove(tmp / "s100k.f32");
    }
  }

  const double secs_10k_ul = best(runs_10k_ul);

  // 4. Report.
  std::printf("\n%-44s %12s %12s\n", "", "imgsearch", "umap-learn");
  std::printf("%-44s %12s %12s\n", "caltech20 trustworthiness@10 (cosine)", fmt(trust_ours).c_str(),
              fmt(trust_ul).c_str());
  std::printf("%-44s %12s %12s\n", "caltech20 2-D kNN class agreement (k=10)", fmt(agree_ours).c_str(),
              fmt(agree_ul).c_str());
  std::printf("%-44s %12s %12s\n", "caltech20 seconds", fmt(cal_secs_ours, "%.2f").c_str(),
              fmt(cal_secs_ul, "%.2f").c_str());
  std::printf("%-44s %12s %12s\n", "  (sklearn's trustworthiness of the same)", fmt(sk_ours).c_str(),
              fmt(sk_ul).c_str());
  std::printf("%-44s %12s %12s\n", "10k x 1280 synthetic: seconds (best)", fmt(secs_10k_ours, "%.2f").c_str(),
              fmt(secs_10k_ul, "%.2f").c_str());
  std::printf("%-44s %12s %12s\n", "  median of the fits", fmt(median(runs_10k_ours), "%.2f").c_str(),
              fmt(median(runs_10k_ul), "%.2f").c_str());
  std::printf("  every fit: imgsearch %s s; umap-learn %s s\n", list(runs_10k_ours).c_str(), list(runs_10k_ul).c_str());
  if (y10k_ul.size() == 20000)
    std::printf("%-44s %12s %12s\n", "10k: trustworthiness@10 (3000-point sample)",
                fmt(trust_sample(s10k, dim, y10k_ours, 3000)).c_str(),
                fmt(trust_sample(s10k, dim, y10k_ul, 3000)).c_str());
  if (y10k_ul.size() == 20000)
    std::printf("%-44s %12s %12s\n", "10k: 2-D kNN class agreement (k=10)",
                fmt(map::knn_class_agreement(y10k_ours.data(), 10000, l10k.data(), 10)).c_str(),
                fmt(map::knn_class_agreement(y10k_ul.data(), 10000, l10k.data(), 10)).c_str());
  std::printf("%-44s %12s %12s\n", "100k x 1280 synthetic: seconds", fmt(secs_100k_ours, "%.2f").c_str(),
              note_100k.empty() ? fmt(secs_100k_ul, "%.2f").c_str() : "-");
  if (!note_100k.empty()) std::printf("  umap-learn at 100k: %s\n", note_100k.c_str());
  if (!std::isnan(recall_100k))
    std::printf("  imgsearch's approximate kNN (%s) recall@14 at 100k (300 sampled points): %.4f\n",
                o.approx_knn == map::UmapOptions::ApproxKnn::Hnsw ? "HNSW" : "clustered", recall_100k);
  if (!std::isnan(warmup))
    std::printf("  umap-learn timings exclude an untimed warm-up fit (%.1f s: numba compilation)\n", warmup);
  if (!std::isnan(cold_fit_ul))
    std::printf(
        "  umap-learn in a fresh process, as a script meets it: first 10k fit %.2f s, whole process %.2f s "
        "(import, loading, fit): %.1fx / %.1fx imgsearch's best\n",
        cold_fit_ul, cold_process_ul, cold_fit_ul / secs_10k_ours, cold_process_ul / secs_10k_ours);
  const double speedup = secs_10k_ul / secs_10k_ours;
  const double speedup_median = median(runs_10k_ul) / median(runs_10k_ours);
  if (!std::isnan(speedup))
    std::printf(
        "  10k speedup: %.1fx best vs best, %.1fx median vs median, %.1fx slowest imgsearch fit vs fastest "
        "umap-learn fit\n",
        speedup, speedup_median, secs_10k_ul / *std::max_element(runs_10k_ours.begin(), runs_10k_ours.end()));
  std::printf("\nbars: trust within 0.02 of umap-learn: %s; 10k speedup %.1fx >= 4x: %s; 100k under 120 s: %s\n",
              std::isnan(trust_ul) ? "n/a" : (trust_ours >= trust_ul - 0.02 ? "PASS" : "FAIL"), speedup,
              std::isnan(speedup) ? "n/a" : (speedup >= 4 ? "PASS" : "FAIL"),
              std::isnan(secs_100k_ours) ? "n/a" : (secs_100k_ours < 120 ? "PASS" : "FAIL"));
  std::printf("load average %s at end; plots and logs in %s\n", loadavg().c_str(),
              a.keep ? tmp.c_str() : "(removed; --keep keeps them)");
  if (!a.keep) fs::remove_all(tmp);
  std::printf(
      "RESULT trust_ours=%s trust_umap_learn=%s knn_agree_ours=%s knn_agree_umap_learn=%s secs_10k_ours=%s "
      "secs_10k_umap_learn=%s speedup_10k=%s speedup_10k_median=%s secs_10k_umap_learn_fresh=%s secs_100k_ours=%s "
      "secs_100k_umap_learn=%s\n",
      fmt(trust_ours).c_str(), fmt(trust_ul).c_str(), fmt(agree_ours).c_str(), fmt(agree_ul).c_str(),
      fmt(secs_10k_ours, "%.2f").c_str(), fmt(secs_10k_ul, "%.2f").c_str(), fmt(speedup, "%.1f").c_str(),
      fmt(speedup_median, "%.1f").c_str(), fmt(cold_fit_ul, "%.2f").c_str(), fmt(secs_100k_ours, "%.2f").c_str(),
      note_100k.empty() ? fmt(secs_100k_ul, "%.2f").c_str() : "na");
  return 0;
}
