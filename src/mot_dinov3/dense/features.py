"""Dense patch features of a DINOv2 / DINOv3 ViT: one D-vector per patch of a grid over the image.

DINOv2: Oquab et al., arXiv 2304.07193; DINOv3: Simeoni et al., arXiv 2508.10104. The image is resized,
keeping its aspect ratio, to a multiple of the patch size (14 px for DINOv2, 16 px for DINOv3) in each
direction; the ViT's ``last_hidden_state`` is ``[CLS, R register tokens, h * w patch tokens]`` and only the
patch tokens are kept, as an ``(h, w, D)`` grid. :class:`PatchGrid` maps image pixels to grid cells and back.

The model is anything with the :class:`PatchExtractor` interface: :func:`load_extractor` builds one from a
Hugging Face id, a torch-hub name of the model catalogue (``dinov2_vits14``) or a local folder, through the
``dino`` tracking backend's loader (same token handling, cache-only when the Hub is unreachable, same
gated / offline messages); tests inject a deterministic one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol, overload, runtime_checkable

import cv2
import numpy as np

from mot_dinov3.errors import MissingFileError, UserError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/dinov2-small"
DEFAULT_SIZE = 448  # pixels of the longer side of the model input (32 patches of 14 px)


@runtime_checkable
class PatchExtractor(Protocol):
    """What turns a batch of images into patch features.

    Attributes:
        patch_size: patch side p, pixels of the model input.
    """

    patch_size: int

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(B, h * p, w * p, 3) uint8 BGR images -> (B, h, w, D) float32 patch features."""
        ...


Model = str | Path | PatchExtractor


@dataclass(frozen=True)
class PatchGrid:
    """Where the patch cells of an image lie.

    Cell ``(col, row)`` covers the image pixels ``x in [col * W / w, (col + 1) * W / w)``,
    ``y in [row * H / h, (row + 1) * H / h)``. Points are ``(x, y)`` pixels, cells ``(col, row)`` ints.

    Attributes:
        image_hw: (H, W) pixels of the original image.
        grid_hw: (h, w) cells of the feature grid.
        patch_size: p, pixels of the model input per patch side.
    """

    image_hw: tuple[int, int]
    grid_hw: tuple[int, int]
    patch_size: int

    @classmethod
    def for_image(cls, image_hw: tuple[int, int], patch_size: int, size: int | None = None) -> PatchGrid:
        """The grid of an (H, W) image whose longer side is resized to about ``size`` pixels.

        Args:
            image_hw: (H, W) pixels.
            patch_size: p, pixels.
            size: longer side of the model input, pixels (default :data:`DEFAULT_SIZE`); each side is
                rounded to the nearest multiple of p (at least one patch), so the aspect ratio is kept to
                within half a patch.

        Raises:
            UserError: a non-positive ``size`` or an empty image.
        """
        size = DEFAULT_SIZE if size is None else int(size)
        height, width = int(image_hw[0]), int(image_hw[1])
        if size <= 0:
            raise UserError(f"size={size}: must be a positive number of pixels (the longer side of the model input)")
        if height <= 0 or width <= 0:
            raise UserError(f"image of {width}x{height} pixels: empty; pass a real image")
        scale = size / max(height, width)
        h = max(1, round(height * scale / patch_size))
        w = max(1, round(width * scale / patch_size))
        return cls((height, width), (h, w), int(patch_size))

    @property
    def input_hw(self) -> tuple[int, int]:
        """(h * p, w * p): pixels of the model input."""
        return self.grid_hw[0] * self.patch_size, self.grid_hw[1] * self.patch_size

    @property
    def cell_wh(self) -> tuple[float, float]:
        """(W / w, H / h): size of one cell in image pixels."""
        return self.image_hw[1] / self.grid_hw[1], self.image_hw[0] / self.grid_hw[0]

    def contains(self, points_xy: np.ndarray) -> np.ndarray:
        """(N, 2) (x, y) pixels -> (N,) bool: inside the image (``0 <= x < W``, ``0 <= y < H``)."""
        p = np.asarray(points_xy, np.float64).reshape(-1, 2)
        return (p[:, 0] >= 0) & (p[:, 0] < self.image_hw[1]) & (p[:, 1] >= 0) & (p[:, 1] < self.image_hw[0])

    def to_cell(self, points_xy: np.ndarray, name: str = "points_xy") -> np.ndarray:
        """(N, 2) (x, y) pixels -> (N, 2) int64 (col, row) cells holding them.

        Raises:
            UserError: a point outside the image, named ``name``.
        """
        p = np.asarray(points_xy, np.float64).reshape(-1, 2)
        inside = self.contains(p)
        if not inside.all():
            x, y = p[~inside][0]
            height, width = self.image_hw
            raise UserError(
                f"{name}: ({x:g}, {y:g}) is outside the {width}x{height} image "
                f"(x must be in [0, {width}), y in [0, {height}))"
            )
        cw, ch = self.cell_wh
        cols = np.minimum((p[:, 0] / cw).astype(np.int64), self.grid_hw[1] - 1)
        rows = np.minimum((p[:, 1] / ch).astype(np.int64), self.grid_hw[0] - 1)
        return np.stack([cols, rows], axis=1)

    def to_pixel(self, cells: np.ndarray) -> np.ndarray:
        """(N, 2) (col, row) cells -> (N, 2) float64 (x, y) pixels of their centres."""
        c = np.asarray(cells, np.float64).reshape(-1, 2)
        cw, ch = self.cell_wh
        return np.stack([(c[:, 0] + 0.5) * cw, (c[:, 1] + 0.5) * ch], axis=1)


