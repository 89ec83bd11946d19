"""This package's embedders as the ReID encoder of Ultralytics' BoT-SORT.

::

    from ultralytics import YOLO
    from mot_dinov3.integrations.ultralytics import register

    register()  # once per process; a second call changes nothing
    YOLO("yolov8n.pt").track("video.mp4", tracker="configs/botsort_dinov2.yaml")

After :func:`register`, a BoT-SORT tracker YAML with ``with_reid: True`` runs our backend when its
``model:`` is one of (see :func:`reid_config`):

* a DINOv2 torch-hub name (``dinov2_vits14`` ... ``dinov2_vitg14_reg``) or any other catalogue name with
  an embedder (``osnet_x0_25_msmt17``, ``dinov3_vits16``, ``clip_vit_b32``; ``mot_dinov3.models.list_models()``);
* a ReID ``.onnx`` file (torchreid / BoxMOT exports: RGB, ImageNet mean/std) or a torchreid OSNet ``.pth``;
* a local Hugging Face folder of a DINOv2 / DINOv3 / CLIP model (its ``config.json`` says which);
* ``mot_dinov3:<embedder>[:<model>]``, e.g. ``mot_dinov3:dino:facebook/dinov2-small``,
  ``mot_dinov3:osnet:/w/osnet.pt``, ``mot_dinov3:mypkg.reid:MyEmbedder`` (any embedder of
  :func:`mot_dinov3.features.factory.available` or ``package.module:Class``, but ``yolo`` and ``none``).

Everything else keeps Ultralytics' own behaviour: ``auto`` (the detector's own features), YOLO ``.pt``
ReID / classification models, Ultralytics' ``yolo26*-reid.onnx`` assets and ONNX files Ultralytics
exported (their metadata names Ultralytics: they expect 0..1 input, not ImageNet statistics), other
exported formats, unknown names (Ultralytics reports them).

Two extra YAML keys are read (Ultralytics ignores them):

* ``return_clstoken`` (default ``True``): DINO pooling, the CLS token (``True``) or the mean of the patch
  tokens (``False``), as in Ultralytics' DINOv2 ReID design;
* ``reid_model_dir`` (default none): a local folder holding the named model, used instead of the
  Hugging Face cache / Hub or the weights folder. For a hub name (``dinov2_vits14``) it is the model's
  ``save_pretrained`` / ``snapshot_download`` folder; for a file entry (``osnet_x0_25_msmt17``) the folder
  that holds its file (``osnet_x0_25_msmt17.pt``). Hub names otherwise load from the Hugging Face cache
  (offline when the Hub does not answer), file entries from :func:`mot_dinov3.models.cache_dir`.

What :func:`register` patches: ``ultralytics.trackers.bot_sort.BOTSORT.__init__``, and nothing else. The
wrapper builds our encoder from the tracker args; when it builds one it runs Ultralytics' ``__init__``
with a copy of the args that says ``with_reid=False`` (so Ultralytics loads no encoder of its own), then
restores ``self.args`` and sets ``self.encoder``; BoT-SORT calls ``self.encoder(img, xywh_boxes)`` in
``init_track`` and reads ``track.smooth_feat`` in ``get_dists`` as it would with its own ``ReID``. Written
against ultralytics 8.4.190 (its ``BOTSORT.__init__`` calls ``trackers.utils.reid.build_encoder``); it
relies only on ``__init__`` building ``self.encoder`` from ``args.with_reid`` / ``args.model`` and
BoT-SORT calling ``self.encoder(img, xywh_boxes)``. Other trackers (Deep OC-SORT, TrackTrack) are left alone.

Library code: logging only, no prints; errors are :class:`~mot_dinov3.errors.UserError` naming parameters.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import Embedder
from mot_dinov3.features.factory import NO_REID, check_name, create_embedder
from mot_dinov3.models.catalogue import hub_model, lookup

log = logging.getLogger(__name__)

PREFIX = "mot_dinov3:"
# Ultralytics' own ReID assets (``REID_ASSETS`` of ultralytics/trackers/utils/reid.py): its path downloads them
ULTRALYTICS_ONNX = frozenset(f"yolo26{k}-reid.onnx" for k in "nsmlx")
# ``model_type`` of a Hugging Face ``config.json`` -> our embedder
HF_MODEL_TYPES = {
    "dinov2": "dino",
    "dinov2_with_registers": "dino",
    "dinov3_vit": "dino",
    "clip": "clip",
    "clip_vision_model": "clip",
}
# the embedders whose model is one file or folder (reid_model_dir applies to them)
SINGLE_MODEL = ("dino", "clip", "onnx", "osnet")
_ORIGINAL = "_mot_dinov3_original"  # attribute of our BOTSORT.__init__ wrapper: the __init__ it replaced


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """(N, 4+) centre boxes ``(cx, cy, w, h, ...)`` as Ultralytics' BoT-SORT passes them -> (N, 4) float32 xyxy."""
    b = np.asarray(xywh, dtype=np.float32)
    b = b.reshape(len(b), -1)[:, :4] if b.size else np.zeros((0, 4), np.float32)
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


