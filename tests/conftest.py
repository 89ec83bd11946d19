"""Shared fixtures: paths into ../shared (tests needing it skip with a reason when it is absent)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOT_DINOV3_SHARED", ROOT.parent / "shared"))


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` loaded from its file (once) to test its helpers; the scripts find their
    ``common.py`` themselves."""
    key = f"benchmarks_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def shared_path(rel: str) -> Path:
    """Path under ../shared, or skip the test when it is not there."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"needs {p} (the project's shared data/weights folder beside the checkout)")
    return p


@pytest.fixture(scope="session")
def _detector_exports(tmp_path_factory) -> Path:
    """One cache of exported detectors (``<weights>/exports``) for the session: each export is made once."""
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(autouse=True)
def _user_files(tmp_path_factory, monkeypatch, _detector_exports):
    """Every test sees an empty user config (``models use``), weights folder and user cache (where
    exports go when the weights folder is read-only), never the developer's own; the detector exports
    in the weights folder are the session's."""
    from mot_dinov3.models import catalogue

    home = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("MOT_DINOV3_CONFIG", str(home / "config.json"))
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(home / "weights"))
    monkeypatch.setattr(catalogue, "user_dir", lambda kind: home / "user" / kind)
    (home / "weights").mkdir()
    (home / "weights" / "exports").symlink_to(_detector_exports, target_is_directory=True)


@pytest.fixture(scope="session")
def yolov8n() -> Path:
    return shared_path("weights/yolov8n_from_int8.pt")


@pytest.fixture(scope="session")
def osnet_onnx() -> Path:
    return shared_path("weights/osnet_x0_25_msmt17.onnx")


@pytest.fixture(scope="session")
def dinov2_small_config() -> Path:
    return shared_path("weights/configs/dinov2-small")


@pytest.fixture(scope="session")
def tud_campus() -> Path:
    return shared_path("data/MOT15/train/TUD-Campus")


@pytest.fixture(scope="session")
def mot17_09() -> Path:
    return shared_path("data/MOT17/train/MOT17-09-FRCNN")


@pytest.fixture(scope="session")
def person_detections(tmp_path_factory, yolov8n):
    """``seq -> SequenceDetections``: the CLI's default detector settings (yolov8n @960, conf 0.1, class 0)
    run once per sequence in this session, for tests that replay the same boxes under several configs."""
    from mot_dinov3 import replay
    from mot_dinov3.config import DetectorConfig

    cache = tmp_path_factory.mktemp("detections")
    det = DetectorConfig(model=str(yolov8n), conf=0.1, imgsz=960, classes=[0])
    return lambda seq: replay.load_or_detect(cache, Path(seq), det)


@pytest.fixture(scope="session")
def osnet_pth() -> Path:
    return shared_path("weights/osnet_x0_25_msmt17_from_onnx.pth")


@pytest.fixture
def one_torch_thread():
    """Torch on one thread (tests that check numbers, not speed): OpenMP's spinning workers slow small
    convolutions down by orders of magnitude when other processes hold the cores."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
