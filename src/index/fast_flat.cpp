#include "index/fast_flat.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/impl/AuxIndexStructures.h>  // RangeQueryResult
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/invlists/DirectMap.h>  // lo_build
#include <faiss/utils/Heap.h>          // heap_heapify, heap_replace_top, heap_reorder
#include <faiss/utils/distances.h>     // fvec_inner_product, fvec_L2sqr, distance_compute_blas_threshold
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <typeinfo>

namespace imgsearch::index {
namespace {

using idx_t = faiss::Index::idx_t;

// Four independent accumulators of 8 lanes hide the FMA latency; the tail is scalar.
__attribute__((target("avx2,fma"))) float ip_avx2(const float* a, const float* b, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= d; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_hadd_ps(h, h);
  h = _mm_hadd_ps(h, h);
  float r = _mm_cvtss_f32(h);
  for (; i < d; ++i) r += a[i] * b[i];
  return r;
}

__attribute__((target("avx2,fma"))) float l2_avx2(const float* a, const float* b, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
    const __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
    const __m256 d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
    s1 = _mm256_fmadd_ps(d1, d1, s1);
    s2 = _mm256_fmadd_ps(d2, d2, s2);
    s3 = _mm256_fmadd_ps(d3, d3, s3);
  }
  for (; i + 8 <= d; i += 8) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
    s0 = _mm256_fmadd_ps(d0, d0, s0);
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_hadd_ps(h, h);
  h = _mm_hadd_ps(h, h);
  float r = _mm_cvtss_f32(h);
  for (; i < d; ++i) {
    const float t = a[i] - b[i];
    r += t * t;
  }
  return r;
}

bool detect() {
  // IMGSEARCH_GENERIC_KERNELS=1 keeps FAISS's own code (to compare, or to rule ours out).
  const char* off = std::getenv("IMGSEARCH_GENERIC_KERNELS");
  if (off && *off && std::strcmp(off, "0") != 0) return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const bool kFast = detect();

// HNSW asks its storage for one of these per search thread.
struct FastDistance final : faiss::FlatCodesDistanceComputer {
  const float* base;
  size_t d;
  bool ip;
  const float* q = nullptr;
  FastDistance(const float* base, size_t d, bool ip)
      : faiss::FlatCodesDistanceComputer(reinterpret_cast<const uint8_t*>(base), d * sizeof(float)),
        base(base),
        d(d),
        ip(ip) {}
  void set_query(const float* x) override { q = x; }
  float distance_to_code(const uint8_t* code) override {
    const float* y = reinterpret_cast<const float*>(code);
    return ip ? ip_avx2(q, y, d) : l2_avx2(q, y, d);
  }
  float symmetric_dis(idx_t i, idx_t j) override {
    const float* a = base + size_t(i) * d;
    const float* b = base + size_t(j) * d;
    return ip ? ip_avx2(a, b, d) : l2_avx2(a, b, d);
  }
};

struct FastFlat final : faiss::IndexFlat {
  FastFlat(idx_t d, faiss::MetricType m) : faiss::IndexFlat(d, m) {}

  faiss::FlatCodesDistanceComputer* get_FlatCodesDistanceComputer() const override {
    return new FastDistance(get_xb(), size_t(d), metric_type == faiss::METRIC_INNER_PRODUCT);
  }

  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params) const override {
    // Large batches: FAISS's BLAS path (one matrix product) beats any per-pair loop.
    if (n >= faiss::distance_compute_blas_threshold || k <= 0) {
      faiss::IndexFlat::search(n, x, k, distances, labels, params);
      return;
    }
    const faiss::IDSelector* sel = params ? params->sel : nullptr;
    if (metric_type == faiss::METRIC_INNER_PRODUCT)
      scan<faiss::CMin<float, idx_t>>(n, x, size_t(k), distances, labels, sel, true);
    else
      scan<faiss::CMax<float, idx_t>>(n, x, size_t(k), distances, labels, sel, false);
  }

  template <class C>
  void scan(idx_t n, const float* x, size_t k, float* distances, idx_t* labels, const faiss::IDSelector* sel,
            bool ip) const {
    const float* xb = get_xb();
    const size_t dd = size_t(d);
#pragma omp parallel for if (n > 1)
    for (idx_t q = 0; q < n; ++q) {
      float* val = distances + size_t(q) * k;
      idx_t* ids = labels + size_t(q) * k;
      faiss::heap_heapify<C>(k, val, ids);
      const float* xq = x + size_t(q) * dd;
      for (idx_t i = 0; i < ntotal; ++i) {
        if (sel && !sel->is_member(i)) continue;
        const float* y = xb + size_t(i) * dd;
        const float dis = ip ? ip_avx2(xq, y, dd) : l2_avx2(xq, y, dd);
        if (C::cmp(val[0], dis)) faiss::heap_replace_top<C>(k, val, ids, dis, i);
      }
      faiss::heap_reorder<C>(k, val, ids);
    }
  }
};

// IVF-Flat's list scan with the AVX2 kernels: FAISS's own IVFFlatScanner, the same
// heap and id logic, with another distance. One per search thread.
template <class C, bool kInnerProduct>
struct FastIvfScanner final : faiss::InvertedListScanner {
  size_t d;
  const float* xi = nullptr;
  FastIvfScanner(size_t d, bool store_pairs, const faiss::IDSelector* sel)
      : faiss::InvertedListScanner(store_pairs, sel), d(d) {
    keep_max = kInnerProduct;
    code_size = d * sizeof(float);
  }
  float dis(const float* y) const { return kInnerProduct ? ip_avx2(xi, y, d) : l2_avx2(xi, y, d); }
  void set_query(const float* query) override { xi = query; }
  void set_list(idx_t list, float /*coarse_dis*/) override { list_no = list; }
  float distance_to_code(const uint8_t* code) const override { return dis(reinterpret_cast<const float*>(code)); }
  size_t scan_codes(size_t n, const uint8_t* codes, const idx_t* ids, float* simi, idx_t* idxi,
                    size_t k) const override {
    const float* y = reinterpret_cast<const float*>(codes);
    size_t updates = 0;
    for (size_t j = 0; j < n; ++j, y += d) {
      if (sel && !sel->is_member(ids[j])) continue;
      const float v = dis(y);
      if (C::cmp(simi[0], v)) {
        faiss::heap_replace_top<C>(k, simi, idxi, v, store_pairs ? idx_t(faiss::lo_build(list_no, j)) : ids[j]);
        ++updates;
      }
    }
    return updates;
  }
  void scan_codes_range(size_t n, const uint8_t* codes, const idx_t* ids, float radius,
                        faiss::RangeQueryResult& res) const override {
    const float* y = reinterpret_cast<const float*>(codes);
    for (size_t j = 0; j < n; ++j, y += d) {
      if (sel && !sel->is_member(ids[j])) continue;
      const float v = dis(y);
      if (C::cmp(radius, v)) res.add(v, store_pairs ? idx_t(faiss::lo_build(list_no, j)) : ids[j]);
    }
  }
};

// An IndexIVFFlat whose list scans use the scanner above. FAISS serialises it as a plain
// IndexIVFFlat: files stay standard.
struct FastIvfFlat final : faiss::IndexIVFFlat {
  explicit FastIvfFlat(const faiss::IndexIVFFlat& other) : faiss::IndexIVFFlat(other) {}
  faiss::InvertedListScanner* get_InvertedListScanner(bool store_pairs, const faiss::IDSelector* sel) const override {
    if (metric_type == faiss::METRIC_INNER_PRODUCT)
      return new FastIvfScanner<faiss::CMin<float, idx_t>, true>(size_t(d), store_pairs, sel);
    if (metric_type == faiss::METRIC_L2)
      return new FastIvfScanner<faiss::CMax<float, idx_t>, false>(size_t(d), store_pairs, sel);
    return faiss::IndexIVFFlat::get_InvertedListScanner(store_pairs, sel);
  }
};

// Exactly IndexIVFFlat (not a subclass with other behaviour such as IndexIVFFlatDedup)
// -> a FastIvfFlat that takes over its quantizer and inverted lists (shared, not copied).
faiss::Index* convert_ivf(faiss::Index* ix) {
  auto* ivf = dynamic_cast<faiss::IndexIVFFlat*>(ix);
  if (!ivf || typeid(*ivf) != typeid(faiss::IndexIVFFlat)) return nullptr;
  auto* fast = new FastIvfFlat(*ivf);
  ivf->own_fields = false;  // the new object frees them
  ivf->own_invlists = false;
  return fast;
}

// Returns a FastFlat holding `flat`'s vectors (moved, not copied), or a FastIvfFlat
// (above), or nullptr when `ix` is neither a plain IndexFlat nor a plain IndexIVFFlat.
faiss::Index* convert(faiss::Index* ix) {
  if (faiss::Index* ivf = convert_ivf(ix)) return ivf;
  auto* flat = dynamic_cast<faiss::IndexFlat*>(ix);
  // Exactly IndexFlat / IndexFlatL2 / IndexFlatIP: subclasses with other behaviour
  // (IndexFlat1D's sorted search) and our own FastFlat stay as they are.
  if (!flat || dynamic_cast<FastFlat*>(ix) || dynamic_cast<faiss::IndexFlat1D*>(ix)) return nullptr;
  auto* fast = new FastFlat(flat->d, flat->metric_type);
  fast->codes = std::move(flat->codes);
  fast->ntotal = flat->ntotal;
  fast->is_trained = flat->is_trained;
  fast->metric_arg = flat->metric_arg;
  fast->verbose = flat->verbose;
  return fast;
}

// Swaps `slot` (owned by its parent when `owned`) for a FastFlat where possible.
void swap_in(faiss::Index*& slot, bool owned) {
  faiss::Index* fast = convert(slot);
  if (!fast) return;
  if (owned) delete slot;
  slot = fast;
  // A borrowed slot would now point at an object nobody frees: only owned ones are
  // swapped (the factory and read_index always set ownership).
}

}  // namespace

