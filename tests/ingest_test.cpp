// ingest: folders in the wild through the real `imgsearch index` binary (and, where a test
// must reach between the walk and the read, index_folder in process).
//
//   - every kind of bad input gets its one-line reason and stops nothing;
//   - names that are not UTF-8, or UTF-8 in NFC and NFD, are indexed and round-trip in JSON;
//   - re-runs are incremental (add, modify, rename, delete, touch, copy) and equal a
//     from-scratch index; a second folder adds to the same database;
//   - kill -9 at random points loses nothing reported and leaves catalog == index;
//   - a second writer is refused clearly; searches during a run answer from the last commit;
//   - EXIF-rotated and re-encoded copies of a photo find each other.
// Every odd input is generated here, in a temporary folder.
#include "ingest/ingest.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "catalog/catalog.h"
#include "common/file_io.h"
#include "common/json_path.h"
#include "common/text.h"
#include "database/database.h"
#include "decode/decode.h"
#include "embed/embedder.h"
#include "index/vector_index.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace imgsearch;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

const fs::path kShared = IMGSEARCH_SHARED_DIR;
const fs::path kBinary = fs::path(IMGSEARCH_BINARY_DIR) / "imgsearch";

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;  // everything of ours runs several times slower: smaller folders
#else
constexpr bool kSanitized = false;
#endif

using test_util::TempDir;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const fs::path& p, std::string_view bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

// A picture of its own: a two-colour gradient with a few rectangles and discs, all from
// `seed`, so that every seed gives different content (and a different vector).
decode::RgbImage synth(int w, int h, uint32_t seed) {
  std::mt19937 rng(seed * 2654435761u + 12345u);
  auto u8 = [&] { return uint8_t(rng() & 255); };
  decode::RgbImage im{w, h, std::vector<uint8_t>(size_t(w) * h * 3)};
  const uint8_t a[3] = {u8(), u8(), u8()}, b[3] = {u8(), u8(), u8()};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c)
        im.pixels[(size_t(y) * w + x) * 3 + c] = uint8_t((a[c] * (w - x) + b[c] * x) / std::max(1, w));
  const int shapes = 3 + int(rng() % 4);
  for (int s = 0; s < shapes; ++s) {
    const int cx = int(rng() % unsigned(w)), cy = int(rng() % unsigned(h));
    const int r = 4 + int(rng() % unsigned(std::max(5, std::min(w, h) / 3)));
    const uint8_t col[3] = {u8(), u8(), u8()};
    const bool disc = rng() & 1;
    for (int y = std::max(0, cy - r); y < std::min(h, cy + r); ++y)
      for (int x = std::max(0, cx - r); x < std::min(w, cx + r); ++x)
        if (!disc || (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r)
          for (int c = 0; c < 3; ++c) im.pixels[(size_t(y) * w + x) * 3 + c] = col[c];
  }
  return im;
}

std::string jpeg_of(const decode::RgbImage& im, int quality = 90) {
  decode::decode_init();
  auto j = decode::encode_jpeg(im, quality);
  EXPECT_TRUE(j.ok()) << j.error();
  return j.ok() ? std::string(j->begin(), j->end()) : std::string();
}

std::string png_of(const decode::RgbImage& im) {
  decode::decode_init();
  auto p = decode::encode_png(im);
  EXPECT_TRUE(p.ok()) << p.error();
  return p.ok() ? std::string(p->begin(), p->end()) : std::string();
}

void write_jpeg(const fs::path& p, int w, int h, uint32_t seed) { write_bytes(p, jpeg_of(synth(w, h, seed))); }

// n distinct small JPEGs (64x64 .. 160x120) named img_00000.jpg ...
void make_folder(const fs::path& dir, int n, uint32_t seed0 = 1) {
  fs::create_directories(dir);
  std::mt19937 rng(seed0);
  for (int i = 0; i < n; ++i) {
    const int w = 64 + int(rng() % 97), h = 64 + int(rng() % 57);
    char name[32];
    std::snprintf(name, sizeof name, "img_%05d.jpg", i);
    write_jpeg(dir / name, w, h, seed0 * 100000u + uint32_t(i));
  }
}

