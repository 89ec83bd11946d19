"""The embedder contract and the crop / batch helpers every backend shares.

An embedder maps (image, boxes) to one L2-normalised appearance vector per box. Backends know
nothing about tracks or the scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Appearance embedding backend.

    Attributes:
        name: short backend name (``dino``, ``clip``, ``onnx``, ``yolo``).
        dim: embedding size D.
        uses_detector_features: the backend reads ``det_feats`` (the detector must capture them).
        cost_free: embeddings come with the detection at no extra cost, so scheduling saves nothing.
    """

    name: str
    dim: int
    uses_detector_features: bool
    cost_free: bool

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        """Embed the given boxes of one frame.

        Args:
            image: (H, W, 3) uint8 BGR frame.
            xyxy: (M, 4) float32 boxes in pixels.
            det_feats: (M, C) float32 detector features for the same boxes, when captured.

        Returns:
            (M, D) float32, each row L2-normalised.
        """
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA) so wall-clock timing is honest; no-op on CPU."""
        ...


@runtime_checkable
class CropEmbedder(Embedder, Protocol):
    """An embedder that can cut crops now and embed them later (``--embed-lazy`` buffers a track's
    clean looks as crops and embeds them only when the track's memory is about to be read).

    ``embed(image, xyxy)`` equals ``embed_crops(crop(image, xyxy))``.
    """

    def crop(self, image: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
        """Cut the windows the model sees (padding and aspect applied), resized to its input.

        Args:
            image: (H, W, 3) uint8 BGR frame.
            xyxy: (M, 4) float32 boxes in pixels.

        Returns:
            M new (h, w, 3) uint8 BGR arrays, (h, w) the model input.
        """
        ...

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Embed windows from :meth:`crop`, possibly cut from earlier frames.

        Returns:
            (M, D) float32, each row L2-normalised.
        """
        ...


def crop_policy(pad: float | None, square: bool | None, default: tuple[float, bool]) -> tuple[float, bool]:
    """The crop padding and aspect a backend uses: the user's ``--crop-pad`` / ``--crop-square`` where
    given (not ``None``), else the backend's ``default`` ``(pad, square)``.

    Person ReID models (OSNet and the other torchreid / BoxMOT exports) are trained on detection boxes
    stretched to their 256x128 input, so ``onnx`` defaults to ``(0.0, False)``: on ground-truth boxes,
    OSNet x0.25 then tells the same person from other people better than in a padded 1:2 window
    (``benchmarks/crops.py``). ViT backbones (``dino``, ``clip``) see a padded square window:
    ``(0.12, True)``.
    """
    return (default[0] if pad is None else float(pad)), (default[1] if square is None else bool(square))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation of an (M, D) array, returned as float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def expand_boxes(xyxy: np.ndarray, pad: float, aspect_wh: float | None, image_wh: tuple[int, int]) -> np.ndarray:
    """Grow boxes for cropping.

    Args:
        xyxy: (M, 4) boxes in pixels.
        pad: fraction of the box width/height added on each side (0.12 adds 12 % per side).
        aspect_wh: if given, the padded box is then widened or heightened (never shrunk) around its
            centre to this width/height ratio, e.g. 1.0 for square ViT inputs, 0.5 for 256x128 ReID.
        image_wh: (W, H) of the image; boxes are clipped to it.

    Returns:
        (M, 4) int32 xyxy crop windows inside the image, each at least 1x1 pixel.
    """
    b = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    w = (b[:, 2] - b[:, 0]) * (1 + 2 * pad)
    h = (b[:, 3] - b[:, 1]) * (1 + 2 * pad)
    if aspect_wh is not None:
        w, h = np.maximum(w, h * aspect_wh), np.maximum(h, w / aspect_wh)
    W, H = image_wh
    x1 = np.clip(np.floor(cx - w / 2), 0, W - 1)
    y1 = np.clip(np.floor(cy - h / 2), 0, H - 1)
    x2 = np.clip(np.ceil(cx + w / 2), x1 + 1, W)
    y2 = np.clip(np.ceil(cy + h / 2), y1 + 1, H)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.int32)


def cut_windows(
    image: np.ndarray, xyxy: np.ndarray, size_hw: tuple[int, int], pad: float, keep_aspect: bool
) -> list[np.ndarray]:
    """Cut the crop windows of :func:`expand_boxes` out of a frame and resize them to the model input.

    The resize is the bilinear one :func:`to_blob` would do, so ``to_blob`` of these crops equals
    ``to_blob`` of the full-size windows exactly, at a fraction of the memory (``--embed-lazy`` keeps them).

    Args:
        image: (H, W, 3) uint8 BGR.
        xyxy: (M, 4) boxes in pixels.
        size_hw: model input (height, width) in pixels; its aspect ratio is used with ``keep_aspect``.
        pad: crop padding fraction (``--crop-pad``).
        keep_aspect: expand crops to the input's aspect ratio before resizing (``--crop-square``).

    Returns:
        M new (h, w, 3) uint8 BGR arrays.
    """
    h, w = size_hw
    windows = expand_boxes(xyxy, pad, w / h if keep_aspect else None, (image.shape[1], image.shape[0]))
    return [cv2.resize(image[y1:y2, x1:x2], (w, h), interpolation=cv2.INTER_LINEAR) for x1, y1, x2, y2 in windows]


def to_blob(crops: list[np.ndarray], size_hw: tuple[int, int], mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Resize and normalise crops into a model-ready batch.

    Args:
        crops: M uint8 BGR arrays of any size (from :func:`cut_windows`: already at ``size_hw``).
        size_hw: model input (height, width) in pixels.
        mean, std: (3,) RGB normalisation in [0, 1] units.

    Returns:
        (M, 3, h, w) float32 RGB, normalised.
    """
    h, w = size_hw
    if len(crops) == 0:
        return np.zeros((0, 3, h, w), np.float32)
    # OpenCV resizes each crop (bilinear), swaps BGR -> RGB and computes (x - 255 mean) / (255 std) into
    # one NCHW float32 blob, in C: about 8x faster than the same steps in numpy
    params = cv2.dnn.Image2BlobParams()
    params.size = (w, h)
    params.mean = (*(255.0 * np.asarray(mean, np.float64)).tolist(), 0.0)
    params.scalefactor = (*(1.0 / (255.0 * np.asarray(std, np.float64))).tolist(), 0.0)
    params.swapRB = True
    params.ddepth = cv2.CV_32F
    return cv2.dnn.blobFromImagesWithParams(list(crops), params)


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Yield slices covering ``range(n)`` in chunks of at most ``batch_size``."""
    for start in range(0, n, max(1, batch_size)):
        yield slice(start, min(n, start + batch_size))
