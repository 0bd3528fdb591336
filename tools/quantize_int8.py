#!/usr/bin/env python3
"""Static int8 quantization of an installed imgsearch model, calibrated on your own photos.

    .venv/bin/python tools/quantize_int8.py --images ~/Pictures
    build/imgsearch index ~/Pictures --db pics.imgsearch --model efficientnet-lite0-int8
    build/imgsearch eval ../shared/photos/caltech20 --model efficientnet-lite0,efficientnet-lite0-int8

Reads models/<model>/ (model.onnx, model.json, labels.txt), runs ONNX Runtime's
quantize_static with activation ranges measured on up to --max-images photos of
--images (recursively, sorted by path, evenly spaced over the folder), and writes a new
model directory models/<model>-int8/ (or --out) with model.onnx, model.json (the
original's, with the new name and a "quantization" record; the preprocessing is kept
identical, so queries and indexed images are prepared exactly as for the fp32 model)
and labels.txt. Vectors of the int8 model are a different representation: a database
indexed with one model is not searched with the other.

Calibration preprocessing follows model.json (EXIF transpose, RGB, shorter side to
resize_short_side with PIL's bicubic filter, centre crop, (x - mean) / std), like
tools/check_imagenet.py, whose preprocess() it uses; it only sets the activation ranges.

The graph keeps only the outputs named by --outputs (default: the default layer and
the logits): every extra float output of a quantized graph costs a DequantizeLinear per
run. model.json lists the kept layers only.

Options that decide speed and quality (bench/speed tries them; the defaults are what it
chose on a 2-core AVX2 machine without VNNI, see bench/RESULTS.md): --format qdq|qoperator
(default qdq), --[no-]per-channel (default on: per-tensor weights lost 0.13 of P@10 on
caltech20), --[no-]reduce-range (default on: 7-bit weights avoid the u8 x s8 saturation
of AVX2's vpmaddubsw; without it the P@10 drop was 0.009, with it 0.0032),
--calibrate minmax|entropy|percentile (default minmax).
Uses only the project's .venv (onnx, onnxruntime, numpy, pillow).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import onnx
import onnxruntime
from onnxruntime import quantization as q
from check_imagenet import preprocess  # the reference preprocessing of model.json's input

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def models_dir():
    return os.environ.get("IMGSEARCH_MODELS") or os.path.join(REPO, "models")


def list_images(folder, limit):
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in names:
            if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXT:
                files.append(os.path.join(root, n))
    files.sort()
    if not files:
        raise SystemExit(f"quantize_int8: no images in {folder}")
    if len(files) > limit:  # evenly spaced: every class of a labelled folder is seen
        step = len(files) / limit
        files = [files[int(i * step)] for i in range(limit)]
    return files


class Reader(q.CalibrationDataReader):
    def __init__(self, files, inp):
        self.files, self.inp, self.i = files, inp, 0

    def get_next(self):
        while self.i < len(self.files):
            f = self.files[self.i]
            self.i += 1
            try:
                return {self.inp.get("name", "pixels"): preprocess(f, self.inp, draft=True)[None]}
            except OSError as e:  # an unreadable file is skipped, as `index` does
                print(f"quantize_int8: skipping {f}: {e}", file=sys.stderr)
        return None

    def rewind(self):
        self.i = 0


def keep_outputs(model, names):
    by_name = {o.name: o for o in model.graph.output}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SystemExit(f"quantize_int8: the graph has no output {missing}")
    del model.graph.output[:]
    model.graph.output.extend(by_name[n] for n in names)
    return model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, help="folder of your photos (calibration)")
    ap.add_argument("--model", default="efficientnet-lite0", help="installed model to quantize")
    ap.add_argument("--out", help="model directory to write (default: <models>/<model>-int8)")
    ap.add_argument("--name", help="model name in model.json (default: the out folder's name)")
    ap.add_argument("--max-images", type=int, default=200)
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    ap.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--reduce-range", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--calibrate", choices=["minmax", "entropy", "percentile"], default="minmax")
    ap.add_argument("--outputs", default=None,
                    help="graph outputs to keep, comma-separated (default: default layer + logits)")
    ap.add_argument("--force", action="store_true", help="replace an existing output folder")
    a = ap.parse_args(argv)

    src = os.path.join(models_dir(), a.model)
    with open(os.path.join(src, "model.json"), encoding="utf-8") as f:
        meta = json.load(f)
    out = a.out or os.path.join(models_dir(), a.model + "-int8")
    name = a.name or os.path.basename(os.path.normpath(out))
    if os.path.exists(out) and not a.force:
        raise SystemExit(f"quantize_int8: {out} exists (--force replaces it)")
    outputs = a.outputs.split(",") if a.outputs else \
        [meta["default_layer"]] + ([meta["logits"]] if meta.get("logits") else [])

    files = list_images(a.images, a.max_images)
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="quantize_int8_")
    try:
        pruned = os.path.join(tmp, "pruned.onnx")
        onnx.save(keep_outputs(onnx.load(os.path.join(src, meta["onnx"])), outputs), pruned)
        prepped = os.path.join(tmp, "prepped.onnx")
        q.quant_pre_process(pruned, prepped, skip_symbolic_shape=True)
        method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                  "percentile": q.CalibrationMethod.Percentile}[a.calibrate]
        staged = os.path.join(tmp, "out")
        os.makedirs(staged)
        q.quantize_static(
            prepped, os.path.join(staged, "model.onnx"), Reader(files, meta["input"]),
            quant_format=q.QuantFormat.QDQ if a.format == "qdq" else q.QuantFormat.QOperator,
            per_channel=a.per_channel, reduce_range=a.reduce_range,
            activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
            # No CalibMaxIntermediateOutputs: ONNX Runtime 1.21's MinMax calibrator drops each
            # full chunk of that many images without reducing it, so only the last
            # len(files) % chunk images would set the ranges (and none for a multiple).
            # MinMax keeps one min and max per tensor and image, so memory stays small.
            calibrate_method=method)
        meta_out = dict(meta)
        meta_out["name"] = name
        meta_out["onnx"] = "model.onnx"
        meta_out["layers"] = [l for l in meta["layers"] if l["name"] in outputs]
        meta_out["quantization"] = {
            "from": a.model, "format": a.format, "per_channel": a.per_channel,
            "reduce_range": a.reduce_range, "activations": "uint8", "weights": "int8",
            "calibration": a.calibrate, "calibration_images": len(files),
            "calibration_folder": os.path.abspath(a.images),
            "onnxruntime": onnxruntime.__version__}
        if meta.get("labels"):
            shutil.copy(os.path.join(src, meta["labels"]), os.path.join(staged, "labels.txt"))
            meta_out["labels"] = "labels.txt"
        with open(os.path.join(staged, "model.json"), "w", encoding="utf-8") as f:
            json.dump(meta_out, f, indent=1)
            f.write("\n")
        if os.path.exists(out):
            shutil.rmtree(out)
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        shutil.move(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"model": name, "dir": out, "format": a.format, "per_channel": a.per_channel,
                      "reduce_range": a.reduce_range, "calibration_images": len(files),
                      "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