class DinoPatchExtractor:
    """Patch features of a ``transformers`` DINOv2 / DINOv3 model (CLS and register tokens dropped).

    Args:
        model: a ``transformers`` ViT returning ``last_hidden_state`` (B, 1 + R + h * w, D); its config
            gives ``patch_size`` and ``num_register_tokens`` (R, 0 for DINOv2, 4 for DINOv3).
        mean, std: (3,) RGB normalisation, [0, 1] units (the model's preprocessor config).
        device: torch device (``None``: CUDA when available, else CPU).
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        model,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        device: str | None = None,
        batch_size: int = 4,
    ):
        import torch

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        patch = model.config.patch_size
        self.patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.num_register_tokens = int(getattr(model.config, "num_register_tokens", 0) or 0)
        self.dim = int(model.config.hidden_size)
        self.batch_size = max(1, int(batch_size))
        self._mean = np.asarray(mean, np.float32)
        self._std = np.asarray(std, np.float32)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(B, h * p, w * p, 3) uint8 BGR -> (B, h, w, D) float32 patch tokens."""
        import torch

        from mot_dinov3.features.base import batches, to_blob

        images = np.asarray(images)
        n, height, width = images.shape[:3]
        h, w = height // self.patch_size, width // self.patch_size
        outs = []
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            for s in batches(n, self.batch_size):
                x = torch.from_numpy(to_blob(list(images[s]), (height, width), self._mean, self._std))
                hidden = self.model(pixel_values=x.to(self.device)).last_hidden_state
                patches = hidden[:, 1 + self.num_register_tokens :]
                outs.append(patches.float().cpu().numpy().reshape(len(patches), h, w, -1))
        if not outs:
            return np.zeros((0, h, w, self.dim), np.float32)
        return np.concatenate(outs, axis=0).astype(np.float32, copy=False)


# the tracking loader names its own parameters (embed_model=, dinov3=, embedder=); here there is one: model=
_RENAMES = (
    (re.compile(r",? or use embedder=.*$", re.S), ""),
    (re.compile(r" \(embed_model=, or dinov3= for the dino backend\)"), " (model=)"),
    (re.compile(r"(?<![\w.])(?:embed_model|dinov3)="), "model="),
)


def _dense_message(text: str) -> str:
    for pattern, new in _RENAMES:
        text = pattern.sub(new, text)
    return text


