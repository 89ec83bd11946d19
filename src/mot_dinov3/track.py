"""One track's state (:class:`Track`, internal to the tracker) and the read-only views the tracker
hands out: :class:`TrackView` to the embedding scheduler, :class:`TrackOutput` to the caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from mot_dinov3 import motion


class TrackState(IntEnum):
    """Life cycle: tentative -> confirmed (``min_hits`` matches) -> lost -> confirmed again or removed."""

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
    last_obs: np.ndarray  # (4,) float32 xyxy of the last matched detection
    embedding: np.ndarray | None = None  # (D,) float32 L2-normalised EMA
    last_embed_frame: int = 0  # frame of the last fresh embedding
    samples: int = 0  # fresh embeddings absorbed into the EMA over the track's life
    start_frame: int = 0  # frame the track was started
    det_xyxy: np.ndarray | None = None  # (4,) the box matched this frame
    det_index: int = -1  # its row in this frame's detections
    embedded_now: bool = False
    xyxy: np.ndarray = field(init=False, repr=False)  # (4,) float32 box of the Kalman state (see set_state)

    def __post_init__(self) -> None:
        self.set_state(self.mean, self.cov)

    def set_state(self, mean: np.ndarray, cov: np.ndarray, xyxy: np.ndarray | None = None) -> None:
        """Set the Kalman state and the box it stands for (``xyxy``: (4,) float32, computed from ``mean``
        when not given). Assign the state only through here, so the box never goes stale."""
        self.mean, self.cov = mean, cov
        self.xyxy = motion.xywh_to_xyxy(mean[:4]).astype(np.float32) if xyxy is None else xyxy


@dataclass(frozen=True)
class TrackView:
    """Read-only view of a track (for the gates and the embedding scheduler).

    Attributes:
        track_id: the track id.
        xyxy: (4,) float32 predicted box for the current frame, pixels.
        embedding: (D,) float32 cached EMA embedding, or ``None``.
        last_embed_frame: frame (1-based) of the last fresh embedding; 0 if never.
        lost: the track is lost (kept for re-identification), not active.
        last_seen: frame (1-based) of the track's last matched detection.
        start_frame: frame (1-based) the track was started.
        last_obs: (4,) float32 xyxy of its last matched detection (camera-motion compensated), pixels.
    """

    track_id: int
    xyxy: np.ndarray
    embedding: np.ndarray | None
    last_embed_frame: int
    lost: bool = False
    last_seen: int = 0
    start_frame: int = 0
    last_obs: np.ndarray | None = None


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
        det_index: the row of this frame's detections the track was matched to (-1 for lost tracks).
    """

    track_id: int
    xyxy: np.ndarray
    conf: float
    cls: int
    state: TrackState
    embedded_now: bool
    det_index: int = -1
