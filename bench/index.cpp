// bench/index: the index kinds imgsearch offers, on realistic embeddings, against exact
// search -- recall@10 at the default (tuned) knobs, bytes per vector, single-query
// latency (1 thread, batch 1), build time -- each beside FAISS used the way its tutorial
// uses it (a plain IndexFlatL2, added and searched as is), in the same run.
//
//   build/bench/index --quick            100k synthetic vectors (+ the real caltech20 set)
//   build/bench/index                    100k, then 1M: each figure and its 1M/100k ratio
//   build/bench/index --db DB            take the real vectors from an existing database
//
// Real vectors: the caltech20 photos' embeddings (indexed into a temporary database with
// the default model unless --db is given). Synthetic vectors: each is a real vector of
// some class, moved part of the way towards another of the same class, plus Gaussian
// noise scaled by the real data's per-dimension spread, re-normalised (cosine). That
// gives clusters (classes), continua inside them and no exact duplicates. Rows are
// generated from their index alone, in chunks, straight into one array: no copies.
//
// Kinds go through imgsearch's own index code (index::make_index, tune_defaults with the
// database's target and sample size, exact re-ranking for compressed kinds). Queries are
// held-out synthetic vectors; the tuning sample is drawn from the collection, as the
// database does. Ends with one machine-readable RESULT line.
#include <faiss/IndexFlat.h>
#include <omp.h>
#include <sys/resource.h>  // getrusage (peak memory)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "database/database.h"
#include "index/exact.h"
#include "index/fast_flat.h"
#include "index/policy.h"
#include "index/vector_index.h"
#include "ingest/ingest.h"

namespace fs = std::filesystem;
using namespace imgsearch;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

double peak_rss_gb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / (1024.0 * 1024.0);
}

// ---------------------------------------------------------------------------------------
// Real vectors.

struct RealSet {
  int dim = 0;
  std::vector<float> x;  // n x dim, unit length
  std::vector<int> cls;  // class of each row (the photo's folder)
  std::vector<std::vector<int>> by_class;
  std::vector<float> spread;  // per-dimension standard deviation
  int64_t n() const { return int64_t(cls.size()); }
};

Result<RealSet> load_real(const fs::path& db_dir) {
  auto db = database::Database::open_for_reading(db_dir);
  if (!db) return make_error(db.error());
  RealSet r;
  r.dim = (*db)->settings().dim;
  std::map<int64_t, std::string> folder;
  for (const auto& rec : (*db)->catalog().list_images()) folder[rec.id] = fs::path(rec.path).parent_path().filename();
  std::map<std::string, int> class_of;
  auto seq = (*db)->catalog().for_each_vector([&](int64_t id, std::span<const float> v) {
    const auto [it, fresh] = class_of.emplace(folder[id], int(class_of.size()));
    r.cls.push_back(it->second);
    r.x.insert(r.x.end(), v.begin(), v.end());
  });
  if (!seq) return make_error(seq.error());
  if (r.n() < 10) return make_error(db_dir.string() + ": too few vectors for a benchmark");
  r.by_class.resize(class_of.size());
  for (int i = 0; i < int(r.n()); ++i) r.by_class[size_t(r.cls[size_t(i)])].push_back(i);
  r.spread.assign(size_t(r.dim), 0.f);
  std::vector<double> mean(size_t(r.dim), 0), sq(size_t(r.dim), 0);
  for (int64_t i = 0; i < r.n(); ++i)
    for (int j = 0; j < r.dim; ++j) {
      const double v = r.x[size_t(i * r.dim + j)];
      mean[size_t(j)] += v;
      sq[size_t(j)] += v * v;
    }
  for (int j = 0; j < r.dim; ++j) {
    const double m = mean[size_t(j)] / double(r.n());
    r.spread[size_t(j)] = float(std::sqrt(std::max(0.0, sq[size_t(j)] / double(r.n()) - m * m)));
  }
  return r;
}