def resolve_model(model: str | Path) -> str:
    """What :func:`load_extractor` loads for ``model``: a local folder as given, a catalogue name
    (``dinov2_vits14``, ``dinov3_vits16``) as its Hugging Face id, any other id unchanged.

    Raises:
        MissingFileError: a path (absolute, relative with ``.`` or ``~``, or of more than two parts) that
            does not exist.
        UserError: a catalogue model that is not a DINO ViT, or a bare name that is not in the catalogue.
    """
    from mot_dinov3.models import catalogue

    text = str(model)
    if Path(text).expanduser().exists():
        return text
    if isinstance(model, Path) or text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text:
        raise MissingFileError(
            f"model={text!r}: no such folder; pass a local model folder (config.json + weights), a Hugging "
            "Face id (model='facebook/dinov2-small') or a torch-hub name (model='dinov2_vits14')"
        )
    entry = catalogue.lookup(text)
    if entry is not None and entry.backend != "dino":
        raise UserError(
            f"model={text!r}: a catalogue model of the {entry.family} family, not a DINO ViT; pass a "
            "DINOv2 / DINOv3 model, e.g. model='dinov2_vits14' or model='facebook/dinov2-small'"
        )
    try:
        return catalogue.resolve(text)
    except UserError as exc:
        raise UserError(_dense_message(str(exc))) from exc


@lru_cache(maxsize=2)
def _cached_extractor(model: str, device: str | None, fallback_open: bool) -> DinoPatchExtractor:
    return load_extractor(model, device=device, fallback_open=fallback_open)


def load_extractor(
    model: str | Path = DEFAULT_MODEL,
    device: str | None = None,
    fallback_open: bool = False,
    batch_size: int = 4,
    loader=None,
) -> DinoPatchExtractor:
    """A :class:`DinoPatchExtractor` for a hub id, a torch-hub name or a local folder.

    Args:
        model: Hugging Face id (``facebook/dinov2-small``), catalogue / torch-hub name (``dinov2_vits14``) or
            a local folder with ``config.json`` and weights.
        device: torch device (``None``: CUDA when available, else CPU).
        fallback_open: use ``facebook/dinov2-base`` when ``model`` is gated, unsupported or unreachable.
        batch_size: images per forward pass.
        loader: ``(model_id, token) -> (model, Preprocess)``, as :func:`mot_dinov3.features.dino.load_dino`'s.

    Raises:
        UserError: the model cannot be loaded (gated, unsupported by the installed transformers,
            unreachable and not cached, not found), with the messages of the tracking backend.
    """
    from mot_dinov3.config import EmbedderConfig
    from mot_dinov3.features.dino import load_dino
    from mot_dinov3.features.hf import from_pretrained

    cfg = EmbedderConfig(name="dino", model=resolve_model(model), fallback_open=fallback_open, device=device)
    try:
        emb = load_dino(cfg, loader=loader or from_pretrained)
    except UserError as exc:
        raise UserError(_dense_message(str(exc))) from exc
    pre = emb.preprocess
    return DinoPatchExtractor(emb.model, pre.mean, pre.std, device=str(emb.device), batch_size=batch_size)


def as_extractor(model: Model, device: str | None = None) -> PatchExtractor:
    """``model`` itself when it is a :class:`PatchExtractor`, else the (cached) :func:`load_extractor` of it."""
    if isinstance(model, PatchExtractor) and not isinstance(model, (str, Path)):
        return model
    return _cached_extractor(str(model), device, False)


