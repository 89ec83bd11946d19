"""Lazy memory (the default, ``--embed-lazy``): compute only what the association reads this frame.

:func:`plan_lazy` replaces the refresh rules of :mod:`~mot_dinov3.scheduler.plan`: new, contested and
near-lost boxes and boxes of tracks with no memory yet are computed, there is no periodic refresh,
and a track's memory (EMA) is fed from its buffered clean looks only when it is about to be read:
when the track is contested or next to a near-lost box, or it is lost and a computed box may be it.
:class:`LookBuffer` keeps those looks: the crops of clean detections served from cache, the last
``lazy_window`` frames per track; :func:`pick_looks` chooses which of them to embed (at most
``lazy_samples``, ``lazy_spacing`` frames apart, newest first). Measurements: ``docs/benchmarks.md``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mot_dinov3.config import SchedulerConfig
from mot_dinov3.matching import cosine_distance, iou_matrix
from mot_dinov3.scheduler.plan import CRITICAL, REUSE, EmbedPlan, TrackLike, finish_plan


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


def plan_lazy(
    det_xyxy: np.ndarray,
    tracks: Sequence[TrackLike],
    frame: int,
    cfg: SchedulerConfig,
    candidates: np.ndarray | None = None,
    cleared: Mapping[tuple[int, int], int] | None = None,
    reach: np.ndarray | None = None,
) -> EmbedPlan:
    """Lazy-memory rules (``--embed-lazy``, pure): compute only what the association reads this frame.

    Per detection, in order: ``bootstrap`` (no active tracks); ``weak_iou`` (no active track's predicted
    box above ``contest_iou`` IoU: a new object or a lost track back); ``contested`` (its group of
    candidate pairs holds a rival, :func:`contest_groups`); ``near_lost`` (IoU above ``overlap_thr``
    with the predicted box of a track lost at most ``near_lost_frames`` frames, unless every such pair
    (its track, the lost track) was cleared within ``near_lost_clear_frames``; when its own track
    started at most ``near_lost_new_frames`` frames ago, with any lost track's predicted box, never
    cleared: it may be that track back, first seen half hidden); ``no_cache`` (its track's memory
    is empty); otherwise ``reuse``. There is no refresh. ``flush`` lists the tracks whose memory is read
    now: every track in a contested group, the track a near_lost detection continues, and every lost
    track that a computed detection may be: one overlapping its predicted box above ``overlap_thr`` IoU,
    or within its re-identification reach (``reach``). A lost track's last looks are embedded when a
    box that may be it is computed, not when it is lost.

    Args and returns: as :func:`mot_dinov3.scheduler.plan.plan_actions` (``last_seen`` and ``start_frame``
    of the views are read), plus

    * ``cleared``: ``{(track_id, lost_track_id): frame}``, the pairs whose near_lost box was last seen
      far from the lost track's memory (:func:`near_lost_verdicts`);
    * ``reach``: (N, M) bool over ``tracks``, detection i within re-identification reach of lost track j
      (:meth:`mot_dinov3.gating.Gating.reid_reach`: the tracker compares them by appearance alone);
    * ``EmbedPlan.near_lost``: each near_lost detection's lost tracks, to check once it is embedded.
    """
    n = len(det_xyxy)
    candidates = np.ones(n, bool) if candidates is None else np.asarray(candidates, bool)
    lost = [t for t in tracks if t.lost]
    active = [t for t in tracks if not t.lost]
    action = np.full(n, CRITICAL, np.int8)
    reasons = ["bootstrap"] * n
    track_ids = np.full(n, -1, np.int64)
    cleared = cleared or {}
    near_lost: dict[int, list[int]] = {}
    flush: list[int] = []
    on_lost = iou_matrix(det_xyxy, np.array([t.xyxy for t in lost]).reshape(-1, 4)) > cfg.overlap_thr
    recent = np.array([frame - t.last_seen <= cfg.near_lost_frames for t in lost], bool)
    if active:
        dt = iou_matrix(det_xyxy, np.array([t.xyxy for t in active]))
        best = dt.argmax(axis=1)
        mine = [active[j] for j in best]  # the track each detection continues
        contested, contested_tracks = contest_groups(dt * candidates[:, None], cfg.contest_iou)
        flush += [t.track_id for t, c in zip(active, contested_tracks) if c]
        for i, t in enumerate(mine):
            new = frame - t.start_frame <= cfg.near_lost_new_frames  # may be a lost track back
            ids = [lost[j].track_id for j in np.flatnonzero(on_lost[i] & (recent | new))]
            stale = not all(frame - cleared.get((t.track_id, lid), -np.inf) < cfg.near_lost_clear_frames for lid in ids)
            if ids and (new or stale):
                near_lost[i] = ids
        # the rules, in order: the first that holds makes the detection critical, for that reason
        rules = (
            ("weak_iou", dt[np.arange(n), best] <= cfg.contest_iou),  # no active track here: new, or one back
            ("contested", contested),  # a rival detection or track shares its candidate pairs
            ("near_lost", np.isin(np.arange(n), list(near_lost))),  # next to a lost track's predicted box
            ("no_cache", np.array([t.embedding is None for t in mine])),  # its track has no memory yet
        )
        for i, t in enumerate(mine):
            reason = next((name for name, holds in rules if holds[i]), "reuse")
            reasons[i] = reason
            if reason != "weak_iou":
                track_ids[i] = t.track_id
            if reason == "reuse":
                action[i] = REUSE
            elif reason == "near_lost":
                flush.append(t.track_id)
        near_lost = {i: ids for i, ids in near_lost.items() if reasons[i] == "near_lost"}
    plan = finish_plan(frame, action, reasons, track_ids, active, candidates, flush)
    # a lost track's memory is read when a box that may be it (on its predicted box, or in re-ID reach)
    # is computed
    if reach is not None:
        on_lost |= np.asarray(reach, bool)[:, [i for i, t in enumerate(tracks) if t.lost]]
    back = on_lost[plan.action == CRITICAL].any(axis=0)
    plan.flush += [t.track_id for t, b in zip(lost, back) if b]
    plan.near_lost = {i: ids for i, ids in near_lost.items() if plan.action[i] == CRITICAL}
    return plan


def near_lost_verdicts(
    plan: EmbedPlan, vectors: np.ndarray | None, computed: np.ndarray, lost_memory: Mapping[int, np.ndarray], far: float
) -> dict[tuple[int, int], bool]:
    """Whether each near_lost detection embedded this frame looked far from its lost tracks.

    Args:
        plan: this frame's plan (``near_lost``, ``track_ids``).
        vectors: (N, D) float32 L2-normalised embeddings of the frame's detections.
        computed: (N,) bool, embedded this frame.
        lost_memory: ``{lost_track_id: (D,) float32}`` the lost tracks' EMA embeddings.
        far: cosine distance above which the pair is cleared (``near_lost_clear``).

    Returns:
        ``{(track_id, lost_track_id): far}`` for the pairs checked (lost tracks with a memory only).
    """
    out = {}
    for i, lost_ids in plan.near_lost.items():
        if not computed[i] or vectors is None:
            continue
        for lid in lost_ids:
            if lid in lost_memory:
                dist = float(cosine_distance(vectors[i][None], lost_memory[lid][None])[0, 0])
                out[(int(plan.track_ids[i]), lid)] = dist > far
    return out


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


class LookBuffer:
    """Per track, the crops of its clean detections served from cache: looks not yet embedded.

    A look is clean when no other detection overlaps its box above ``overlap_thr`` IoU (the tracker's
    :data:`~mot_dinov3.config.CLEAN_OVERLAP_IOU`: only such looks may enter a track's memory). A clean detection embedded
    now makes its track's older looks redundant; looks older than ``window`` frames are dropped.

    Args:
        window: frames a look is kept (``lazy_window``).
        overlap_thr: IoU with another detection above which a box is not clean.

    Attributes:
        looks: ``{track_id: deque of (frame, crop)}``; crops as the backend's ``crop`` cuts them (uint8
            BGR, already at the model input size).
    """

    def __init__(self, window: int, overlap_thr: float):
        self.window = window
        self.overlap_thr = overlap_thr
        self.looks: dict[int, deque[tuple[int, np.ndarray]]] = {}

    def keep_only(self, track_ids: set[int]) -> None:
        """Forget the looks of tracks not in ``track_ids`` (removed by the tracker)."""
        self.looks = {tid: q for tid, q in self.looks.items() if tid in track_ids}

    def add(
        self,
        plan: EmbedPlan,
        image: np.ndarray,
        det_xyxy: np.ndarray,
        computed: np.ndarray,
        crop: Callable[[np.ndarray, np.ndarray], list[np.ndarray]],
    ) -> None:
        """Keep the crop of each clean detection served from cache (``REUSE``) as its track's newest look;
        drop the looks of tracks whose clean detection was embedded now.

        Args:
            plan: this frame's plan (``track_ids``, ``action``, ``frame``).
            image: (H, W, 3) uint8 BGR frame.
            det_xyxy: (N, 4) float32 boxes, pixels.
            computed: (N,) bool, embedded this frame.
            crop: the backend's ``crop(image, xyxy) -> list of crops``.
        """
        overlap = iou_matrix(det_xyxy, det_xyxy)
        np.fill_diagonal(overlap, 0.0)
        clean = ~(overlap > self.overlap_thr).any(axis=1) & (plan.track_ids >= 0)
        for i in np.flatnonzero(clean & computed):
            self.looks.pop(int(plan.track_ids[i]), None)
        keep = np.flatnonzero(clean & (plan.action == REUSE))
        for i, look in zip(keep, crop(image, det_xyxy[keep])):
            looks = self.looks.setdefault(int(plan.track_ids[i]), deque())
            while looks and plan.frame - looks[0][0] > self.window:
                looks.popleft()
            looks.append((plan.frame, look))

    def take(self, track_ids: Sequence[int], k: int, spacing: int) -> list[tuple[int, list[tuple[int, np.ndarray]]]]:
        """Remove these tracks' looks and return the ones to embed (:func:`pick_looks`), as
        ``[(track_id, [(frame, crop), ...]), ...]`` for the tracks that had any."""
        taken = []
        for tid in track_ids:
            looks = self.looks.pop(tid, None)
            if looks:
                taken.append((tid, pick_looks(looks, k, spacing)))
        return taken
