"""Any ONNX person/vehicle ReID model, run by OpenVINO or onnxruntime.

The model must take one input ``[B, 3, H, W]`` (RGB, ImageNet mean/std, as torchreid / BoxMOT exports
do) and return ``[B, D]``. H and W are read from the model; a fixed batch size of 1 is handled by
running crops one at a time. Example: OSNet x0.25 (Zhou et al., ICCV 2019, arXiv 1905.00953) at
``../shared/weights/osnet_x0_25_msmt17.onnx`` (256x128 input, 512-D output).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import MissingFileError, UserError
from mot_dinov3.features.base import batches, crop_policy, cut_windows, l2_normalize, to_blob

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
GRAPH_RUNTIMES = ("openvino", "onnxruntime")


def on_cuda(device: str | None) -> bool:
    """Whether ``device`` (``None``: CUDA when available, as every backend reads it) is a CUDA device."""
    if device is None:
        import torch

        return torch.cuda.is_available()
    return device.startswith("cuda")


def ort_has_cuda() -> bool:
    """Whether the installed onnxruntime has its CUDA execution provider."""
    if importlib.util.find_spec("onnxruntime") is None:
        return False
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def graph_runtime(runtime: str, device: str | None) -> str:
    """The runtime ``"auto"`` means for an ONNX graph on ``device`` (``None``: CUDA when available):
    onnxruntime on CUDA where it has the CUDA provider, else OpenVINO where installed (on a CPU it runs
    these networks faster and shares the cores with an OpenVINO detector instead of spinning against
    it), else onnxruntime. Other values pass through."""
    if runtime != "auto":
        return runtime
    if on_cuda(device) and ort_has_cuda():
        return "onnxruntime"
    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


@functools.cache
def openvino_core() -> Any:
    """The process's one ``openvino.Core``, which every OpenVINO graph here compiles on (OpenVINO's
    advice: one Core per application). Kept for the process's life: each Core's CPU plugin installs an
    alternate signal stack and unmaps it when destroyed, and Cores destroyed in the order they were
    made leave an unmapped stack installed (:mod:`mot_dinov3.sigstack`); a Core that lives on keeps
    its stack, and the stacks that later Cores restore to, mapped."""
    import openvino as ov

    return ov.Core()


def _reason(exc: Exception) -> str:
    """The informative line of a runtime's exception: OpenVINO's start with ``Exception from <file>`` and
    ``Check '...' failed at <file>`` lines before the reason."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '", "FrontEnd API failed"))]
    return (useful[-1] if useful else lines[0] if lines else type(exc).__name__)[:120]


def _float_dtype(dtype: Any) -> Any:
    """``dtype`` when it is a float type, else ``ValueError`` (image models take float input)."""
    if not (isinstance(dtype, type) or isinstance(dtype, np.dtype)) or not np.issubdtype(dtype, np.floating):
        raise ValueError(f"input type {dtype}, expected a float tensor")
    return dtype


