// eval: ranking metrics against hand-computed values, the linear probe on synthetic data,
// the feature cache's invalidation, sweeps that run each model once, the CLI's outputs,
// and the bars on caltech20 (layer trend, probe accuracy of the default representation).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "eval/feature_cache.h"
#include "eval/folder_eval.h"
#include "eval/plot.h"
#include "eval/probe.h"
#include "eval/retrieval.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace imgsearch;

namespace {

const fs::path kShared = IMGSEARCH_SHARED_DIR;
const fs::path kBinary = fs::path(IMGSEARCH_BINARY_DIR) / "imgsearch";
// Filled by the ctest fixture eval_fixture_caltech20 (tests/CMakeLists.txt), which runs the
// sweep the caltech20 tests read; run alone, a test extracts what it lacks itself.
const fs::path kCaltechCache = fs::path(IMGSEARCH_TEST_DATA) / "eval-cache";

using test_util::CliRun;
using test_util::slurp;
CliRun run_cli(const std::vector<std::string>& args) { return test_util::run_binary(kBinary, args); }

// Deterministic pseudo-random numbers (no <random>: its distributions differ by library).
struct Lcg {
  uint64_t s;
  double uniform() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return double(s >> 11) / double(uint64_t(1) << 53);
  }
  double normal() {  // Box-Muller
    const double u = std::max(uniform(), 1e-12), v = uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

using test_util::TempDir;

// DIR/<class>/<image>: `per_class` photos of each of `classes`, copied from caltech20.
fs::path small_labelled_folder(const fs::path& root, const std::vector<std::string>& classes, int per_class) {
  const fs::path dir = root / "photos";
  for (const auto& c : classes) {
    fs::create_directories(dir / c);
    for (int i = 1; i <= per_class; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "image_%04d.jpg", i);
      fs::copy_file(kShared / "photos" / "caltech20" / c / name, dir / c / name);
    }
  }
  return dir;
}

const eval::ConfigResult* find(const eval::SweepResult& r, const std::string& layer, embed::Pooling p,
                               index::Metric m) {
  for (const auto& c : r.configs)
    if (c.layer == layer && c.pooling == p && c.metric == m) return &c;
  return nullptr;
}

}  // namespace

TEST(Retrieval, MatchesHandComputedRanking) {
  // Four 2-D points: two of class 0 near (1, 0), two of class 1 near (0, 1).
  const float x[] = {1, 0, 0.9f, 0.1f, 0, 1, 0.2f, 0.8f};
  const int labels[] = {0, 0, 1, 1};
  const std::string names[] = {"a", "b"};
  for (auto m : {index::Metric::Cosine, index::Metric::L2, index::Metric::InnerProduct}) {
    auto r = eval::evaluate_retrieval(x, 4, 2, labels, names, m, {1, 2});
    EXPECT_DOUBLE_EQ(r.precision[0], 1.0) << index::metric_name(m);  // nearest is always the same class
    EXPECT_DOUBLE_EQ(r.precision[1], 0.5);                           // 1 relevant among the 2 nearest
    EXPECT_DOUBLE_EQ(r.mean_average_precision, 1.0);
  }
  // A score matrix where query 0 ranks the wrong class first: AP = (1/2) for its one hit.
  const float s[] = {0, 0.1f, 0.9f, 0.2f, /**/ 0.1f, 0, 0, 0, /**/ 0, 0, 0, 1, /**/ 0, 0, 1, 0};
  auto r = eval::evaluate_ranking(s, 4, labels, names, {1});
  EXPECT_DOUBLE_EQ(r.per_class[0].precision[0], 0.5);  // query 0 wrong, query 1 right
  EXPECT_NEAR(r.per_class[0].average_precision, (1.0 / 3 + 1.0) / 2, 1e-12);
}

TEST(Retrieval, GramMatrixScoresAgreeWithDirectOnes) {
  Lcg rng{7};
  const int n = 40, d = 24;
  std::vector<float> x(size_t(n) * d);
  for (auto& v : x) v = float(rng.normal());
  for (auto m : {index::Metric::Cosine, index::Metric::L2, index::Metric::InnerProduct}) {
    const auto s = eval::similarity_matrix(x.data(), n, d, m);
    for (int i = 0; i < n; i += 7)
      for (int j = 0; j < n; j += 5) {
        double dot = 0, ni = 0, nj = 0, l2 = 0;
        for (int k = 0; k < d; ++k) {
          const double a = x[size_t(i) * d + k], b = x[size_t(j) * d + k];
          dot += a * b, ni += a * a, nj += b * b, l2 += (a - b) * (a - b);
        }
        const double want = m == index::Metric::L2 ? -l2 : m == index::Metric::Cosine ? dot / std::sqrt(ni * nj) : dot;
        EXPECT_NEAR(s[size_t(i) * n + j], want, 1e-4 * std::max(1.0, std::abs(want)));
      }
  }
}

