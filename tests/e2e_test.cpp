// End to end through the real `imgsearch` binary on real photos (../shared/photos):
// index, search, incremental re-run, a second folder with odd files, and CLI errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "catalog/catalog.h"
#include "common/file_io.h"
#include "decode/decode.h"
#include "eval/folder_eval.h"
#include "eval/retrieval.h"
#include "ingest/ingest.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace imgsearch;

namespace {

const fs::path kShared = IMGSEARCH_SHARED_DIR;
const fs::path kBinary = fs::path(IMGSEARCH_BINARY_DIR) / "imgsearch";

using test_util::CliRun;
using test_util::slurp;
CliRun run_cli(const std::vector<std::string>& args) { return test_util::run_binary(kBinary, args); }

}  // namespace

class EndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("imgsearch_e2e_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    // Built by the ctest fixture e2e_fixture_index_caltech20 (tests/CMakeLists.txt).
    db_ = fs::path(IMGSEARCH_TEST_DATA) / "cal.imgsearch";
    CliRun r = run_cli({"info", "--db", db_.string(), "--json"});
    ASSERT_EQ(r.code, 0) << "run the e2e tests through ctest, which builds the database first: " << r.err;
    ASSERT_EQ(nlohmann::json::parse(r.out)["images"], 600) << r.out;
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  static fs::path root_, db_;
};
fs::path EndToEnd::root_, EndToEnd::db_;

TEST_F(EndToEnd, SearchFindsTheSameClassFirst) {
  const fs::path query = kShared / "photos" / "caltech20" / "llama" / "image_0003.jpg";
  CliRun r = run_cli({"search", query.string(), "--db", db_.string(), "-k", "10", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["query"], query.string());
  ASSERT_EQ(j["results"].size(), 10u);
  EXPECT_EQ(j["results"][0]["path"], query.string());  // the query itself is indexed
  EXPECT_NEAR(j["results"][0]["score"].get<double>(), 1.0, 1e-4);
  int llamas = 0;
  double last = 2;
  for (const auto& h : j["results"]) {
    llamas += h["path"].get<std::string>().find("/llama/") != std::string::npos;
    EXPECT_LE(h["score"].get<double>(), last + 1e-6);  // best first
    last = h["score"].get<double>();
  }
  EXPECT_GE(llamas, 8);
  // Text output: rank, score, path.
  CliRun t = run_cli({"search", query.string(), "--db", db_.string(), "-k", "3"});
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.out.find("  1  1.0000  " + query.string()), std::string::npos) << t.out;
}

TEST_F(EndToEnd, MeanPrecisionAt10OverAll600Queries) {
  auto cat = catalog::Catalog::open(db_, catalog::Catalog::Mode::ReadOnly);
  ASSERT_TRUE(cat.ok()) << cat.error();
  const std::string dir_key = ingest::path_key(kShared / "photos" / "caltech20");
  std::map<int64_t, std::string> cls;
  for (const auto& r : (*cat)->list_images()) cls[r.id] = eval::class_of(r.key, dir_key);
  std::vector<std::string> names;
  for (const auto& [id, c] : cls) names.push_back(c);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  ASSERT_EQ(names.size(), 20u);
  std::vector<float> x;
  std::vector<int> labels;
  auto seq = (*cat)->for_each_vector([&](int64_t id, std::span<const float> v) {
    x.insert(x.end(), v.begin(), v.end());
    labels.push_back(int(std::lower_bound(names.begin(), names.end(), cls.at(id)) - names.begin()));
  });
  ASSERT_TRUE(seq.ok());
  ASSERT_EQ(labels.size(), 600u);
  auto r = eval::evaluate_retrieval(x.data(), 600, 1280, labels, names, index::Metric::Cosine, {1, 5, 10});
  std::printf("caltech20, EfficientNet-Lite0 head/avg/cosine: P@1 %.3f  P@5 %.3f  P@10 %.3f  mAP %.3f\n",
              r.precision[0], r.precision[1], r.precision[2], r.mean_average_precision);
  EXPECT_GE(r.precision[2], 0.80);
}

