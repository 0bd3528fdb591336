// collection: a read-only snapshot of what a database holds, shaped for the web app.
//
// Built from the catalog's records at one change_seq. Each image gets a class: the first
// folder below the common root of all indexed files (caltech20/llama/x.jpg -> "llama");
// files directly in the root get kTopLevelClass. Lookups are by id or by an exact indexed
// path (as given to `index`, or the absolute key): the server never opens a path it did
// not find here.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "catalog/catalog.h"

namespace imgsearch::server {

inline constexpr const char* kTopLevelClass = "(top level)";

struct Item {
  int64_t id = 0;
  std::string path;  // as given to `index` (raw bytes)
  std::string key;   // absolute, normalised: the file the server reads
  std::string content_hash;
  int64_t size = 0;
  int width = 0, height = 0;
  int cls = 0;  // index into Collection::classes
};

class Collection {
 public:
  Collection() = default;
  Collection(std::vector<catalog::ImageRecord> records, int64_t change_seq);

  int64_t change_seq() const { return change_seq_; }
  const std::vector<Item>& items() const { return items_; }  // ascending id
  const std::vector<std::string>& classes() const { return classes_; }
  const std::vector<int64_t>& class_counts() const { return class_counts_; }
  const std::string& root() const { return root_; }  // common folder of all keys

  const Item* by_id(int64_t id) const;
  // Exactly an indexed path: the path as given to `index`, or its absolute key.
  const Item* by_path(const std::string& path) const;
  const std::string& class_of(const Item& item) const { return classes_[size_t(item.cls)]; }

 private:
  int64_t change_seq_ = -1;
  std::vector<Item> items_;
  std::vector<std::string> classes_;
  std::vector<int64_t> class_counts_;
  std::string root_;
  std::unordered_map<std::string, size_t> by_path_;
};

// The longest common folder of absolute keys ("/a/b/c.jpg", "/a/d/e.jpg" -> "/a").
std::string common_root(const std::vector<std::string>& keys);
// The first folder of `key` below `root`, or kTopLevelClass for a file directly in it.
std::string class_below(const std::string& root, const std::string& key);

}  // namespace imgsearch::server
