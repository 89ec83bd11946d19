"""Point correspondences between two images by cosine similarity of their patch features.

For each query cell of image A the best match is the cell of image B whose feature has the highest
cosine similarity; with ``mutual=True`` a match is also checked the other way (the mutual nearest
neighbour test: B's cell's best match in A is the query cell). With ``pca_dim`` the features of both
images are first projected on their ``pca_dim`` first principal components, fitted on the two images'
patches together (as the DINOv2 paper's matching examples, Oquab et al., arXiv 2304.07193).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mot_dinov3.dense.pca import fit_pca
from mot_dinov3.errors import UserError


@dataclass(frozen=True)
class Matches:
    """The matches of N query cells.

    Attributes:
        cells_a: (N, 2) int64 (col, row) query cells in image A.
        cells_b: (N, 2) int64 (col, row) best-matching cells in image B.
        similarity: (N,) float32 cosine similarity of each pair, in [-1, 1].
        mutual: (N,) bool, whether each pair is a mutual nearest neighbour; ``None`` when not checked.
    """

    cells_a: np.ndarray
    cells_b: np.ndarray
    similarity: np.ndarray
    mutual: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cells_a)


def normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` scaled to unit L2 norm along ``axis`` (zero vectors stay zero), float32."""
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _check_cells(cells: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    c = np.asarray(cells)
    if c.size == 0:
        return np.zeros((0, 2), np.int64)
    c = c.reshape(-1, 2)
    if not np.issubdtype(c.dtype, np.integer):
        c = np.floor(c.astype(np.float64))
    c = c.astype(np.int64)
    h, w = grid_hw
    bad = (c[:, 0] < 0) | (c[:, 0] >= w) | (c[:, 1] < 0) | (c[:, 1] >= h)
    if bad.any():
        col, row = c[bad][0]
        raise UserError(
            f"points_a: cell ({col}, {row}) is outside the {w}x{h} patch grid (cells are (col, row); convert "
            "pixels with PatchGrid.to_cell)"
        )
    return c


def match_points(
    feat_a: np.ndarray,
    feat_b: np.ndarray,
    points_a: np.ndarray,
    pca_dim: int | None = None,
    mutual: bool = False,
) -> Matches:
    """Best cosine match in image B of each query cell of image A.

    Args:
        feat_a: (ha, wa, D) patch features of image A (:func:`~mot_dinov3.dense.patch_features`).
        feat_b: (hb, wb, D) patch features of image B.
        points_a: (N, 2) (col, row) cells of A (floats are floored); from pixels with
            :meth:`~mot_dinov3.dense.PatchGrid.to_cell`.
        pca_dim: project both feature maps on their first ``pca_dim`` principal components (fitted on the
            patches of A and B together) before matching; ``None``: the full features.
        mutual: also check each match the other way (mutual nearest neighbours).

    Returns:
        :class:`Matches`; cell B to pixels with :meth:`~mot_dinov3.dense.PatchGrid.to_pixel`.

    Raises:
        UserError: feature maps that are not (h, w, D) of one D, a cell outside A's grid, a bad ``pca_dim``.
    """
    feat_a, feat_b = np.asarray(feat_a), np.asarray(feat_b)
    if feat_a.ndim != 3 or feat_b.ndim != 3 or feat_a.shape[2] != feat_b.shape[2]:
        raise UserError(
            f"feat_a {feat_a.shape} and feat_b {feat_b.shape}: expected two (h, w, D) feature maps of one D"
        )
    cells_a = _check_cells(points_a, feat_a.shape[:2])
    (ha, wa, d), (hb, wb, _) = feat_a.shape, feat_b.shape
    a, b = feat_a.reshape(ha * wa, d), feat_b.reshape(hb * wb, d)
    if pca_dim is not None:
        pca = fit_pca(np.concatenate([a, b]), int(pca_dim))
        a, b = pca.project(a), pca.project(b)
    a, b = normalize(a), normalize(b)
    query = a[cells_a[:, 1] * wa + cells_a[:, 0]]
    sim = query @ b.T  # (N, hb * wb)
    best = sim.argmax(axis=1) if len(query) else np.zeros(0, np.int64)
    cells_b = np.stack([best % wb, best // wb], axis=1).astype(np.int64)
    similarity = sim[np.arange(len(best)), best].astype(np.float32) if len(query) else np.zeros(0, np.float32)
    is_mutual = None
    if mutual:
        back = (b[best] @ a.T).argmax(axis=1) if len(query) else np.zeros(0, np.int64)
        is_mutual = back == cells_a[:, 1] * wa + cells_a[:, 0]
    return Matches(cells_a, cells_b, similarity, is_mutual)
