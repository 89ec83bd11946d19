"""Tracking points through frames by the cosine similarity of patch features.

Each point keeps a target feature: its patch's feature in the first frame, or with ``ema > 0`` an
exponential moving average of the features it was found at. In every frame the best-matching cell is
searched in a window around the point's last position; when even that best similarity is below
``lost_below`` the point is *lost*: it keeps its last position (it does not jump to whatever is most similar
elsewhere) and its target, and is found again once a cell of the window matches above the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from mot_dinov3.dense.features import DEFAULT_MODEL, Model, PatchGrid, as_extractor, stream_features
from mot_dinov3.dense.match import normalize
from mot_dinov3.errors import UserError


@dataclass(frozen=True)
class PointState:
    """Where the tracked points are in one frame.

    Attributes:
        cells: (N, 2) int64 (col, row) cells (the last position found, for lost points).
        similarity: (N,) float32 best cosine similarity to the target in the search window, in [-1, 1]
            (the confidence).
        lost: (N,) bool, similarity below the tracker's ``lost_below``.
    """

    cells: np.ndarray
    similarity: np.ndarray
    lost: np.ndarray


class PointTracker:
    """Tracks N points on patch-feature grids of one size.

    Args:
        feat: (h, w, D) features of the first frame.
        cells: (N, 2) (col, row) cells of the points in it (:meth:`PatchGrid.to_cell` of pixels).
        window: search radius, cells: a point moves at most this many cells per frame in x and y.
        ema: weight of the newest feature in the target's moving average, 0 (fixed target) to 1.
        lost_below: similarity under which a point is lost, in [-1, 1].

    Raises:
        UserError: a cell outside the grid, a negative ``window`` or ``ema`` outside [0, 1].
    """

    def __init__(self, feat: np.ndarray, cells: np.ndarray, window: int = 3, ema: float = 0.0, lost_below: float = 0.5):
        feat = np.asarray(feat)
        if feat.ndim != 3:
            raise UserError(f"feat of shape {feat.shape}: expected (h, w, D) patch features")
        if window < 0:
            raise UserError(f"window={window}: must be >= 0 cells")
        if not 0.0 <= ema <= 1.0:
            raise UserError(f"ema={ema}: must be between 0 (fixed target) and 1")
        self.grid_hw = feat.shape[:2]
        h, w = self.grid_hw
        c = np.asarray(cells, np.int64).reshape(-1, 2)
        if ((c[:, 0] < 0) | (c[:, 0] >= w) | (c[:, 1] < 0) | (c[:, 1] >= h)).any():
            raise UserError(f"cells: a point outside the {w}x{h} patch grid (cells are (col, row))")
        self.window, self.ema, self.lost_below = int(window), float(ema), float(lost_below)
        self.target = normalize(feat[c[:, 1], c[:, 0]])
        self.state = PointState(c.copy(), np.ones(len(c), np.float32), np.zeros(len(c), bool))

    def update(self, feat: np.ndarray) -> PointState:
        """Find the points in the next frame's (h, w, D) features; returns (and keeps) their new state."""
        feat = np.asarray(feat)
        if feat.shape[:2] != self.grid_hw:
            raise UserError(f"feat of shape {feat.shape}: the tracker's grid is {self.grid_hw} (h, w)")
        h, w = self.grid_hw
        r = self.window
        cells = self.state.cells.copy()
        sims = np.zeros(len(cells), np.float32)
        lost = np.zeros(len(cells), bool)
        for i, (col, row) in enumerate(self.state.cells):
            r0, r1 = max(0, row - r), min(h, row + r + 1)
            c0, c1 = max(0, col - r), min(w, col + r + 1)
            patch = normalize(feat[r0:r1, c0:c1])
            sim = patch @ self.target[i]  # (rows, cols)
            k = int(sim.argmax())
            best_row, best_col = divmod(k, sim.shape[1])
            sims[i] = float(sim.flat[k])
            if sims[i] < self.lost_below:
                lost[i] = True  # hold the last position and the target
                continue
            cells[i] = (c0 + best_col, r0 + best_row)
            if self.ema > 0:
                self.target[i] = normalize((1 - self.ema) * self.target[i] + self.ema * patch[best_row, best_col])
        self.state = PointState(cells, sims, lost)
        return self.state


@dataclass(frozen=True)
class PointFrame:
    """The tracked points in one frame of :func:`track_points`.

    Attributes:
        index: 0-based frame number.
        xy: (N, 2) float64 (x, y) pixels: the cell centre plus the point's offset in its first cell.
        similarity: (N,) float32 confidence (1 in the first frame).
        lost: (N,) bool.
        grid: the frame's :class:`PatchGrid`.
    """

    index: int
    xy: np.ndarray
    similarity: np.ndarray
    lost: np.ndarray
    grid: PatchGrid


def track_points(
    frames: Iterable[np.ndarray],
    points_xy: np.ndarray,
    model: Model = DEFAULT_MODEL,
    size: int | None = None,
    device: str | None = None,
    batch_size: int = 4,
    window: int = 3,
    ema: float = 0.0,
    lost_below: float = 0.5,
) -> Iterator[PointFrame]:
    """Track points given in the first frame through a stream of frames.

    Patch features are computed once per frame (``batch_size`` frames per forward pass).

    Args:
        frames: (H, W, 3) uint8 BGR frames of one size.
        points_xy: (N, 2) (x, y) pixels in the first frame.
        model, size, device: as :func:`~mot_dinov3.dense.patch_features`.
        batch_size: frames per forward pass.
        window, ema, lost_below: as :class:`PointTracker`.

    Yields:
        One :class:`PointFrame` per frame, the first included.

    Raises:
        UserError: a point outside the first frame, or what :class:`PointTracker` raises.
    """
    points = np.asarray(points_xy, np.float64).reshape(-1, 2)
    extractor = as_extractor(model, device)
    tracker: PointTracker | None = None
    offset = np.zeros_like(points)
    for index, (feat, grid) in enumerate(stream_features(frames, extractor, size, batch_size=batch_size)):
        if tracker is None:
            cells = grid.to_cell(points, name="points_xy")
            offset = points - grid.to_pixel(cells)
            tracker = PointTracker(feat, cells, window=window, ema=ema, lost_below=lost_below)
            state = tracker.state
        else:
            state = tracker.update(feat)
        height, width = grid.image_hw
        xy = grid.to_pixel(state.cells) + offset
        xy = np.clip(xy, 0.0, [width - 1e-3, height - 1e-3])
        yield PointFrame(index, xy, state.similarity, state.lost, grid)
