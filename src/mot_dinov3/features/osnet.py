"""OSNet person ReID in PyTorch, loading torchreid checkpoints (``.pt`` / ``.pth``).

OSNet: Zhou et al., "Omni-Scale Feature Learning for Person Re-Identification", ICCV 2019, arXiv
1905.00953; OSNet-AIN: Zhou et al., "Learning Generalisable Omni-Scale Representations for Person
Re-Identification", arXiv 1910.06827. The layers follow the paper and carry torchreid's module names
(``torchreid/models/osnet.py`` and ``osnet_ain.py``), so its checkpoints load with ``strict=True``:
x1.0 / x0.75 / x0.5 / x0.25 widths, OSNet-IBN x1.0 and OSNet-AIN, all in :data:`VARIANTS`.

The maintained packages that ship OSNet are not used: ``torchreid`` on PyPI is an unmaintained 2022
release and ``boxmot`` brings a whole tracking stack; the network is small enough to keep here.

The embedder (``embedder='osnet'``) sees the same crops as the ``onnx`` backend (the detection box
stretched to 256x128, RGB with ImageNet mean/std) and returns the same vectors as an ONNX export of the
same weights, L2-normalised. For inference the BatchNorm layers are folded into the convolutions before
them (:func:`fuse_batchnorm`), which changes nothing but the rounding; on the CPU the folded network is
exported to ONNX in memory and run by OpenVINO or onnxruntime (:func:`onnx_graph`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import MissingFileError, UserError
from mot_dinov3.features.base import batches, crop_policy, cut_windows, l2_normalize, to_blob
from mot_dinov3.features.onnx import IMAGENET_MEAN, IMAGENET_STD, OnnxEmbedder, OnnxGraph, graph_runtime

INPUT_HW = (256, 128)  # torchreid's training size for person ReID

# per-block normalisation: "" none; "after": InstanceNorm after the residual sum (OSNet-IBN);
# "inside": InstanceNorm on the residual branch, which then has no BatchNorm (OSNet-AIN's OSBlockINin)
BlockNorms = tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Variant:
    """One OSNet architecture.

    Attributes:
        channels: stem and the three stages' output channels, (64, 256, 384, 512) scaled by the width.
        layout: ``"osnet"`` (torchreid ``osnet.py`` names: ``conv2a..conv2d`` streams, the stage's
            transition inside its ``nn.Sequential``) or ``"ain"`` (``osnet_ain.py``: ``conv2.{t}.layers``
            streams, transitions as ``pool2`` / ``pool3``).
        stem_in: the 7x7 stem uses InstanceNorm instead of BatchNorm.
        blocks: per stage, the normalisation of each OS block (its length is the stage's depth).
    """

    channels: tuple[int, int, int, int]
    layout: str
    stem_in: bool
    blocks: BlockNorms


_WIDTHS = {"x1_0": 1.0, "x0_75": 0.75, "x0_5": 0.5, "x0_25": 0.25}
_PLAIN: BlockNorms = (("", ""), ("", ""), ("", ""))
_IBN: BlockNorms = (("after", "after"), ("", ""), ("", ""))
_AIN: BlockNorms = (("inside", "inside"), ("", "inside"), ("inside", ""))


def _scaled(f: float) -> tuple[int, int, int, int]:
    a, b, c, d = (int(round(n * f)) for n in (64, 256, 384, 512))
    return a, b, c, d


#: torchreid's OSNet models by name
VARIANTS: dict[str, Variant] = {
    **{f"osnet_{w}": Variant(_scaled(f), "osnet", False, _PLAIN) for w, f in _WIDTHS.items()},
    "osnet_ibn_x1_0": Variant(_scaled(1.0), "osnet", True, _IBN),
    **{f"osnet_ain_{w}": Variant(_scaled(f), "ain", True, _AIN) for w, f in _WIDTHS.items()},
}


class ConvLayer(nn.Module):
    """conv (no bias) + BatchNorm (or InstanceNorm) + optional ReLU; torchreid's ConvLayer / Conv1x1 /
    Conv1x1Linear (``conv``, ``bn`` names)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        k: int = 1,
        stride: int = 1,
        instance_norm: bool = False,
        norm: bool = True,
        relu: bool = True,
    ):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn: nn.Module | None = (
            (nn.InstanceNorm2d(cout, affine=True) if instance_norm else nn.BatchNorm2d(cout)) if norm else None
        )
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x.relu_() if self.relu else x