class EmbedderReID:
    """Any :class:`~mot_dinov3.features.base.Embedder` as an Ultralytics ReID encoder.

    ``encoder(img, dets)``: ``img`` the (H, W, 3) uint8 BGR frame, ``dets`` (N, 4+) boxes whose first four
    columns are ``(cx, cy, w, h)`` pixels (BoT-SORT's ``xywh`` plus its index column; for oriented boxes
    the angle is ignored) -> (N, D) float32, rows L2-normalised.

    Attributes:
        embedder: the backend.
        dim: D.
        calls: how many times the tracker called it.
        embedded: how many boxes it embedded in all.
    """

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.dim = int(embedder.dim)
        self.calls = 0
        self.embedded = 0

    def __call__(self, img: np.ndarray, dets: np.ndarray) -> np.ndarray:
        self.calls += 1
        if len(dets) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = np.ascontiguousarray(self.embedder.embed(img, xywh_to_xyxy(dets)), dtype=np.float32)
        self.embedded += len(out)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.embedder.name}, dim={self.dim})"


def _located(model: str | None, model_dir: str | os.PathLike[str] | None) -> str | None:
    """Where ``model`` is loaded from: ``model_dir`` when given (for a catalogue file entry, its file
    there), unless ``model`` is an existing path."""
    if model_dir is None or (model and Path(model).expanduser().exists()):
        return model
    folder = Path(model_dir).expanduser()
    entry = lookup(model) if model else None
    return str(folder / entry.file) if entry is not None and entry.file else str(folder)


def _hf_folder_kind(path: Path) -> str | None:
    """``dino`` / ``clip`` for a Hugging Face model folder of those families, else ``None``."""
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return HF_MODEL_TYPES.get(str(model_type))