// A PNG whose header claims w x h (RGB) with almost no data: a decompression bomb as far
// as any decoder that trusts the header is concerned.
std::string png_bomb(uint32_t w, uint32_t h) {
  auto be32 = [](std::string& s, uint32_t v) {
    for (int k = 3; k >= 0; --k) s += char((v >> (8 * k)) & 255);
  };
  auto chunk = [&](std::string& png, const char* type, const std::string& data) {
    be32(png, uint32_t(data.size()));
    const std::string td = std::string(type) + data;
    png += td;
    uint32_t crc = 0xFFFFFFFFu;  // CRC-32 over type and data, as PNG requires
    for (unsigned char c : td) {
      crc ^= c;
      for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    be32(png, ~crc);
  };
  std::string png = "\x89PNG\r\n\x1A\n";
  std::string ihdr;
  be32(ihdr, w);
  be32(ihdr, h);
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", std::string("\x78\x9C\x03\x00\x00\x00\x00\x01", 8));
  chunk(png, "IEND", "");
  return png;
}

// ---- running the binary -------------------------------------------------------------

struct Proc {
  pid_t pid = -1;
  fs::path out, err;
};

// Starts the binary with stdout/stderr into files. `drop_dac`: as root, drop the
// capabilities that let root read any file, so a chmod 000 file is unreadable as it is
// for everyone else (tests run as root in CI).
Proc spawn(const std::vector<std::string>& args, const fs::path& io_base, bool drop_dac = false) {
  Proc p;
  p.out = io_base.string() + ".out";
  p.err = io_base.string() + ".err";
  std::vector<std::string> full{kBinary.string()};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string out = p.out.string(), err = p.err.string();
  p.pid = ::fork();
  if (p.pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    const int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    if (drop_dac && ::geteuid() == 0) {
      if (::prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0 ||
          ::prctl(PR_CAPBSET_DROP, CAP_DAC_READ_SEARCH, 0, 0, 0) != 0)
        ::_exit(99);
    }
    ::execv(argv[0], argv.data());
    ::_exit(98);
  }
  return p;
}

// Exit code, or 128 + signal.
int wait_for(const Proc& p) {
  int status = 0;
  ::waitpid(p.pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool still_running(const Proc& p) {
  int status = 0;
  return ::waitpid(p.pid, &status, WNOHANG) == 0;
}

struct CliRun {
  int code = -1;
  std::string out, err;
  json j;  // stdout parsed, when it is JSON
};

CliRun run_cli(const std::vector<std::string>& args, bool drop_dac = false) {
  static int counter = 0;
  const fs::path base = fs::temp_directory_path() /
                        ("imgsearch_ingest_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  Proc p = spawn(args, base, drop_dac);
  CliRun r;
  r.code = wait_for(p);
  r.out = slurp(p.out);
  r.err = slurp(p.err);
  fs::remove(p.out);
  fs::remove(p.err);
  if (!r.out.empty() && r.out[0] == '{') r.j = json::parse(r.out, nullptr, false);
  return r;
}

// Can this process make a file unreadable to the binary? (Not as root without dropping
// capabilities, which needs CAP_SETPCAP.)
bool can_deny_reads(const fs::path& dir) {
  const fs::path f = dir / "probe_unreadable";
  write_bytes(f, "x");
  fs::permissions(f, fs::perms::none);
  const fs::path base = dir / "probe";
  Proc p{};
  p.out = base.string() + ".out";
  p.err = base.string() + ".err";
  p.pid = ::fork();
  if (p.pid == 0) {
    if (::geteuid() == 0 && (::prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0 ||
                             ::prctl(PR_CAPBSET_DROP, CAP_DAC_READ_SEARCH, 0, 0, 0) != 0))
      ::_exit(2);
    // The bounding set takes effect at exec: check through a real exec of `cat`.
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl("/bin/cat", "cat", f.c_str(), static_cast<char*>(nullptr));
    ::_exit(3);
  }
  const int code = wait_for(p);
  fs::permissions(f, fs::perms::owner_all);
  fs::remove(f);
  return code == 1;  // cat: Permission denied
}

// ---- reading a database -------------------------------------------------------------

struct Row {
  int64_t id;
  std::string path;
  std::vector<float> vec;
};

// key -> row (vector included)
std::map<std::string, Row> read_catalog(const fs::path& db) {
  std::map<std::string, Row> rows;
  auto cat = catalog::Catalog::open(db, catalog::Catalog::Mode::ReadOnly);
  EXPECT_TRUE(cat.ok()) << cat.error();
  if (!cat) return rows;
  for (const auto& r : (*cat)->list_images()) {
    auto v = (*cat)->vector_of(r.id);
    EXPECT_TRUE(v.ok()) << r.path;
    rows[r.key] = {r.id, r.path, v.ok() ? *v : std::vector<float>{}};
  }
  return rows;
}

// The catalog and the index a reader gets agree: same size, and every catalog vector finds
// its own id first (or an identical vector: copies of one file share it).
void expect_catalog_matches_index(const fs::path& db) {
  auto d = database::Database::open_for_reading(db);
  ASSERT_TRUE(d.ok()) << d.error();
  auto idx = (*d)->index();
  ASSERT_TRUE(idx.ok()) << idx.error();
  const auto rows = read_catalog(db);
  ASSERT_EQ((*idx)->size(), int64_t(rows.size()));
  if (rows.empty()) return;
  const int dim = (*idx)->dim(), k = 4;
  std::vector<float> q;
  std::vector<int64_t> want;
  for (const auto& [key, r] : rows) {
    ASSERT_EQ(int(r.vec.size()), dim) << r.path;
    q.insert(q.end(), r.vec.begin(), r.vec.end());
    want.push_back(r.id);
  }
  const size_t n = want.size();
  std::vector<float> scores(n * k);
  std::vector<int64_t> ids(n * k);
  (*idx)->search(int64_t(n), q.data(), k, scores.data(), ids.data());
  for (size_t i = 0; i < n; ++i) {
    bool found = false;
    for (int j = 0; j < k && !found; ++j)
      found = ids[i * k + j] == want[i] && scores[i * k + j] >= scores[i * k] - 1e-5f;
    EXPECT_TRUE(found) << "catalog id " << want[i] << " is not its own nearest neighbour in the index";
  }
}

// The index file itself (not the exact fallback Database::index() builds when the file is
// stale): absent, or complete and readable (written new, then renamed), reflecting a change
// the catalog has reached, and holding every record when it reflects the latest one.
void expect_index_file_sound(const fs::path& db) {
  const fs::path file = db / "vectors.index";
  if (!fs::exists(file)) return;
  uint64_t tag = 0;
  auto ix = index::load_index(file, &tag);
  ASSERT_TRUE(ix.ok()) << "a killed run left an unreadable index file: " << ix.error();
  auto cat = catalog::Catalog::open(db, catalog::Catalog::Mode::ReadOnly);
  ASSERT_TRUE(cat.ok()) << cat.error();
  const int64_t seq = (*cat)->change_seq();
  EXPECT_LE(int64_t(tag), seq) << "the index file claims a change the catalog never committed";
  if (int64_t(tag) == seq) {
    EXPECT_EQ((*ix)->size(), (*cat)->count()) << "index file current but incomplete";
  }
}

// Two databases hold the same files with the same vectors.
void expect_same_content(const fs::path& a, const fs::path& b) {
  const auto ra = read_catalog(a), rb = read_catalog(b);
  std::set<std::string> ka, kb;
  for (const auto& [k, r] : ra) ka.insert(k);
  for (const auto& [k, r] : rb) kb.insert(k);
  ASSERT_EQ(ka, kb);
  for (const auto& [k, r] : ra) {
    const auto& other = rb.at(k);
    ASSERT_EQ(r.vec.size(), other.vec.size()) << k;
    float worst = 0;
    for (size_t i = 0; i < r.vec.size(); ++i) worst = std::max(worst, std::abs(r.vec[i] - other.vec[i]));
    EXPECT_LE(worst, 1e-5f) << k;
    EXPECT_EQ(r.path, other.path);
  }
}

// The last JSON line of a --progress-log (an empty object if there is none).
json last_log_line(const fs::path& log) {
  std::ifstream in(log);
  json last = json::object();
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "torn progress-log line: " << line;
    if (!j.is_discarded()) last = j;
  }
  return last;
}

std::map<std::string, std::string> reasons_by_name(const json& summary) {
  std::map<std::string, std::string> m;
  for (const auto& s : summary["skipped_files"]) m[fs::path(get_path(s, "path")).filename().string()] = s["reason"];
  return m;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

// ---- bad input ----------------------------------------------------------------------

TEST(IngestBadInput, EveryKindIsReportedAndTheRestIndexed) {
  TempDir t;
  const fs::path dir = t / "photos";
  fs::create_directories(dir);
  for (int i = 0; i < 5; ++i) write_jpeg(dir / ("good_" + std::to_string(i) + ".jpg"), 120, 90, 900 + i);
  write_bytes(dir / "empty.jpg", "");
  write_bytes(dir / "notes.jpg", "shopping list: eggs, milk\n");
  write_bytes(dir / "page.jpg", "<!DOCTYPE html><html><body>404 Not Found</body></html>\n");
  const std::string jpeg = jpeg_of(synth(200, 150, 7)), png = png_of(synth(200, 150, 8));
  write_bytes(dir / "cut.jpg", jpeg.substr(0, jpeg.size() / 2));
  write_bytes(dir / "cut.png", png.substr(0, png.size() / 2));
  write_bytes(dir / "bomb.png", png_bomb(30000, 30000));
  ASSERT_LT(fs::file_size(dir / "bomb.png"), 200u);
  write_bytes(dir / "tiny.png", png_of(synth(8, 8, 9)));
  write_jpeg(dir / "locked.jpg", 100, 80, 10);
  fs::permissions(dir / "locked.jpg", fs::perms::none);
  fs::create_symlink("no_such_target.jpg", dir / "dangling.jpg");
  fs::create_symlink("loop2.jpg", dir / "loop1.jpg");
  fs::create_symlink("loop1.jpg", dir / "loop2.jpg");
  fs::create_symlink("good_0.jpg", dir / "link.jpg");
  ASSERT_EQ(::mkfifo((dir / "pipe.jpg").c_str(), 0644), 0);
  fs::create_directories(dir / "album.jpg");
  write_jpeg(dir / "album.jpg" / "inside.jpg", 100, 100, 11);
  fs::create_directories(dir / "nothing.jpeg");
  fs::create_directories(dir / "closed");
  write_jpeg(dir / "closed" / "behind.jpg", 100, 100, 12);
  fs::permissions(dir / "closed", fs::perms::none);
  write_jpeg(dir / ".hidden.jpg", 100, 100, 13);
  fs::create_directories(dir / ".thumbnails");
  write_jpeg(dir / ".thumbnails" / "t.jpg", 100, 100, 14);
  fs::create_directories(dir / "sub");
  fs::create_symlink("..", dir / "sub" / "up");  // a folder loop, when links are followed
  write_bytes(dir / "readme.txt", "not an image name: ignored\n");

  const bool deny = can_deny_reads(t.path());
  const fs::path db = dir / "data.imgsearch";  // the database inside the scanned folder
  const fs::path report = t / "report.jsonl";
  CliRun r = run_cli({"index", dir.string(), "--db", db.string(), "--json", "--report", report.string()}, deny);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_FALSE(r.j.is_discarded()) << r.out;
  EXPECT_EQ(r.j["indexed"], 6) << r.out;  // good_0..4 and album.jpg/inside.jpg
  EXPECT_EQ(r.j["total_in_database"], 6);
  EXPECT_EQ(r.j["hidden"], 2);  // .hidden.jpg and .thumbnails
  const auto why = reasons_by_name(r.j);
  EXPECT_EQ(why.at("empty.jpg"), "empty file (0 bytes)");
  EXPECT_EQ(why.at("notes.jpg"), "not an image (text)");
  EXPECT_EQ(why.at("page.jpg"), "not an image (HTML)");
  EXPECT_TRUE(starts_with(why.at("cut.jpg"), "truncated or corrupt jpeg")) << why.at("cut.jpg");
  EXPECT_TRUE(starts_with(why.at("cut.png"), "truncated or corrupt png")) << why.at("cut.png");
  EXPECT_EQ(why.at("bomb.png"), "too many pixels (30000x30000 > 200000000)");
  EXPECT_EQ(why.at("tiny.png"), "too small (8x8 < 16 px)");
  EXPECT_TRUE(starts_with(why.at("dangling.jpg"), "dangling symlink")) << why.at("dangling.jpg");
  EXPECT_TRUE(starts_with(why.at("loop1.jpg"), "symlink loop")) << why.at("loop1.jpg");
  EXPECT_TRUE(starts_with(why.at("loop2.jpg"), "symlink loop")) << why.at("loop2.jpg");
  EXPECT_EQ(why.at("link.jpg"), "symlink, not followed (use --follow-links)");
  EXPECT_EQ(why.at("pipe.jpg"), "a FIFO, not an image file");
  if (deny) {
    EXPECT_EQ(why.at("locked.jpg"), "permission denied");
    EXPECT_EQ(why.at("closed"), "cannot read folder: Permission denied");
    EXPECT_EQ(why.size(), 14u) << r.out;
  } else {
    std::printf(
        "running as root without CAP_SETPCAP: chmod 000 cannot stop root's reads; the unreadable-file "
        "and unreadable-folder cases are not checked here\n");
  }
  // The folder named like an image was walked and said so; the empty one too; neither is
  // a failed image. The database folder was not indexed.
  std::map<std::string, std::string> notes;
  for (const auto& n : r.j["notes"]) notes[fs::path(get_path(n, "path")).filename().string()] = n["note"];
  EXPECT_EQ(notes.at("album.jpg"), "a folder named like an image: indexed the 1 image file(s) inside it");
  EXPECT_EQ(notes.at("nothing.jpeg"), "a folder named like an image, holding no images");
  EXPECT_EQ(notes.at("data.imgsearch"), "the database folder itself: not indexed");
  EXPECT_EQ(notes.at("up"), "symlink to a folder, not followed (use --follow-links)");
  EXPECT_FALSE(why.count("album.jpg"));
  EXPECT_FALSE(why.count("nothing.jpeg"));
  EXPECT_EQ(r.j["skipped_by_reason"]["not an image"], 2);

  // --report: one JSON line per skipped file and per note, same reasons.
  std::ifstream in(report);
  std::map<std::string, std::string> reported;
  int notes_reported = 0;
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line);
    if (j["status"] == "note") {
      ++notes_reported;
      continue;
    }
    EXPECT_EQ(j["status"], "skipped");
    reported[fs::path(get_path(j, "path")).filename().string()] = j["reason"];
  }
  EXPECT_EQ(reported, why);
  EXPECT_EQ(notes_reported, int(r.j["notes"].size()));

  // Text output: one line per skipped file with its reason, and the counts by reason.
  CliRun again = run_cli({"index", dir.string(), "--db", (t / "text.imgsearch").string()}, deny);
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("/bomb.png: too many pixels (30000x30000 > 200000000)\n"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("skipped by reason: "), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("indexed 6, unchanged 0, skipped"), std::string::npos) << again.out;

  // With --follow-links: the link is followed (its content is indexed already: reused),
  // the folder loop is reported, and nothing is walked twice.
  fs::remove_all(db);
  CliRun follow = run_cli({"index", dir.string(), "--db", db.string(), "--json", "--follow-links"}, deny);
  ASSERT_EQ(follow.code, 0) << follow.err;
  const auto fwhy = reasons_by_name(follow.j);
  EXPECT_EQ(fwhy.at("up"), "symlink loop (leads back to a folder that contains it)");
  EXPECT_FALSE(fwhy.count("link.jpg"));
  EXPECT_EQ(follow.j["indexed"], 6) << follow.out;
  EXPECT_EQ(follow.j["reused"], 1) << follow.out;  // link.jpg: same bytes as good_0.jpg
}

TEST(IngestBadInput, MaxPixelsAndHiddenAndGlobs) {
  TempDir t;
  const fs::path dir = t / "photos";
  fs::create_directories(dir / "raw");
  write_jpeg(dir / "small.jpg", 100, 80, 1);
  write_jpeg(dir / "big.jpg", 400, 300, 2);
  write_jpeg(dir / ".secret.jpg", 100, 80, 3);
  write_jpeg(dir / "raw" / "r.jpg", 100, 80, 4);
  write_jpeg(dir / "keep.png", 100, 80, 5);
  const fs::path db = t / "db";
  CliRun r = run_cli({"index", dir.string(), "--db", db.string(), "--json", "--max-pixels", "100000"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(reasons_by_name(r.j).at("big.jpg"), "too many pixels (400x300 > 100000)");
  EXPECT_EQ(r.j["indexed"], 3);  // small, raw/r, keep.png
  EXPECT_EQ(r.j["hidden"], 1);

  fs::remove_all(db);
  r = run_cli({"index", dir.string(), "--db", db.string(), "--json", "--include-hidden", "--exclude", "raw",
               "--exclude", "*.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.j["indexed"], 3);   // small, big, .secret
  EXPECT_EQ(r.j["excluded"], 2);  // the raw folder, keep.png
  std::set<std::string> names;
  for (const auto& [k, row] : read_catalog(db)) names.insert(fs::path(k).filename().string());
  EXPECT_EQ(names, (std::set<std::string>{".secret.jpg", "big.jpg", "small.jpg"}));

  fs::remove_all(db);
  r = run_cli({"index", dir.string(), "--db", db.string(), "--json", "--include", "raw/*"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.j["indexed"], 1);
}

// A file listed by the walk and gone when its turn comes: reported, and the run goes on.
TEST(IngestBadInput, FileVanishedBetweenWalkAndRead) {
  TempDir t;
  const fs::path dir = t / "photos";
  make_folder(dir, 6);
  embed::EngineOptions eo;
  eo.threads = 1;
  auto embedder = embed::Embedder::open({}, eo);
  ASSERT_TRUE(embedder.ok()) << embedder.error();
  database::Settings s;
  s.representation = (*embedder)->representation();
  s.dim = int((*embedder)->dim());
  auto db = database::Database::open_for_writing(t / "db", s);
  ASSERT_TRUE(db.ok()) << db.error();
  ingest::Options o;
  o.threads = 2;
  o.progress = Progress::Style::Quiet;
  o.after_walk = [&] { fs::remove(dir / "img_00003.jpg"); };
  auto sum = ingest::index_folder(**db, **embedder, dir, o);
  ASSERT_TRUE(sum.ok()) << sum.error();
  EXPECT_EQ(sum->indexed, 5);
  ASSERT_EQ(sum->skipped.size(), 1u);
  EXPECT_EQ(fs::path(sum->skipped[0].path).filename(), "img_00003.jpg");
  EXPECT_EQ(sum->skipped[0].reason, "vanished since the folder was listed");

  // Indexed, then vanished: the next run removes its row (nothing stale stays searchable).
  o.after_walk = [&] { fs::remove(dir / "img_00004.jpg"); };
  fs::last_write_time(dir / "img_00004.jpg", fs::file_time_type::clock::now() - std::chrono::hours(1));
  sum = ingest::index_folder(**db, **embedder, dir, o);
  ASSERT_TRUE(sum.ok()) << sum.error();
  EXPECT_EQ(sum->removed, 1);
  EXPECT_EQ(sum->in_database, 4);
  EXPECT_EQ((*db)->catalog().count(), 4);
}

// ---- names --------------------------------------------------------------------------

TEST(IngestNames, NonUtf8AndNfcNfdNamesAreIndexedAndRoundTripInJson) {
  TempDir t;
  const fs::path dir = t / "photos";
  fs::create_directories(dir);
  const std::string latin1 = "caf\xE9.jpg";        // not UTF-8
  const std::string nfc = "caf\xC3\xA9.jpg";       // é as one code point
  const std::string nfd = "cafe\xCC\x81.jpg";      // e + combining acute
  const std::string control = "new\nline.jpg";     // a control character
  const std::string bad = "bad\xFF\xFE name.jpg";  // not UTF-8, and not an image
  write_jpeg(dir / latin1, 100, 80, 1);
  write_jpeg(dir / nfc, 100, 80, 2);
  write_jpeg(dir / nfd, 100, 80, 3);
  write_jpeg(dir / control, 100, 80, 4);
  write_bytes(dir / bad, "text, not a picture");
  const fs::path db = t / "db";
  CliRun r = run_cli({"index", dir.string(), "--db", db.string(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_FALSE(r.j.is_discarded()) << r.out;  // valid JSON whatever the names
  EXPECT_EQ(r.j["indexed"], 4);
  // The catalog keeps the exact bytes: NFC and NFD stay two different files.
  std::set<std::string> stored;
  for (const auto& [k, row] : read_catalog(db)) stored.insert(fs::path(row.path).filename().string());
  EXPECT_EQ(stored, (std::set<std::string>{latin1, nfc, nfd, control}));
  // The skipped non-UTF-8 name: readable "path" (U+FFFD) plus exact "path_bytes".
  ASSERT_EQ(r.j["skipped_files"].size(), 1u);
  const json& s = r.j["skipped_files"][0];
  EXPECT_EQ(s["path"], (dir / "bad\xEF\xBF\xBD\xEF\xBF\xBD name.jpg").string());
  EXPECT_EQ(s["path_bytes"], hex_encode((dir / bad).string()));
  EXPECT_EQ(get_path(s, "path"), (dir / bad).string());
  // Valid UTF-8 (NFC or NFD) is passed through as is, with no path_bytes.
  json e = json::object();
  put_path(e, "path", nfd);
  EXPECT_EQ(e.dump(), "{\"path\":\"cafe\xCC\x81.jpg\"}");
  // Text output escapes what a terminal would mangle.
  CliRun text = run_cli({"index", dir.string(), "--db", (t / "db2").string()});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("bad\\xff\\xfe name.jpg: not an image (text)"), std::string::npos) << text.out;
}

TEST(IngestNames, Utf8HelpersAreLossless) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9 \xF0\x9F\x93\xB7"));
  EXPECT_FALSE(is_valid_utf8("caf\xE9"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // a UTF-16 surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_EQ(utf8_lossy("a\xFF"
                       "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(hex_encode(std::string("\x00\xFFz", 3)), "00ff7a");
  EXPECT_EQ(hex_decode("00ff7a"), std::string("\x00\xFFz", 3));
  EXPECT_FALSE(hex_decode("0g").has_value());
  EXPECT_EQ(printable_path("caf\xE9\x01.jpg"), "caf\\xe9\\x01.jpg");
  EXPECT_EQ(printable_path("caf\xC3\xA9.jpg"), "caf\xC3\xA9.jpg");
  for (const std::string raw : {"a\xE9", "ok", "\xC3\xA9\xFF"}) {
    json j = json::object();
    put_path(j, "path", raw);
    EXPECT_EQ(get_path(json::parse(j.dump()), "path"), raw);
  }
  EXPECT_EQ(ingest::reason_category("too small (8x8 < 16 px)"), "too small");
  EXPECT_EQ(ingest::reason_category("truncated or corrupt jpeg: Premature end"), "truncated or corrupt jpeg");
}

// ---- incremental --------------------------------------------------------------------

TEST(IngestIncremental, AddModifyRenameDeleteTouchCopyEqualsFromScratch) {
  TempDir t;
  const fs::path dir = t / "photos";
  make_folder(dir, 30);
  const fs::path db = t / "db";
  CliRun first = run_cli({"index", dir.string(), "--db", db.string(), "--json"});
  ASSERT_EQ(first.code, 0) << first.err;
  EXPECT_EQ(first.j["indexed"], 30);

  auto name = [&](int i) {
    char n[32];
    std::snprintf(n, sizeof n, "img_%05d.jpg", i);
    return dir / n;
  };
  for (int i = 0; i < 3; ++i) write_jpeg(dir / ("new_" + std::to_string(i) + ".jpg"), 100, 90, 5000 + i);  // added
  write_jpeg(name(0), 110, 90, 6000);                                                                      // modified
  write_jpeg(name(1), 90, 110, 6001);                                                                      // modified
  fs::rename(name(2), dir / "renamed_2.jpg");
  fs::rename(name(3), dir / "renamed_3.jpg");
  fs::create_directories(dir / "sub");
  fs::rename(name(4), dir / "sub" / "moved_4.jpg");
  fs::remove(name(5));
  fs::remove(name(6));
  fs::last_write_time(name(7), fs::last_write_time(name(7)) - std::chrono::hours(24));  // touched
  fs::copy_file(name(8), dir / "copy_of_8.jpg");                                        // copied
  fs::rename(name(9), name(10));  // renamed over an existing, indexed file
  CliRun second = run_cli({"index", dir.string(), "--db", db.string(), "--json"});
  ASSERT_EQ(second.code, 0) << second.err;
  const json& j = second.j;
  EXPECT_EQ(j["indexed"], 5) << second.out;  // 3 new + 2 modified
  EXPECT_EQ(j["moved"], 3) << second.out;    // renamed_2, renamed_3, sub/moved_4
  EXPECT_EQ(j["touched"], 1) << second.out;  // img_00007
  EXPECT_EQ(j["reused"], 2) << second.out;   // copy_of_8; img_00010 now holding 9's bytes
  EXPECT_EQ(j["removed"], 3) << second.out;  // img_00005, img_00006, img_00009
  EXPECT_EQ(j["unchanged"], 30 - 2 - 3 - 2 - 1 - 2) << second.out;
  EXPECT_EQ(j["total_in_database"], 30 + 3 - 2 + 1 - 1);
  expect_catalog_matches_index(db);

  const fs::path scratch = t / "scratch";
  CliRun clean = run_cli({"index", dir.string(), "--db", scratch.string(), "--json"});
  ASSERT_EQ(clean.code, 0) << clean.err;
  expect_same_content(db, scratch);

  // Nothing changed: nothing is read, nothing is written.
  CliRun third = run_cli({"index", dir.string(), "--db", db.string(), "--json"});
  ASSERT_EQ(third.code, 0) << third.err;
  EXPECT_EQ(third.j["unchanged"], third.j["total_in_database"]);
  EXPECT_EQ(third.j["indexed"], 0);
  EXPECT_EQ(third.j["removed"], 0);
}

TEST(IngestIncremental, SecondFolderAddsAndCrossFolderMovesKeepVectors) {
  TempDir t;
  make_folder(t / "a", 8, 1);
  make_folder(t / "b", 5, 2);
  const fs::path db = t / "db";
  ASSERT_EQ(run_cli({"index", (t / "a").string(), "--db", db.string(), "--quiet"}).code, 0);
  CliRun b = run_cli({"index", (t / "b").string(), "--db", db.string(), "--json"});
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(b.j["indexed"], 5);
  EXPECT_EQ(b.j["total_in_database"], 13);
  CliRun a = run_cli({"index", (t / "a").string(), "--db", db.string(), "--json"});
  EXPECT_EQ(a.j["unchanged"], 8);
  EXPECT_EQ(a.j["removed"], 0);  // b's images are not a's to remove
  EXPECT_EQ(a.j["total_in_database"], 13);

  // A file moved from b to a: a move (same row, same vector), found from a's side.
  const auto before = read_catalog(db);
  const std::string old_key = ingest::path_key(t / "b" / "img_00000.jpg");
  fs::rename(t / "b" / "img_00000.jpg", t / "a" / "from_b.jpg");
  a = run_cli({"index", (t / "a").string(), "--db", db.string(), "--json"});
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.j["moved"], 1) << a.out;
  EXPECT_EQ(a.j["indexed"], 0) << a.out;
  const auto after = read_catalog(db);
  EXPECT_EQ(after.size(), 13u);
  EXPECT_EQ(after.at(ingest::path_key(t / "a" / "from_b.jpg")).id, before.at(old_key).id);
  // A copy into b: its vector is reused, not recomputed.
  fs::copy_file(t / "a" / "img_00001.jpg", t / "b" / "copy.jpg");
  b = run_cli({"index", (t / "b").string(), "--db", db.string(), "--json"});
  EXPECT_EQ(b.j["reused"], 1) << b.out;
  EXPECT_EQ(b.j["indexed"], 0) << b.out;
  EXPECT_EQ(b.j["removed"], 0) << b.out;  // the moved row now belongs to a
  EXPECT_EQ(b.j["total_in_database"], 14);
  expect_catalog_matches_index(db);
}

// ---- crashes and concurrency --------------------------------------------------------

// kill -9 at random moments: whatever a killed run reported as committed is in the
// catalog, the index a reader gets always agrees with the catalog, and finishing the work
// gives exactly what one uninterrupted run gives.
TEST(IngestCrash, KillNineAtRandomPointsLosesNothingAndResumes) {
  TempDir t;
  const int n = kSanitized ? 160 : 500;
  const fs::path dir = t / "photos";
  make_folder(dir, n, 7);
  const fs::path clean = t / "clean";
  const auto t0 = Clock::now();
  CliRun c = run_cli({"index", dir.string(), "--db", clean.string()});  // not a terminal: plain lines
  const double clean_s = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("indexed " + std::to_string(n) + ", unchanged 0, skipped 0"), std::string::npos) << c.out;
  if (clean_s > 7) {
    EXPECT_NE(c.err.find("/" + std::to_string(n) + "  "), std::string::npos) << "no periodic progress line: " << c.err;
  }
  std::printf("clean run of %d images: %.1f s\n", n, clean_s);

  for (uint32_t seed : {11u, 23u, 37u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const fs::path db = t / ("killed_" + std::to_string(seed));
    int kills = 0;
    for (int round = 0; round < 3; ++round) {
      const fs::path log = t / ("log_" + std::to_string(seed) + "_" + std::to_string(round));
      Proc p = spawn({"index", dir.string(), "--db", db.string(), "--quiet", "--progress-log", log.string()}, t / "io");
      // Anywhere from start-up (model loading, opening the database) to the end (the
      // final index save included: a resumed run has less left to do than a clean one).
      const double at = std::uniform_real_distribution<double>(0.02, 1.0)(rng) * clean_s;
      std::this_thread::sleep_for(std::chrono::duration<double>(at));
      const bool killed = ::kill(p.pid, SIGKILL) == 0 && still_running(p);
      const int code = wait_for(p);
      kills += killed && code == 128 + SIGKILL;
      std::printf("seed %u round %d: kill at %.2f s -> %s\n", seed, round, at,
                  code == 128 + SIGKILL ? "killed" : "had finished");
      if (!fs::exists(db / "catalog.sqlite")) continue;  // killed before the database existed
      const json last = last_log_line(log);
      auto cat = catalog::Catalog::open(db, catalog::Catalog::Mode::ReadOnly);
      if (!cat) continue;  // killed while the first run was creating it
      if (last.contains("in_database")) {
        EXPECT_GE((*cat)->count(), last["in_database"].get<int64_t>()) << "reported as committed, then lost";
      }
      if ((*cat)->get_meta("dim")) {
        expect_index_file_sound(db);
        expect_catalog_matches_index(db);
      }
    }
    EXPECT_GE(kills, 1);
    CliRun rest = run_cli({"index", dir.string(), "--db", db.string(), "--json"});
    ASSERT_EQ(rest.code, 0) << rest.err;
    EXPECT_EQ(rest.j["indexed"].get<int>() + rest.j["unchanged"].get<int>(), n) << rest.out;
    EXPECT_EQ(rest.j["total_in_database"], n);
    expect_index_file_sound(db);
    expect_catalog_matches_index(db);
    expect_same_content(db, clean);
  }
}

TEST(IngestConcurrency, SecondWriterIsRefusedWithAClearMessage) {
  TempDir t;
  const fs::path dir = t / "photos";
  make_folder(dir, kSanitized ? 80 : 200);
  const fs::path db = t / "db", log = t / "log";
  Proc first =
      spawn({"index", dir.string(), "--db", db.string(), "--quiet", "--threads", "1", "--progress-log", log.string()},
            t / "first");
  // Wait until the first one holds the database (its log starts after the lock is taken).
  for (int i = 0; i < 600 && !last_log_line(log).contains("event"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(still_running(first)) << "the first run ended too soon to test anything";
  CliRun second = run_cli({"index", dir.string(), "--db", db.string()});
  EXPECT_EQ(second.code, 1);
  EXPECT_NE(second.err.find("is being written by another imgsearch process"), std::string::npos) << second.err;
  // No need to wait for the first run: killing it is one more crash to survive.
  ::kill(first.pid, SIGKILL);
  wait_for(first);
  expect_catalog_matches_index(db);
}

TEST(IngestConcurrency, SearchDuringIndexingAnswersFromTheLastCommit) {
  TempDir t;
  const fs::path dir = t / "photos";
  const int n = kSanitized ? 100 : 200;
  make_folder(dir, n);
  const fs::path db = t / "db", log = t / "log";
  Proc writer = spawn({"index", dir.string(), "--db", db.string(), "--quiet", "--threads", "1", "--batch-size", "8",
                       "--progress-log", log.string()},
                      t / "writer");
  int searches = 0;
  int64_t last_seen = -1;
  while (still_running(writer) && searches < 4) {
    const json before = last_log_line(log);
    const int64_t committed = before.value("in_database", int64_t(0));
    if (committed < 8 || committed == last_seen) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    last_seen = committed;
    CliRun s = run_cli({"search", (dir / "img_00000.jpg").string(), "--db", db.string(), "--json", "-k", "100000"});
    if (!still_running(writer) && s.code != 0) break;  // raced with the end: nothing to conclude
    ASSERT_EQ(s.code, 0) << s.err;
    auto j = json::parse(s.out);
    // At least what was committed before the search started, never more than exists.
    EXPECT_GE(int64_t(j["results"].size()), committed);
    EXPECT_LE(int64_t(j["results"].size()), n);
    std::set<int64_t> ids;
    for (const auto& h : j["results"]) ids.insert(h["id"].get<int64_t>());
    EXPECT_EQ(ids.size(), j["results"].size()) << "an id answered twice";
    ++searches;
  }
  ::kill(writer.pid, SIGKILL);  // enough overlap seen; the rest of the run proves nothing more
  wait_for(writer);
  EXPECT_GE(searches, 1) << "the index run ended before a search could overlap it";
  std::printf("%d searches answered while the index run was committing\n", searches);
  expect_catalog_matches_index(db);
}

// ---- the same photo, rotated or re-encoded ------------------------------------------

TEST(IngestSimilar, ExifRotatedAndReencodedCopiesAreDistinctButNearestNeighbours) {
  TempDir t;
  const fs::path dir = t / "photos";
  fs::create_directories(dir);
  std::set<std::string> family;
  for (int i = 0; i <= 8; ++i) {
    const std::string name = "Landscape_" + std::to_string(i) + ".jpg";
    fs::copy_file(kShared / "photos" / "exif-orientation" / name, dir / name);
    family.insert(name);
  }
  // Re-encoded at another size and quality: other bytes, same picture.
  auto bytes = read_file_bytes(kShared / "photos" / "exif-orientation" / "Landscape_1.jpg");
  ASSERT_TRUE(bytes.ok());
  decode::decode_init();
  auto small = decode::decode_image(*bytes, {.target_short_side = 300});
  ASSERT_TRUE(small.ok()) << small.error();
  write_bytes(dir / "reencoded.jpg", jpeg_of(*small, 60));
  family.insert("reencoded.jpg");
  // Distractors: other pictures.
  int distractors = 0;
  for (const auto& e : fs::directory_iterator(kShared / "photos" / "scenes")) {
    fs::copy_file(e.path(), dir / ("scene_" + e.path().filename().string()));
    ++distractors;
  }
  const fs::path db = t / "db";
  CliRun r = run_cli({"index", dir.string(), "--db", db.string(), "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.j["indexed"], int(family.size()) + distractors);  // distinct files, none merged
  EXPECT_EQ(r.j["reused"], 0);
  const auto rows = read_catalog(db);
  for (const auto& [key, row] : rows) {
    const std::string name = fs::path(row.path).filename().string();
    if (!family.count(name)) continue;
    CliRun s = run_cli(
        {"search", "--id", std::to_string(row.id), "--db", db.string(), "--json", "-k", std::to_string(family.size())});
    ASSERT_EQ(s.code, 0) << s.err;
    const json hits = json::parse(s.out);
    std::set<std::string> found;
    for (const auto& h : hits["results"]) found.insert(fs::path(get_path(h, "path")).filename().string());
    EXPECT_EQ(found, family) << name << ": its nearest neighbours are not its rotated/re-encoded twins";
  }
}
