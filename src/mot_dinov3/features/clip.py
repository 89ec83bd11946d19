"""CLIP image embeddings through Hugging Face ``transformers`` (Radford et al., arXiv 2103.00020).

``CLIPVisionModelWithProjection`` runs the vision tower and its projection: one ``projection_dim`` vector
per crop (``image_embeds``, the space in which CLIP compares images with text; 512 for ViT-B/32 and
ViT-B/16, 768 for ViT-L/14). A full CLIP checkpoint such as ``openai/clip-vit-base-patch32`` loads
without its text tower. CLIP is a general-purpose embedding, not trained for re-identification; for
people an ONNX ReID model (``--embedder onnx``, e.g. OSNet) is trained for exactly that and costs a
small fraction per crop. CLIP, like DINO, is for classes no ReID model covers (vehicles, animals).
"""

from __future__ import annotations

from mot_dinov3.config import DEFAULT_CLIP_MODEL, EmbedderConfig
from mot_dinov3.features import hub
from mot_dinov3.features.hf import HfVisionEmbedder, Preprocess, from_pretrained, load_error

MODEL_CLASS = "CLIPVisionModelWithProjection"


class ClipEmbedder(HfVisionEmbedder):
    """Embeds crops with an already-built ``CLIPVisionModelWithProjection``.

    Args:
        model: the vision model with projection; D is ``model.config.projection_dim``.
        preprocess: input size and normalisation (CLIP's own mean / std from its processor config).
        cfg: crop and batch settings (``pooling`` does not apply: CLIP's pooled, projected output is used).

    Use :func:`load_clip` to build one from a hub id or local folder.
    """

    name = "clip"

    def __init__(self, model, preprocess: Preprocess, cfg: EmbedderConfig):
        super().__init__(model, preprocess, cfg, dim=model.config.projection_dim)

    def forward(self, pixel_values):
        """(B, 3, H, W) -> (B, projection_dim) ``image_embeds``."""
        return self.model(pixel_values=pixel_values).image_embeds


def _from_pretrained(model_id: str, token: str | None):
    return from_pretrained(model_id, token, MODEL_CLASS)


def load_clip(cfg: EmbedderConfig, token: str | None = None, loader=_from_pretrained) -> ClipEmbedder:
    """Load a CLIP model from a hub id or a local folder, with clean errors.

    Args:
        cfg: ``cfg.model`` is the hub id or folder (default ``openai/clip-vit-base-patch32``).
        token: Hugging Face token (default: :func:`hub.hf_token`).
        loader: ``(model_id, token) -> (model, Preprocess)``; replaceable in tests.

    Raises:
        UserError: unreachable and not cached, not found, gated, or another load failure.
    """
    model_id = cfg.model or DEFAULT_CLIP_MODEL
    token = hub.hf_token() if token is None else token
    try:
        model, pre = loader(model_id, token)
    except Exception as exc:
        raise load_error(model_id, hub.classify_load_error(exc), exc) from exc
    return ClipEmbedder(model, pre, cfg)
