// File paths in JSON output, losslessly (see common/text.h for why names need care).
//
//   put_path(obj, "path", raw) sets
//     obj["path"]       = raw as UTF-8, each invalid byte replaced by U+FFFD (for reading)
//     obj["path_bytes"] = hex of every byte of raw, ONLY when raw is not valid UTF-8
//   get_path(obj, "path") inverts it: the hex bytes when present, else the string.
//
// Every JSON output that names a file (index summary and --report, search results)
// should use these, so a script can always recover the exact name to open.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/text.h"

namespace imgsearch {

inline void put_path(nlohmann::json& obj, const std::string& field, const std::string& raw) {
  if (is_valid_utf8(raw)) {
    obj[field] = raw;
  } else {
    obj[field] = utf8_lossy(raw);
    obj[field + "_bytes"] = hex_encode(raw);
  }
}

inline std::string get_path(const nlohmann::json& obj, const std::string& field) {
  if (auto it = obj.find(field + "_bytes"); it != obj.end() && it->is_string())
    if (auto raw = hex_decode(it->get<std::string>())) return *raw;
  if (auto it = obj.find(field); it != obj.end() && it->is_string()) return it->get<std::string>();
  return {};
}

}  // namespace imgsearch
