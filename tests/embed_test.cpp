// The model path: decode -> preprocess -> ONNX Runtime -> pooling, checked against
// ImageNet labels (the conversion gate) and against hand-computed values.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "common/file_io.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "embed/onnx_proto.h"
#include "embed/pooling.h"
#include "embed/preprocess.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace imgsearch;

namespace {

const fs::path kShared = IMGSEARCH_SHARED_DIR;

std::unique_ptr<embed::Embedder> open_embedder(const std::string& layer = "", embed::Pooling p = embed::Pooling::Avg,
                                               const std::string& model = embed::kDefaultModel) {
  embed::Representation rep;
  rep.model = model;
  rep.layer = layer;
  rep.pooling = p;
  auto e = embed::Embedder::open(rep);
  EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error());
  return e.ok() ? std::move(*e) : nullptr;
}

decode::RgbImage load(const fs::path& p, const embed::Embedder& e) {
  auto bytes = read_file_bytes(p);
  EXPECT_TRUE(bytes.ok()) << p;
  auto img = decode::decode_image(*bytes, e.decode_options());
  EXPECT_TRUE(img.ok()) << p << ": " << (img.ok() ? "" : img.error());
  return img.ok() ? std::move(*img) : decode::RgbImage{};
}

}  // namespace

// The conversion gate: a wrong padding, normalisation or weight layout shows up here.
// Run for every bundled model, each at its own input size (224, 240, 260), so a path that
// assumed 224 anywhere (decode target, crop, tensor shape) fails here.
class ClassifyGate : public ::testing::TestWithParam<std::string> {};

TEST_P(ClassifyGate, ImageNetSampleTop1AndTop5) {
  decode::decode_init();
  auto e = open_embedder("", embed::Pooling::Avg, GetParam());
  ASSERT_TRUE(e);
  // wnid -> class index, from the model's own label order (data/imagenet-classes.tsv).
  std::map<std::string, int> index_of;
  std::ifstream tsv(fs::path(IMGSEARCH_SOURCE_DIR) / "data" / "imagenet-classes.tsv");
  std::string line;
  std::getline(tsv, line);  // header
  while (std::getline(tsv, line)) {
    const auto t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    index_of[line.substr(t1 + 1, t2 - t1 - 1)] = std::stoi(line.substr(0, t1));
  }
  ASSERT_EQ(index_of.size(), 1000u);
  int n = 0, top1 = 0, top5 = 0;
  std::vector<fs::path> files;
  for (const auto& f : fs::directory_iterator(kShared / "photos" / "imagenet-sample")) files.push_back(f.path());
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 250u);
  for (size_t start = 0; start < files.size(); start += 16) {
    std::vector<decode::RgbImage> imgs;
    std::vector<int> truth;
    for (size_t i = start; i < std::min(files.size(), start + 16); ++i) {
      imgs.push_back(load(files[i], *e));
      truth.push_back(index_of.at(files[i].filename().string().substr(0, 9)));
    }
    std::vector<const decode::RgbImage*> ptrs;
    for (auto& im : imgs) ptrs.push_back(&im);
    auto top = e->classify(ptrs, 5);
    ASSERT_TRUE(top.ok()) << top.error();
    for (size_t i = 0; i < imgs.size(); ++i, ++n) {
      top1 += (*top)[i][0].index == truth[i];
      for (const auto& c : (*top)[i]) top5 += c.index == truth[i];
    }
  }
  const double acc1 = double(top1) / n, acc5 = double(top5) / n;
  std::printf("%s, imagenet-sample (%d photos, input %d): top-1 %.3f, top-5 %.3f\n", GetParam().c_str(), n,
              e->model().input_size, acc1, acc5);
  EXPECT_GE(acc1, 0.80);
  EXPECT_GE(acc5, 0.95);
}

INSTANTIATE_TEST_SUITE_P(Models, ClassifyGate,
                         ::testing::Values("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"),
                         [](const auto& info) { return info.param.substr(info.param.size() - 5); });

