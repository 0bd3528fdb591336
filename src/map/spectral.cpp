// Spectral initialisation (umap-learn's spectral_layout and multi_component_layout):
// Lanczos with full reorthogonalisation on the normalised adjacency of the graph.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "map/linalg.h"
#include "map/umap_internal.h"

namespace imgsearch::map::detail {
namespace {

constexpr int kMaxLanczosSteps = 160;    // basis memory: steps x n floats
constexpr double kRitzTolerance = 1e-4;  // scipy eigsh's tol in umap-learn
constexpr int64_t kGrain = 32768;        // vector operations: threads only pay off on long ones

void pfor(int64_t n, int threads, const std::function<void(int64_t, int64_t, int)>& fn) {
  parallel_for(n, threads, fn, kGrain);
}

// Flip so that the largest-magnitude entry is positive (sklearn's sign convention).
void fix_sign(double* v, int64_t n, int64_t stride) {
  int64_t big = 0;
  for (int64_t i = 1; i < n; ++i)
    if (std::fabs(v[i * stride]) > std::fabs(v[big * stride])) big = i;
  if (v[big * stride] < 0)
    for (int64_t i = 0; i < n; ++i) v[i * stride] = -v[i * stride];
}

// Sum of per-worker partial sums in worker order: deterministic for a thread count.
double parallel_dot(const double* a, const double* b, int64_t n, int threads) {
  std::vector<double> part(size_t(resolve_threads(threads)), 0.0);
  pfor(n, threads, [&](int64_t s, int64_t e, int w) {
    double acc = 0;
    for (int64_t i = s; i < e; ++i) acc += a[i] * b[i];
    part[size_t(w)] = acc;
  });
  return std::accumulate(part.begin(), part.end(), 0.0);
}

// The subgraph induced by `members` (sorted point ids), re-indexed 0..size-1.
Graph subgraph(const Graph& g, const std::vector<int32_t>& members, const std::vector<int32_t>& local) {
  Graph s;
  s.n = int64_t(members.size());
  s.indptr.assign(members.size() + 1, 0);
  for (size_t r = 0; r < members.size(); ++r) {
    const int32_t v = members[r];
    for (int64_t p = g.indptr[size_t(v)]; p < g.indptr[size_t(v) + 1]; ++p) {
      s.indices.push_back(local[size_t(g.indices[size_t(p)])]);  // same component by construction
      s.weights.push_back(g.weights[size_t(p)]);
    }
    s.indptr[r + 1] = int64_t(s.indices.size());
  }
  return s;
}

// Where each component goes (umap-learn's component_layout): the sklearn spectral
// embedding of the centroids with affinity exp(-d^2), scaled so its maximum is 1. c x 2.
std::vector<double> component_layout(const float* x, int dim, bool cosine, const std::vector<int32_t>& labels, int c) {
  std::vector<double> centroid(size_t(c) * size_t(dim), 0.0);
  std::vector<int64_t> size(size_t(c), 0);
  for (size_t i = 0; i < labels.size(); ++i) {
    ++size[size_t(labels[i])];
    for (int j = 0; j < dim; ++j)
      centroid[size_t(labels[i]) * size_t(dim) + size_t(j)] += x[i * size_t(dim) + size_t(j)];
  }
  for (int l = 0; l < c; ++l)
    for (int j = 0; j < dim; ++j) centroid[size_t(l) * size_t(dim) + size_t(j)] /= double(size[size_t(l)]);
  std::vector<double> meta(size_t(c) * 2, 0.0);
  auto distance = [&](int p, int q) {
    const double* a = &centroid[size_t(p) * size_t(dim)];
    const double* b = &centroid[size_t(q) * size_t(dim)];
    double ab = 0, aa = 0, bb = 0, l2 = 0;
    for (int j = 0; j < dim; ++j)
      ab += a[j] * b[j], aa += a[j] * a[j], bb += b[j] * b[j], l2 += (a[j] - b[j]) * (a[j] - b[j]);
    if (!cosine) return std::sqrt(l2);
    return (aa > 0 && bb > 0) ? 1.0 - ab / std::sqrt(aa * bb) : 1.0;
  };
  constexpr int kDenseLimit = 1000;  // dense eigen-decomposition is O(c^3)
  if (c <= kDenseLimit) {
    // Normalised adjacency (diagonal ignored, as scipy's laplacian); its largest
    // eigenvalues are the Laplacian's smallest.
    std::vector<double> a(size_t(c) * size_t(c), 0.0), deg(size_t(c), 0.0);
    for (int p = 0; p < c; ++p)
      for (int q = p + 1; q < c; ++q) {
        const double d = distance(p, q), w = std::exp(-d * d);
        a[size_t(p) * size_t(c) + size_t(q)] = a[size_t(q) * size_t(c) + size_t(p)] = w;
        deg[size_t(p)] += w, deg[size_t(q)] += w;
      }
    for (auto& d : deg) d = d > 0 ? std::sqrt(d) : 1.0;
    for (int p = 0; p < c; ++p)
      for (int q = 0; q < c; ++q) a[size_t(p) * size_t(c) + size_t(q)] /= deg[size_t(p)] * deg[size_t(q)];
    std::vector<double> values, vectors;
    if (symmetric_eigen(c, a.data(), c - 3, c - 1, &values, &vectors)) {
      for (int r = 0; r < 2; ++r) {  // ascending: row 2 is trivial, rows 1 and 0 follow
        double* v = &vectors[size_t(1 - r) * size_t(c)];
        for (int p = 0; p < c; ++p) v[p] /= deg[size_t(p)];  // sklearn returns D^-1/2 u
        fix_sign(v, c, 1);
        for (int p = 0; p < c; ++p) meta[size_t(p) * 2 + size_t(r)] = v[p];
      }
    }
  } else {  // many components: their principal plane is a cheap, sensible stand-in
    std::vector<float> cf(centroid.begin(), centroid.end());
    auto pca = fit_pca(cf.data(), c, dim, 2, c);
    if (pca) {
      std::vector<float> proj(size_t(c) * size_t(pca->m));
      pca_project(*pca, cf.data(), c, proj.data(), 1);
      for (int p = 0; p < c; ++p)
        for (int r = 0; r < pca->m; ++r) meta[size_t(p) * 2 + size_t(r)] = proj[size_t(p) * size_t(pca->m) + size_t(r)];
    }
  }
  double mx = *std::max_element(meta.begin(), meta.end());
  if (!(mx > 0)) {
    mx = 0;
    for (double v : meta) mx = std::max(mx, std::fabs(v));
  }
  if (mx > 0)
    for (auto& v : meta) v /= mx;
  return meta;
}

}  // namespace

bool lanczos_top(const Graph& g, int want, uint64_t seed, int threads, std::vector<double>* out,
                 std::vector<double>* values) {
  const int64_t n = g.n;
  if (n < int64_t(want) + 2) return false;
  std::vector<double> isd(static_cast<size_t>(n)), u0(static_cast<size_t>(n));
  double norm = 0;
  for (int64_t i = 0; i < n; ++i) {
    double deg = 0;
    for (int64_t p = g.indptr[size_t(i)]; p < g.indptr[size_t(i) + 1]; ++p) deg += g.weights[size_t(p)];
    if (!(deg > 0)) return false;  // an isolated point: the graph is not connected
    isd[size_t(i)] = 1.0 / std::sqrt(deg);
    u0[size_t(i)] = std::sqrt(deg);
    norm += deg;
  }
  for (auto& v : u0) v /= std::sqrt(norm);
  auto deflate = [&](std::vector<double>& v) {
    const double c = parallel_dot(u0.data(), v.data(), n, threads);
    pfor(n, threads, [&](int64_t s, int64_t e, int) {
      for (int64_t i = s; i < e; ++i) v[size_t(i)] -= c * u0[size_t(i)];
    });
  };
  const int max_steps = int(std::min<int64_t>(n - 1, kMaxLanczosSteps));
  std::vector<float> basis(size_t(max_steps) * size_t(n));  // row j: Lanczos vector j
  std::vector<double> q(static_cast<size_t>(n)), prev(size_t(n), 0.0), w(static_cast<size_t>(n));
  // A random start (not umap-learn's ones vector, which is the trivial eigenvector itself
  // when all degrees are equal).
  Rng rng(seed ^ 0x5eed1a2c205ull);
  for (auto& v : q) v = rng.normal();
  deflate(q);
  double qn = std::sqrt(parallel_dot(q.data(), q.data(), n, threads));
  if (!(qn > 0)) return false;
  for (auto& v : q) v /= qn;
  std::vector<double> alpha, beta, ritz_values, ritz_vectors;
  const int nt = resolve_threads(threads);
  std::vector<double> coef(static_cast<size_t>(max_steps)), partial(size_t(nt) * size_t(max_steps));
  auto tridiagonal_eigen = [&](int steps) {
    std::vector<double> d(alpha.begin(), alpha.begin() + steps), e(beta.begin(), beta.begin() + (steps - 1));
    e.push_back(0.0);
    ritz_vectors.assign(size_t(steps) * size_t(steps), 0.0);
    std::vector<double> work(size_t(std::max(1, 2 * steps - 2)));
    int info = 0;
    dstev_("V", &steps, d.data(), e.data(), ritz_vectors.data(), &steps, work.data(), &info);
    ritz_values = d;
    return info == 0;
  };
  int steps = 0;
  for (int j = 0; j < max_steps; ++j) {
    for (int64_t i = 0; i < n; ++i) basis[size_t(j) * size_t(n) + size_t(i)] = float(q[size_t(i)]);
    pfor(n, threads, [&](int64_t s, int64_t e, int) {
      for (int64_t i = s; i < e; ++i) {
        double acc = 0;
        for (int64_t p = g.indptr[size_t(i)]; p < g.indptr[size_t(i) + 1]; ++p) {
          const int32_t c = g.indices[size_t(p)];
          acc += double(g.weights[size_t(p)]) * isd[size_t(c)] * q[size_t(c)];
        }
        w[size_t(i)] = isd[size_t(i)] * acc;
      }
    });
    const double a = parallel_dot(q.data(), w.data(), n, threads);
    const double bprev = j > 0 ? beta[size_t(j - 1)] : 0.0;
    pfor(n, threads, [&](int64_t s, int64_t e, int) {
      for (int64_t i = s; i < e; ++i) w[size_t(i)] -= a * q[size_t(i)] + bprev * prev[size_t(i)];
    });
    // Full reorthogonalisation (classical Gram-Schmidt against the stored basis and the
    // trivial eigenvector): without it Lanczos returns ghost copies of converged vectors.
    deflate(w);
    const int nb = j + 1;
    pfor(n, threads, [&](int64_t s, int64_t e, int t) {
      double* part = &partial[size_t(t) * size_t(max_steps)];
      for (int l = 0; l < nb; ++l) {
        const float* b = &basis[size_t(l) * size_t(n)];
        double acc = 0;
        for (int64_t i = s; i < e; ++i) acc += double(b[i]) * w[size_t(i)];
        part[l] = acc;
      }
    });
    for (int l = 0; l < nb; ++l) {
      coef[size_t(l)] = 0;
      for (int t = 0; t < nt; ++t) coef[size_t(l)] += partial[size_t(t) * size_t(max_steps) + size_t(l)];
    }
    pfor(n, threads, [&](int64_t s, int64_t e, int) {
      for (int l = 0; l < nb; ++l) {
        const float* b = &basis[size_t(l) * size_t(n)];
        const double c = coef[size_t(l)];
        for (int64_t i = s; i < e; ++i) w[size_t(i)] -= c * double(b[i]);
      }
    });
    const double bnew = std::sqrt(parallel_dot(w.data(), w.data(), n, threads));
    alpha.push_back(a);
    beta.push_back(bnew);
    steps = j + 1;
    const bool last = steps == max_steps || bnew < 1e-10;
    if (steps >= want && (last || steps % 8 == 0)) {
      if (!tridiagonal_eigen(steps)) return false;
      bool converged = true;
      for (int r = 0; r < want; ++r) {
        const size_t col = size_t(steps - 1 - r);
        converged = converged && std::fabs(bnew * ritz_vectors[col * size_t(steps) + size_t(steps - 1)]) <
                                     kRitzTolerance * std::max(1e-3, std::fabs(ritz_values[col]));
      }
      if (converged || last) break;
    }
    if (last) break;
    std::swap(prev, q);
    for (int64_t i = 0; i < n; ++i) q[size_t(i)] = w[size_t(i)] / bnew;
  }
  if (steps < want) return false;
  out->assign(size_t(n) * size_t(want), 0.0);
  values->assign(size_t(want), 0.0);
  for (int r = 0; r < want; ++r) {
    const size_t col = size_t(steps - 1 - r);  // largest Ritz values last
    (*values)[size_t(r)] = ritz_values[col];
    pfor(n, threads, [&](int64_t s, int64_t e, int) {
      for (int l = 0; l < steps; ++l) {
        const double c = ritz_vectors[col * size_t(steps) + size_t(l)];
        const float* b = &basis[size_t(l) * size_t(n)];
        for (int64_t i = s; i < e; ++i) (*out)[size_t(i) * size_t(want) + size_t(r)] += c * double(b[i]);
      }
    });
    fix_sign(out->data() + r, n, want);
  }
  return true;
}

std::vector<float> spectral_layout(const Graph& g, const float* x, int dim, bool cosine, uint64_t seed, int threads) {
  const int64_t n = g.n;
  std::vector<float> out(size_t(n) * 2, 0.0f);
  Rng rng(seed ^ 0x5bec7a1ull);
  std::vector<int32_t> labels;
  const int c = connected_components(g, &labels);
  std::vector<double> vec, vals;
  if (c == 1) {
    if (lanczos_top(g, 2, seed, threads, &vec, &vals)) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = float(vec[i]);
    } else {  // too small for an eigen-decomposition: umap-learn's random fallback
      for (auto& v : out) v = float(rng.uniform() * 20.0 - 10.0);
    }
    return out;
  }
  // Several components (umap-learn's multi_component_layout): each gets its own spectral
  // layout, scaled to half the distance to the nearest other component's spot.
  std::vector<double> meta;
  if (c > 4) {
    meta = component_layout(x, dim, cosine, labels, c);
  } else {  // +-unit vectors
    const double base[2][2] = {{1, 0}, {0, 1}};
    const int k = (c + 1) / 2;
    for (int l = 0; l < c; ++l) {
      const int row = l < k ? l : l - k;
      const double sign = l < k ? 1.0 : -1.0;
      meta.push_back(sign * base[row][0]);
      meta.push_back(sign * base[row][1]);
    }
  }
  std::vector<std::vector<int32_t>> members(static_cast<size_t>(c));
  for (int64_t i = 0; i < n; ++i) members[size_t(labels[size_t(i)])].push_back(int32_t(i));
  std::vector<int32_t> local(size_t(n), -1);
  for (int l = 0; l < c; ++l) {
    const auto& mem = members[size_t(l)];
    for (size_t r = 0; r < mem.size(); ++r) local[size_t(mem[r])] = int32_t(r);
    const double mx = meta[size_t(l) * 2], my = meta[size_t(l) * 2 + 1];
    double range = std::numeric_limits<double>::infinity();
    for (int o = 0; o < c; ++o) {
      const double d = std::hypot(meta[size_t(o) * 2] - mx, meta[size_t(o) * 2 + 1] - my);
      if (d > 0) range = std::min(range, d / 2.0);
    }
    if (std::isinf(range)) range = 1.0;  // every spot coincides
    bool placed = false;
    if (mem.size() >= 4) {
      const Graph sub = subgraph(g, mem, local);
      if (lanczos_top(sub, 2, seed + uint64_t(l), threads, &vec, &vals)) {
        double big = 0;
        for (double v : vec) big = std::max(big, std::fabs(v));
        const double expansion = big > 0 ? range / big : 0.0;
        for (size_t r = 0; r < mem.size(); ++r) {
          out[size_t(mem[r]) * 2] = float(vec[r * 2] * expansion + mx);
          out[size_t(mem[r]) * 2 + 1] = float(vec[r * 2 + 1] * expansion + my);
        }
        placed = true;
      }
    }
    if (!placed)
      for (int32_t p : mem) {
        out[size_t(p) * 2] = float(mx + (rng.uniform() * 2 - 1) * range);
        out[size_t(p) * 2 + 1] = float(my + (rng.uniform() * 2 - 1) * range);
      }
  }
  return out;
}

}  // namespace imgsearch::map::detail
