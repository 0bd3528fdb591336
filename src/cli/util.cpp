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

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace imgsearch::cli

namespace imgsearch::cli {

void add_representation_options(CLI::App* cmd, RepresentationArgs& a) {
  cmd->add_option("--model", a.model, "Model name (see `imgsearch models`)")->capture_default_str();
  cmd->add_option("--layer", a.layer, "Layer whose output is the representation (default: the model's last block)");
  cmd->add_option("--pool", a.pool,
                  "Pooling of the layer's feature map: avg, max, gem, none (none = the whole flattened map: C*H*W*4 "
                  "bytes per image, e.g. 245 KiB for efficientnet-lite0 head vs 5 KiB pooled)")
      ->capture_default_str();
  cmd->add_option("--metric", a.metric, "Similarity: cosine, l2, ip")->capture_default_str();
}

Result<database::Settings> settings_from(const RepresentationArgs& a) {
  database::Settings s;
  s.representation.model = a.model;
  s.representation.layer = a.layer;
  auto pooling = embed::parse_pooling(a.pool);
  if (!pooling) return make_error("unknown --pool '" + a.pool + "' (avg, max, gem, none)");
  s.representation.pooling = *pooling;
  auto metric = index::parse_metric(a.metric);
  if (!metric) return make_error("unknown --metric '" + a.metric + "' (cosine, l2, ip)");
  s.metric = *metric;
  // Cosine compares directions: vectors are stored unit-length and searched by inner product.
  s.representation.normalize = *metric == index::Metric::Cosine;
  return s;
}

}  // namespace imgsearch::cli
