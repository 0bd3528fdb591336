"""Tests for the Python tools.  From the repository root:

    .venv/bin/python -m unittest tools/test_tools.py

TorchReferenceTest needs torch and the reference package
efficientnet_lite_pytorch (which declares a torch dependency, so neither is in
tools/requirements.txt); without them it is skipped.  If torch is not
importable but Debian's python3-torch is installed, the test appends
/usr/lib/python3/dist-packages to sys.path (at the end, so the venv's numpy
still wins).  It was run that way once, with torch 1.13 from python3-torch and
the reference sources on PYTHONPATH:

    PYTHONPATH=<dir holding efficientnet_lite_pytorch/> \
        .venv/bin/python -m unittest tools/test_tools.py
"""
import collections
import io
import os
import pickle
import struct
import sys
import tempfile
import types
import unittest
import zipfile
from unittest import mock

import numpy as np

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)
import check_imagenet  # noqa: E402
import convert_efficientnet_lite as conv  # noqa: E402
import torch_pth  # noqa: E402

TSV = os.path.join(REPO, "data", "imagenet-classes.tsv")
PHOTOS = os.path.join(REPO, "..", "shared", "photos", "imagenet-sample")
# Correctly classified by all three models (wnid, class index).
PHOTO_CLASSES = {"n01514859_hen.JPEG": 8, "n01440764_tench.JPEG": 0}


# ---------------------------------------------------------------------------
# Writing .pth files without torch: fake `torch` / `torch._utils` modules just
# long enough for pickle to name their globals, plus a Pickler that emits the
# storages as persistent ids, as torch.save does.

class _FakeStorage:
    def __init__(self, key, data, view=None):
        self.key, self.data, self.view = key, data, view


class _FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2,
                self.args + (False, collections.OrderedDict()))


def _fake_torch_modules():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in torch_pth.STORAGE_DTYPES:
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    return {"torch": torch, "torch._utils": utils}


_STORAGE_NAME = {np.dtype(v): k for k, v in torch_pth.STORAGE_DTYPES.items()}


def _dump(obj, f, legacy):
    torch = sys.modules["torch"]

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if not isinstance(o, _FakeStorage):
                return None
            cls = getattr(torch, _STORAGE_NAME[o.data.dtype])
            pid = ("storage", cls, o.key, "cpu", o.data.size)
            return pid + (o.view,) if legacy else pid

    Pickler(f, protocol=2).dump(obj)


def write_pth(path, obj, storages, legacy):
    with mock.patch.dict(sys.modules, _fake_torch_modules()):
        if legacy:
            with open(path, "wb") as f:
                for header in (torch_pth.LEGACY_MAGIC,
                               torch_pth.LEGACY_PROTOCOL,
                               {"protocol_version": 1001,
                                "little_endian": True}):
                    pickle.dump(header, f, protocol=2)
                _dump(obj, f, legacy)
                pickle.dump([s.key for s in storages], f, protocol=2)
                for s in storages:
                    f.write(struct.pack("<q", s.data.size))
                    f.write(s.data.astype(s.data.dtype.newbyteorder("<"))
                            .tobytes())
        else:
            buf = io.BytesIO()
            _dump(obj, buf, legacy)
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("archive/data.pkl", buf.getvalue())
                z.writestr("archive/byteorder", "little")
                z.writestr("archive/version", "3\n")
                for s in storages:
                    z.writestr(f"archive/data/{s.key}", s.data.tobytes())


def strided(data, offset, size, stride):
    """Expected tensor contents, element by element."""
    out = np.empty(size, data.dtype)
    for idx in np.ndindex(*size):
        out[idx] = data[offset + sum(i * s for i, s in zip(idx, stride))]
    return out


class TorchPthTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def round_trip(self, legacy):
        a = _FakeStorage("0", np.arange(24, dtype=np.float32) * 0.5)
        b = _FakeStorage("1", np.array([5, -6, 7, 2**40], np.int64))
        h = _FakeStorage("2", np.linspace(-2, 2, 6).astype(np.float16))
        tensors = {  # name: (storage, offset, size, stride)
            "w": (a, 0, (2, 3, 4), (12, 4, 1)),
            "w_t": (a, 2, (4, 3), (1, 4)),        # transposed, shared, offset
            "row": (a, 13, (3,), (2,)),           # strided slice
            "scalar": (a, 5, (), ()),
            "empty": (a, 0, (0, 3), (3, 1)),
            "n": (b, 1, (3,), (1,)),
            "half": (h, 0, (3, 2), (1, 3)),
        }
        if legacy:  # old-style storage view: elements 6..15 of storage 0
            tensors["view"] = (_FakeStorage("0", a.data, ("0v", 6, 10)),
                               1, (2,), (3,))
        obj = collections.OrderedDict(
            (k, _FakeTensor(*v)) for k, v in tensors.items())
        path = os.path.join(self.tmp.name, "t.pth")
        write_pth(path, obj, [a, b, h], legacy)
        self.assertEqual(zipfile.is_zipfile(path), not legacy)
        got = torch_pth.load_state_dict(path)
        self.assertIsInstance(got, collections.OrderedDict)
        self.assertEqual(list(got), list(tensors))
        for name, (st, off, size, stride) in tensors.items():
            data, off = (st.data[6:16], off) if st.view else (st.data, off)
            want = strided(data, off, size, stride)
            self.assertEqual(got[name].dtype, want.dtype, name)
            self.assertEqual(got[name].shape, want.shape, name)
            np.testing.assert_array_equal(got[name], want, err_msg=name)
            self.assertTrue(got[name].flags.c_contiguous)
        np.testing.assert_array_equal(got["w_t"][:, 0], [1.0, 1.5, 2, 2.5])
        if legacy:
            self.assertEqual(got["view"].tolist(), [3.5, 5.0])

    def test_legacy_round_trip(self):
        self.round_trip(legacy=True)

    def test_zip_round_trip(self):
        self.round_trip(legacy=False)

    def test_out_of_bounds_tensor_is_refused(self):
        a = _FakeStorage("0", np.zeros(4, np.float32))
        path = os.path.join(self.tmp.name, "oob.pth")
        write_pth(path, {"x": _FakeTensor(a, 2, (3,), (1,))}, [a], False)
        with self.assertRaisesRegex(torch_pth.PthFormatError, "exceeds"):
            torch_pth.load_state_dict(path)

    def test_malicious_pickle_is_refused(self):
        marker = os.path.join(self.tmp.name, "pwned")

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        payload = pickle.dumps({"weight": Evil()}, protocol=2)
        legacy = os.path.join(self.tmp.name, "evil_legacy.pth")
        with open(legacy, "wb") as f:
            for header in (torch_pth.LEGACY_MAGIC, torch_pth.LEGACY_PROTOCOL,
                           {}):
                pickle.dump(header, f, protocol=2)
            f.write(payload)
        zipped = os.path.join(self.tmp.name, "evil.pth")
        with zipfile.ZipFile(zipped, "w") as z:
            z.writestr("archive/data.pkl", payload)
        for path in (legacy, zipped):
            with self.assertRaises(torch_pth.UnsafePickleError) as cm:
                torch_pth.load_state_dict(path)
            self.assertIn("system", str(cm.exception))
            self.assertIn("refusing", str(cm.exception))
        self.assertFalse(os.path.exists(marker))

    def test_not_a_pth(self):
        path = os.path.join(self.tmp.name, "junk.pth")
        with open(path, "wb") as f:
            f.write(b"\x80\x02K\x07.")  # a pickled 7: wrong magic
        with self.assertRaisesRegex(torch_pth.PthFormatError, "magic"):
            torch_pth.load_state_dict(path)


