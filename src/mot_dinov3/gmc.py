"""Global motion compensation (GMC): the camera's frame-to-frame motion as a 2x3 affine warp.

Follows BoT-SORT's camera motion compensation (Aharon et al., arXiv 2206.14651, section 3.2):
the previous and current frames are converted to grey and downscaled, then either

* ``sparseOptFlow``: Shi-Tomasi corners tracked with pyramidal Lucas-Kanade optical flow, and a
  partial affine (rotation, uniform scale, translation) fitted with RANSAC
  (``cv2.goodFeaturesToTrack``, ``cv2.calcOpticalFlowPyrLK``, ``cv2.estimateAffinePartial2D``); or
* ``ecc``: OpenCV's enhanced correlation coefficient maximisation (``cv2.findTransformECC``, Euclidean).

A warp whose motion stays below ``static_px`` pixels everywhere in the frame is snapped to the
identity, so a static camera gets no correction at all (and no estimation noise). ``none`` turns
GMC off. The tracker applies the warp to its Kalman states (:func:`mot_dinov3.motion.warp_states`).
"""

from __future__ import annotations

import cv2
import numpy as np

from mot_dinov3.errors import UserError

METHODS = ("sparseOptFlow", "ecc", "none")
IDENTITY = np.eye(2, 3)


def check_method(method: str) -> None:
    """Raise :class:`UserError` unless ``method`` is one of :data:`METHODS`."""
    if method not in METHODS:
        raise UserError(f"gmc_method {method!r}: unknown; use one of {', '.join(METHODS)} in the tracker config")


def is_static(warp: np.ndarray, size_wh: tuple[int, int], static_px: float) -> bool:
    """True when ``warp`` (2x3) moves every corner of a ``size_wh`` frame by less than ``static_px`` pixels."""
    w, h = size_wh
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    moved = corners @ warp.T
    return bool(np.abs(moved - corners[:, :2]).max() < static_px)


class CameraMotion:
    """Estimate the affine warp from the previous frame to the current one.

    Args:
        method: ``sparseOptFlow``, ``ecc`` or ``none``.
        max_width: frames are downscaled to at most this width (pixels) before estimation.
        static_px: warps moving no frame corner by this many pixels (full resolution) count as static.

    Raises:
        UserError: unknown ``method``.
    """

    def __init__(self, method: str = "sparseOptFlow", max_width: int = 320, static_px: float = 1.0):
        check_method(method)
        self.method = method
        self.max_width = max_width
        self.static_px = static_px
        self._prev: np.ndarray | None = None
        self._prev_pts: np.ndarray | None = None

    def estimate(self, image: np.ndarray) -> np.ndarray:
        """(2, 3) float64 warp mapping previous-frame pixel coordinates to this frame's (identity on the
        first frame, for ``none``, for a static camera and when estimation fails)."""
        if self.method == "none":
            return IDENTITY.copy()
        h, w = image.shape[:2]
        scale = min(1.0, self.max_width / w)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if scale < 1.0:
            grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        prev, self._prev = self._prev, grey
        if prev is None or prev.shape != grey.shape:
            self._prev_pts = self._corners(grey) if self.method == "sparseOptFlow" else None
            return IDENTITY.copy()
        small = self._sparse_flow(prev, grey) if self.method == "sparseOptFlow" else self._ecc(prev, grey)
        if small is None:
            return IDENTITY.copy()
        warp = small.copy()
        warp[:, 2] /= scale  # translation back to full-resolution pixels
        return IDENTITY.copy() if is_static(warp, (w, h), self.static_px) else warp

    @staticmethod
    def _corners(grey: np.ndarray) -> np.ndarray | None:
        return cv2.goodFeaturesToTrack(grey, maxCorners=400, qualityLevel=0.01, minDistance=4, blockSize=3)

    def _sparse_flow(self, prev: np.ndarray, grey: np.ndarray) -> np.ndarray | None:
        pts, self._prev_pts = self._prev_pts, self._corners(grey)
        if pts is None or len(pts) < 8:
            return None
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, None)
        ok = status.reshape(-1).astype(bool)
        if ok.sum() < 8:
            return None
        warp, _ = cv2.estimateAffinePartial2D(pts[ok], nxt[ok], method=cv2.RANSAC, ransacReprojThreshold=0.5)
        return warp

    @staticmethod
    def _ecc(prev: np.ndarray, grey: np.ndarray) -> np.ndarray | None:
        warp = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
        try:
            _, warp = cv2.findTransformECC(prev, grey, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1)
        except cv2.error:  # did not converge
            return None
        return warp.astype(np.float64)