def reid_config(
    model: Any,
    *,
    return_clstoken: bool = True,
    model_dir: str | os.PathLike[str] | None = None,
    device: Any = None,
    batch_size: int = 32,
) -> EmbedderConfig | None:
    """The embedder a BoT-SORT ``model`` value selects, or ``None`` when it is Ultralytics' to load.

    Args:
        model: the tracker YAML's ``model`` (see the module docstring for what is ours).
        return_clstoken: DINO pooling: CLS token (``True``) or mean of patch tokens (``False``).
        model_dir: a local folder holding the named model (module docstring), or ``None``.
        device: torch device (a ``torch.device`` or a string) or ``None`` (CUDA when available).
        batch_size: crops per forward pass.

    Raises:
        UserError: ``mot_dinov3:`` with an unknown embedder, ``yolo`` or ``none``; a catalogue model no
            embedder here runs.
    """
    if not isinstance(model, (str, os.PathLike)):
        return None
    text = str(model).strip()
    if not text or text == "auto":
        return None
    pooling = "cls" if return_clstoken else "mean"
    dev = None if device is None else str(device)

    def config(name: str, location: str | None) -> EmbedderConfig:
        return EmbedderConfig(name=name, model=location, pooling=pooling, batch_size=batch_size, device=dev)

    if text.startswith(PREFIX):
        name, _, sub = text[len(PREFIX) :].partition(":")
        if "." in name and sub:  # a custom embedder class, package.module:Class
            attr, _, sub = sub.partition(":")
            name = f"{name}:{attr}"
        check_name(name)
        if name in (NO_REID, "yolo"):
            raise UserError(
                f"model={text!r}: the {name!r} embedder cannot be BoT-SORT's ReID encoder; "
                "for the detector's own features use model='auto', for no ReID with_reid=False"
            )
        return config(name, _located(sub or None, model_dir) if name in SINGLE_MODEL else sub or None)
    entry = lookup(text)
    if entry is not None:
        if entry.backend is None:
            raise UserError(f"model={text!r}: no embedder here runs it ({entry.notes or entry.source})")
        if entry.family == "dinov2":
            hf_id, pooling = hub_model(text, return_clstoken)  # the torch-hub name's Hugging Face id and pooling
            return config("dino", _located(text, model_dir) if model_dir is not None else hf_id)
        return config(entry.backend, _located(text, model_dir))
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return None if path.name in ULTRALYTICS_ONNX else config("onnx", text)
    if suffix == ".pth":
        return config("osnet", text)
    if path.is_dir():
        kind = _hf_folder_kind(path)
        if kind is not None:
            return config(kind, text)
    return None


def _exported_by_ultralytics(embedder: Embedder) -> bool:
    """An ONNX model whose metadata names Ultralytics (its exports expect 0..1 RGB, not ImageNet statistics)."""
    meta = getattr(getattr(embedder, "graph", None), "metadata", None)  # OnnxGraph.metadata
    return isinstance(meta, dict) and "ultralytics" in str(meta.get("author", "")).lower()


def build_reid(
    model: Any,
    *,
    return_clstoken: bool = True,
    model_dir: str | os.PathLike[str] | None = None,
    device: Any = None,
    batch_size: int = 32,
) -> EmbedderReID | None:
    """Our ReID encoder for a BoT-SORT ``model`` value (arguments as :func:`reid_config`), or ``None``
    when Ultralytics should load it.

    Raises:
        UserError: what :func:`reid_config` or the backend raises (missing file, model not cached ...),
            the message prefixed with the ``model`` value.
    """
    cfg = reid_config(model, return_clstoken=return_clstoken, model_dir=model_dir, device=device, batch_size=batch_size)
    if cfg is None:
        return None
    try:
        embedder = create_embedder(cfg)
    except UserError as exc:
        raise type(exc)(f"tracker model={str(model)!r}: {exc}") from exc
    if embedder is None:  # reid_config never selects "none"; kept for the type checker
        return None
    text = str(model)
    if not text.startswith(PREFIX) and cfg.name == "onnx" and _exported_by_ultralytics(embedder):
        log.info("model=%r: an Ultralytics ONNX export; Ultralytics' own ReID encoder loads it", text)
        return None
    entry = lookup(text)
    if entry is not None and entry.dim != embedder.dim:
        log.warning(
            "model=%r: expected %d-D embeddings, the model at %r gives %d-D; check reid_model_dir",
            text,
            entry.dim,
            cfg.model,
            embedder.dim,
        )
    log.info("BoT-SORT ReID: model=%r -> mot_dinov3 %s embedder (%s), D=%d", text, cfg.name, cfg.model, embedder.dim)
    return EmbedderReID(embedder)