TEST_F(EndToEnd, HalfSizeQuality70CopyFindsItsOriginalFirst) {
  decode::decode_init();
  for (const char* name : {"llama/image_0003.jpg", "watch/image_0001.jpg", "bonsai/image_0010.jpg"}) {
    const fs::path original = kShared / "photos" / "caltech20" / name;
    auto bytes = read_file_bytes(original);
    ASSERT_TRUE(bytes.ok());
    auto info = decode::probe_image(*bytes);
    ASSERT_TRUE(info.ok());
    decode::DecodeOptions half;
    half.target_short_side = std::min(info->width, info->height) / 2;
    auto small = decode::decode_image(*bytes, half);
    ASSERT_TRUE(small.ok()) << small.error();
    auto jpeg = decode::encode_jpeg(*small, 70);
    ASSERT_TRUE(jpeg.ok());
    const fs::path copy = root_ / "copy.jpg";
    ASSERT_TRUE(write_file_atomic(copy, *jpeg).ok());
    CliRun r = run_cli({"search", copy.string(), "--db", db_.string(), "-k", "1", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["results"][0]["path"], original.string()) << name;
  }
}

TEST_F(EndToEnd, RerunIsIncrementalAndASecondFolderAddsOddFiles) {
  const fs::path db2 = root_ / "both.imgsearch";
  fs::copy(db_, db2, fs::copy_options::recursive);
  CliRun again = run_cli({"index", (kShared / "photos" / "caltech20").string(), "--db", db2.string(), "--json"});
  ASSERT_EQ(again.code, 0) << again.err;
  auto a = nlohmann::json::parse(again.out);
  EXPECT_EQ(a["indexed"], 0);
  EXPECT_EQ(a["unchanged"], 600);

  const fs::path odd = kShared / "photos" / "oddities";
  const fs::path report = root_ / "report.jsonl";
  CliRun r = run_cli({"index", odd.string(), "--db", db2.string(), "--json", "--report", report.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  size_t files = 0;
  for (const auto& f : fs::directory_iterator(odd)) files += f.is_regular_file();
  // Every valid file is indexed; the truncated JPEG is listed with its reason.
  // (video-001.progressive.truncated.jpeg, despite its name, is a complete progressive
  // JPEG with fewer scans and an end marker: libjpeg decodes it without a warning.)
  EXPECT_EQ(j["indexed"], files - 1) << r.out;
  ASSERT_EQ(j["skipped"], 1) << r.out;
  std::set<std::string> skipped;
  for (const auto& s : j["skipped_files"]) {
    skipped.insert(fs::path(s["path"].get<std::string>()).filename().string());
    EXPECT_EQ(s["reason"].get<std::string>().rfind("truncated or corrupt jpeg", 0), 0u) << s;
  }
  EXPECT_EQ(skipped, (std::set<std::string>{"skimage-truncated.jpg"}));
  EXPECT_EQ(j["total_in_database"], 600 + files - 1);
  // The report has one JSON line per skipped file.
  std::ifstream in(report);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) EXPECT_EQ(nlohmann::json::parse(line)["status"], "skipped");
  EXPECT_EQ(lines, 1);
  CliRun info = run_cli({"info", "--db", db2.string(), "--json"});
  ASSERT_EQ(info.code, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(info.out)["vectors_in_index"], 600 + files - 1);
}

TEST_F(EndToEnd, ClassifyNamesTheAnimal) {
  CliRun r = run_cli({"classify", (kShared / "photos" / "imagenet-sample" / "n01514859_hen.JPEG").string(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j[0]["classes"].size(), 5u);
  EXPECT_EQ(j[0]["classes"][0]["label"], "hen");
}

TEST_F(EndToEnd, BadUsageGivesAClearMessageAndNonZeroExit) {
  const fs::path text = root_ / "notes.jpg";
  std::ofstream(text) << "this is text, not a picture\n";
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"search", "x.jpg", "--db", db_.string(), "--frobnicate"}, 2, "--frobnicate"},
      {{"search", text.string()}, 2, "--db is required"},
      {{"index", (kShared / "photos" / "caltech20").string()}, 2, "--db is required"},
      {{"search", (root_ / "missing.jpg").string(), "--db", db_.string()}, 1, "missing.jpg: not found"},
      {{"search", text.string(), "--db", db_.string()}, 1, "notes.jpg: not an image"},
      {{"search", text.string(), "--db", (root_ / "nowhere").string()}, 1, "no imgsearch database"},
      {{"index", (root_ / "no_such_dir").string(), "--db", db_.string()}, 2, "no_such_dir"},
      {{"frobnicate"}, 2, "frobnicate"},
      {{}, 2, "subcommand"},
  };
  for (const auto& c : cases) {
    CliRun r = run_cli(c.args);
    EXPECT_EQ(r.code, c.code) << c.message << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "stderr: " << r.err;
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  }
  CliRun help = run_cli({"search", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("--db"), std::string::npos);
}
