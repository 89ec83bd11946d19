"""The scheduler's refresh rules (``--no-embed-lazy``): per detection, compute now (critical), refresh, or reuse.

:func:`plan_actions` decides, from boxes alone, what each detection needs:

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

Both rule sets (this one and :func:`mot_dinov3.scheduler.lazy.plan_lazy`) end in :func:`finish_plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from mot_dinov3.config import SchedulerConfig
from mot_dinov3.matching import iou_matrix

CRITICAL, REFRESH, REUSE, SKIP = 0, 1, 2, 3


class TrackLike(Protocol):
    """What the scheduler reads of a track (see :class:`mot_dinov3.track.TrackView`)."""

    @property
    def track_id(self) -> int: ...
    @property
    def xyxy(self) -> np.ndarray: ...
    @property
    def embedding(self) -> np.ndarray | None: ...
    @property
    def last_embed_frame(self) -> int: ...
    @property
    def lost(self) -> bool: ...
    @property
    def last_seen(self) -> int: ...
    @property
    def start_frame(self) -> int: ...


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
            ``crowded``, ``near_lost``, ``shared``, ``no_cache``; lazy: ``contested``) or its
            action name (``refresh``, ``reuse``, ``skip``); for logs, the run summary's
            ``embed_decisions`` and tests.
        flush: lazy: ids of the tracks whose memory is read this frame (fed from their buffered looks).
        near_lost: lazy: ``{detection index: [lost track ids]}`` of the near_lost detections, whose
            embeddings are checked against those lost tracks' memories once computed.
    """

    frame: int
    action: np.ndarray
    track_ids: np.ndarray
    last_embed_frame: np.ndarray
    refresh_order: list[int]
    cached: dict[int, np.ndarray]
    reasons: list[str]
    flush: list[int] = field(default_factory=list)
    near_lost: dict[int, list[int]] = field(default_factory=dict)


def plan_actions(
    det_xyxy: np.ndarray,
    tracks: Sequence[TrackLike],
    frame: int,
    cfg: SchedulerConfig,
    candidates: np.ndarray | None = None,
) -> EmbedPlan:
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
        near_lost: np.ndarray = np.zeros(n, bool)
        if lost:
            near_lost = np.asarray(
                (iou_matrix(det_xyxy, np.array([t.xyxy for t in lost])) > cfg.overlap_thr).any(axis=1)
            )
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


def finish_plan(
    frame: int,
    action: np.ndarray,
    reasons: list[str],
    track_ids: np.ndarray,
    active: Sequence[TrackLike],
    candidates: np.ndarray,
    flush: Sequence[int] = (),
) -> EmbedPlan:
    """What both rule sets end with: non-candidates become ``SKIP``, refreshes are ordered oldest
    embedding first, and the cached embeddings of the tracks that may be reused are collected."""
    action[~candidates] = SKIP
    for i in np.flatnonzero(~candidates):
        reasons[i] = "skip"
    by_id = {t.track_id: t for t in active}
    last = np.array([by_id[tid].last_embed_frame if tid in by_id else 0 for tid in track_ids], np.int64)
    refresh = sorted(np.flatnonzero(action == REFRESH).tolist(), key=lambda i: (last[i], track_ids[i]))
    cached: dict[int, np.ndarray] = {
        int(tid): e
        for tid in set(track_ids[action != CRITICAL].tolist())
        if tid in by_id and (e := by_id[tid].embedding) is not None
    }
    return EmbedPlan(frame, action, track_ids, last, refresh, cached, reasons, list(dict.fromkeys(flush)))
