"""Budget-aware embedding scheduler: per detection, compute now, refresh within budget, or reuse.

:meth:`EmbeddingScheduler.plan` decides, from boxes alone, what each detection needs:

* **critical** (always computed, never limited by the budget):
  no active tracks yet (bootstrap); best IoU with every active track's predicted box below
  ``iou_gate`` (weak continuity: new object, or a lost track coming back); IoU above
  ``overlap_thr`` with another detection or with a second track's predicted box (crowded: a
  crossing, where reuse would copy one identity onto another); IoU above ``overlap_thr`` with a
  lost track's predicted box (near_lost: the tracker checks appearance before giving a lost track
  its box back, so the embedding must be this detection's own); the continuing track has no cached
  embedding; or two detections continue the same track.
* **refresh**: a stable detection whose track's embedding is ``refresh_every`` frames old or older.
  Candidates are ordered oldest embedding first, so tracks deferred on earlier frames (the backlog)
  are served first.
* **reuse**: every other stable detection. It gets its track's cached embedding (never a zero vector).

With ``lazy`` (``--embed-lazy``) :func:`plan_lazy` replaces these rules: only what the association
reads this frame is computed (new, contested and near-lost boxes, young memories), there is no periodic
refresh, and a track's memory is fed from its buffered clean looks (crops of detections served from
cache, at most ``lazy_samples``, ``lazy_spacing`` frames apart) only when it is about to be read: when
the track is contested, next to a near-lost box, or lost. About a third of the default's embeddings
on DEV; see the README's Benchmarks.

:meth:`EmbeddingScheduler.run` embeds the critical crops in one batch, then admits refresh crops one
chunk at a time while a live EMA of ms per crop says the next chunk fits in what is left of
``budget_ms`` (0 = unlimited). Only refresh work counts against the budget; the embedder is
synchronised (CUDA) around every timed call. A refresh that does not fit is served from cache and its
track stays in the backlog; backlog entries of tracks that are no longer active are dropped.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mot_dinov3.config import SchedulerConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import CropEmbedder, Embedder
from mot_dinov3.matching import iou_matrix

CRITICAL, REFRESH, REUSE, SKIP = 0, 1, 2, 3
REFRESH_CHUNK = 4  # largest refresh batch admitted at once against the budget


class TrackLike(Protocol):
    """What the scheduler reads of a track (see :class:`mot_dinov3.tracker.TrackView`)."""

    track_id: int
    xyxy: np.ndarray
    embedding: np.ndarray | None
    last_embed_frame: int
    lost: bool
    last_seen: int
    samples: int


@dataclass
class EmbedPlan:
    """What to do for each detection of one frame.

    Attributes:
        frame: 1-based frame index.
        action: (N,) int8, one of ``CRITICAL``, ``REFRESH``, ``REUSE``, ``SKIP`` per detection.
        track_ids: (N,) int64, the track a detection continues (its best-IoU active track), -1 if none.
        last_embed_frame: (N,) int64, frame of the continued track's last fresh embedding (0 if none).
        refresh_order: detection indices with ``REFRESH``, oldest track embedding first.
        cached: ``{track_id: (D,) embedding}`` for the tracks whose embedding may be reused.
        reasons: (N,) str, why a detection is critical (``embed_all``, ``bootstrap``, ``weak_iou``,
            ``crowded``, ``near_lost``, ``shared``, ``no_cache``; lazy: ``contested``, ``young``) or its
            action name (``refresh``, ``reuse``, ``skip``); for logs, the run summary's
            ``embed_decisions`` and tests.
        flush: lazy: ids of the tracks whose memory is read this frame (fed from their buffered looks).
    """

    frame: int
    action: np.ndarray
    track_ids: np.ndarray
    last_embed_frame: np.ndarray
    refresh_order: list[int]
    cached: dict[int, np.ndarray]
    reasons: list[str]
    flush: list[int] = field(default_factory=list)


@dataclass
class Embeddings:
    """Result of :meth:`EmbeddingScheduler.run`.

    Attributes:
        vectors: (N, D) float32 L2-normalised, one per detection; rows of ``SKIP`` detections and
            ``None`` when there are no detections with an embedding.
        computed: (N,) bool, True where the embedding was computed this frame.
        critical_ms: wall time of the critical batch, ms.
        refresh_ms: wall time of refresh work, ms (what the budget limits).
        deferred: refresh candidates served from cache because the budget was spent.
        memory: lazy: ``{track_id: (frames (K,) int64, vectors (K, D) float32)}``, buffered looks embedded
            this frame, for :meth:`mot_dinov3.tracker.Tracker.feed_memory`.
    """

    vectors: np.ndarray | None
    computed: np.ndarray
    critical_ms: float = 0.0
    refresh_ms: float = 0.0
    deferred: int = 0
    memory: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def plan_actions(det_xyxy: np.ndarray, tracks: Sequence[TrackLike], frame: int, cfg: SchedulerConfig,
                 candidates: np.ndarray | None = None) -> EmbedPlan:
    """Decide critical / refresh / reuse for each detection (pure; see the module docstring).

    Args:
        det_xyxy: (N, 4) float32 detection boxes, pixels.
        tracks: the tracker's views (``track_id``, predicted ``xyxy``, ``embedding``, ``last_embed_frame``,
            ``lost``); lost tracks only feed the near_lost rule.
        frame: current 1-based frame index.
        cfg: scheduler thresholds.
        candidates: (N,) bool, detections that need an embedding at all; others get ``SKIP``.
    """
    n = len(det_xyxy)
    action = np.full(n, REUSE, np.int8)
    reasons = ["reuse"] * n
    track_ids = np.full(n, -1, np.int64)
    candidates = np.ones(n, bool) if candidates is None else np.asarray(candidates, bool)
    lost = [t for t in tracks if t.lost]
    tracks = [t for t in tracks if not t.lost]
    if cfg.embed_all or not tracks:
        reason = "embed_all" if cfg.embed_all else "bootstrap"
        action[:] = CRITICAL
        reasons = [reason] * n
    else:
        dd = iou_matrix(det_xyxy, det_xyxy)
        np.fill_diagonal(dd, 0.0)
        dt = iou_matrix(det_xyxy, np.array([t.xyxy for t in tracks]))
        best = dt.argmax(axis=1)
        best_iou = dt[np.arange(n), best]
        second = np.sort(dt, axis=1)[:, -2] if len(tracks) > 1 else np.zeros(n)
        # crowded: the box overlaps another detection or a second track's predicted box
        crowded = (dd > cfg.overlap_thr).any(axis=1) | (second > cfg.overlap_thr)
        near_lost = (iou_matrix(det_xyxy, np.array([t.xyxy for t in lost])) > cfg.overlap_thr).any(axis=1) \
            if lost else np.zeros(n, bool)
        claims = np.bincount(best[best_iou >= cfg.iou_gate], minlength=len(tracks))
        for i in range(n):
            t = tracks[best[i]]
            if best_iou[i] < cfg.iou_gate:
                action[i], reasons[i] = CRITICAL, "weak_iou"
                continue
            track_ids[i] = t.track_id
            if crowded[i]:
                action[i], reasons[i] = CRITICAL, "crowded"
            elif near_lost[i]:
                action[i], reasons[i] = CRITICAL, "near_lost"
            elif claims[best[i]] > 1:
                action[i], reasons[i] = CRITICAL, "shared"
            elif t.embedding is None:
                action[i], reasons[i] = CRITICAL, "no_cache"
            elif frame - t.last_embed_frame >= cfg.refresh_every:
                action[i], reasons[i] = REFRESH, "refresh"
    return finish_plan(frame, action, reasons, track_ids, tracks, candidates)


def finish_plan(frame: int, action: np.ndarray, reasons: list[str], track_ids: np.ndarray,
                active: Sequence[TrackLike], candidates: np.ndarray, flush: Sequence[int] = ()) -> EmbedPlan:
    """What both rule sets end with: non-candidates become ``SKIP``, refreshes are ordered oldest
    embedding first, and the cached embeddings of the tracks that may be reused are collected."""
    action[~candidates] = SKIP
    for i in np.flatnonzero(~candidates):
        reasons[i] = "skip"
    by_id = {t.track_id: t for t in active}
    last = np.array([by_id[tid].last_embed_frame if tid in by_id else 0 for tid in track_ids], np.int64)
    refresh = sorted(np.flatnonzero(action == REFRESH).tolist(), key=lambda i: (last[i], track_ids[i]))
    cached = {int(tid): by_id[tid].embedding for tid in set(track_ids[action != CRITICAL].tolist())
              if tid in by_id and by_id[tid].embedding is not None}
    return EmbedPlan(frame, action, track_ids, last, refresh, cached, reasons, list(dict.fromkeys(flush)))


def contest_groups(pair_iou: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Which detections and tracks share a group of candidate pairs with a rival.

    Pairs with IoU above ``thr`` link a detection and a track; a group is a connected component of
    these links (scipy ``connected_components``). A group with two detections or two tracks is contested.

    Args:
        pair_iou: (N, M) float IoU of detections x tracks.
        thr: IoU above which a pair is a candidate.

    Returns:
        (N,) bool contested detections, (M,) bool contested tracks.
    """
    n, m = pair_iou.shape
    r, c = np.nonzero(pair_iou > thr)
    graph = coo_matrix((np.ones(len(r)), (r, n + c)), shape=(n + m, n + m))
    _, labels = connected_components(graph, directed=False)
    dets = np.bincount(labels[:n], minlength=n + m)
    trks = np.bincount(labels[n:], minlength=n + m)
    rival = (dets > 1) | (trks > 1)
    return rival[labels[:n]], rival[labels[n:]]


