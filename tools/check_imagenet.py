#!/usr/bin/env python3
"""Top-1 / top-5 accuracy of a converted model on labelled ImageNet photos.

    python tools/check_imagenet.py --model-dir models/efficientnet-lite0 \
        --images ../shared/photos/imagenet-sample [--limit N]

Reference preprocessing (what the C++ engine must reproduce): PIL decode,
EXIF transpose, RGB, shorter side resized to input.resize_short_side (BICUBIC),
centre crop input.size, x = (pixel - mean) / std, NCHW float32.  The true
class is the wnid in the file name (<wnid>_<name>.JPEG).

Measured on the 250 images of ../shared/photos/imagenet-sample (top-1/top-5;
above the published ImageNet-val top-1 of 75.1, 76.7, 77.6: an easy sample):
  (pixel - 127) / 128   lite0 0.904/0.980  lite1 0.884/0.976  lite2 0.924/0.988
  ImageNet mean/std     lite0 0.800/0.944  lite1 0.840/0.964  lite2 0.860/0.964
  (--mean 123.675 116.28 103.53 --std 58.395 57.12 57.375)
so model.json carries the TF-Lite (127, 128) scaling.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def preprocess(path, inp, mean=None, std=None, draft=False):
    """One image -> float32 [3, S, S] (or [S, S, 3] for an NHWC model) following
    model.json's "input". draft: let PIL decode JPEGs at a reduced scale (still at
    least the short side), as tools/quantize_int8.py does for speed."""
    size, short = inp["size"], inp.get("resize_short_side", inp["size"])
    with Image.open(path) as im:
        if draft:
            im.draft("RGB", (short, short))
        im = ImageOps.exif_transpose(im).convert("RGB")
    w, h = im.size
    r = short / min(w, h)
    w, h = max(short, round(w * r)), max(short, round(h * r))
    im = im.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    x = np.asarray(im, dtype=np.float32)
    mean = np.asarray(inp["mean"] if mean is None else mean, np.float32)
    std = np.asarray(inp["std"] if std is None else std, np.float32)
    x = (x - mean) / std
    return x.transpose(2, 0, 1) if inp.get("layout", "NCHW") == "NCHW" else x


def load_model(model_dir):
    with open(os.path.join(model_dir, "model.json"), encoding="utf-8") as f:
        meta = json.load(f)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(os.path.join(model_dir, meta["onnx"]), opts,
                                providers=["CPUExecutionProvider"])
    return meta, sess


def wnid_index(tsv):
    with open(tsv, encoding="utf-8") as f:
        next(f)  # header: index wnid name
        return {row[1]: int(row[0])
                for row in (line.rstrip("\n").split("\t") for line in f)}


def evaluate(model_dir, images, tsv, limit=None, mean=None, std=None,
             batch=25):
    """Returns (top1, top5, n)."""
    meta, sess = load_model(model_dir)
    classes = wnid_index(tsv)
    files = sorted(f for f in os.listdir(images)
                   if f.split("_")[0] in classes)[:limit]
    if not files:
        raise SystemExit(f"no <wnid>_<name> images in {images}")
    top1 = top5 = 0
    for i in range(0, len(files), batch):
        chunk = files[i:i + batch]
        x = np.stack([preprocess(os.path.join(images, f), meta["input"],
                                 mean, std) for f in chunk])
        (logits,) = sess.run([meta["logits"]], {meta["input"]["name"]: x})
        best = np.argsort(-logits, axis=1)[:, :5]
        truth = np.array([classes[f.split("_")[0]] for f in chunk])
        top1 += int((best[:, 0] == truth).sum())
        top5 += int((best == truth[:, None]).any(axis=1).sum())
    return top1 / len(files), top5 / len(files), len(files)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--images", required=True)
    ap.add_argument("--labels", default=os.path.join(
        REPO, "data", "imagenet-classes.tsv"))
    ap.add_argument("--limit", type=int)
    ap.add_argument("--mean", type=float, nargs=3,
                    help="override model.json (0..255 units)")
    ap.add_argument("--std", type=float, nargs=3,
                    help="override model.json (0..255 units)")
    args = ap.parse_args()
    top1, top5, n = evaluate(args.model_dir, args.images, args.labels,
                             args.limit, args.mean, args.std)
    print(f"{os.path.basename(os.path.normpath(args.model_dir))}: "
          f"top-1 {top1:.3f}  top-5 {top5:.3f}  ({n} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
