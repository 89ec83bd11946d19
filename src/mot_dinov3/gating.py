"""What this frame's association will read: which detections' embeddings, and which lost tracks a box
may be re-identified with.

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

    xyxy: np.ndarray
    last_obs: np.ndarray
    lost: bool


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

    def reads_embedding(self, tracks: Sequence[GatedTrack], xyxy: np.ndarray, conf: np.ndarray,
                        reach: np.ndarray) -> np.ndarray:
        """(N,) bool: the detections whose embedding the tracker's update may read this frame; the others
        are never read.

        A high-score detection is read when it may start a track (``new_track_thresh``), when its IoU
        with a track's predicted box passes the proximity gate (the fused cost of the first and tentative
        associations), when a lost track could take it in the first association (IoU cost below
        ``match_thresh``: the appearance veto), or when it is within re-identification reach of a lost
        track (``reach``; the boxes the last-observation recovery's veto reads overlap a lost track's
        last observation, so they are in that reach too, except for boxes wider than about 60% of the
        frame, which fall back to IoU). Low-score boxes are matched by IoU alone.

        Args:
            tracks: the views of this frame.
            xyxy: (N, 4) float32 detection boxes, pixels.
            conf: (N,) float32 confidences.
            reach: (N, M) bool, :meth:`reid_reach` of these boxes.
        """
        cfg = self.cfg
        read = conf >= cfg.new_track_thresh
        if len(tracks) and len(xyxy):
            iou = matching.iou_matrix(xyxy, np.array([t.xyxy for t in tracks]))
            read |= (iou > 1.0 - cfg.proximity_thresh).any(axis=1)
            lost = [i for i, t in enumerate(tracks) if t.lost]
            if lost:
                d_iou = matching.fuse_iou_appearance(iou[:, lost].T, None, conf if cfg.fuse_score else None,
                                                     cfg.proximity_thresh, cfg.appearance_thresh)
                read |= (d_iou < cfg.match_thresh).any(axis=0)
                read |= reach.any(axis=1)
        return (conf >= cfg.track_high_thresh) & read
