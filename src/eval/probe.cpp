#include "eval/probe.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <numeric>

#include "eval/linalg.h"

namespace imgsearch::eval {
namespace {

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Softmax regression on standardised features: loss and gradient in one pass.
// theta = [W (d x K, row-major), b (K)].
class Objective {
 public:
  Objective(const float* x, int m, int d, int k, const int* y, double lambda)
      : x_(x), m_(m), d_(d), k_(k), y_(y), lambda_(lambda), w_(size_t(d) * k), z_(size_t(m) * k), gw_(size_t(d) * k) {}

  double operator()(const std::vector<double>& theta, std::vector<double>& grad) {
    const size_t dk = size_t(d_) * k_;
    for (size_t i = 0; i < dk; ++i) w_[i] = float(theta[i]);
    gemm(false, false, m_, k_, d_, 1.f, x_, w_.data(), 0.f, z_.data());
    double loss = 0;
    std::vector<double> gb(size_t(k_), 0.0);
    for (int i = 0; i < m_; ++i) {
      float* z = z_.data() + size_t(i) * k_;
      double zmax = -1e300;
      for (int c = 0; c < k_; ++c) zmax = std::max(zmax, double(z[c]) + theta[dk + size_t(c)]);
      double sum = 0;
      for (int c = 0; c < k_; ++c) sum += std::exp(double(z[c]) + theta[dk + size_t(c)] - zmax);
      loss += std::log(sum) + zmax - (double(z[y_[i]]) + theta[dk + size_t(y_[i])]);
      // z becomes the residual (softmax - one-hot) / m, the gradient of the mean loss.
      for (int c = 0; c < k_; ++c) {
        const double p = std::exp(double(z[c]) + theta[dk + size_t(c)] - zmax) / sum;
        const double r = (p - (c == y_[i] ? 1.0 : 0.0)) / m_;
        z[c] = float(r);
        gb[size_t(c)] += r;
      }
    }
    gemm(true, false, d_, k_, m_, 1.f, x_, z_.data(), 0.f, gw_.data());
    double reg = 0;
    grad.resize(theta.size());
    for (size_t i = 0; i < dk; ++i) {
      reg += theta[i] * theta[i];
      grad[i] = double(gw_[i]) + lambda_ * theta[i];
    }
    for (int c = 0; c < k_; ++c) grad[dk + size_t(c)] = gb[size_t(c)];
    return loss / m_ + 0.5 * lambda_ * reg;
  }

