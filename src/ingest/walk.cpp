#include "ingest/walk.h"

#include <dirent.h>    // opendir, readdir
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
  static const std::vector<std::string> exts = {".jpg", ".jpeg", ".jpe",  ".jfif", ".png",  ".gif", ".webp",
                                                ".bmp", ".tif",  ".tiff", ".heic", ".heif", ".avif"};
  return exts;
}

bool has_image_extension(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return false;
  std::string ext = name.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  const auto& exts = image_extensions();
  return std::find(exts.begin(), exts.end(), ext) != exts.end();
}

namespace {

using FileId = std::pair<dev_t, ino_t>;

bool matches_any(const std::vector<std::string>& globs, const std::string& rel, const std::string& name) {
  for (const auto& g : globs)
    if (fnmatch(g.c_str(), rel.c_str(), 0) == 0 || fnmatch(g.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

int64_t mtime_ns(const struct stat& st) { return int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec; }

const char* file_kind(mode_t m) {
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "not a regular file";
}

struct Folder {
  fs::path path;
  std::string rel;
  std::vector<FileId> ancestors;  // this folder and the ones above it: a link to one is a loop
};

}  // namespace

Result<WalkResult> walk_folder(const fs::path& dir, const Options& options, const fs::path& skip_dir) {
  struct stat root {};
  if (::stat(dir.c_str(), &root) != 0)
    return make_error("cannot read folder " + dir.string() + ": " + std::strerror(errno));
  if (!S_ISDIR(root.st_mode)) return make_error(dir.string() + " is not a folder");
  struct stat skip {};
  const bool have_skip = !skip_dir.empty() && ::stat(skip_dir.c_str(), &skip) == 0;

  WalkResult out;
  std::set<FileId> visited{{root.st_dev, root.st_ino}};
  std::vector<Folder> stack{{dir, "", {{root.st_dev, root.st_ino}}}};
  std::vector<std::pair<std::string, fs::path>> image_named_folders;  // rel, path
  while (!stack.empty()) {
    Folder folder = std::move(stack.back());
    stack.pop_back();
    DIR* d = ::opendir(folder.path.c_str());
    if (!d) {
      out.skipped.push_back({folder.path.string(), std::string("cannot read folder: ") + std::strerror(errno)});
      continue;
    }
    for (;;) {
      errno = 0;
      const dirent* ent = ::readdir(d);
      if (!ent) {
        if (errno != 0)
          out.skipped.push_back(
              {folder.path.string(), std::string("error while listing folder: ") + std::strerror(errno)});
        break;
      }
      const std::string name = ent->d_name;
      if (name == "." || name == "..") continue;
      const fs::path path = folder.path / name;
      const std::string rel = folder.rel.empty() ? name : folder.rel + "/" + name;
      const bool image_name = has_image_extension(name);
      struct stat lst {};
      if (::lstat(path.c_str(), &lst) != 0) continue;  // gone between readdir and lstat: never listed
      if (!options.include_hidden && name[0] == '.') {
        if (image_name || S_ISDIR(lst.st_mode)) ++out.hidden;
        continue;
      }
      struct stat st = lst;
      if (S_ISLNK(lst.st_mode)) {
        if (::stat(path.c_str(), &st) != 0) {
          const int err = errno;
          // A broken link says nothing of what it pointed to: report it when its name
          // looks like an image, or when links are followed (it may have been a folder).
          if (image_name || options.follow_links)
            out.skipped.push_back(
                {path.string(), err == ELOOP    ? "symlink loop (following the links never reaches a file)"
                                : err == ENOENT ? "dangling symlink (its target does not exist)"
                                                : std::string("cannot follow symlink: ") + std::strerror(err)});
          continue;
        }
        if (!options.follow_links) {
          if (S_ISDIR(st.st_mode))
            out.notes.push_back({path.string(), "symlink to a folder, not followed (use --follow-links)"});
          else if (image_name)
            out.skipped.push_back({path.string(), "symlink, not followed (use --follow-links)"});
          continue;
        }
      }
      if (S_ISDIR(st.st_mode)) {
        if (have_skip && st.st_dev == skip.st_dev && st.st_ino == skip.st_ino) {
          out.notes.push_back({path.string(), "the database folder itself: not indexed"});
          continue;
        }
        if (!options.exclude_globs.empty() && matches_any(options.exclude_globs, rel, name)) {
          ++out.excluded;
          continue;
        }
        const FileId id{st.st_dev, st.st_ino};
        if (std::find(folder.ancestors.begin(), folder.ancestors.end(), id) != folder.ancestors.end()) {
          out.skipped.push_back({path.string(), "symlink loop (leads back to a folder that contains it)"});
          continue;
        }
        if (!visited.insert(id).second) {
          out.notes.push_back({path.string(), "folder already indexed through another path: not walked twice"});
          continue;
        }
        if (image_name) image_named_folders.push_back({rel, path});
        Folder sub{path, rel, folder.ancestors};
        sub.ancestors.push_back(id);
        stack.push_back(std::move(sub));
        continue;
      }
      if (!image_name) continue;
      if ((!options.include_globs.empty() && !matches_any(options.include_globs, rel, name)) ||
          (!options.exclude_globs.empty() && matches_any(options.exclude_globs, rel, name))) {
        ++out.excluded;
        continue;
      }
      if (!S_ISREG(st.st_mode)) {
        out.skipped.push_back({path.string(), std::string(file_kind(st.st_mode)) + ", not an image file"});
        continue;
      }
      if (st.st_size == 0) {
        out.skipped.push_back({path.string(), "empty file (0 bytes)"});
        continue;
      }
      out.files.push_back({path, rel, int64_t(st.st_size), mtime_ns(st)});
    }
    ::closedir(d);
  }
  std::sort(out.files.begin(), out.files.end(), [](const WalkEntry& a, const WalkEntry& b) { return a.path < b.path; });
  // A folder named like an image is walked like any folder; say so, so that a user who
  // expected a picture there knows what happened to it.
  for (const auto& [rel, path] : image_named_folders) {
    const std::string prefix = rel + "/";
    int64_t n = 0;
    for (const auto& f : out.files) n += f.rel.compare(0, prefix.size(), prefix) == 0;
    out.notes.push_back({path.string(), n == 0 ? "a folder named like an image, holding no images"
                                               : "a folder named like an image: indexed the " + std::to_string(n) +
                                                     " image file(s) inside it"});
  }
  return out;
}

}  // namespace imgsearch::ingest
