"""Global motion compensation (GMC): the camera's frame-to-frame motion as a 2x3 affine warp.

Follows BoT-SORT's camera motion compensation (Aharon et al., arXiv 2206.14651, section 3.2):
the previous and current frames are converted to grey and downscaled, then either

* ``sparseOptFlow``: Shi-Tomasi corners tracked with pyramidal Lucas-Kanade optical flow, and a
  partial affine (rotation, uniform scale, translation) fitted with RANSAC
  (``cv2.goodFeaturesToTrack``, ``cv2.calcOpticalFlowPyrLK``, ``cv2.estimateAffinePartial2D``); or
* ``ecc``: OpenCV's enhanced correlation coefficient maximisation (``cv2.findTransformECC``, Euclidean).

A warp whose motion stays below ``static_px`` pixels everywhere in the frame is snapped to the
identity, so a static camera gets no correction at all (and no estimation noise). After
``static_frames`` static frames in a row the camera counts as static and GMC is off: it only checks
every ``recheck_every`` frames, against the frame of the last check, and resumes frame-to-frame
estimation (returning the motion since that frame) as soon as the camera moves. ``none`` turns GMC
off for good. The tracker applies the warp to its Kalman states (:func:`mot_dinov3.motion.warp_states`).
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
        static_frames: this many static estimates in a row switch to the static-camera mode (0: never).
        recheck_every: in static-camera mode, look for camera motion every this many frames.

    Attributes:
        estimations: number of frames on which a warp was actually estimated (for tests and profiling).

    Raises:
        UserError: unknown ``method``.
    """

    def __init__(
        self,
        method: str = "sparseOptFlow",
        max_width: int = 320,
        static_px: float = 1.0,
        static_frames: int = 10,
        recheck_every: int = 5,
    ):
        check_method(method)
        self.method = method
        self.max_width = max_width
        self.static_px = static_px
        self.static_frames = static_frames
        self.recheck_every = max(1, recheck_every)
        self.estimations = 0
        self._prev: np.ndarray | None = None
        self._prev_pts: np.ndarray | None = None
        self._static_run = 0  # static estimates in a row
        self._skipped = 0  # frames skipped since the last check (static-camera mode)

    @property
    def camera_static(self) -> bool:
        """True once ``static_frames`` static estimates came in a row (until the camera moves)."""
        return 0 < self.static_frames <= self._static_run

    def estimate(self, image: np.ndarray) -> np.ndarray:
        """(2, 3) float64 warp mapping previous-frame pixel coordinates to this frame's (identity on the
        first frame, for ``none``, for a static camera and when estimation fails). In static-camera
        mode, frames between checks return the identity without any work; a check that finds motion
        returns the motion since the previous check."""
        if self.method == "none":
            return IDENTITY.copy()
        if self.camera_static:
            self._skipped += 1
            if self._skipped < self.recheck_every:
                return IDENTITY.copy()
            self._skipped = 0
        warp, static = self._estimate(image)
        self._static_run = self._static_run + 1 if static else 0
        return warp

    def _estimate(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """(warp from the frame held in ``_prev``, True if it was estimated and static)."""
        h, w = image.shape[:2]
        scale = min(1.0, self.max_width / w)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if scale < 1.0:
            grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        prev, self._prev = self._prev, grey
        if prev is None or prev.shape != grey.shape:
            self._prev_pts = self._corners(grey) if self.method == "sparseOptFlow" else None
            return IDENTITY.copy(), False
        self.estimations += 1
        small = self._sparse_flow(prev, grey) if self.method == "sparseOptFlow" else self._ecc(prev, grey)
        if small is None:
            return IDENTITY.copy(), False
        warp = small.copy()
        warp[:, 2] /= scale  # translation back to full-resolution pixels
        if is_static(warp, (w, h), self.static_px):
            return IDENTITY.copy(), True
        return warp, False

    @staticmethod
    def _corners(grey: np.ndarray) -> np.ndarray | None:
        return cv2.goodFeaturesToTrack(grey, maxCorners=400, qualityLevel=0.01, minDistance=4, blockSize=3)

    def _sparse_flow(self, prev: np.ndarray, grey: np.ndarray) -> np.ndarray | None:
        pts, self._prev_pts = self._prev_pts, self._corners(grey)
        if pts is None or len(pts) < 8:
            return None
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, grey, pts, np.empty_like(pts))  # nextPts: output only
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
            full_mask = np.full(prev.shape, 255, np.uint8)  # the same result as no mask
            _, found = cv2.findTransformECC(prev, grey, warp, cv2.MOTION_EUCLIDEAN, criteria, full_mask, 1)
        except cv2.error:  # did not converge
            return None
        return np.asarray(found, dtype=np.float64)
