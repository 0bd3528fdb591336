// The few BLAS/LAPACK routines map uses (Fortran ABI, column-major; Debian's libblas.so.3
// alternative, OpenBLAS where installed), behind row-major helpers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
void sgemv_(const char* trans, const int* m, const int* n, const float* alpha, const float* a, const int* lda,
            const float* x, const int* incx, const float* beta, float* y, const int* incy);
void dsyevr_(const char* jobz, const char* range, const char* uplo, const int* n, double* a, const int* lda,
             const double* vl, const double* vu, const int* il, const int* iu, const double* abstol, int* m, double* w,
             double* z, const int* ldz, int* isuppz, double* work, const int* lwork, int* iwork, const int* liwork,
             int* info);
void dstev_(const char* jobz, const int* n, double* d, double* e, double* z, const int* ldz, double* work, int* info);
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork,
             int* info);
void dorgqr_(const int* m, const int* n, const int* k, double* a, const int* lda, const double* tau, double* work,
             const int* lwork, int* info);
}

namespace imgsearch::map::detail {

// Row-major C (m x n, leading dimension ldc) = A (m x k, lda) * B(n x k, ldb)^T.
inline void gemm_abt(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  // Column-major view: C^T (n x m) = B * A^T with B^T and A^T stored as given.
  sgemm_("T", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &zero, c, &ldc);
}
inline void gemm_abt(int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c, int ldc) {
  const double one = 1.0, zero = 0.0;
  dgemm_("T", "N", &n, &m, &k, &one, b, &ldb, a, &lda, &zero, c, &ldc);
}

// The rows of q (rows x n row-major, rows <= n) replaced by an orthonormal basis of their
// span (Householder QR: q is column-major n x rows). False if LAPACK fails.
inline bool orthonormalise_rows(int rows, int n, double* q) {
  int info = 0, lwork = -1;
  double query = 0;
  std::vector<double> tau(static_cast<size_t>(rows));
  dgeqrf_(&n, &rows, q, &n, tau.data(), &query, &lwork, &info);
  if (info != 0) return false;
  lwork = int(query);
  std::vector<double> work(static_cast<size_t>(std::max(lwork, 1)));
  dgeqrf_(&n, &rows, q, &n, tau.data(), work.data(), &lwork, &info);
  if (info != 0) return false;
  lwork = -1;
  dorgqr_(&n, &rows, &rows, q, &n, tau.data(), &query, &lwork, &info);
  if (info != 0) return false;
  lwork = int(query);
  work.resize(static_cast<size_t>(std::max(lwork, 1)));
  dorgqr_(&n, &rows, &rows, q, &n, tau.data(), work.data(), &lwork, &info);
  return info == 0;
}

// Eigenpairs of a symmetric n x n matrix (a is overwritten) with indices [il, iu] in
// ascending order of eigenvalue (0-based, inclusive). vectors: count x n row-major (one
// eigenvector per row). False if LAPACK fails.
inline bool symmetric_eigen(int n, double* a, int il, int iu, std::vector<double>* values,
                            std::vector<double>* vectors) {
  const int count = iu - il + 1, il1 = il + 1, iu1 = iu + 1;
  const double zero = 0.0, abstol = 0.0;
  int m = 0, info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double work_query = 0;
  values->assign(size_t(n), 0.0);
  vectors->assign(size_t(n) * size_t(count), 0.0);
  std::vector<int> isuppz(2 * size_t(count));
  dsyevr_("V", "I", "U", &n, a, &n, &zero, &zero, &il1, &iu1, &abstol, &m, values->data(), vectors->data(), &n,
          isuppz.data(), &work_query, &lwork, &iwork_query, &liwork, &info);
  if (info != 0) return false;
  lwork = int(work_query);
  liwork = iwork_query;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevr_("V", "I", "U", &n, a, &n, &zero, &zero, &il1, &iu1, &abstol, &m, values->data(), vectors->data(), &n,
          isuppz.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  values->resize(size_t(count));
  return info == 0 && m == count;  // column-major z (n x count) == row-major count x n
}

}  // namespace imgsearch::map::detail
