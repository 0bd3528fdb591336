// The layout optimisation of UMAP (umap-learn's optimize_layout_euclidean with
// move_other), parallel yet deterministic for a given seed, thread count and CPU kind.
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>

#include "map/umap_internal.h"

#define SGD_INLINE inline __attribute__((always_inline))

namespace imgsearch::map::detail {
namespace {

// Eight lanes of floats (GCC/Clang vector extensions): two SSE registers in the generic
// build, one AVX register in the AVX2 kernel below. (i8)f and (f8)i reinterpret bits.
using f8 = float __attribute__((vector_size(32)));
using i8 = int32_t __attribute__((vector_size(32)));
constexpr int kLanes = 8;

SGD_INLINE float clip4(float v) { return v > 4.0f ? 4.0f : (v < -4.0f ? -4.0f : v); }

// Vectors pass by reference: by value, their ABI depends on whether AVX is enabled.
SGD_INLINE void clip4(f8* v) {
  const f8 hi = f8{} + 4.0f, lo = f8{} - 4.0f;
  *v = *v > hi ? hi : *v;
  *v = *v < lo ? lo : *v;
}

// x^b lane by lane as 2^(b log2 x), with short polynomials (errors 6e-5 in log2, 1e-4
// relative in exp2, far below one SGD step's noise): powf cannot run in SIMD lanes, and
// the repulsion is evaluated 5 times per attraction. Inputs below 1e-30 are raised to it
// (keeps subnormals out of the exponent trick).
SGD_INLINE void pow8(const f8& in, float b, f8* out) {
  const f8 tiny = f8{} + 1e-30f;
  const f8 x = in < tiny ? tiny : in;
  const i8 bits = (i8)x;
  const f8 e = __builtin_convertvector(((bits >> 23) & 0xFF) - 127, f8);
  const i8 mant = (bits & 0x007FFFFF) | 0x3F800000;
  const f8 u = (f8)mant - 1.0f;
  // log2(1 + u) / u on [0, 1), degree 4, evaluated by Estrin's scheme: the SGD is a chain
  // of dependent updates, so latency counts more than operations.
  const f8 u2 = u * u;
  const f8 p01 = 1.44261585f - 0.717065721f * u, p23 = 0.442279208f - 0.227717468f * u;
  const f8 p = (p01 + p23 * u2) + (0.0599468951f * u2) * u2;
  f8 y = b * (e + u * p);
  const f8 ylo = f8{} - 126.0f, yhi = f8{} + 126.0f;
  y = y < ylo ? ylo : y;
  y = y > yhi ? yhi : y;
  i8 i = __builtin_convertvector(y, i8);    // truncates
  i += __builtin_convertvector(i, f8) > y;  // true is -1: floor for negative y
  const f8 f = y - __builtin_convertvector(i, f8);
  const f8 f2 = f * f;  // 2^f on [0, 1), degree 3, Estrin
  const f8 q = (0.999896844f + 0.696389765f * f) + (0.224517022f + 0.0790858196f * f) * f2;
  const i8 scale = (i + 127) << 23;
  *out = q * (f8)scale;
}

// Negative samples for a batch's eight lanes at once: eight xorshift32 generators
// (Marsaglia) side by side, one SIMD step per batch, scaled to [0, n) in float, instead
// of one 64-bit xoshiro draw per sample. float holds 24 bits: above 2^24 points the
// scalar generator takes over. Negative sampling asks little of a generator (umap-learn
// uses a Tausworthe generator, of the same shift-register family).
class LaneRng {
 public:
  explicit LaneRng(uint64_t seed) : scalar_(seed) {
    for (int r = 0; r < kLanes; ++r) s_[r] = uint32_t(Rng::splitmix(seed)) | 1u;  // never 0
  }
  // Eight values uniform in [0, n), n >= 1.
  SGD_INLINE void below(uint32_t n, uint32_t* out) {
    if (n > (1u << 24)) {
      for (int r = 0; r < kLanes; ++r) out[r] = scalar_.below(n);
      return;
    }
    s_ ^= s_ << 13;
    s_ ^= s_ >> 17;
    s_ ^= s_ << 5;
    const f8 u = __builtin_convertvector((i8)(s_ >> 8), f8) * (float(n) * 0x1.0p-24f);  // [0, n]
    i8 v = __builtin_convertvector(u, i8);
    const i8 top = i8{} + int32_t(n - 1);
    v = v > top ? top : v;  // rounding can reach n itself
    std::memcpy(out, &v, sizeof v);
  }