TEST(Embedder, VectorsAreUnitLengthAndBatchIndependent) {
  decode::decode_init();
  auto e = open_embedder();
  ASSERT_TRUE(e);
  EXPECT_EQ(e->dim(), 1280u);
  EXPECT_EQ(e->representation().layer, "head");
  auto a = load(kShared / "photos" / "scenes" / "dog.jpg", *e);
  auto b = load(kShared / "photos" / "caltech20" / "llama" / "image_0003.jpg", *e);
  const decode::RgbImage* both[] = {&a, &b};
  const decode::RgbImage* only_b[] = {&b};
  auto v2 = e->embed(both);
  auto v1 = e->embed(only_b);
  ASSERT_TRUE(v2.ok() && v1.ok());
  double norm = 0, max_diff = 0;
  for (size_t j = 0; j < 1280; ++j) {
    norm += double((*v2)[j]) * (*v2)[j];
    max_diff = std::max(max_diff, double(std::abs((*v2)[1280 + j] - (*v1)[j])));
  }
  EXPECT_NEAR(norm, 1.0, 1e-4);
  EXPECT_LT(max_diff, 1e-4);  // an image's vector does not depend on its batch mates
}

TEST(Embedder, EarlierLayersAndOtherPoolings) {
  decode::decode_init();
  auto stem = open_embedder("stem", embed::Pooling::Max);
  ASSERT_TRUE(stem);
  EXPECT_EQ(stem->dim(), 32u);
  auto img = load(kShared / "photos" / "scenes" / "dog.jpg", *stem);
  const decode::RgbImage* one[] = {&img};
  auto v = stem->embed(one);
  ASSERT_TRUE(v.ok()) << v.error();
  EXPECT_EQ(v->size(), 32u);

  embed::Representation bad;
  bad.layer = "no_such_layer";
  auto e = embed::Embedder::open(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().find("has no layer 'no_such_layer'"), std::string::npos) << e.error();
  EXPECT_NE(e.error().find("block_00"), std::string::npos) << "the error lists the layers: " << e.error();

  embed::Representation missing;
  missing.model = "resnet-9000";
  auto m = embed::Embedder::open(missing);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().find("efficientnet-lite0"), std::string::npos) << "lists installed models: " << m.error();
}

// eval's sweeps pool many layers from one inference: each must equal what an Embedder
// for that single representation gives (before normalisation).
TEST(Embedder, OneRunForManyLayersEqualsOneRunPerLayer) {
  decode::decode_init();
  auto e = open_embedder();
  ASSERT_TRUE(e);
  auto a = load(kShared / "photos" / "scenes" / "dog.jpg", *e);
  auto b = load(kShared / "photos" / "caltech20" / "watch" / "image_0001.jpg", *e);
  const decode::RgbImage* imgs[] = {&a, &b};
  const std::vector<embed::FeatureRequest> reqs = {{"head", embed::Pooling::Max},
                                                   {"block_03", embed::Pooling::Avg},
                                                   {"head", embed::Pooling::Gem},
                                                   {"block_15", embed::Pooling::None}};
  auto all = e->extract(imgs, reqs);
  ASSERT_TRUE(all.ok()) << all.error();
  for (size_t r = 0; r < reqs.size(); ++r) {
    auto single = open_embedder(reqs[r].layer, reqs[r].pooling);
    ASSERT_TRUE(single);
    auto v = single->embed(imgs);
    ASSERT_TRUE(v.ok());
    const size_t d = single->dim();
    ASSERT_EQ((*all)[r].size(), 2 * d) << reqs[r].layer;
    for (size_t i = 0; i < 2; ++i) {
      std::vector<float> x((*all)[r].begin() + i * d, (*all)[r].begin() + (i + 1) * d);
      embed::l2_normalize(x.data(), d);
      for (size_t j = 0; j < d; ++j) ASSERT_NEAR(x[j], (*v)[i * d + j], 1e-5) << reqs[r].layer << " " << j;
    }
  }
  auto bad = e->extract(imgs, std::vector<embed::FeatureRequest>{{"nope", embed::Pooling::Avg}});
  EXPECT_FALSE(bad.ok());
}

