#include "ingest/ingest.h"

#include <fcntl.h>     // open
#include <sys/stat.h>  // lstat
#include <unistd.h>    // write, close
#include <xxhash.h>    // XXH3_128bits

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
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

std::string reason_category(const std::string& reason) {
  const size_t end = std::min(reason.find(" ("), reason.find(':'));
  return end == std::string::npos ? reason : reason.substr(0, end);
}

ThreadSplit split_threads(int threads) {
  const int n = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
  return {n, n};
}

namespace {

// What a worker hands to the committing thread for one file.
struct Decoded {  // new content: needs inference
  catalog::ImageRecord record;
  decode::RgbImage image;
  bool replaces = false;  // the key is in the catalog already (a changed file)
};
struct Reuse {  // content whose vector exists: copy it
  catalog::ImageRecord record;
  int64_t source_id = -1;  // catalog id; -1: the first file with this content in this run
  bool replaces = false;
};
struct Relink {  // same content, same vector, new path or mtime: no new row
  int64_t id = 0;
  std::string path, key;
  int64_t mtime_ns = 0;
  bool moved = false;  // else touched
};
struct Failed {
  Skipped skipped;
  std::string hash;       // set when other files with this content wait on this one
  int64_t known_id = -1;  // the stale record of this key, to remove
};
using WorkItem = std::variant<Decoded, Reuse, Relink, Failed>;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool is_under(const std::string& key, const std::string& dir_key) {
  if (dir_key == "/") return !key.empty() && key[0] == '/';
  return key.size() > dir_key.size() && key.compare(0, dir_key.size(), dir_key) == 0 && key[dir_key.size()] == '/';
}

// --progress-log: JSON lines, each written with one write(2) so a kill never tears one.
class ProgressLog {
 public:
  explicit ProgressLog(const fs::path& path) {
    if (!path.empty()) fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
  }
  ~ProgressLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  ProgressLog(const ProgressLog&) = delete;
  ProgressLog& operator=(const ProgressLog&) = delete;
  bool failed_to_open(const fs::path& path) const { return !path.empty() && fd_ < 0; }
  void write(const nlohmann::json& j) {
    if (fd_ < 0) return;
    const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    [[maybe_unused]] ssize_t n = ::write(fd_, line.data(), line.size());
  }

 private:
  int fd_ = -1;
};

}  // namespace

