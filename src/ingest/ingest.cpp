#include "ingest/ingest.h"

#include <sys/stat.h>  // stat
#include <xxhash.h>    // XXH3_128bits

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <variant>

#include "common/bounded_queue.h"
#include "common/file_io.h"
#include "decode/decode.h"
#include "ingest/walk.h"

namespace imgsearch::ingest {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string path_key(const fs::path& p) {
  std::error_code ec;
  fs::path abs = fs::absolute(p, ec);
  return (ec ? p : abs).lexically_normal().string();
}

std::string content_hash(const uint8_t* data, size_t size) {
  const XXH128_hash_t h = XXH3_128bits(data, size);
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
  return buf;
}

namespace {

// What a worker hands to the committing thread for one file.
struct Decoded {
  catalog::ImageRecord record;
  decode::RgbImage image;
};
struct Moved {
  int64_t id;
  std::string path, key;
  int64_t mtime_ns;
};
using WorkItem = std::variant<Decoded, Moved, Skipped>;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

Result<Summary> index_folder(database::Database& db, embed::Embedder& embedder, const fs::path& dir,
                             const Options& options) {
  const auto t0 = Clock::now();
  decode::decode_init();
  Summary summary;

  auto walked = walk_folder(dir, options, db.dir());
  if (!walked) return make_error(walked.error());
  summary.skipped = std::move(walked->skipped);
  summary.seen = int64_t(walked->files.size());

  // What the catalog already holds under DIR: unchanged files are skipped before any
  // read; vanished ones are removed at the end, unless they turn up moved.
  auto& cat = db.catalog();
  std::unordered_map<std::string, catalog::ImageRecord> known;
  for (auto& r : cat.list_under(path_key(dir))) known.emplace(r.key, std::move(r));
  std::vector<const WalkEntry*> todo;
  std::unordered_set<std::string> seen_keys;
  std::vector<std::string> keys(walked->files.size());
  for (size_t i = 0; i < walked->files.size(); ++i) {
    const auto& e = walked->files[i];
    keys[i] = path_key(e.path);
    seen_keys.insert(keys[i]);
    auto it = known.find(keys[i]);
    if (it != known.end() && it->second.size == e.size && it->second.mtime_ns == e.mtime_ns)
      ++summary.unchanged;
    else
      todo.push_back(&e);
  }
  // Vanished files by content hash: a new file with the same bytes is a move.
  std::unordered_map<std::string, const catalog::ImageRecord*> vanished_by_hash;
  for (const auto& [key, rec] : known)
    if (!seen_keys.count(key)) vanished_by_hash.emplace(rec.content_hash, &rec);
  std::mutex moved_mu;
  std::unordered_set<int64_t> moved_ids;

  const int threads = options.threads > 0 ? options.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const int batch_size = std::max(1, options.batch_size);
  BoundedQueue<WorkItem> queue(size_t(batch_size) * 4);
  std::atomic<size_t> next{0};
  std::atomic<int64_t> decode_ns{0};
  decode::DecodeOptions dopt = embedder.decode_options();
  dopt.max_pixels = options.max_pixels;
  dopt.min_side_px = options.min_side_px;

  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
      const WalkEntry& e = *todo[i];
      const auto t = Clock::now();
      WorkItem item = [&]() -> WorkItem {
        auto bytes = read_file_bytes(e.path, options.max_file_bytes);
        if (!bytes) return Skipped{e.path.string(), bytes.error()};
        std::string hash = content_hash(bytes->data(), bytes->size());
        if (auto it = vanished_by_hash.find(hash); it != vanished_by_hash.end()) {
          std::lock_guard lock(moved_mu);
          if (moved_ids.insert(it->second->id).second)
            return Moved{it->second->id, e.path.string(), path_key(e.path), e.mtime_ns};
        }
        auto info = decode::probe_image(*bytes, dopt);
        if (!info) return Skipped{e.path.string(), info.error()};
        auto img = decode::decode_image(*bytes, dopt);
        if (!img) return Skipped{e.path.string(), img.error()};
        catalog::ImageRecord r;
        r.path = e.path.string();
        r.key = path_key(e.path);
        r.size = e.size;
        r.mtime_ns = e.mtime_ns;
        r.width = info->width;
        r.height = info->height;
        r.content_hash = std::move(hash);
        return Decoded{std::move(r), std::move(*img)};
      }();
      decode_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
      if (!queue.push(std::move(item))) return;
    }
  };
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back(worker);
  std::thread closer([&] {
    for (auto& t : pool) t.join();
    queue.close();
  });

  Progress progress("index", options.progress);
  progress.set_total(int64_t(todo.size()));
  int64_t done = 0;
  std::string fatal;
  std::vector<Decoded> batch;
  auto flush = [&]() {
    if (batch.empty()) return;
    std::vector<const decode::RgbImage*> images;
    for (const auto& d : batch) images.push_back(&d.image);
    const auto t = Clock::now();
    auto vectors = embedder.embed(images);
    summary.infer_seconds += seconds_since(t);
    if (!vectors) {
      for (const auto& d : batch) summary.skipped.push_back({d.record.path, vectors.error()});
    } else {
      std::vector<catalog::NewImage> adds;
      const size_t dim = embedder.dim();
      for (size_t i = 0; i < batch.size(); ++i)
        adds.push_back({std::move(batch[i].record),
                        std::vector<float>(vectors->begin() + long(i * dim), vectors->begin() + long((i + 1) * dim))});
      auto ids = db.commit(adds, {});
      if (!ids) fatal = ids.error();
      else summary.indexed += int64_t(adds.size());
    }
    done += int64_t(batch.size());
    batch.clear();
  };
  while (auto item = queue.pop()) {
    if (auto* d = std::get_if<Decoded>(&*item)) {
      batch.push_back(std::move(*d));
      if (int(batch.size()) >= batch_size) flush();
    } else if (auto* m = std::get_if<Moved>(&*item)) {
      if (auto s = db.rename(m->id, m->path, m->key, m->mtime_ns); !s) fatal = s.error();
      else ++summary.moved;
      ++done;
    } else {
      summary.skipped.push_back(std::get<Skipped>(*item));
      ++done;
    }
    if (!fatal.empty()) {
      queue.close();
      break;
    }
    progress.update(done, std::to_string(summary.skipped.size()) + " skipped");
  }
  if (fatal.empty()) flush();
  closer.join();
  progress.update(done, std::to_string(summary.skipped.size()) + " skipped");
  progress.finish();
  if (!fatal.empty()) return make_error(fatal);

  // Files indexed before under DIR and gone now (and not moved).
  std::vector<int64_t> gone;
  for (const auto& [key, rec] : known)
    if (!seen_keys.count(key) && !moved_ids.count(rec.id)) gone.push_back(rec.id);
  if (!gone.empty()) {
    auto r = db.commit({}, gone);
    if (!r) return make_error(r.error());
    summary.removed = int64_t(gone.size());
  }
  if (auto s = db.save_index(); !s) return make_error(s.error());
  summary.decode_seconds = double(decode_ns.load()) / 1e9;
  summary.seconds = seconds_since(t0);
  return summary;
}

}  // namespace imgsearch::ingest
