"""Run configuration: one dataclass per stage, filled by the CLI (or by Python callers).

Every stage takes its own config and nothing else, so a stage can be built and tested alone.
Tracker thresholds can also come from a YAML file whose keys reuse the BoT-SORT / Ultralytics names
(``track_high_thresh``, ``track_buffer``, ``appearance_thresh`` ...); see ``configs/default.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from mot_dinov3.errors import MissingFileError, UserError

DEFAULT_DINO_MODEL = "facebook/dinov3-vitb16-pretrain-lvd1689m"
OPEN_FALLBACK_MODEL = "facebook/dinov2-base"
DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"
# an embedding of a box overlapping another detection above this IoU mixes two objects: it is matched
# with, but never enters a track's memory (tracker) nor is kept as a look to embed later (scheduler)
CLEAN_OVERLAP_IOU = 0.3
MAX_IMGSZ = 4096


@dataclass(frozen=True)
class Range:
    """The values one config field accepts.

    Attributes:
        kind: ``int``, ``float`` (an int is accepted) or ``bool``; a bool is not a number, nor is a string.
        lo, hi: inclusive bounds (``None``: unbounded); numbers must be finite.
        lo_open: ``lo`` itself is excluded.
        optional: ``None`` is accepted (the field's "not set").
        why: the reason for a bound, added to the message.
    """

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    optional: bool = False
    why: str = ""

    def describe(self) -> str:
        """``a number in [0, 1]``, ``an integer >= 1``, ``true or false``."""
        if self.kind is bool:
            return "true or false"
        what = "an integer" if self.kind is int else "a number"
        if self.lo is not None and self.hi is not None:
            return f"{what} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        if self.lo is not None:
            return f"{what} {'>' if self.lo_open else '>='} {self.lo:g}"
        return f"{what} <= {self.hi:g}" if self.hi is not None else f"a finite {what.split()[-1]}"


def check_range(name: str, value: object, rule: Range) -> None:
    """Check one value against its :class:`Range`.

    Raises:
        UserError: ``name=value: must be a number in [lo, hi]`` (the type, a NaN / infinity, or a bound).
    """
    if value is None and rule.optional:
        return
    if rule.kind is bool:
        ok = isinstance(value, bool)
    else:
        wanted = numbers.Integral if rule.kind is int else numbers.Real
        ok = isinstance(value, wanted) and not isinstance(value, bool)
        if ok:
            v = float(value)  # type: ignore[arg-type]
            if not math.isfinite(v):
                raise UserError(f"{name}={value!r}: not a finite number; must be {rule.describe()}")
            ok = (rule.lo is None or v > rule.lo or (v == rule.lo and not rule.lo_open)) and (
                rule.hi is None or v <= rule.hi
            )
    if not ok:
        why = f" ({rule.why})" if rule.why else ""
        raise UserError(f"{name}={value!r}: must be {rule.describe()}{why}")


def check_fields(config: Any) -> None:
    """Check every field of ``config`` named in its class's ``RANGES`` (see :func:`check_range`)."""
    for name, rule in type(config).RANGES.items():
        check_range(name, getattr(config, name), rule)


def check_device(name: str, device: str | None, here: bool = False) -> None:
    """A torch device string (``None``: the default, always fine); with ``here``, one this machine has.

    Raises:
        UserError: not a cpu / cuda / mps device string, or (``here``) a CUDA / MPS device this
            machine does not have.
    """
    if device is None:
        return
    import torch

    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        d = None
    if d is None or d.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{name}={device!r}: not a device; use 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if not here:
        return
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (d.index or 0) >= n:
            have = f"this machine has cuda:0 to cuda:{n - 1}" if n else "no CUDA GPU is available"
            raise UserError(f"{name}={device!r}: {have}; use {name}='cpu' or a GPU it has")
    if d.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{name}={device!r}: Apple MPS is not available here; use {name}='cpu'")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raises UserError naming ``name`` when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise UserError(f"{name}={value!r}: expected one of {', '.join(choices)}")


DET_RUNTIMES = ("auto", "torch", "openvino", "onnx", "tensorrt")
DET_PRECISIONS = ("auto", "fp32", "fp16", "int8")
EMBED_RUNTIMES = ("auto", "openvino", "onnxruntime", "torch")
_UNIT = Range(float, 0.0, 1.0)  # thresholds, IoUs, confidences, EMA weights
_COSINE = Range(float, 0.0, 2.0)  # cosine distances
_COUNT = Range(int, 0.0)  # frames, samples


@dataclass
class DetectorConfig:
    """Ultralytics YOLO detector settings.

    Attributes:
        model: weights file, exported model folder (e.g. OpenVINO) or an official name (``yolov8n.pt``).
        conf: minimum detection confidence in [0, 1].
        imgsz: inference size in pixels (long side).
        classes: COCO class ids to keep; ``None`` keeps all.
        device: torch device string (``"cpu"``, ``"cuda:0"``); ``None`` lets Ultralytics choose.
        capture_features: also return the Detect head's input features per detection (``--embedder yolo``).
        runtime: how a ``.pt`` detector runs (:mod:`mot_dinov3.det_export`): ``"torch"``, or exported once
            by Ultralytics and cached: ``"openvino"``, ``"onnx"`` (ONNX Runtime), ``"tensorrt"``;
            ``"auto"``: OpenVINO on a CPU where the ``openvino`` package is installed, else PyTorch.
            Exported models (``*_openvino_model/``, ``.onnx``, ``.engine``) run on their own runtime.
        precision: ``"fp32"``, ``"fp16"`` (PyTorch runs ``half`` on CUDA and bf16 autocast on a CPU
            with AMX; exports are FP16), ``"int8"`` (OpenVINO, calibrated on ``calib``) or ``"auto"``:
            FP16 on CUDA, for an OpenVINO export on a CPU (which OpenVINO runs in bf16 on AMX /
            AVX512-BF16 CPUs, FP32 elsewhere) and for PyTorch on an AMX CPU, FP32 otherwise
            (:func:`mot_dinov3.det_export.resolve_precision`); ``"fp32"`` gives PyTorch's FP32 boxes.
        calib: INT8 calibration frames: a video, MOTChallenge sequence or image folder (the CLI passes
            the tracked source unless ``det_calib`` is given).
    """

    model: str = "yolov8n.pt"
    conf: float = 0.1
    imgsz: int = 960
    classes: list[int] | None = None
    device: str | None = None
    capture_features: bool = False
    runtime: str = "auto"
    precision: str = "auto"
    calib: str | None = None

    RANGES: ClassVar[dict[str, Range]] = {
        "conf": _UNIT,
        "imgsz": Range(int, 32, MAX_IMGSZ, why=f"pixels; above {MAX_IMGSZ} one frame needs gigabytes"),
    }

    def __post_init__(self) -> None:
        check_fields(self)
        for c in self.classes or []:
            check_range("classes", c, Range(int, 0))
        check_device("device", self.device)
        check_choice("det_runtime", self.runtime, DET_RUNTIMES)
        check_choice("det_precision", self.precision, DET_PRECISIONS)


@dataclass
class EmbedderConfig:
    """Appearance embedding backend settings.

    Attributes:
        name: backend name from :func:`mot_dinov3.features.factory.available` (``dino``, ``clip``, ``onnx``, ``yolo``).
        model: model id or path for the backend (for ``dino`` and ``clip``: a Hugging Face id or a local folder).
        fallback_open: ``dino`` only: switch to ``facebook/dinov2-base`` when the model is gated,
            unsupported by the installed transformers, or unreachable.
        pooling: ``dino`` only: ``"cls"`` (CLS token) or ``"mean"`` (mean of patch tokens).
        crop_pad: fraction of the box width/height added on each side before cropping; ``None``: the
            backend's own default (:func:`mot_dinov3.features.base.crop_policy`: 0 for ``onnx`` ReID models,
            0.12 for ``dino`` and ``clip``).
        crop_square: expand each crop to the model input's aspect ratio (square for ViTs) instead of
            stretching the box when it is resized; ``None``: the backend's default (off for ``onnx``, on
            for ``dino`` and ``clip``).
        batch_size: crops per forward pass.
        device: torch device for torch backends (``None``: CUDA when available, else CPU).
        runtime: what runs an ONNX ReID network (the ``onnx`` backend's file, ``osnet``'s weights exported
            to ONNX in memory): ``"openvino"`` (FP32), ``"onnxruntime"``, ``"torch"`` (``osnet`` only) or
            ``"auto"``: onnxruntime on CUDA where it has its CUDA provider, else OpenVINO where installed,
            else onnxruntime (:func:`mot_dinov3.features.onnx.graph_runtime`). The other backends run in
            PyTorch.
    """

    name: str = "dino"
    model: str | None = None
    fallback_open: bool = False
    pooling: str = "cls"
    crop_pad: float | None = None
    crop_square: bool | None = None
    batch_size: int = 32
    device: str | None = None
    runtime: str = "auto"

    RANGES: ClassVar[dict[str, Range]] = {
        "crop_pad": Range(float, 0.0, 1.0, optional=True),
        "batch_size": Range(int, 1),
    }

    def __post_init__(self) -> None:
        check_fields(self)
        check_device("device", self.device)
        check_choice("embed_runtime", self.runtime, EMBED_RUNTIMES)


@dataclass
class SchedulerConfig:
    """Embedding scheduler settings (see :mod:`mot_dinov3.scheduler`).

    Attributes:
        refresh_every: refresh rules: a stable track's embedding is due for refresh when it is this many
            frames old: lower refreshes more often (closer to ``embed_all``), higher saves embeddings
            (``benchmarks/scheduler.py`` measures the trade).
        iou_gate: a detection whose best IoU with the active tracks' predicted boxes is below this
            is critical (weak continuity).
        overlap_thr: a detection whose IoU with another detection, with a second track's predicted box or
            with a lost track's predicted box is above this is critical (crowded / near_lost).
        budget_ms: per-frame milliseconds for refresh work; 0 means unlimited. Critical work ignores it.
        embed_all: compute every detection's embedding every frame (the baseline, scheduling off).
        ema_alpha: weight of the newest call in the moving fit of the embedder's cost per call and its
            deviation, which ``budget_ms`` admits refreshes against
            (:class:`mot_dinov3.scheduler.runner.CallCost`).
        lazy: lazy memory (``--embed-lazy``, the default rules): no periodic refresh; a track's clean looks
            are kept as crops and embedded only when its memory is about to be read (see
            :func:`mot_dinov3.scheduler.lazy.plan_lazy`); ``refresh_every``, ``iou_gate`` and ``budget_ms``
            do not apply. ``False`` selects the refresh rules (``--no-embed-lazy``,
            :func:`mot_dinov3.scheduler.plan.plan_actions`). ``None`` (default): lazy memory when the
            backend can embed buffered crops (dino, clip, onnx, osnet), the refresh rules otherwise (yolo). Lazy
            memory is the default because it computes only what the association reads, at a small
            identity cost against ``embed_all`` (``docs/benchmarks.md``).
        contest_iou: lazy: track-detection pairs above this IoU are candidates; a detection whose group of
            candidates holds a second detection or track is critical (contested), one with no candidate
            is critical (weak continuity). 0.4 is where appearance enters the fused cost
            (``1 - proximity_thresh``).
        near_lost_frames: lazy: only tracks lost at most this many frames make a nearby box near_lost...
        near_lost_new_frames: lazy: ... except for a box whose track started at most this many frames ago:
            every lost track's predicted box counts, however long lost, and a far look does not clear
            the pair. A person back from a long occlusion is often first seen half hidden, too unlike
            the lost track's memory to be re-identified, and starts a new track; the next looks, once
            computed, can hand the box back to the lost track.
        near_lost_clear: lazy: cosine distance; a near_lost box embedded farther than this from a lost
            track's memory clears the pair (its track, that lost track): the box is not near_lost again
            for ``near_lost_clear_frames`` frames (it is still computed when contested). 0.3 is the
            tracker's ``reid_motion_thresh``, its loosest re-identification threshold: farther than it,
            neither the first association nor re-identification gives the lost track the box.
        near_lost_clear_frames: lazy: frames a cleared pair stays cleared before it is checked again.
        lazy_samples: lazy: clean looks kept per track (the newest) and embedded into its memory.
        lazy_spacing: lazy: frames between two kept looks of one track.
        lazy_window: lazy: kept looks older than this many frames are dropped.
        look_overlap_thr: lazy: a look is clean (kept) when its box overlaps no other detection above this
            IoU; :meth:`derived` sets it to :data:`CLEAN_OVERLAP_IOU`.
    """

    refresh_every: int = 2
    iou_gate: float = 0.6
    overlap_thr: float = 0.2
    budget_ms: float = 0.0
    embed_all: bool = False
    ema_alpha: float = 0.3
    lazy: bool | None = None
    contest_iou: float = 0.4
    near_lost_frames: int = 5
    near_lost_new_frames: int = 10
    near_lost_clear: float = 0.3
    near_lost_clear_frames: int = 10
    lazy_samples: int = 3
    lazy_spacing: int = 3
    lazy_window: int = 15
    look_overlap_thr: float = 0.3

    RANGES: ClassVar[dict[str, Range]] = {
        "refresh_every": Range(int, 1),
        "iou_gate": _UNIT,
        "overlap_thr": _UNIT,
        "budget_ms": Range(float, 0.0),
        "ema_alpha": _UNIT,
        "contest_iou": _UNIT,
        "near_lost_frames": _COUNT,
        "near_lost_new_frames": _COUNT,
        "near_lost_clear": _COSINE,
        "near_lost_clear_frames": _COUNT,
        "lazy_samples": _COUNT,
        "lazy_spacing": _COUNT,
        "lazy_window": _COUNT,
        "look_overlap_thr": _UNIT,
    }

    def __post_init__(self) -> None:
        check_fields(self)

    def derived(self, tracker: TrackerConfig) -> SchedulerConfig:
        """This config with the thresholds that mirror the tracker's set from it: ``contest_iou`` (where
        appearance enters the fused cost, ``1 - proximity_thresh``), ``near_lost_clear`` (the loosest
        re-identification threshold) and ``look_overlap_thr`` (:data:`CLEAN_OVERLAP_IOU`: only looks
        the tracker would keep may enter a memory)."""
        return dataclasses.replace(
            self,
            contest_iou=1.0 - tracker.proximity_thresh,
            look_overlap_thr=CLEAN_OVERLAP_IOU,
            near_lost_clear=max(tracker.reid_thresh, tracker.reid_motion_thresh),
        )


@dataclass
class TrackerConfig:
    """Tracker thresholds. Key names follow BoT-SORT / Ultralytics ``botsort.yaml``.

    Attributes:
        track_high_thresh: detections at or above this confidence take part in the first association,
            re-identification and births.
        track_low_thresh: detections between this and ``track_high_thresh`` take part in the second,
            IoU-only association (ByteTrack, arXiv 2110.06864); below it they are dropped.
        new_track_thresh: an unmatched detection within re-identification reach of a lost track starts a
            track only at or above this confidence (it may be that object back); elsewhere every unmatched
            high-score detection starts one.
        track_buffer: frames a lost track is kept for re-identification, at 30 fps; scaled by the real fps.
        match_thresh: maximum fused cost for a first-stage match (1 - IoU x confidence units, BoT-SORT's
            ``fuse_score``).
        proximity_thresh: appearance is only trusted for pairs with IoU above ``1 - proximity_thresh``.
        appearance_thresh: appearance is only trusted for pairs with cosine distance below this; a track
            that missed frames is only matched again below it (when both embeddings are known).
        reid_thresh: maximum cosine distance for re-identifying a lost track from appearance alone, with
            the box centre at most ``reid_max_dist`` image widths from its last observation.
        reid_max_dist: that distance, as a fraction of the image width (the re-identification reach).
        reid_motion_thresh: a re-identification up to this cosine distance is accepted too when the box
            centre lies inside the lost track's Kalman gate (squared Mahalanobis distance to the predicted
            centre at most 9.21, the chi-square 99% quantile for 2 degrees of freedom; DeepSORT's gated
            appearance metric, arXiv 1703.07402). Its uncertainty grows with the frames it is lost;
            at or below ``reid_thresh`` this never applies.
        gmc_method: camera motion compensation, ``sparseOptFlow``, ``ecc`` or ``none``
            (:mod:`mot_dinov3.gmc`); a static camera is detected and left uncorrected.
        min_hits: matches before a tentative track is confirmed (frame 1, or 1, confirms at once).
        score_reference: the 75th-percentile detection score of a clear scene: while the video's recent
            scores sit lower (a small detector, a crowd, small people), every score is divided by
            ``q75 / score_reference`` before the thresholds above see it (:mod:`mot_dinov3.scores`);
            reported confidences stay the detector's. 0 uses the raw scores.
        alpha: EMA factor for a track's embedding: ``e = alpha * e + (1 - alpha) * new`` (BoT-SORT's 0.9).
        use_hungarian: optimal assignment (``scipy.optimize.linear_sum_assignment``); else greedy.
    """

    track_high_thresh: float = 0.35
    track_low_thresh: float = 0.1
    new_track_thresh: float = 0.6
    track_buffer: int = 150
    match_thresh: float = 0.7
    proximity_thresh: float = 0.6
    appearance_thresh: float = 0.25
    reid_thresh: float = 0.22
    reid_max_dist: float = 0.15
    reid_motion_thresh: float = 0.3
    gmc_method: str = "sparseOptFlow"
    min_hits: int = 2
    score_reference: float = 0.8
    alpha: float = 0.9
    use_hungarian: bool = True

    RANGES: ClassVar[dict[str, Range]] = {
        "track_high_thresh": _UNIT,
        "track_low_thresh": _UNIT,
        "new_track_thresh": _UNIT,
        "track_buffer": _COUNT,
        "match_thresh": _UNIT,
        "proximity_thresh": _UNIT,
        "appearance_thresh": _COSINE,
        "reid_thresh": _COSINE,
        "reid_max_dist": Range(float, 0.0),
        "reid_motion_thresh": _COSINE,
        "min_hits": _COUNT,
        "score_reference": _UNIT,
        "alpha": _UNIT,
        "use_hungarian": Range(bool),
    }

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrackerConfig:
        """Load a tracker config; unknown keys are an error so typos do not pass silently.

        Raises:
            UserError: the file is missing, is not a YAML mapping, or has unknown keys.
        """
        p = Path(path)
        if not p.is_file():
            raise MissingFileError(
                f"tracker config not found: tracker_config={str(p)!r}; pass a YAML file of tracker thresholds "
                "(see configs/default.yaml)"
            )
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"tracker config {p} is not valid YAML ({exc.__class__.__name__}); fix the file") from exc
        if not isinstance(data, dict):
            raise UserError(f"tracker config {p} must be a mapping of key: value")
        known = {f.name for f in dataclasses.fields(cls)}
        data.pop("tracker_type", None)  # accepted for Ultralytics-style files
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"tracker config {p}: unknown keys {unknown}; valid keys are {sorted(known)}")
        try:
            return cls(**data)
        except UserError as exc:  # a value of the wrong type or out of range
            raise UserError(f"tracker config {p}: {exc}") from exc


