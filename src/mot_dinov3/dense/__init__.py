"""Dense DINOv2 / DINOv3 features: patch features on a grid, point matching, PCA pictures, point tracking.

Example::

    import cv2
    from mot_dinov3 import dense

    a, b = cv2.imread("a.jpg"), cv2.imread("b.jpg")
    ext = dense.load_extractor("dinov2_vits14")  # or a hub id, or a local folder
    fa, grid_a = dense.patch_features(a, model=ext, return_grid=True)  # (h, w, 384) float32
    fb, grid_b = dense.patch_features(b, model=ext, return_grid=True)
    m = dense.match_points(fa, fb, grid_a.to_cell([[320, 240]]), mutual=True)
    xy_b, similarity = grid_b.to_pixel(m.cells_b), m.similarity

The command line: ``mot-dinov3 dense match | pca | point-track`` (:mod:`mot_dinov3.dense.cli`).
"""

from mot_dinov3.dense.features import (
    DEFAULT_MODEL,
    DEFAULT_SIZE,
    DinoPatchExtractor,
    PatchExtractor,
    PatchGrid,
    load_extractor,
    patch_features,
    read_image,
    resolve_model,
    stream_features,
)
from mot_dinov3.dense.match import Matches, match_points
from mot_dinov3.dense.pca import Pca, fit_pca, foreground_mask, pca_rgb
from mot_dinov3.dense.point_track import PointFrame, PointState, PointTracker, track_points

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SIZE",
    "DinoPatchExtractor",
    "Matches",
    "Pca",
    "PatchExtractor",
    "PatchGrid",
    "PointFrame",
    "PointState",
    "PointTracker",
    "fit_pca",
    "foreground_mask",
    "load_extractor",
    "match_points",
    "patch_features",
    "pca_rgb",
    "read_image",
    "resolve_model",
    "stream_features",
    "track_points",
]