// Indexes the caltech20 photos into `db_dir` with the default model (once; reused).
Status make_real_db(const fs::path& db_dir) {
  if (fs::exists(db_dir / "catalog.sqlite")) return {};
  embed::Representation rep;
  auto embedder = embed::Embedder::open(rep);
  if (!embedder) return make_error(embedder.error());
  database::Settings s;
  s.representation = (*embedder)->representation();
  s.dim = int((*embedder)->dim());
  s.index_spec = "Flat";
  auto db = database::Database::open_for_writing(db_dir, s);
  if (!db) return make_error(db.error());
  ingest::Options o;
  o.progress = Progress::Style::Quiet;
  const fs::path photos = fs::path(IMGSEARCH_SHARED_DIR) / "photos" / "caltech20";
  std::printf("indexing %s into %s (once) ...\n", photos.c_str(), db_dir.c_str());
  std::fflush(stdout);
  auto summary = ingest::index_folder(**db, **embedder, photos, o);
  if (!summary) return make_error(summary.error());
  return {};
}

// ---------------------------------------------------------------------------------------
// Synthetic vectors.

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Row `i` of the synthetic set: depends on i alone, so any row can be made in any order.
void synth_row(const RealSet& r, uint64_t i, float noise, float* out) {
  uint64_t s = i * 0x2545F4914F6CDD1Dull + 12345;
  auto uniform = [&] { return double(splitmix(s) >> 11) * (1.0 / 9007199254740992.0); };
  const auto& members = r.by_class[size_t(splitmix(s) % r.by_class.size())];
  const float* a = r.x.data() + size_t(members[size_t(splitmix(s) % members.size())]) * size_t(r.dim);
  const float* b = r.x.data() + size_t(members[size_t(splitmix(s) % members.size())]) * size_t(r.dim);
  const float t = float(0.5 * uniform());  // part of the way towards a classmate
  // Noise varies by row, log-uniform over [noise/4, noise]: some rows are near-duplicates
  // of a real photo, others only share its class.
  noise *= float(std::exp(-std::log(4.0) * uniform()));
  double norm = 0;
  for (int j = 0; j < r.dim; j += 2) {
    // Box-Muller: two normals per pair of uniforms.
    const double u1 = std::max(uniform(), 1e-300), u2 = uniform();
    const double rad = std::sqrt(-2.0 * std::log(u1));
    const double g[2] = {rad * std::cos(6.283185307179586 * u2), rad * std::sin(6.283185307179586 * u2)};
    for (int h = 0; h < 2 && j + h < r.dim; ++h) {
      const int k = j + h;
      const float v = a[k] + t * (b[k] - a[k]) + noise * r.spread[size_t(k)] * float(g[h]);
      out[k] = v;
      norm += double(v) * v;
    }
  }
  const float inv = float(1.0 / std::sqrt(norm));
  for (int k = 0; k < r.dim; ++k) out[k] *= inv;
}

void synth_rows(const RealSet& r, uint64_t first, int64_t count, float noise, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) synth_row(r, first + uint64_t(i), noise, out + size_t(i) * size_t(r.dim));
}

// ---------------------------------------------------------------------------------------
// One benchmark run on n vectors.

struct Figures {
  std::string kind, spec;
  double build_s = 0, train_s = 0, recall = -1, ms_per_query = -1, bytes_per_vector = 0;
  int64_t code_bytes = 0, id_bytes = 0;
  std::string knobs, note;
  bool built = false;
};

struct Data {
  int dim = 0;
  int64_t n = 0, nq = 0;
  const float* base = nullptr;                // n x dim, ids are row numbers
  std::vector<float> queries;                 // nq x dim, held out
  std::vector<int64_t> truth;                 // nq x 10
  std::vector<float> tune_q;                  // tuning sample drawn from the collection
  std::vector<int64_t> tune_ids, tune_truth;  // its ids, and true neighbours (11 per row, self included)
};

// Single-query latency: each query alone, one thread; the mean over `reps` queries.
template <class F>
double ms_per_query(int64_t nq, int reps, F&& one) {
  omp_set_num_threads(1);
  const int64_t m = std::min<int64_t>(nq, reps);
  one(0);  // warm-up (page faults, caches)
  const auto t0 = Clock::now();
  for (int64_t q = 0; q < m; ++q) one(q);
  const double ms = seconds_since(t0) * 1000 / double(m);
  omp_set_num_threads(omp_get_num_procs());
  return ms;
}

