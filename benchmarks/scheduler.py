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
    ("default", {}),
    ("refresh_every 5", {"refresh_every": 5}),
    ("refresh_every 10", {"refresh_every": 10}),
    ("refresh_every 30", {"refresh_every": 30}),
    ("refresh_every 30, overlap_thr 0.6", {"refresh_every": 30, "overlap_thr": 0.6}),
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
                views[view][label] = {"embeddings_computed": row["embeddings_computed"],
                                      "embed_ms_per_frame": row["ms_per_frame"]["embed"],
                                      "HOTA": dev["HOTA"], "IDF1": dev["IDF1"], "IDSW": dev["IDSW"]}
                print(f"{view} {label}: HOTA {100 * dev['HOTA']:.2f} IDF1 {100 * dev['IDF1']:.2f} "
                      f"computed {row['embeddings_computed']}", file=sys.stderr, flush=True)

    summary = summarize(views, [label for label, _ in configs[1:]])
    print(table(views, summary))
    write_json(Path(a.json), {"sequences": a.seqs, "views": a.views, "conf": a.conf, "reid": a.reid,
                              "settings": dict(SETTINGS), "tracker": vars(tracker), "machine": machine_info(),
                              "views_rows": views, "mean_vs_embed_all": summary})
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
        out[label] = {"computed_fraction": float(np.mean(frac)), "d_HOTA": float(np.mean(d_hota)),
                      "d_IDF1": float(np.mean(d_idf1)), "d_HOTA_min": float(np.min(d_hota)),
                      "d_HOTA_max": float(np.max(d_hota))}
    return out


def table(views: dict[str, dict], summary: dict[str, dict]) -> str:
    names = list(views)
    head = ["setting"] + [f"{v} HOTA / IDF1 (computed)" for v in names] + ["mean computed", "mean dHOTA", "mean dIDF1"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for label in next(iter(views.values())):
        cells = [label]
        for v in names:
            r, base = views[v][label], views[v]["embed-all"]
            frac = r["embeddings_computed"] / max(base["embeddings_computed"], 1)
            cells.append(f"{100 * r['HOTA']:.2f} / {100 * r['IDF1']:.2f} ({100 * frac:.0f}%)")
        s = summary.get(label)
        cells += ["100%", "0", "0"] if s is None else [
            f"{100 * s['computed_fraction']:.0f}%", f"{s['d_HOTA']:+.2f}", f"{s['d_IDF1']:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