@dataclass
class OutputConfig:
    """Where results go and how the video is drawn.

    Attributes:
        video: annotated video path (``.mp4``, ``.m4v``, ``.mov``, ``.mkv`` or ``.avi``); ``None`` writes no video.
        mot_txt: MOTChallenge txt path or ``None``.
        json: run-summary JSON path or ``None``.
        fps: output video fps; ``None`` uses the source fps.
        draw_lost: also draw lost tracks (at their predicted box).
        line_thickness: box line thickness in pixels; ``None`` scales with the image size.
        font_scale: label font scale; ``None`` scales with the image size.
        progress: show a tqdm progress bar.
        codec: the video's codec, one of :attr:`CODECS`: ``"auto"`` is H.264 through PyAV (browsers play it)
            except MJPG in ``.avi``, and OpenCV ``mp4v`` with a notice where PyAV has no H.264 encoder.
        report: HTML report page path (``.html``) or ``None``.
    """

    video: str | None = "outputs/tracked.mp4"
    mot_txt: str | None = None
    json: str | None = None
    fps: float | None = None
    draw_lost: bool = False
    line_thickness: int | None = None
    font_scale: float | None = None
    progress: bool = True
    codec: str = "auto"
    report: str | None = None

    CODECS: ClassVar[tuple[str, ...]] = ("auto", "h264", "mp4v", "mjpg")  # mot_dinov3.video.resolve_codec
    RANGES: ClassVar[dict[str, Range]] = {
        "fps": Range(float, 0.0, 1000.0, lo_open=True, optional=True),
        "line_thickness": Range(int, 1, 50, optional=True),
        "font_scale": Range(float, 0.0, 10.0, lo_open=True, optional=True),
    }

    def __post_init__(self) -> None:
        check_fields(self)
        if self.codec not in self.CODECS:
            raise UserError(f"codec={self.codec!r}: unknown; use one of {', '.join(self.CODECS)}")


@dataclass
class RunConfig:
    """Everything one tracking run needs."""

    source: str | Iterable[Any]  # a path (video, sequence folder, image folder) or any iterable of BGR images
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    max_frames: int | None = None

    RANGES: ClassVar[dict[str, Range]] = {"max_frames": Range(int, 1, optional=True)}

    def __post_init__(self) -> None:
        check_fields(self)