TEST(Probe, SeparatesSeparableClassesAndNotNoise) {
  // 5 classes x 30 points in 20-D: class means 3 apart, unit noise.
  Lcg rng{42};
  const int k = 5, per = 30, d = 20, n = k * per;
  std::vector<float> x(size_t(n) * d);
  std::vector<int> labels(n), shuffled(n);
  std::vector<std::vector<double>> means(k, std::vector<double>(d));
  for (auto& m : means)
    for (auto& v : m) v = 1.5 * rng.normal();
  for (int i = 0; i < n; ++i) {
    labels[i] = i % k;
    for (int j = 0; j < d; ++j) x[size_t(i) * d + j] = float(means[size_t(labels[i])][size_t(j)] + rng.normal());
  }
  auto r = eval::linear_probe(x.data(), n, d, labels, k);
  EXPECT_GE(r.accuracy, 0.9);
  EXPECT_EQ(r.fold_accuracy.size(), 5u);
  EXPECT_EQ(r.per_class.size(), size_t(k));
  // Deterministic: the same input gives exactly the same result.
  auto again = eval::linear_probe(x.data(), n, d, labels, k);
  EXPECT_EQ(r.accuracy, again.accuracy);
  EXPECT_EQ(r.mean_iterations, again.mean_iterations);
  // Labels unrelated to the features: held-out accuracy stays near chance (1/5), which it
  // would not if test points leaked into training or standardisation.
  Lcg pick{3};
  for (int i = 0; i < n; ++i) shuffled[i] = int(pick.uniform() * k) % k;
  auto noise = eval::linear_probe(x.data(), n, d, shuffled, k);
  EXPECT_LT(noise.accuracy, 0.4);
}

TEST(FeatureCache, KeepsVectorsUntilTheFileOrTheModelChanges) {
  TempDir tmp;
  const fs::path file = tmp.path() / "cache.sqlite";
  std::vector<eval::FileState> files = {{"/a.jpg", 10, 100}, {"/b.jpg", 20, 200}, {"/c.jpg", 30, 300}};
  const std::vector<float> va = {1, 2, 3}, vb = {4, 5, 6};
  {
    auto c = eval::FeatureCache::open(file, "model-v1");
    ASSERT_TRUE(c.ok()) << c.error();
    auto st = (*c)->sync(files);
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE((*st)[0].have.empty());
    const eval::VectorRow rows[] = {{(*st)[0].id, "head", "avg", va}, {(*st)[1].id, "head", "avg", vb}};
    const std::pair<int64_t, std::string> err[] = {{(*st)[2].id, "truncated JPEG"}};
    ASSERT_TRUE((*c)->put(rows, err).ok());
    auto x = (*c)->load({(*st)[1].id, (*st)[0].id}, "head", "avg", 3);
    ASSERT_TRUE(x.ok()) << x.error();
    EXPECT_EQ(*x, (std::vector<float>{4, 5, 6, 1, 2, 3}));           // in the order asked
    EXPECT_FALSE((*c)->load({(*st)[0].id}, "head", "max", 3).ok());  // never stored
    EXPECT_FALSE((*c)->load({(*st)[0].id}, "head", "avg", 4).ok());  // wrong size
  }
  {
    auto c = eval::FeatureCache::open(file, "model-v1");
    ASSERT_TRUE(c.ok());
    auto st = (*c)->sync(files);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ((*st)[2].error, "truncated JPEG") << "a failure is remembered, not retried";
  }
  {
    auto c = eval::FeatureCache::open(file, "model-v1");
    ASSERT_TRUE(c.ok());
    files[1].mtime_ns = 201;  // b.jpg was rewritten, and c.jpg
    files[2].size = 31;
    auto st = (*c)->sync(files);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ((*st)[0].have.count({"head", "avg"}), 1u);
    EXPECT_TRUE((*st)[1].have.empty()) << "a changed file loses its vectors";
    EXPECT_TRUE((*st)[2].error.empty()) << "and its error: it is tried again";
  }
  {
    auto c = eval::FeatureCache::open(file, "model-v2");  // the model changed
    ASSERT_TRUE(c.ok());
    auto st = (*c)->sync(files);
    ASSERT_TRUE(st.ok());
    EXPECT_TRUE((*st)[0].have.empty()) << "another model's vectors are not reused";
  }
}