TEST(Pooling, MatchesHandComputedValues) {
  // 2 channels, 2 x 2 map.
  const float map[] = {1, 2, 3, 6, /* channel 1 */ -1, -2, 0, 3};
  float out[8];
  embed::pool(map, 2, 2, 2, embed::Pooling::Avg, out);
  EXPECT_FLOAT_EQ(out[0], 3.f);
  EXPECT_FLOAT_EQ(out[1], 0.f);
  embed::pool(map, 2, 2, 2, embed::Pooling::Max, out);
  EXPECT_FLOAT_EQ(out[0], 6.f);
  EXPECT_FLOAT_EQ(out[1], 3.f);
  embed::pool(map, 2, 2, 2, embed::Pooling::Gem, out);
  EXPECT_NEAR(out[0], std::cbrt((1 + 8 + 27 + 216) / 4.0), 1e-5);
  EXPECT_NEAR(out[1], std::cbrt(27 / 4.0), 1e-5);  // negatives clamp to 0
  embed::pool(map, 2, 2, 2, embed::Pooling::None, out);
  EXPECT_TRUE(std::equal(map, map + 8, out));
  EXPECT_EQ(embed::pooled_dim(embed::Pooling::None, 1280, 7, 7), 1280u * 49);
  float v[] = {3, 4};
  embed::l2_normalize(v, 2);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  float z[] = {0, 0};
  embed::l2_normalize(z, 2);  // left as is, no NaN
  EXPECT_EQ(z[0], 0.f);
}

TEST(Preprocess, CropsTheCentreAndNormalises) {
  embed::ModelSpec spec;
  spec.input_size = 4;
  spec.resize_short_side = 6;
  // 8 x 6 image whose pixel value encodes x; the 4x4 centre crop starts at x = 2, y = 1.
  decode::RgbImage img{8, 6, std::vector<uint8_t>(8 * 6 * 3)};
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 8; ++x)
      for (int c = 0; c < 3; ++c) img.pixels[size_t((y * 8 + x) * 3 + c)] = uint8_t(10 * x + c);
  std::vector<float> out(3 * 16);
  embed::preprocess(img, spec, out.data());
  for (int c = 0; c < 3; ++c)
    for (int x = 0; x < 4; ++x)
      EXPECT_FLOAT_EQ(out[size_t(c * 16 + 1 * 4 + x)], (10.f * (x + 2) + c - 127.f) / 128.f) << c << "," << x;
  // A larger image is resampled, not cropped smaller: a constant image stays constant.
  decode::RgbImage flat{30, 20, std::vector<uint8_t>(30 * 20 * 3, 200)};
  embed::preprocess(flat, spec, out.data());
  for (float v : out) EXPECT_FLOAT_EQ(v, (200.f - 127.f) / 128.f);
}

// ---------------------------------------------------------------------------------------
// Bring your own ONNX model: small graphs written here byte by byte (embed/onnx_proto.h's
// Writer), installed with `imgsearch models add` into a temporary models directory, then
// indexed and searched with; and graphs that must be refused, with the reason named.
namespace {

using embed::onnx::Writer;
const fs::path kBinary = fs::path(IMGSEARCH_BINARY_DIR) / "imgsearch";

using test_util::CliRun;
using test_util::slurp;
CliRun run_cli(const std::vector<std::string>& args) { return test_util::run_binary(kBinary, args); }

// onnx.proto field numbers used below.
std::string tensor(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& values) {
  Writer t;
  for (int64_t d : dims) t.int64(1, d);  // dims
  t.varint(2, 1);                        // data_type FLOAT
  t.bytes(8, name);
  t.bytes(9, std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float)));  // raw_data
  return t.data();
}

std::string attr_ints(const std::string& name, const std::vector<int64_t>& v) {
  Writer a;
  a.bytes(1, name).varint(20, 7);  // type INTS
  for (int64_t x : v) a.int64(8, x);
  return a.data();
}

std::string attr_int(const std::string& name, int64_t v) {
  Writer a;
  a.bytes(1, name).varint(20, 2).int64(3, v);  // type INT
  return a.data();
}

std::string node(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                 const std::vector<std::string>& attrs = {}, const std::string& domain = "") {
  Writer n;
  for (const auto& i : in) n.bytes(1, i);
  for (const auto& o : out) n.bytes(2, o);
  n.bytes(3, out[0] + "_node").bytes(4, op);
  for (const auto& a : attrs) n.bytes(5, a);
  if (!domain.empty()) n.bytes(7, domain);
  return n.data();
}

