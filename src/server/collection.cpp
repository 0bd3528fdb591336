#include "server/collection.h"

#include <algorithm>
#include <map>

namespace imgsearch::server {

std::string common_root(const std::vector<std::string>& keys) {
  if (keys.empty()) return "";
  // Folder of the first key, then shortened to a prefix every other key shares at a '/'.
  std::string root = keys[0].substr(0, keys[0].find_last_of('/') + 1);  // ends with '/'
  for (const auto& k : keys) {
    size_t n = std::min(root.size(), k.size());
    size_t i = 0;
    while (i < n && root[i] == k[i]) ++i;
    if (i < root.size()) {
      // Cut back to the last '/' inside the shared prefix.
      const size_t slash = root.rfind('/', i == 0 ? 0 : i - 1);
      root = slash == std::string::npos ? "" : root.substr(0, slash + 1);
    }
    if (root.empty()) break;
  }
  if (root.size() > 1 && root.back() == '/') root.pop_back();
  return root;
}

std::string class_below(const std::string& root, const std::string& key) {
  size_t start = 0;
  if (!root.empty() && key.compare(0, root.size(), root) == 0) {
    start = root.size();
    if (start < key.size() && key[start] == '/') ++start;
  } else if (!key.empty() && key[0] == '/') {
    start = 1;
  }
  const size_t slash = key.find('/', start);
  if (slash == std::string::npos || slash == start) return kTopLevelClass;
  return key.substr(start, slash - start);
}

Collection::Collection(std::vector<catalog::ImageRecord> records, int64_t change_seq) : change_seq_(change_seq) {
  std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  std::vector<std::string> keys;
  keys.reserve(records.size());
  for (const auto& r : records) keys.push_back(r.key);
  root_ = common_root(keys);
  keys.clear();

  std::map<std::string, int> class_index;  // sorted names -> stable colours in the UI
  std::vector<std::string> item_class(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    item_class[i] = class_below(root_, records[i].key);
    class_index.emplace(item_class[i], 0);
  }
  for (auto& [name, idx] : class_index) {
    idx = int(classes_.size());
    classes_.push_back(name);
  }
  class_counts_.assign(classes_.size(), 0);
  items_.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    auto& r = records[i];
    Item it;
    it.id = r.id;
    it.path = std::move(r.path);
    it.key = std::move(r.key);
    it.content_hash = std::move(r.content_hash);
    it.size = r.size;
    it.width = r.width;
    it.height = r.height;
    it.cls = class_index[item_class[i]];
    ++class_counts_[size_t(it.cls)];
    items_.push_back(std::move(it));
  }
  by_path_.reserve(items_.size() * 2);
  for (size_t i = 0; i < items_.size(); ++i) {
    by_path_.emplace(items_[i].path, i);
    by_path_.emplace(items_[i].key, i);
  }
}

const Item* Collection::by_id(int64_t id) const {
  auto it = std::lower_bound(items_.begin(), items_.end(), id, [](const Item& a, int64_t v) { return a.id < v; });
  return it != items_.end() && it->id == id ? &*it : nullptr;
}

const Item* Collection::by_path(const std::string& path) const {
  auto it = by_path_.find(path);
  return it == by_path_.end() ? nullptr : &items_[it->second];
}

}  // namespace imgsearch::server
