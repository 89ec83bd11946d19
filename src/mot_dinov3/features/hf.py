"""What the Hugging Face ``transformers`` backends (``dino``, ``clip``) share.

* :class:`Preprocess`: input size and normalisation read from the model's ``preprocessor_config.json``,
  224x224 with ImageNet statistics without one.
* :class:`HfVisionEmbedder`: device placement, batched crops, autocast on CUDA, L2 normalisation; a
  backend only says how a batch of pixels becomes one vector per crop (:meth:`HfVisionEmbedder.forward`).
* :func:`from_pretrained`: a model and its preprocessing from a local folder, the Hugging Face cache or
  the Hub (cache only when the Hub does not answer), and :func:`load_error`, the user message for a failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features import hub
from mot_dinov3.features.base import batches, crop_policy, cut_windows, l2_normalize, to_blob
from mot_dinov3.features.onnx import IMAGENET_MEAN, IMAGENET_STD


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


class HfVisionEmbedder:
    """Embeds crops with an already-built ``transformers`` vision model; subclasses define :meth:`forward`.

    Args:
        model: a ``transformers`` vision model (moved to ``cfg.device``, CUDA when available, in eval mode).
        preprocess: input size and normalisation.
        cfg: crop and batch settings.
        dim: size D of the vectors :meth:`forward` returns.
    """

    name = "hf"
    uses_detector_features = False
    cost_free = False
    default_crop = (0.12, True)  # a padded square window: some context around the box for a ViT

    def __init__(self, model, preprocess: Preprocess, cfg: EmbedderConfig, dim: int):
        import torch

        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(self.device)
        self.preprocess = preprocess
        self.cfg = cfg
        self.crop_pad, self.crop_square = crop_policy(cfg.crop_pad, cfg.crop_square, self.default_crop)
        self.dim = int(dim)
        self._mean = np.asarray(preprocess.mean, np.float32)
        self._std = np.asarray(preprocess.std, np.float32)

    def forward(self, pixel_values):
        """(B, 3, H, W) float tensor -> (B, D) tensor, one vector per crop (not yet normalised)."""
        raise NotImplementedError

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        """(M, 4) xyxy pixel boxes of a BGR uint8 frame -> (M, D) float32 L2-normalised."""
        return self.embed_crops(self.crop(image, xyxy))

    def crop(self, image: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
        """The M windows the model sees (``--crop-pad``, ``--crop-square``; by default a padded square), (h, w,
        3) uint8 at its input size."""
        return cut_windows(image, xyxy, self.preprocess.size_hw, self.crop_pad, self.crop_square)

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """M windows from :meth:`crop` (of any frames) -> (M, D) float32 L2-normalised."""
        import torch

        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = to_blob(crops, self.preprocess.size_hw, self._mean, self._std)
        outs = []
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            for s in batches(len(x), self.cfg.batch_size):
                outs.append(self.forward(torch.from_numpy(x[s]).to(self.device)).float().cpu().numpy())
        return l2_normalize(np.concatenate(outs, axis=0))

    def synchronize(self) -> None:
        """Wait for queued CUDA work (no-op on CPU)."""
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def from_pretrained(model_id: str, token: str | None, model_class: str = "AutoModel"):
    """A ``transformers`` model and its :class:`Preprocess`, from a local folder, the cache or the Hub.

    When the Hub does not answer (:func:`hub.hub_reachable`) only the cache is read, so a model that is
    not cached fails at once instead of after ``huggingface_hub``'s retries.

    Args:
        model_id: Hugging Face id or local folder.
        token: Hugging Face access token, or ``None``.
        model_class: name of the ``transformers`` class that loads it (``AutoModel``,
            ``CLIPVisionModelWithProjection``).

    Raises:
        Whatever ``from_pretrained`` raises; :func:`load_error` turns it into a user message.
    """
    import transformers
    from transformers import AutoImageProcessor

    cache_only = not Path(model_id).is_dir() and not hub.hub_reachable()
    model = getattr(transformers, model_class).from_pretrained(model_id, token=token, local_files_only=cache_only)
    try:
        processor = AutoImageProcessor.from_pretrained(model_id, token=token, local_files_only=cache_only)
    except Exception:  # no / unreadable preprocessor config: the manual fallback applies
        processor = None
    return model, Preprocess.from_processor(processor)


def load_error(model_id: str, kind: str | None, exc: Exception) -> UserError:
    """The user message for a failed load, by :func:`hub.classify_load_error` kind."""
    messages = {
        hub.GATED: hub.gated_message,
        hub.UNSUPPORTED: hub.unsupported_message,
        hub.UNREACHABLE: hub.unreachable_message,
        hub.NOT_FOUND: hub.not_found_message,
    }
    if kind in messages:
        return UserError(messages[kind](model_id))
    return UserError(
        f"Model '{model_id}' could not be loaded ({exc.__class__.__name__}: "
        f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); check the model id or folder (embed_model=, "
        "or dinov3= for the dino backend)"
    )