def plan_lazy(det_xyxy: np.ndarray, tracks: Sequence[TrackLike], frame: int, cfg: SchedulerConfig,
              candidates: np.ndarray | None = None) -> EmbedPlan:
    """Lazy-memory rules (``--embed-lazy``, pure): compute only what the association reads this frame.

    Per detection, in order: ``bootstrap`` (no active tracks); ``weak_iou`` (no active track's predicted
    box above ``contest_iou`` IoU: a new object or a lost track back); ``contested`` (its group of
    candidate pairs holds a rival, :func:`contest_groups`); ``near_lost`` (IoU above ``overlap_thr``
    with the predicted box of a track lost at most ``near_lost_frames`` frames); ``no_cache`` / ``young``
    (its track's memory is empty / holds fewer than ``young_samples`` fresh embeddings); otherwise
    ``reuse``. There is no refresh. ``flush`` lists the tracks whose memory is read now: every track in a
    contested group, the track a near_lost detection continues, and every lost track.

    Args and returns: as :func:`plan_actions` (``last_seen`` and ``samples`` of the views are read).
    """
    n = len(det_xyxy)
    candidates = np.ones(n, bool) if candidates is None else np.asarray(candidates, bool)
    lost = [t for t in tracks if t.lost]
    active = [t for t in tracks if not t.lost]
    action = np.full(n, CRITICAL, np.int8)
    reasons = ["bootstrap"] * n
    track_ids = np.full(n, -1, np.int64)
    flush: list[int] = [t.track_id for t in lost]
    if active:
        dt = iou_matrix(det_xyxy, np.array([t.xyxy for t in active]))
        best = dt.argmax(axis=1)
        best_iou = dt[np.arange(n), best]
        contested, contested_tracks = contest_groups(dt * candidates[:, None], cfg.contest_iou)
        recent = [t for t in lost if frame - t.last_seen <= cfg.near_lost_frames]
        near_lost = (iou_matrix(det_xyxy, np.array([t.xyxy for t in recent])) > cfg.overlap_thr).any(axis=1) \
            if recent else np.zeros(n, bool)
        flush += [t.track_id for t, c in zip(active, contested_tracks) if c]
        for i in range(n):
            t = active[best[i]]
            if best_iou[i] <= cfg.contest_iou:
                reasons[i] = "weak_iou"
                continue
            track_ids[i] = t.track_id
            if contested[i]:
                reasons[i] = "contested"
            elif near_lost[i]:
                reasons[i] = "near_lost"
                flush.append(t.track_id)
            elif t.embedding is None:
                reasons[i] = "no_cache"
            elif t.samples < cfg.young_samples:
                reasons[i] = "young"
            else:
                action[i], reasons[i] = REUSE, "reuse"
    return finish_plan(frame, action, reasons, track_ids, active, candidates, flush)


