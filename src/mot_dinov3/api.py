"""The Python API: :class:`MultiObjectTracker` for detections from any detector, :func:`track` and
:func:`iter_track` for the whole main job (detector included) on a video or sequence.

``MultiObjectTracker.update(dets, frame)`` owns one frame's handshake: camera motion and the Kalman
prediction (:meth:`Tracker.predict`), the association's gates (:class:`~mot_dinov3.gating.Gating`),
the embedding scheduler's plan and run (:class:`~mot_dinov3.scheduler.EmbeddingScheduler`), the
looks it embedded into the tracks' memories (:meth:`Tracker.update_appearance`) and the association
(:meth:`Tracker.update`). It returns BoxMOT's layout, so code written for ``boxmot`` trackers runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mot_dinov3.config import EmbedderConfig, SchedulerConfig, TrackerConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import Embedder
from mot_dinov3.features.factory import create_embedder
from mot_dinov3.gating import Gating
from mot_dinov3.gmc import CameraMotion
from mot_dinov3.scheduler import EmbeddingScheduler
from mot_dinov3.scores import ScoreNormaliser
from mot_dinov3.track import TrackOutput, TrackState, TrackView
from mot_dinov3.tracker import Tracker

if TYPE_CHECKING:
    from mot_dinov3.profiling import RunSummary

SCHEDULERS = ("lazy", "refresh", "all")


@dataclass
class TrackerStats:
    """Counters of a :class:`MultiObjectTracker` since it was built or reset.

    Attributes:
        frames: frames updated.
        embeddings_computed: embeddings computed (buffered looks included).
        embeddings_reused: detections served a track's cached embedding.
        ms: wall time per stage, ms in total: ``embed`` (gates, plan and embedding) and ``track``
            (camera motion, prediction and association).
    """

    frames: int = 0
    embeddings_computed: int = 0
    embeddings_reused: int = 0
    ms: dict[str, float] = field(default_factory=lambda: {"embed": 0.0, "track": 0.0})


def _tracker_config(value: TrackerConfig | str | Path | None) -> TrackerConfig:
    if value is None:
        return TrackerConfig()
    if isinstance(value, TrackerConfig):
        return value
    return TrackerConfig.from_yaml(value)


def _scheduler_config(value: str | SchedulerConfig | None, options: dict[str, Any]) -> SchedulerConfig:
    if isinstance(value, SchedulerConfig):
        return replace(value, **options)
    if value is not None and value not in SCHEDULERS:
        raise UserError(
            f"scheduler {value!r}: unknown; use one of {', '.join(SCHEDULERS)} (or None: lazy memory "
            "where the embedder can buffer crops)"
        )
    known = {f for f in SchedulerConfig.__dataclass_fields__}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"scheduler options {unknown}: unknown; valid options are {sorted(known)}")
    lazy = {"lazy": True, "refresh": False}.get(value or "", None)
    return SchedulerConfig(**{"lazy": lazy, "embed_all": value == "all", **options})


class MultiObjectTracker:
    """Track detections from any detector, with scheduled appearance embeddings.

    Args:
        embedder: a backend name (``onnx``, ``dino``, ``clip``, ``yolo``), an
            :class:`~mot_dinov3.features.base.Embedder` instance, or ``None`` / ``"none"`` for motion only.
        embed_model: the backend's model (``onnx``: path of the ``.onnx`` file; ``dino`` / ``clip``: a
            Hugging Face id or local folder).
        tracker_config: a :class:`~mot_dinov3.config.TrackerConfig`, the path of a tracker YAML
            (``configs/default.yaml``), or ``None`` for the defaults.
        scheduler: ``"lazy"`` (lazy memory), ``"refresh"`` (the refresh rules), ``"all"`` (every
            embedding, no scheduling), a :class:`~mot_dinov3.config.SchedulerConfig`, or ``None``: lazy
            memory where the embedder can buffer crops, else the refresh rules.
        device: torch device for the embedder (``None``: CUDA when available).
        embed_runtime: what runs an ONNX ReID network (``EmbedderConfig.runtime``: ``"auto"``,
            ``"openvino"``, ``"onnxruntime"``, ``"torch"``).
        fps: the source frame rate (``track_buffer`` is given at 30 fps and scaled by it).
        **scheduler_options: :class:`~mot_dinov3.config.SchedulerConfig` fields, e.g. ``budget_ms=20``.

    Raises:
        UserError (a ``ValueError``): an unknown embedder, scheduler, option or ``embed_runtime``, or a
            model that cannot be loaded; ``FileNotFoundError`` subclasses for missing files.
    """

    def __init__(
        self,
        embedder: str | Embedder | None = "onnx",
        embed_model: str | None = None,
        tracker_config: TrackerConfig | str | Path | None = None,
        scheduler: str | SchedulerConfig | None = None,
        device: str | None = None,
        fps: float = 30.0,
        embed_runtime: str = "auto",
        **scheduler_options: Any,
    ):
        self.tracker_config = _tracker_config(tracker_config)
        sched = _scheduler_config(scheduler, scheduler_options)
        if isinstance(embedder, str):
            cfg = EmbedderConfig(name=embedder, model=embed_model, device=device, runtime=embed_runtime)
            embedder = create_embedder(cfg)
        self.embedder: Embedder | None = embedder  # None: "none", motion only
        free = bool(embedder and embedder.cost_free)  # embeddings come with the detections: compute them all
        self.scheduler_config = replace(sched, embed_all=sched.embed_all or free).derived(self.tracker_config)
        self.fps = fps
        self.gating = Gating(self.tracker_config)
        self.reset()

    def reset(self) -> None:
        """Forget every track, the scheduler's state and the counters (start a new video)."""
        self._tracker = Tracker(self.tracker_config, fps=self.fps)
        self._camera = CameraMotion(self.tracker_config.gmc_method)
        self._scores = ScoreNormaliser(self.tracker_config.score_reference)
        self._scheduler = EmbeddingScheduler(self.scheduler_config, self.embedder) if self.embedder else None
        self.embedded_now: set[int] = set()
        self.stats = TrackerStats()

    @property
    def lazy(self) -> bool:
        """Lazy memory runs (not the refresh rules, not every embedding)."""
        return bool(self._scheduler and self._scheduler.lazy)

    @property
    def tracks(self) -> list[TrackView]:
        """Read-only views of every track (tentative, confirmed, lost) after the last update."""
        return self._tracker.views()

    def update(self, dets: np.ndarray, frame: np.ndarray, feats: np.ndarray | None = None) -> np.ndarray:
        """Track one frame's detections.

        Args:
            dets: (N, 6) float ``[x1, y1, x2, y2, conf, cls]``, pixels; N may be 0.
            frame: (H, W, 3) uint8 BGR image the detections are from.
            feats: (N, C) float32 detector features per detection (the ``yolo`` embedder only).

        Returns:
            (M, 8) float32 ``[x1, y1, x2, y2, track_id, conf, cls, det_index]``: the confirmed tracks
            matched this frame (their Kalman-filtered boxes), ``det_index`` the row of ``dets``.

        Rows that cannot be tracked are dropped, without an error: a NaN or infinite value (in the box,
        the confidence or the class), or an empty box (``x2 <= x1`` or ``y2 <= y1``). Boxes partly or
        wholly outside the frame are kept (crops are clipped to it) and confidences are used as given
        (below ``track_low_thresh`` a box is ignored, above 1 it counts as high).

        Raises:
            UserError: ``dets`` is not (N, 6) or ``frame`` is not an (H, W, 3) image.
        """
        dets = np.asarray(dets, np.float32)
        if dets.size == 0:
            dets = dets.reshape(0, 6)
        if dets.ndim != 2 or dets.shape[1] != 6:
            raise UserError(f"dets of shape {dets.shape}: expected (N, 6) [x1, y1, x2, y2, conf, cls]")
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
            raise UserError(f"frame of shape {getattr(frame, 'shape', None)}: expected an (H, W, 3) uint8 BGR image")
        # NaN / inf or empty boxes cannot be tracked (NaN tracks, singular Kalman gates, empty crops): drop them
        keep = np.flatnonzero(np.isfinite(dets).all(axis=1) & (dets[:, 2] > dets[:, 0]) & (dets[:, 3] > dets[:, 1]))
        d = dets[keep]
        kept_feats = None if feats is None else np.asarray(feats)[keep]
        out = self.step(d[:, :4], d[:, 4], d[:, 5].astype(np.int64), frame, kept_feats)
        rows = [[*o.xyxy, o.track_id, o.conf, o.cls, keep[o.det_index]] for o in out if o.state == TrackState.CONFIRMED]
        return np.array(rows, np.float32).reshape(-1, 8)

    def update_with_detections(self, detections: Any, frame: np.ndarray) -> Any:
        """:meth:`update` for a ``supervision.Detections`` (the roboflow ``trackers`` / ``supervision``
        ByteTrack convention; needs ``pip install supervision``).

        Args:
            detections: ``sv.Detections`` with ``xyxy`` (N, 4) pixels, ``confidence`` (N,) and ``class_id``
                (N,) (missing confidences count as 1, missing classes as 0).
            frame: (H, W, 3) uint8 BGR image.

        Returns:
            The tracked subset of ``detections`` (confirmed tracks matched this frame, in track order),
            with ``tracker_id`` set and ``xyxy`` the tracks' Kalman-filtered boxes.

        Raises:
            UserError: supervision is not installed.
        """
        try:
            import supervision  # noqa: F401
        except ImportError as exc:
            raise UserError("update_with_detections needs supervision: pip install supervision") from exc
        n = len(detections)
        conf = np.ones(n, np.float32) if detections.confidence is None else detections.confidence
        cls = np.zeros(n, np.float32) if detections.class_id is None else detections.class_id
        out = self.update(np.c_[detections.xyxy, conf, cls].reshape(n, 6), frame)
        tracked = detections[out[:, 7].astype(int)]
        tracked.xyxy = out[:, :4].astype(np.float32)
        tracked.tracker_id = out[:, 4].astype(int)
        return tracked

    def step(
        self,
        xyxy: np.ndarray,
        conf: np.ndarray,
        cls: np.ndarray,
        image: np.ndarray,
        feats: np.ndarray | None = None,
        include_lost: bool = False,
    ) -> list[TrackOutput]:
        """:meth:`update` on separate arrays, returning :class:`~mot_dinov3.track.TrackOutput` (lost tracks
        too with ``include_lost``).

        Args:
            xyxy: (N, 4) float32 boxes, pixels.
            conf: (N,) float32 confidences; the thresholds see them relative to the video's score
                distribution (``TrackerConfig.score_reference``), outputs of matched tracks carry them
                as given (a lost track: the last score the tracker used).
            cls: (N,) int64 class ids.
            image: (H, W, 3) uint8 BGR.
            feats: (N, C) float32 detector features, or ``None``.
            include_lost: also report lost tracks (at their predicted box).
        """
        t0 = time.perf_counter()
        raw, conf = np.asarray(conf), self._scores(conf)  # scores relative to the video's: what the thresholds see
        warp = self._camera.estimate(image)
        views = self._tracker.predict(None if self._camera.method == "none" else warp)
        t1 = time.perf_counter()
        emb = None
        h, w = image.shape[:2]
        if self._scheduler is not None:
            cfg = self.scheduler_config
            wanted = self.gating.reads_embedding(conf)
            reach = None if cfg.embed_all else self.gating.reid_reach(views, xyxy, w)
            plan = self._scheduler.plan(self._tracker.frame, xyxy, views, wanted, reach)
            emb = self._scheduler.run(plan, image, xyxy, feats)
        t2 = time.perf_counter()
        if emb is not None:
            for tid, (seen, looks) in emb.memory.items():  # lazy memory: buffered looks, read this frame
                self._tracker.update_appearance(tid, seen, looks)
        out = self._tracker.update(
            xyxy,
            conf,
            cls,
            (w, h),
            None if emb is None else emb.vectors,
            None if emb is None else emb.known,
            None if emb is None else emb.computed,
            include_lost=include_lost,
        )
        if self._scores.scale < 1.0:  # report the detector's own score
            out = [o if o.det_index < 0 else replace(o, conf=float(raw[o.det_index])) for o in out]
        t3 = time.perf_counter()
        self.embedded_now = {o.track_id for o in out if o.embedded_now}
        s = self.stats
        s.frames += 1
        if self._scheduler is not None:
            s.embeddings_computed, s.embeddings_reused = self._scheduler.computed_total, self._scheduler.reused_total
        s.ms["track"] += (t1 - t0 + t3 - t2) * 1000.0
        s.ms["embed"] += (t2 - t1) * 1000.0
        return out

    @property
    def scheduler(self) -> EmbeddingScheduler | None:
        """The embedding scheduler (``None`` without an embedder): counters, decisions, refresh times."""
        return self._scheduler