 private:
  const float* x_;
  int m_, d_, k_;
  const int* y_;
  double lambda_;
  std::vector<float> w_, z_, gw_;
};

// Minimises f from theta = 0 by L-BFGS (history 10, backtracking Armijo line search).
// Returns the iterations run.
int lbfgs(Objective& f, std::vector<double>& theta, int max_iterations) {
  constexpr size_t kHistory = 10;
  std::vector<double> g, g_new, dir(theta.size()), theta_new(theta.size());
  double fx = f(theta, g);
  std::deque<std::pair<std::vector<double>, std::vector<double>>> hist;  // (s, y)
  std::deque<double> rho;
  int it = 0;
  for (; it < max_iterations; ++it) {
    double gmax = 0;
    for (double v : g) gmax = std::max(gmax, std::abs(v));
    if (gmax < 1e-6) break;
    // Two-loop recursion: dir = -H g.
    dir = g;
    std::vector<double> alpha(hist.size());
    for (size_t j = hist.size(); j-- > 0;) {
      alpha[j] = rho[j] * dot(hist[j].first, dir);
      for (size_t i = 0; i < dir.size(); ++i) dir[i] -= alpha[j] * hist[j].second[i];
    }
    double gamma = 1.0 / std::sqrt(dot(g, g));  // first step: unit length
    if (!hist.empty()) gamma = dot(hist.back().first, hist.back().second) / dot(hist.back().second, hist.back().second);
    for (double& v : dir) v *= gamma;
    for (size_t j = 0; j < hist.size(); ++j) {
      const double beta = rho[j] * dot(hist[j].second, dir);
      for (size_t i = 0; i < dir.size(); ++i) dir[i] += (alpha[j] - beta) * hist[j].first[i];
    }
    for (double& v : dir) v = -v;
    double gtd = dot(g, dir);
    if (gtd >= 0) {  // not a descent direction (numerical trouble): restart as steepest descent
      hist.clear();
      rho.clear();
      for (size_t i = 0; i < dir.size(); ++i) dir[i] = -g[i] / std::sqrt(dot(g, g));
      gtd = dot(g, dir);
    }
    double step = 1.0, f_new = 0;
    bool accepted = false;
    for (int ls = 0; ls < 40; ++ls, step *= 0.5) {
      for (size_t i = 0; i < theta.size(); ++i) theta_new[i] = theta[i] + step * dir[i];
      f_new = f(theta_new, g_new);
      if (f_new <= fx + 1e-4 * step * gtd) {
        accepted = true;
        break;
      }
    }
    if (!accepted) break;
    std::vector<double> s(theta.size()), y(theta.size());
    for (size_t i = 0; i < theta.size(); ++i) {
      s[i] = theta_new[i] - theta[i];
      y[i] = g_new[i] - g[i];
    }
    const double sy = dot(s, y);
    if (sy > 1e-12) {
      if (hist.size() == kHistory) {
        hist.pop_front();
        rho.pop_front();
      }
      hist.emplace_back(std::move(s), std::move(y));
      rho.push_back(1.0 / sy);
    }
    const bool flat = std::abs(fx - f_new) <= 1e-10 * std::max(1.0, std::abs(fx));
    theta.swap(theta_new);
    g.swap(g_new);
    fx = f_new;
    if (flat) {
      ++it;
      break;
    }
  }
  return it;
}

}  // namespace

ProbeResult linear_probe(const float* x, int64_t n, int dim, std::span<const int> labels, int n_classes,
                         const ProbeOptions& options) {
  ProbeResult r;
  r.folds = std::max(2, options.folds);
  r.per_class.assign(size_t(n_classes), 0.0);
  if (n < 2 || dim <= 0 || n_classes < 2) return r;
  // Stratified folds: the i-th image of a class goes to fold i mod k.
  std::vector<int> fold(static_cast<size_t>(n)), seen(size_t(n_classes), 0), class_count(size_t(n_classes), 0);
  for (int64_t i = 0; i < n; ++i) {
    fold[size_t(i)] = seen[size_t(labels[size_t(i)])]++ % r.folds;
    ++class_count[size_t(labels[size_t(i)])];
  }
  int64_t correct_total = 0;
  std::vector<int64_t> class_correct(size_t(n_classes), 0);
  double iterations = 0;
  for (int f = 0; f < r.folds; ++f) {
    std::vector<int64_t> train, test;
    for (int64_t i = 0; i < n; ++i) (fold[size_t(i)] == f ? test : train).push_back(i);
    if (train.empty() || test.empty()) continue;
    // Standardise with the training part only: the test part must not leak into it.
    std::vector<double> mean(size_t(dim), 0.0), sd(size_t(dim), 0.0);
    for (int64_t i : train)
      for (int j = 0; j < dim; ++j) mean[size_t(j)] += x[size_t(i) * dim + size_t(j)];
    for (auto& v : mean) v /= double(train.size());
    for (int64_t i : train)
      for (int j = 0; j < dim; ++j) {
        const double c = x[size_t(i) * dim + size_t(j)] - mean[size_t(j)];
        sd[size_t(j)] += c * c;
      }
    std::vector<float> scale(static_cast<size_t>(dim));
    for (int j = 0; j < dim; ++j) {
      const double s = std::sqrt(sd[size_t(j)] / double(train.size()));
      scale[size_t(j)] = s > 1e-8 ? float(1.0 / s) : 0.f;  // a constant feature carries nothing
    }
    auto standardise = [&](const std::vector<int64_t>& rows) {
      std::vector<float> out(rows.size() * size_t(dim));
      for (size_t r2 = 0; r2 < rows.size(); ++r2)
        for (int j = 0; j < dim; ++j)
          out[r2 * size_t(dim) + size_t(j)] =
              float(x[size_t(rows[r2]) * dim + size_t(j)] - mean[size_t(j)]) * scale[size_t(j)];
      return out;
    };
    const auto xtr = standardise(train), xte = standardise(test);
    std::vector<int> ytr;
    for (int64_t i : train) ytr.push_back(labels[size_t(i)]);
    Objective obj(xtr.data(), int(train.size()), dim, n_classes, ytr.data(), options.l2);
    std::vector<double> theta(size_t(dim) * n_classes + size_t(n_classes), 0.0);
    iterations += lbfgs(obj, theta, options.max_iterations);

    std::vector<float> w(size_t(dim) * n_classes);
    for (size_t i = 0; i < w.size(); ++i) w[i] = float(theta[i]);
    std::vector<float> z(test.size() * size_t(n_classes));
    gemm(false, false, int(test.size()), n_classes, dim, 1.f, xte.data(), w.data(), 0.f, z.data());
    int64_t correct = 0;
    for (size_t t = 0; t < test.size(); ++t) {
      int best = 0;
      double best_z = -1e300;
      for (int c = 0; c < n_classes; ++c) {
        const double v = double(z[t * size_t(n_classes) + size_t(c)]) + theta[w.size() + size_t(c)];
        if (v > best_z) best_z = v, best = c;
      }
      const int truth = labels[size_t(test[t])];
      if (best == truth) {
        ++correct;
        ++class_correct[size_t(truth)];
      }
    }
    correct_total += correct;
    r.fold_accuracy.push_back(double(correct) / double(test.size()));
  }
  r.accuracy = double(correct_total) / double(n);
  for (int c = 0; c < n_classes; ++c)
    r.per_class[size_t(c)] = class_count[size_t(c)] ? double(class_correct[size_t(c)]) / class_count[size_t(c)] : 0;
  r.mean_iterations = r.fold_accuracy.empty() ? 0 : iterations / double(r.fold_accuracy.size());
  return r;
}

}  // namespace imgsearch::eval