 private:
  using u8 = uint32_t __attribute__((vector_size(32)));
  u8 s_;
  Rng scalar_;
};

// What one worker needs for one slice of one epoch: its edges [qb, qe), whose heads lie in
// its own point range [lo, hi).
struct Slice {
  float* live;            // n x 2, the embedding
  const float* snapshot;  // n x 2, other workers' points as of the last synchronisation
  float* moved;           // n x 2, this worker's moves of other workers' points (or null)
  const int32_t *head, *tail;
  const float *per_sample, *per_negative;
  float *next_sample, *next_negative;
  uint32_t* due;  // scratch of at least qe - qb entries: this epoch's due edges (offsets from qb)
  int64_t lo, hi, qb, qe;
  uint32_t n;
  bool negatives;  // negative_sample_rate > 0
  float a, b, two_ab, two_gamma_b, alpha, epoch;
  uint64_t seed;
};

// Sum of the lanes in a fixed tree order (reproducible, and 3 additions deep).
SGD_INLINE float lane_sum(const f8& v) { return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])); }

// One edge's next batch of up to kLanes forces on its head point: lane 0 of the first
// batch is the attraction to the tail, the other lanes are negative samples. All are
// evaluated at the same position of the head and applied together (umap-learn moves the
// head after each): independent, they fill SIMD lanes, and the difference is far below
// one step's noise. Padding lanes sample the head itself, which exerts no force.
struct Batch {
  f8 vx, vy, va, vr;  // the other points' coordinates; attraction and repulsion masks
  int32_t j, k;       // head, tail
};

// The edge q's batch starting at lane r0 of `total` (1 + negative samples).
SGD_INLINE void gather(const Slice& s, LaneRng& rng, int32_t j, int32_t k, int r0, int total, Batch* out) {
  float ox[kLanes], oy[kLanes], rep[kLanes], att[kLanes];
  uint32_t drawn[kLanes];
  rng.below(s.n, drawn);
  for (int r = 0; r < kLanes; ++r) {
    const bool attract = r0 + r == 0;
    const uint32_t kk = attract ? uint32_t(k) : (r0 + r < total ? drawn[r] : uint32_t(j));
    const bool own = kk >= uint64_t(s.lo) && kk < uint64_t(s.hi);
    const float* o = (own ? s.live : s.snapshot) + size_t(kk) * 2;
    ox[r] = o[0];
    oy[r] = o[1];
    att[r] = attract ? 1.0f : 0.0f;
    rep[r] = attract || kk == uint32_t(j) ? 0.0f : 1.0f;
  }
  std::memcpy(&out->vx, ox, sizeof out->vx);
  std::memcpy(&out->vy, oy, sizeof out->vy);
  std::memcpy(&out->va, att, sizeof out->va);
  std::memcpy(&out->vr, rep, sizeof out->vr);
  out->j = j;
  out->k = k;
}

// The forces of a batch on a head at (cx, cy), lane by lane, clipped as umap-learn.
SGD_INLINE void forces(const Slice& s, const Batch& bt, float cx0, float cy0, f8* gx, f8* gy) {
  const f8 ddx = cx0 - bt.vx, ddy = cy0 - bt.vy, dd = ddx * ddx + ddy * ddy;
  f8 pb;
  pow8(dd, s.b, &pb);  // d^(2b)
  // Attraction: -2ab d^(2(b-1)) / (1 + a d^(2b)); repulsion: 2 gamma b / ((0.001 + d^2)(1 + a d^(2b))).
  const i8 is_att = bt.va > 0.0f;
  const f8 numer = is_att ? -s.two_ab * pb : f8{} + s.two_gamma_b;
  const f8 denom = (s.a * pb + 1.0f) * (is_att ? dd : 0.001f + dd);
  const i8 apart = dd > 0.0f;
  const f8 c = apart ? numer / denom : f8{};
  f8 cx = c * ddx, cy = c * ddy;
  clip4(&cx);
  clip4(&cy);
  // Coincident with a negative sample (not j itself): umap-learn pushes by 4.
  *gx = apart ? cx : 4.0f * bt.vr;
  *gy = apart ? cy : 4.0f * bt.vr;
}