def read_image(path: str | Path, name: str = "image") -> np.ndarray:
    """An image file as (H, W, 3) uint8 BGR.

    Raises:
        MissingFileError: no such file; UserError: OpenCV cannot decode it (messages name ``name``).
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{name}={str(p)!r}: no such file; pass an image file (jpg, png ...)")
    image = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{name}={str(p)!r}: not an image OpenCV can read; pass a jpg, png, bmp, tif or webp file")
    return image


def _as_images(image) -> tuple[list[np.ndarray], bool]:
    """(images, single): one (H, W, 3) image or a (B, H, W, 3) array / sequence of them."""
    if isinstance(image, np.ndarray) and image.ndim == 3:
        images, single = [image], True
    elif isinstance(image, np.ndarray) and image.ndim == 4:
        images, single = list(image), False
    elif isinstance(image, (list, tuple)):
        images, single = list(image), False
    else:
        raise UserError(
            f"image of type {type(image).__name__}, shape {getattr(image, 'shape', None)}: expected an "
            "(H, W, 3) uint8 BGR image (cv2.imread) or a batch of them"
        )
    for im in images:
        if not isinstance(im, np.ndarray) or im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise UserError(
                f"image of shape {getattr(im, 'shape', None)}, dtype {getattr(im, 'dtype', None)}: "
                "expected (H, W, 3) uint8 BGR (cv2.imread)"
            )
    if images and len({im.shape for im in images}) > 1:
        raise UserError("image: a batch of images of different sizes; pass images of one size (or one at a time)")
    return images, single


def resize_to_grid(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """(H, W, 3) uint8 -> (h * p, w * p, 3) uint8, area-averaged when shrinking, bilinear when growing."""
    in_h, in_w = grid.input_hw
    if (in_h, in_w) == image.shape[:2]:
        return image
    shrink = in_h * in_w < image.shape[0] * image.shape[1]
    return cv2.resize(image, (in_w, in_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


@overload
def patch_features(
    image,
    model: Model = ...,
    size: int | None = ...,
    device: str | None = ...,
    return_grid: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def patch_features(
    image,
    model: Model = ...,
    size: int | None = ...,
    device: str | None = ...,
    *,
    return_grid: Literal[True],
) -> tuple[np.ndarray, PatchGrid]: ...


def patch_features(
    image,
    model: Model = DEFAULT_MODEL,
    size: int | None = None,
    device: str | None = None,
    return_grid: bool = False,
):
    """The ViT's patch tokens of an image on its :class:`PatchGrid`.

    Args:
        image: (H, W, 3) uint8 BGR image (``cv2.imread``), or a batch: a (B, H, W, 3) array or a list of
            images of one size (computed in batches of the extractor's ``batch_size``).
        model: a :class:`PatchExtractor`, or what :func:`load_extractor` loads (hub id, torch-hub name
            such as ``dinov2_vits14``, local folder); loaded models are cached (the last two).
        size: longer side of the model input, pixels (default :data:`DEFAULT_SIZE`; see
            :meth:`PatchGrid.for_image`).
        device: torch device when ``model`` is loaded here.
        return_grid: also return the :class:`PatchGrid` (pixel <-> cell mapping).

    Returns:
        (h, w, D) float32 features (CLS and register tokens excluded), or (B, h, w, D) for a batch;
        with ``return_grid``, ``(features, grid)``.

    Raises:
        UserError: not an image / images of different sizes, a bad ``size``, a model that cannot be loaded.
    """
    images, single = _as_images(image)
    if not images:
        raise UserError("image: an empty batch; pass at least one image")
    extractor = as_extractor(model, device)
    grid = PatchGrid.for_image(images[0].shape[:2], extractor.patch_size, size)
    feats = extractor(np.stack([resize_to_grid(im, grid) for im in images]))
    out = feats[0] if single else feats
    return (out, grid) if return_grid else out


def stream_features(
    images: Iterable[np.ndarray],
    model: Model = DEFAULT_MODEL,
    size: int | None = None,
    device: str | None = None,
    batch_size: int = 4,
) -> Iterator[tuple[np.ndarray, PatchGrid]]:
    """Patch features of a stream of frames (a video), computed ``batch_size`` frames per forward pass.

    Args:
        images: (H, W, 3) uint8 BGR frames of one size.
        model, size, device: as :func:`patch_features`.
        batch_size: frames per extractor call (memory: ``batch_size`` frames at the model input size).

    Yields:
        ``(features, grid)`` per frame, in order: (h, w, D) float32 and its :class:`PatchGrid`.
    """
    extractor = as_extractor(model, device)
    grid: PatchGrid | None = None
    pending: list[np.ndarray] = []

    def flush() -> Iterator[tuple[np.ndarray, PatchGrid]]:
        assert grid is not None
        feats = extractor(np.stack(pending))
        pending.clear()
        for f in feats:
            yield f, grid

    for image in images:
        if grid is None:
            grid = PatchGrid.for_image(image.shape[:2], extractor.patch_size, size)
        elif image.shape[:2] != grid.image_hw:
            raise UserError(
                f"frame of {image.shape[1]}x{image.shape[0]} pixels in a stream of "
                f"{grid.image_hw[1]}x{grid.image_hw[0]} frames; pass frames of one size"
            )
        pending.append(resize_to_grid(image, grid))
        if len(pending) >= max(1, batch_size):
            yield from flush()
    if pending:
        yield from flush()
