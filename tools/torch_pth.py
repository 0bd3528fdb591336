"""Read a PyTorch state_dict file (.pth / .pt) as numpy arrays, without torch.

Both on-disk formats are supported:

* legacy (torch < 1.6, and ``_use_new_zipfile_serialization=False``): a
  sequence of pickles -- magic number, protocol version, sys_info, the object
  pickle (storages appear as persistent ids), the list of storage keys -- then,
  for each key, an int64 element count followed by the raw storage bytes;
* zip (torch >= 1.6): ``<prefix>/data.pkl`` plus one ``<prefix>/data/<key>``
  entry of raw bytes per storage.

Unpickling is restricted to the handful of globals a state_dict needs
(tensor rebuild functions, typed storage classes, OrderedDict), so a
malicious file cannot run code: anything else raises UnsafePickleError.

    from torch_pth import load_state_dict
    weights = load_state_dict("model.pth")   # OrderedDict name -> np.ndarray
"""
import collections
import io
import pickle
import struct
import sys
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file references a global that a plain state_dict never needs."""


class PthFormatError(ValueError):
    """The file is not a readable PyTorch state_dict."""


class _StorageType:
    """Stand-in for torch.<X>Storage; only its dtype matters."""

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:
    """A storage (or a legacy view into one) whose bytes are read later."""

    def __init__(self, dtype, key, numel, base=None, offset=0):
        self.dtype, self.key, self.numel = dtype, key, numel
        self.base, self.offset = base, offset  # legacy views only
        self.data = None  # 1-D numpy array once read


class _Tensor:
    """Placeholder from _rebuild_tensor_v2, turned into an array at the end
    (the storage bytes follow the object pickle in the legacy format)."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise PthFormatError("tensor rebuilt from a non-storage object")
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data  # nn.Parameter: keep the tensor


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, persistent_load=None):
        super().__init__(file)
        self._persistent = persistent_load

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"refusing to unpickle global '{module}.{name}': only tensors, "
            "typed storages and OrderedDict are allowed in a state_dict "
            "(the file may be malicious or not a plain state_dict)")

    def persistent_load(self, pid):
        if self._persistent is None:
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        return self._persistent(pid)


def _check_storage_pid(pid):
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
        raise PthFormatError(f"unsupported persistent id {pid!r}")
    return pid[1].dtype, str(pid[2]), int(pid[4])


def _materialize(obj):
    """Replace _Tensor placeholders (in dicts / lists) by numpy arrays."""
    if isinstance(obj, _Tensor):
        st = obj.storage
        base = st.base or st
        data, start = base.data, st.offset + obj.offset
        if data is None:
            raise PthFormatError(f"storage {base.key} has no data")
        count = int(np.prod(obj.size, dtype=np.int64))
        if count == 0:
            return np.zeros(obj.size, data.dtype)
        # Bounds check first: as_strided would happily read past the buffer.
        last = start + sum((n - 1) * s for n, s in zip(obj.size, obj.stride))
        if start < 0 or last >= data.size or min(obj.stride, default=0) < 0:
            raise PthFormatError(
                f"tensor of size {obj.size} stride {obj.stride} offset "
                f"{start} exceeds its storage of {data.size} elements")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[start:], shape=obj.size,
            strides=[s * item for s in obj.stride], writeable=False)
        return np.array(view, order="C")  # a copy, 0-d stays 0-d
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _native(raw, dtype, little_endian):
    dt = dtype.newbyteorder("<" if little_endian else ">")
    return np.frombuffer(raw, dt).astype(dtype, copy=False)


def _load_legacy(f):
    def header():
        return _SafeUnpickler(f).load()

    if header() != LEGACY_MAGIC:
        raise PthFormatError("not a PyTorch file (bad magic number)")
    if header() != LEGACY_PROTOCOL:
        raise PthFormatError("unsupported legacy protocol version")
    sys_info = header()
    little = sys_info.get("little_endian", True) if isinstance(
        sys_info, dict) else True
    storages = {}

    def persistent_load(pid):
        dtype, key, numel = _check_storage_pid(pid)
        if key not in storages:
            storages[key] = _Storage(dtype, key, numel)
        root = storages[key]
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # (view_key, offset, view_size)
            return _Storage(dtype, view[0], int(view[2]), root, int(view[1]))
        return root

    obj = _SafeUnpickler(f, persistent_load).load()
    keys = _SafeUnpickler(f).load()
    for key in keys:
        st = storages.get(str(key))
        if st is None:
            raise PthFormatError(f"data for unknown storage key {key}")
        (numel,) = struct.unpack("<q" if little else ">q", f.read(8))
        raw = f.read(numel * st.dtype.itemsize)
        if numel != st.numel or len(raw) != numel * st.dtype.itemsize:
            raise PthFormatError(f"storage {key}: truncated or wrong size")
        st.data = _native(raw, st.dtype, little)
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise PthFormatError("zip file without a single data.pkl")
        prefix = pkl[0][:-len("data.pkl")]
        little = True
        if prefix + "byteorder" in names:
            little = z.read(prefix + "byteorder").strip() == b"little"
        storages = {}

        def persistent_load(pid):
            dtype, key, numel = _check_storage_pid(pid)
            if key not in storages:
                raw = z.read(f"{prefix}data/{key}")
                if len(raw) < numel * dtype.itemsize:
                    raise PthFormatError(f"storage {key} is truncated")
                st = _Storage(dtype, key, numel)
                st.data = _native(raw[:numel * dtype.itemsize], dtype, little)
                storages[key] = st
            return storages[key]

        return _SafeUnpickler(io.BytesIO(z.read(pkl[0])),
                              persistent_load).load()


def load_state_dict(path):
    """Return the object stored in `path` (normally an OrderedDict of
    name -> numpy array), with every tensor copied into a C-contiguous array.
    Raises UnsafePickleError or PthFormatError on a bad file."""
    try:
        if zipfile.is_zipfile(path):
            obj = _load_zip(path)
        else:
            with open(path, "rb") as f:
                obj = _load_legacy(f)
    except UnsafePickleError:
        raise
    except (EOFError, struct.error, KeyError, pickle.UnpicklingError) as e:
        raise PthFormatError(f"{path}: truncated or corrupt ({e!r})") from e
    return _materialize(obj)


if __name__ == "__main__":
    for name, arr in load_state_dict(sys.argv[1]).items():
        print(f"{name:50s} {str(arr.dtype):8s} {arr.shape}")
