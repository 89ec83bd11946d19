"""Detector runtimes: a ``.pt`` detector exported once by Ultralytics to OpenVINO, ONNX or TensorRT, cached.

On a CPU an exported detector runs several times faster than PyTorch with the same boxes. The export
(Ultralytics' ``YOLO.export``) is made at the run's static input shape: the source frame letterboxed to
``imgsz`` as the PyTorch predictor does it, the long side at ``imgsz`` and the short side padded to the
model stride (1920x1080 at 960 -> 960x544), so the exported model sees the same pixels as PyTorch and
the runtime compiles for one fixed shape.

Exports are kept under ``<weights folder>/exports/`` (:func:`mot_dinov3.models.catalogue.cache_dir`),
or under ``<user cache dir>/mot-dinov3/exports/`` when the weights folder cannot be written (a shared,
read-only model folder), one folder per key: the weights' sha256, runtime, precision, input shape and
the Ultralytics and runtime versions, and for INT8 the calibration source. A folder is built under a
temporary name and renamed into place with its ``export.json`` written last, so an interrupted export
is never used and a finished one is reused by every later run. The user's weights are copied into that
folder first: nothing is written beside them.

INT8 (OpenVINO through NNCF's post-training quantization, as Ultralytics' ``int8=True`` export does) is
calibrated on :data:`CALIB_FRAMES` frames spread over the user's own footage (the tracked source, or
``det_calib``): no dataset is downloaded. Its detections differ from FP32's; ``benchmarks/speed.py``
measures by how much.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mot_dinov3.errors import UserError

log = logging.getLogger(__name__)

FORMATS = {"openvino": "openvino", "onnx": "onnx", "tensorrt": "engine"}  # runtime -> Ultralytics format
PACKAGES = {"openvino": "openvino", "onnx": "onnxruntime", "tensorrt": "tensorrt"}  # runtime -> its package
EXPORT_SUFFIXES = {"_openvino_model": "openvino", ".onnx": "onnx", ".engine": "tensorrt"}  # exported model files
MARKER = "export.json"
CALIB_FRAMES = 64  # calibration images for INT8, spread over the source


def precision_args(precision: str) -> dict[str, Any]:
    """Ultralytics' predict / export keywords for ``precision`` (``fp32``, ``fp16``, ``int8``): its unified
    ``quantize`` where the installed version has it, else the older ``half`` / ``int8`` switches."""
    if precision == "fp32":
        return {}
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if "quantize" in DEFAULT_CFG_DICT:
        return {"quantize": 8 if precision == "int8" else 16}
    return {"int8": True} if precision == "int8" else {"half": True}


def calibration_images(source: str, folder: Path, n: int | None = None) -> int:
    """Write ``n`` (default :data:`CALIB_FRAMES`) frames spread over ``source`` (a video, a MOTChallenge sequence or an image folder) as
    JPEGs into ``folder``, for INT8 calibration; returns how many were written.

    Raises:
        UserError: the source cannot be read.
    """
    import cv2

    from mot_dinov3.io import FrameSource

    n = n or CALIB_FRAMES
    frames = FrameSource(source)
    try:
        step = max(1, (frames.length or n) // n)
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for i, frame in enumerate(frames):
            if i % step == 0:
                cv2.imwrite(str(folder / f"{written:06d}.jpg"), frame.image)
                written += 1
            if written == n:
                break
    finally:
        frames.close()
    return written


def installed(runtime: str) -> bool:
    """Whether the Python package ``runtime`` needs is importable (``"torch"``: always)."""
    return runtime == "torch" or importlib.util.find_spec(PACKAGES[runtime]) is not None


def is_exported(weights: str) -> str | None:
    """The runtime of an already exported model path (``*_openvino_model/``, ``.onnx``, ``.engine``), else None."""
    name = Path(weights.rstrip("/")).name
    return next((rt for suffix, rt in EXPORT_SUFFIXES.items() if name.endswith(suffix)), None)


def resolve_runtime(runtime: str, weights: str, cuda: bool, capture_features: bool) -> str:
    """The runtime a run uses: ``runtime`` itself unless ``"auto"``.

    ``auto`` picks PyTorch for an exported model (it runs on its own runtime), for ``capture_features``
    (the neck features come from the PyTorch graph) and on CUDA (FP16 PyTorch), and OpenVINO on a CPU
    when the ``openvino`` package is importable, else PyTorch.

    Raises:
        UserError: ``runtime`` is set for an exported model, or is not ``torch`` with ``capture_features``.
    """
    exported = is_exported(weights)
    if runtime == "auto":
        if exported or capture_features or cuda:
            return "torch"
        return "openvino" if installed("openvino") else "torch"
    if exported and runtime != exported:
        raise UserError(
            f"det_runtime={runtime!r}: det={weights!r} is already an exported {exported} model, which runs "
            f"as it is; pass the .pt weights to export them, or leave det_runtime='auto'"
        )
    if capture_features and runtime != "torch":
        raise UserError(
            f"embedder='yolo' reads the PyTorch detector's features, but det_runtime={runtime!r}; "
            "use det_runtime='torch' (or 'auto') with it"
        )
    return "torch" if exported else runtime


def cpu_bf16() -> bool:
    """Whether PyTorch should run a detector in bf16 on this CPU: it has AMX (Intel Sapphire Rapids and
    later), whose tile units give oneDNN's bf16 convolutions far more throughput than FP32 ones. CPUs
    with AVX512-BF16 alone (Cooper Lake, AMD Zen 4) are left at FP32: their bf16 gain was not measured.
    Asks PyTorch's own CPU probe; ``False`` where this PyTorch has none."""
    import torch

    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(precision: str, runtime: str, cuda: bool, bf16: bool = False) -> str:
    """The precision a run uses: ``precision`` itself unless ``"auto"``.

    ``auto`` picks FP16 on CUDA (PyTorch ``half``), for an OpenVINO export on a CPU, and for PyTorch on a
    CPU with AMX (``bf16``, :func:`cpu_bf16`); FP32 elsewhere (ONNX Runtime on a CPU runs FP16 no
    faster). On a CPU, FP16 means the CPU's native reduced precision: OpenVINO's CPU plugin runs an FP16
    model in bf16 where the CPU has AMX or AVX512-BF16 and in FP32 elsewhere ("Precision Control" in
    OpenVINO's docs), so on most CPUs FP16 only halves the file; PyTorch runs under
    ``torch.autocast("cpu", torch.bfloat16)`` (FP32 without AMX). In bf16 the boxes move slightly for a
    much faster detector (``docs/benchmarks.md`` has both). Ask for ``"fp32"`` to get PyTorch's FP32
    boxes everywhere.
    """
    if precision != "auto":
        return precision
    return "fp16" if cuda or runtime == "openvino" or (runtime == "torch" and bf16) else "fp32"