// dims < 0: the symbolic batch "N".
std::string value_info(const std::string& name, const std::vector<int64_t>& dims) {
  Writer shape;
  for (int64_t d : dims) {
    Writer dim;
    if (d < 0)
      dim.bytes(2, "N");
    else
      dim.int64(1, d);
    shape.message(1, dim);
  }
  Writer tt;
  tt.varint(1, 1).message(2, shape);
  Writer type;
  type.message(1, tt);
  Writer vi;
  vi.bytes(1, name).message(2, type);
  return vi.data();
}

std::vector<float> weights(size_t n, uint32_t seed) {
  std::vector<float> w(n);
  for (auto& v : w) {
    seed = seed * 1664525u + 1013904223u;
    v = (float(seed >> 8) / float(1 << 24) - 0.5f) * 0.5f;
  }
  return w;
}

struct Graph {
  std::vector<std::string> nodes, inits, inputs, outputs;
  std::vector<std::pair<std::string, int64_t>> opsets = {{"", 17}};
};

std::string model_bytes(const Graph& g) {
  Writer graph;
  for (const auto& n : g.nodes) graph.bytes(1, n);
  graph.bytes(2, "tiny");
  for (const auto& t : g.inits) graph.bytes(5, t);
  for (const auto& i : g.inputs) graph.bytes(11, i);
  for (const auto& o : g.outputs) graph.bytes(12, o);
  Writer m;
  m.int64(1, 8).bytes(2, "imgsearch-test").message(7, graph);
  for (const auto& [domain, version] : g.opsets) {
    Writer op;
    op.bytes(1, domain).int64(2, version);
    m.message(8, op);
  }
  return m.data();
}

// A small CNN: conv s2 -> relu -> conv s2 -> relu -> residual 1x1 conv + add -> global
// pool -> flatten -> linear (10 classes). nhwc: the input is [N, 64, 64, 3] and transposed
// in the graph, so with the same weights it must give the same vectors as the NCHW one.
// "r1_nhwc" is r1 transposed to [N, 32, 32, 8]: an NHWC feature map.
Graph tiny_cnn(bool nhwc) {
  Graph g;
  std::string x = "x";
  if (nhwc) {
    g.nodes.push_back(node("Transpose", {"x"}, {"x_nchw"}, {attr_ints("perm", {0, 3, 1, 2})}));
    x = "x_nchw";
  }
  g.inits = {tensor("w1", {8, 3, 3, 3}, weights(8 * 27, 1)),
             tensor("b1", {8}, weights(8, 2)),
             tensor("w2", {24, 8, 3, 3}, weights(24 * 72, 3)),
             tensor("b2", {24}, weights(24, 4)),
             tensor("w3", {24, 24, 1, 1}, weights(576, 5)),
             tensor("w4", {10, 24}, weights(240, 6)),
             tensor("b4", {10}, weights(10, 7))};
  const auto conv_attrs = std::vector<std::string>{attr_ints("strides", {2, 2}), attr_ints("pads", {1, 1, 1, 1}),
                                                   attr_ints("kernel_shape", {3, 3})};
  g.nodes.push_back(node("Conv", {x, "w1", "b1"}, {"c1"}, conv_attrs));
  g.nodes.push_back(node("Relu", {"c1"}, {"r1"}));
  g.nodes.push_back(node("Transpose", {"r1"}, {"r1_nhwc"}, {attr_ints("perm", {0, 2, 3, 1})}));
  g.nodes.push_back(node("Conv", {"r1", "w2", "b2"}, {"c2"}, conv_attrs));
  g.nodes.push_back(node("Relu", {"c2"}, {"r2"}));
  g.nodes.push_back(node("Conv", {"r2", "w3"}, {"c3"}));
  g.nodes.push_back(node("Add", {"r2", "c3"}, {"res"}));
  g.nodes.push_back(node("GlobalAveragePool", {"res"}, {"gap"}));
  g.nodes.push_back(node("Flatten", {"gap"}, {"flat"}, {attr_int("axis", 1)}));
  g.nodes.push_back(node("Gemm", {"flat", "w4", "b4"}, {"logits"}, {attr_int("transB", 1)}));
  g.inputs = {value_info("x", nhwc ? std::vector<int64_t>{-1, 64, 64, 3} : std::vector<int64_t>{-1, 3, 64, 64})};
  g.outputs = {value_info("logits", {-1, 10})};
  return g;
}

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
}