class OnnxGraph:
    """One ONNX network with one image input, run by OpenVINO (at FP32) or onnxruntime.

    OpenVINO's CPU plugin would run an FP32 graph in bf16 on CPUs with AMX or AVX512-BF16 ("Precision
    Control", OpenVINO docs); ReID vectors are compared by cosine across frames, so it is held at FP32.
    onnxruntime's intra-op threads do not spin between calls (``session.intra_op.allow_spinning`` 0): a
    spinning pool takes the cores from the detector that runs between two embedding calls.

    Args:
        path: the ``.onnx`` file (read once; it may be deleted after construction).
        runtime: ``"openvino"`` or ``"onnxruntime"`` (see :func:`graph_runtime` for ``"auto"``).
        device: a CUDA device (``None``: CUDA when available) selects onnxruntime's CUDA provider where
            installed; OpenVINO runs on the CPU.
        threads: intra-op threads; ``None``: the runtime's default (every core).
        label: the option that named the file, for error messages.

    Attributes:
        input_shape: ``(B, C, H, W)``, ``None`` for a dynamic dimension.
        dim: the output's last dimension, ``None`` when dynamic.
        precision: what the runtime computes in: OpenVINO's ``INFERENCE_PRECISION_HINT`` (``"f32"``), or
            the graph's input type on onnxruntime (``"f32"``, ``"f16"``).
        metadata: the model's ONNX metadata (``metadata_props``: author, version ...), ``str -> str``.

    Raises:
        UserError: ``runtime`` is not ``openvino``, ``onnxruntime`` or ``auto``; the runtime is not
            installed; it cannot load the file, the model has more than one input, or the input is not a
            float tensor.
    """

    def __init__(
        self,
        path: str | Path,
        runtime: str = "auto",
        device: str | None = None,
        threads: int | None = None,
        label: str = "embed_model",
    ):
        self.runtime = graph_runtime(runtime, device)
        if self.runtime not in GRAPH_RUNTIMES:
            raise UserError(f"embed_runtime={runtime!r}: an ONNX model runs on {' or '.join(GRAPH_RUNTIMES)}")
        package = "openvino" if self.runtime == "openvino" else "onnxruntime"
        if importlib.util.find_spec(package) is None:
            raise UserError(
                f"embed_runtime={self.runtime!r} needs the Python package {package!r}, which is not installed: "
                f"pip install {package} (or pass embed_runtime='auto')"
            )
        try:
            shapes = (
                self._load_openvino(path, threads)
                if self.runtime == "openvino"
                else self._load_ort(path, on_cuda(device), threads)
            )
        except Exception as exc:  # both runtimes raise their own types for unreadable graphs
            raise UserError(
                f"{label}={str(path)!r}: {package} cannot load it ({_reason(exc)}); pass a valid ONNX model"
            ) from exc
        self.input_shape, out = shapes
        self.dim = out[-1] if out else None
        if self.runtime == "openvino":
            self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        else:  # onnxruntime computes in the graph's own type
            self.precision = {np.float16: "f16", np.float64: "f64"}.get(self._dtype, "f32")

    def _load_openvino(self, path: str | Path, threads: int | None) -> tuple[tuple, tuple]:
        from openvino.frontend import FrontEndManager

        # the ONNX frontend only: read_model would try every frontend (TensorFlow's logs to stderr)
        if not FrontEndManager().load_by_framework("onnx").supported(str(path)):
            raise ValueError("not an ONNX model")
        core = openvino_core()
        model = core.read_model(str(path))
        if len(model.inputs) != 1:
            raise ValueError(f"{len(model.inputs)} inputs, expected one image input")
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self._dtype = _float_dtype(model.inputs[0].get_element_type().to_dtype())
        framework = model.get_rt_info()["framework"] if model.has_rt_info(["framework"]) else {}
        self.metadata = {str(k): model.get_rt_info(["framework", k]).astype(str) for k in framework}
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()

        def dims(shape: Any) -> tuple:
            return tuple(d.get_length() if d.is_static else None for d in shape)

        return dims(model.inputs[0].get_partial_shape()), dims(model.outputs[0].get_partial_shape())

    def _load_ort(self, path: str | Path, cuda: bool, threads: int | None) -> tuple[tuple, tuple]:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if cuda and ort_has_cuda():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(path), options, providers=providers)
        inp, out = self._session.get_inputs(), self._session.get_outputs()
        if len(inp) != 1:
            raise ValueError(f"{len(inp)} inputs, expected one image input")
        self._input_name = inp[0].name
        types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
        self._dtype = _float_dtype(types.get(inp[0].type, inp[0].type))
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

        def dims(shape: list) -> tuple:
            return tuple(d if isinstance(d, int) else None for d in shape)

        return dims(inp[0].shape), dims(out[0].shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 -> the first output, float32 (a copy the caller may keep); the input is
        cast to the model's input type (FP16 exports take float16)."""
        x = np.ascontiguousarray(x, self._dtype)
        if self.runtime == "openvino":
            self._request.infer({0: x})
            return np.array(self._request.get_output_tensor(0).data, np.float32)
        return np.asarray(self._session.run(None, {self._input_name: x})[0], np.float32)  # a new array each run


class OnnxEmbedder:
    """ONNX ReID embedder (see module docstring).

    Raises:
        UserError: no ``embed_model``, file missing, not a loadable ONNX model, input not [B,3,H,W], or
            ``runtime="torch"``.
    """

    name = "onnx"
    uses_detector_features = False
    cost_free = False
    default_crop = (0.0, False)  # the detection box stretched to the input, as ReID models are trained

    def __init__(self, cfg: EmbedderConfig):
        if not cfg.model:
            raise UserError("embedder='onnx' needs embed_model=PATH.onnx (e.g. an OSNet ReID export)")
        path = Path(cfg.model).expanduser()
        if not path.is_file():
            raise MissingFileError(
                f"embed_model={str(path)!r}: ONNX file not found; pass the path of a ReID .onnx model"
            )
        if cfg.runtime == "torch":
            raise UserError(
                "embed_runtime='torch' runs osnet weights in PyTorch, not an .onnx model; leave embed_runtime='auto'"
            )
        self.graph = OnnxGraph(path, cfg.runtime, cfg.device)
        shape = self.graph.input_shape
        if len(shape) != 4 or shape[1] != 3 or shape[2] is None or shape[3] is None:
            raise UserError(
                f"embed_model={str(path)!r}: expected input [B,3,H,W] with fixed H, W, got {list(shape)}; "
                "export the model with a static image size"
            )
        self.size_hw = (int(shape[2]), int(shape[3]))
        self.max_batch = shape[0] if shape[0] is not None else cfg.batch_size
        self.dim = self.graph.dim or self._probe_dim(path)
        self.cfg = cfg
        self.crop_pad, self.crop_square = crop_policy(cfg.crop_pad, cfg.crop_square, self.default_crop)

    def _probe_dim(self, path: Path) -> int:
        """The embedding size of a model whose output shape is dynamic: one blank input run through it."""
        try:
            return int(self.graph(np.zeros((1, 3, *self.size_hw), np.float32)).shape[-1])
        except Exception as exc:  # the runtimes raise their own types
            raise UserError(
                f"embed_model={str(path)!r}: the model fails on a {self.size_hw[0]}x{self.size_hw[1]} image "
                f"({_reason(exc)}); pass a ReID model taking [B,3,H,W] and returning [B,D]"
            ) from exc

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
        out = [self.graph(x[s]) for s in batches(len(x), self.max_batch)]
        return l2_normalize(np.concatenate(out, axis=0).reshape(len(x), -1))

    def synchronize(self) -> None:
        """OpenVINO and onnxruntime calls return after the work is done: nothing to wait for."""