def static_shape(hw: tuple[int, int], imgsz: int, stride: int = 32) -> tuple[int, int]:
    """(height, width) in pixels of an (H, W) frame letterboxed to ``imgsz`` as Ultralytics' PyTorch
    predictor does (``LetterBox(auto=True)``): scaled so the long side is ``imgsz`` (rounded up to a
    multiple of ``stride``, as Ultralytics' ``check_imgsz``), each side padded to a multiple of
    ``stride``."""
    size = math.ceil(imgsz / stride) * stride
    h, w = hw
    r = min(size / h, size / w)
    nh, nw = round(h * r), round(w * r)
    return nh + (size - nh) % stride, nw + (size - nw) % stride


@dataclass(frozen=True)
class ExportKey:
    """What an export depends on; :meth:`folder` is its cache folder name."""

    stem: str
    sha256: str
    runtime: str
    precision: str
    shape: tuple[int, int]
    calib: str | None = None  # INT8: the calibration source

    def folder(self) -> str:
        versions = f"ul{_version('ultralytics')}-{PACKAGES[self.runtime]}{_version(PACKAGES[self.runtime])}"
        h, w = self.shape
        calib = ""
        if self.calib is not None:
            path = Path(self.calib).resolve()
            calib = "-" + hashlib.sha256(f"{path}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:8]
        return f"{self.stem}-{self.sha256[:16]}-{self.runtime}-{self.precision}{calib}-{h}x{w}-{versions}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "0"


def export_roots() -> list[Path]:
    """Where exports are looked for, in order: ``<weights folder>/exports``, then the user cache's."""
    from mot_dinov3.models.catalogue import cache_dir, user_dir

    return list(dict.fromkeys([cache_dir() / "exports", user_dir("cache") / "exports"]))


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists, or can be made, and takes new files (a probe, not ``os.access``: root
    passes every permission check but still cannot write a read-only mount)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def exports_dir() -> Path:
    """Where a new export goes: the first of :func:`export_roots` that can be written (the last one
    when none can, so the export fails with that folder's error and the detector runs PyTorch)."""
    roots = export_roots()
    return next((root for root in roots if _writable(root)), roots[-1])


def cached_export(key: ExportKey, root: Path | None = None) -> Path | None:
    """The exported model of ``key`` when a finished export is cached (in ``root``, else in any of
    :func:`export_roots`), else None."""
    for folder in [root / key.folder()] if root else [r / key.folder() for r in export_roots()]:
        try:
            meta = json.loads((folder / MARKER).read_text())
            model = folder / meta["model"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if model.exists():
            return model
    return None


def export(weights: Path, key: ExportKey, device: str | None = None, root: Path | None = None) -> Path:
    """The model of ``key`` exported from ``weights`` (a ``.pt`` file), from the cache or made now.

    Returns:
        The exported model's path (an OpenVINO folder, an ``.onnx`` or an ``.engine`` file).

    Raises:
        Exception: whatever Ultralytics' exporter raises (a missing package, an unsupported layer,
            no GPU for TensorRT); :class:`~mot_dinov3.detector.Detector` turns it into a warning and
            runs PyTorch.
    """
    found = cached_export(key, root)
    if found is not None:
        return found
    root = root or exports_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / key.folder()
    tmp = Path(tempfile.mkdtemp(prefix=f".{key.folder()}.", dir=root))
    try:
        from ultralytics import YOLO

        no_openvino_telemetry()
        copy = tmp / f"{key.stem}.pt"
        shutil.copyfile(weights, copy)
        yolo = YOLO(str(copy))
        extra: dict[str, object] = {}
        if key.precision == "int8":
            if key.calib is None:
                raise ValueError("INT8 needs calibration frames (det_calib)")
            calibration_images(key.calib, tmp / "calib" / "images")
            data = tmp / "calib.yaml"
            data.write_text(
                json.dumps({"path": str(tmp / "calib"), "train": "images", "val": "images", "names": yolo.names})
            )
            extra["data"] = str(data)
        with quiet_ultralytics():
            out = yolo.export(
                format=FORMATS[key.runtime],
                imgsz=list(key.shape),
                dynamic=False,
                batch=1,
                device=device,
                verbose=False,
                **precision_args(key.precision),
                **extra,
            )
        model = Path(str(out))
        if not model.exists():
            raise RuntimeError(f"Ultralytics reported {out!r}, which does not exist")
        copy.unlink()
        shutil.rmtree(tmp / "calib", ignore_errors=True)
        meta = {"model": model.name, "weights": str(weights), **{k: str(v) for k, v in vars(key).items()}}
        (tmp / MARKER).write_text(json.dumps(meta, indent=2))
        try:
            os.replace(tmp, final)
        except OSError:  # another run finished the same export first: use it
            if cached_export(key, root) is None:
                raise
        return final / model.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def no_openvino_telemetry() -> None:
    """Switch off the usage telemetry OpenVINO's model converter and NNCF send (``openvino_telemetry``).

    It posts from a forked process; offline that process can hang in DNS, and a run then never exits (its
    exit waits for the process). A tracker that works offline sends nothing: the sender becomes a no-op,
    for this process, where the package is installed.
    """
    try:
        from openvino_telemetry.backend import backend_ga4
    except ImportError:
        return
    backend_ga4.GA4Backend.send = lambda self, message: None


@contextlib.contextmanager
def quiet_ultralytics() -> Iterator[None]:
    """Within the block Ultralytics logs warnings only (its exporter and loader print progress lines), and
    PyTorch's deprecation notices for the ``torch.jit.trace`` its exporters call are hidden (nothing a
    user of the export can act on)."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*torch\.jit\.trace", FutureWarning)
            yield
    finally:
        LOGGER.setLevel(level)
