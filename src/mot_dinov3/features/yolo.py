"""The detector's own neck features as appearance embeddings (zero extra cost).

The detector captures the ``Detect`` head's input maps and keeps, for each box NMS kept, the cell it
came from (see :mod:`mot_dinov3.detector`); this backend only L2-normalises them. The approach follows
Ultralytics' BoT-SORT ``model: auto`` ReID and the YOLO-features ReID tutorial (Yasin, 2025).
"""

from __future__ import annotations

import numpy as np

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import l2_normalize


class YoloFeatureEmbedder:
    """Embeds with the detector features passed as ``det_feats`` (64-D for YOLOv8n/YOLO11n)."""

    name = "yolo"
    uses_detector_features = True
    cost_free = True

    def __init__(self, cfg: EmbedderConfig):
        self.cfg = cfg
        self.dim = 0  # known after the first frame with detections

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        """Return ``det_feats`` (M, C) as float32, L2-normalised.

        Raises:
            UserError: the detector did not capture features.
        """
        if det_feats is None:
            raise UserError("embedder='yolo': the detector captured no features; pass a YOLOv8/YOLO11 .pt file as det=")
        if len(xyxy) == 0:
            return np.zeros((0, self.dim), np.float32)
        self.dim = det_feats.shape[1]
        return l2_normalize(det_feats)

    def synchronize(self) -> None:
        """Features were computed inside the detector: nothing to wait for."""
