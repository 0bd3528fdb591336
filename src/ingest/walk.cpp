#include "ingest/walk.h"

#include <fnmatch.h>   // fnmatch
#include <sys/stat.h>  // stat, lstat

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

namespace imgsearch::ingest {
namespace fs = std::filesystem;

const std::vector<std::string>& image_extensions() {
  static const std::vector<std::string> exts = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp",
                                                ".tif", ".tiff", ".heic", ".heif", ".avif"};
  return exts;
}

namespace {

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const auto& exts = image_extensions();
  return std::find(exts.begin(), exts.end(), ext) != exts.end();
}

bool matches_any(const std::vector<std::string>& globs, const std::string& rel) {
  const std::string base = fs::path(rel).filename().string();
  for (const auto& g : globs)
    if (fnmatch(g.c_str(), rel.c_str(), 0) == 0 || fnmatch(g.c_str(), base.c_str(), 0) == 0) return true;
  return false;
}

int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec; }

}  // namespace

Result<WalkResult> walk_folder(const fs::path& dir, const Options& options, const fs::path& skip_dir) {
  struct stat root {};
  if (::stat(dir.c_str(), &root) != 0)
    return make_error("cannot read folder " + dir.string() + ": " + std::strerror(errno));
  if (!S_ISDIR(root.st_mode)) return make_error(dir.string() + " is not a folder");
  struct stat skip {};
  const bool have_skip = !skip_dir.empty() && ::stat(skip_dir.c_str(), &skip) == 0;

  WalkResult out;
  std::set<std::pair<dev_t, ino_t>> visited{{root.st_dev, root.st_ino}};  // loop detection
  std::vector<std::pair<fs::path, std::string>> stack{{dir, ""}};
  while (!stack.empty()) {
    auto [folder, rel_folder] = std::move(stack.back());
    stack.pop_back();
    std::error_code ec;
    fs::directory_iterator it(folder, ec);
    if (ec) {
      out.skipped.push_back({folder.string(), "cannot read folder: " + ec.message()});
      continue;
    }
    for (const auto& entry : it) {
      const fs::path path = entry.path();
      const std::string name = path.filename().string();
      const std::string rel = rel_folder.empty() ? name : rel_folder + "/" + name;
      if (!options.include_hidden && !name.empty() && name[0] == '.') continue;
      struct stat lst {};
      if (::lstat(path.c_str(), &lst) != 0) continue;  // vanished since listing
      struct stat st = lst;
      const bool is_link = S_ISLNK(lst.st_mode);
      if (is_link) {
        if (::stat(path.c_str(), &st) != 0) {
          if (has_image_extension(path) || errno == ELOOP)
            out.skipped.push_back({path.string(), errno == ELOOP ? "symlink loop" : "dangling symlink"});
          continue;
        }
        if (!options.follow_links) {
          if (has_image_extension(path) || S_ISDIR(st.st_mode))
            out.skipped.push_back({path.string(), "symlink not followed (use --follow-links)"});
          continue;
        }
      }
      if (S_ISDIR(st.st_mode)) {
        if (have_skip && st.st_dev == skip.st_dev && st.st_ino == skip.st_ino) continue;  // the database itself
        if (!visited.insert({st.st_dev, st.st_ino}).second) {
          out.skipped.push_back({path.string(), "symlink loop (folder already visited)"});
          continue;
        }
        stack.push_back({path, rel});
        continue;
      }
      if (!has_image_extension(path)) continue;
      if (!options.include_globs.empty() && !matches_any(options.include_globs, rel)) continue;
      if (!options.exclude_globs.empty() && matches_any(options.exclude_globs, rel)) continue;
      if (!S_ISREG(st.st_mode)) {
        out.skipped.push_back({path.string(), "not a regular file"});
        continue;
      }
      out.files.push_back({path, rel, int64_t(st.st_size), mtime_ns(st)});
    }
  }
  std::sort(out.files.begin(), out.files.end(), [](const WalkEntry& a, const WalkEntry& b) { return a.path < b.path; });
  return out;
}

}  // namespace imgsearch::ingest