class ArchitectureTest(unittest.TestCase):
    def test_same_padding_is_asymmetric_on_stride_2(self):
        self.assertEqual(conv.same_pads(224, 3, 2), (0, 1, 112))
        self.assertEqual(conv.same_pads(112, 5, 2), (1, 2, 56))
        self.assertEqual(conv.same_pads(65, 5, 2), (2, 2, 33))  # odd size
        self.assertEqual(conv.same_pads(14, 5, 1), (2, 2, 14))
        self.assertEqual(conv.same_pads(7, 1, 1), (0, 0, 7))

    def test_block_counts_and_widths(self):
        for name, n, last in (("efficientnet-lite0", 16, 320),
                              ("efficientnet-lite1", 21, 320),
                              ("efficientnet-lite2", 21, 352)):
            width, depth, _ = conv.MODELS[name]
            specs = conv.block_specs(width, depth)
            self.assertEqual(len(specs), n, name)
            self.assertEqual(specs[0][3], 32)  # stem fixed at 32
            self.assertEqual(specs[-1][4], last, name)


class ConvertLite0Test(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = os.path.join(cls.tmp.name, "efficientnet-lite0")
        cls.meta = conv.convert("efficientnet-lite0", cls.dir, TSV)
        cls.meta_file, cls.sess = check_imagenet.load_model(cls.dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_files_and_metadata(self):
        self.assertEqual(self.meta_file, self.meta)
        m = self.meta
        self.assertEqual(m["input"], {
            "name": "pixels", "size": 224, "layout": "NCHW", "color": "RGB",
            "mean": [127.0] * 3, "std": [128.0] * 3,
            "resize_short_side": 256})
        names = ["stem"] + [f"block_{i:02d}" for i in range(16)] + ["head"]
        self.assertEqual([x["name"] for x in m["layers"]], names)
        self.assertEqual(m["layers"][0], {"name": "stem", "channels": 32,
                                          "height": 112, "width": 112})
        self.assertEqual(m["layers"][-1], {"name": "head", "channels": 1280,
                                           "height": 7, "width": 7})
        self.assertTrue(7e8 < m["flops_per_image"] < 8e8)
        self.assertEqual(len(m["source"]["sha256"]), 64)
        with open(os.path.join(self.dir, "labels.txt"),
                  encoding="utf-8") as f:
            labels = f.read().splitlines()
        self.assertEqual(len(labels), 1000)
        self.assertEqual(labels[8], "hen")

    def test_graph_outputs_and_classification(self):
        outs = {o.name: o.shape for o in self.sess.get_outputs()}
        self.assertEqual(outs["logits"], ["N", 1000])
        self.assertEqual(self.sess.get_inputs()[0].shape, ["N", 3, 224, 224])
        x = np.stack([check_imagenet.preprocess(
            os.path.join(PHOTOS, f), self.meta["input"])
            for f in PHOTO_CLASSES])
        names = ["logits"] + [x["name"] for x in self.meta["layers"]]
        res = dict(zip(names, self.sess.run(names, {"pixels": x})))
        for layer in self.meta["layers"]:
            want = [len(x), layer["channels"], layer["height"],
                    layer["width"]]
            self.assertEqual(outs[layer["name"]], ["N"] + want[1:])
            self.assertEqual(list(res[layer["name"]].shape), want)
            self.assertEqual(res[layer["name"]].dtype, np.float32)
        top5 = np.argsort(-res["logits"], axis=1)[:, :5]
        for row, truth in zip(top5, PHOTO_CLASSES.values()):
            self.assertIn(truth, row)

    def test_missing_or_wrong_weight_is_an_error(self):
        pth = conv.default_pth("efficientnet-lite0")
        weights = torch_pth.load_state_dict(pth)
        broken = dict(weights)
        del broken["_blocks.3._bn1.running_var"]
        with self.assertRaisesRegex(conv.ConversionError,
                                    "missing weight '_blocks.3._bn1"):
            conv.build_graph(broken, 1.0, 1.0, 224)
        with self.assertRaisesRegex(conv.ConversionError, "shape"):
            conv.build_graph(weights, 1.1, 1.0, 224)  # lite2 widths
        broken = dict(weights, extra=np.zeros(1))
        with self.assertRaisesRegex(conv.ConversionError, "not used"):
            conv.build_graph(broken, 1.0, 1.0, 224)


def _import_reference():
    """(torch, EfficientNet) or SkipTest; see the module docstring."""
    try:
        import torch
    except ImportError:
        deb = "/usr/lib/python3/dist-packages"
        if not os.path.isdir(os.path.join(deb, "torch")):
            raise unittest.SkipTest("torch is absent: reference comparison "
                                    "not run")
        sys.path.append(deb)
        try:
            import torch
        except ImportError as e:
            raise unittest.SkipTest(f"torch is absent ({e})")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise unittest.SkipTest(
            "efficientnet_lite_pytorch is absent (pip install --no-deps "
            "efficientnet-lite-pytorch==0.1.0, or put it on PYTHONPATH)")
    return torch, EfficientNet


class TorchReferenceTest(unittest.TestCase):
    def test_logits_match_reference(self):
        torch, EfficientNet = _import_reference()
        files = ["n01514859_hen.JPEG", "n01440764_tench.JPEG",
                 "n01494475_hammerhead.JPEG"]
        for name in conv.MODELS:
            with self.subTest(model=name), \
                    tempfile.TemporaryDirectory() as tmp:
                meta = conv.convert(name, tmp, TSV)
                _, sess = check_imagenet.load_model(tmp)
                x = np.stack([check_imagenet.preprocess(
                    os.path.join(PHOTOS, f), meta["input"]) for f in files])
                logits, head = sess.run(["logits", "head"], {"pixels": x})
                net = EfficientNet.from_name(name)
                net.load_state_dict(torch.load(conv.default_pth(name)))
                net.eval()
                with torch.no_grad():
                    t = torch.from_numpy(x)
                    ref = net(t).numpy()
                    ref_head = net.extract_features(t).numpy()
                self.assertLess(np.abs(logits - ref).max(), 1e-3)
                self.assertLess(np.abs(head - ref_head).max(), 1e-3)


# ---------------------------------------------------------------------------
# `imgsearch models add` rewrites ONNX graphs with a hand-written protobuf
# encoder (src/embed/onnx_proto.cpp).  The reference implementation checks its
# output here: the onnx checker (with shape inference) must accept it, and ONNX
# Runtime must compute the same logits from it as from the original.

IMGSEARCH = os.environ.get("IMGSEARCH_BIN", os.path.join(REPO, "build", "imgsearch"))


def _small_resnet(nhwc=False):
    """Conv-BN-ReLU stem, max pool, one residual block, pool, linear."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    inits = [w("w1", 12, 3, 3, 3), w("g1", 12), w("b1", 12), w("m1", 12),
             w("w2", 12, 12, 3, 3), w("w3", 12, 12, 3, 3), w("fc", 12, 5)]
    inits.append(numpy_helper.from_array(
        np.abs(rng.standard_normal(12)).astype(np.float32) + 0.5, "v1"))
    x = "x"
    nodes = []
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]))
        x = "xt"
    nodes += [
        helper.make_node("Conv", [x, "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "g1", "b1", "m1", "v1"], ["bn1"]),
        helper.make_node("Relu", ["bn1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "p1"], ["sum"]),
        helper.make_node("Relu", ["sum"], ["block"]),
        helper.make_node("ReduceMean", ["block"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "fc"], ["logits"]),
    ]
    shape = ["batch", 48, 48, 3] if nhwc else ["batch", 3, 48, 48]
    graph = helper.make_graph(
        nodes, "small_resnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@unittest.skipUnless(os.path.exists(IMGSEARCH), "build/imgsearch not built")
class ModelsAddTest(unittest.TestCase):
    def test_rewritten_graph_passes_the_onnx_checker(self):
        import json
        import subprocess
        import onnx
        import onnxruntime as ort
        for nhwc in (False, True):
            with self.subTest(nhwc=nhwc), tempfile.TemporaryDirectory() as tmp:
                src = os.path.join(tmp, "src.onnx")
                onnx.save(_small_resnet(nhwc), src)
                env = dict(os.environ, IMGSEARCH_MODELS=os.path.join(tmp, "models"))
                out = subprocess.run(
                    [IMGSEARCH, "models", "add", "small", src, "--mean", "0,0,0",
                     "--std", "255,255,255", "--layers", "all", "--json"],
                    env=env, capture_output=True, text=True, check=True)
                report = json.loads(out.stdout)
                self.assertEqual(report["layout"], "NHWC" if nhwc else "NCHW")
                self.assertEqual(report["default_layer"], "block")
                installed = os.path.join(tmp, "models", "small", "model.onnx")
                model = onnx.load(installed)
                onnx.checker.check_model(model, full_check=True)
                outputs = [o.name for o in model.graph.output]
                for layer in ("r1", "p1", "block", "pooled"):
                    self.assertIn(layer, outputs)
                x = np.random.default_rng(1).standard_normal(
                    (2, 48, 48, 3) if nhwc else (2, 3, 48, 48)).astype(np.float32)
                want = ort.InferenceSession(src).run(["logits"], {"x": x})[0]
                sess = ort.InferenceSession(installed)
                got = sess.run(None, {"x": x})
                by_name = dict(zip(outputs, got))
                np.testing.assert_allclose(by_name["logits"], want, rtol=1e-5, atol=1e-5)
                # The shapes model.json records are the ones the graph computes.
                with open(os.path.join(tmp, "models", "small", "model.json")) as f:
                    layers = {l["name"]: l for l in json.load(f)["layers"]}
                block = by_name["block"]
                self.assertEqual(block.shape, (2, 12, 12, 12))
                self.assertEqual((layers["block"]["channels"], layers["block"]["height"]), (12, 12))
                # 12 x 12 x 12 could be either layout: a convolution's output is NCHW.
                self.assertEqual(layers["block"].get("layout", "NCHW"), "NCHW")
                self.assertEqual(by_name["pooled"].shape, (2, 12))



LITE0 = os.path.join(REPO, "models", "efficientnet-lite0")
CALTECH = os.path.join(REPO, "..", "shared", "photos", "caltech20")


@unittest.skipUnless(os.path.exists(IMGSEARCH) and os.path.exists(os.path.join(LITE0, "model.onnx")),
                     "build/imgsearch or models/efficientnet-lite0 missing (run scripts/setup.sh)")
class QuantizeInt8Test(unittest.TestCase):
    """tools/quantize_int8.py on the real Lite0, calibrated on a few caltech20 photos: the
    new model directory is one imgsearch loads, its vectors stay close to fp32's, and it
    classifies the ImageNet samples as fp32 does."""

    def test_int8_model_installs_and_agrees_with_fp32(self):
        import json
        import shutil
        import subprocess
        with tempfile.TemporaryDirectory() as tmp:
            models = os.path.join(tmp, "models")
            os.makedirs(models)
            shutil.copytree(LITE0, os.path.join(models, "efficientnet-lite0"))
            env = dict(os.environ, IMGSEARCH_MODELS=models)
            subprocess.run([sys.executable, os.path.join(TOOLS, "quantize_int8.py"), "--images", CALTECH,
                            "--max-images", "16"], env=env, capture_output=True, text=True, check=True)
            out_dir = os.path.join(models, "efficientnet-lite0-int8")
            with open(os.path.join(out_dir, "model.json")) as f:
                meta = json.load(f)
            with open(os.path.join(LITE0, "model.json")) as f:
                fp32 = json.load(f)
            self.assertEqual(meta["name"], "efficientnet-lite0-int8")
            self.assertEqual(meta["input"], fp32["input"])  # the same preprocessing
            # The same photos through imgsearch with each model: the true class stays in the
            # top 5, with a probability close to fp32's.
            photos = [os.path.join(PHOTOS, p) for p in sorted(PHOTO_CLASSES)]
            probs = {}
            for model in ("efficientnet-lite0", "efficientnet-lite0-int8"):
                r = subprocess.run([IMGSEARCH, "classify", "--model", model, "--json", *photos], env=env,
                                   capture_output=True, text=True, check=True)
                probs[model] = {os.path.basename(item["path"]): {c["index"]: c["probability"] for c in item["classes"]}
                                for item in json.loads(r.stdout)}
            for name, cls in PHOTO_CLASSES.items():
                with self.subTest(photo=name):
                    self.assertIn(cls, probs["efficientnet-lite0-int8"][name])
                    self.assertAlmostEqual(probs["efficientnet-lite0-int8"][name][cls],
                                           probs["efficientnet-lite0"][name][cls], delta=0.15)


if __name__ == "__main__":
    unittest.main()
