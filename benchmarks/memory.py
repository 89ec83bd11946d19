"""Memory over a long run: resident set size (RSS) frame by frame, to show that it stays flat.

    python benchmarks/memory.py --source ../shared/data/videos/one-by-one-person-detection.mp4 \\
        --det ../shared/weights/yolov8n_from_int8.pt --reid ../shared/weights/osnet_x0_25_msmt17.onnx --loops 3

The source (a video or an image folder) is played ``--loops`` times back to back, written once to a
temporary ``.mp4``, so a short clip stands for a long video. That runs through the whole pipeline as a
user's run does: the OSNet ONNX embedder scheduled with the defaults, the annotated video and the
MOT txt written. A probe around the detector reads the process RSS (``psutil``, from the ``bench``
extra) before every frame.

Reported: RSS after ``--warmup`` frames (models loaded, buffers allocated), at each quarter of the run,
the peak, and the growth over the second half of the run as a least-squares slope in MB per 1000
frames. A streaming pipeline (frames decoded a few ahead, lost tracks removed after ``track_buffer``,
a fixed-size EMA per track, results flushed every frame) keeps that slope near zero however long
the video; what grows at all is the run summary's per-frame timings (a few floats per frame). Prints a
markdown table; writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, machine_info, write_json  # noqa: E402

from mot_dinov3 import pipeline  # noqa: E402
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig  # noqa: E402
from mot_dinov3.detector import Detections, Detector  # noqa: E402
from mot_dinov3.io import FrameSource, VideoWriter  # noqa: E402

MB = 1024.0 * 1024.0


class RssProbe:
    """A detector wrapper that records the process RSS (MB) before each frame is detected.

    Args:
        detector: any callable ``(H, W, 3) uint8 BGR -> Detections`` (e.g. :class:`~mot_dinov3.detector.Detector`).

    Attributes:
        rss_mb: one float per frame seen, MB.
    """

    def __init__(self, detector):
        self.detector = detector
        self.rss_mb: list[float] = []
        self._proc = psutil.Process()

    def __call__(self, image: np.ndarray) -> Detections:
        self.rss_mb.append(self._proc.memory_info().rss / MB)
        return self.detector(image)


def loop_source(source: str, loops: int, out_path: Path) -> tuple[int, float]:
    """Write ``loops`` back-to-back copies of ``source`` (video or image folder) to ``out_path`` (.mp4).

    Returns:
        (frames written, fps of the source).

    Raises:
        UserError: ``source`` cannot be read or ``out_path`` written (from :mod:`mot_dinov3.io`).
    """
    first = FrameSource(source)
    fps, size = first.fps, (first.width, first.height)
    first.close()
    writer = VideoWriter(out_path, fps, size)
    n = 0
    try:
        for _ in range(loops):
            src = FrameSource(source)
            try:
                for frame in src:
                    writer.write(frame.image)
                    n += 1
            finally:
                src.close()
    finally:
        writer.close()
    return n, fps


def growth_mb_per_1000(rss_mb: list[float] | np.ndarray, start: float = 0.5) -> float:
    """Least-squares slope of RSS over the frames from ``start`` (a fraction of the run) to the end.

    Args:
        rss_mb: (F,) RSS per frame, MB.
        start: where the fit begins, as a fraction of F (0.5: the second half).

    Returns:
        MB per 1000 frames (0.0 when fewer than two frames are in the fitted part).
    """
    y = np.asarray(rss_mb, np.float64)[int(len(rss_mb) * start) :]
    if len(y) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(y), dtype=np.float64), y, 1)[0] * 1000.0)


def profile(rss_mb: list[float], warmup: int) -> dict:
    """RSS after warm-up, at each quarter, the peak and the second-half growth of one run (all MB)."""
    r = np.asarray(rss_mb, np.float64)
    n = len(r)
    at = {f"{q}%": float(r[min(n - 1, max(0, n * q // 100 - 1))]) for q in (25, 50, 75, 100)}
    return {
        "frames": n,
        "after_warmup": float(r[min(warmup, n - 1)]),
        **at,
        "peak": float(r.max()),
        "growth_mb_per_1000_frames": growth_mb_per_1000(r),
    }


def measure(source: str, det: DetectorConfig, reid: str, loops: int, workdir: Path) -> tuple[list[float], dict]:
    """Track ``loops`` copies of ``source`` with OSNet scheduled, writing the video and MOT txt to
    ``workdir``; return the per-frame RSS (MB) and the run summary as a dict."""
    long_video = workdir / "long.mp4"
    loop_source(source, loops, long_video)
    probe = RssProbe(Detector(det))
    cfg = RunConfig(
        source=str(long_video),
        detector=det,
        embedder=EmbedderConfig(name="onnx", model=reid),
        output=OutputConfig(video=str(workdir / "tracked.mp4"), mot_txt=str(workdir / "tracked.txt"), progress=False),
    )
    summary = pipeline.run(cfg, detector=probe)
    return probe.rss_mb, summary.to_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help="video file or image / MOTChallenge folder")
    ap.add_argument("--det", required=True, help="YOLO weights")
    ap.add_argument("--reid", required=True, help="ONNX ReID model, e.g. osnet_x0_25_msmt17.onnx")
    ap.add_argument("--loops", type=int, default=3, help="play the source this many times back to back")
    ap.add_argument("--imgsz", type=int, default=960)
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100, help="frames before the baseline RSS is read")
    ap.add_argument("--json", default=str(RESULTS_DIR / "memory.json"))
    a = ap.parse_args()

    det = DetectorConfig(model=a.det, conf=a.conf, imgsz=a.imgsz, classes=[0])
    with tempfile.TemporaryDirectory() as tmp:
        rss, summary = measure(a.source, det, a.reid, a.loops, Path(tmp))
    p = profile(rss, a.warmup)
    print(f"| frames | RSS after {a.warmup} frames | 25% | 50% | 75% | end | peak | growth, 2nd half |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {p['frames']} | {p['after_warmup']:.0f} MB | {p['25%']:.0f} MB | {p['50%']:.0f} MB | {p['75%']:.0f} MB "
        f"| {p['100%']:.0f} MB | {p['peak']:.0f} MB | {p['growth_mb_per_1000_frames']:+.1f} MB / 1000 frames |"
    )
    write_json(
        Path(a.json),
        {
            "source": a.source,
            "loops": a.loops,
            "det": a.det,
            "imgsz": a.imgsz,
            "machine": machine_info(),
            "profile": p,
            "rss_mb": rss,
            "summary": {
                k: summary[k]
                for k in ("frames", "fps", "tracks", "embeddings_computed", "embeddings_reused")
                if k in summary
            },
        },
    )
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
