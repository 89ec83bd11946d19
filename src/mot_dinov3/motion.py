"""Constant-velocity Kalman filter on ``xywh`` (centre x, centre y, width, height) boxes.

State ``[x, y, w, h, vx, vy, vw, vh]``; noise scales with the box size, as in BoT-SORT's
``KalmanFilterXYWH`` (Aharon et al., arXiv 2206.14651), itself from SORT/DeepSORT (arXiv 1703.07402).
Pure functions on K tracks' (K, 8) means and (K, 8, 8) covariances.
"""

from __future__ import annotations

import numpy as np

STD_POSITION = 1.0 / 20
STD_VELOCITY = 1.0 / 160
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)  # one frame of constant velocity


def xyxy_to_xywh(b: np.ndarray) -> np.ndarray:
    """(…, 4) xyxy -> (…, 4) centre-x, centre-y, width, height."""
    b = np.asarray(b, np.float64)
    return np.concatenate([(b[..., :2] + b[..., 2:]) / 2, b[..., 2:] - b[..., :2]], axis=-1)


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """(…, 4) centre-x, centre-y, width, height -> (…, 4) xyxy."""
    b = np.asarray(b, np.float64)
    return np.concatenate([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], axis=-1)


def initiate(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New track from one (4,) xywh measurement -> mean (8,), covariance (8, 8)."""
    mean = np.r_[z, np.zeros(4)]
    w, h = z[2], z[3]
    std = np.array(
        [
            2 * STD_POSITION * w,
            2 * STD_POSITION * h,
            2 * STD_POSITION * w,
            2 * STD_POSITION * h,
            10 * STD_VELOCITY * w,
            10 * STD_VELOCITY * h,
            10 * STD_VELOCITY * w,
            10 * STD_VELOCITY * h,
        ]
    )
    return mean, np.diag(std**2)


def predict(means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-frame prediction for K tracks: means (K, 8), covs (K, 8, 8) -> the same shapes."""
    if len(means) == 0:
        return means, covs
    w, h = means[:, 2], means[:, 3]
    std = np.stack(
        [
            STD_POSITION * w,
            STD_POSITION * h,
            STD_POSITION * w,
            STD_POSITION * h,
            STD_VELOCITY * w,
            STD_VELOCITY * h,
            STD_VELOCITY * w,
            STD_VELOCITY * h,
        ],
        axis=1,
    )
    q = np.zeros_like(covs)
    idx = np.arange(8)
    q[:, idx, idx] = std**2
    return means @ _F.T, _F @ covs @ _F.T + q


def _measurement_var(w, h) -> np.ndarray:
    """(..., 4) measurement noise variances of an xywh observation of a box of width ``w``, height ``h``."""
    w, h = np.asarray(w, np.float64), np.asarray(h, np.float64)
    return np.stack([STD_POSITION * w, STD_POSITION * h, STD_POSITION * w, STD_POSITION * h], axis=-1) ** 2


def update(means: np.ndarray, covs: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correct K tracks with one xywh measurement each: means (K, 8), covs (K, 8, 8), z (K, 4) -> the new
    means (K, 8) and covariances (K, 8, 8). The measurement matrix picks the state's first four entries,
    so its products are slices (the same numbers)."""
    s = covs[:, :4, :4] + _measurement_var(means[:, 2], means[:, 3])[:, :, None] * np.eye(4)  # (K, 4, 4)
    gain = np.linalg.solve(s, covs[:, :, :4].transpose(0, 2, 1)).transpose(0, 2, 1)  # (K, 8, 4)
    new_means = means + (gain @ (z - means[:, :4])[:, :, None])[:, :, 0]
    return new_means, covs - gain @ s @ gain.transpose(0, 2, 1)


def warp_states(means: np.ndarray, covs: np.ndarray, warp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a (2, 3) affine camera warp to K Kalman states (BoT-SORT GMC, arXiv 2206.14651 eq. 6-7).

    The linear part rotates/scales every (x, y)-like pair of the state (centre, size and their
    velocities); the translation moves the centre. Shapes: means (K, 8), covs (K, 8, 8).
    """
    if len(means) == 0:
        return means, covs
    big = np.kron(np.eye(4), warp[:, :2])
    means = means @ big.T
    means[:, :2] += warp[:, 2]
    return means, big @ covs @ big.T


def warp_boxes(xyxy: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine warp to (K, 4) xyxy boxes (their two corners)."""
    pts = np.asarray(xyxy, np.float64).reshape(-1, 2)
    return (pts @ warp[:, :2].T + warp[:, 2]).reshape(-1, 4).astype(np.float32)


def gating_distance(means: np.ndarray, covs: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(K, N) squared Mahalanobis distance of N box centres to K predicted track centres.

    Uses the position block of each state covariance plus the measurement noise (DeepSORT's gate,
    arXiv 1703.07402, on the centre only: compare with the chi-square quantile for 2 degrees of freedom,
    e.g. 9.21 at 99%). Shapes: means (K, 8), covs (K, 8, 8), xy (N, 2) pixels.
    """
    means = np.asarray(means, np.float64).reshape(-1, 8)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    r = _measurement_var(means[:, 2], means[:, 3])[:, :2, None] * np.eye(2)  # (K, 2, 2) diagonal
    s = np.asarray(covs, np.float64).reshape(-1, 8, 8)[:, :2, :2] + r
    d = xy[None, :, :] - means[:, None, :2]  # (K, N, 2)
    return np.einsum("kni,kij,knj->kn", d, np.linalg.inv(s), d)