// One model pass per sweep, all layers and poolings from it; a rerun extracts nothing; a
// changed photo is re-extracted alone; a new layer costs one more pass, not one per layer.
TEST(Sweep, RunsEachModelOncePerImageAndReusesTheCache) {
  TempDir tmp;
  const fs::path dir = small_labelled_folder(tmp.path(), {"llama", "watch", "sunflower"}, 4);
  eval::SweepOptions o;
  o.models = {"lite0"};  // short name of efficientnet-lite0
  o.layers = {"block_00", "default"};
  o.poolings = {embed::Pooling::Avg, embed::Pooling::Max};
  o.metrics = {index::Metric::Cosine, index::Metric::L2};
  o.cache_root = tmp.path() / "cache";
  o.progress = Progress::Style::Quiet;
  auto r = eval::evaluate_sweep(dir, o);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->images, 12);
  EXPECT_EQ(r->classes, (std::vector<std::string>{"llama", "sunflower", "watch"}));
  ASSERT_EQ(r->passes.size(), 1u);
  EXPECT_EQ(r->passes[0].model, "efficientnet-lite0");
  EXPECT_EQ(r->passes[0].extracted, 12);
  ASSERT_EQ(r->configs.size(), 8u);            // 2 layers x 2 poolings x 2 metrics
  EXPECT_EQ(r->configs[0].layer, "block_00");  // depth order
  EXPECT_EQ(r->configs.back().layer, "head");
  EXPECT_EQ(find(*r, "head", embed::Pooling::Avg, index::Metric::Cosine)->dim, 1280);
  EXPECT_TRUE(find(*r, "head", embed::Pooling::Avg, index::Metric::Cosine)->is_default);
  EXPECT_FALSE(find(*r, "head", embed::Pooling::Max, index::Metric::Cosine)->is_default);

  auto again = eval::evaluate_sweep(dir, o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->passes[0].extracted, 0);
  EXPECT_EQ(again->passes[0].cached, 12);
  for (size_t i = 0; i < r->configs.size(); ++i)
    EXPECT_EQ(r->configs[i].retrieval.precision, again->configs[i].retrieval.precision);

  // Replace one photo by another class's: only it is run again.
  fs::copy_file(kShared / "photos" / "caltech20" / "watch" / "image_0010.jpg", dir / "llama" / "image_0001.jpg",
                fs::copy_options::overwrite_existing);
  auto changed = eval::evaluate_sweep(dir, o);
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(changed->passes[0].extracted, 1);

  // A file that is not an image is skipped with its reason, the rest is scored.
  std::ofstream(dir / "watch" / "broken.jpg") << "not a jpeg";
  o.layers = {"block_00", "stem", "head"};
  auto more = eval::evaluate_sweep(dir, o);
  ASSERT_TRUE(more.ok()) << more.error();
  EXPECT_EQ(more->passes[0].extracted, 13) << "one pass over every image for the new layer";
  EXPECT_EQ(more->images, 12);
  ASSERT_EQ(more->skipped.size(), 1u);
  EXPECT_NE(more->skipped[0].path.find("broken.jpg"), std::string::npos);
  EXPECT_EQ(more->configs.size(), 12u);

  // Unknown names fail before any work, naming what exists.
  o.layers = {"block_99"};
  auto bad = eval::evaluate_sweep(dir, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("has no layer 'block_99'"), std::string::npos) << bad.error();
  // --pool none on an early layer over a memory budget is refused with the figure.
  o.layers = {"stem"};
  o.poolings = {embed::Pooling::None};
  o.max_set_bytes = 1 << 20;
  auto big = eval::evaluate_sweep(dir, o);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.error().find("MiB"), std::string::npos) << big.error();
}