class ModelsAdd : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("imgsearch_models_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "models");
    // models_dir() and the binary both read $IMGSEARCH_MODELS.
    ::setenv("IMGSEARCH_MODELS", (root_ / "models").c_str(), 1);
  }
  void TearDown() override {
    ::unsetenv("IMGSEARCH_MODELS");
    fs::remove_all(root_);
  }
  CliRun add(const std::string& name, const Graph& g, std::vector<std::string> extra = {}) {
    const fs::path file = root_ / (name + ".onnx");
    write(file, model_bytes(g));
    std::vector<std::string> args = {"models", "add",         name,    file.string(),
                                     "--mean", "127,127,127", "--std", "128,128,128"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  }
  fs::path root_;
};

}  // namespace

TEST(OnnxProto, ParsesWhatTheWriterWrote) {
  const std::string bytes = model_bytes(tiny_cnn(false));
  auto m = embed::onnx::parse_model({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ(m->ir_version, 8);
  ASSERT_EQ(m->inputs.size(), 1u);  // initializers are not inputs
  EXPECT_EQ(m->inputs[0].name, "x");
  ASSERT_EQ(m->inputs[0].dims.size(), 4u);
  EXPECT_EQ(m->inputs[0].dims[0].param, "N");
  EXPECT_EQ(m->inputs[0].dims[1].value, 3);
  EXPECT_EQ(m->nodes.size(), 10u);
  EXPECT_EQ(m->nodes[0].op_type, "Conv");
  EXPECT_EQ(m->initializers.size(), 7u);
  auto more = embed::onnx::with_extra_outputs({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                                              std::vector<std::string>{"r1", "res"});
  ASSERT_TRUE(more.ok());
  auto m2 = embed::onnx::parse_model({reinterpret_cast<const uint8_t*>(more->data()), more->size()});
  ASSERT_TRUE(m2.ok());
  ASSERT_EQ(m2->outputs.size(), 3u);
  EXPECT_EQ(m2->outputs[1].name, "r1");
  EXPECT_EQ(m2->outputs[1].elem_type, embed::onnx::kFloat);
  EXPECT_EQ(m2->nodes.size(), m->nodes.size());
  // Pruning the outputs back (what the engine runs when a call asks for fewer): only the
  // kept ones stay, the nodes are untouched.
  auto fewer = embed::onnx::with_only_outputs({reinterpret_cast<const uint8_t*>(more->data()), more->size()},
                                              std::set<std::string>{"r1"});
  ASSERT_TRUE(fewer.ok()) << fewer.error();
  auto m3 = embed::onnx::parse_model({reinterpret_cast<const uint8_t*>(fewer->data()), fewer->size()});
  ASSERT_TRUE(m3.ok()) << m3.error();
  ASSERT_EQ(m3->outputs.size(), 1u);
  EXPECT_EQ(m3->outputs[0].name, "r1");
  EXPECT_EQ(m3->nodes.size(), m->nodes.size());
  EXPECT_EQ(m3->initializers, m->initializers);
  EXPECT_FALSE(embed::onnx::with_only_outputs({reinterpret_cast<const uint8_t*>(bytes.data()), 7}, {"r1"}).ok());
  // Truncated and foreign bytes are refused, never read past the end.
  for (size_t cut : {size_t(1), size_t(7), bytes.size() / 2, bytes.size() - 1}) {
    auto t = embed::onnx::parse_model({reinterpret_cast<const uint8_t*>(bytes.data()), cut});
    EXPECT_FALSE(t.ok()) << cut;
  }
  const std::string jpeg = "\xff\xd8\xff\xe0 not a model";
  auto j = embed::onnx::parse_model({reinterpret_cast<const uint8_t*>(jpeg.data()), jpeg.size()});
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.error().find("not an ONNX model"), std::string::npos) << j.error();
}

TEST_F(ModelsAdd, InstallsListsIndexesAndSearches) {
  CliRun r = add("tiny", tiny_cnn(false), {"--input-size", "64"});
  ASSERT_EQ(r.code, 0) << r.err << r.out;
  // The report lists the layers it found, with their shapes.
  EXPECT_NE(r.out.find("res"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("24 x  16 x  16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Conv x3"), std::string::npos) << r.out;
  ASSERT_TRUE(fs::exists(root_ / "models" / "tiny" / "model.onnx"));

  CliRun list = run_cli({"models", "list", "--json"});
  ASSERT_EQ(list.code, 0) << list.err;
  auto models = nlohmann::json::parse(list.out);
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0]["name"], "tiny");
  EXPECT_EQ(models[0]["default_layer"], "res");  // the last spatial map
  std::map<std::string, nlohmann::json> layers;
  for (const auto& l : models[0]["layers"]) layers[l["name"]] = l;
  ASSERT_TRUE(layers.count("res")) << list.out;
  EXPECT_EQ(layers["res"]["channels"], 24);
  EXPECT_EQ(layers["res"]["height"], 16);
  ASSERT_TRUE(layers.count("gap")) << "vectors are layers too: " << list.out;
  EXPECT_FALSE(layers.count("flat")) << "a reshape of gap is not a second layer";
  CliRun plain = run_cli({"models"});
  EXPECT_EQ(plain.code, 0);
  EXPECT_NE(plain.out.find("tiny  (input 64x64 NCHW, default layer res)"), std::string::npos) << plain.out;

  // Index six photos of two classes with it, then search.
  const fs::path photos = root_ / "photos";
  for (const char* cls : {"llama", "watch"})
    for (const char* img : {"image_0001.jpg", "image_0002.jpg", "image_0003.jpg"}) {
      fs::create_directories(photos / cls);
      fs::copy_file(kShared / "photos" / "caltech20" / cls / img, photos / cls / img);
    }
  const fs::path db = root_ / "tiny.imgsearch";
  CliRun idx = run_cli({"index", photos.string(), "--db", db.string(), "--model", "tiny", "--quiet"});
  ASSERT_EQ(idx.code, 0) << idx.err << idx.out;
  const fs::path query = photos / "watch" / "image_0002.jpg";
  CliRun s = run_cli({"search", query.string(), "--db", db.string(), "-k", "3", "--json"});
  ASSERT_EQ(s.code, 0) << s.err;
  auto j = nlohmann::json::parse(s.out);
  ASSERT_EQ(j["results"].size(), 3u);
  EXPECT_EQ(j["results"][0]["path"], query.string());
  EXPECT_NEAR(j["results"][0]["score"].get<double>(), 1.0, 1e-4);
  // Another layer of the same model, chosen at index time.
  CliRun idx2 = run_cli({"index", photos.string(), "--db", (root_ / "tiny-r1.imgsearch").string(), "--model", "tiny",
                         "--layer", "gap", "--pool", "max", "--quiet"});
  EXPECT_EQ(idx2.code, 0) << idx2.err;

  // The same name again is refused unless --force.
  CliRun again = add("tiny", tiny_cnn(false), {"--input-size", "64"});
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  EXPECT_EQ(add("tiny", tiny_cnn(false), {"--force"}).code, 0) << "the input size is read from the graph";
}

TEST_F(ModelsAdd, NhwcInputAndNhwcMapsGiveTheSameVectors) {
  ASSERT_EQ(add("tiny-nchw", tiny_cnn(false), {"--layers", "all"}).code, 0);
  CliRun r = add("tiny-nhwc", tiny_cnn(true), {"--layers", "all"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("NHWC, 64x64"), std::string::npos) << "layout read from [N, 64, 64, 3]: " << r.out;
  auto nhwc = embed::find_model("tiny-nhwc");
  ASSERT_TRUE(nhwc.ok()) << nhwc.error();
  EXPECT_EQ(nhwc->layout, embed::Layout::NHWC);
  const auto* t = nhwc->find_layer("r1_nhwc");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->layout, embed::Layout::NHWC);
  EXPECT_EQ(t->channels, 8);
  EXPECT_EQ(t->height, 32);

  decode::decode_init();
  auto open = [](const std::string& model) {
    embed::Representation rep;
    rep.model = model;
    auto e = embed::Embedder::open(rep);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error());
    return e.ok() ? std::move(*e) : nullptr;
  };
  auto a = open("tiny-nchw"), b = open("tiny-nhwc");
  ASSERT_TRUE(a && b);
  auto img1 = load(kShared / "photos" / "scenes" / "dog.jpg", *a);
  auto img2 = load(kShared / "photos" / "caltech20" / "llama" / "image_0003.jpg", *a);
  const decode::RgbImage* imgs[] = {&img1, &img2};
  const std::vector<embed::FeatureRequest> reqs = {
      {"res", embed::Pooling::Avg}, {"r1", embed::Pooling::Max}, {"logits", embed::Pooling::Avg}};
  auto va = a->extract(imgs, reqs);
  auto vb = b->extract(imgs, reqs);
  ASSERT_TRUE(va.ok() && vb.ok()) << (va.ok() ? vb.error() : va.error());
  for (size_t r2 = 0; r2 < reqs.size(); ++r2)
    for (size_t i = 0; i < (*va)[r2].size(); ++i) ASSERT_NEAR((*va)[r2][i], (*vb)[r2][i], 1e-4) << reqs[r2].layer;
  // An NHWC map pools like its NCHW twin: r1_nhwc is r1 transposed.
  const std::vector<embed::FeatureRequest> twins = {{"r1", embed::Pooling::Avg},  {"r1_nhwc", embed::Pooling::Avg},
                                                    {"r1", embed::Pooling::None}, {"r1_nhwc", embed::Pooling::None},
                                                    {"r1", embed::Pooling::Gem},  {"r1_nhwc", embed::Pooling::Gem}};
  auto tw = a->extract(imgs, twins);
  ASSERT_TRUE(tw.ok()) << tw.error();
  for (size_t p = 0; p < twins.size(); p += 2) {
    ASSERT_EQ((*tw)[p].size(), (*tw)[p + 1].size());
    for (size_t i = 0; i < (*tw)[p].size(); ++i) ASSERT_NEAR((*tw)[p][i], (*tw)[p + 1][i], 1e-5) << p << " " << i;
  }
}