def pick_looks(looks: Sequence[tuple[int, np.ndarray]], k: int, spacing: int) -> list[tuple[int, np.ndarray]]:
    """The newest look, then each next newest at least ``spacing`` frames before the last picked, up to
    ``k``; returned oldest first. ``looks``: (frame, crop) pairs in frame order."""
    picks: list[tuple[int, np.ndarray]] = []
    for frame, crop in reversed(looks):
        if len(picks) >= k:
            break
        if not picks or picks[-1][0] - frame >= spacing:
            picks.append((frame, crop))
    return picks[::-1]


class EmbeddingScheduler:
    """Stateful half of the scheduler: the ms-per-crop EMA, the refresh backlog, lazy memory's crop buffer
    and the counters.

    Args:
        cfg: scheduler settings.
        embedder: any :class:`~mot_dinov3.features.base.Embedder`.
        clock: seconds counter (``time.perf_counter``); replaceable in tests.

    Attributes:
        ms_per_crop: live EMA of embedding cost, ms per crop (``None`` before the first measurement).
        backlog: ``{track_id: last_embed_frame}`` of tracks whose refresh was deferred.
        looks: lazy: ``{track_id: deque of (frame, uint8 BGR crop)}``, buffered clean looks not yet embedded.
        computed_total / reused_total: counters over the run (``computed_total`` includes looks embedded).
        reasons_total: detections per plan reason; ``memory`` counts looks embedded.

    Raises:
        UserError: ``cfg.lazy`` with a backend that cannot embed crops later (not a
            :class:`~mot_dinov3.features.base.CropEmbedder`).
    """

    def __init__(self, cfg: SchedulerConfig, embedder: Embedder, clock: Callable[[], float] = time.perf_counter):
        self.cfg = cfg
        self.embedder = embedder
        self.clock = clock
        self.lazy = cfg.lazy and not cfg.embed_all
        if self.lazy and not isinstance(embedder, CropEmbedder):
            raise UserError(f"--embed-lazy: the {embedder.name} backend cannot embed buffered crops; "
                            "use --embedder dino, clip or onnx, or drop --embed-lazy")
        self.ms_per_crop: float | None = None
        self.backlog: dict[int, int] = {}
        self.looks: dict[int, deque[tuple[int, np.ndarray]]] = {}
        self.computed_total = 0
        self.reused_total = 0
        self.reasons_total: dict[str, int] = {}

    def plan(self, frame: int, det_xyxy: np.ndarray, tracks: Sequence[TrackLike],
             candidates: np.ndarray | None = None) -> EmbedPlan:
        """Plan this frame (:func:`plan_actions`, or :func:`plan_lazy` with ``cfg.lazy``); drop backlog
        entries of inactive tracks and buffered looks of removed ones."""
        active = {t.track_id for t in tracks if not t.lost}
        self.backlog = {tid: f for tid, f in self.backlog.items() if tid in active}
        alive = {t.track_id for t in tracks}
        self.looks = {tid: q for tid, q in self.looks.items() if tid in alive}
        plan = (plan_lazy if self.lazy else plan_actions)(det_xyxy, tracks, frame, self.cfg, candidates)
        for r in plan.reasons:
            self.reasons_total[r] = self.reasons_total.get(r, 0) + 1
        return plan

    def run(self, plan: EmbedPlan, image: np.ndarray, det_xyxy: np.ndarray,
            det_feats: np.ndarray | None = None) -> Embeddings:
        """Carry out ``plan`` on one frame.

        Args:
            plan: from :meth:`plan`.
            image: (H, W, 3) uint8 BGR frame.
            det_xyxy: (N, 4) float32 boxes, the same as planned.
            det_feats: (N, C) detector features, passed through to backends that use them.

        Returns:
            :class:`Embeddings` with a vector for every non-skipped detection.
        """
        n = len(det_xyxy)
        computed = np.zeros(n, bool)
        vectors: np.ndarray | None = None
        result = Embeddings(None, computed)

        def compute(idx: list[int]) -> float:
            nonlocal vectors
            self.embedder.synchronize()
            t0 = self.clock()
            out = self.embedder.embed(image, det_xyxy[idx], None if det_feats is None else det_feats[idx])
            self.embedder.synchronize()
            ms = (self.clock() - t0) * 1000.0
            if vectors is None:
                vectors = np.zeros((n, out.shape[1]), np.float32)
            vectors[idx] = out
            computed[idx] = True
            per_crop = ms / len(idx)
            a = self.cfg.ema_alpha
            self.ms_per_crop = per_crop if self.ms_per_crop is None else a * per_crop + (1 - a) * self.ms_per_crop
            return ms

        critical = np.flatnonzero(plan.action == CRITICAL).tolist()
        refresh = list(plan.refresh_order)
        if self.cfg.budget_ms <= 0:  # unlimited: one batch for everything
            if critical or refresh:
                ms = compute(critical + refresh)
                result.critical_ms = ms * len(critical) / (len(critical) + len(refresh))
                result.refresh_ms = ms - result.critical_ms
            refresh = []
        else:
            if critical:
                result.critical_ms = compute(critical)
            while refresh:
                left = self.cfg.budget_ms - result.refresh_ms
                if self.ms_per_crop is None:  # no estimate yet: measure a single crop
                    take = 1 if left > 0 else 0
                else:
                    take = min(int(left // max(self.ms_per_crop, 1e-6)), REFRESH_CHUNK)
                if take < 1:
                    break
                chunk, refresh = refresh[:take], refresh[take:]
                result.refresh_ms += compute(chunk)

        for i in refresh:  # deferred refreshes: reuse, and remember the track in the backlog
            self.backlog[int(plan.track_ids[i])] = int(plan.last_embed_frame[i])
        result.deferred = len(refresh)
        for tid in plan.track_ids[computed]:
            self.backlog.pop(int(tid), None)
        for i in np.flatnonzero((plan.action != SKIP) & ~computed):
            e = plan.cached[int(plan.track_ids[i])]
            if vectors is None:
                vectors = np.zeros((n, e.shape[0]), np.float32)
            vectors[i] = e
        self.computed_total += int(computed.sum())
        self.reused_total += int(((plan.action != SKIP) & ~computed).sum())
        result.vectors = vectors
        if self.lazy:
            result.memory = self._flush(plan.flush)
            self._buffer_looks(plan, image, det_xyxy, computed)
        return result

    def _flush(self, track_ids: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Embed (one batch) the newest buffered looks of these tracks, at most ``lazy_samples`` each and
        ``lazy_spacing`` frames apart, picked newest first; forget their buffers."""
        taken = []
        for tid in track_ids:
            looks = self.looks.pop(tid, None)
            if looks:
                taken.append((tid, pick_looks(looks, self.cfg.lazy_samples, self.cfg.lazy_spacing)))
        if not taken:
            return {}
        crops = [crop for _, looks in taken for _, crop in looks]
        vectors = self.embedder.embed_crops(crops)
        self.computed_total += len(crops)
        self.reasons_total["memory"] = self.reasons_total.get("memory", 0) + len(crops)
        memory, start = {}, 0
        for tid, looks in taken:
            memory[tid] = (np.array([f for f, _ in looks], np.int64), vectors[start:start + len(looks)])
            start += len(looks)
        return memory

    def _buffer_looks(self, plan: EmbedPlan, image: np.ndarray, det_xyxy: np.ndarray, computed: np.ndarray) -> None:
        """Keep the crop of each clean detection served from cache as its track's newest look; a clean
        detection embedded now makes its track's older looks redundant."""
        cfg = self.cfg
        overlap = iou_matrix(det_xyxy, det_xyxy)
        np.fill_diagonal(overlap, 0.0)
        clean = ~(overlap > cfg.look_overlap_thr).any(axis=1) & (plan.track_ids >= 0)
        for i in np.flatnonzero(clean & computed):
            self.looks.pop(int(plan.track_ids[i]), None)
        keep = np.flatnonzero(clean & (plan.action == REUSE))
        for i, crop in zip(keep, self.embedder.crop(image, det_xyxy[keep])):
            looks = self.looks.setdefault(int(plan.track_ids[i]), deque())
            while looks and plan.frame - looks[0][0] > cfg.lazy_window:
                looks.popleft()
            looks.append((plan.frame, crop))

