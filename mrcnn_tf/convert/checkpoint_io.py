"""Read PyTorch and Detectron2 checkpoints as ``{name: numpy array}``, without torch and safely.

Checkpoints come from the internet, and unpickling runs code: every pickle here goes through a
restricted unpickler that admits only tensors/arrays and plain containers; anything else (a
planted ``os.system``) is refused with a :class:`CheckpointError` before it runs.

Formats:

* ``.pth``/``.pt`` saved by ``torch.save``: the zip format (torch >= 1.6: ``archive/data.pkl``
  and one raw file per storage) and the legacy format (a sequence of pickles followed by the raw
  storages; torchvision's 2019 COCO files). Tensors are rebuilt from storage, offset, size and
  stride, as ``torch._utils._rebuild_tensor_v2`` does. Little-endian storages only.
* ``.pkl`` (Detectron2 model zoo: ``{"model": {name: ndarray}, "__author__": ...}``; Caffe2
  ``{"blobs": ...}``): pickled NumPy arrays.
* ``.npz`` (``numpy.savez``) and ``.safetensors``: plain arrays, no pickle at all.

A ``{"model": ...}``, ``{"state_dict": ...}`` or ``{"blobs": ...}`` wrapper is unwrapped.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from registry.errors import UserError


class CheckpointError(UserError):
    """A checkpoint that cannot be read (or must not be: it would run code)."""


#: torch storage class name -> NumPy dtype.
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # widened to float32 below
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
#: torch dtypes (``torch.float32`` pickled by ``UntypedStorage`` checkpoints) -> storage names.
TORCH_DTYPES = {
    "float32": "FloatStorage",
    "float": "FloatStorage",
    "float64": "DoubleStorage",
    "double": "DoubleStorage",
    "float16": "HalfStorage",
    "half": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "long": "LongStorage",
    "int32": "IntStorage",
    "int": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
try:  # NumPy 2 renamed numpy.core (pickles name either)
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # NumPy 1
    from numpy.core import multiarray as _np_multiarray


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _Storage:
    """A storage's dtype name and its raw bytes (read lazily from the archive)."""

    def __init__(self, type_name: str, data: bytes):
        self.type_name = type_name
        self.data = data

    def array(self) -> np.ndarray:
        if self.type_name == "BFloat16Storage":
            halves = np.frombuffer(self.data, "<u2").astype(np.uint32) << 16
            return halves.view(np.float32)
        return np.frombuffer(self.data, np.dtype(STORAGE_DTYPES[self.type_name]).newbyteorder("<"))


class _Tensor:
    """A tensor as the pickle describes it; its storage's bytes may come later in the file (the
    legacy format writes them after the pickle), so it becomes an array only after loading."""

    def __init__(self, storage, storage_offset, size, stride):
        self.storage, self.offset = storage, int(storage_offset)
        self.size, self.stride = tuple(int(v) for v in size), tuple(int(v) for v in stride)

    def array(self) -> np.ndarray:
        flat = self.storage.array()
        if not self.size:
            return flat[self.offset].copy()
        # a corrupt or hostile file must not make as_strided read outside the buffer
        extent = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride, strict=True)) + 1
        if min(self.size) == 0:
            return np.zeros(self.size, flat.dtype)
        if self.offset < 0 or min(self.stride) < 0 or extent > flat.size:
            raise CheckpointError(
                f"a tensor of shape {self.size} reaches past its storage ({flat.size} values)"
            )
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(st * itemsize for st in self.stride)
        )
        return np.array(view)  # a copy, native byte order


def _rebuild_tensor(storage, storage_offset, size, stride, *_args):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_args):
    return data


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes call it (NumPy arrays pickled with
    protocol 2 store their data so); a string in, bytes out, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8"):
        raise pickle.UnpicklingError("_codecs.encode with unexpected arguments")
    return text.encode(encoding)


def _ordered_dict(*args):
    from collections import OrderedDict

    return OrderedDict(*args)