// Exact re-ranking of `fetch` candidates per query with the base vectors (what the
// Searcher does with the catalog's vectors).
void rerank(const Data& d, const float* query, const int64_t* cand, int fetch, int64_t* top10) {
  std::vector<std::pair<float, int64_t>> c;
  c.reserve(size_t(fetch));
  for (int j = 0; j < fetch; ++j)
    if (cand[j] >= 0)
      c.emplace_back(index::inner_product(query, d.base + size_t(cand[j]) * size_t(d.dim), size_t(d.dim)), cand[j]);
  const size_t k = std::min<size_t>(10, c.size());
  std::partial_sort(c.begin(), c.begin() + long(k), c.end(), [](auto& a, auto& b) { return a.first > b.first; });
  for (size_t r = 0; r < 10; ++r) top10[r] = r < k ? c[r].second : -1;
}

Figures run_kind(const std::string& kind, const std::string& spec, const Data& d, int latency_reps) {
  Figures f;
  f.kind = kind;
  f.spec = spec;
  std::printf("  %-10s %-24s building ...\n", kind.c_str(), spec.c_str());
  std::fflush(stdout);
  auto made = index::make_index(spec, d.dim, index::Metric::Cosine);
  if (!made) {
    f.note = made.error();
    return f;
  }
  auto& ix = **made;
  const auto t0 = Clock::now();
  if (ix.needs_training()) {
    const int64_t tn = std::min(d.n, ix.ideal_training_vectors());
    // Rows are already in random order: the first tn are a uniform sample.
    if (auto s = ix.train(tn, d.base); !s) {
      f.note = s.error();
      return f;
    }
    f.train_s = seconds_since(t0);
  }
  const int64_t chunk = 65536;
  std::vector<int64_t> ids(static_cast<size_t>(chunk));
  for (int64_t start = 0; start < d.n; start += chunk) {
    const int64_t cnt = std::min(chunk, d.n - start);
    std::iota(ids.begin(), ids.begin() + cnt, start);
    if (auto s = ix.add(cnt, d.base + size_t(start) * size_t(d.dim), ids.data()); !s) {
      f.note = s.error();
      return f;
    }
  }
  const auto st = ix.stats();
  const bool lossy = st.lossy;
  const int fetch = lossy ? database::kDefaultRerank : 10;
  auto tuned = index::tune_defaults(ix, int64_t(d.tune_ids.size()), d.tune_q.data(), d.tune_truth.data(), 11, 10, fetch,
                                    database::kTunedRecallTarget, d.tune_ids.data());
  f.build_s = seconds_since(t0);
  f.built = true;
  f.bytes_per_vector = double(st.memory_bytes) / double(d.n);
  f.code_bytes = st.code_bytes;
  f.id_bytes = st.id_bytes;
  const auto o = ix.default_options();
  if (o.nprobe) f.knobs += "nprobe=" + std::to_string(o.nprobe) + " ";
  if (o.ef_search) f.knobs += "efSearch=" + std::to_string(o.ef_search) + " ";
  if (lossy) f.knobs += "rerank=" + std::to_string(fetch) + " ";
  f.knobs += "(tuning sample " + std::to_string(tuned.recall).substr(0, 5) + ")";

  // Recall@10 at the default knobs on the held-out queries (batched: fast).
  std::vector<float> s(size_t(d.nq) * size_t(fetch));
  std::vector<int64_t> got(size_t(d.nq) * size_t(fetch));
  ix.search(d.nq, d.queries.data(), fetch, s.data(), got.data());
  std::vector<int64_t> top(size_t(d.nq) * 10);
  if (lossy) {
    for (int64_t q = 0; q < d.nq; ++q)
      rerank(d, d.queries.data() + q * d.dim, got.data() + q * fetch, fetch, top.data() + q * 10);
    // What PQ alone gives, and shallower re-ranking, for the README's table.
    std::vector<int64_t> own(size_t(d.nq) * 10);
    for (int64_t q = 0; q < d.nq; ++q) std::copy_n(got.begin() + q * fetch, 10, own.begin() + q * 10);
    f.note = "without re-ranking " +
             std::to_string(index::recall_at_k(d.nq, d.truth.data(), 10, own.data(), 10, 10)).substr(0, 5);
    for (int depth : {100, 250, 500}) {
      std::vector<int64_t> t2(size_t(d.nq) * 10);
      for (int64_t q = 0; q < d.nq; ++q)
        rerank(d, d.queries.data() + q * d.dim, got.data() + q * fetch, depth, t2.data() + q * 10);
      f.note += ", rerank " + std::to_string(depth) + ": " +
                std::to_string(index::recall_at_k(d.nq, d.truth.data(), 10, t2.data(), 10, 10)).substr(0, 5);
    }
  } else {
    top = got;
  }
  f.recall = index::recall_at_k(d.nq, d.truth.data(), 10, top.data(), 10, 10);

  std::vector<float> s1(static_cast<size_t>(fetch));
  std::vector<int64_t> l1(static_cast<size_t>(fetch)), t1(10);
  f.ms_per_query = ms_per_query(d.nq, latency_reps, [&](int64_t q) {
    ix.search(1, d.queries.data() + q * d.dim, fetch, s1.data(), l1.data());
    if (lossy) rerank(d, d.queries.data() + q * d.dim, l1.data(), fetch, t1.data());
  });
  return f;
}

