"""Any ONNX person/vehicle ReID model through onnxruntime.

The model must take one input ``[B, 3, H, W]`` (RGB, ImageNet mean/std, as torchreid / BoxMOT exports
do) and return ``[B, D]``. H and W are read from the model; a fixed batch size of 1 is handled by
running crops one at a time. Example: OSNet x0.25 (Zhou et al., ICCV 2019, arXiv 1905.00953) at
``../shared/weights/osnet_x0_25_msmt17.onnx`` (256x128 input, 512-D output).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import MissingFileError, UserError
from mot_dinov3.features.base import batches, crop_policy, cut_windows, l2_normalize, to_blob

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class OnnxEmbedder:
    """ONNX ReID embedder (see module docstring).

    Raises:
        UserError: no ``embed_model``, file missing, not a loadable ONNX model, or input not [B,3,H,W].
    """

    name = "onnx"
    uses_detector_features = False
    cost_free = False
    default_crop = (0.0, False)  # the detection box stretched to the input, as ReID models are trained

    def __init__(self, cfg: EmbedderConfig):
        import onnxruntime as ort

        if not cfg.model:
            raise UserError("embedder='onnx' needs embed_model=PATH.onnx (e.g. an OSNet ReID export)")
        path = Path(cfg.model).expanduser()
        if not path.is_file():
            raise MissingFileError(
                f"embed_model={str(path)!r}: ONNX file not found; pass the path of a ReID .onnx model"
            )
        providers = ["CPUExecutionProvider"]
        if cfg.device and cfg.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise UserError(
                f"embed_model={str(path)!r}: onnxruntime cannot load it ({str(exc).splitlines()[0][:120]}); "
                "pass a valid ONNX ReID model"
            ) from exc
        inp = self.session.get_inputs()[0]
        shape = inp.shape
        if len(shape) != 4 or not all(isinstance(s, int) for s in shape[2:]) or shape[1] not in (3, "3"):
            raise UserError(
                f"embed_model={str(path)!r}: expected input [B,3,H,W] with fixed H, W, got {shape}; "
                "export the model with a static image size"
            )
        self.input_name = inp.name
        self.size_hw = (int(shape[2]), int(shape[3]))
        self.max_batch = shape[0] if isinstance(shape[0], int) else cfg.batch_size
        out_shape = self.session.get_outputs()[0].shape
        self.dim = (
            int(out_shape[-1])
            if isinstance(out_shape[-1], int)
            else int(
                self.session.run(None, {self.input_name: np.zeros((1, 3, *self.size_hw), np.float32)})[0].shape[-1]
            )
        )
        self.cfg = cfg
        self.crop_pad, self.crop_square = crop_policy(cfg.crop_pad, cfg.crop_square, self.default_crop)

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        """(M, 4) xyxy pixel boxes of a BGR uint8 frame -> (M, D) float32 L2-normalised."""
        return self.embed_crops(self.crop(image, xyxy))

    def crop(self, image: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
        """The M windows the model sees (``--crop-pad``, ``--crop-square``; by default the box itself,
        stretched), (h, w, 3) uint8 at its input size."""
        return cut_windows(image, xyxy, self.size_hw, self.crop_pad, self.crop_square)

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """M windows from :meth:`crop` (of any frames) -> (M, D) float32 L2-normalised."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = to_blob(crops, self.size_hw, IMAGENET_MEAN, IMAGENET_STD)
        out = [self.session.run(None, {self.input_name: x[s]})[0] for s in batches(len(x), self.max_batch)]
        return l2_normalize(np.concatenate(out, axis=0).reshape(len(x), -1))

    def synchronize(self) -> None:
        """onnxruntime calls return after the work is done: nothing to wait for."""