Result<Summary> index_folder(database::Database& db, embed::Embedder& embedder, const fs::path& dir,
                             const Options& options) {
  const auto t0 = Clock::now();
  decode::decode_init();
  Summary summary;
  ProgressLog log(options.progress_log);
  if (log.failed_to_open(options.progress_log))
    return make_error("cannot write progress log " + options.progress_log.string() + ": " + std::strerror(errno));

  auto walked = walk_folder(dir, options, db.dir());
  if (!walked) return make_error(walked.error());
  summary.skipped = std::move(walked->skipped);
  summary.notes = std::move(walked->notes);
  summary.hidden = walked->hidden;
  summary.excluded = walked->excluded;
  summary.seen = int64_t(walked->files.size());
  const std::vector<WalkEntry>& files = walked->files;
  if (options.after_walk) options.after_walk();

  // What the catalog holds. Under DIR, by key: unchanged files are skipped before any
  // read, vanished ones removed at the end unless they turn up moved. Everywhere, by
  // content hash: a file whose bytes are indexed already needs no inference.
  auto& cat = db.catalog();
  const std::string dir_key = path_key(dir);
  const std::vector<catalog::ImageRecord> records = cat.list_images();
  std::unordered_map<std::string, const catalog::ImageRecord*> known;  // key -> record, under DIR
  for (const auto& r : records)
    if (is_under(r.key, dir_key)) known.emplace(r.key, &r);
  std::vector<size_t> todo;  // indices into files
  std::vector<std::string> keys(files.size());
  std::unordered_set<std::string> changing;  // keys under DIR about to be re-read
  std::unordered_set<int64_t> seen_ids;
  for (size_t i = 0; i < files.size(); ++i) {
    keys[i] = path_key(files[i].path);
    auto it = known.find(keys[i]);
    if (it != known.end()) seen_ids.insert(it->second->id);
    if (it != known.end() && it->second->size == files[i].size && it->second->mtime_ns == files[i].mtime_ns) {
      ++summary.unchanged;
    } else {
      todo.push_back(i);
      if (it != known.end()) changing.insert(keys[i]);
    }
  }
  // Content that stays indexed through this run (a source to copy vectors from), and
  // content of vanished files (a new file with those bytes is the same file, moved).
  // A record the walk did not list is vanished only if its file is gone: one that is
  // still there was left out by this run's filters (--exclude, hidden, links not
  // followed) or sits in a folder that could not be read, and is kept rather than lost.
  std::unordered_map<std::string, const catalog::ImageRecord*> stable_by_hash, vanished_by_hash;
  std::unordered_set<int64_t> kept_ids;
  for (const auto& r : records) {
    const bool under = is_under(r.key, dir_key);
    if (under && !seen_ids.count(r.id)) {
      struct stat st {};
      if (::lstat(r.key.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR)) {
        vanished_by_hash.emplace(r.content_hash, &r);
        continue;
      }
      kept_ids.insert(r.id);
    }
    if (!under || !changing.count(r.key)) stable_by_hash.emplace(r.content_hash, &r);
  }
  summary.kept = int64_t(kept_ids.size());

  int64_t in_database = int64_t(records.size());
  log.write({{"event", "start"},
             {"files", summary.seen},
             {"todo", todo.size()},
             {"unchanged", summary.unchanged},
             {"in_database", in_database}});

  // ---- workers: read, hash, classify, decode --------------------------------------
  const int threads = options.threads > 0 ? options.threads : split_threads(0).decode;
  const int batch_size = std::max(1, options.batch_size);
  BoundedQueue<WorkItem> queue(size_t(batch_size) * 4);
  std::atomic<size_t> next{0};
  std::atomic<int64_t> decode_ns{0};
  decode::DecodeOptions dopt = embedder.decode_options();
  dopt.max_pixels = options.max_pixels;
  dopt.min_side_px = options.min_side_px;
  std::mutex claim_mu;
  std::unordered_set<int64_t> claimed_ids;                    // vanished records taken by a move
  std::unordered_map<std::string, std::string> first_in_run;  // new content -> "" or its failure

  auto process = [&](const WalkEntry& e, const std::string& key) -> WorkItem {
    const auto kit = known.find(key);
    const catalog::ImageRecord* was = kit != known.end() ? kit->second : nullptr;
    auto fail = [&](std::string reason, std::string hash = {}) -> WorkItem {
      return Failed{{e.path.string(), std::move(reason)}, std::move(hash), was ? was->id : -1};
    };
    auto bytes = read_file_bytes(e.path, options.max_file_bytes);
    if (!bytes) return fail(bytes.error() == "not found" ? "vanished since the folder was listed" : bytes.error());
    catalog::ImageRecord r;
    r.path = e.path.string();
    r.key = key;
    // The walk's size and mtime, not the file's now: if it changed since, the next run
    // sees a difference and reads it again.
    r.size = e.size;
    r.mtime_ns = e.mtime_ns;
    r.content_hash = content_hash(bytes->data(), bytes->size());
    if (was && was->content_hash == r.content_hash) return Relink{was->id, r.path, key, e.mtime_ns, false};
    auto reuse = [&](const catalog::ImageRecord& src) -> WorkItem {
      r.width = src.width;
      r.height = src.height;
      return Reuse{std::move(r), src.id, was != nullptr};
    };
    auto try_move = [&](const catalog::ImageRecord& src) {
      // Moving onto a key that is indexed already would collide with that row; a copy
      // (vector reused, the old row removed as vanished) gives the same result.
      if (was) return false;
      std::lock_guard lock(claim_mu);
      return claimed_ids.insert(src.id).second;
    };
    if (auto v = vanished_by_hash.find(r.content_hash); v != vanished_by_hash.end()) {
      if (try_move(*v->second)) return Relink{v->second->id, r.path, key, e.mtime_ns, true};
      return reuse(*v->second);
    }
    if (auto s = stable_by_hash.find(r.content_hash); s != stable_by_hash.end()) {
      // Indexed from another folder: a move when that file is gone, else a copy.
      struct stat st {};
      const auto& src = *s->second;
      if (!is_under(src.key, dir_key) && ::lstat(src.key.c_str(), &st) != 0 && errno == ENOENT && try_move(src))
        return Relink{src.id, r.path, key, e.mtime_ns, true};
      return reuse(src);
    }
    {
      std::lock_guard lock(claim_mu);
      auto [it, first] = first_in_run.try_emplace(r.content_hash);
      if (!first) {
        if (!it->second.empty()) return fail(it->second);
        return Reuse{std::move(r), -1, was != nullptr};  // waits for the first one's vector
      }
    }
    auto img = decode::decode_image(*bytes, dopt);
    if (!img) {
      std::lock_guard lock(claim_mu);
      first_in_run[r.content_hash] = img.error();
      return fail(img.error(), r.content_hash);
    }
    auto info = decode::probe_image(*bytes, dopt);  // header only: the full-size upright dimensions
    r.width = info ? info->width : img->width;
    r.height = info ? info->height : img->height;
    return Decoded{std::move(r), std::move(*img), was != nullptr};
  };

  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < todo.size();) {
      const auto t = Clock::now();
      WorkItem item = process(files[todo[i]], keys[todo[i]]);
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

  // ---- this thread: inference and commits -----------------------------------------
  Progress progress("index", options.progress);
  progress.set_total(int64_t(todo.size()));
  int64_t done = 0;
  std::string fatal;
  std::vector<int64_t> to_remove;                               // stale rows of failed files
  std::vector<Decoded> batch;                                   // awaiting inference
  std::vector<catalog::NewImage> ready;                         // awaiting commit
  std::vector<char> ready_embedded, ready_replaces;             // per `ready` entry
  std::unordered_map<std::string, std::vector<Reuse>> waiting;  // content hash -> copies
  struct Committed {
    int64_t id;
    int width, height;
  };
  std::unordered_map<std::string, Committed> first_done;      // new content -> its row
  std::unordered_map<std::string, std::string> first_failed;  // hash -> reason
  auto last_log = Clock::now();

  auto note_progress = [&](bool force_log) {
    progress.update(done, std::to_string(summary.skipped.size()) + " skipped");
    if (force_log || seconds_since(last_log) >= 0.5) {
      last_log = Clock::now();
      log.write({{"event", "commit"},
                 {"done", done},
                 {"total", todo.size()},
                 {"indexed", summary.indexed},
                 {"reused", summary.reused},
                 {"moved", summary.moved},
                 {"touched", summary.touched},
                 {"skipped", summary.skipped.size()},
                 {"in_database", in_database}});
    }
  };
  auto skip = [&](Skipped s, const std::string& hash, int64_t known_id) {
    if (known_id >= 0) to_remove.push_back(known_id);
    if (!hash.empty()) {
      first_failed[hash] = s.reason;
      if (auto w = waiting.find(hash); w != waiting.end()) {
        for (auto& copy : w->second) {
          summary.skipped.push_back({copy.record.path, s.reason});
          if (copy.replaces) to_remove.push_back(known.at(copy.record.key)->id);
          ++done;
        }
        waiting.erase(w);
      }
    }
    summary.skipped.push_back(std::move(s));
    ++done;
  };
  auto add_ready = [&](catalog::ImageRecord record, std::vector<float> vec, bool embedded, bool replaces) {
    ready.push_back({std::move(record), std::move(vec)});
    ready_embedded.push_back(embedded);
    ready_replaces.push_back(replaces);
  };
  auto commit_ready = [&] {
    if (ready.empty() || !fatal.empty()) return;
    const auto t = Clock::now();
    auto ids = db.commit(ready, {});
    summary.commit_seconds += seconds_since(t);
    if (!ids) {
      fatal = ids.error();
      return;
    }
    for (size_t i = 0; i < ready.size(); ++i) {
      ++(ready_embedded[i] ? summary.indexed : summary.reused);
      if (!ready_replaces[i]) ++in_database;
      const auto& r = ready[i].record;
      if (ready_embedded[i]) first_done.emplace(r.content_hash, Committed{(*ids)[i], r.width, r.height});
    }
    done += int64_t(ready.size());
    ready.clear();
    ready_embedded.clear();
    ready_replaces.clear();
    note_progress(true);
  };
  auto flush = [&] {
    if (!batch.empty()) {
      std::vector<const decode::RgbImage*> images;
      for (const auto& d : batch) images.push_back(&d.image);
      const auto t = Clock::now();
      auto vectors = embedder.embed(images);
      summary.infer_seconds += seconds_since(t);
      const size_t dim = embedder.dim();
      for (size_t i = 0; i < batch.size(); ++i) {
        Decoded& d = batch[i];
        if (!vectors) {
          skip({d.record.path, vectors.error()}, d.record.content_hash, d.replaces ? known.at(d.record.key)->id : -1);
          continue;
        }
        std::vector<float> vec(vectors->begin() + long(i * dim), vectors->begin() + long((i + 1) * dim));
        if (auto w = waiting.find(d.record.content_hash); w != waiting.end()) {
          for (auto& copy : w->second) {
            copy.record.width = d.record.width;
            copy.record.height = d.record.height;
            add_ready(std::move(copy.record), vec, false, copy.replaces);
          }
          waiting.erase(w);
        }
        add_ready(std::move(d.record), std::move(vec), true, d.replaces);
      }
      batch.clear();
    }
    commit_ready();
  };

  while (auto item = queue.pop()) {
    if (auto* d = std::get_if<Decoded>(&*item)) {
      batch.push_back(std::move(*d));
      if (int(batch.size()) >= batch_size) flush();
    } else if (auto* c = std::get_if<Reuse>(&*item)) {
      int64_t source = c->source_id;
      if (source < 0) {  // a copy of content first seen in this run
        const std::string& h = c->record.content_hash;
        if (auto f = first_failed.find(h); f != first_failed.end()) {
          skip({c->record.path, f->second}, "", c->replaces ? known.at(c->record.key)->id : -1);
        } else if (auto k = first_done.find(h); k != first_done.end()) {
          source = k->second.id;
          c->record.width = k->second.width;
          c->record.height = k->second.height;
        } else {
          waiting[h].push_back(std::move(*c));
        }
      }
      if (source >= 0) {
        auto vec = cat.vector_of(source);
        if (!vec)
          fatal = vec.error();
        else
          add_ready(std::move(c->record), std::move(*vec), false, c->replaces);
        // Copies cost no inference: commit them in bigger groups than images.
        if (int(ready.size()) >= batch_size * 8) commit_ready();
      }
    } else if (auto* m = std::get_if<Relink>(&*item)) {
      const auto t = Clock::now();
      if (auto s = db.rename(m->id, m->path, m->key, m->mtime_ns); !s) fatal = s.error();
      summary.commit_seconds += seconds_since(t);
      ++(m->moved ? summary.moved : summary.touched);
      ++done;
      note_progress(false);
    } else {
      auto& f = std::get<Failed>(*item);
      skip(std::move(f.skipped), f.hash, f.known_id);
      note_progress(false);
    }
    if (!fatal.empty()) {
      queue.close();
      break;
    }
  }
  if (fatal.empty()) flush();
  closer.join();
  // Copies whose original never reached inference (only possible after a fatal error).
  for (auto& [hash, copies] : waiting)
    for (auto& c : copies) summary.skipped.push_back({c.record.path, "not indexed: the run stopped first"});
  progress.update(done, std::to_string(summary.skipped.size()) + " skipped");
  progress.finish();
  if (!fatal.empty()) return make_error(fatal);

  // Rows of files gone from DIR (and not moved), and of files that can no longer be
  // indexed (their vector describes content that is not there any more).
  std::vector<int64_t> gone = std::move(to_remove);
  for (const auto& [key, rec] : known)
    if (!seen_ids.count(rec->id) && !claimed_ids.count(rec->id) && !kept_ids.count(rec->id)) gone.push_back(rec->id);
  std::sort(gone.begin(), gone.end());
  gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
  if (!gone.empty()) {
    const auto t = Clock::now();
    auto r = db.commit({}, gone);
    summary.commit_seconds += seconds_since(t);
    if (!r) return make_error(r.error());
    summary.removed = int64_t(gone.size());
    in_database -= summary.removed;
  }
  if (auto s = db.save_index(); !s) return make_error(s.error());
  summary.in_database = in_database;
  summary.decode_seconds = double(decode_ns.load()) / 1e9;
  summary.seconds = seconds_since(t0);
  log.write({{"event", "end"},
             {"done", done},
             {"total", todo.size()},
             {"indexed", summary.indexed},
             {"reused", summary.reused},
             {"moved", summary.moved},
             {"touched", summary.touched},
             {"removed", summary.removed},
             {"skipped", summary.skipped.size()},
             {"in_database", in_database}});
  return summary;
}

}  // namespace imgsearch::ingest