def track(source: str | Path | Iterable[np.ndarray], **options: Any) -> RunSummary:
    """The CLI's main job from Python: detect, track and write the outputs asked for.

    Args:
        source: a video file, a MOTChallenge sequence folder, a folder of images, or any iterable of
            (H, W, 3) uint8 BGR images (their frame rate: ``fps``, default 30).
        **options: the CLI's flags as keywords, dashes as underscores, with the same defaults
            (``det="yolov8n.pt"``, ``embedder="dino"``, ``embed_model``, ``classes="0"``,
            ``save_mot=PATH``, ``output=PATH`` or ``None`` for no video, ``embed_all=True`` ...).

    Returns:
        The :class:`~mot_dinov3.profiling.RunSummary`.

    Raises:
        UserError: bad options or inputs (the messages the CLI prints).
    """
    from mot_dinov3 import pipeline
    from mot_dinov3.sigstack import clear_dangling_altstack

    summary = pipeline.run(run_config(source, options))  # its detector and embedder are released here
    clear_dangling_altstack()
    return summary


def iter_track(
    source: str | Path | Iterable[np.ndarray], **options: Any
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Like :func:`track`, yielding per frame ``(frame_index, image, tracks)``: the 1-based index, the BGR
    image and the (M, 8) tracks of :meth:`MultiObjectTracker.update`; outputs asked for are written too."""
    from mot_dinov3 import pipeline
    from mot_dinov3.sigstack import clear_dangling_altstack

    try:
        yield from pipeline.frames(run_config(source, options))
    finally:
        clear_dangling_altstack()


def run_config(source: str | Path | Iterable[np.ndarray], options: dict[str, Any]):
    """The :class:`~mot_dinov3.config.RunConfig` that the CLI builds from the same flags; ``source`` may also
    be any iterable of (H, W, 3) uint8 BGR images (at ``fps``, default 30)."""
    from mot_dinov3.options import config_from_options

    if isinstance(source, (str, Path)):
        return config_from_options(str(source), options)
    return replace(config_from_options("<frames>", options), source=source)
