"""Detections computed once and replayed: a cache of every frame's boxes (and neck features) per
(weights, imgsz, conf, classes) and sequence, and :class:`ReplayDetector`, which stands in for the
detector. Benchmarks and tests use it to run many tracker configurations on exactly the same boxes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mot_dinov3.config import DetectorConfig
from mot_dinov3.detector import Detections, Detector
from mot_dinov3.io import FrameSource


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


def cache_path(cache_dir: Path, seq: Path, det: DetectorConfig, tag: str = "") -> Path:
    """Cache file of ``seq``'s detections under ``cache_dir``; ``tag`` tells apart derived copies of a
    sequence (same name)."""
    classes = "all" if det.classes is None else "-".join(map(str, det.classes))
    tag = f"_{tag}" if tag else ""
    if det.runtime not in ("auto", "torch") or det.precision not in ("auto", "fp32"):  # PyTorch's have no suffix
        tag += f"_{det.runtime}-{det.precision}"
    return (
        Path(cache_dir) / f"{Path(det.model).stem}_{det.imgsz}_conf{det.conf:g}_cls{classes}{tag}" / f"{seq.name}.npz"
    )


def load_or_detect(
    cache_dir: Path, seq: Path, det: DetectorConfig, detector: Detector | None = None, tag: str = ""
) -> SequenceDetections:
    """Detections of every frame of ``seq``, from the cache under ``cache_dir`` or computed (and cached)
    now with ``detector`` (default: built from ``det``; in PyTorch unless ``det`` names another runtime or
    INT8, at FP32 unless ``det`` names a precision (the unsuffixed cache holds PyTorch's FP32 boxes on
    every device), capturing neck features where PyTorch runs, zeros elsewhere)."""
    path = cache_path(cache_dir, seq, det, tag)
    if path.is_file():
        z = np.load(path)
        split = np.cumsum(z["counts"])[:-1]
        cached = [
            Detections(x, c, k, f)
            for x, c, k, f in zip(
                np.split(z["xyxy"], split),
                np.split(z["conf"], split),
                np.split(z["cls"], split),
                np.split(z["feats"], split),
            )
        ]
        return SequenceDetections(cached, z["detect_ms"], z["read_ms"])
    torch_path = det.runtime in ("auto", "torch") and det.precision != "int8"  # only PyTorch has neck features
    if torch_path:  # the cache of PyTorch's FP32 boxes has no suffix (cache_path), whatever "auto" picks here
        det = replace(det, runtime="torch", precision="fp32" if det.precision == "auto" else det.precision)
    detector = detector or Detector(replace(det, capture_features=torch_path))
    frames: list[Detections] = []
    feats: list[np.ndarray] = []
    detect_ms, read_ms = [], []
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
        feats.append(d.feats)
    source.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    dim = max((f.shape[1] for f in feats if len(f)), default=64)
    np.savez_compressed(
        path,
        counts=np.array([len(d) for d in frames]),
        xyxy=np.concatenate([d.xyxy for d in frames]).reshape(-1, 4),
        conf=np.concatenate([d.conf for d in frames]),
        cls=np.concatenate([d.cls for d in frames]),
        feats=np.concatenate([f.reshape(-1, dim) for f in feats]).astype(np.float32),
        detect_ms=np.array(detect_ms),
        read_ms=np.array(read_ms),
    )
    return SequenceDetections(frames, np.array(detect_ms), np.array(read_ms))


class ReplayDetector:
    """Stands in for :class:`~mot_dinov3.detector.Detector`: returns the cached detections in frame order.

    The pipeline detects ahead of the frame it tracks (:func:`mot_dinov3.pipeline.detect_ahead`), so
    :meth:`frame_index` tells which cached frame an image got, for stand-ins that look results up per frame.
    """

    def __init__(self, dets: SequenceDetections):
        self._frames = dets.frames
        self._next = 0
        self._served: dict[int, int] = {}  # id(image) -> 0-based frame, for the last few images

    def __call__(self, image: np.ndarray) -> Detections:
        d = self._frames[self._next]
        self._served.pop(id(image), None)  # an id may be reused once its image is freed: newest last
        self._served[id(image)] = self._next
        if len(self._served) > 8:  # images in flight: at most a few frames ahead
            del self._served[next(iter(self._served))]
        self._next += 1
        return d

    def frame_index(self, image: np.ndarray) -> int:
        """0-based index of the cached frame returned for ``image`` (one of the last 8 detected).

        Raises:
            KeyError: ``image`` is not one of them.
        """
        return self._served[id(image)]
