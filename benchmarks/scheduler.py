"""Scheduler vs ``--embed-all`` over several detector settings: embeddings computed, HOTA / IDF1 change.

One set of detections gives one chaotic sample of the tracking problem: a single re-identification
that goes the other way moves HOTA by a point, in either direction. This benchmark therefore compares
each scheduler setting with ``--embed-all`` on several detector settings ("views": weights x imgsz),
each on the same cached detections, and reports the change per view and its mean over the views.

    python benchmarks/scheduler.py \
        --seqs ../shared/data/MOT17/train/MOT17-09-FRCNN ../shared/data/MOT15/train/TUD-Campus \
               ../shared/data/MOT15/train/TUD-Stadtmitte \
        --views ../shared/weights/yolov8n_from_int8.pt:960 ../shared/weights/yolo11n_from_int8.pt:960 \
                ../shared/weights/yolov8n_from_int8.pt:640 \
        --reid ../shared/weights/osnet_x0_25_msmt17.onnx

Prints a markdown table and writes JSON (default ``benchmarks/results/scheduler.json``). Detections
are cached per (weights, imgsz, conf) under ``benchmarks/cache/`` (see ``common.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, load_or_detect, machine_info, write_json  # noqa: E402
from quality import run_ours, scores  # noqa: E402

from mot_dinov3.config import DetectorConfig, EmbedderConfig, SchedulerConfig, TrackerConfig  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402

# (label, changes to the default SchedulerConfig); the first row is the shipped default
SETTINGS = [
    ("default (lazy memory)", {}),
    ("refresh rules, refresh_every 2", {"lazy": False}),
    ("refresh rules, refresh_every 5", {"lazy": False, "refresh_every": 5}),
    ("refresh rules, refresh_every 10", {"lazy": False, "refresh_every": 10}),
    ("refresh rules, refresh_every 30", {"lazy": False, "refresh_every": 30}),
    ("refresh rules, refresh_every 10, overlap_thr 0.4", {"lazy": False, "refresh_every": 10, "overlap_thr": 0.4}),
    ("refresh rules, refresh_every 30, overlap_thr 0.6", {"lazy": False, "refresh_every": 30, "overlap_thr": 0.6}),
]


def parse_view(text: str) -> tuple[str, int]:
    """``"weights.pt:960"`` -> ``("weights.pt", 960)``."""
    weights, _, imgsz = text.rpartition(":")
    if not weights or not imgsz.isdigit():
        raise SystemExit(f"--views {text!r}: expected WEIGHTS:IMGSZ, e.g. yolov8n.pt:960")
    return weights, int(imgsz)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", nargs="+", required=True, help="MOTChallenge sequence folders (with gt/)")
    ap.add_argument("--views", nargs="+", required=True, help="detector settings WEIGHTS:IMGSZ")
    ap.add_argument("--reid", required=True, help="ONNX ReID model (OSNet)")
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--tracker-config", help="our tracker YAML (default: configs/default.yaml values)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "scheduler.json"))
    a = ap.parse_args()

    seqs = [Path(s) for s in a.seqs]
    tracker = TrackerConfig.from_yaml(a.tracker_config) if a.tracker_config else TrackerConfig()
    embedder = create_embedder(EmbedderConfig(name="onnx", model=a.reid))
    configs = [("embed-all", SchedulerConfig(embed_all=True))]
    configs += [(label, replace(SchedulerConfig(), **kw)) for label, kw in SETTINGS]
    views: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for weights, imgsz in map(parse_view, a.views):
            view = f"{Path(weights).stem}@{imgsz}"
            det_cfg = DetectorConfig(model=weights, conf=a.conf, imgsz=imgsz, classes=[0])
            cache = {s: load_or_detect(s, det_cfg) for s in seqs}
            views[view] = {}
            for i, (label, sched) in enumerate(configs):
                res_dir = Path(tmp) / f"{view}_{i}"
                res_dir.mkdir()
                row = run_ours(label, lambda: embedder, sched, tracker, det_cfg, seqs, cache, res_dir)
                dev = scores(seqs, res_dir)["DEV"]
                views[view][label] = {
                    "embeddings_computed": row["embeddings_computed"],
                    "embed_ms_per_frame": row["ms_per_frame"]["embed"],
                    "HOTA": dev["HOTA"],
                    "IDF1": dev["IDF1"],
                    "IDSW": dev["IDSW"],
                }
                print(
                    f"{view} {label}: HOTA {100 * dev['HOTA']:.2f} IDF1 {100 * dev['IDF1']:.2f} "
                    f"computed {row['embeddings_computed']}",
                    file=sys.stderr,
                    flush=True,
                )

    summary = summarize(views, [label for label, _ in configs[1:]])
    print(table(views, summary))
    write_json(
        Path(a.json),
        {
            "sequences": a.seqs,
            "views": a.views,
            "conf": a.conf,
            "reid": a.reid,
            "settings": dict(SETTINGS),
            "tracker": vars(tracker),
            "machine": machine_info(),
            "views_rows": views,
            "mean_vs_embed_all": summary,
        },
    )
    print(f"\nwrote {a.json}")


def summarize(views: dict[str, dict], labels: list[str]) -> dict[str, dict]:
    """Per setting: mean over views of the fraction of embed-all's embeddings computed and of the
    HOTA / IDF1 change against embed-all (points, i.e. percent)."""
    out = {}
    for label in labels:
        frac, d_hota, d_idf1 = [], [], []
        for rows in views.values():
            base, r = rows["embed-all"], rows[label]
            frac.append(r["embeddings_computed"] / max(base["embeddings_computed"], 1))
            d_hota.append(100 * (r["HOTA"] - base["HOTA"]))
            d_idf1.append(100 * (r["IDF1"] - base["IDF1"]))
        out[label] = {
            "computed_fraction": float(np.mean(frac)),
            "d_HOTA": float(np.mean(d_hota)),
            "d_IDF1": float(np.mean(d_idf1)),
            "d_HOTA_se": standard_error(d_hota),
            "d_IDF1_se": standard_error(d_idf1),
            "d_HOTA_per_view": [float(x) for x in d_hota],
        }
    return out


def standard_error(values: list[float]) -> float:
    """Standard error of the mean (sample standard deviation / sqrt(n)); 0 for fewer than two values."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def table(views: dict[str, dict], summary: dict[str, dict]) -> str:
    """Two markdown tables: embed-all's DEV HOTA / IDF1 per view, then per setting the mean share of
    embed-all's embeddings, the mean change (+- standard error over the views) and the change per view."""
    names = list(views)
    lines = [
        "| view | " + " | ".join(names) + " |",
        "|---" + "|---:" * len(names) + "|",
        "| embed-all HOTA / IDF1 | "
        + " | ".join(
            f"{100 * views[v]['embed-all']['HOTA']:.2f} / {100 * views[v]['embed-all']['IDF1']:.2f}" for v in names
        )
        + " |",
        "",
    ]
    head = ["setting", "computed (mean)", "dHOTA (mean +- se)", "dIDF1 (mean +- se)", "dHOTA per view"]
    lines += ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for label, s in summary.items():
        per_view = " ".join(f"{x:+.1f}" for x in s["d_HOTA_per_view"])
        lines.append(
            f"| {label} | {100 * s['computed_fraction']:.0f}% | {s['d_HOTA']:+.2f} +- {s['d_HOTA_se']:.2f} | "
            f"{s['d_IDF1']:+.2f} +- {s['d_IDF1_se']:.2f} | {per_view} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