SGD_INLINE void apply(const Slice& s, const Batch& bt, bool first, const f8& gx, const f8& gy) {
  if (first) {  // move_other: the tail moves against the attraction
    const bool own = bt.k >= s.lo && bt.k < s.hi;
    float* to = own ? s.live : s.moved;  // another worker's point: applied at the next sync
    to[size_t(bt.k) * 2] -= gx[0] * s.alpha;
    to[size_t(bt.k) * 2 + 1] -= gy[0] * s.alpha;
  }
  float* cur = s.live + size_t(bt.j) * 2;
  cur[0] += lane_sum(gx) * s.alpha;
  cur[1] += lane_sum(gy) * s.alpha;
}

// Edges of a slice in two interleaved streams ([qb, mid) and [mid, qe)). One edge's
// update is a long chain of dependent operations (d^2, pow, divide, sum, store); two
// independent chains side by side keep the core busy while either waits: 1.35x faster
// here (bench/map --threads 1 --verbose, SGD of the 10k set: 2.7 s -> 2.0 s; three or four
// streams were slower).
// The order is fixed, so results stay deterministic.
//
// Which edges are due this epoch is decided up front, without branches (collect_due):
// about half of a UMAP graph's edges are due in a given epoch, in no pattern a branch
// predictor can learn, so skipping the others one test at a time mispredicted every
// other edge. Equivalent: an edge's schedule only changes when the edge itself runs.
SGD_INLINE int64_t collect_due(const Slice& s, int64_t begin, int64_t end, uint32_t* out) {
  int64_t count = 0;
  for (int64_t q = begin; q < end; ++q) {
    out[count] = uint32_t(q - s.qb);
    count += s.next_sample[q] <= s.epoch;
  }
  return count;
}

class EdgeStream {
 public:
  EdgeStream(const Slice& s, const uint32_t* due, int64_t count) : s_(s), due_(due), left_(count) {}
  // The next edge due this epoch, its schedule advanced; false when the stream is done.
  SGD_INLINE bool next(int32_t* j, int32_t* k, int* total) {
    if (left_ <= 0) return false;
    --left_;
    const int64_t q = s_.qb + int64_t(*due_++);
    *j = s_.head[q];
    *k = s_.tail[q];
    s_.next_sample[q] += s_.per_sample[q];
    int n_neg = 0;
    if (s_.negatives) {
      // As umap-learn: truncated toward zero, and may be -1 (the schedule then steps back).
      n_neg = int(std::clamp((s_.epoch - s_.next_negative[q]) / s_.per_negative[q], -1e6f, 1e6f));
      s_.next_negative[q] += float(n_neg) * s_.per_negative[q];
    }
    *total = 1 + std::max(n_neg, 0);
    return true;
  }

 private:
  const Slice& s_;
  const uint32_t* due_;
  int64_t left_;
};

// The batches after the first of an edge with more than kLanes - 1 negative samples.
SGD_INLINE void rest_of_edge(const Slice& s, LaneRng& rng, int32_t j, int32_t k, int total) {
  for (int r0 = kLanes; r0 < total; r0 += kLanes) {
    Batch bt;
    gather(s, rng, j, k, r0, total, &bt);
    f8 gx, gy;
    const float* cur = s.live + size_t(j) * 2;
    forces(s, bt, cur[0], cur[1], &gx, &gy);
    apply(s, bt, false, gx, gy);
  }
}

