"""Principal components of patch features: a fit shared by matching, and the RGB picture of a feature map.

The picture follows the DINOv2 paper (Oquab et al., arXiv 2304.07193, section 7.4 and figure 1): the first
three principal components of the patch features, one per colour channel; optionally the patches are first
split into foreground and background by thresholding the first component, and the three components are
refitted on the foreground patches only (the background is drawn black).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mot_dinov3.errors import UserError


@dataclass(frozen=True)
class Pca:
    """A fitted PCA: ``project(x) = (x - mean) @ components.T``.

    Attributes:
        mean: (D,) float32.
        components: (k, D) float32, orthonormal rows, by decreasing explained variance.
        variance: (k,) float32 variance along each component.
    """

    mean: np.ndarray
    components: np.ndarray
    variance: np.ndarray

    def project(self, x: np.ndarray) -> np.ndarray:
        """(..., D) -> (..., k) float32."""
        return ((np.asarray(x, np.float32) - self.mean) @ self.components.T).astype(np.float32, copy=False)


def fit_pca(x: np.ndarray, k: int) -> Pca:
    """Fit the first ``k`` principal components of the rows of ``x`` (SVD of the centred data).

    Each component's sign is chosen so that its largest-magnitude loading is positive (deterministic).

    Args:
        x: (N, D) features (any float dtype); N >= 1.
        k: number of components, 1 <= k <= D (capped at N).

    Raises:
        UserError: ``k`` out of range.
    """
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    d = x.shape[1]
    if not 1 <= k <= d:
        raise UserError(f"pca_dim={k}: must be between 1 and the feature size {d}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    vt = vt[: min(k, len(vt))]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    var = (s[: len(vt)] ** 2) / max(1, len(x) - 1)
    return Pca(mean.astype(np.float32), vt.astype(np.float32), var.astype(np.float32))


def _to_unit(c: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each column min-max scaled to [0, 1] over the valid rows (1st-99th percentile, clipped)."""
    out = np.zeros_like(c, dtype=np.float32)
    if not valid.any():
        return out
    lo, hi = np.percentile(c[valid], [1, 99], axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    return np.clip((c - lo) / span, 0.0, 1.0).astype(np.float32)


def foreground_mask(feat: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """The DINOv2 paper's foreground split: patches whose first principal component exceeds ``threshold``.

    The component is divided by its standard deviation (``threshold`` is in those units; 0 is the paper's
    "positive value") and its sign chosen so the foreground is the smaller side at threshold 0 (the
    background usually covers more of the image).

    Args:
        feat: (h, w, D) patch features.
        threshold: in standard deviations of the first component.

    Returns:
        (h, w) bool, True for foreground patches.
    """
    h, w, d = feat.shape
    x = feat.reshape(h * w, d)
    first = fit_pca(x, 1).project(x)[:, 0]
    first = first / max(float(first.std()), 1e-12)
    if (first > 0).sum() > (first < 0).sum():
        first = -first
    return (first > threshold).reshape(h, w)


def pca_rgb(
    feat: np.ndarray,
    n: int = 3,
    foreground: bool | float | np.ndarray | None = None,
    size_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """The first principal components of a feature map as an RGB picture.

    Args:
        feat: (h, w, D) patch features (:func:`~mot_dinov3.dense.patch_features`).
        n: components shown, 1 to 3: the first ``n`` go to red, green, blue in that order (the others
            black); ``n=1`` is drawn grey.
        foreground: ``None`` / ``False``: every patch; ``True``: the DINOv2 paper's split
            (:func:`foreground_mask` at threshold 0) and components refitted on the foreground; a float:
            that threshold; an (h, w) bool array: this mask. Background patches are black.
        size_hw: (H, W) pixels of the picture, normally the input image's (default: the grid, one pixel a
            patch); cells are scaled up without smoothing so each patch stays visible.

    Returns:
        (H, W, 3) uint8 RGB (``cv2.cvtColor(x, cv2.COLOR_RGB2BGR)`` before ``cv2.imwrite``).

    Raises:
        UserError: ``n`` out of range, a mask of the wrong shape, or ``feat`` not (h, w, D).
    """
    feat = np.asarray(feat)
    if feat.ndim != 3:
        raise UserError(f"feat of shape {feat.shape}: expected (h, w, D) patch features")
    if n not in (1, 2, 3):
        raise UserError(f"n={n}: must be 1, 2 or 3 (components shown as colour channels)")
    h, w, d = feat.shape
    x = feat.reshape(h * w, d).astype(np.float32)
    if foreground is None or foreground is False:
        mask = np.ones(h * w, bool)
    elif isinstance(foreground, np.ndarray):
        if foreground.shape != (h, w):
            raise UserError(f"foreground of shape {foreground.shape}: expected an ({h}, {w}) bool mask")
        mask = foreground.astype(bool).reshape(-1)
    else:
        threshold = 0.0 if foreground is True else float(foreground)
        mask = foreground_mask(feat, threshold).reshape(-1)
    rgb = np.zeros((h * w, 3), np.float32)
    if mask.any():
        k = min(n, d)
        comps = fit_pca(x[mask], k).project(x)
        unit = _to_unit(comps, mask)
        if n == 1:
            rgb[:] = unit[:, :1]
        else:
            rgb[:, : unit.shape[1]] = unit
        rgb[~mask] = 0.0
    out: np.ndarray = (rgb.reshape(h, w, 3) * 255.0 + 0.5).astype(np.uint8)
    if size_hw is not None and tuple(size_hw) != (h, w):
        out = cv2.resize(out, (int(size_hw[1]), int(size_hw[0])), interpolation=cv2.INTER_NEAREST)
    return out
