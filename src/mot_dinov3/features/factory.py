"""Backend name -> embedder. Add a backend by writing ``features/<name>.py`` and one entry below.

Besides the built-in :data:`BACKENDS`: ``ensemble`` (:mod:`mot_dinov3.features.ensemble`, its parts in
``embed_model``), the names other packages register in the entry-point group :data:`PLUGIN_GROUP`, and
``package.module:Class`` (imported, then called with the :class:`~mot_dinov3.config.EmbedderConfig`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata
from typing import Any

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import Embedder
from mot_dinov3.features.ensemble import ENSEMBLE, EnsembleEmbedder, parse_spec
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
PLUGIN_GROUP = "mot_dinov3.embedders"  # entry points: name -> an Embedder class (called with the config)
# what a custom backend's object must have (the Embedder protocol)
REQUIRED = ("name", "dim", "uses_detector_features", "cost_free", "embed", "synchronize")


def plugins() -> dict[str, metadata.EntryPoint]:
    """The embedders installed packages register in :data:`PLUGIN_GROUP` (built-in names win)."""
    return {ep.name: ep for ep in metadata.entry_points(group=PLUGIN_GROUP) if ep.name not in BACKENDS}


def part_names() -> list[str]:
    """Names an ensemble part may have: the backends and the plugins."""
    return sorted({*BACKENDS, *plugins()})


def available() -> list[str]:
    """Names accepted by ``--embedder`` (the backends, ``ensemble``, the plugins, then ``none``);
    ``package.module:Class`` is accepted too."""
    return sorted({*BACKENDS, ENSEMBLE, *plugins()}) + [NO_REID]


def _ensemble(cfg: EmbedderConfig) -> Embedder:
    """The ensemble of ``cfg.model``'s parts, each built with ``cfg``'s other settings."""
    parts = parse_spec(cfg.model, part_names())
    built = [(create_embedder(replace(cfg, name=p.name, model=p.model)), p.weight) for p in parts]
    return EnsembleEmbedder([(e, w) for e, w in built if e is not None])


def constructor(name: str) -> Callable[[EmbedderConfig], Any]:
    """What builds the embedder ``name`` from its config: a backend, the ensemble, a plugin's or a
    ``package.module:Class`` object (imported here, not called).

    Raises:
        UserError: an unknown name, or a plugin / ``module:Class`` that cannot be imported.
    """
    if name in BACKENDS:
        return BACKENDS[name]
    if name == ENSEMBLE:
        return _ensemble
    entry = plugins().get(name)
    if entry is None and ":" not in name:
        raise UserError(
            f"embedder={name!r}: unknown embedder; choose one of {', '.join(available())} "
            "or give your own class as embedder='package.module:Class'"
        )
    try:
        if entry is not None:
            obj = entry.load()
        else:
            module, _, attr = name.partition(":")
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
    except Exception as exc:  # ImportError, AttributeError, or whatever the user's module raises
        why = (str(exc).splitlines() or [""])[0][:160]
        raise UserError(
            f"embedder={name!r}: cannot load it ({type(exc).__name__}: {why}); "
            "expected an importable 'package.module:Class'"
        ) from exc
    if not callable(obj):
        raise UserError(f"embedder={name!r}: {type(obj).__name__} is not callable; expected an embedder class")
    return obj


def check_name(name: str) -> None:
    """Raise :class:`UserError` for an unknown embedder name (cheap: a custom backend's module is imported,
    no model loaded; call before loading anything)."""
    if name != NO_REID:
        constructor(name)


def embedder_traits(name: str, model: str | None = None) -> tuple[bool, bool]:
    """``(crops later, reads detector features)`` of the embedder ``name`` (with ``model``) would build,
    known before any model loads: whether it is a :class:`~mot_dinov3.features.base.CropEmbedder` (lazy
    memory is then its default) and whether the detector must capture features for it. An ensemble
    crops later when every part does and reads features when any part does; a custom class is read
    from its class attributes (``crop`` and ``embed_crops``, ``uses_detector_features``).

    Raises:
        UserError: an unknown name or a bad ensemble spec.
    """
    if name == NO_REID:
        return False, False
    if name in BACKENDS:
        return name in CROP_BACKENDS, name in FEATURE_BACKENDS
    if name == ENSEMBLE:
        traits = [embedder_traits(p.name) for p in parse_spec(model, part_names())]
        return all(c for c, _ in traits), any(f for _, f in traits)
    made = constructor(name)
    crops = all(callable(getattr(made, m, None)) for m in ("crop", "embed_crops"))
    return crops, getattr(made, "uses_detector_features", False) is True


def create_embedder(cfg: EmbedderConfig) -> Embedder | None:
    """Build the embedder ``cfg.name``; ``None`` for ``none`` (no ReID).

    Raises:
        UserError: unknown name, a bad ensemble spec, a custom backend that cannot be imported or does not
            build an Embedder, or the backend's own load errors (missing model, gated, offline ...).
    """
    if cfg.name == NO_REID:
        return None
    if cfg.name in BACKENDS:
        return BACKENDS[cfg.name](resolve_config(cfg))  # catalogue names
    made = constructor(cfg.name)(cfg)
    missing = [a for a in REQUIRED if not hasattr(made, a)]
    if missing:
        raise UserError(
            f"embedder={cfg.name!r}: its {type(made).__name__} lacks {', '.join(missing)}; an embedder needs "
            f"{', '.join(REQUIRED)} (see mot_dinov3.features.base.Embedder)"
        )
    return made