SGD_INLINE void run_slice(const Slice& s) {
  LaneRng rng(s.seed);
  const int64_t mid = s.qb + (s.qe - s.qb) / 2;
  const int64_t due_a = collect_due(s, s.qb, mid, s.due);
  const int64_t due_b = collect_due(s, mid, s.qe, s.due + due_a);
  EdgeStream sa(s, s.due, due_a), sb(s, s.due + due_a, due_b);
  int32_t ja = 0, ka = 0, jb = 0, kb = 0;
  int ta = 0, tb = 0;
  bool has_a = sa.next(&ja, &ka, &ta), has_b = sb.next(&jb, &kb, &tb);
  while (has_a && has_b) {
    Batch a, b;
    gather(s, rng, ja, ka, 0, ta, &a);
    gather(s, rng, jb, kb, 0, tb, &b);
    // Both heads are read before either moves (they differ but where the streams meet).
    const float ax = s.live[size_t(ja) * 2], ay = s.live[size_t(ja) * 2 + 1];
    const float bx = s.live[size_t(jb) * 2], by = s.live[size_t(jb) * 2 + 1];
    f8 agx, agy, bgx, bgy;
    forces(s, a, ax, ay, &agx, &agy);
    forces(s, b, bx, by, &bgx, &bgy);
    apply(s, a, true, agx, agy);
    apply(s, b, true, bgx, bgy);
    if (ta > kLanes) rest_of_edge(s, rng, ja, ka, ta);
    if (tb > kLanes) rest_of_edge(s, rng, jb, kb, tb);
    has_a = sa.next(&ja, &ka, &ta);
    has_b = sb.next(&jb, &kb, &tb);
  }
  // Whichever stream is left runs alone.
  EdgeStream& last = has_a ? sa : sb;
  int32_t j = has_a ? ja : jb, k = has_a ? ka : kb;
  int total = has_a ? ta : tb;
  for (bool more = has_a || has_b; more; more = last.next(&j, &k, &total)) {
    Batch bt;
    gather(s, rng, j, k, 0, total, &bt);
    f8 gx, gy;
    const float* cur = s.live + size_t(j) * 2;
    forces(s, bt, cur[0], cur[1], &gx, &gy);
    apply(s, bt, true, gx, gy);
    if (total > kLanes) rest_of_edge(s, rng, j, k, total);
  }
}

void run_slice_generic(const Slice& s) { run_slice(s); }

#if defined(__x86_64__)
// The same code with AVX2 and FMA: 1.6x faster here. Chosen once per process from the
// CPU, so a machine always takes the same path (results differ between the two by rounding).
__attribute__((target("avx2,fma"))) void run_slice_avx2(const Slice& s) { run_slice(s); }
bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

void run_slice_best(const Slice& s) {
#if defined(__x86_64__)
  if (cpu_has_avx2()) return run_slice_avx2(s);
#endif
  run_slice_generic(s);
}

}  // namespace

