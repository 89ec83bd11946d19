"""Ultralytics YOLO detector wrapper with optional capture of per-detection neck features.

Feature capture uses Ultralytics' own mechanism (the one its BoT-SORT ``model: auto`` ReID uses): a
forward pre-hook on the ``Detect`` head stores the input feature maps on the predictor as ``_feats``;
the detection predictor then runs NMS with ``return_idxs=True`` and attaches to each result the
feature cell of every kept box, channel-averaged to the smallest level's width (64 for YOLOv8n).

Ultralytics' run-time ``pip install`` of a missing package (``openvino`` for an OpenVINO folder ...)
is switched off (its ``YOLO_AUTOINSTALL`` switch, unless the user set that variable): a missing package
is a one-line error naming it.

Runtimes (``DetectorConfig.runtime``): a ``.pt`` detector runs in PyTorch or, exported once per input
shape by :mod:`mot_dinov3.det_export`, in OpenVINO, ONNX Runtime or TensorRT; the export is made (or
read from its cache) when the first frame of a size arrives. PyTorch on a CPU runs on the threads torch
had before Ultralytics' device selection lowered them to ``cpu_count - 1``, and at FP16 (``auto`` on
CPUs with AMX) under ``torch.autocast("cpu", torch.bfloat16)``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import types
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mot_dinov3.config import DetectorConfig
from mot_dinov3.det_export import (
    CALIB_FRAMES,
    PACKAGES,
    ExportKey,
    cached_export,
    cpu_bf16,
    export,
    export_roots,
    exports_dir,
    installed,
    precision_args,
    quiet_ultralytics,
    resolve_precision,
    resolve_runtime,
    static_shape,
)
from mot_dinov3.errors import MissingFileError, UserError
from mot_dinov3.models.fetch import sha256_of

WEIGHTS_ENV = "MOT_DINOV3_WEIGHTS"
AUTOINSTALL_ENV = "YOLO_AUTOINSTALL"
log = logging.getLogger(__name__)
PIP_NAMES = {"paddle": "paddlepaddle", "tflite_runtime": "tflite-runtime"}  # import name -> pip name, where they differ


@dataclass
class Detections:
    """Detections of one frame.

    Attributes:
        xyxy: (N, 4) float32 boxes in pixels.
        conf: (N,) float32 confidences.
        cls: (N,) int64 class ids.
        feats: (N, C) float32 detector neck features, or ``None`` when not captured.
    """

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    feats: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.xyxy)


def resolve_weights(model: str, env: dict[str, str] | None = None) -> str:
    """Find detector weights: as given, then in ``$MOT_DINOV3_WEIGHTS``, else the bare name.

    A bare official name (``yolov8n.pt``) that is not found locally is returned unchanged so that
    Ultralytics can use its cache or download it.

    Raises:
        UserError: a path-like name (with a folder part) that does not exist.
    """
    env = dict(os.environ) if env is None else env
    p = Path(model).expanduser()
    if p.exists():
        return str(p)
    folder = env.get(WEIGHTS_ENV)
    if folder and (Path(folder) / p.name).exists():
        return str(Path(folder) / p.name)
    if len(p.parts) > 1:
        where = f" or in ${WEIGHTS_ENV}={folder}" if folder else f" (set ${WEIGHTS_ENV} to a folder of weights)"
        raise MissingFileError(f"det={model!r}: file not found{where}; pass an existing weights file or folder")
    return model


def _precision_hint(compiled: Any) -> str | None:
    """An OpenVINO compiled model's ``INFERENCE_PRECISION_HINT`` (``"f32"``, ``"bf16"`` ...); ``None``
    where it has none (a model compiled on ``AUTO`` or several devices)."""
    try:
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").to_string())
    except Exception:  # RuntimeError from OpenVINO: the property is unsupported there
        return None


class Detector:
    """YOLO detection for one frame at a time.

    Args:
        cfg: detector settings.

    Raises:
        UserError: weights missing or not loadable (offline and not cached, corrupt file), class ids
            the model does not have, or ``capture_features`` requested for a model without a PyTorch
            ``Detect`` head. An exported model loads at its first frame: a missing package, a model that
            is not a detector or a class id it does not have is raised by the first call. A runtime
            whose package is not installed, a runtime an exported model or ``capture_features`` rules
            out, INT8 without OpenVINO, NNCF or calibration frames. A failed export is not an error: it
            logs one line and PyTorch runs.
    """

    def __init__(self, cfg: DetectorConfig):
        import torch
        from ultralytics import YOLO

        _no_autoinstall()
        self.cfg = cfg
        self._ran = False
        weights = resolve_weights(cfg.model)
        cuda = self._cuda = _on_cuda(cfg.device)
        self.runtime = resolve_runtime(cfg.runtime, weights, cuda, cfg.capture_features)
        if self.runtime != "torch" and not installed(self.runtime):
            raise UserError(
                f"det_runtime={self.runtime!r} needs the Python package {PACKAGES[self.runtime]!r}, which is "
                f"not installed: pip install {PACKAGES[self.runtime]} (or pass det_runtime='torch')"
            )
        self._bf16 = not cuda and cpu_bf16()  # PyTorch's FP16 on this CPU: bf16 autocast
        self.precision = resolve_precision(cfg.precision, self.runtime, cuda, self._bf16)
        if self.precision == "int8" and self.runtime != "openvino":
            raise UserError(
                f"det_precision='int8' runs on OpenVINO (calibrated on your frames), not det_runtime={self.runtime!r}; "
                "pass det_runtime='openvino' or another precision"
            )
        if self.precision == "int8" and not cfg.calib:
            raise UserError("det_precision='int8' needs calibration frames: pass det_calib= a video or image folder")
        if self.precision == "int8" and importlib.util.find_spec("nncf") is None:
            raise UserError(
                "det_precision='int8' quantizes with NNCF, which is not installed: pip install nncf "
                "(or pip install 'mot-dinov3[int8]')"
            )
        self._weights = weights
        self.inference_precision: str | None = None  # what the model runs in (f32, bf16 ...), once loaded
        self._imgsz: int | tuple[int, int] = cfg.imgsz
        self._hw: tuple[int, int] | None = None  # the frame size the model is set up for
        self._threads = torch.get_num_threads()  # before Ultralytics lowers it
        self._exports: dict[tuple[int, int], tuple[Any, Path]] = {}  # static input shape -> (model, path)
        try:
            task = "detect" if Path(weights).is_dir() else None  # exported folders need the task named
            self.model = YOLO(weights, task=task)
        except Exception as exc:  # Ultralytics raises many types for missing / undownloadable weights
            folder = os.environ.get(WEIGHTS_ENV, "<unset>")
            raise UserError(
                f"det={cfg.model!r}: cannot load detector weights ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); offline, put the file in ${WEIGHTS_ENV} "
                f"(now {folder}) or pass det='/path/to/weights.pt'"
            ) from exc
        if cfg.capture_features:
            if not isinstance(getattr(self.model, "model", None), torch.nn.Module):
                raise UserError(
                    f"embedder='yolo' needs a PyTorch .pt detector, but det={cfg.model!r} is an "
                    "exported model; pass a .pt file or choose another embedder"
                )
            self.model.add_callback("on_predict_start", _install_feature_hook)
        self._pytorch = isinstance(getattr(self.model, "model", None), torch.nn.Module)  # not an exported model
        if self._bf16 and not (self._pytorch and _decode_in_fp32(self.model)):
            self._bf16 = False  # an exported model, or a head whose boxes bf16 would decode too coarsely
            self.precision = resolve_precision(cfg.precision, self.runtime, cuda)
        if self._pytorch:  # exported: known after loading
            self._check_classes()
            self._weights = str(getattr(self.model, "ckpt_path", None) or weights)  # an official name: its download
        elif self.runtime != "torch":
            self.runtime = "torch"  # not a PyTorch checkpoint: nothing to export
        self._pt, self._export_runtime = self.model, self.runtime  # the PyTorch model; the runtime asked for

    def _use_export(self, hw: tuple[int, int]) -> None:
        """Run the export at the static input shape of ``hw`` (H, W) frames: made once per shape and cached
        (:func:`mot_dinov3.det_export.export`), kept per shape so sources of several sizes each get theirs;
        a failed export logs one line and PyTorch runs from then on."""
        shape = static_shape(hw, self.cfg.imgsz, int(max(getattr(self._pt.model, "stride", [32]))))
        if shape in self._exports:
            self.model, self.export_path = self._exports[shape]
            self._imgsz = shape
            return
        key = ExportKey(
            Path(self._weights).stem,
            sha256_of(self._weights),
            self._export_runtime,
            self.precision,
            shape,
            self.cfg.calib if self.precision == "int8" else None,
        )
        found = cached_export(key)
        root = None
        if found is None:
            what = f"INT8, calibrated on {CALIB_FRAMES} frames of {self.cfg.calib}" if self.precision == "int8" else ""
            root = exports_dir()
            log.warning(
                "note: exporting %s to %s at %dx%d %s(once; cached under %s%s)",
                Path(self._weights).name,
                self._export_runtime,
                shape[1],
                shape[0],
                f"{what} " if what else "",
                root,
                "" if root == export_roots()[0] else f": {export_roots()[0].parent} cannot be written",
            )
        try:
            path = found or export(Path(self._weights), key, self.cfg.device, root=root)
            from ultralytics import YOLO

            with quiet_ultralytics():
                model = YOLO(str(path), task="detect")
                model.predict(np.zeros((*hw, 3), np.uint8), imgsz=list(shape), device=self.cfg.device, verbose=False)
                self._openvino_precision(model, path, fp32=self.precision == "fp32")
        except Exception as exc:  # a failed export or load: PyTorch still works
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            log.warning(
                "det_runtime=%r: the export failed (%s: %s); running the PyTorch model instead",
                self._export_runtime,
                exc.__class__.__name__,
                first[:200],
            )
            self.runtime = self._export_runtime = "torch"
            self.model, self._imgsz = self._pt, self.cfg.imgsz
            return
        self._exports[shape] = (model, path)
        self.model, self._imgsz, self.export_path, self.runtime = model, shape, path, self._export_runtime

    def _openvino_precision(self, model: Any, folder: Path, fp32: bool) -> bool:
        """Set :attr:`inference_precision` for an OpenVINO model Ultralytics has loaded and, with ``fp32``
        (an FP32 export, or ``precision="fp32"``), recompile it at FP32 where OpenVINO chose less: its CPU
        plugin runs an FP32 model in bf16 on CPUs with AMX or AVX512-BF16 unless told otherwise
        ("Precision Control", OpenVINO docs), which moves the boxes. Returns whether it recompiled.

        This reads Ultralytics' OpenVINO backend (``predictor.model.backend``: its ``compile_model``
        partial and ``ov_compiled_model``). Another Ultralytics layout, a model compiled on ``AUTO`` (where
        OpenVINO sees a GPU or NPU too, and the property is the devices' own) or a failed recompile logs
        one line and keeps OpenVINO's choice; nothing here raises."""
        backend: Any = getattr(getattr(getattr(model, "predictor", None), "model", None), "backend", None)
        compiled = getattr(backend, "ov_compiled_model", None)
        if compiled is None:
            return False  # not OpenVINO
        self.inference_precision = _precision_hint(compiled)
        if not fp32 or self.inference_precision in ("f32", None):
            return False
        compile_model: Any = getattr(backend, "compile_model", None)
        xml = next(iter(sorted(folder.glob("*.xml"))), None) if folder.is_dir() else None
        if not isinstance(getattr(compile_model, "keywords", None), dict) or xml is None:
            log.warning(
                "det_precision fp32: this Ultralytics version's OpenVINO backend cannot be recompiled; "
                "OpenVINO runs the model in %s",
                self.inference_precision,
            )
            return False
        import openvino as ov

        keywords = compile_model.keywords  # kept in the partial: Ultralytics recompiles with it on a new shape
        before = keywords.get("config")
        keywords["config"] = {**(before or {}), "INFERENCE_PRECISION_HINT": ov.Type.f32}
        try:
            recompiled = compile_model(ov.Core().read_model(str(xml)))
        except Exception as exc:  # OpenVINO's own error types
            keywords["config"] = before
            log.warning(
                "det_precision fp32: OpenVINO cannot recompile the model at FP32 (%s); it runs in %s",
                (str(exc).strip().splitlines() or [type(exc).__name__])[-1],
                self.inference_precision,
            )
            return False
        backend.ov_compiled_model = recompiled
        self.inference_precision = _precision_hint(recompiled)
        return True

    def _restore_threads(self) -> None:
        """Undo Ultralytics' ``select_device``, which sets torch to ``cpu_count - 1`` threads on a CPU
        when a model is set up: the embedders and the PyTorch detector run on every core torch had."""
        import torch

        if torch.get_num_threads() < self._threads:
            torch.set_num_threads(self._threads)

    def _check_classes(self) -> None:
        names = self.model.names
        missing = [c for c in self.cfg.classes or [] if c not in names]
        if missing and names:
            lo, hi = min(names), max(names)
            raise UserError(
                f"classes={','.join(map(str, self.cfg.classes or []))!r}: det={self.cfg.model!r} has no class "
                f"{', '.join(map(str, missing))}; its classes are {lo} ({names[lo]}) to {hi} ({names[hi]})"
            )

    @property
    def _torch_bf16(self) -> bool:
        """PyTorch runs FP16 on an AMX CPU: in bf16 autocast (Ultralytics runs ``half`` on CUDA only)."""
        return self._bf16 and self.precision == "fp16" and self.runtime == "torch"  # _bf16: a PyTorch model

    def _autocast(self) -> AbstractContextManager[Any]:
        """bf16 autocast where :attr:`_torch_bf16`, a no-op elsewhere. Autocast is per thread, so it
        wraps each call. Ultralytics' ``half`` is not passed with it: on a CPU Ultralytics runs a ``.pt``
        model in FP32 whatever ``half`` says."""
        if self._torch_bf16:
            import torch

            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def _predict(self, image: np.ndarray) -> Any:
        with self._autocast():
            return self.model.predict(
                image,
                conf=self.cfg.conf,
                imgsz=self._imgsz,
                classes=self.cfg.classes,
                device=self.cfg.device,
                verbose=False,
                **(precision_args(self.precision) if self.runtime == "torch" and not self._torch_bf16 else {}),
            )[0]  # type: ignore[index]

    def _first_predict(self, image: np.ndarray) -> Any:
        """:meth:`_predict`, where an exported model loads: its failures become one-line errors. PyTorch
        on a CPU gets back the thread count Ultralytics' device selection lowered (to ``cpu_count - 1``)."""

        try:
            r = self._predict(image)
        except UserError:
            raise
        except ModuleNotFoundError as exc:  # the package of an exported format (Ultralytics installs none here)
            module = (exc.name or "").split(".")[0] or str(exc)
            package = PIP_NAMES.get(module, module)
            raise UserError(
                f"det={self.cfg.model!r} needs the Python package {package!r}, which is not installed: "
                f"pip install {package}"
            ) from exc
        except Exception as exc:  # not a detector, a broken export ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(
                f"det={self.cfg.model!r}: the detector failed on the first frame ({exc.__class__.__name__}: "
                f"{first}); pass a YOLO detection model (.pt file or Ultralytics export)"
            ) from exc
        if getattr(r, "boxes", None) is None:  # a classification model
            raise UserError(f"det={self.cfg.model!r} gives no boxes; pass a YOLO detection model")
        fp32 = self.cfg.precision == "fp32"  # an exported folder keeps OpenVINO's choice unless told
        if self._export_runtime == "torch" and self._openvino_precision(self.model, Path(self._weights), fp32):
            r = self._predict(image)  # an exported OpenVINO folder, recompiled at FP32
        if self.torch_cpu and self._pytorch:
            self.inference_precision = "bf16" if self._torch_bf16 else "f32"
            if self.cfg.precision == "fp16" and not self._bf16:
                log.warning(
                    "det_precision fp16: PyTorch runs FP32 on this CPU (its bf16 path needs AMX and a "
                    "YOLOv8-style Detect head)"
                )
        self._restore_threads()
        self._check_classes()
        self._ran = True
        return r

    @property
    def torch_cpu(self) -> bool:
        """PyTorch runs the model on the CPU (its intra-op threads come from an OpenMP pool of the calling
        thread). Known for sure after the first frame, when an export that failed has fallen back to it."""
        return self.runtime == "torch" and not self._cuda

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect objects in one (H, W, 3) uint8 BGR image. With an export runtime the model is exported
        for this frame size when it is new (the first frame, a new source of another size)."""
        hw = (int(image.shape[0]), int(image.shape[1]))
        if hw != self._hw:
            self._hw = hw
            if self._export_runtime != "torch":
                self._use_export(hw)
                self._restore_threads()
        r = self._predict(image) if self._ran else self._first_predict(image)
        boxes: Any = r.boxes
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float32)
        feats = None
        if self.cfg.capture_features:
            f = getattr(r, "feats", None)
            if f is None:
                raise UserError(
                    "embedder='yolo': the detector returned no neck features (NMS-free / end-to-end "
                    "heads such as YOLOv10/YOLO26 have none); use a YOLOv8/YOLO11 .pt or another embedder"
                )
            feats = f.float().cpu().numpy() if len(xyxy) else np.zeros((0, 0), np.float32)
        return Detections(
            xyxy, boxes.conf.cpu().numpy().astype(np.float32), boxes.cls.cpu().numpy().astype(np.int64), feats
        )


def _on_cuda(device: str | None) -> bool:
    """Whether a run on ``device`` (``None``: Ultralytics' choice, CUDA when available) uses CUDA."""
    import torch

    if device is None:
        return torch.cuda.is_available()
    return device.startswith("cuda") or device.replace(",", "").isdigit()


def _no_autoinstall() -> None:
    """Switch off Ultralytics' run-time ``pip install`` of missing packages, unless the user set
    ``YOLO_AUTOINSTALL`` (Ultralytics reads it once, at import, into ``checks.AUTOINSTALL``)."""
    if AUTOINSTALL_ENV not in os.environ:
        from ultralytics.utils import checks

        checks.AUTOINSTALL = False


def _decode_in_fp32(yolo: Any) -> bool:
    """Make the Detect head of ``yolo`` (an Ultralytics ``YOLO``) decode its boxes in FP32 under bf16
    autocast; the backbone, neck and head convolutions, nearly all the time, stay in bf16. bf16's 8-bit
    mantissa puts the pixel coordinates of a 1080p frame on a 4 to 8 px grid: decoded in bf16, boxes
    move visibly from their FP32 selves and low-score boxes come and go. Replaces the head's
    ``_inference`` (the decode step of Ultralytics' ``Detect`` and its subclasses) by a method that
    casts its floating-point inputs to FP32 and runs the class's own ``_inference`` out of autocast; a
    bound method, so the predictor's deep copy of the model gets one bound to its own head. ``False``
    where the model has no such head."""

    net = getattr(yolo, "model", None)
    head = net.model[-1] if net is not None and hasattr(net, "model") else None
    inference = getattr(type(head), "_inference", None)
    if head is None or not callable(inference):
        return False
    head._inference = types.MethodType(partial(_fp32_call, inference), head)
    return True


def _fp32_call(method: Any, module: Any, *args: Any) -> Any:
    """``method(module, *args)`` out of autocast, with the floating-point tensors of ``args`` (also in
    lists, tuples and dicts) cast to FP32; other tensors (indices, masks) are passed as they are."""
    import torch

    def fp32(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.float() if x.is_floating_point() else x
        if isinstance(x, (list, tuple)):
            return type(x)(fp32(v) for v in x)
        return {k: fp32(v) for k, v in x.items()} if isinstance(x, dict) else x

    with torch.autocast("cpu", enabled=False):
        return method(module, *(fp32(a) for a in args))


def _install_feature_hook(predictor) -> None:
    """``on_predict_start`` callback: hook the Detect head once so ``predictor._feats`` is filled."""
    if getattr(predictor, "_mot_dinov3_hook", None) is not None:
        return
    from ultralytics.nn.modules.head import Detect

    net = getattr(predictor.model, "model", None)
    head = net.model[-1] if net is not None and hasattr(net, "model") else None
    if not isinstance(head, Detect) or getattr(head, "end2end", False):
        predictor._mot_dinov3_hook = False  # leaves _feats unset: __call__ reports the problem
        return

    def pre_hook(module, inputs):
        predictor._feats = list(inputs[0])  # a new list: the head mutates its input in place

    predictor._mot_dinov3_hook = head.register_forward_pre_hook(pre_hook)