// FAISS as its tutorial uses it: IndexFlatL2, add, search; no ids, no tuning.
Figures run_tutorial(const Data& d, int latency_reps) {
  Figures f;
  f.kind = "faiss-tut";
  f.spec = "IndexFlatL2";
  std::printf("  %-10s %-24s building ...\n", f.kind.c_str(), f.spec.c_str());
  std::fflush(stdout);
  const auto t0 = Clock::now();
  faiss::IndexFlatL2 flat(d.dim);
  flat.add(d.n, d.base);
  f.build_s = seconds_since(t0);
  f.built = true;
  f.bytes_per_vector = double(flat.codes.size()) / double(d.n);
  f.code_bytes = int64_t(flat.code_size);
  std::vector<float> s(size_t(d.nq) * 10);
  std::vector<faiss::Index::idx_t> got(size_t(d.nq) * 10);
  flat.search(d.nq, d.queries.data(), 10, s.data(), got.data());
  f.recall = index::recall_at_k(d.nq, d.truth.data(), 10, got.data(), 10, 10);
  f.ms_per_query = ms_per_query(
      d.nq, latency_reps, [&](int64_t q) { flat.search(1, d.queries.data() + q * d.dim, 10, s.data(), got.data()); });
  return f;
}

struct Run {
  int64_t n = 0;
  std::vector<Figures> figures;
  const Figures* find(const std::string& kind) const {
    for (const auto& f : figures)
      if (f.kind == kind) return &f;
    return nullptr;
  }
};

void print_table(const Run& r) {
  std::printf("\n  n = %lld   (recall@10 vs exact at default knobs; latency: 1 thread, batch 1)\n", (long long)r.n);
  std::printf("  %-10s %-24s %8s %10s %10s %10s %9s  %s\n", "kind", "spec", "recall", "ms/query", "B/vector", "build s",
              "train s", "knobs / notes");
  for (const auto& f : r.figures) {
    if (!f.built) {
      std::printf("  %-10s %-24s not built: %s\n", f.kind.c_str(), f.spec.c_str(), f.note.c_str());
      continue;
    }
    std::printf("  %-10s %-24s %8.3f %10.3f %10.1f %10.1f %9.1f  %s%s%s\n", f.kind.c_str(), f.spec.c_str(), f.recall,
                f.ms_per_query, f.bytes_per_vector, f.build_s, f.train_s, f.knobs.c_str(), f.note.empty() ? "" : "; ",
                f.note.c_str());
  }
  std::fflush(stdout);
}

