// The model path: decode -> preprocess -> ONNX Runtime -> pooling, checked against
// ImageNet labels (the conversion gate) and against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>

#include "common/file_io.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "embed/pooling.h"
#include "embed/preprocess.h"

namespace fs = std::filesystem;
using namespace imgsearch;

namespace {

const fs::path kShared = IMGSEARCH_SHARED_DIR;

std::unique_ptr<embed::Embedder> open_embedder(const std::string& layer = "", embed::Pooling p = embed::Pooling::Avg) {
  embed::Representation rep;
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
TEST(ClassifyGate, ImageNetSampleTop1AndTop5) {
  decode::decode_init();
  auto e = open_embedder();
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
  std::printf("imagenet-sample (%d photos): top-1 %.3f, top-5 %.3f\n", n, acc1, acc5);
  EXPECT_GE(acc1, 0.65);
  EXPECT_GE(acc5, 0.85);
}

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
