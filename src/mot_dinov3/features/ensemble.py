"""Several embedders as one: ``embedder='ensemble'``, ``embed_model='onnx:PATH@0.7,yolo,osnet:PATH'``.

Each part's vector is L2-normalised, scaled by ``sqrt(weight)``, and the parts are concatenated and
L2-normalised again: (N, sum D) float32. With ``sqrt(w)`` the ensemble's cosine similarity is exactly
the weighted mean of the parts' cosines, ``sum_i w_i cos_i / sum_i w_i`` (the norm of the concatenation
is ``sqrt(sum w)`` for every row); equal weights give the plain concatenation of unit vectors that the
seed's multi-model ensemble sketches (``torch.cat([features_osnet, features_clip], dim=1)``), where no part
outweighs another by the size of its raw vectors. Scaling by ``w`` instead would weight the cosines by
``w**2``.

If every part is a :class:`~mot_dinov3.features.base.CropEmbedder` the ensemble is one too (a crop is
the tuple of the parts' crops), so lazy memory works; if a part reads the detector's features
(``yolo``), the ensemble does (the detector must capture them) and it gets the refresh rules.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from mot_dinov3.errors import UserError
from mot_dinov3.features.base import CropEmbedder, Embedder, l2_normalize

ENSEMBLE = "ensemble"
NEEDS_MODEL = ("onnx", "osnet")  # parts that load nothing without a model file
NO_MODEL = ("yolo",)  # parts that take no model (they read the detector's features)


@dataclass(frozen=True)
class PartSpec:
    """One part of an ensemble spec: backend ``name``, its ``model`` (or ``None``), its ``weight``."""

    name: str
    model: str | None = None
    weight: float = 1.0


def parse_spec(spec: str | None, known: Collection[str]) -> list[PartSpec]:
    """Parse ``"name[:model][@weight],..."``, e.g. ``"onnx:osnet.onnx@0.7,yolo"``.

    The name ends at the first ``:`` (a model may hold more, ``onnx:C:/m.onnx``); a trailing ``@w`` is the
    weight when ``w`` parses as a number (else it stays part of the model path); weights default to 1.

    Args:
        spec: the ``embed_model`` of ``embedder='ensemble'``.
        known: the part names allowed (the backends, ``ensemble`` and ``none`` excluded).

    Raises:
        UserError: empty spec or part, unknown or nested part, a weight that is not a positive number,
            ``onnx`` / ``osnet`` without a model, ``yolo`` with one.
    """
    where = f"embed_model={spec!r}"
    if not spec or not spec.strip():
        raise UserError(
            f"{where}: embedder='ensemble' needs its parts in embed_model, e.g. embed_model='onnx:osnet.onnx@0.7,yolo'"
        )
    parts = []
    for i, raw in enumerate(spec.split(","), 1):
        text = raw.strip()
        weight = 1.0
        head, at, tail = text.rpartition("@")
        if at:
            try:
                weight = float(tail)
            except ValueError:
                if ":" not in head:  # no model the '@' could belong to: a bad weight
                    raise UserError(
                        f"{where}: part {i} weight {tail!r} is not a number (name[:model][@weight])"
                    ) from None
            else:
                text = head.strip()
                if not (math.isfinite(weight) and weight > 0):
                    raise UserError(f"{where}: part {i} weight {tail!r} must be a positive number")
        name, colon, model = (s.strip() for s in text.partition(":"))
        if not name:
            raise UserError(f"{where}: part {i} is empty; write parts as name[:model][@weight], comma-separated")
        if name == ENSEMBLE:
            raise UserError(f"{where}: part {i} is an ensemble; ensembles do not nest, list its parts instead")
        if name not in known:
            raise UserError(f"{where}: part {i} {name!r} is not an embedder; choose from {', '.join(sorted(known))}")
        if colon and not model:
            raise UserError(f"{where}: part {i} {name!r} has an empty model after ':'")
        if name in NEEDS_MODEL and not model:
            raise UserError(f"{where}: part {i} {name!r} needs its model, e.g. '{name}:PATH'")
        if name in NO_MODEL and model:
            raise UserError(f"{where}: part {i} {name!r} takes no model (it reads the detector's features)")
        parts.append(PartSpec(name, model or None, weight))
    return parts


class EnsembleEmbedder:
    """Weighted concatenation of embedders (see the module docstring).

    ``EnsembleEmbedder(parts)`` gives a :class:`CropEnsembleEmbedder` (a
    :class:`~mot_dinov3.features.base.CropEmbedder`) when every part is a CropEmbedder.

    Args:
        parts: ``(embedder, weight)`` pairs, weights > 0.

    Attributes:
        dim: the sum of the parts' dims (a ``yolo`` part's is known after its first frame).
        uses_detector_features: any part's; cost_free: every part's.
    """

    name = ENSEMBLE

    def __new__(cls, parts: list[tuple[Embedder, float]]) -> EnsembleEmbedder:
        if cls is EnsembleEmbedder and parts and all(isinstance(e, CropEmbedder) for e, _ in parts):
            cls = CropEnsembleEmbedder
        return object.__new__(cls)

    def __init__(self, parts: list[tuple[Embedder, float]]):
        if not parts:
            raise UserError("embedder='ensemble' needs at least one part")
        if any(not (math.isfinite(w) and w > 0) for _, w in parts):
            raise UserError(f"ensemble weights must be positive numbers, got {[w for _, w in parts]}")
        self.parts = [e for e, _ in parts]
        self.weights = [float(w) for _, w in parts]
        self.scales = [math.sqrt(w) for w in self.weights]
        self.uses_detector_features = any(e.uses_detector_features for e in self.parts)
        self.cost_free = all(e.cost_free for e in self.parts)
        self.dim = sum(e.dim for e in self.parts)

    def combine(self, outs: list[np.ndarray]) -> np.ndarray:
        """The parts' (M, D_i) vectors -> (M, sum D_i) float32: each row L2-normalised, times
        ``sqrt(weight)``, concatenated, L2-normalised."""
        self.dim = sum(e.dim for e in self.parts)
        return l2_normalize(np.concatenate([l2_normalize(o) * s for o, s in zip(outs, self.scales)], axis=1))

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        """(M, 4) xyxy pixel boxes of a BGR uint8 frame (and the detector features) -> (M, sum D) float32."""
        return self.combine([e.embed(image, xyxy, det_feats) for e in self.parts])

    def synchronize(self) -> None:
        """Wait for every part's queued device work."""
        for e in self.parts:
            e.synchronize()


class CropEnsembleEmbedder(EnsembleEmbedder):
    """An ensemble of CropEmbedders: a crop is the tuple of the parts' crops of one box."""

    def __init__(self, parts: list[tuple[Embedder, float]]):
        super().__init__(parts)
        self.crop_parts = [cast(CropEmbedder, e) for e in self.parts]

    def crop(self, image: np.ndarray, xyxy: np.ndarray) -> list[Any]:
        """M tuples, one crop per part (as each part's ``crop`` cuts it)."""
        return list(zip(*(e.crop(image, xyxy) for e in self.crop_parts)))

    def embed_crops(self, crops: list[Any]) -> np.ndarray:
        """M tuples from :meth:`crop` (of any frames) -> (M, sum D) float32, as :meth:`embed`."""
        return self.combine([e.embed_crops([c[i] for c in crops]) for i, e in enumerate(self.crop_parts)])
