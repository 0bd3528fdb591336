// bench/serve: search latency of `imgsearch serve` measured through HTTP.
//
//   build/bench/serve [--db DIR] [--runs N] [--shared DIR] [--save-query FILE.jpg]
//
// Starts the server in-process on an ephemeral 127.0.0.1 port over the caltech20 database
// (DIR, or one indexed on first use into build/bench-data/caltech20.imgsearch), makes a
// 12-megapixel JPEG by upscaling a photo from ../shared/photos/scenes, and times with an
// httplib::Client: multipart upload searches of that JPEG (decode + embed + search + JSON)
// and searches by id. Prints the figures, then one line:
//   RESULT upload_search_ms_p50=.. upload_search_ms_p90=.. id_search_ms_p50=..
#include <httplib.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/file_io.h"
#include "database/database.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "ingest/ingest.h"
#include "server/server.h"

namespace fs = std::filesystem;
using namespace imgsearch;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "bench/serve: %s\n", m.c_str());
  std::exit(1);
}

// CPU time of the whole process (server and client threads), ms.
double cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * double(v.size() - 1);
  const size_t i = size_t(pos);
  const double f = pos - double(i);
  return i + 1 < v.size() ? v[i] * (1 - f) + v[i + 1] * f : v[i];
}

// Bilinear resize of RGB pixels (the bench's own: the decoder only shrinks).
decode::RgbImage resize(const decode::RgbImage& src, int w, int h) {
  decode::RgbImage out;
  out.width = w;
  out.height = h;
  out.pixels.resize(size_t(w) * size_t(h) * 3);
  for (int y = 0; y < h; ++y) {
    const double sy = std::max(0.0, (y + 0.5) * src.height / h - 0.5);
    const int y0 = std::min(int(sy), src.height - 1), y1 = std::min(y0 + 1, src.height - 1);
    const double fy = sy - y0;
    for (int x = 0; x < w; ++x) {
      const double sx = std::max(0.0, (x + 0.5) * src.width / w - 0.5);
      const int x0 = std::min(int(sx), src.width - 1), x1 = std::min(x0 + 1, src.width - 1);
      const double fx = sx - x0;
      for (int c = 0; c < 3; ++c) {
        auto p = [&](int xx, int yy) { return double(src.pixels[(size_t(yy) * src.width + xx) * 3 + c]); };
        const double v =
            (p(x0, y0) * (1 - fx) + p(x1, y0) * fx) * (1 - fy) + (p(x0, y1) * (1 - fx) + p(x1, y1) * fx) * fy;
        out.pixels[(size_t(y) * w + x) * 3 + c] = uint8_t(std::lround(v));
      }
    }
  }
  return out;
}