int64_t nlist_for(int64_t n) {
  // As `auto` chooses (index/policy.h): ~4 sqrt(n), a power of two.
  const auto plan = index::resolve_auto(n, 256, 1);  // tiny budget: the compressed branch
  const auto p = plan.spec.find("IVF");
  return std::stoll(plan.spec.substr(p + 3));
}

Run run_size(const RealSet& real, int64_t n, int64_t nq, float noise, int latency_reps,
             const std::vector<std::string>& only) {
  Run run;
  run.n = n;
  Data d;
  d.dim = real.dim;
  d.n = n;
  d.nq = nq;
  std::printf("\n== %lld synthetic vectors x %d (load average %s)\n", (long long)n, d.dim, load_average().c_str());
  auto t0 = Clock::now();
  std::vector<float> base;
  base.resize(size_t(n) * size_t(d.dim));
  synth_rows(real, 0, n, noise, base.data());
  d.base = base.data();
  d.queries.resize(size_t(nq) * size_t(d.dim));
  synth_rows(real, uint64_t(1) << 40, nq, noise, d.queries.data());  // rows never in the base
  std::printf("  generated in %.1f s\n", seconds_since(t0));
  // The tuning sample, as the database draws it: vectors of the collection itself.
  const int64_t tq = std::min<int64_t>(database::kTuningQueries, n);
  std::mt19937_64 rng(99);
  for (int64_t i = 0; i < tq; ++i) d.tune_ids.push_back(int64_t(rng() % uint64_t(n)));
  for (int64_t id : d.tune_ids) d.tune_q.insert(d.tune_q.end(), d.base + id * d.dim, d.base + (id + 1) * d.dim);
  t0 = Clock::now();
  {
    index::ExactKnn truth(index::Metric::Cosine, d.dim, nq, d.queries.data(), 10);
    index::ExactKnn tune_truth(index::Metric::Cosine, d.dim, tq, d.tune_q.data(), 11);
    std::vector<int64_t> ids(65536);
    for (int64_t start = 0; start < n; start += 65536) {
      const int64_t cnt = std::min<int64_t>(65536, n - start);
      std::iota(ids.begin(), ids.begin() + cnt, start);
      truth.add(cnt, d.base + start * d.dim, ids.data());
      tune_truth.add(cnt, d.base + start * d.dim, ids.data());
    }
    d.truth = truth.ids();
    d.tune_truth = tune_truth.ids();
    // How close neighbours are: cosine of the 1st and 10th true neighbour (median).
    std::vector<float> s1, s10;
    for (int64_t q = 0; q < nq; ++q) {
      s1.push_back(truth.scores()[size_t(q * 10)]);
      s10.push_back(truth.scores()[size_t(q * 10 + 9)]);
    }
    std::nth_element(s1.begin(), s1.begin() + long(s1.size() / 2), s1.end());
    std::nth_element(s10.begin(), s10.begin() + long(s10.size() / 2), s10.end());
    std::printf("  exact neighbours of %lld queries in %.1f s; median cosine to the 1st / 10th neighbour %.3f / %.3f\n",
                (long long)nq, seconds_since(t0), s1[s1.size() / 2], s10[s10.size() / 2]);
  }
  const std::string nl = std::to_string(nlist_for(n));
  const std::vector<std::pair<std::string, std::string>> kinds = {
      {"flat", "Flat"}, {"hnsw", "HNSW32"}, {"ivf", "IVF" + nl + ",Flat"}, {"pq", "PCA256,IVF" + nl + ",PQ32"}};
  auto wanted = [&](const std::string& k) { return only.empty() || std::count(only.begin(), only.end(), k); };
  if (wanted("faiss-tut")) run.figures.push_back(run_tutorial(d, latency_reps / 4 + 1));
  for (const auto& [kind, spec] : kinds) {
    if (!wanted(kind)) continue;
    run.figures.push_back(run_kind(kind, spec, d, kind == "flat" ? latency_reps / 4 + 1 : latency_reps));
    print_table(run);
  }
  std::printf("  peak memory %.1f GB; load average %s\n", peak_rss_gb(), load_average().c_str());
  return run;
}

