// fast_flat: AVX2 distance kernels plugged into FAISS where it spends its time.
//
// Debian's FAISS 1.7.3 is built at the generic optimisation level: its distance loops
// are scalar (about 1 GFLOP/s on this project's machine), which makes every search that
// compares full vectors -- exact Flat, HNSW walking its graph, IVF's coarse quantizer
// and its lists -- several times slower than the memory bandwidth allows. Rebuilding
// FAISS is not part of setup, so instead the IndexFlat objects inside our indexes are
// swapped for FastFlat, a subclass FAISS serialises as a plain IndexFlat (so files stay
// standard) whose distance computer and small-batch search use AVX2+FMA kernels compiled
// here with a target attribute and chosen at run time (CPUs without AVX2 keep FAISS's
// code); IndexIVFFlat likewise for FastIvfFlat, whose list scanner uses them.
// Batches of 20+ queries still go to FAISS's BLAS path (OpenBLAS is already fast).
#pragma once

#include <cstddef>
#include <memory>

namespace faiss {
struct Index;
}

namespace imgsearch::index {

// Inner product and squared L2 distance of two float vectors of length d; use AVX2+FMA
// when the CPU has them.
float inner_product(const float* a, const float* b, size_t d);
float l2_squared(const float* a, const float* b, size_t d);

// True when this CPU runs the AVX2 kernels (else everything stays FAISS's own code).
bool fast_kernels_available();

// Replaces, in place, every IndexFlat this index tree uses for full vectors (an exact
// index, HNSW's storage, IVF's coarse quantizer, behind id maps and transforms) by a
// FastFlat holding the same vectors, and every IndexIVFFlat below the root by one whose
// list scans use the same kernels. Does nothing without AVX2.
void accelerate(faiss::Index* root);
// The same, the root included (an IVF-Flat root is replaced by its fast twin).
void accelerate(std::unique_ptr<faiss::Index>& root);

}  // namespace imgsearch::index
