// The web server's API through real HTTP (httplib::Client) against an in-process server
// on an ephemeral 127.0.0.1 port, over a tiny database of six caltech20 photos built here.
// Every bad request must get a clean 4xx JSON error and leave the server up.
#include "server/server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/file_io.h"
#include "database/database.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "ingest/ingest.h"
#include "server/collection.h"
#include "server/map_service.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace imgsearch;

namespace {

const fs::path kCaltech = fs::path(IMGSEARCH_SHARED_DIR) / "photos" / "caltech20";
constexpr uint64_t kMaxUpload = 4u << 20;  // small limits keep the tests fast
constexpr int64_t kMaxPixels = 2'000'000;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

class ServerApi : public ::testing::Test {
 protected:
  // The tiny database is built once and shared by every test process (ctest runs each
  // test in its own). Building or reusing it happens under an exclusive file lock: a
  // process never replaces a database that another one is already serving.
  static fs::path shared_database() {
    const fs::path base = fs::path(IMGSEARCH_TEST_DATA) / "server_test";
    const fs::path photos = base / "photos", db = base / "db.imgsearch";
    fs::create_directories(base);
    const int lock = ::open((base / "lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX) != 0) return ADD_FAILURE() << "cannot lock " << base, fs::path();
    struct Unlock {
      int fd;
      ~Unlock() { ::close(fd); }  // closing releases the lock
    } unlock{lock};
    if (auto r = database::Database::open_for_reading(db); r && (*r)->catalog().count() == 6) return db;
    for (const auto& [cls, files] : std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"llama", {"image_0001.jpg", "image_0002.jpg"}},
             {"sunflower", {"image_0001.jpg", "image_0002.jpg"}},
             {"car_side", {"image_0001.jpg", "image_0002.jpg"}}}) {
      fs::create_directories(photos / cls);
      for (const auto& f : files)
        if (!fs::exists(photos / cls / f)) fs::copy_file(kCaltech / cls / f, photos / cls / f);
    }
    fs::remove_all(db);  // an unusable one from an older build; nobody serves it (we hold the lock)
    {
      database::Settings s;
      auto emb = embed::Embedder::open(s.representation);
      if (!emb) return ADD_FAILURE() << emb.error(), fs::path();
      s.representation = (*emb)->representation();
      s.dim = int((*emb)->dim());
      auto d = database::Database::open_for_writing(db, s);
      if (!d) return ADD_FAILURE() << d.error(), fs::path();
      ingest::Options o;
      o.threads = 2;
      o.progress = Progress::Style::Quiet;
      auto sum = ingest::index_folder(**d, **emb, photos, o);
      if (!sum || sum->indexed != 6) return ADD_FAILURE() << (sum ? "indexed too few" : sum.error()), fs::path();
      if (auto st = (*d)->save_index(); !st) return ADD_FAILURE() << st.error(), fs::path();
    }
    return db;
  }

  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("imgsearch_server_test_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    db_dir_ = shared_database();
    ASSERT_FALSE(db_dir_.empty());
    fs::create_directories(root_ / "web");
    std::ofstream(root_ / "web" / "index.html") << "<!doctype html><title>test ui</title>";

    server::Options o;
    o.db_dir = db_dir_;
    o.port = 0;
    o.web_dir = root_ / "web";
    o.max_upload_bytes = kMaxUpload;
    o.max_upload_pixels = kMaxPixels;
    o.log_requests = false;
    o.threads = 2;
    auto s = server::Server::open(o);
    ASSERT_TRUE(s) << s.error();
    server_ = std::move(*s);
    auto port = server_->bind();
    ASSERT_TRUE(port) << port.error();
    port_ = *port;
    thread_ = std::thread([] { (void)server_->run(); });
    // Wait until it answers.
    for (int i = 0; i < 200; ++i) {
      httplib::Client c("127.0.0.1", port_);
      if (auto r = c.Get("/api/health"); r && r->status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  static void TearDownTestSuite() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
    fs::remove_all(root_);
  }

  httplib::Client client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60);
    c.set_write_timeout(60);
    return c;
  }

  // The answer is a JSON error with this status, and the server still answers after it.
  void expect_error(const httplib::Result& r, int status, const std::string& what) {
    ASSERT_TRUE(r) << what << ": no response (" << httplib::to_string(r.error()) << ")";
    EXPECT_EQ(r->status, status) << what << ": " << r->body;
    EXPECT_NE(r->get_header_value("Content-Type").find("application/json"), std::string::npos) << what;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << what << ": not JSON: " << r->body;
    ASSERT_TRUE(j.contains("error") && j["error"].is_string()) << what << ": " << r->body;
    EXPECT_FALSE(j["error"].get<std::string>().empty()) << what;
    EXPECT_EQ(r->body.find("root:"), std::string::npos) << what << ": leaked a file";
    expect_alive(what);
  }

