#!/usr/bin/python3
"""umap-learn peer for bench/map: lays out the vectors the C++ benchmark wrote, with the
same parameters as imgsearch's UMAP, and reports wall times as JSON lines on stdout.

Needs Debian's umap-learn (apt-get install umap-learn), for the system /usr/bin/python3.

  map.py --threads 2 --job NAME:IN.f32:N:DIM:OUT.f32 [--job ...] [--warmup]
         [--sklearn-check X.f32:N:DIM:Y.f32]

IN.f32 is n x dim float32, row-major; OUT.f32 receives n x 2 float32.
--warmup first fits 4500 rows of the first job for a few epochs, untimed, so that numba's
compilation (cached on disk after the first run anyway) is not charged to the timed fits.
--sklearn-check prints sklearn's trustworthiness@10 (cosine) of the layout Y of X, to check
imgsearch's own implementation against it.
"""
import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def emit(**fields):
    print(json.dumps(fields), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--job", action="append", default=[])
    ap.add_argument("--warmup", action="store_true")
    ap.add_argument("--sklearn-check", action="append", default=[])
    args = ap.parse_args()

    t = time.time()
    import numpy as np
    import umap
    emit(event="import", seconds=time.time() - t, umap_version=getattr(umap, "__version__", "?"),
         numba_threads=int(os.environ.get("NUMBA_NUM_THREADS", "0") or 0))
    n_jobs = args.threads if args.threads > 0 else -1

    def load(spec):
        path, n, dim = spec[0], int(spec[1]), int(spec[2])
        return np.fromfile(path, dtype=np.float32).reshape(n, dim)

    def reducer(**kw):
        # No random_state: umap-learn then runs its parallel (Hogwild) SGD on n_jobs threads.
        return umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", n_components=2, n_jobs=n_jobs, **kw)

    jobs = [j.split(":") for j in args.job]
    if args.warmup and jobs:
        x = load(jobs[0][1:4])
        rows = np.random.default_rng(0).choice(x.shape[0], size=min(4500, x.shape[0]), replace=False)
        t = time.time()
        reducer(n_epochs=10).fit_transform(x[rows])
        emit(event="warmup", seconds=time.time() - t, rows=int(len(rows)))
    for name, path, n, dim, out in jobs:
        x = load((path, n, dim))
        t = time.time()
        y = reducer().fit_transform(x)
        secs = time.time() - t
        np.ascontiguousarray(y, dtype=np.float32).tofile(out)
        emit(event="fit", job=name, n=int(n), seconds=secs)
    for spec in args.sklearn_check:
        from sklearn.manifold import trustworthiness
        xpath, n, dim, ypath = spec.split(":")
        x = np.fromfile(xpath, dtype=np.float32).reshape(int(n), int(dim))
        y = np.fromfile(ypath, dtype=np.float32).reshape(int(n), 2)
        emit(event="sklearn_trustworthiness", layout=ypath,
             value=float(trustworthiness(x, y, n_neighbors=10, metric="cosine")))


if __name__ == "__main__":
    sys.exit(main())