TEST(EvalCli, ListsOfRepresentationsInEveryFormat) {
  TempDir tmp;
  const fs::path dir = small_labelled_folder(tmp.path(), {"llama", "watch"}, 3);
  const std::string cache = (tmp.path() / "cache").string();
  const std::vector<std::string> base = {"eval",   dir.string(), "--model",  "lite0",     "--layer", "block_15,head",
                                         "--pool", "avg,max",    "--metric", "cosine,l2", "--cache", cache};
  auto with = [&](std::vector<std::string> extra) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  };
  const fs::path svg = tmp.path() / "plot.svg";
  CliRun j = with({"--json", "--probe", "--plot", svg.string()});
  ASSERT_EQ(j.code, 0) << j.err;
  auto json = nlohmann::json::parse(j.out);
  EXPECT_EQ(json["images"], 6);
  ASSERT_EQ(json["configs"].size(), 8u);
  EXPECT_TRUE(json["configs"][0].contains("probe_accuracy"));
  EXPECT_EQ(json["configs"][0]["per_class"].size(), 2u);
  EXPECT_TRUE(json["best"].contains("precision_at_10"));
  const std::string plot = slurp(svg);
  EXPECT_EQ(plot.rfind("<svg", 0), 0u);
  EXPECT_NE(plot.find("</svg>"), std::string::npos);
  EXPECT_NE(plot.find("<polyline"), std::string::npos);

  CliRun csv = with({"--csv"});
  ASSERT_EQ(csv.code, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("model,layer,pooling,metric,dim,class,count,precision_at_1", 0), 0u) << csv.out;
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 1 + 8 * 3);  // header + (2 classes + ALL) x 8

  CliRun md = with({"--markdown"});
  ASSERT_EQ(md.code, 0) << md.err;
  EXPECT_EQ(md.out.rfind("# Representation sweep on photos", 0), 0u) << md.out;
  EXPECT_NE(md.out.find("imgsearch eval " + dir.string() + " --model lite0 --layer block_15,head"), std::string::npos)
      << "the command that made it is at the top";
  EXPECT_NE(md.out.find("| **best** |"), std::string::npos);

  CliRun text = with({});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("<- best"), std::string::npos) << text.out;
  EXPECT_NE(text.err.find("0 images through the model, 6 from cache"), std::string::npos) << text.err;

  CliRun bad_pool = run_cli({"eval", dir.string(), "--pool", "avg,median", "--cache", cache});
  EXPECT_EQ(bad_pool.code, 2);
  EXPECT_NE(bad_pool.err.find("unknown --pool 'median'"), std::string::npos) << bad_pool.err;
  CliRun bad_model = run_cli({"eval", dir.string(), "--model", "lite0,resnet-9000", "--cache", cache});
  EXPECT_EQ(bad_model.code, 1);
  EXPECT_NE(bad_model.err.find("resnet-9000"), std::string::npos) << bad_model.err;
}

// The bars, on the 600 caltech20 photos (20 classes x 30).
class Caltech20 : public ::testing::Test {
 protected:
  static eval::SweepResult sweep(std::vector<std::string> layers, bool probe) {
    eval::SweepOptions o;
    o.models = {"efficientnet-lite0"};
    o.layers = std::move(layers);
    o.probe = probe;
    o.cache_root = kCaltechCache;
    o.progress = Progress::Style::Quiet;
    auto r = eval::evaluate_sweep(kShared / "photos" / "caltech20", o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
    return r.ok() ? std::move(*r) : eval::SweepResult{};
  }
};

// Early layers see edges and colours, the last ones objects: retrieval by class must get
// clearly better with depth.
TEST_F(Caltech20, EarliestBlockRetrievesFarWorseThanTheLastOnes) {
  auto r = sweep({"block_00", "block_15", "head"}, false);
  ASSERT_EQ(r.images, 600);
  ASSERT_EQ(r.configs.size(), 3u);
  const double p0 = r.configs[0].retrieval.precision[2], p15 = r.configs[1].retrieval.precision[2],
               head = r.configs[2].retrieval.precision[2];
  std::printf("caltech20, Lite0 avg/cosine P@10: block_00 %.3f, block_15 %.3f, head %.3f\n", p0, p15, head);
  EXPECT_LT(p0 + 0.3, p15);
  EXPECT_LT(p0 + 0.3, head);
  EXPECT_GE(head, 0.90);
}

TEST_F(Caltech20, LinearProbeOnTheDefaultRepresentation) {
  auto r = sweep({"default"}, true);
  ASSERT_EQ(r.configs.size(), 1u);
  ASSERT_TRUE(r.configs[0].probe);
  const auto& p = *r.configs[0].probe;
  std::printf("caltech20, Lite0 head/avg linear probe (5-fold): accuracy %.3f (folds", p.accuracy);
  for (double f : p.fold_accuracy) std::printf(" %.3f", f);
  std::printf("), %.0f L-BFGS iterations, %.1f s\n", p.mean_iterations, r.probe_seconds);
  EXPECT_GE(p.accuracy, 0.90);
}
