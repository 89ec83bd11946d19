"""``--embed-budget-ms`` holds: refresh (non-critical) embedding time per frame against the budget.

    python benchmarks/budget.py --seq ../shared/data/MOT17/train/MOT17-09-FRCNN \\
        --det ../shared/weights/yolov8n_from_int8.pt --reid ../shared/weights/osnet_x0_25_msmt17.onnx

Runs the real ONNX ReID model on cached detections (``common.load_or_detect``) with the refresh rules
(what the refresh flags select) at each budget of ``--budgets``, plus the seed design's two examples
(``--embed-refresh 5 --embed-budget-ms 20``; ``--embed-iou-gate 0.7 --embed-overlap-thr 0.15
--embed-refresh 8 --embed-budget-ms 15``). Per row: the 95th percentile over frames of the refresh
time (``RunSummary.refresh_p95_ms``), embeddings computed, and whether p95 <= budget. Critical work
is not budgeted and is not counted. Prints a markdown table and writes JSON
(``benchmarks/results/budget.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, ReplayDetector, load_or_detect, machine_info, write_json  # noqa: E402

from mot_dinov3 import pipeline  # noqa: E402
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig, SchedulerConfig  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq", default="../shared/data/MOT17/train/MOT17-09-FRCNN")
    ap.add_argument("--det", default="../shared/weights/yolov8n_from_int8.pt")
    ap.add_argument("--reid", default="../shared/weights/osnet_x0_25_msmt17.onnx")
    ap.add_argument("--budgets", nargs="+", type=float, default=[20.0, 10.0, 5.0, 2.0])
    ap.add_argument("--json", default=str(RESULTS_DIR / "budget.json"))
    a = ap.parse_args()

    det = DetectorConfig(model=a.det, conf=0.1, imgsz=960, classes=[0])
    dets = load_or_detect(Path(a.seq), det)
    embedder = create_embedder(EmbedderConfig(name="onnx", model=a.reid))
    settings = [
        (f"refresh rules, --embed-budget-ms {b:g}", SchedulerConfig(lazy=False, budget_ms=b)) for b in a.budgets
    ]
    settings += [
        ("--embed-refresh 5 --embed-budget-ms 20", SchedulerConfig(lazy=False, refresh_every=5, budget_ms=20)),
        (
            "--embed-iou-gate 0.7 --embed-overlap-thr 0.15 --embed-refresh 8 --embed-budget-ms 15",
            SchedulerConfig(lazy=False, iou_gate=0.7, overlap_thr=0.15, refresh_every=8, budget_ms=15),
        ),
    ]
    rows = {}
    for name, sched in settings:
        cfg = RunConfig(
            source=a.seq,
            detector=det,
            embedder=EmbedderConfig(name="onnx", model=a.reid),
            scheduler=sched,
            output=OutputConfig(video=None, progress=False),
        )
        s = pipeline.run(cfg, embedder=embedder, detector=ReplayDetector(dets))
        rows[name] = {
            "budget_ms": sched.budget_ms,
            "refresh_p95_ms": s.refresh_p95_ms,
            "embeddings_computed": s.embeddings_computed,
            "frames": s.frames,
            "p95_within_budget": s.refresh_p95_ms <= sched.budget_ms,
        }
        print(name, rows[name], file=sys.stderr, flush=True)
    lines = ["| setting | budget ms | refresh p95 ms | p95 <= budget | computed |", "|---|---:|---:|---|---:|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['budget_ms']:g} | {r['refresh_p95_ms']:.2f} | "
            f"{'yes' if r['p95_within_budget'] else 'NO'} | {r['embeddings_computed']} |"
        )
    print("\n".join(lines))
    write_json(Path(a.json), {"seq": a.seq, "det": a.det, "reid": a.reid, "machine": machine_info(), "rows": rows})


if __name__ == "__main__":
    main()