void optimize_layout(std::vector<float>* embedding, const Graph& g, const SgdParams& p) {
  const int64_t n = g.n;
  const int64_t m = int64_t(g.indices.size());
  if (n < 2 || m == 0 || p.n_epochs < 1) return;
  float wmax = 0.0f;
  for (float w : g.weights) wmax = std::max(wmax, w);
  // make_epochs_per_sample: an edge of weight w is sampled every wmax / w epochs.
  // Structure of arrays: the kernel streams through them.
  std::vector<int32_t> head(static_cast<size_t>(m));
  std::vector<float> per_sample(static_cast<size_t>(m)), per_negative(static_cast<size_t>(m));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t q = g.indptr[size_t(i)]; q < g.indptr[size_t(i) + 1]; ++q) {
      head[size_t(q)] = int32_t(i);
      const double samples = double(p.n_epochs) * (double(g.weights[size_t(q)]) / wmax);
      per_sample[size_t(q)] = float(double(p.n_epochs) / samples);
      per_negative[size_t(q)] = per_sample[size_t(q)] / float(std::max(p.negative_sample_rate, 1));
    }
  std::vector<float> next_sample = per_sample, next_negative = per_negative;

  // Workers own contiguous ranges of head points, cut where the sampling work (samples
  // per epoch: 1 / per_sample per edge) is balanced.
  const int t_count = int(std::min<int64_t>(resolve_threads(p.threads), n));
  std::vector<int64_t> cut(size_t(t_count) + 1, n);  // point ranges [cut[t], cut[t+1])
  cut[0] = 0;
  {
    std::vector<double> work(size_t(n) + 1, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      double w = 1e-3;  // isolated points still cost their loop
      for (int64_t q = g.indptr[size_t(i)]; q < g.indptr[size_t(i) + 1]; ++q) w += 1.0 / per_sample[size_t(q)];
      work[size_t(i) + 1] = work[size_t(i)] + w;
    }
    int64_t i = 0;
    for (int t = 1; t < t_count; ++t) {
      const double goal = work[size_t(n)] * t / t_count;
      while (i < n && work[size_t(i)] < goal) ++i;
      cut[size_t(t)] = i;
    }
  }

  float* live = embedding->data();
  std::vector<float> snapshot(embedding->begin(), embedding->end());
  std::vector<std::vector<float>> moved(size_t(t_count), std::vector<float>(t_count > 1 ? size_t(n) * 2 : 0, 0.0f));
  const int syncs = t_count > 1 ? std::max(1, p.syncs_per_epoch) : 1;
  std::vector<std::vector<uint32_t>> due(static_cast<size_t>(t_count));  // each worker's scratch
  for (int t = 0; t < t_count; ++t) {
    const int64_t edges = g.indptr[size_t(cut[size_t(t) + 1])] - g.indptr[size_t(cut[size_t(t)])];
    due[size_t(t)].resize(size_t(edges / syncs + 2));
  }
  auto slice = [&](int t, int epoch, int part) {
    Slice s;
    s.live = live;
    s.snapshot = snapshot.data();
    s.moved = moved[size_t(t)].data();
    s.head = head.data();
    s.tail = g.indices.data();
    s.per_sample = per_sample.data();
    s.per_negative = per_negative.data();
    s.next_sample = next_sample.data();
    s.next_negative = next_negative.data();
    s.lo = cut[size_t(t)];
    s.hi = cut[size_t(t) + 1];
    const int64_t eb = g.indptr[size_t(s.lo)], ee = g.indptr[size_t(s.hi)];
    s.qb = eb + (ee - eb) * part / syncs;
    s.qe = eb + (ee - eb) * (part + 1) / syncs;
    s.due = due[size_t(t)].data();
    s.n = uint32_t(n);
    s.negatives = p.negative_sample_rate > 0;
    s.a = float(p.a);
    s.b = float(p.b);
    s.two_ab = 2.0f * s.a * s.b;
    s.two_gamma_b = 2.0f * float(p.gamma) * s.b;
    // umap-learn lowers alpha after each epoch, starting after epoch 0.
    s.alpha = float(p.learning_rate * (1.0 - double(std::max(0, epoch - 1)) / double(p.n_epochs)));
    s.epoch = float(epoch);
    uint64_t state = p.seed ^ (uint64_t(epoch) << 20) ^ (uint64_t(part) << 12) ^ uint64_t(t);
    s.seed = Rng::splitmix(state);
    run_slice_best(s);
  };
  if (t_count == 1) {
    for (int epoch = 0; epoch < p.n_epochs; ++epoch) slice(0, epoch, 0);
    return;
  }
  // After every slice, each worker folds the others' moves of its points into them and
  // refreshes its part of the snapshot; the fixed order keeps the sums reproducible.
  auto sync_own = [&](int t) {
    const int64_t lo = cut[size_t(t)], hi = cut[size_t(t) + 1];
    for (int u = 0; u < t_count; ++u) {
      if (u == t) continue;
      float* d = moved[size_t(u)].data();
      for (int64_t i = lo * 2; i < hi * 2; ++i) live[i] += d[i], d[i] = 0.0f;
    }
    std::memcpy(snapshot.data() + lo * 2, live + lo * 2, size_t(hi - lo) * 2 * sizeof(float));
  };
  std::barrier sync_point(t_count);
  std::vector<std::thread> pool;
  for (int t = 0; t < t_count; ++t)
    pool.emplace_back([&, t] {
      for (int epoch = 0; epoch < p.n_epochs; ++epoch)
        for (int part = 0; part < syncs; ++part) {
          slice(t, epoch, part);
          sync_point.arrive_and_wait();
          sync_own(t);
          sync_point.arrive_and_wait();
        }
    });
  for (auto& th : pool) th.join();
}

}  // namespace imgsearch::map::detail
