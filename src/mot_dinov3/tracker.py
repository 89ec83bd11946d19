"""IoU + cosine multi-object tracker: Kalman motion, two-stage association, EMA embeddings, re-ID.

Per frame (after :meth:`Tracker.predict`), :meth:`Tracker.update` runs:

1. confirmed and lost tracks x high-score detections, BoT-SORT fused cost
   (:func:`~mot_dinov3.matching.fuse_iou_appearance`, arXiv 2206.14651), threshold ``match_thresh``;
2. still-unmatched confirmed tracks x low-score detections, IoU only (ByteTrack, arXiv 2110.06864);
3. tentative tracks x remaining high-score detections (fused cost, threshold 0.7);
4. lost tracks x remaining high-score detections by appearance alone (cosine distance below
   ``reid_thresh``, centres within ``reid_max_dist`` image widths): re-identification after occlusion;
5. unmatched confirmed tracks become lost; lost tracks older than ``track_buffer`` (frames at 30 fps,
   scaled by the real fps) are removed; unmatched tentative tracks are removed; remaining detections
   at or above ``new_track_thresh`` start tentative tracks (confirmed at once on the first frame).

Life cycle: tentative -> confirmed (``min_hits`` matches) -> lost -> confirmed again or removed.
A track's embedding is an EMA (``alpha``) of the fresh embeddings matched to it; embeddings the
caller marks as not fresh (reused from cache) are used for matching but never update the EMA.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from mot_dinov3 import matching, motion
from mot_dinov3.config import TrackerConfig

TENTATIVE_MATCH_THRESH = 0.7  # BoT-SORT's threshold for unconfirmed tracks


class TrackState(IntEnum):
    TENTATIVE = 0
    CONFIRMED = 1
    LOST = 2
    REMOVED = 3


@dataclass
class Track:
    """One track's state (internal to the tracker; callers get :class:`TrackView` / :class:`TrackOutput`)."""

    track_id: int
    mean: np.ndarray  # (8,) Kalman state, xywh + velocities
    cov: np.ndarray  # (8, 8)
    conf: float
    cls: int
    state: TrackState
    hits: int
    last_seen: int  # frame of the last matched detection
    embedding: np.ndarray | None = None  # (D,) float32 L2-normalised EMA
    last_embed_frame: int = 0  # frame of the last fresh embedding
    det_xyxy: np.ndarray | None = None  # (4,) the box matched this frame
    embedded_now: bool = False

    @property
    def xyxy(self) -> np.ndarray:
        """(4,) float32 box of the Kalman state (the prediction until the frame is updated)."""
        return motion.xywh_to_xyxy(self.mean[:4]).astype(np.float32)


@dataclass(frozen=True)
class TrackView:
    """Read-only view of an active track for the embedding scheduler.

    Attributes:
        track_id: the track id.
        xyxy: (4,) float32 predicted box for the current frame, pixels.
        embedding: (D,) float32 cached EMA embedding, or ``None``.
        last_embed_frame: frame (1-based) of the last fresh embedding; 0 if never.
    """

    track_id: int
    xyxy: np.ndarray
    embedding: np.ndarray | None
    last_embed_frame: int


@dataclass(frozen=True)
class TrackOutput:
    """A track to report for the current frame.

    Attributes:
        track_id: positive int id.
        xyxy: (4,) float32 box in pixels (the matched detection; the prediction for lost tracks).
        conf: detection confidence.
        cls: class id.
        state: ``CONFIRMED`` (or ``LOST`` when lost tracks are requested).
        embedded_now: an embedding was computed for this track's detection this frame.
    """

    track_id: int
    xyxy: np.ndarray
    conf: float
    cls: int
    state: TrackState
    embedded_now: bool


