"""DINOv3 / DINOv2 embeddings through Hugging Face ``transformers`` ``AutoModel``.

DINOv2: Oquab et al., arXiv 2304.07193; DINOv3: Simeoni et al., arXiv 2508.10104. The token layout of
``last_hidden_state`` is ``[CLS, register tokens (0 for DINOv2, 4 for DINOv3), patch tokens]``:
``pooling="cls"`` takes the CLS token, ``pooling="mean"`` averages the patch tokens only.
Preprocessing (input size, mean, std) comes from the model's ``preprocessor_config.json``; without one
it falls back to 224x224 with ImageNet statistics.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mot_dinov3.config import DEFAULT_DINO_MODEL, OPEN_FALLBACK_MODEL, EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features import hub
from mot_dinov3.features.hf import HfVisionEmbedder, Preprocess, from_pretrained, load_error

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")


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
        return last_hidden_state[:, 1 + num_register_tokens :].mean(dim=1)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


class DinoEmbedder(HfVisionEmbedder):
    """Embeds crops with an already-built ``transformers`` DINOv2 / DINOv3 ViT.

    Args:
        model: a ``transformers`` model returning ``last_hidden_state``.
        preprocess: input size and normalisation.
        cfg: crop, batch and pooling settings.

    Raises:
        UserError: unknown ``cfg.pooling``.

    Use :func:`load_dino` to build one from a hub id or local folder.
    """

    name = "dino"

    def __init__(self, model, preprocess: Preprocess, cfg: EmbedderConfig):
        if cfg.pooling not in POOLINGS:
            raise UserError(f"pool={cfg.pooling!r}: unknown pooling; choose one of {', '.join(POOLINGS)}")
        super().__init__(model, preprocess, cfg, dim=model.config.hidden_size)
        self.num_register_tokens = int(getattr(model.config, "num_register_tokens", 0) or 0)

    def forward(self, pixel_values):
        """(B, 3, H, W) -> (B, hidden_size): the CLS token or the mean of the patch tokens."""
        hidden = self.model(pixel_values=pixel_values).last_hidden_state
        return pool_tokens(hidden, self.num_register_tokens, self.cfg.pooling)


def load_dino(cfg: EmbedderConfig, token: str | None = None, loader=from_pretrained) -> DinoEmbedder:
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
        if not (
            cfg.fallback_open
            and kind in (hub.GATED, hub.UNSUPPORTED, hub.UNREACHABLE)
            and model_id != OPEN_FALLBACK_MODEL
        ):
            raise load_error(model_id, kind, exc) from exc
    else:
        return DinoEmbedder(model, pre, cfg)
    # outside the except block, so a failure of the fallback is not chained to the first error
    log.warning("model %r is %s; fallback_open=True: using %s", model_id, kind, OPEN_FALLBACK_MODEL)
    return load_dino(replace(cfg, model=OPEN_FALLBACK_MODEL, fallback_open=False), token, loader)
