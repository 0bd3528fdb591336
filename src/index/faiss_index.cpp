// VectorIndex on FAISS: the factory string builds the inner index, wrapped in an
// IndexIDMap2 so vectors carry the catalog's ids and can be removed.
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <xxhash.h>  // XXH3_64bits

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <vector>

#include "common/file_io.h"
#include "index/vector_index.h"

namespace imgsearch::index {
namespace {

constexpr char kMagic[8] = {'I', 'M', 'G', 'S', 'I', 'D', 'X', '\0'};
// Version 2 added the payload checksum: FAISS's reader trusts the sizes it reads, so a
// damaged payload could hang it or make it allocate terabytes; the checksum refuses one first.
constexpr uint32_t kFormatVersion = 2;

faiss::MetricType faiss_metric(Metric m) {
  return m == Metric::L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
}

class FaissIndex final : public VectorIndex {
 public:
  FaissIndex(std::unique_ptr<faiss::IndexIDMap2> index, Metric metric, std::string spec)
      : index_(std::move(index)), metric_(metric), spec_(std::move(spec)) {}

  int dim() const override { return int(index_->d); }
  int64_t size() const override { return index_->ntotal; }
  Metric metric() const override { return metric_; }
  std::string spec() const override { return spec_; }
  bool needs_training() const override { return !index_->is_trained; }

  Status train(int64_t n, const float* x) override {
    try {
      index_->train(n, x);
      return {};
    } catch (const faiss::FaissException& e) {
      return make_error(std::string("index training failed: ") + e.what());
    }
  }

  Status add(int64_t n, const float* x, const int64_t* ids) override {
    if (needs_training()) return make_error("index '" + spec_ + "' must be trained before adding vectors");
    try {
      index_->add_with_ids(n, x, ids);
      return {};
    } catch (const faiss::FaissException& e) {
      return make_error(std::string("index add failed: ") + e.what());
    }
  }

  Status remove(std::span<const int64_t> ids) override {
    std::vector<int64_t> present;
    for (int64_t id : ids)
      if (index_->rev_map.count(id)) present.push_back(id);
    if (present.empty()) return {};
    // IndexIDMap2 renumbers its id map as if the inner index compacted its storage, which
    // only the flat-codes family does: IVF keeps its own numbering (ids would silently map
    // to the wrong vectors) and HNSW cannot remove at all.
    const faiss::Index* inner = index_->index;
    while (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(inner)) inner = pt->index;
    if (!dynamic_cast<const faiss::IndexFlatCodes*>(inner))
      return make_error("index '" + spec_ + "' cannot remove vectors in place; rebuild it");
    try {
      faiss::IDSelectorBatch sel(present.size(), present.data());
      index_->remove_ids(sel);
      return {};
    } catch (const faiss::FaissException& e) {
      return make_error(std::string("index remove failed: ") + e.what());
    }
  }

  void search(int64_t nq, const float* queries, int k, float* scores, int64_t* ids) const override {
    if (index_->ntotal == 0) {  // FAISS (1.7) leaves the outputs unset for an empty index
      std::fill_n(scores, nq * k, std::numeric_limits<float>::lowest());
      std::fill_n(ids, nq * k, int64_t(-1));
      return;
    }
    index_->search(nq, queries, k, scores, ids);
    if (metric_ == Metric::L2)
      for (int64_t i = 0; i < nq * k; ++i) scores[i] = -scores[i];
  }

  Status save(const std::filesystem::path& path, uint64_t tag) const override {
    try {
      faiss::VectorIOWriter w;
      faiss::write_index(index_.get(), &w);
      std::vector<uint8_t> bytes(sizeof(kMagic));
      std::memcpy(bytes.data(), kMagic, sizeof(kMagic));
      auto put32 = [&](uint32_t v) {
        for (int i = 0; i < 4; ++i) bytes.push_back(uint8_t(v >> (8 * i)));
      };
      put32(kFormatVersion);
      put32(uint32_t(metric_));
      put32(uint32_t(index_->d));
      put32(uint32_t(spec_.size()));
      bytes.insert(bytes.end(), spec_.begin(), spec_.end());
      for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(tag >> (8 * i)));
      uint64_t payload = w.data.size();
      for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(payload >> (8 * i)));
      const uint64_t sum = XXH3_64bits(w.data.data(), w.data.size());
      for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(sum >> (8 * i)));
      bytes.insert(bytes.end(), w.data.begin(), w.data.end());
      return write_file_atomic(path, bytes);
    } catch (const faiss::FaissException& e) {
      return make_error(std::string("index save failed: ") + e.what());
    }
  }

 private:
  std::unique_ptr<faiss::IndexIDMap2> index_;
  Metric metric_;
  std::string spec_;
};

}  // namespace

