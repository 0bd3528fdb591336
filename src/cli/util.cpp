#include <cstdio>

#include "cli/commands.h"

namespace imgsearch::cli {

void print_error(const std::string& message) { std::fprintf(stderr, "imgsearch: error: %s\n", message.c_str()); }

std::string json_safe(const std::string& raw) {
  // Validate UTF-8 sequence by sequence; replace each invalid byte by U+FFFD.
  std::string out;
  for (size_t i = 0; i < raw.size();) {
    const auto c = static_cast<unsigned char>(raw[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool valid = len > 0 && i + size_t(len) <= raw.size();
    for (int k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(raw[i + size_t(k)]) >> 6) == 0x2;
    if (valid) {
      out.append(raw, i, size_t(len));
      i += size_t(len);
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string dump_json(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace imgsearch::cli
