"""End-to-end frames per second: detector only vs the full tracker with different embedders.

    python benchmarks/speed.py --source ../shared/data/MOT17/train/MOT17-09-FRCNN \\
        --det ../shared/weights/yolov8n_from_int8.pt --reid ../shared/weights/osnet_x0_25_msmt17.onnx \\
        --dino-config ../shared/weights/configs/dinov2-small

Rows, all in one process, over the same first ``--max-frames`` frames, for each detector runtime of
``--runtimes`` (``--det-runtime``: PyTorch, or the cached OpenVINO / ONNX export): detector only (read +
detect); ours with OSNet scheduled (defaults: lazy memory); ours with OSNet ``--embed-all``, each once
per ``--embed-runtimes`` value (what runs the OSNet ONNX model: OpenVINO, onnxruntime). Then, on
the first runtime: ours with OSNet's refresh rules (``--no-embed-lazy``) and ours with the ``dino``
backend on a random-init model from ``--dino-config`` (ViT-S/14: the real cost); on the last runtime,
ours scheduled with the annotated video written (to a temporary file). ``--before`` adds the PyTorch
rows as the detector ran before the thread fix (torch at Ultralytics' ``cpu_count - 1`` threads). Other
rows write no video, so they differ only in detection, embedding and tracking. Each row runs
``--repeats`` times, interleaved, and keeps its median (the faster run when there are two), so
background load hits every row alike. FPS are reported as ratios to the first runtime's detector-only
row measured in the same run.

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
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
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


ULTRALYTICS_THREADS = min(8, max(1, (os.cpu_count() or 1) - 1))  # what its select_device() sets on a CPU


def with_threads(n: int, fn: Callable[..., dict], *args) -> dict:
    """``fn(*args)`` with torch at ``n`` intra-op threads, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


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


def ours(
    source: str, detector: Detector, embedder, sched: SchedulerConfig, max_frames: int, device, video: str | None = None
) -> dict:
    cfg = RunConfig(
        source=source,
        detector=DetectorConfig(device=device),
        scheduler=sched,
        output=OutputConfig(video=video, progress=False),
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
    ap.add_argument(
        "--runtimes",
        default="torch,openvino",
        help="detector runtimes, comma-separated; RUNTIME-PRECISION for int8 / fp16",
    )
    ap.add_argument("--before", action="store_true", help="add the PyTorch rows at Ultralytics' thread count")
    ap.add_argument(
        "--embed-runtimes",
        default="auto",
        help="comma-separated --embed-runtime values for the OSNet ONNX model; the first runs the single rows",
    )
    ap.add_argument("--json", default=str(RESULTS_DIR / "speed.json"))
    a = ap.parse_args()

    embed_runtimes = a.embed_runtimes.split(",")
    reids = {
        rt: create_embedder(EmbedderConfig(name="onnx", model=a.reid, device=a.device, runtime=rt))
        for rt in embed_runtimes
    }
    osnet = reids[embed_runtimes[0]]

    def tag(rt: str) -> str:  # row-name suffix naming the ReID runtime, when several are compared
        return f" [ReID on {reids[rt].graph.runtime}]" if len(reids) > 1 else ""

    runtimes = a.runtimes.split(",")
    rows: dict[str, Callable[[], dict]] = {}
    first = None
    for rt in runtimes:
        runtime, _, precision = rt.partition("-")  # openvino-int8: calibrated on the source's frames
        cfg = DetectorConfig(
            model=a.det,
            conf=a.conf,
            imgsz=a.imgsz,
            classes=[0],
            device=a.device,
            runtime=runtime,
            precision=precision or "auto",
            calib=a.source,
        )
        detector = Detector(cfg)
        detector(next(iter(FrameSource(a.source))).image)  # export (cached) and warm up
        first = first or detector
        rows[f"{rt}: detector only"] = partial(timed_loop, a.source, detector, a.max_frames)
        for ert, reid in reids.items():
            rows[f"{rt}: ours, OSNet scheduled{tag(ert)}"] = partial(
                ours, a.source, detector, reid, SchedulerConfig(), a.max_frames, a.device
            )
            rows[f"{rt}: ours, OSNet embed-all{tag(ert)}"] = partial(
                ours, a.source, detector, reid, SchedulerConfig(embed_all=True), a.max_frames, a.device
            )
    assert first is not None
    rows[f"{runtimes[0]}: ours, OSNet refresh rules"] = partial(
        ours, a.source, first, osnet, SchedulerConfig(lazy=False), a.max_frames, a.device
    )
    if a.dino_config:
        dino = random_init_dino(a.dino_config, a.device)
        rows[f"{runtimes[0]}: ours, dino ViT-S/14 scheduled"] = partial(
            ours, a.source, first, dino, SchedulerConfig(), a.max_frames, a.device
        )
    video = str(Path(tempfile.mkdtemp()) / "tracked.mp4")
    rows[f"{runtimes[-1]}: ours, OSNet scheduled, video written"] = partial(
        ours, a.source, detector, osnet, SchedulerConfig(), a.max_frames, a.device, video
    )
    if a.before:
        before = Detector(
            DetectorConfig(
                model=a.det, conf=a.conf, imgsz=a.imgsz, classes=[0], device=a.device, runtime="torch", precision="fp32"
            )
        )
        before(next(iter(FrameSource(a.source))).image)  # set up first: its thread restore must not undo the row's
        rows["before (torch, Ultralytics threads): detector only"] = partial(
            with_threads, ULTRALYTICS_THREADS, timed_loop, a.source, before, a.max_frames
        )
        rows["before (torch, Ultralytics threads): ours, OSNet scheduled"] = partial(
            with_threads, ULTRALYTICS_THREADS, ours, a.source, before, osnet, SchedulerConfig(), a.max_frames, a.device
        )
    peer = "BoxMOT botsort + OSNet" if a.boxmot_reid else None
    if peer:
        rows[peer] = partial(boxmot_botsort, a.source, detector, a.boxmot_reid, a.max_frames, a.device)
    timed_loop(a.source, first, 5)  # warm-up
    runs: dict[str, list[dict]] = {k: [] for k in rows}
    for _ in range(a.repeats):
        for name, fn in rows.items():
            runs[name].append(fn())
            print(f"{name}: {runs[name][-1]['fps']:.2f} FPS", file=sys.stderr, flush=True)
    result = {k: sorted(v, key=lambda r: r["fps"])[len(v) // 2] for k, v in runs.items()}
    base = result[f"{runtimes[0]}: detector only"]
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
            "runtimes": runtimes,
            "embed_runtimes": {rt: r.graph.runtime for rt, r in reids.items()},
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
