#include "eval/linalg.h"

extern "C" {
// Fortran BLAS, column-major; every BLAS (OpenBLAS, reference, MKL) exports it.
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
}

namespace imgsearch::eval {

void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, const float* b, float beta,
          float* c) {
  if (m <= 0 || n <= 0) return;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same call with
  // the operands swapped; a row-major matrix read column-major is its transpose.
  const char ta = trans_b ? 'T' : 'N', tb = trans_a ? 'T' : 'N';
  const int lda = trans_b ? k : n, ldb = trans_a ? m : k, ldc = n;
  const int kk = k > 0 ? k : 1;
  if (k <= 0) {
    for (long i = 0; i < long(m) * n; ++i) c[i] = beta == 0.f ? 0.f : beta * c[i];
    return;
  }
  sgemm_(&ta, &tb, &n, &m, &kk, &alpha, b, &lda, a, &ldb, &beta, c, &ldc);
}

}  // namespace imgsearch::eval