class Tracker:
    """See the module docstring.

    Args:
        cfg: thresholds (:class:`~mot_dinov3.config.TrackerConfig`).
        fps: source frame rate; ``track_buffer`` is scaled by ``fps / 30``.
    """

    def __init__(self, cfg: TrackerConfig, fps: float = 30.0):
        self.cfg = cfg
        self.max_lost = max(1, int(round(cfg.track_buffer * fps / 30.0)))
        self.frame = 0
        self.tracks: list[Track] = []
        self._next_id = 1

    # -- per frame -------------------------------------------------------------------------------
    def predict(self) -> list[TrackView]:
        """Advance to the next frame: Kalman-predict every track; return views of the active
        (tentative and confirmed) tracks for the embedding scheduler."""
        self.frame += 1
        if self.tracks:
            means = np.stack([t.mean for t in self.tracks])
            lost = np.array([t.state == TrackState.LOST for t in self.tracks])
            means[lost, 6:8] = 0.0  # a lost track keeps its size (BoT-SORT)
            means, covs = motion.predict(means, np.stack([t.cov for t in self.tracks]))
            for t, m, c in zip(self.tracks, means, covs):
                t.mean, t.cov, t.embedded_now, t.det_xyxy = m, c, False, None
        return [TrackView(t.track_id, t.xyxy, t.embedding, t.last_embed_frame)
                for t in self.tracks if t.state in (TrackState.TENTATIVE, TrackState.CONFIRMED)]

    def update(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray,
               embeddings: np.ndarray | None = None, fresh: np.ndarray | None = None,
               image_wh: tuple[int, int] = (1920, 1080), include_lost: bool = False) -> list[TrackOutput]:
        """Associate this frame's detections (call :meth:`predict` first).

        Args:
            xyxy: (N, 4) float32 detection boxes, pixels.
            conf: (N,) float32 confidences.
            cls: (N,) int class ids.
            embeddings: (N, D) float32 L2-normalised, or ``None`` for motion-only tracking. Rows of
                low-score detections are not read.
            fresh: (N,) bool, True where the embedding was computed this frame (default: all True).
            image_wh: (W, H) of the frame, for the re-identification distance gate.
            include_lost: also report lost tracks (at their predicted box).

        Returns:
            Confirmed tracks matched this frame (plus lost ones if asked), ordered by id.
        """
        cfg = self.cfg
        n = len(xyxy)
        if fresh is None:
            fresh = np.ones(n, bool)
        high = np.flatnonzero(conf >= cfg.track_high_thresh)
        low = np.flatnonzero((conf >= cfg.track_low_thresh) & (conf < cfg.track_high_thresh))
        confirmed = [t for t in self.tracks if t.state == TrackState.CONFIRMED]
        lost = [t for t in self.tracks if t.state == TrackState.LOST]
        tentative = [t for t in self.tracks if t.state == TrackState.TENTATIVE]

        # 1. confirmed + lost x high, fused IoU / appearance cost
        pool = confirmed + lost
        pairs, um_pool, um_high = self._associate(pool, high, xyxy, conf, embeddings, cfg.match_thresh)
        for r, c in pairs:
            self._match(pool[r], high[c], xyxy, conf, cls, embeddings, fresh)
        remaining_high = high[um_high]

        # 2. unmatched confirmed x low, IoU only (ByteTrack)
        r_conf = [pool[i] for i in um_pool if pool[i].state == TrackState.CONFIRMED]
        cost = 1.0 - matching.iou_matrix(np.array([t.xyxy for t in r_conf]).reshape(-1, 4), xyxy[low])
        pairs2, um2, _ = matching.linear_assignment(cost, cfg.second_match_thresh, cfg.use_hungarian)
        for r, c in pairs2:
            self._match(r_conf[r], low[c], xyxy, conf, cls, None, fresh)

        # 3. tentative x remaining high
        pairs3, um_tent, um_high3 = self._associate(tentative, remaining_high, xyxy, conf, embeddings,
                                                    TENTATIVE_MATCH_THRESH)
        for r, c in pairs3:
            self._match(tentative[r], remaining_high[c], xyxy, conf, cls, embeddings, fresh)
        remaining_high = remaining_high[um_high3]
        for i in um_tent:
            tentative[i].state = TrackState.REMOVED

        # 4. lost x remaining high, appearance only: re-identification
        still_lost = [pool[i] for i in um_pool if pool[i].state == TrackState.LOST]
        if embeddings is not None and still_lost and len(remaining_high):
            remaining_high = self._reidentify(still_lost, remaining_high, xyxy, conf, cls, embeddings, fresh,
                                              image_wh[0])

        # 5. life cycle
        for t in self.tracks:
            if t.state == TrackState.CONFIRMED and t.last_seen != self.frame:
                t.state = TrackState.LOST
            elif t.state == TrackState.LOST and self.frame - t.last_seen > self.max_lost:
                t.state = TrackState.REMOVED
        for d in remaining_high:
            if conf[d] >= cfg.new_track_thresh:
                self._start(d, xyxy, conf, cls, embeddings, fresh)
        self.tracks = [t for t in self.tracks if t.state != TrackState.REMOVED]
        return self._outputs(include_lost)

    # -- steps -----------------------------------------------------------------------------------
    def _associate(self, tracks: list[Track], dets: np.ndarray, xyxy, conf, embeddings, thresh):
        if not tracks or not len(dets):
            return np.zeros((0, 2), int), np.arange(len(tracks)), np.arange(len(dets))
        iou = matching.iou_matrix(np.array([t.xyxy for t in tracks]), xyxy[dets])
        app = None
        if embeddings is not None:
            have = np.array([t.embedding is not None for t in tracks])
            if have.any():
                t_emb = np.stack([t.embedding if t.embedding is not None else np.zeros(embeddings.shape[1], np.float32)
                                  for t in tracks])
                app = matching.cosine_distance(t_emb, embeddings[dets])
                app[~have] = 2.0  # no appearance yet: never trusted
        cost = matching.fuse_iou_appearance(iou, app, conf[dets] if self.cfg.fuse_score else None,
                                            self.cfg.proximity_thresh, self.cfg.appearance_thresh)
        return matching.linear_assignment(cost, thresh, self.cfg.use_hungarian)

    def _reidentify(self, lost: list[Track], dets: np.ndarray, xyxy, conf, cls, embeddings, fresh, img_w):
        have = [t for t in lost if t.embedding is not None]
        if not have:
            return dets
        app = matching.cosine_distance(np.stack([t.embedding for t in have]), embeddings[dets])
        near = matching.centroid_distance(np.array([t.xyxy for t in have]), xyxy[dets], img_w) <= self.cfg.reid_max_dist
        cost = np.where(near, app, 2.0)
        pairs, _, um = matching.linear_assignment(cost, self.cfg.reid_thresh, self.cfg.use_hungarian)
        for r, c in pairs:
            self._match(have[r], dets[c], xyxy, conf, cls, embeddings, fresh)
        return dets[um]

    def _match(self, t: Track, d: int, xyxy, conf, cls, embeddings, fresh) -> None:
        t.mean, t.cov = motion.update(t.mean, t.cov, motion.xyxy_to_xywh(xyxy[d]))
        t.conf, t.cls, t.last_seen, t.det_xyxy = float(conf[d]), int(cls[d]), self.frame, xyxy[d].copy()
        t.hits += 1
        if t.state == TrackState.LOST or (t.state == TrackState.TENTATIVE and t.hits >= self.cfg.min_hits):
            t.state = TrackState.CONFIRMED
        if embeddings is not None and fresh[d]:
            self._update_embedding(t, embeddings[d])

    def _update_embedding(self, t: Track, e: np.ndarray) -> None:
        if t.embedding is None:
            t.embedding = e.astype(np.float32).copy()
        else:
            ema = self.cfg.alpha * t.embedding + (1.0 - self.cfg.alpha) * e
            t.embedding = (ema / max(np.linalg.norm(ema), 1e-12)).astype(np.float32)
        t.last_embed_frame, t.embedded_now = self.frame, True

    def _start(self, d: int, xyxy, conf, cls, embeddings, fresh) -> None:
        mean, cov = motion.initiate(motion.xyxy_to_xywh(xyxy[d]))
        state = TrackState.CONFIRMED if self.frame == 1 else TrackState.TENTATIVE
        t = Track(self._next_id, mean, cov, float(conf[d]), int(cls[d]), state, 1, self.frame, det_xyxy=xyxy[d].copy())
        self._next_id += 1
        if embeddings is not None and fresh[d]:
            self._update_embedding(t, embeddings[d])
        self.tracks.append(t)

    def _outputs(self, include_lost: bool) -> list[TrackOutput]:
        out = []
        for t in self.tracks:
            if t.state == TrackState.CONFIRMED and t.last_seen == self.frame:
                out.append(TrackOutput(t.track_id, t.det_xyxy, t.conf, t.cls, t.state, t.embedded_now))
            elif include_lost and t.state == TrackState.LOST:
                out.append(TrackOutput(t.track_id, t.xyxy, t.conf, t.cls, t.state, False))
        return sorted(out, key=lambda o: o.track_id)