bool fast_kernels_available() { return kFast; }

float inner_product(const float* a, const float* b, size_t d) {
  return kFast ? ip_avx2(a, b, d) : faiss::fvec_inner_product(a, b, d);
}

float l2_squared(const float* a, const float* b, size_t d) {
  return kFast ? l2_avx2(a, b, d) : faiss::fvec_L2sqr(a, b, d);
}

void accelerate(std::unique_ptr<faiss::Index>& root) {
  if (!kFast || !root) return;
  if (faiss::Index* fast = convert(root.get())) root.reset(fast);
  accelerate(root.get());
}

void accelerate(faiss::Index* root) {
  if (!kFast || !root) return;
  if (auto* m = dynamic_cast<faiss::IndexIDMap2*>(root)) {
    if (m->own_fields) swap_in(m->index, true);
    accelerate(m->index);
  } else if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(root)) {
    if (pt->own_fields) swap_in(pt->index, true);
    accelerate(pt->index);
  } else if (auto* h = dynamic_cast<faiss::IndexHNSW*>(root)) {
    if (h->own_fields) swap_in(h->storage, true);
  } else if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(root)) {
    if (ivf->own_fields) swap_in(ivf->quantizer, true);
    accelerate(ivf->quantizer);  // an HNSW quantizer has flat storage of its own
  }
}

}  // namespace imgsearch::index