  void expect_alive(const std::string& after) {
    auto c = client();
    auto h = c.Get("/api/health");
    ASSERT_TRUE(h) << "server down after " << after;
    ASSERT_EQ(h->status, 200) << "after " << after;
    EXPECT_EQ(json::parse(h->body)["status"], "ok");
  }

  json get_json(const std::string& path, int status = 200) {
    auto c = client();
    auto r = c.Get(path);
    EXPECT_TRUE(r) << path;
    if (!r) return {};
    EXPECT_EQ(r->status, status) << path << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  // Id of the indexed file photos/<cls>/<file>.
  int64_t id_of(const std::string& cls, const std::string& file) {
    json m = map_points();
    for (const auto& p : m)
      if (p["class"] == cls && p["path"].get<std::string>().ends_with("/" + file)) return p["id"];
    ADD_FAILURE() << "no " << cls << "/" << file << " in the map";
    return -1;
  }

  json map_points() {
    for (int i = 0; i < 600; ++i) {
      auto c = client();
      auto r = c.Get("/api/map");
      if (r && r->status == 200) return json::parse(r->body);
      if (!r || r->status != 202) {
        ADD_FAILURE() << "/api/map: " << (r ? std::to_string(r->status) + " " + r->body : "no response");
        return json::array();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "the map was never ready";
    return json::array();
  }

  static fs::path root_, db_dir_;
  static std::unique_ptr<server::Server> server_;
  static std::thread thread_;
  static int port_;
};

fs::path ServerApi::root_, ServerApi::db_dir_;
std::unique_ptr<server::Server> ServerApi::server_;
std::thread ServerApi::thread_;
int ServerApi::port_ = 0;

TEST_F(ServerApi, HealthAndStats) {
  json h = get_json("/api/health");
  EXPECT_EQ(h["status"], "ok");
  EXPECT_EQ(h["images"], 6);
  json s = get_json("/api/stats");
  EXPECT_EQ(s["count"], 6);
  EXPECT_EQ(s["model"], "efficientnet-lite0");
  EXPECT_FALSE(s["layer"].get<std::string>().empty());
  EXPECT_EQ(s["pooling"], "avg");
  EXPECT_EQ(s["metric"], "cosine");
  EXPECT_FALSE(s["index"].get<std::string>().empty());  // the index built (Flat for six images)
  EXPECT_GT(s["dim"].get<int>(), 0);
  ASSERT_EQ(s["classes"].size(), 3u);
  EXPECT_EQ(s["classes"][0]["name"], "car_side");
  EXPECT_EQ(s["classes"][0]["count"], 2);
  EXPECT_EQ(s["limits"]["max_upload_bytes"], kMaxUpload);
}

TEST_F(ServerApi, SearchByIdAndPathAndNeighbours) {
  const int64_t llama = id_of("llama", "image_0001.jpg");
  json r = get_json("/api/search?id=" + std::to_string(llama) + "&k=3");
  ASSERT_EQ(r["results"].size(), 3u) << r.dump();
  EXPECT_EQ(r["results"][0]["id"], llama);
  EXPECT_NEAR(r["results"][0]["score"].get<double>(), 1.0, 1e-3);
  EXPECT_EQ(r["results"][1]["class"], "llama") << r.dump();
  EXPECT_EQ(r["query"]["kind"], "id");
  EXPECT_EQ(r["query"]["class"], "llama");

  // By path: exactly as indexed (absolute here), never normalised.
  const std::string path = r["results"][0]["path"];
  json byp = get_json("/api/search?path=" + httplib::detail::encode_query_param(path) + "&k=2");
  EXPECT_EQ(byp["results"][0]["id"], llama) << byp.dump();

  json nb = get_json("/api/neighbors/" + std::to_string(llama) + "?k=5");
  ASSERT_EQ(nb["results"].size(), 5u);
  for (const auto& h : nb["results"]) EXPECT_NE(h["id"], llama);
  EXPECT_EQ(nb["results"][0]["class"], "llama");
}

TEST_F(ServerApi, UploadSearchMultipartAndRawBody) {
  const std::string jpeg = slurp(kCaltech / "llama" / "image_0010.jpg");  // not indexed
  auto c = client();
  httplib::MultipartFormDataItems items = {{"image", jpeg, "query.jpg", "image/jpeg"}};
  auto r = c.Post("/api/search?k=4", items);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["query"]["kind"], "upload");
  EXPECT_EQ(j["query"]["name"], "query.jpg");
  EXPECT_EQ(j["query"]["format"], "jpeg");
  ASSERT_EQ(j["results"].size(), 4u);
  EXPECT_EQ(j["results"][0]["class"], "llama") << j.dump();
  EXPECT_GT(j["timing"]["total_ms"].get<double>(), 0);

  // k as a form field; a raw image body.
  httplib::MultipartFormDataItems with_k = {{"image", jpeg, "q.jpg", "image/jpeg"}, {"k", "2", "", ""}};
  auto r2 = c.Post("/api/search", with_k);
  ASSERT_TRUE(r2);
  ASSERT_EQ(r2->status, 200) << r2->body;
  EXPECT_EQ(json::parse(r2->body)["results"].size(), 2u);
  auto r3 = c.Post("/api/search?k=1", jpeg, "image/jpeg");
  ASSERT_TRUE(r3);
  ASSERT_EQ(r3->status, 200) << r3->body;
  EXPECT_EQ(json::parse(r3->body)["results"][0]["class"], "llama");
}

TEST_F(ServerApi, MalformedMultipartIs400) {
  auto c = client();
  expect_error(c.Post("/api/search", "--XYZ\r\ngarbage without headers\r\n", "multipart/form-data; boundary=XYZ"), 400,
               "garbage multipart");
  expect_error(c.Post("/api/search", "--XYZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc",
                      "multipart/form-data; boundary=XYZ"),
               400, "unterminated multipart");
  expect_error(c.Post("/api/search", "whatever", "multipart/form-data"), 400, "multipart without boundary");
  httplib::MultipartFormDataItems no_image = {{"photo", "abc", "a.jpg", "image/jpeg"}};
  expect_error(c.Post("/api/search", no_image), 400, "no image field");
  expect_error(c.Post("/api/search", "", "application/x-www-form-urlencoded"), 400, "empty body");
  expect_error(c.Post("/api/search", "a=b", "application/x-www-form-urlencoded"), 415, "form body");
}

TEST_F(ServerApi, NonImageUploadIs415) {
  auto c = client();
  httplib::MultipartFormDataItems text = {{"image", "this is not an image, just text\n", "notes.jpg", "image/jpeg"}};
  expect_error(c.Post("/api/search", text), 415, "text upload");
  httplib::MultipartFormDataItems html = {
      {"image", "<!doctype html><html><body>x</body></html>", "x.png", "image/png"}};
  expect_error(c.Post("/api/search", html), 415, "html upload");
  std::string truncated = slurp(kCaltech / "llama" / "image_0010.jpg").substr(0, 600);
  httplib::MultipartFormDataItems trunc = {{"image", truncated, "t.jpg", "image/jpeg"}};
  auto r = c.Post("/api/search", trunc);
  ASSERT_TRUE(r);
  EXPECT_GE(r->status, 400);
  EXPECT_LT(r->status, 500) << r->body;
  expect_alive("truncated jpeg");
  httplib::MultipartFormDataItems empty = {{"image", "", "e.jpg", "image/jpeg"}};
  expect_error(c.Post("/api/search", empty), 400, "empty upload");
}

TEST_F(ServerApi, OversizedUploadIs413) {
  auto c = client();
  std::string big(kMaxUpload + 1024, 'x');
  httplib::MultipartFormDataItems items = {{"image", big, "big.jpg", "image/jpeg"}};
  expect_error(c.Post("/api/search", items), 413, "body over the limit");
  expect_error(c.Post("/api/search", big, "image/jpeg"), 413, "raw body over the limit");
  // Small file, too many pixels (decompression-bomb guard from the header).
  decode::RgbImage img;
  img.width = 2000;
  img.height = 1200;  // 2.4 MP > kMaxPixels
  img.pixels.assign(size_t(img.width) * img.height * 3, 128);
  auto jpeg = decode::encode_jpeg(img, 50);
  ASSERT_TRUE(jpeg);
  ASSERT_LT(jpeg->size(), kMaxUpload);
  httplib::MultipartFormDataItems px = {{"image", std::string(jpeg->begin(), jpeg->end()), "huge.jpg", "image/jpeg"}};
  expect_error(c.Post("/api/search", px), 413, "too many pixels");
}

TEST_F(ServerApi, BadAndUnknownIds) {
  auto c = client();
  for (const std::string p :
       {"/api/image/999999", "/api/thumb/999999", "/api/neighbors/999999", "/api/search?id=999999"})
    expect_error(c.Get(p), 404, p);
  for (const std::string p :
       {"/api/image/abc", "/api/thumb/-1", "/api/thumb/0", "/api/neighbors/1e3", "/api/image/%20", "/api/image/",
        "/api/search?id=", "/api/search?id=12abc", "/api/search?id=99999999999999999999999", "/api/search?id=0x10",
        "/api/search?id=1&k=0", "/api/search?id=1&k=abc", "/api/search?id=1&k=100000", "/api/search",
        "/api/search?id=1&path=x"})
    expect_error(c.Get(p), 400, p);
  expect_error(c.Get("/api/search?path=photos/llama/image_0001.jpg"), 404, "non-indexed relative path");
  expect_error(c.Get("/api/nope"), 404, "unknown endpoint");
  expect_error(c.Get("/api"), 404, "bare /api");
}

TEST_F(ServerApi, TraversalInAnyParameterIsRefused) {
  auto c = client();
  const std::string secret = "/etc/passwd";
  for (const std::string p : {
           "/api/image/../../../../etc/passwd",
           "/api/image/..%2F..%2F..%2Fetc%2Fpasswd",
           "/api/thumb/..%2f..%2fetc%2fpasswd",
           "/api/image/../1",
           "/api/thumb/%2e%2e%2f1",
           "/api/neighbors/..%2F1",
           "/../../../../etc/passwd",
           "/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
           "/assets/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
       }) {
    auto r = c.Get(p);
    ASSERT_TRUE(r) << p;
    EXPECT_GE(r->status, 400) << p;
    EXPECT_LT(r->status, 500) << p;
    EXPECT_EQ(r->body.find("root:"), std::string::npos) << p << " leaked /etc/passwd";
    expect_error(r, r->status, p);
  }
  for (const std::string& p : std::vector<std::string>{
           "/api/search?path=..%2F..%2F..%2Fetc%2Fpasswd", "/api/search?path=" + secret,
           "/api/search?path=" + httplib::detail::encode_query_param(
                                     (root_ / "photos" / "llama" / ".." / "llama" / "image_0001.jpg").string())})
    expect_error(c.Get(p), 404, p);
  for (const std::string p :
       {"/api/search?id=..%2F1", "/api/search?id=1&k=..%2F", "/api/neighbors/1?k=../3", "/api/search?id=%2e%2e"})
    expect_error(c.Get(p), 400, p);
}

TEST_F(ServerApi, WrongMethodIs405) {
  auto c = client();
  auto check = [&](const httplib::Result& r, const std::string& what) {
    expect_error(r, 405, what);
    if (r) {
      EXPECT_FALSE(r->get_header_value("Allow").empty()) << what;
    }
  };
  check(c.Delete("/api/health"), "DELETE /api/health");
  check(c.Post("/api/health", "x", "text/plain"), "POST /api/health");
  check(c.Put("/api/search", "x", "text/plain"), "PUT /api/search");
  check(c.Post("/api/map", "", "text/plain"), "POST /api/map");
  check(c.Patch("/api/stats", "{}", "application/json"), "PATCH /api/stats");
  check(c.Delete("/api/image/1"), "DELETE /api/image/1");
  check(c.Post("/api/thumb/1", "x", "text/plain"), "POST /api/thumb/1");
  check(c.Options("/api/search"), "OPTIONS /api/search");
  check(c.Post("/index.html", "x", "text/plain"), "POST a static file");
}

TEST_F(ServerApi, ThumbnailsAreCachedAndImagesServedById) {
  const int64_t id = id_of("sunflower", "image_0001.jpg");
  auto c = client();
  auto t = c.Get("/api/thumb/" + std::to_string(id));
  ASSERT_TRUE(t);
  ASSERT_EQ(t->status, 200) << t->body;
  EXPECT_EQ(t->get_header_value("Content-Type"), "image/jpeg");
  const std::span<const uint8_t> tb(reinterpret_cast<const uint8_t*>(t->body.data()), t->body.size());
  auto info = decode::probe_image(tb);
  ASSERT_TRUE(info) << info.error();
  EXPECT_EQ(info->format, "jpeg");
  EXPECT_LE(std::min(info->width, info->height), 320);
  // Cached on disk under the content hash, served from there next time, 304 on If-None-Match.
  bool cached = false;
  for (const auto& e : fs::directory_iterator(db_dir_ / "thumbs")) cached = cached || e.path().extension() == ".jpg";
  EXPECT_TRUE(cached);
  auto t2 = c.Get("/api/thumb/" + std::to_string(id));
  ASSERT_TRUE(t2);
  EXPECT_EQ(t2->get_header_value("X-Thumb-Cache"), "hit");
  EXPECT_EQ(t2->body, t->body);
  auto t3 = c.Get("/api/thumb/" + std::to_string(id), {{"If-None-Match", t->get_header_value("ETag")}});
  ASSERT_TRUE(t3);
  EXPECT_EQ(t3->status, 304);

  auto img = c.Get("/api/image/" + std::to_string(id));
  ASSERT_TRUE(img);
  ASSERT_EQ(img->status, 200);
  EXPECT_EQ(img->get_header_value("Content-Type"), "image/jpeg");
  EXPECT_EQ(img->body, slurp(kCaltech / "sunflower" / "image_0001.jpg"));
}

TEST_F(ServerApi, MapHasEveryImageWithClassAndUnitCoordinates) {
  json m = map_points();
  ASSERT_EQ(m.size(), 6u);
  std::map<std::string, int> per_class;
  for (const auto& p : m) {
    EXPECT_GE(p["x"].get<double>(), 0.0);
    EXPECT_LE(p["x"].get<double>(), 1.0);
    EXPECT_GE(p["y"].get<double>(), 0.0);
    EXPECT_LE(p["y"].get<double>(), 1.0);
    EXPECT_TRUE(p.contains("id") && p.contains("path"));
    ++per_class[p["class"]];
  }
  EXPECT_EQ(per_class, (std::map<std::string, int>{{"car_side", 2}, {"llama", 2}, {"sunflower", 2}}));
}

TEST_F(ServerApi, StaticUiAndForeignHostRefused) {
  auto c = client();
  auto r = c.Get("/");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("test ui"), std::string::npos);
  expect_error(c.Get("/missing.js"), 404, "missing static file");
  // DNS rebinding: a loopback server answers only to loopback names.
  expect_error(c.Get("/api/stats", {{"Host", "evil.example:8080"}}), 403, "foreign Host");
}

TEST_F(ServerApi, ConcurrentRequests) {
  const std::string jpeg = slurp(kCaltech / "sunflower" / "image_0010.jpg");
  const int64_t id = id_of("car_side", "image_0001.jpg");
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", port_);
      c.set_read_timeout(60);
      for (int i = 0; i < 3; ++i) {
        httplib::Result r =
            t % 2 ? c.Get("/api/neighbors/" + std::to_string(id) + "?k=3")
                  : c.Post("/api/search?k=3", httplib::MultipartFormDataItems{{"image", jpeg, "s.jpg", "image/jpeg"}});
        if (r && r->status == 200) ++ok;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 18);
}

TEST(ServerUnits, CommonRootAndClasses) {
  using server::class_below;
  using server::common_root;
  EXPECT_EQ(common_root({"/a/b/x/1.jpg", "/a/b/y/2.jpg"}), "/a/b");
  EXPECT_EQ(common_root({"/a/b/x/1.jpg", "/a/bc/y/2.jpg"}), "/a");
  EXPECT_EQ(common_root({"/a/b/1.jpg"}), "/a/b");
  EXPECT_EQ(common_root({"/x/1.jpg", "/y/2.jpg"}), "/");
  EXPECT_EQ(class_below("/a/b", "/a/b/llama/1.jpg"), "llama");
  EXPECT_EQ(class_below("/a/b", "/a/b/llama/sub/1.jpg"), "llama");
  EXPECT_EQ(class_below("/a/b", "/a/b/1.jpg"), server::kTopLevelClass);
  EXPECT_EQ(class_below("/", "/x/1.jpg"), "x");
}

TEST(ServerUnits, PcaLayoutIsInUnitSquareAndSeparatesClusters) {
  // Two clusters far apart along one direction in 8-D.
  std::vector<float> x;
  for (int i = 0; i < 20; ++i)
    for (int d = 0; d < 8; ++d) x.push_back((d == 3 ? (i < 10 ? -5.f : 5.f) : 0.f) + 0.01f * float((i * 7 + d) % 5));
  auto y = server::pca_layout(x.data(), 20, 8);
  ASSERT_EQ(y.size(), 40u);
  for (float v : y) {
    EXPECT_GE(v, 0.f);
    EXPECT_LE(v, 1.f);
  }
  for (int i = 0; i < 10; ++i) EXPECT_GT(std::abs(y[2 * i] - y[2 * (i + 10)]), 0.8f);
}
