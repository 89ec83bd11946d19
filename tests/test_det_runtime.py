"""Detector runtimes: the static export shape, the runtime choice, a cached OpenVINO / ONNX export that gives
PyTorch's boxes, the fallback when an export fails, and the thread count PyTorch keeps."""

from __future__ import annotations

import logging
import shutil

import cv2
import numpy as np
import pytest
from conftest import shared_path

from mot_dinov3 import det_export
from mot_dinov3.config import DetectorConfig
from mot_dinov3.det_export import resolve_precision, resolve_runtime, static_shape
from mot_dinov3.errors import UserError
from mot_dinov3.matching import iou_matrix


@pytest.mark.parametrize(
    "hw, imgsz, shape",
    [
        ((1080, 1920), 960, (544, 960)),  # MOT17: 960x540, padded to a multiple of 32
        ((480, 640), 960, (736, 960)),  # upscaled: 720 -> 736
        ((1080, 1920), 640, (384, 640)),
        ((576, 768), 1000, (768, 1024)),  # imgsz rounded up to the stride, as Ultralytics does
        ((500, 500), 320, (320, 320)),
    ],
)
def test_static_shape_is_the_pytorch_letterbox(hw, imgsz, shape):
    assert static_shape(hw, imgsz) == shape


def test_static_shape_matches_ultralytics_letterbox():
    from ultralytics.data.augment import LetterBox

    for h, w in [(1080, 1920), (480, 640), (720, 1280), (577, 769), (1920, 1080)]:
        out = LetterBox((960, 960), auto=True, stride=32)(image=np.zeros((h, w, 3), np.uint8))
        assert out.shape[:2] == static_shape((h, w), 960), (h, w)


def test_auto_runtime(monkeypatch):
    monkeypatch.setattr(det_export, "installed", lambda rt: True)
    assert resolve_runtime("auto", "w.pt", cuda=False, capture_features=False) == "openvino"
    assert resolve_runtime("auto", "w.pt", cuda=True, capture_features=False) == "torch"  # fp16 PyTorch
    assert resolve_runtime("auto", "w.pt", cuda=False, capture_features=True) == "torch"  # neck features
    assert resolve_runtime("auto", "m_openvino_model/", cuda=False, capture_features=False) == "torch"
    assert resolve_runtime("onnx", "w.pt", cuda=False, capture_features=False) == "onnx"
    monkeypatch.setattr(det_export, "installed", lambda rt: rt == "torch")
    assert resolve_runtime("auto", "w.pt", cuda=False, capture_features=False) == "torch"


def test_auto_precision():
    assert resolve_precision("auto", "openvino", cuda=False) == "fp16"  # OpenVINO's native: bf16 or f32
    assert resolve_precision("auto", "torch", cuda=False) == "fp32"
    assert resolve_precision("auto", "torch", cuda=False, bf16=True) == "fp16"  # bf16 autocast on an AMX CPU
    assert resolve_precision("auto", "onnx", cuda=False, bf16=True) == "fp32"
    assert resolve_precision("fp32", "torch", cuda=False, bf16=True) == "fp32"
    assert resolve_precision("auto", "onnx", cuda=False) == "fp32"  # ONNX Runtime's CPU FP16 is slower
    assert resolve_precision("auto", "torch", cuda=True) == "fp16"
    assert resolve_precision("fp32", "openvino", cuda=False) == "fp32"
    assert resolve_precision("int8", "openvino", cuda=False) == "int8"


@pytest.mark.parametrize(
    "runtime, weights, features, said",
    [
        ("onnx", "m_openvino_model", False, "already an exported openvino model"),
        ("openvino", "w.pt", True, "det_runtime='openvino'"),
    ],
)
def test_runtime_conflicts_are_one_line_errors(runtime, weights, features, said):
    with pytest.raises(UserError, match=said) as e:
        resolve_runtime(runtime, weights, cuda=False, capture_features=features)
    assert "\n" not in str(e.value)