std::optional<Metric> parse_metric(const std::string& name) {
  if (name == "cosine") return Metric::Cosine;
  if (name == "l2") return Metric::L2;
  if (name == "ip") return Metric::InnerProduct;
  return std::nullopt;
}

std::string metric_name(Metric m) {
  switch (m) {
    case Metric::Cosine: return "cosine";
    case Metric::L2: return "l2";
    case Metric::InnerProduct: return "ip";
  }
  return "?";
}

Result<std::unique_ptr<VectorIndex>> make_index(const std::string& spec, int dim, Metric metric) {
  if (dim <= 0) return make_error("index dimension must be positive");
  // FAISS divides by some parameters before checking them ("PQ0" raises SIGFPE).
  for (size_t i = 0; i < spec.size();) {
    if (!std::isdigit(static_cast<unsigned char>(spec[i]))) {
      ++i;
      continue;
    }
    bool zero = true;
    for (; i < spec.size() && std::isdigit(static_cast<unsigned char>(spec[i])); ++i) zero &= spec[i] == '0';
    if (zero) return make_error("invalid index spec '" + spec + "': sizes must be positive");
  }
  try {
    std::unique_ptr<faiss::Index> inner(faiss::index_factory(dim, spec.c_str(), faiss_metric(metric)));
    auto idmap = std::make_unique<faiss::IndexIDMap2>(inner.release());
    idmap->own_fields = true;
    return std::unique_ptr<VectorIndex>(new FaissIndex(std::move(idmap), metric, spec));
  } catch (const std::out_of_range&) {  // FAISS's std::stoi on "IVF99999999999"
    return make_error("invalid index spec '" + spec + "': a number is too large");
  } catch (const std::exception& e) {
    return make_error("invalid index spec '" + spec + "': " + e.what());
  }
}

Result<std::unique_ptr<VectorIndex>> load_index(const std::filesystem::path& path, uint64_t* tag) {
  auto bytes = read_file_bytes(path);
  if (!bytes) return make_error(path.string() + ": " + bytes.error());
  const auto& b = *bytes;
  const std::string what = path.string() + ": ";
  if (b.size() < sizeof(kMagic) + 16 || std::memcmp(b.data(), kMagic, sizeof(kMagic)) != 0)
    return make_error(what + "not an imgsearch index file");
  size_t pos = sizeof(kMagic);
  auto get32 = [&]() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(b[pos + i]) << (8 * i);
    pos += 4;
    return v;
  };
  const uint32_t version = get32();
  if (version != kFormatVersion)
    return make_error(what + "index format version " + std::to_string(version) + " is not supported (this build reads " +
                      std::to_string(kFormatVersion) + "); rebuild with `imgsearch index`");
  const uint32_t metric = get32();
  const uint32_t dim = get32();
  const uint32_t spec_len = get32();
  if (metric > 2 || spec_len > 4096 || pos + spec_len + 24 > b.size()) return make_error(what + "corrupt header");
  std::string spec(reinterpret_cast<const char*>(b.data() + pos), spec_len);
  pos += spec_len;
  uint64_t stored_tag = 0;
  for (int i = 0; i < 8; ++i) stored_tag |= uint64_t(b[pos + i]) << (8 * i);
  pos += 8;
  if (tag) *tag = stored_tag;
  uint64_t payload = 0;
  for (int i = 0; i < 8; ++i) payload |= uint64_t(b[pos + i]) << (8 * i);
  pos += 8;
  uint64_t sum = 0;
  for (int i = 0; i < 8; ++i) sum |= uint64_t(b[pos + i]) << (8 * i);
  pos += 8;
  if (payload != b.size() - pos) return make_error(what + "truncated or corrupt (payload size mismatch)");
  if (sum != XXH3_64bits(b.data() + pos, payload)) return make_error(what + "corrupt payload (checksum mismatch)");
  try {
    faiss::VectorIOReader r;
    r.data.assign(b.begin() + long(pos), b.end());
    std::unique_ptr<faiss::Index> raw(faiss::read_index(&r));
    auto* idmap = dynamic_cast<faiss::IndexIDMap2*>(raw.get());
    if (!idmap || idmap->d != int(dim)) return make_error(what + "corrupt payload");
    raw.release();
    return std::unique_ptr<VectorIndex>(
        new FaissIndex(std::unique_ptr<faiss::IndexIDMap2>(idmap), Metric(metric), spec));
  } catch (const std::exception& e) {  // FaissException, or bad_alloc from a size it read
    return make_error(what + "corrupt payload: " + e.what());
  }
}

}  // namespace imgsearch::index
