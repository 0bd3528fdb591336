// Linear probe: how linearly separable the classes are in a representation.
//
// Multinomial logistic (softmax) regression with an L2 penalty on the weights, on
// features standardised with the training part's mean and standard deviation, trained by
// L-BFGS (full batch, from zero, at most max_iterations), scored by stratified k-fold
// cross-validation: fold of an image = its position within its class (input order) mod k,
// so every fold holds each class in proportion. Deterministic: no random numbers; the
// same input gives the same figures (BLAS runs with a fixed thread count).
//
// Data contract: x is n x dim float32 row-major, labels[i] in [0, n_classes).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace imgsearch::eval {

struct ProbeOptions {
  int folds = 5;
  double l2 = 1e-3;          // lambda in  mean cross-entropy + lambda/2 * |W|^2
  int max_iterations = 100;  // L-BFGS iterations per fold
};

struct ProbeResult {
  double accuracy = 0;                // correct test predictions / n, all folds pooled
  std::vector<double> per_class;      // accuracy per class (label order)
  std::vector<double> fold_accuracy;  // per fold
  double mean_iterations = 0;         // L-BFGS iterations actually run, mean over folds
  int folds = 0;
};

ProbeResult linear_probe(const float* x, int64_t n, int dim, std::span<const int> labels, int n_classes,
                         const ProbeOptions& options = {});

}  // namespace imgsearch::eval
