"""Backend name -> embedder. Add a backend by writing ``features/<name>.py`` and one entry below."""

from __future__ import annotations

from collections.abc import Callable

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import Embedder
from mot_dinov3.models.catalogue import resolve_config


def _dino(cfg: EmbedderConfig) -> Embedder:
    from mot_dinov3.features.dino import load_dino

    return load_dino(cfg)


def _clip(cfg: EmbedderConfig) -> Embedder:
    from mot_dinov3.features.clip import load_clip

    return load_clip(cfg)


def _onnx(cfg: EmbedderConfig) -> Embedder:
    from mot_dinov3.features.onnx import OnnxEmbedder

    return OnnxEmbedder(cfg)


def _osnet(cfg: EmbedderConfig) -> Embedder:
    from mot_dinov3.features.osnet import OSNetEmbedder

    return OSNetEmbedder(cfg)


def _yolo(cfg: EmbedderConfig) -> Embedder:
    from mot_dinov3.features.yolo import YoloFeatureEmbedder

    return YoloFeatureEmbedder(cfg)


BACKENDS: dict[str, Callable[[EmbedderConfig], Embedder]] = {
    "dino": _dino,
    "clip": _clip,
    "onnx": _onnx,
    "osnet": _osnet,
    "yolo": _yolo,
}
# backends whose embedders are CropEmbedders (embed buffered crops later): lazy memory is their default
CROP_BACKENDS = frozenset({"dino", "clip", "onnx", "osnet"})
# backends that read the detector's own neck features: the detector must capture them
FEATURE_BACKENDS = frozenset({"yolo"})
NO_REID = "none"  # ``--embedder none``: motion-only tracking, no appearance at all


def available() -> list[str]:
    """Names accepted by ``--embedder`` (the backends plus ``none``)."""
    return sorted(BACKENDS) + [NO_REID]


def check_name(name: str) -> None:
    """Raise :class:`UserError` for an unknown backend name (cheap; call before loading anything)."""
    if name not in BACKENDS and name != NO_REID:
        raise UserError(f"embedder={name!r}: unknown embedder; choose one of {', '.join(available())}")


def create_embedder(cfg: EmbedderConfig) -> Embedder | None:
    """Build the backend ``cfg.name``; ``None`` for ``none`` (no ReID).

    Raises:
        UserError: unknown name, or the backend's own load errors (missing model, gated, offline ...).
    """
    check_name(cfg.name)
    return None if cfg.name == NO_REID else BACKENDS[cfg.name](resolve_config(cfg))  # catalogue names