// The real caltech20 vectors: every vector queries the others (its own id excluded).
void run_real(const RealSet& real) {
  std::printf("\n== real caltech20 embeddings: %lld x %d, each vector queries the rest\n", (long long)real.n(),
              real.dim);
  const int64_t n = real.n();
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), int64_t(0));
  index::ExactKnn truth(index::Metric::Cosine, real.dim, n, real.x.data(), 11);
  truth.add(n, real.x.data(), ids.data());
  {
    // How close neighbours are (the self match is column 0): median cosine to the 1st and 10th.
    std::vector<float> s1, s10;
    for (int64_t q = 0; q < n; ++q) {
      s1.push_back(truth.scores()[size_t(q * 11 + 1)]);
      s10.push_back(truth.scores()[size_t(q * 11 + 10)]);
    }
    std::nth_element(s1.begin(), s1.begin() + long(s1.size() / 2), s1.end());
    std::nth_element(s10.begin(), s10.begin() + long(s10.size() / 2), s10.end());
    std::printf("  median cosine to the 1st / 10th neighbour %.3f / %.3f\n", s1[s1.size() / 2], s10[s10.size() / 2]);
  }
  // Small collection: IVF and PQ sized for it (FAISS warns below 39 points per centroid).
  for (const std::string spec : {"HNSW32", "IVF8,Flat", "PCA128,IVF8,PQ32x4"}) {
    auto made = index::make_index(spec, real.dim, index::Metric::Cosine);
    if (!made) continue;
    auto& ix = **made;
    if (ix.needs_training() && !ix.train(n, real.x.data()).ok()) continue;
    if (!ix.add(n, real.x.data(), ids.data()).ok()) continue;
    const bool lossy = ix.stats().lossy;
    const int fetch = lossy ? std::min<int>(int(n), 100) : 10;
    const auto t = index::tune_defaults(ix, n, real.x.data(), truth.ids().data(), 11, 10, fetch,
                                        database::kTunedRecallTarget, ids.data());
    double recall = t.recall;
    std::string how = lossy ? " (" + std::to_string(fetch) + " candidates re-ranked)" : "";
    if (lossy) {
      // The tuned recall counts candidates; re-rank them to get the final top 10.
      std::vector<float> s(size_t(n) * size_t(fetch + 1));
      std::vector<int64_t> got(size_t(n) * size_t(fetch + 1));
      ix.search(n, real.x.data(), fetch + 1, s.data(), got.data());
      std::vector<int64_t> top(size_t(n) * 11);
      for (int64_t q = 0; q < n; ++q) {
        std::vector<std::pair<float, int64_t>> c;
        for (int j = 0; j <= fetch; ++j) {
          const int64_t id = got[size_t(q * (fetch + 1) + j)];
          if (id >= 0 && id != q)
            c.emplace_back(
                index::inner_product(real.x.data() + q * real.dim, real.x.data() + id * real.dim, size_t(real.dim)),
                id);
        }
        std::sort(c.begin(), c.end(), [](auto& a, auto& b) { return a.first > b.first; });
        for (size_t r = 0; r < 11; ++r) top[size_t(q) * 11 + r] = r < c.size() ? c[r].second : -1;
      }
      recall = index::recall_at_k(n, truth.ids().data(), 11, top.data(), 11, 10, ids.data());
    }
    std::printf("  %-24s recall@10 %.3f at %s%s%s\n", spec.c_str(), recall,
                t.options.nprobe ? ("nprobe " + std::to_string(t.options.nprobe)).c_str() : "",
                t.options.ef_search ? ("efSearch " + std::to_string(t.options.ef_search)).c_str() : "", how.c_str());
  }
}