TEST_F(ModelsAdd, RefusesUnsupportedGraphsNamingTheReason) {
  // An operator ONNX does not define.
  Graph bad = tiny_cnn(false);
  bad.nodes[7] = node("FancyPool", {"res"}, {"gap"});
  CliRun r = add("bad", bad, {});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unsupported operator FancyPool"), std::string::npos) << r.err;
  // A custom-domain operator no runtime here implements.
  Graph custom = tiny_cnn(false);
  custom.nodes[1] = node("MagicNorm", {"c1"}, {"r1"}, {}, "com.example");
  custom.opsets.push_back({"com.example", 1});
  r = add("custom", custom, {});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("com.example:MagicNorm"), std::string::npos) << r.err;
  // A grey 28x28 input is not a colour image.
  Graph grey = tiny_cnn(false);
  grey.inputs = {value_info("x", {-1, 1, 28, 28})};
  r = add("grey", grey, {});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("3 colour channels"), std::string::npos) << r.err;
  // A 2-D input is not an image.
  Graph flat = tiny_cnn(false);
  flat.inputs = {value_info("x", {-1, 12288})};
  r = add("flat", flat, {});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("need a 4-D float image input"), std::string::npos) << r.err;
  // Not ONNX at all.
  write(root_ / "junk.onnx", "this is a text file, not a model\n");
  r = run_cli({"models", "add", "junk", (root_ / "junk.onnx").string(), "--mean", "0,0,0", "--std", "1,1,1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not an ONNX model"), std::string::npos) << r.err;
  // Nothing half-installed is left behind.
  EXPECT_TRUE(embed::installed_models().empty());
  for (const auto& e : fs::directory_iterator(root_ / "models")) ADD_FAILURE() << "left behind: " << e.path();
}
