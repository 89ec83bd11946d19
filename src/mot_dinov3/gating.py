"""What this frame's association will read: which detections' embeddings, and which lost tracks a box
may be re-identified with (the lazy-memory scheduler embeds a lost track's buffered looks then).

The tracker's rules (:mod:`mot_dinov3.tracker`) decide where appearance enters the association; this
module states the same gates from :class:`~mot_dinov3.config.TrackerConfig` over the tracker's
read-only views, so a caller (the embedding scheduler's driver) can compute only what will be read.
It knows nothing of the scheduler, and the tracker knows nothing of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from mot_dinov3 import matching
from mot_dinov3.config import TrackerConfig


class GatedTrack(Protocol):
    """What the gates read of a track (:class:`mot_dinov3.track.TrackView`)."""

    @property
    def xyxy(self) -> np.ndarray: ...
    @property
    def last_obs(self) -> np.ndarray | None: ...
    @property
    def lost(self) -> bool: ...


class Gating:
    """The association's gates, from the tracker's thresholds.

    Args:
        cfg: the tracker's thresholds.
    """

    def __init__(self, cfg: TrackerConfig):
        self.cfg = cfg

    def reid_reach(self, tracks: Sequence[GatedTrack], xyxy: np.ndarray, image_w: int) -> np.ndarray:
        """(N, M) bool: detection i is within re-identification reach of track j: track j is lost and the
        box centres are at most ``reid_max_dist`` image widths from its last observation (the distance
        gate of the tracker's re-identification step).

        Args:
            tracks: the M views of this frame (:meth:`mot_dinov3.tracker.Tracker.predict`).
            xyxy: (N, 4) float32 detection boxes, pixels.
            image_w: frame width, pixels.
        """
        lost = np.array([t.lost for t in tracks], bool)
        reach = np.zeros((len(xyxy), len(tracks)), bool)
        if lost.any() and len(xyxy):
            last = np.array([t.last_obs for t, lo in zip(tracks, lost) if lo]).reshape(-1, 4)
            reach[:, lost] = (matching.centroid_distance(last, xyxy, image_w) <= self.cfg.reid_max_dist).T
        return reach

    def reads_embedding(self, conf: np.ndarray) -> np.ndarray:
        """(N,) bool: the detections whose embedding the tracker's update may read this frame; the others
        (low-score boxes, matched by IoU alone) are never read.

        Every high-score detection (``track_high_thresh``) may be read: within re-identification reach
        of a lost track it may be that track back (re-identification, the appearance veto); elsewhere it
        starts a track when nothing takes it, and the embedding is the new track's first memory; in
        between, where its IoU with a track passes the proximity gate, appearance enters the fused cost.

        Args:
            conf: (N,) float32 confidences.
        """
        return np.asarray(conf) >= self.cfg.track_high_thresh