def test_bad_runtime_names_the_parameter():
    with pytest.raises(UserError, match="det_runtime='banana': expected one of auto, torch"):
        DetectorConfig(runtime="banana")
    with pytest.raises(UserError, match="det_precision='int4'"):
        DetectorConfig(precision="int4")


def _frames(mot17_09, n):
    return [cv2.imread(str(p)) for p in sorted((mot17_09 / "img1").glob("*.jpg"))[:n]]


def _matched(a, b) -> tuple[float, int, int]:
    """Mean best IoU of ``a``'s boxes in ``b`` over frames, and the box counts."""
    ious = [iou_matrix(x.xyxy, y.xyxy).max(1) for x, y in zip(a, b) if len(x) and len(y)]
    return float(np.concatenate(ious).mean()), sum(map(len, a)), sum(map(len, b))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["openvino", "onnx"])
def test_export_gives_pytorch_boxes_and_is_cached(runtime, yolov8n, mot17_09, tmp_path, monkeypatch):
    pytest.importorskip({"openvino": "openvino", "onnx": "onnxruntime"}[runtime])
    from mot_dinov3.detector import Detector

    weights = tmp_path / "user" / "yolov8n.pt"
    weights.parent.mkdir()
    shutil.copyfile(yolov8n, weights)
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(tmp_path / "cache"))
    frames = _frames(mot17_09, 6)
    cfg = dict(model=str(weights), imgsz=640, classes=[0], device="cpu")
    ref = Detector(DetectorConfig(**cfg, runtime="torch", precision="fp32"))
    torch_dets = [ref(f) for f in frames]
    det = Detector(DetectorConfig(**cfg, runtime=runtime, precision="fp32"))
    exported = [det(f) for f in frames]
    assert det.runtime == runtime and det._imgsz == (384, 640)
    assert ref.torch_cpu and not det.torch_cpu  # the pipeline detects ahead in a thread for the export only
    if runtime == "openvino":  # FP32 also on CPUs where OpenVINO would pick bf16 (AMX, AVX512-BF16)
        assert det.inference_precision == "f32"
    iou, n_torch, n_export = _matched(torch_dets, exported)
    assert iou >= 0.99 and abs(n_torch - n_export) <= max(1, n_torch // 100)
    assert sorted(p.name for p in weights.parent.iterdir()) == ["yolov8n.pt"]  # nothing beside the user's file

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr("ultralytics.YOLO.export", no_export)
    again = Detector(DetectorConfig(**cfg, runtime=runtime, precision="fp32"))
    again(frames[0])
    assert again.runtime == runtime and again.export_path == det.export_path


@pytest.mark.slow
def test_auto_precision_on_openvino_stays_near_pytorchs_boxes(yolov8n, mot17_09, tmp_path, monkeypatch):
    """The default on a CPU: an FP16 export, run at OpenVINO's native precision (bf16 on AMX /
    AVX512-BF16 CPUs, where the boxes move slightly; f32 elsewhere)."""
    pytest.importorskip("openvino")
    from mot_dinov3.detector import Detector

    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(tmp_path / "cache"))
    frames = _frames(mot17_09, 6)
    cfg = dict(model=str(yolov8n), imgsz=640, classes=[0], device="cpu")
    ref = Detector(DetectorConfig(**cfg, runtime="torch", precision="fp32"))
    torch_dets = [ref(f) for f in frames]
    det = Detector(DetectorConfig(**cfg))
    auto = [det(f) for f in frames]
    assert det.runtime == "openvino" and det.precision == "fp16" and "-fp16-" in str(det.export_path)
    assert det.inference_precision in ("bf16", "f32", "f16")
    iou, n_torch, n_auto = _matched(torch_dets, auto)
    assert iou >= 0.97 and abs(n_torch - n_auto) <= max(2, n_torch // 50)


@pytest.mark.slow
def test_pytorch_fp16_on_a_cpu_is_bf16_autocast_near_fp32s_boxes(yolov8n, mot17_09):
    """On a CPU with AMX ``auto`` runs PyTorch in bf16 autocast: the boxes move slightly; ``fp32`` keeps
    PyTorch's FP32 boxes. Elsewhere both run FP32."""
    from mot_dinov3.det_export import cpu_bf16
    from mot_dinov3.detector import Detector

    frames = _frames(mot17_09, 6)
    cfg = dict(model=str(yolov8n), imgsz=640, classes=[0], device="cpu", runtime="torch")
    fp32 = Detector(DetectorConfig(**cfg, precision="fp32"))
    ref = [fp32(f) for f in frames]
    assert fp32.precision == "fp32" and fp32.inference_precision == "f32"
    auto = Detector(DetectorConfig(**cfg))
    dets = [auto(f) for f in frames]
    if not cpu_bf16():
        assert auto.precision == "fp32" and auto.inference_precision == "f32"
        pytest.skip("this CPU has no AMX: PyTorch runs FP32 under auto")
    assert auto.precision == "fp16" and auto.inference_precision == "bf16"
    iou, n_fp32, n_bf16 = _matched(ref, dets)
    assert iou >= 0.97 and abs(n_fp32 - n_bf16) <= max(2, n_fp32 // 50)
    assert iou < 1.0  # it did run in bf16: not FP32's boxes to the last bit


def test_an_exported_model_keeps_its_own_precision_under_auto(monkeypatch):
    """bf16 autocast is for PyTorch models: an exported folder under ``auto`` is not asked for FP16."""
    from mot_dinov3 import detector as detector_module

    folder = shared_path("weights/yolov8n_int8_openvino_model")
    monkeypatch.setattr(detector_module, "cpu_bf16", lambda: True)
    det = detector_module.Detector(DetectorConfig(model=str(folder), imgsz=640, classes=[0], device="cpu"))
    assert det.runtime == "torch" and det.precision == "fp32" and not det._torch_bf16


def test_bf16_autocast_decodes_in_fp32_and_leaves_masks_alone():
    """The head's decode runs out of autocast on FP32 copies of its floating-point inputs (lists and
    dicts too); masks and indices pass as they are; a deep copy of the model decodes with its own head."""
    import copy

    import torch

    from mot_dinov3.detector import _decode_in_fp32

    class Head(torch.nn.Module):
        def _inference(self, x):
            return self, torch.is_autocast_enabled("cpu"), x["boxes"].dtype, x["index"].dtype, x["feats"][0].dtype

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.ModuleList([torch.nn.Identity(), Head()])

    class Yolo:
        model = Net()

    yolo = Yolo()
    assert _decode_in_fp32(yolo)
    x = {"boxes": torch.zeros(2, dtype=torch.bfloat16), "index": torch.ones(2, dtype=torch.bool)}
    x["feats"] = [torch.zeros(1, dtype=torch.bfloat16)]
    copied = copy.deepcopy(yolo.model)
    for net in (yolo.model, copied):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            head, autocast, boxes, index, feats = net.model[-1]._inference(x)
        assert head is net.model[-1] and not autocast
        assert (boxes, index, feats) == (torch.float32, torch.bool, torch.float32)
    assert not _decode_in_fp32(type("NoHead", (), {"model": None})())


@pytest.mark.slow
def test_int8_is_calibrated_on_the_users_frames(yolov8n, tud_campus, monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from mot_dinov3.detector import Detector

    monkeypatch.setattr(det_export, "CALIB_FRAMES", 4)
    seen = []
    real = det_export.calibration_images
    monkeypatch.setattr(det_export, "calibration_images", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    cfg = DetectorConfig(
        model=str(yolov8n),
        imgsz=160,
        classes=[0],
        device="cpu",
        runtime="openvino",
        precision="int8",
        calib=str(tud_campus),
    )
    det = Detector(cfg)
    frame = cv2.imread(str(next(iter(sorted((tud_campus / "img1").glob("*.jpg"))))))
    det(frame)
    assert det.runtime == "openvino" and seen == [4] and "-int8-" in str(det.export_path)


def test_int8_needs_openvino_and_frames(yolov8n):
    from mot_dinov3.detector import Detector

    with pytest.raises(UserError, match="det_precision='int8' runs on OpenVINO"):
        Detector(DetectorConfig(model=str(yolov8n), runtime="onnx", precision="int8", calib="x"))
    with pytest.raises(UserError, match="needs calibration frames"):
        Detector(DetectorConfig(model=str(yolov8n), runtime="openvino", precision="int8"))


@pytest.mark.slow
def test_each_frame_size_gets_its_export(yolov8n, mot17_09, tud_campus):
    """One detector over sources of two sizes (a batch worker): each size runs at its own static shape."""
    pytest.importorskip("openvino")
    from mot_dinov3.detector import Detector

    det = Detector(DetectorConfig(model=str(yolov8n), imgsz=320, classes=[0], device="cpu", runtime="openvino"))
    big = _frames(mot17_09, 1)[0]
    small = cv2.imread(str(sorted((tud_campus / "img1").glob("*.jpg"))[0]))
    first = det(big)
    assert det._imgsz == (192, 320)
    det(small)
    assert det._imgsz == (256, 320) and det.runtime == "openvino"
    again = det(big)
    assert det._imgsz == (192, 320) and np.array_equal(first.xyxy, again.xyxy)


@pytest.mark.slow
def test_failed_export_falls_back_to_pytorch(yolov8n, mot17_09, monkeypatch, caplog):
    from mot_dinov3 import detector as detector_module

    def broken(*args, **kwargs):
        raise RuntimeError("no such layer\nsecond line")

    monkeypatch.setattr(detector_module, "export", broken)
    monkeypatch.setattr(detector_module, "cached_export", lambda key: None)  # not one made by another test
    monkeypatch.setattr(detector_module, "installed", lambda rt: True)
    det = detector_module.Detector(
        DetectorConfig(model=str(yolov8n), imgsz=320, classes=[0], device="cpu", runtime="openvino")
    )
    with caplog.at_level(logging.WARNING):
        dets = det(_frames(mot17_09, 1)[0])
    assert det.runtime == "torch" and det.torch_cpu and len(dets) > 0
    (line,) = [r.getMessage() for r in caplog.records if "export failed" in r.getMessage()]
    assert "RuntimeError: no such layer" in line and "\n" not in line


def test_missing_runtime_package_is_one_line(yolov8n, monkeypatch):
    from mot_dinov3 import detector as detector_module

    monkeypatch.setattr(detector_module, "installed", lambda rt: rt == "torch")
    with pytest.raises(UserError, match="pip install onnxruntime"):
        detector_module.Detector(DetectorConfig(model=str(yolov8n), runtime="onnx"))


def test_pytorch_keeps_its_threads(yolov8n, mot17_09):
    """Ultralytics' device selection sets torch to cpu_count - 1 threads; the detector puts it back."""
    import torch

    from mot_dinov3.detector import Detector

    before = torch.get_num_threads()
    try:
        det = Detector(DetectorConfig(model=str(yolov8n), imgsz=320, classes=[0], device="cpu", runtime="torch"))
        det(_frames(mot17_09, 1)[0])
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_exports_are_never_half_used(tmp_path):
    """A cache folder without its marker (an interrupted export) is not used."""
    key = det_export.ExportKey("m", "0" * 64, "openvino", "fp32", (544, 960))
    folder = tmp_path / key.folder()
    (folder / "m_openvino_model").mkdir(parents=True)
    assert det_export.cached_export(key, tmp_path) is None
    (folder / det_export.MARKER).write_text('{"model": "m_openvino_model"}')
    assert det_export.cached_export(key, tmp_path) == folder / "m_openvino_model"


def test_exports_go_to_the_user_cache_when_the_weights_folder_cannot_be_written(tmp_path, monkeypatch):
    """A shared, read-only weights folder: new exports are made in the user cache and found there."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(blocker / "weights"))  # no folder can be made under a file
    from mot_dinov3.models.catalogue import user_dir

    user_exports = user_dir("cache") / "exports"  # the test session's own (conftest)
    assert det_export.exports_dir() == user_exports
    key = det_export.ExportKey("m", "0" * 64, "openvino", "fp32", (544, 960))
    assert det_export.cached_export(key) is None
    (user_exports / key.folder() / "m_openvino_model").mkdir(parents=True)
    (user_exports / key.folder() / det_export.MARKER).write_text('{"model": "m_openvino_model"}')
    assert det_export.cached_export(key) == user_exports / key.folder() / "m_openvino_model"


@pytest.mark.slow
def test_a_read_only_weights_folder_still_gets_the_openvino_detector(yolov8n, tud_campus, tmp_path, monkeypatch):
    """End to end: the export is made in the user cache (not PyTorch as the fallback), quietly."""
    pytest.importorskip("openvino")
    import warnings

    from mot_dinov3.detector import Detector
    from mot_dinov3.models.catalogue import user_dir

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(blocker / "weights"))
    det = Detector(DetectorConfig(model=str(yolov8n), imgsz=256, classes=[0], device="cpu", runtime="openvino"))
    image = cv2.imread(str(sorted((tud_campus / "img1").glob("*.jpg"))[0]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det(image)
    assert det.runtime == "openvino" and det.export_path is not None
    assert det.export_path.is_relative_to(user_dir("cache") / "exports")
    assert not [w for w in caught if "torch.jit" in str(w.message)]


def test_a_writable_weights_folder_keeps_the_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(tmp_path / "weights"))
    assert det_export.exports_dir() == tmp_path / "weights" / "exports"


def test_openvino_telemetry_is_switched_off(monkeypatch):
    """OpenVINO's converter posts usage data from a forked process, which offline can hang the run's exit."""
    ga4 = pytest.importorskip("openvino_telemetry.backend.backend_ga4")
    monkeypatch.setattr(ga4.GA4Backend, "send", ga4.GA4Backend.send)  # restored after the test

    started = []
    monkeypatch.setattr("multiprocessing.Process.start", lambda self: started.append(self))
    monkeypatch.setattr("multiprocessing.Process.join", lambda self, timeout=None: None)
    backend = ga4.GA4Backend.__new__(ga4.GA4Backend)
    backend.backend_url, backend.timeout = "https://example.invalid", 1
    det_export.no_openvino_telemetry()  # an earlier export in this session may have called it already
    backend.send({"event": "x"})
    assert not started and ga4.GA4Backend.send.__module__ == det_export.__name__


def test_an_openvino_model_compiled_on_auto_keeps_running(tmp_path):
    """Where OpenVINO sees a GPU or NPU, Ultralytics compiles on AUTO, whose compiled model has no
    INFERENCE_PRECISION_HINT: the precision is unknown (None), nothing is recompiled, nothing raises."""
    from types import SimpleNamespace

    from mot_dinov3.detector import Detector, _precision_hint

    class AutoCompiled:
        def get_property(self, name):
            raise RuntimeError(f"Unsupported property {name} by AUTO")

    calls = []
    backend = SimpleNamespace(ov_compiled_model=AutoCompiled(), compile_model=lambda *a, **k: calls.append(a))
    model = SimpleNamespace(predictor=SimpleNamespace(model=SimpleNamespace(backend=backend)))
    det = Detector.__new__(Detector)  # only the precision step, no weights loaded
    det.inference_precision = "unset"
    assert _precision_hint(AutoCompiled()) is None
    assert det._openvino_precision(model, tmp_path, fp32=True) is False
    assert det.inference_precision is None and calls == []
