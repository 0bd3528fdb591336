// policy: which index kind `--index auto` means for a collection, and the sizes involved.
//
// The rule (README "Choosing an index"; bytes are estimates of the index's memory):
//   1. fewer than kExactBelow vectors, and Flat fits the budget      -> "Flat" (exact)
//   2. IVF with full vectors fits the budget (4*dim + 8 B/vector)     -> e.g. "IVF1024,Flat"
//      (nlist as in 3; measured better than HNSW32 at 100k and 1M, see policy.cpp)
//   3. otherwise compressed: PCA to 256 dims (when dim > 256), IVF with nlist ~ 4*sqrt(n)
//      lists (a power of two, at most n/39 so k-means has its 39 points per list), and PQ
//      with the most bytes per vector (64, 32, 16 or 8) whose codes fit the budget
//      -> e.g. "PCA256,IVF4096,PQ64". Searches re-rank its candidates with the exact vectors
//      the catalog keeps, since PQ alone cannot order near duplicates.
//   Collections too small to train a compressed index stay exact whatever the budget.
// The database re-resolves `auto` when the collection has doubled or halved since the
// index was built (and when the budget changes), so the kind follows the collection
// without a rebuild per commit.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"

namespace imgsearch::index {

constexpr int64_t kExactBelow = 10'000;
constexpr uint64_t kDefaultMemoryBudget = uint64_t(8) << 30;  // 8 GiB

struct Plan {
  std::string spec;    // a concrete FAISS factory string
  std::string reason;  // one line: why this kind
};

bool is_auto(const std::string& spec);

// The kind `auto` resolves to for n vectors of `dim` floats within `memory_budget` bytes.
Plan resolve_auto(int64_t n, int dim, uint64_t memory_budget);

// Estimated index memory in bytes per vector for the kinds the rule chooses between
// (codes, graph links and ids; amortised fixed parts excluded).
int64_t estimated_bytes_per_vector(const std::string& spec, int dim);

// "4GB", "512M", "1.5GiB", "800kb", "1000000": binary units (1 GB = 2^30 bytes, as for
// memory); a bare number is bytes.
Result<uint64_t> parse_byte_size(const std::string& text);
// 1536 -> "1.5 KiB".
std::string format_bytes(uint64_t bytes);

}  // namespace imgsearch::index
