"""Ultralytics YOLO detector wrapper with optional capture of per-detection neck features.

Feature capture uses Ultralytics' own mechanism (the one its BoT-SORT ``model: auto`` ReID uses): a
forward pre-hook on the ``Detect`` head stores the input feature maps on the predictor as ``_feats``;
the detection predictor then runs NMS with ``return_idxs=True`` and attaches to each result the
feature cell of every kept box, channel-averaged to the smallest level's width (64 for YOLOv8n).

Ultralytics' run-time ``pip install`` of a missing package (``openvino`` for an OpenVINO folder ...)
is switched off (its ``YOLO_AUTOINSTALL`` switch, unless the user set that variable): a missing package
is a one-line error naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mot_dinov3.config import DetectorConfig
from mot_dinov3.errors import MissingFileError, UserError

WEIGHTS_ENV = "MOT_DINOV3_WEIGHTS"
AUTOINSTALL_ENV = "YOLO_AUTOINSTALL"
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


class Detector:
    """YOLO detection for one frame at a time.

    Args:
        cfg: detector settings.

    Raises:
        UserError: weights missing or not loadable (offline and not cached, corrupt file), class ids
            the model does not have, or ``capture_features`` requested for a model without a PyTorch
            ``Detect`` head. An exported model loads at its first frame: a missing package, a model that
            is not a detector or a class id it does not have is raised by the first call.
    """

    def __init__(self, cfg: DetectorConfig):
        import torch
        from ultralytics import YOLO

        _no_autoinstall()
        self.cfg = cfg
        self._ran = False
        weights = resolve_weights(cfg.model)
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
        if isinstance(getattr(self.model, "model", None), torch.nn.Module):  # exported: known after loading
            self._check_classes()

    def _check_classes(self) -> None:
        names = self.model.names
        missing = [c for c in self.cfg.classes or [] if c not in names]
        if missing and names:
            lo, hi = min(names), max(names)
            raise UserError(
                f"classes={','.join(map(str, self.cfg.classes or []))!r}: det={self.cfg.model!r} has no class "
                f"{', '.join(map(str, missing))}; its classes are {lo} ({names[lo]}) to {hi} ({names[hi]})"
            )

    def _predict(self, image: np.ndarray) -> Any:
        return self.model.predict(
            image,
            conf=self.cfg.conf,
            imgsz=self.cfg.imgsz,
            classes=self.cfg.classes,
            device=self.cfg.device,
            verbose=False,
        )[0]  # type: ignore[index]

    def _first_predict(self, image: np.ndarray) -> Any:
        """:meth:`_predict`, where an exported model loads: its failures become one-line errors."""
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
        self._check_classes()
        self._ran = True
        return r

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect objects in one (H, W, 3) uint8 BGR image."""
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


def _no_autoinstall() -> None:
    """Switch off Ultralytics' run-time ``pip install`` of missing packages, unless the user set
    ``YOLO_AUTOINSTALL`` (Ultralytics reads it once, at import, into ``checks.AUTOINSTALL``)."""
    if AUTOINSTALL_ENV not in os.environ:
        from ultralytics.utils import checks

        checks.AUTOINSTALL = False


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