fs::path ensure_database(const fs::path& photos, const fs::path& dir) {
  if (fs::exists(dir / "catalog.sqlite")) {
    auto db = database::Database::open_for_reading(dir);
    if (db && (*db)->catalog().count() > 0) return dir;
  }
  std::printf("indexing %s into %s (once)...\n", photos.c_str(), dir.c_str());
  std::fflush(stdout);
  database::Settings s;
  auto emb = embed::Embedder::open(s.representation);
  if (!emb) die(emb.error());
  s.representation = (*emb)->representation();
  s.dim = int((*emb)->dim());
  auto db = database::Database::open_for_writing(dir, s);
  if (!db) die(db.error());
  ingest::Options o;
  o.progress = Progress::Style::Quiet;
  auto sum = ingest::index_folder(**db, **emb, photos, o);
  if (!sum) die(sum.error());
  if (auto st = (*db)->save_index(); !st) die(st.error());
  return dir;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path shared = IMGSEARCH_SHARED_DIR;
  fs::path db_dir, save_query;
  int runs = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--db" && i + 1 < argc)
      db_dir = argv[++i];
    else if (a == "--runs" && i + 1 < argc)
      runs = std::max(3, std::atoi(argv[++i]));
    else if (a == "--shared" && i + 1 < argc)
      shared = argv[++i];
    else if (a == "--save-query" && i + 1 < argc)
      save_query = argv[++i];
    else
      die("usage: serve [--db DIR] [--runs N] [--shared DIR] [--save-query FILE.jpg]");
  }
  decode::decode_init();
  if (db_dir.empty())
    db_dir = ensure_database(shared / "photos" / "caltech20",
                             fs::path(IMGSEARCH_BINARY_DIR) / "bench-data" / "caltech20.imgsearch");

  // The 12 MP query: a real photo upscaled to 4384 x 2740 and re-encoded (quality 92). A
  // smooth upscale compresses better than a camera file of the same size, so a second
  // variant adds sensor-like grain (a few MB, like a phone's JPEG) and is timed too.
  const fs::path scene = shared / "photos" / "scenes" / "LadyBird.jpg";
  auto src_bytes = read_file_bytes(scene);
  if (!src_bytes) die(scene.string() + ": " + src_bytes.error());
  auto src = decode::decode_image(*src_bytes);
  if (!src) die(src.error());
  const int h = 2740, w = int(std::lround(double(src->width) * h / src->height));
  auto big = resize(*src, w, h);
  auto jpeg = decode::encode_jpeg(big, 92);
  if (!jpeg) die(jpeg.error());
  const std::string upload(jpeg->begin(), jpeg->end());
  uint32_t rng = 12345;
  for (auto& p : big.pixels) {
    rng = rng * 1664525u + 1013904223u;
    p = uint8_t(std::clamp(int(p) + int(rng >> 28) - 8, 0, 255));
  }
  auto grainy_jpeg = decode::encode_jpeg(big, 92);
  if (!grainy_jpeg) die(grainy_jpeg.error());
  const std::string grainy(grainy_jpeg->begin(), grainy_jpeg->end());
  if (!save_query.empty())
    if (auto st = write_file_atomic(save_query, *jpeg); !st) die(st.error());
  std::printf("query: %s upscaled to %dx%d = %.1f MP: JPEG %.1f MB; with grain %.1f MB\n", scene.filename().c_str(), w,
              h, double(w) * h / 1e6, double(upload.size()) / 1e6, double(grainy.size()) / 1e6);

  server::Options o;
  o.db_dir = db_dir;
  o.port = 0;
  o.log_requests = false;
  o.compute_map = false;
  auto srv = server::Server::open(o);
  if (!srv) die(srv.error());
  auto port = (*srv)->bind();
  if (!port) die(port.error());
  std::thread t([&] { (void)(*srv)->run(); });

  httplib::Client c("127.0.0.1", *port);
  c.set_read_timeout(60);
  c.set_write_timeout(60);
  auto stats = c.Get("/api/stats");
  if (!stats || stats->status != 200) die("the server does not answer /api/stats");
  auto sj = nlohmann::json::parse(stats->body);
  std::printf("database: %s, %lld images, %s/%s, index %s\n", db_dir.c_str(), (long long)sj["count"].get<int64_t>(),
              sj["model"].get<std::string>().c_str(), sj["layer"].get<std::string>().c_str(),
              sj["index"].get<std::string>().c_str());
  const unsigned cores = std::thread::hardware_concurrency();
  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 1) load[0] = -1;
  std::printf(
      "machine: %u cores, load average %.2f (other processes inflate wall times); %d timed runs after 3 "
      "warm-up\n\n",
      cores, load[0], runs);

  struct Timings {
    std::vector<double> wall, decode, embed, search, cpu;
  };
  int64_t first_id = -1;
  auto time_uploads = [&](const std::string& bytes, int n) {
    httplib::MultipartFormDataItems items = {{"image", bytes, "query-12mp.jpg", "image/jpeg"}};
    Timings t;
    for (int i = 0; i < n + 3; ++i) {
      const double c0 = cpu_ms();
      const auto t0 = Clock::now();
      auto r = c.Post("/api/search?k=10", items);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      const double cms = cpu_ms() - c0;
      if (!r || r->status != 200) die("upload search failed: " + (r ? r->body : httplib::to_string(r.error())));
      if (i < 3) continue;
      auto j = nlohmann::json::parse(r->body);
      first_id = j["results"][0]["id"];
      t.wall.push_back(ms);
      t.cpu.push_back(cms);
      t.decode.push_back(j["timing"]["decode_ms"]);
      t.embed.push_back(j["timing"]["embed_ms"]);
      t.search.push_back(j["timing"]["search_ms"]);
    }
    return t;
  };
  const Timings plain = time_uploads(upload, runs);
  const Timings grain = time_uploads(grainy, std::max(3, runs / 2));
  std::vector<double> byid;
  for (int i = 0; i < runs * 3 + 3; ++i) {
    const auto t0 = Clock::now();
    auto r = c.Get("/api/neighbors/" + std::to_string(first_id) + "?k=10");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (!r || r->status != 200) die("id search failed");
    if (i >= 3) byid.push_back(ms);
  }
  (*srv)->stop();
  t.join();

  std::printf("%-34s %8s %8s %8s\n", "through HTTP, ms", "p50", "p90", "max");
  auto row = [](const char* name, const std::vector<double>& v) {
    std::printf("%-34s %8.1f %8.1f %8.1f\n", name, pct(v, 50), pct(v, 90), *std::max_element(v.begin(), v.end()));
  };
  auto rows = [&](const char* title, const Timings& t) {
    row(title, t.wall);
    row("  server: decode (shrink-on-load)", t.decode);
    row("  server: embed", t.embed);
    row("  server: index search + lookups", t.search);
    row("  CPU time, all threads", t.cpu);
  };
  rows("upload search, 12 MP JPEG", plain);
  rows("upload search, 12 MP with grain", grain);
  row("search by id (neighbors)", byid);
  const double p50 = pct(plain.wall, 50);
  std::printf("\nbar: upload search p50 <= 150 ms -> %s", p50 <= 150 ? "met\n" : "NOT met");
  if (p50 > 150)
    std::printf(" (CPU time per search %.0f ms: %s)\n", pct(plain.cpu, 50),
                pct(plain.cpu, 50) <= 150 ? "the machine is busy; an idle one meets it" : "too slow even when idle");
  std::printf("RESULT upload_search_ms_p50=%.1f upload_search_ms_p90=%.1f id_search_ms_p50=%.2f\n", p50,
              pct(plain.wall, 90), pct(byid, 50));
  return 0;
}
