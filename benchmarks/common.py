"""Shared benchmark helpers: cached detections, a replaying detector, Ultralytics trackers on cached boxes.

Detections are computed once per (weights, imgsz, conf, classes) and sequence and stored as ``.npz``
under ``benchmarks/cache/`` (git-ignored), together with the detector's neck features so the ``yolo``
embedder can replay too. Every tracker configuration in a benchmark then sees exactly the same boxes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mot_dinov3.config import DetectorConfig
from mot_dinov3.detector import Detections, Detector
from mot_dinov3.io import FrameSource, MotWriter

CACHE_DIR = Path(__file__).parent / "cache"
RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class SequenceDetections:
    """All detections of one sequence plus what it cost to compute them.

    Attributes:
        frames: one :class:`Detections` per frame, in order (with ``feats``).
        detect_ms: (F,) float64 detector wall time per frame, ms (as measured when the cache was made).
        read_ms: (F,) float64 frame read time per frame, ms.
    """

    frames: list[Detections]
    detect_ms: np.ndarray
    read_ms: np.ndarray


def cache_path(seq: Path, det: DetectorConfig, tag: str = "") -> Path:
    """Cache file of ``seq``'s detections; ``tag`` tells apart derived copies of a sequence (same name)."""
    classes = "all" if det.classes is None else "-".join(map(str, det.classes))
    tag = f"_{tag}" if tag else ""
    return CACHE_DIR / f"{Path(det.model).stem}_{det.imgsz}_conf{det.conf:g}_cls{classes}{tag}" / f"{seq.name}.npz"


def load_or_detect(seq: Path, det: DetectorConfig, detector: Detector | None = None,
                   tag: str = "") -> SequenceDetections:
    """Detections of every frame of ``seq``, from the cache or computed (and cached) now."""
    path = cache_path(seq, det, tag)
    if path.is_file():
        z = np.load(path)
        split = np.cumsum(z["counts"])[:-1]
        frames = [Detections(x, c, k, f) for x, c, k, f in zip(np.split(z["xyxy"], split), np.split(z["conf"], split),
                                                            np.split(z["cls"], split), np.split(z["feats"], split))]
        return SequenceDetections(frames, z["detect_ms"], z["read_ms"])
    detector = detector or Detector(replace(det, capture_features=True))
    frames, detect_ms, read_ms = [], [], []
    source = FrameSource(seq)
    it = iter(source)
    while True:
        t0 = time.perf_counter()
        frame = next(it, None)
        t1 = time.perf_counter()
        if frame is None:
            break
        d = detector(frame.image)
        detect_ms.append((time.perf_counter() - t1) * 1000.0)
        read_ms.append((t1 - t0) * 1000.0)
        if d.feats is None or d.feats.shape[0] != len(d):
            d.feats = np.zeros((len(d), 64), np.float32)
        frames.append(d)
    source.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    dim = max((d.feats.shape[1] for d in frames if len(d)), default=64)
    np.savez_compressed(
        path, counts=np.array([len(d) for d in frames]),
        xyxy=np.concatenate([d.xyxy for d in frames]).reshape(-1, 4),
        conf=np.concatenate([d.conf for d in frames]), cls=np.concatenate([d.cls for d in frames]),
        feats=np.concatenate([d.feats.reshape(-1, dim) for d in frames]).astype(np.float32),
        detect_ms=np.array(detect_ms), read_ms=np.array(read_ms))
    return SequenceDetections(frames, np.array(detect_ms), np.array(read_ms))


class ReplayDetector:
    """Stands in for :class:`~mot_dinov3.detector.Detector`: returns the cached detections in frame order."""

    def __init__(self, dets: SequenceDetections):
        self._frames = dets.frames
        self._next = 0

    def __call__(self, image: np.ndarray) -> Detections:
        d = self._frames[self._next]
        self._next += 1
        return d


def run_ultralytics_tracker(kind: str, seq: Path, dets: SequenceDetections, mot_txt: Path,
                            with_reid: bool = False) -> dict:
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
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


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