std::string ratio(const Run& small, const Run& big, const std::string& kind, double Figures::*field) {
  const Figures* a = small.find(kind);
  const Figures* b = big.find(kind);
  if (!a || !b || !a->built || !b->built || a->*field <= 0) return "   -";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%6.2fx", b->*field / (a->*field));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  fs::path db;
  int64_t big = 1'000'000, small = 100'000, nq = 1000;
  float noise = 0.6f;
  std::vector<std::string> only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--quick")
      quick = true;
    else if (a == "--db")
      db = next();
    else if (a == "--n")
      big = std::stoll(next());
    else if (a == "--small")
      small = std::stoll(next());
    else if (a == "--queries")
      nq = std::stoll(next());
    else if (a == "--noise")
      noise = std::stof(next());
    else if (a == "--only")
      only.push_back(next());
    else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--db DB] [--n N] [--small N] [--queries Q] [--noise F] [--only KIND]...\n"
                   "  --quick     100k vectors only (under 5 minutes on 2 cores)\n"
                   "  --db DB     real vectors from this database (default: caltech20 indexed once into /tmp)\n"
                   "  --only K    faiss-tut, flat, hnsw, ivf, pq (repeatable)\n",
                   argv[0]);
      return 2;
    }
  }
  if (quick) nq = std::min<int64_t>(nq, 300);
  omp_set_num_threads(omp_get_num_procs());
  std::printf("bench/index: %s; %d cores; AVX2 kernels %s; load average %s\n", quick ? "quick" : "full",
              omp_get_num_procs(), index::fast_kernels_available() ? "on" : "off", load_average().c_str());
  if (db.empty()) {
    db = fs::temp_directory_path() / "imgsearch_bench_caltech20.imgsearch";
    if (auto s = make_real_db(db); !s) {
      std::fprintf(stderr, "bench/index: %s\n", s.error().c_str());
      return 1;
    }
  }
  auto real = load_real(db);
  if (!real) {
    std::fprintf(stderr, "bench/index: %s\n", real.error().c_str());
    return 1;
  }
  run_real(*real);
  const int reps = 200;
  Run r_small = run_size(*real, small, nq, noise, reps, only);
  Run r_big;
  if (!quick) {
    r_big = run_size(*real, big, nq, noise, reps, only);
    std::printf("\n== growth from %lld to %lld vectors (ratio)\n", (long long)small, (long long)big);
    std::printf("  %-10s %10s %10s %10s %10s\n", "kind", "recall", "ms/query", "B/vector", "build s");
    for (const auto& f : r_big.figures)
      std::printf("  %-10s %10s %10s %10s %10s\n", f.kind.c_str(),
                  ratio(r_small, r_big, f.kind, &Figures::recall).c_str(),
                  ratio(r_small, r_big, f.kind, &Figures::ms_per_query).c_str(),
                  ratio(r_small, r_big, f.kind, &Figures::bytes_per_vector).c_str(),
                  ratio(r_small, r_big, f.kind, &Figures::build_s).c_str());
  }
  const Run& last = quick ? r_small : r_big;
  auto get = [&](const std::string& kind, double Figures::*field) {
    const Figures* f = last.find(kind);
    return f && f->built ? f->*field : -1.0;
  };
  const double hnsw_ms = get("hnsw", &Figures::ms_per_query), ivf_ms = get("ivf", &Figures::ms_per_query);
  const double ann_ms = hnsw_ms < 0 ? ivf_ms : ivf_ms < 0 ? hnsw_ms : std::min(hnsw_ms, ivf_ms);
  std::printf(
      "RESULT recall10_hnsw=%.3f recall10_ivf=%.3f recall10_pq_rerank=%.3f bytes_per_vector_pq=%.1f "
      "ms_per_query_ann=%.3f ms_per_query_flat=%.3f ms_per_query_hnsw=%.3f ms_per_query_ivf=%.3f "
      "ms_per_query_pq_rerank=%.3f ms_per_query_faiss_flatl2=%.3f build_s_hnsw=%.1f build_s_ivf=%.1f "
      "build_s_pq=%.1f n=%lld\n",
      get("hnsw", &Figures::recall), get("ivf", &Figures::recall), get("pq", &Figures::recall),
      get("pq", &Figures::bytes_per_vector), ann_ms, get("flat", &Figures::ms_per_query), hnsw_ms, ivf_ms,
      get("pq", &Figures::ms_per_query), get("faiss-tut", &Figures::ms_per_query), get("hnsw", &Figures::build_s),
      get("ivf", &Figures::build_s), get("pq", &Figures::build_s), (long long)last.n);
  return 0;
}
