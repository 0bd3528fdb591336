// Dense float matrix products for eval (retrieval scores, the linear probe), on the
// system BLAS that FAISS already links. Row-major throughout.
#pragma once

namespace imgsearch::eval {

// C (M x N) = alpha * op(A) * op(B) + beta * C, op(A) M x K, op(B) K x N; op(X) = X^T when
// the flag is set. A is stored M x K (K x M when transposed), B K x N (N x K when transposed).
void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, const float* b, float beta,
          float* c);

}  // namespace imgsearch::eval