class LightConv3x3(nn.Module):
    """1x1 conv (linear) then depthwise 3x3 conv + BatchNorm + ReLU (the paper's Lite 3x3)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=c)
        self.bn: nn.Module = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv2(self.conv1(x))).relu_()


class LightConvStream(nn.Module):
    """``t`` Lite 3x3 layers in a row (OSNet-AIN's names: ``layers``)."""

    def __init__(self, c: int, t: int):
        super().__init__()
        self.layers = nn.Sequential(*(LightConv3x3(c) for _ in range(t)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ChannelGate(nn.Module):
    """The unified aggregation gate: global average pool, 1x1 conv (C -> C/16), ReLU, 1x1 conv, sigmoid;
    the input scaled channel-wise by the result."""

    def __init__(self, c: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // reduction, 1)
        self.fc2 = nn.Conv2d(c // reduction, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc2(self.fc1(F.adaptive_avg_pool2d(x, 1)).relu_()).sigmoid_()


class OSBlock(nn.Module):
    """Omni-scale residual bottleneck: 1x1 reduce to C/4, four streams of 1 to 4 Lite 3x3 layers merged by
    one shared gate, 1x1 expand, residual add (1x1 projection when the channels change), ReLU.

    Args:
        cin, cout: input / output channels.
        layout: ``"osnet"`` or ``"ain"`` module names (see :class:`Variant`).
        norm: ``""``, ``"after"`` (IBN) or ``"inside"`` (AIN) InstanceNorm.
    """

    def __init__(self, cin: int, cout: int, layout: str, norm: str = ""):
        super().__init__()
        mid = cout // 4
        self.conv1 = ConvLayer(cin, mid)
        if layout == "osnet":
            self.conv2a = LightConv3x3(mid)
            self.conv2b, self.conv2c, self.conv2d = (
                nn.Sequential(*(LightConv3x3(mid) for _ in range(t))) for t in (2, 3, 4)
            )
            self.streams: tuple[str, ...] = ("conv2a", "conv2b", "conv2c", "conv2d")
        else:
            self.conv2 = nn.ModuleList(LightConvStream(mid, t) for t in (1, 2, 3, 4))
            self.streams = tuple(f"conv2.{t}" for t in range(4))
        self.gate = ChannelGate(mid)
        self.conv3 = ConvLayer(mid, cout, norm=norm != "inside", relu=False)
        self.downsample = ConvLayer(cin, cout, relu=False) if cin != cout else None
        self.IN: nn.Module = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.gate(self.get_submodule(self.streams[0])(x1))
        for s in self.streams[1:]:
            x2 = x2.add_(self.gate(self.get_submodule(s)(x1)))
        x3 = self.conv3(x2)
        if self.norm == "inside":
            x3 = self.IN(x3)
        out = x3.add_(x if self.downsample is None else self.downsample(x))
        if self.norm == "after":
            out = self.IN(out)
        return out.relu_()


class OSNet(nn.Module):
    """OSNet feature extractor (torchreid's model in eval mode, without the identity classifier).

    Args:
        variant: the architecture (a :data:`VARIANTS` value).
        fc_dim: size of the embedding layer (Linear + BatchNorm1d + ReLU after global pooling);
            ``None``: no such layer, the pooled ``channels[3]`` features are the output.

    ``forward``: (B, 3, H, W) float32 RGB, ImageNet-normalised (H, W = 256, 128 in training) ->
    (B, ``dim``) float32, not normalised.
    """

    def __init__(self, variant: Variant, fc_dim: int | None = 512):
        super().__init__()
        c = variant.channels
        self.conv1 = ConvLayer(3, c[0], 7, stride=2, instance_norm=variant.stem_in)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[str] = []
        for i, norms in enumerate(variant.blocks):
            blocks: list[nn.Module] = [
                OSBlock(c[i] if j == 0 else c[i + 1], c[i + 1], variant.layout, n) for j, n in enumerate(norms)
            ]
            # the transition between stages: 1x1 conv + 2x2 average pool (none after the last stage)
            pool = [nn.Sequential(ConvLayer(c[i + 1], c[i + 1]), nn.AvgPool2d(2, stride=2))] if i < 2 else []
            if variant.layout == "osnet":
                setattr(self, f"conv{i + 2}", nn.Sequential(*blocks, *pool))
                stages.append(f"conv{i + 2}")
            else:
                setattr(self, f"conv{i + 2}", nn.Sequential(*blocks))
                stages.append(f"conv{i + 2}")
                if pool:
                    setattr(self, f"pool{i + 2}", pool[0])
                    stages.append(f"pool{i + 2}")
        self.stages = tuple(stages)
        self.conv5 = ConvLayer(c[3], c[3])
        self.fc = (
            nn.Sequential(nn.Linear(c[3], fc_dim), nn.BatchNorm1d(fc_dim), nn.ReLU()) if fc_dim is not None else None
        )
        self.dim = int(fc_dim if fc_dim is not None else c[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        for s in self.stages:
            x = self.get_submodule(s)(x)
        v = torch.flatten(F.adaptive_avg_pool2d(self.conv5(x), 1), 1)
        return v if self.fc is None else self.fc(v)


def fuse_batchnorm(model: OSNet) -> OSNet:
    """Fold every BatchNorm into the conv / linear layer before it, in place, for inference (eval mode:
    the running statistics are used). Returns ``model``."""
    model.eval()
    for m in list(model.modules()):
        if isinstance(m, (ConvLayer, LightConv3x3)) and isinstance(m.bn, nn.BatchNorm2d):
            if isinstance(m, LightConv3x3):
                m.conv2 = fuse_conv_bn_eval(m.conv2, m.bn)
            else:
                m.conv = fuse_conv_bn_eval(m.conv, m.bn)
            m.bn = nn.Identity()
    if model.fc is not None:
        linear, bn = model.fc[0], model.fc[1]
        if isinstance(linear, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            model.fc[0], model.fc[1] = fuse_linear_bn_eval(linear, bn), nn.Identity()
    return model


@lru_cache(maxsize=32)
def _shapes(variant: Variant, fc_dim: int | None) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in OSNet(variant, fc_dim).state_dict().items()}


def _numpy_scalar_globals() -> list[Any]:
    """What unpickling a numpy scalar needs (``numpy._core`` in numpy 2, ``numpy.core`` before)."""
    core = getattr(np, "_core", None) or np.core
    dtypes = getattr(np, "dtypes", None)
    return [core.multiarray.scalar, np.dtype] + [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a torchreid checkpoint: a bare ``state_dict`` or ``{"state_dict": ...}``, with
    ``module.`` prefixes (DataParallel) and the identity classifier (``classifier.*``) dropped.

    Raises:
        MissingFileError: no such file.
        UserError: not a PyTorch checkpoint holding a state_dict of tensors.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingFileError(
            f"embed_model={str(p)!r}: OSNet weights not found; pass the path of a torchreid OSNet .pth / .pt file"
        )
    try:
        # weights only (no code runs), plus the numpy scalars torchreid's checkpoints carry (rank1, mAP)
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            ckpt: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch's own errors
        raise UserError(
            f"embed_model={str(p)!r}: not a PyTorch checkpoint that loads with weights_only=True "
            f"({type(exc).__name__}); pass torchreid OSNet weights (.pth / .pt)"
        ) from exc
    if isinstance(ckpt, Mapping) and isinstance(ckpt.get("state_dict"), Mapping):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, Mapping) or not ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise UserError(
            f"embed_model={str(p)!r}: not a state_dict of tensors; pass torchreid OSNet weights (.pth / .pt)"
        )
    out = {}
    for k, v in ckpt.items():
        k = str(k).removeprefix("module.")
        if not k.startswith("classifier."):
            out[k] = v
    return out


def infer_variant(state: Mapping[str, torch.Tensor], filename: str = "") -> str:
    """The :data:`VARIANTS` name of a torchreid OSNet state_dict: the one the file name says
    (``osnet_x0_25_msmt17.pth`` -> ``osnet_x0_25``), else the only one whose tensors have these names and
    shapes.

    Raises:
        UserError: the tensors are not those of any OSNet variant.
    """
    named = re.search(r"osnet_(?:ain_|ibn_)?x(?:1_0|0_75|0_5|0_25)", Path(filename).name.lower())
    if named and named.group(0) in VARIANTS:
        return named.group(0)
    stem = state.get("conv1.conv.weight")
    if stem is not None and stem.ndim == 4:
        have = {k: tuple(v.shape) for k, v in state.items()}
        fc = state.get("fc.0.weight")
        fc_dim = int(fc.shape[0]) if fc is not None else None
        for name, v in VARIANTS.items():
            if v.channels[0] == stem.shape[0] and _shapes(v, fc_dim) == have:
                return name
    raise UserError(
        f"embed_model={filename!r}: not the weights of an OSNet variant ({', '.join(VARIANTS)}); "
        "pass a torchreid OSNet checkpoint"
    )


def load_osnet(path: str | Path, variant: str | None = None) -> tuple[OSNet, str]:
    """Build OSNet and load a torchreid checkpoint into it with ``strict=True``.

    Args:
        path: ``.pth`` / ``.pt`` file (see :func:`read_state_dict`).
        variant: a :data:`VARIANTS` name; ``None``: :func:`infer_variant`.

    Returns:
        (the model in eval mode on the CPU, the variant's name).

    Raises:
        MissingFileError: no such file.
        UserError: not an OSNet state_dict, or not one of ``variant``.
    """
    state = read_state_dict(path)
    if variant is not None and variant not in VARIANTS:
        raise UserError(f"OSNet variant {variant!r}: unknown; choose one of {', '.join(VARIANTS)}")
    name = variant or infer_variant(state, str(path))
    fc = state.get("fc.0.weight")
    model = OSNet(VARIANTS[name], int(fc.shape[0]) if fc is not None else None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))[:160]
        raise UserError(
            f"embed_model={str(path)!r}: not the weights of {name} ({first}); pass a torchreid OSNet checkpoint"
        ) from exc
    return model.eval(), name


def onnx_graph(model: nn.Module, runtime: str = "auto", threads: int | None = None) -> OnnxGraph | None:
    """``model`` exported in memory with ``torch.onnx`` (batch axis dynamic, input (B, 3, 256, 128)) and
    loaded by ``runtime`` (:class:`~mot_dinov3.features.onnx.OnnxGraph`: ``"openvino"``, ``"onnxruntime"``
    or ``"auto"``, which tries OpenVINO, then onnxruntime) on ``threads`` intra-op threads (``None``: the
    runtime's default). ``None`` (the caller then runs PyTorch) where the ``onnx`` package or the export
    is unavailable, or, with ``"auto"``, where neither runtime loads the graph.

    Raises:
        UserError: an explicit ``runtime`` that is not installed or cannot load the exported graph."""
    import logging
    import tempfile
    import warnings

    log = logging.getLogger(__name__)
    order = [graph_runtime("auto", "cpu"), "onnxruntime"] if runtime == "auto" else [runtime]
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(tmp) / "osnet.onnx"
            torch.onnx.export(
                model.to(memory_format=torch.contiguous_format),
                (torch.zeros(1, 3, *INPUT_HW),),
                str(path),
                dynamo=False,
                input_names=["images"],
                output_names=["features"],
                dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}},
                opset_version=17,
            )
            for rt in dict.fromkeys(order):
                try:
                    return OnnxGraph(path, rt, "cpu", threads, label="the exported OSNet graph")
                except UserError as exc:
                    if runtime != "auto":
                        raise
                    log.info("OSNet: %s", exc)
            return None
    except UserError:
        raise
    except Exception as exc:  # no onnx package, an exporter change: PyTorch still works
        log.info("OSNet runs in PyTorch (ONNX export unavailable: %s)", exc)
        return None
    finally:
        model.to(memory_format=torch.channels_last)


class OSNetEmbedder:
    """OSNet ReID embedder on torchreid weights (``embedder='osnet'``, ``embed_model='PATH.pth'``).

    Crops, batching and lazy (buffered) crops work as in the ``onnx`` backend: ``crop`` gives (256, 128, 3)
    uint8 BGR windows, ``embed`` / ``embed_crops`` give (M, D) float32 L2-normalised rows (D = 512 for
    torchreid's models). Architecture: Zhou et al., arXiv 1905.00953.

    Args:
        cfg: ``model`` is the checkpoint; ``device``, ``batch_size``, crop settings as for every backend;
            ``runtime``: on the CPU, ``"auto"``, ``"openvino"`` and ``"onnxruntime"`` export the loaded
            network to ONNX in memory and run it there (faster than PyTorch; the same vectors, see
            :func:`onnx_graph`); on CUDA, and with ``"torch"``, PyTorch runs it.

    Raises:
        UserError: no ``embed_model``, or the file is not an OSNet state_dict (``MissingFileError`` when
            it does not exist).
    """

    name = "osnet"
    uses_detector_features = False
    cost_free = False
    default_crop = OnnxEmbedder.default_crop  # the same crops as the ONNX ReID path

    def __init__(self, cfg: EmbedderConfig):
        if not cfg.model:
            raise UserError(
                "embedder='osnet' needs embed_model=PATH.pth (torchreid OSNet weights, e.g. osnet_x0_25_msmt17.pth)"
            )
        model, self.variant = load_osnet(cfg.model)
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = fuse_batchnorm(model).to(self.device).to(memory_format=torch.channels_last)
        self.dim = model.dim
        # on the CPU, OpenVINO and onnxruntime run this network faster than PyTorch: export it once
        exported = self.device.type == "cpu" and cfg.runtime != "torch"
        self.graph = onnx_graph(self.model, cfg.runtime) if exported else None
        self.size_hw = INPUT_HW
        self.max_batch = cfg.batch_size
        self.cfg = cfg
        self.crop_pad, self.crop_square = crop_policy(cfg.crop_pad, cfg.crop_square, self.default_crop)

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        """(M, 4) xyxy pixel boxes of a BGR uint8 frame -> (M, D) float32 L2-normalised."""
        return self.embed_crops(self.crop(image, xyxy))

    def crop(self, image: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
        """The M windows the model sees (as the ``onnx`` backend: by default the box itself, stretched),
        (256, 128, 3) uint8 BGR."""
        return cut_windows(image, xyxy, self.size_hw, self.crop_pad, self.crop_square)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, 256, 128) float32 normalised RGB -> (B, D) float32 OSNet features, not normalised."""
        if self.graph is not None:
            return self.graph(x)
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device).contiguous(memory_format=torch.channels_last)
            return self.model(t).float().cpu().numpy()

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """M windows from :meth:`crop` (of any frames) -> (M, D) float32 L2-normalised."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = to_blob(crops, self.size_hw, IMAGENET_MEAN, IMAGENET_STD)
        return l2_normalize(np.concatenate([self.forward(x[s]) for s in batches(len(x), self.max_batch)], axis=0))

    def synchronize(self) -> None:
        """Wait for queued CUDA work (no-op on CPU)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