class _SafeUnpickler(pickle.Unpickler):
    """Admits only what state dicts are made of; refuses every other global."""

    ALLOWED: ClassVar[dict] = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("_codecs", "encode"): _encode,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "scalar"): _np_multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): _np_multiarray.scalar,
    }

    def __init__(self, handle, path: Path, storages=None):
        super().__init__(handle, encoding="latin1")
        self.path = path
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in TORCH_DTYPES:
            return _StorageType(TORCH_DTYPES[name])
        raise CheckpointError(
            f"{self.path}: the checkpoint asks to load {module}.{name} while unpickling; only tensors, "
            "arrays and plain containers are read (a pickle that could run code is refused)"
        )

    def persistent_load(self, pid):
        if self.storages is None:
            raise CheckpointError(f"{self.path}: a pickle with torch storages outside a torch checkpoint")
        return self.storages(pid)


def _storage_type(value) -> str:
    name = value.name if isinstance(value, _StorageType) else str(value)
    if name not in STORAGE_DTYPES:
        raise CheckpointError(f"unsupported tensor type {name}")
    return name


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise CheckpointError(f"{path}: a zip file without data.pkl is not a torch checkpoint")
        root = pickles[0][: -len("data.pkl")]
        byteorder = root + "byteorder"
        if byteorder in names and archive.read(byteorder).decode().strip() != "little":
            raise CheckpointError(f"{path}: big-endian torch checkpoints are not supported")

        def storage(pid):
            _, type_, key, _location, _numel = pid[:5]
            return _Storage(_storage_type(type_), archive.read(f"{root}data/{key}"))

        with archive.open(pickles[0]) as handle:
            return _SafeUnpickler(handle, path, storage).load()


def _read_legacy(path: Path) -> Any:
    with open(path, "rb") as handle:
        if _SafeUnpickler(handle, path).load() != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a torch checkpoint (no magic number)")
        _SafeUnpickler(handle, path).load()  # protocol version
        _SafeUnpickler(handle, path).load()  # system info
        pending: dict[str, _Storage] = {}

        def storage(pid):
            _, type_, key, _location, _numel = pid[:5]
            if key not in pending:
                pending[key] = _Storage(_storage_type(type_), b"")
            return pending[key]

        result = _SafeUnpickler(handle, path, storage).load()
        keys = _SafeUnpickler(handle, path).load()
        for key in keys:
            (numel,) = struct.unpack("<q", handle.read(8))
            item = pending[key]
            size = (
                2
                if item.type_name == "BFloat16Storage"
                else np.dtype(STORAGE_DTYPES[item.type_name]).itemsize
            )
            item.data = handle.read(numel * size)
            if len(item.data) != numel * size:
                raise CheckpointError(f"{path}: the file ends inside tensor data (truncated download?)")
    return result


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    dtypes = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        data = handle.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtypes[info["dtype"]]).reshape(info["shape"]).copy()
    return out


def _unwrap(obj: Any, path: Path) -> dict[str, np.ndarray]:
    for key in ("model", "state_dict", "blobs"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(
            f"{path}: holds no weights (expected a dict of tensors, got {type(obj).__name__})"
        )
    arrays = {}
    for name, value in obj.items():
        if isinstance(value, _Tensor):
            value = value.array()
        if isinstance(value, np.ndarray):
            arrays[str(name)] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            arrays[str(name)] = np.asarray(value)
    if not arrays:
        raise CheckpointError(f"{path}: holds no tensors")
    return arrays


def read_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.pth``/``.pt``/``.pkl``/``.npz``/``.safetensors`` checkpoint.

    Raises:
        CheckpointError: missing, unreadable, not a checkpoint, or a pickle that would load
            anything but tensors and containers; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if path.suffix == ".safetensors":
            return _read_safetensors(path)
        if zipfile.is_zipfile(path):
            return _unwrap(_read_zip(path), path)
        with open(path, "rb") as handle:
            head = handle.read(2)
        if not head or head[0] != 0x80:
            raise CheckpointError(
                f"{path}: not a checkpoint (neither a torch file, a pickle, .npz nor .safetensors)"
            )
        if path.suffix in (".pkl", ".pickle"):
            with open(path, "rb") as handle:
                return _unwrap(_SafeUnpickler(handle, path).load(), path)
        return _unwrap(_read_legacy(path), path)
    except CheckpointError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        zipfile.BadZipFile,
        OSError,
    ) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
