"""End-to-end frames per second: detector only vs the full tracker with different embedders.

    python benchmarks/speed.py --source ../shared/data/MOT17/train/MOT17-09-FRCNN \\
        --det ../shared/weights/yolov8n_from_int8.pt --reid ../shared/weights/osnet_x0_25_msmt17.onnx \\
        --dino-config ../shared/weights/configs/dinov2-small

Rows, all in one process with one shared detector, over the same first ``--max-frames`` frames: detector
only (read + detect); ours with OSNet scheduled (defaults: lazy memory); ours with OSNet
``--embed-all``; ours with OSNet's refresh rules (``--no-embed-lazy``); ours with the ``dino`` backend
on a random-init model from ``--dino-config`` (ViT-S/14: the real cost). No video is written, so the
rows differ only in embedding and tracking. Each row runs ``--repeats`` times, interleaved, and keeps
its median (the faster run when there are two), so background load hits every row alike.
FPS are reported as ratios to detector-only measured in the same run.

The peer: with ``--boxmot-reid PATH`` (BoxMOT-named PyTorch ReID weights, e.g. a copy or link of the
OSNet x0.25 MSMT17 state dict named ``osnet_x0_25_msmt17.pt``) a row runs BoxMOT's ``BotSort`` with
its default parameters end to end on the same detector and frames, and the "vs peer" column compares
with it. Without it the peer is an estimate: detector-only plus ``--peer-track-ms`` (default 100, BoxMOT
botsort + OSNet x0.25 as measured in issue 3). Prints a markdown table; writes JSON.

BoxMOT is not a dependency of this project: it pins an older onnxruntime and installs it on first use
of an ONNX ReID model. Keep it out of the project's environment, e.g.
``pip install --target .bench-boxmot --no-deps boxmot filterpy gdown lapx rich pandas platformdirs pyarrow
scikit-learn joblib threadpoolctl timm click`` and run this script with ``PYTHONPATH=.bench-boxmot``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, machine_info, random_init_dino, write_json  # noqa: E402

from mot_dinov3 import pipeline  # noqa: E402
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig, SchedulerConfig  # noqa: E402
from mot_dinov3.detector import Detector  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402
from mot_dinov3.io import FrameSource  # noqa: E402


def timed_loop(source: str, detector: Detector, max_frames: int, after_detect=None) -> dict:
    """Read + detect (+ ``after_detect(frame, detections)``) frame by frame, without prefetching: the
    detector-only row, and the BoxMOT row with its tracker as ``after_detect``."""
    per_frame, extra_ms = [], []
    src = FrameSource(source)
    it = iter(src)
    for _ in range(max_frames):
        t0 = time.perf_counter()
        frame = next(it, None)
        if frame is None:
            break
        d = detector(frame.image)
        t1 = time.perf_counter()
        if after_detect is not None:
            after_detect(frame, d)
        t2 = time.perf_counter()
        per_frame.append((t2 - t0) * 1000.0)
        extra_ms.append((t2 - t1) * 1000.0)
    src.close()
    ms = float(np.mean(per_frame))
    stages = {"track": float(np.mean(extra_ms))} if after_detect is not None else {}
    return {"fps": 1000.0 / ms, "ms_per_frame": ms, "embeddings_per_frame": 0.0, "stage_mean_ms": stages}


def boxmot_botsort(source: str, detector: Detector, reid: str, max_frames: int, device) -> dict:
    """BoxMOT ``BotSort`` (default parameters, ReID on every detection it embeds) after the same detector."""
    try:
        from boxmot import BotSort
    except ImportError as exc:
        raise SystemExit(
            "--boxmot-reid: boxmot is not importable; see the install note in this script's docstring"
        ) from exc
    tracker = BotSort(reid_weights=Path(reid), device=device or "cpu", half=False)
    row = timed_loop(
        source,
        detector,
        max_frames,
        lambda frame, d: tracker.update(np.c_[d.xyxy, d.conf, d.cls].astype(np.float32), frame.image),
    )
    row["embeddings_per_frame"] = None  # not reported by BoxMOT
    return row


def ours(source: str, detector: Detector, embedder, sched: SchedulerConfig, max_frames: int, device) -> dict:
    cfg = RunConfig(
        source=source,
        detector=DetectorConfig(device=device),
        scheduler=sched,
        output=OutputConfig(video=None, progress=False),
        max_frames=max_frames,
    )
    s = pipeline.run(cfg, embedder=embedder, detector=detector)
    if s.interrupted:  # the pipeline turns Ctrl-C / SIGTERM into a clean stop; stop the benchmark too
        raise KeyboardInterrupt
    return {
        "fps": s.fps,
        "ms_per_frame": 1000.0 / s.fps,
        "embeddings_per_frame": s.embeddings_per_frame,
        "stage_mean_ms": s.stage_mean_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="video file or MOTChallenge sequence folder")
    ap.add_argument("--det", required=True)
    ap.add_argument("--reid", required=True, help="OSNet ONNX")
    ap.add_argument("--dino-config", help="local transformers config folder (random-init dino row)")
    ap.add_argument("--imgsz", type=int, default=960)
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--device", default=None, help="torch device for detector and dino (default: auto)")
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--peer-track-ms",
        type=float,
        default=100.0,
        help="estimated peer tracker cost, ms/frame (used without --boxmot-reid)",
    )
    ap.add_argument("--boxmot-reid", metavar="PATH", help="run BoxMOT botsort with these ReID weights as the peer")
    ap.add_argument("--json", default=str(RESULTS_DIR / "speed.json"))
    a = ap.parse_args()

    detector = Detector(DetectorConfig(model=a.det, conf=a.conf, imgsz=a.imgsz, classes=[0], device=a.device))
    osnet = create_embedder(EmbedderConfig(name="onnx", model=a.reid, device=a.device))
    rows = {
        "detector only": lambda: timed_loop(a.source, detector, a.max_frames),
        "ours, OSNet scheduled": lambda: ours(a.source, detector, osnet, SchedulerConfig(), a.max_frames, a.device),
        "ours, OSNet embed-all": lambda: ours(
            a.source, detector, osnet, SchedulerConfig(embed_all=True), a.max_frames, a.device
        ),
        "ours, OSNet refresh rules": lambda: ours(
            a.source, detector, osnet, SchedulerConfig(lazy=False), a.max_frames, a.device
        ),
    }
    if a.dino_config:
        dino = random_init_dino(a.dino_config, a.device)
        rows["ours, dino ViT-S/14 scheduled"] = lambda: ours(
            a.source, detector, dino, SchedulerConfig(), a.max_frames, a.device
        )
    peer = "BoxMOT botsort + OSNet" if a.boxmot_reid else None
    if peer:
        rows[peer] = lambda: boxmot_botsort(a.source, detector, a.boxmot_reid, a.max_frames, a.device)
    timed_loop(a.source, detector, 5)  # warm-up
    runs: dict[str, list[dict]] = {k: [] for k in rows}
    for _ in range(a.repeats):
        for name, fn in rows.items():
            runs[name].append(fn())
            print(f"{name}: {runs[name][-1]['fps']:.2f} FPS", file=sys.stderr, flush=True)
    result = {k: sorted(v, key=lambda r: r["fps"])[len(v) // 2] for k, v in runs.items()}
    base = result["detector only"]
    peer_ms = result[peer]["ms_per_frame"] if peer else base["ms_per_frame"] + a.peer_track_ms
    for r in result.values():
        r["vs_detector_only"] = r["fps"] / base["fps"]
        r["vs_peer"] = r["fps"] / (1000.0 / peer_ms)
    peer_col = "vs BoxMOT botsort" if peer else f"vs peer (+{a.peer_track_ms:g} ms/frame, est.)"
    print(f"| config | FPS | ms/frame | vs detector only | {peer_col} | emb/frame | embed ms | track ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in result.items():
        st, epf = r["stage_mean_ms"], r["embeddings_per_frame"]
        print(
            f"| {name} | {r['fps']:.2f} | {r['ms_per_frame']:.1f} | {r['vs_detector_only']:.2f} | "
            f"{r['vs_peer']:.2f} | {'-' if epf is None else f'{epf:.2f}'} | {st.get('embed', 0):.1f} | "
            f"{st.get('track', 0):.1f} |"
        )
    if not peer:
        print(
            f"| peer estimate | {1000.0 / peer_ms:.2f} | {peer_ms:.1f} | {base['ms_per_frame'] / peer_ms:.2f} | 1.00 "
            "| | | |"
        )
    write_json(
        Path(a.json),
        {
            "source": a.source,
            "det": a.det,
            "imgsz": a.imgsz,
            "max_frames": a.max_frames,
            "peer": peer or f"estimate: detector only + {a.peer_track_ms:g} ms/frame",
            "repeats": a.repeats,
            "machine": machine_info(),
            "runs": runs,
            "median": result,
        },
    )
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