class DINOv2ReID(EmbedderReID):
    """DINOv2 (or DINOv3) crop embeddings for Ultralytics' BoT-SORT, the interface of Ultralytics' DINOv2
    ReID design: ``DINOv2ReID(model, device, return_clstoken)(img, dets) -> (N, D)`` float32, L2-normalised.

    Args:
        model: a DINOv2 torch-hub name (``dinov2_vits14``, ``dinov2_vitb14``, ``dinov2_vitl14``,
            ``dinov2_vitg14``, ``*_reg``), a DINOv3 catalogue name, a Hugging Face id or a local folder.
        device: torch device (``"cpu"``, ``"cuda"``, a ``torch.device``); ``None``: CUDA when available.
        return_clstoken: the CLS token (``True``, faster to read) or the mean of the patch tokens (``False``).
        model_dir: a local folder holding the named model (its ``save_pretrained`` folder), used instead
            of the Hugging Face cache / Hub.
        batch_size: crops per forward pass.

    Raises:
        UserError: a catalogue model that is not DINO, or the model cannot be loaded (not cached and the
            Hub unreachable, gated, not found).
    """

    def __init__(
        self,
        model: str = "dinov2_vits14",
        device: Any = "cpu",
        return_clstoken: bool = True,
        model_dir: str | os.PathLike[str] | None = None,
        batch_size: int = 32,
    ):
        text = str(model)
        entry = lookup(text)
        if entry is not None and entry.backend != "dino":
            raise UserError(
                f"model={text!r}: not a DINO model (it runs with embedder={entry.backend!r}); "
                "use build_reid(model) or EmbedderReID for it"
            )
        location = _located(text, model_dir)
        if entry is not None and entry.family == "dinov2" and model_dir is None:
            location = hub_model(text, return_clstoken)[0]
        cfg = EmbedderConfig(
            name="dino",
            model=location,
            pooling="cls" if return_clstoken else "mean",
            batch_size=batch_size,
            device=None if device is None else str(device),
        )
        embedder = create_embedder(cfg)
        assert embedder is not None  # "dino" always builds one
        super().__init__(embedder)


def _encoder_for(args: Any) -> EmbedderReID | None:
    """Our encoder for a BoT-SORT args namespace, or ``None`` (ReID off, or Ultralytics' model)."""
    if not getattr(args, "with_reid", False):
        return None
    return build_reid(
        getattr(args, "model", "auto"),
        return_clstoken=bool(getattr(args, "return_clstoken", True)),
        model_dir=getattr(args, "reid_model_dir", None),
        device=getattr(args, "device", None),
    )


def _botsort() -> Any:
    from ultralytics.trackers.bot_sort import BOTSORT

    return BOTSORT


def is_registered() -> bool:
    """Whether :func:`register` has patched Ultralytics' BoT-SORT in this process."""
    return hasattr(_botsort().__init__, _ORIGINAL)


def register() -> bool:
    """Make Ultralytics' BoT-SORT use our embedders for the ``model`` values of the module docstring.

    Replaces ``ultralytics.trackers.bot_sort.BOTSORT.__init__`` with a wrapper (see the module docstring);
    every ``YOLO(...).track(tracker=...)`` with ``tracker_type: botsort`` built afterwards goes through it.
    Idempotent.

    Returns:
        ``True`` when it patched now, ``False`` when it was already registered.
    """
    cls = _botsort()
    original: Callable[..., None] = cls.__init__
    if hasattr(original, _ORIGINAL):
        return False

    @functools.wraps(original)
    def __init__(self: Any, args: Any) -> None:
        encoder = _encoder_for(args)
        if encoder is None:
            original(self, args)
            return
        plain = copy.copy(args)
        plain.with_reid = False  # Ultralytics' __init__ then loads no encoder of its own
        original(self, plain)
        self.args = args
        self.encoder = encoder

    setattr(__init__, _ORIGINAL, original)
    cls.__init__ = __init__
    log.info("registered mot_dinov3 ReID encoders with ultralytics BOTSORT")
    return True


def unregister() -> bool:
    """Undo :func:`register` (trackers built before keep their encoders); whether it was registered."""
    cls = _botsort()
    original = getattr(cls.__init__, _ORIGINAL, None)
    if original is None:
        return False
    cls.__init__ = original
    return True
