"""DINOv3 / DINOv2 embeddings through Hugging Face ``transformers`` ``AutoModel``.

DINOv2: Oquab et al., arXiv 2304.07193; DINOv3: Simeoni et al., arXiv 2508.10104. The token layout of
``last_hidden_state`` is ``[CLS, register tokens (0 for DINOv2, 4 for DINOv3), patch tokens]``:
``pooling="cls"`` takes the CLS token, ``pooling="mean"`` averages the patch tokens only.
Preprocessing (input size, mean, std) comes from the model's ``preprocessor_config.json``; without one
it falls back to 224x224 with ImageNet statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mot_dinov3.config import DEFAULT_DINO_MODEL, OPEN_FALLBACK_MODEL, EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features import hub
from mot_dinov3.features.base import batches, crop_batch, l2_normalize
from mot_dinov3.features.onnx import IMAGENET_MEAN, IMAGENET_STD

POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class Preprocess:
    """Model input geometry and normalisation: size (h, w) pixels, RGB mean/std in [0, 1] units."""

    size_hw: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = tuple(IMAGENET_MEAN.tolist())
    std: tuple[float, float, float] = tuple(IMAGENET_STD.tolist())

    @classmethod
    def from_processor(cls, processor) -> Preprocess:
        """Read ``crop_size`` / ``size`` and ``image_mean`` / ``image_std`` from an image processor;
        missing fields keep the fallback values."""
        if processor is None:
            return cls()
        size = getattr(processor, "crop_size", None) or getattr(processor, "size", None) or {}
        size = dict(size) if not isinstance(size, dict) else size
        if size.get("height") and size.get("width"):
            hw = (int(size["height"]), int(size["width"]))
        elif size.get("shortest_edge"):
            hw = (int(size["shortest_edge"]),) * 2
        else:
            hw = cls.size_hw
        mean = tuple(getattr(processor, "image_mean", None) or cls.mean)
        std = tuple(getattr(processor, "image_std", None) or cls.std)
        return cls(hw, mean, std)


def pool_tokens(last_hidden_state, num_register_tokens: int, pooling: str):
    """Pool a ViT token sequence.

    Args:
        last_hidden_state: (B, 1 + R + P, D) tensor: CLS, R register tokens, P patch tokens.
        num_register_tokens: R.
        pooling: ``"cls"`` or ``"mean"`` (mean over the P patch tokens; CLS and registers excluded).

    Returns:
        (B, D) tensor.
    """
    if pooling == "cls":
        return last_hidden_state[:, 0]
    if pooling == "mean":
        return last_hidden_state[:, 1 + num_register_tokens:].mean(dim=1)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


class DinoEmbedder:
    """Embeds crops with an already-built ``transformers`` vision model (DINOv2/DINOv3 ViT).

    Args:
        model: a ``transformers`` model returning ``last_hidden_state``.
        preprocess: input size and normalisation.
        cfg: crop and pooling settings.

    Use :func:`load_dino` to build one from a hub id or local folder.
    """

    name = "dino"
    uses_detector_features = False
    cost_free = False

    def __init__(self, model, preprocess: Preprocess, cfg: EmbedderConfig):
        import torch

        if cfg.pooling not in POOLINGS:
            raise UserError(f"--pool {cfg.pooling}: unknown pooling; choose one of {', '.join(POOLINGS)}")
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.preprocess = preprocess
        self.cfg = cfg
        self.num_register_tokens = int(getattr(model.config, "num_register_tokens", 0) or 0)
        self.dim = int(model.config.hidden_size)
        self._mean = np.asarray(preprocess.mean, np.float32)
        self._std = np.asarray(preprocess.std, np.float32)

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        """(M, 4) xyxy pixel boxes of a BGR uint8 frame -> (M, D) float32 L2-normalised."""
        import torch

        if len(xyxy) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = crop_batch(image, xyxy, self.preprocess.size_hw, self.cfg.crop_pad, self.cfg.crop_square,
                       self._mean, self._std)
        outs = []
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            for s in batches(len(x), self.cfg.batch_size):
                hidden = self.model(pixel_values=torch.from_numpy(x[s]).to(self.device)).last_hidden_state
                outs.append(pool_tokens(hidden, self.num_register_tokens, self.cfg.pooling).float().cpu().numpy())
        return l2_normalize(np.concatenate(outs, axis=0))

    def synchronize(self) -> None:
        """Wait for queued CUDA work (no-op on CPU)."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _from_pretrained(model_id: str, token: str | None):
    """Model and preprocessing from a local folder, the Hugging Face cache or the Hub. When the Hub does not
    answer (:func:`hub.hub_reachable`), only the cache is read: a model that is not cached then fails at once."""
    from transformers import AutoImageProcessor, AutoModel

    cache_only = not Path(model_id).is_dir() and not hub.hub_reachable()
    model = AutoModel.from_pretrained(model_id, token=token, local_files_only=cache_only)
    try:
        processor = AutoImageProcessor.from_pretrained(model_id, token=token, local_files_only=cache_only)
    except Exception:  # no / unreadable preprocessor config: the manual fallback applies
        processor = None
    return model, Preprocess.from_processor(processor)


def load_dino(cfg: EmbedderConfig, token: str | None = None, loader=_from_pretrained) -> DinoEmbedder:
    """Load a DINO model from a hub id or a local folder, with clean errors.

    Args:
        cfg: ``cfg.model`` is the hub id or folder (default ``facebook/dinov3-vitb16-pretrain-lvd1689m``);
            ``cfg.fallback_open`` switches to ``facebook/dinov2-base`` if it is gated, unsupported or unreachable.
        token: Hugging Face token (default: :func:`hub.hf_token`).
        loader: ``(model_id, token) -> (model, Preprocess)``; replaceable in tests.

    Raises:
        UserError: gated (the seed design's message), unsupported by the installed transformers,
            unreachable and not cached, or not found.
    """
    model_id = cfg.model or DEFAULT_DINO_MODEL
    token = hub.hf_token() if token is None else token
    try:
        model, pre = loader(model_id, token)
    except Exception as exc:
        kind = hub.classify_load_error(exc)
        if not (cfg.fallback_open and kind in (hub.GATED, hub.UNSUPPORTED, hub.UNREACHABLE)
                and model_id != OPEN_FALLBACK_MODEL):
            raise _load_error(model_id, kind, exc) from exc
    else:
        return DinoEmbedder(model, pre, cfg)
    # outside the except block, so a failure of the fallback is not chained to the first error
    print(f"[mot-dinov3] '{model_id}' is {kind}; --fallback-open: using {OPEN_FALLBACK_MODEL}")
    return load_dino(replace(cfg, model=OPEN_FALLBACK_MODEL, fallback_open=False), token, loader)


def _load_error(model_id: str, kind: str | None, exc: Exception) -> UserError:
    messages = {hub.GATED: hub.gated_message, hub.UNSUPPORTED: hub.unsupported_message,
                hub.UNREACHABLE: hub.unreachable_message, hub.NOT_FOUND: hub.not_found_message}
    if kind in messages:
        return UserError(messages[kind](model_id))
    return UserError(f"Model '{model_id}' could not be loaded ({exc.__class__.__name__}: "
                     f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); check --embed-model")
