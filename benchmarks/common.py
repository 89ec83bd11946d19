"""Shared benchmark helpers: cached detections (:mod:`mot_dinov3.replay`, under ``benchmarks/cache/``,
git-ignored), Ultralytics trackers on cached boxes, the machine description.

Detections are computed once per (weights, imgsz, conf, classes) and sequence, together with the
detector's neck features so the ``yolo`` embedder can replay too. Every tracker configuration in a
benchmark then sees exactly the same boxes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mot_dinov3 import replay
from mot_dinov3.config import DetectorConfig
from mot_dinov3.detector import Detector
from mot_dinov3.io import FrameSource, MotWriter
from mot_dinov3.replay import ReplayDetector, SequenceDetections

__all__ = [
    "CACHE_DIR",
    "RESULTS_DIR",
    "ReplayDetector",
    "SequenceDetections",
    "cache_path",
    "load_or_detect",
    "machine_info",
    "random_init_dino",
    "run_ultralytics_tracker",
    "write_json",
]

CACHE_DIR = Path(__file__).parent / "cache"
RESULTS_DIR = Path(__file__).parent / "results"


def cache_path(seq: Path, det: DetectorConfig, tag: str = "") -> Path:
    """:func:`mot_dinov3.replay.cache_path` under :data:`CACHE_DIR`."""
    return replay.cache_path(CACHE_DIR, seq, det, tag)


def load_or_detect(
    seq: Path, det: DetectorConfig, detector: Detector | None = None, tag: str = ""
) -> SequenceDetections:
    """:func:`mot_dinov3.replay.load_or_detect` under :data:`CACHE_DIR`."""
    return replay.load_or_detect(CACHE_DIR, seq, det, detector, tag)


def run_ultralytics_tracker(
    kind: str, seq: Path, dets: SequenceDetections, mot_txt: Path, with_reid: bool = False
) -> dict:
    """Run an Ultralytics tracker (``bytetrack``, ``botsort``, ``ocsort``, ``tracktrack``) with its default
    YAML on the cached detections; write a MOTChallenge txt. Returns ``{"track_ms_per_frame": ...}``.

    ``with_reid`` turns on the tracker's native ReID (``model: auto``: the detector's neck features).
    """
    from ultralytics.cfg import ROOT
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML, IterableSimpleNamespace

    cfg = IterableSimpleNamespace(**YAML.load(ROOT / "cfg" / "trackers" / f"{kind}.yaml"))
    if with_reid:
        cfg.with_reid = True
    cfg.device = "cpu"
    tracker = TRACKER_MAP[cfg.tracker_type](args=cfg)
    source = FrameSource(seq)
    writer = MotWriter(str(mot_txt))
    ms = []
    for frame, d in zip(source, dets.frames):
        data = np.concatenate([d.xyxy, d.conf[:, None], d.cls[:, None].astype(np.float32)], axis=1)
        boxes = Boxes(data, frame.image.shape[:2])
        t0 = time.perf_counter()
        out = tracker.update(boxes, frame.image, feats=d.feats if with_reid else None)
        ms.append((time.perf_counter() - t0) * 1000.0)
        out = np.asarray(out).reshape(-1, 8)
        writer.write(frame.index, out[:, 4].astype(int), out[:, :4], out[:, 5])
    writer.close()
    source.close()
    return {"track_ms_per_frame": float(np.mean(ms)) if ms else 0.0}


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=float))


def machine_info() -> dict:
    """CPU / GPU description for the report."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def random_init_dino(config_dir: str, device: str | None = None):
    """The ``dino`` backend on a model built from a local config with random weights: the real
    architecture and cost (e.g. ViT-S/14 from ``configs/dinov2-small``), meaningless embeddings."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    from mot_dinov3.config import EmbedderConfig
    from mot_dinov3.features.dino import DinoEmbedder
    from mot_dinov3.features.hf import Preprocess

    torch.manual_seed(0)
    model = AutoModel.from_config(AutoConfig.from_pretrained(config_dir))
    pre = Preprocess.from_processor(AutoImageProcessor.from_pretrained(config_dir))
    return DinoEmbedder(model, pre, EmbedderConfig(name="dino", device=device))
