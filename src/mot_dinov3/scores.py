"""Detection scores relative to the video's own score distribution.

The tracker's score thresholds (``track_high_thresh``, ``new_track_thresh``, the fused cost's
``1 - IoU x conf``) assume a detector whose clear objects score high. A smaller model, a crowd, small
or blurred people, or another detector make every score lower, and the same thresholds then leave
people untracked. :class:`ScoreNormaliser` rescales each frame's scores by how far the upper part of
the recent score distribution sits below a reference: with ``q`` the 75th percentile of the last
``WINDOW`` scores (once ``MIN_SCORES`` were seen), scores are divided by ``min(1, q / reference)``.
A video whose detections already reach the reference is left unchanged; scores are never lowered. Related to the confidence boost of
BoostTrack and BoostTrack++ (Stanojević and Todorović, Machine Vision and Applications 2024; arXiv
2408.13003), which raise the scores of low-score boxes that tracklets support; here every score of the
frame is raised by the video's score statistics instead, so births profit too.
"""

from __future__ import annotations

import numpy as np

QUANTILE = 0.75  # the upper quarter of the scores stands for "clearly seen objects"
WINDOW = 5000  # scores remembered (seconds of a crowd, minutes of a quiet scene); older ones drop out
MIN_SCORES = 1000  # fewer scores than this: no rescaling yet (a stable estimate of the percentile)


def score_scale(history: np.ndarray, reference: float) -> float:
    """``min(1, quantile(history, 0.75) / reference)``: the divisor for this frame's scores.

    Args:
        history: (K,) float32 recent scores (this frame's included).
        reference: the 75th-percentile score of a clear scene; 0, or fewer than ``MIN_SCORES``
            scores in ``history``, gives 1 (scores unchanged).
    """
    if reference <= 0 or len(history) < MIN_SCORES:
        return 1.0
    return max(min(1.0, float(np.quantile(history, QUANTILE)) / reference), 1e-6)


def rescale(conf: np.ndarray, scale: float) -> np.ndarray:
    """(N,) float32 scores ``conf / scale`` capped at 1 (``scale`` from :func:`score_scale`); each at
    least its input."""
    conf = np.asarray(conf, np.float32)
    return conf if scale >= 1.0 else np.minimum(conf / scale, 1.0).astype(np.float32)


class ScoreNormaliser:
    """:func:`score_scale` and :func:`rescale` over a video: remembers the last ``WINDOW`` scores.

    Args:
        reference: the 75th-percentile score of a clear scene (``TrackerConfig.score_reference``);
            0 switches rescaling off.
    """

    def __init__(self, reference: float):
        self.reference = reference
        self.scale = 1.0  # the last frame's divisor; 1: scores unchanged
        self._ring = np.zeros(WINDOW, np.float32)
        self._count = 0

    def __call__(self, conf: np.ndarray) -> np.ndarray:
        """This frame's (N,) float32 scores, rescaled; they join the history first."""
        conf = np.asarray(conf, np.float32).reshape(-1)
        if self.reference <= 0:
            return conf
        new = conf[-WINDOW:]
        self._ring[(self._count + np.arange(len(new))) % WINDOW] = new
        self._count += len(new)
        self.scale = score_scale(self._ring[: min(self._count, WINDOW)], self.reference)
        return rescale(conf, self.scale)
