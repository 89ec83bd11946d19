"""Association maths as pure functions: IoU, cosine distance, cost fusion, assignment."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M) float32 in [0, 1]."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0).astype(np.float32)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - a.b`` of (N, D) and (M, D) L2-normalised rows -> (N, M) float32 in [0, 2].

    Computed by ``einsum`` on one thread, not BLAS: the matrices of one frame are small, and BLAS worker
    threads spinning after each product take CPU from the run's other threads (the frame decoder)."""
    if len(a) == 0 or len(b) == 0:
        return np.ones((len(a), len(b)), np.float32)
    return np.clip(1.0 - np.einsum("nd,md->nm", np.asarray(a, np.float32), np.asarray(b, np.float32)), 0.0, 2.0)


def centroid_distance(a: np.ndarray, b: np.ndarray, norm: float) -> np.ndarray:
    """Distance between box centres of (N, 4) and (M, 4) xyxy boxes divided by ``norm`` (e.g. image width)."""
    ca = (np.asarray(a)[:, :2] + np.asarray(a)[:, 2:]) / 2
    cb = (np.asarray(b)[:, :2] + np.asarray(b)[:, 2:]) / 2
    return (np.linalg.norm(ca[:, None] - cb[None], axis=2) / max(norm, 1e-9)).astype(np.float32)


def fuse_iou_appearance(
    iou: np.ndarray,
    app_dist: np.ndarray | None,
    det_conf: np.ndarray | None,
    proximity_thresh: float,
    appearance_thresh: float,
) -> np.ndarray:
    """BoT-SORT cost fusion (Aharon et al., arXiv 2206.14651, eq. 12-13).

    ``d_iou = 1 - IoU`` (``1 - IoU * conf`` with confidences, BoT-SORT ``fuse_score``); the appearance cost
    ``d_app = cos_dist / 2`` is trusted only where the pair is close (``d_iou < proximity_thresh``) and
    similar (``cos_dist < appearance_thresh``), else set to 1; the fused cost is ``min(d_iou, d_app)``.

    Args:
        iou: (N, M) IoU of tracks x detections.
        app_dist: (N, M) cosine distance, or ``None`` for IoU only.
        det_conf: (M,) detection confidences for ``fuse_score``, or ``None``.

    Returns:
        (N, M) float32 cost in [0, 1].
    """
    d_iou: np.ndarray = 1.0 - iou
    if det_conf is not None:
        d_iou = 1.0 - iou * np.asarray(det_conf, np.float32)[None, :]
    if app_dist is None:
        return d_iou.astype(np.float32)
    d_app = app_dist / 2.0
    d_app = np.where((app_dist > appearance_thresh) | ((1.0 - iou) > proximity_thresh), 1.0, d_app)
    return np.minimum(d_iou, d_app).astype(np.float32)


def linear_assignment(
    cost: np.ndarray, thresh: float, hungarian: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match rows to columns with cost <= ``thresh``.

    Hungarian uses ``scipy.optimize.linear_sum_assignment``; greedy takes the cheapest remaining pair
    first (faster on huge matrices, not optimal).

    Returns:
        matches (K, 2) int row/col pairs, unmatched rows (int), unmatched cols (int).
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.zeros((0, 2), int), np.arange(n), np.arange(m)
    if hungarian:
        big = thresh + 1e4
        rows, cols = linear_sum_assignment(np.where(cost > thresh, big, cost))
        keep = cost[rows, cols] <= thresh
        pairs = np.stack([rows[keep], cols[keep]], axis=1)
    else:
        order = np.argsort(cost, axis=None)
        used_r, used_c, pairs_l = set(), set(), []
        for flat in order:
            r, c = divmod(int(flat), m)
            if cost[r, c] > thresh:
                break
            if r not in used_r and c not in used_c:
                used_r.add(r)
                used_c.add(c)
                pairs_l.append((r, c))
        pairs = np.array(pairs_l, int).reshape(-1, 2)
    return (pairs, np.setdiff1d(np.arange(n), pairs[:, 0]), np.setdiff1d(np.arange(m), pairs[:, 1]))
