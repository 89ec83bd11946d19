"""Identity quality on MOTChallenge sequences: our tracker in several configurations next to the
Ultralytics trackers, all on the same cached detections.

    python benchmarks/quality.py \\
        --seqs ../shared/data/MOT17/train/MOT17-09-FRCNN ../shared/data/MOT15/train/TUD-Campus \\
               ../shared/data/MOT15/train/TUD-Stadtmitte \\
        --det ../shared/weights/yolov8n_from_int8.pt --reid ../shared/weights/osnet_x0_25_msmt17.onnx \\
        --dino-config ../shared/weights/configs/dinov2-small

Detections are computed once per (weights, imgsz, conf, classes) and cached under
``benchmarks/cache/``. Configurations (our tracker, ``configs/default.yaml`` unless
``--tracker-config``): no ReID; ``yolo`` neck features; OSNet ONNX ``--embed-all``; OSNet with the
default scheduler (lazy memory); OSNet with the refresh rules (``--no-embed-lazy``) at budgets 0
(unlimited), 20, 10 and 5 ms; the ``dino`` backend on a random-init model built from
``--dino-config`` (its identity scores mean nothing; it is there for its cost). Peers: Ultralytics
``bytetrack``, ``botsort`` (native detector-feature ReID), ``ocsort`` and ``tracktrack`` with their
default YAML. TrackEval gives HOTA / MOTA / IDF1 / IDSW over all sequences (DEV), per sequence and
per benchmark folder (e.g. both TUD sequences). Prints a markdown table and writes JSON (default
``benchmarks/results/quality.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    RESULTS_DIR,
    ReplayDetector,
    load_or_detect,
    machine_info,
    random_init_dino,
    run_ultralytics_tracker,
    write_json,
)

from mot_dinov3 import pipeline  # noqa: E402
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig, SchedulerConfig, TrackerConfig  # noqa: E402
from mot_dinov3.evaluate import COMBINED, evaluate  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402

PEERS = ("bytetrack", "botsort", "ocsort", "tracktrack")


def our_configs(reid: str, dino_config: str | None, embed_runtime: str = "auto"):
    """(name, embedder factory, scheduler config) for each of our configurations."""

    def osnet():
        return create_embedder(EmbedderConfig(name="onnx", model=reid, runtime=embed_runtime))

    rows = [
        ("ours, no ReID", lambda: None, SchedulerConfig()),
        ("ours, yolo features", lambda: create_embedder(EmbedderConfig(name="yolo")), SchedulerConfig()),
        ("ours, OSNet embed-all", osnet, SchedulerConfig(embed_all=True)),
        ("ours, OSNet default (lazy memory)", osnet, SchedulerConfig()),
    ]
    for budget in (0, 20, 10, 5):
        label = "unlimited" if budget == 0 else f"{budget} ms"
        rows.append(
            (f"ours, OSNet refresh rules ({label})", osnet, SchedulerConfig(lazy=False, budget_ms=float(budget)))
        )
    if dino_config:
        rows.append(
            ("ours, dino random-init ViT-S/14 (cost only)", lambda: random_init_dino(dino_config), SchedulerConfig())
        )
    return rows


def scores(seqs: list[Path], res_dir: Path) -> dict[str, dict]:
    """``{"DEV": metrics, <seq>: metrics, <benchmark group>: metrics}`` from TrackEval."""
    gt_root = Path(os.path.commonpath([str(s.parent) for s in seqs]))
    with contextlib.redirect_stdout(io.StringIO()):
        res = evaluate(gt_root, res_dir, [s.name for s in seqs])
        out = {"DEV": res[COMBINED], **{k: v for k, v in res.items() if k != COMBINED}}
        groups: dict[Path, list[Path]] = {}
        for s in seqs:
            groups.setdefault(s.parent, []).append(s)
        for folder, members in groups.items():
            if 1 < len(members) < len(seqs):
                name = "+".join(m.name for m in members)
                out[name] = evaluate(folder, res_dir, [m.name for m in members])[COMBINED]
    return {k: {m: v[m] for m in ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW")} for k, v in out.items()}


def run_ours(name, make_embedder, sched, tracker, det_cfg, seqs, cache, res_dir) -> dict:
    embedder = make_embedder()
    frames = computed = 0
    stage_ms = {"detect": 0.0, "embed": 0.0, "track": 0.0}
    for seq in seqs:
        cfg = RunConfig(
            source=str(seq),
            detector=det_cfg,
            scheduler=sched,
            tracker=tracker,
            embedder=EmbedderConfig(name="none") if embedder is None else EmbedderConfig(),
            output=OutputConfig(video=None, mot_txt=str(res_dir / f"{seq.name}.txt"), progress=False),
        )
        s = pipeline.run(cfg, embedder=embedder, detector=ReplayDetector(cache[seq]))
        if s.interrupted:  # the pipeline turns Ctrl-C / SIGTERM into a clean stop; stop the benchmark too
            raise KeyboardInterrupt
        frames += s.frames
        computed += s.embeddings_computed
        stage_ms["embed"] += s.stage_mean_ms["embed"] * s.frames
        stage_ms["track"] += s.stage_mean_ms["track"] * s.frames
        stage_ms["detect"] += float(cache[seq].detect_ms.sum())
    return {
        "frames": frames,
        "embeddings_computed": computed,
        "embeddings_per_frame": computed / frames,
        "ms_per_frame": {k: v / frames for k, v in stage_ms.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", nargs="+", required=True, help="MOTChallenge sequence folders (with gt/)")
    ap.add_argument("--det", required=True, help="YOLO weights")
    ap.add_argument("--reid", required=True, help="OSNet (or other) ONNX ReID model")
    ap.add_argument("--dino-config", help="local transformers config folder for the random-init dino row")
    ap.add_argument("--imgsz", type=int, default=960)
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--tracker-config", help="our tracker YAML (default: configs/default.yaml values)")
    ap.add_argument("--only", nargs="*", help="run only rows whose name contains one of these strings")
    ap.add_argument("--no-peers", action="store_true", help="skip the Ultralytics trackers")
    ap.add_argument("--det-runtime", default="torch", help="detector runtime of the detections (cached per runtime)")
    ap.add_argument("--det-precision", default="fp32", help="fp32, fp16 or int8 (calibrated on each sequence)")
    ap.add_argument("--embed-runtime", default="auto", help="what runs the ONNX ReID model (--embed-runtime)")
    ap.add_argument("--json", default=str(RESULTS_DIR / "quality.json"))
    a = ap.parse_args()

    seqs = [Path(s) for s in a.seqs]
    det_cfg = DetectorConfig(
        model=a.det, conf=a.conf, imgsz=a.imgsz, classes=[0], runtime=a.det_runtime, precision=a.det_precision
    )
    tracker = TrackerConfig.from_yaml(a.tracker_config) if a.tracker_config else TrackerConfig()
    cache = {s: load_or_detect(s, replace(det_cfg, calib=str(s))) for s in seqs}  # INT8: each on its own frames
    jobs = [(name, "ours", (mk, sched)) for name, mk, sched in our_configs(a.reid, a.dino_config, a.embed_runtime)]
    if not a.no_peers:
        jobs += [(f"Ultralytics {k}" + (" + native ReID" if k == "botsort" else ""), "peer", k) for k in PEERS]
    if a.only:
        jobs = [j for j in jobs if any(o in j[0] for o in a.only)]

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, kind, spec) in enumerate(jobs):
            res_dir = Path(tmp) / f"run{i}"
            res_dir.mkdir()
            if kind == "ours":
                row = run_ours(name, *spec, tracker, det_cfg, seqs, cache, res_dir)
            else:
                track_ms = [
                    run_ultralytics_tracker(spec, s, cache[s], res_dir / f"{s.name}.txt", with_reid=spec == "botsort")[
                        "track_ms_per_frame"
                    ]
                    * len(cache[s].frames)
                    for s in seqs
                ]
                frames = sum(len(cache[s].frames) for s in seqs)
                row = {
                    "frames": frames,
                    "embeddings_computed": None,
                    "embeddings_per_frame": None,
                    "ms_per_frame": {
                        "detect": sum(float(cache[s].detect_ms.sum()) for s in seqs) / frames,
                        "embed": 0.0,
                        "track": sum(track_ms) / frames,
                    },
                }
            row["scores"] = scores(seqs, res_dir)
            rows[name] = row
            print(
                f"{name}: HOTA {100 * row['scores']['DEV']['HOTA']:.2f} IDF1 {100 * row['scores']['DEV']['IDF1']:.2f}",
                file=sys.stderr,
                flush=True,
            )

    base = rows.get("ours, OSNet embed-all")
    for r in rows.values():
        if base and r["embeddings_computed"] is not None:
            r["computed_vs_embed_all"] = r["embeddings_computed"] / max(base["embeddings_computed"], 1)
    print(table(rows, seqs))
    write_json(
        Path(a.json),
        {
            "sequences": a.seqs,
            "det": a.det,
            "imgsz": a.imgsz,
            "det_runtime": a.det_runtime,
            "det_precision": a.det_precision,
            "conf": a.conf,
            "reid": a.reid,
            "embed_runtime": a.embed_runtime,
            "tracker": vars(tracker),
            "machine": machine_info(),
            "rows": rows,
        },
    )
    print(f"\nwrote {a.json}")


def table(rows: dict, seqs: list[Path]) -> str:
    groups = [k for k in next(iter(rows.values()))["scores"] if k != "DEV"]
    head = ["config", "DEV HOTA", "IDF1", "MOTA", "IDSW"] + [f"{g} HOTA / IDF1" for g in groups]
    head += ["emb/frame", "vs embed-all", "embed ms/frame", "track ms/frame"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, r in rows.items():
        dev = r["scores"]["DEV"]
        cells = [
            name,
            f"{100 * dev['HOTA']:.2f}",
            f"{100 * dev['IDF1']:.2f}",
            f"{100 * dev['MOTA']:.2f}",
            str(dev["IDSW"]),
        ]
        cells += [f"{100 * r['scores'][g]['HOTA']:.2f} / {100 * r['scores'][g]['IDF1']:.2f}" for g in groups]
        epf = r["embeddings_per_frame"]
        cells += [
            "-" if epf is None else f"{epf:.2f}",
            f"{100 * r['computed_vs_embed_all']:.0f}%" if "computed_vs_embed_all" in r else "-",
            f"{r['ms_per_frame']['embed']:.1f}",
            f"{r['ms_per_frame']['track']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
