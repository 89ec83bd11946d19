"""Scheduler vs compute-all on MOTChallenge sequences: embeddings computed, embed ms, HOTA / IDF1.

Every configuration runs in the same process on the same sequences with the same detector and
embedder objects, so the ratios in the table are comparable even on a noisy machine.

    python benchmarks/scheduler.py --seqs ../shared/data/MOT15/train/TUD-Campus \
        --det ../shared/weights/yolov8n_from_int8.pt --embed-model ../shared/weights/osnet_x0_25_msmt17.onnx

Prints a markdown table and writes JSON (default ``benchmarks/results/scheduler.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from mot_dinov3 import pipeline
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig, SchedulerConfig
from mot_dinov3.detector import Detector
from mot_dinov3.evaluate import COMBINED, evaluate
from mot_dinov3.features.factory import create_embedder

CONFIGS = {
    "embed-all": SchedulerConfig(embed_all=True),
    "scheduled, unlimited": SchedulerConfig(),
    "scheduled, 10 ms": SchedulerConfig(budget_ms=10.0),
    "scheduled, 5 ms": SchedulerConfig(budget_ms=5.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seqs", nargs="+", required=True, help="MOTChallenge sequence folders (with gt/)")
    ap.add_argument("--det", required=True)
    ap.add_argument("--embed-model", required=True, help="ONNX ReID model")
    ap.add_argument("--imgsz", type=int, default=960)
    ap.add_argument("--json", default="benchmarks/results/scheduler.json")
    a = ap.parse_args()

    embedder = create_embedder(EmbedderConfig(name="onnx", model=a.embed_model))
    detector = Detector(DetectorConfig(model=a.det, classes=[0], imgsz=a.imgsz))
    seqs = [Path(s) for s in a.seqs]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, sched in CONFIGS.items():
            res_dir = Path(tmp) / name.replace(" ", "_").replace(",", "")
            computed = frames = 0
            embed_ms = 0.0
            for seq in seqs:
                cfg = RunConfig(source=str(seq), scheduler=sched,
                                output=OutputConfig(video=None, mot_txt=str(res_dir / f"{seq.name}.txt"),
                                                    progress=False))
                s = pipeline.run(cfg, embedder=embedder, detector=detector)
                computed += s.embeddings_computed
                frames += s.frames
                embed_ms += s.stage_mean_ms["embed"] * s.frames
            gt_root = Path(os.path.commonpath([str(s.parent) for s in seqs]))
            m = evaluate(gt_root, res_dir, [s.name for s in seqs])[COMBINED]
            rows[name] = {"frames": frames, "embeddings_computed": computed,
                          "embeddings_per_frame": computed / frames, "embed_ms_per_frame": embed_ms / frames,
                          "HOTA": m["HOTA"], "IDF1": m["IDF1"], "IDSW": m["IDSW"]}
    base = rows["embed-all"]
    print("| config | emb/frame | vs embed-all | embed ms/frame | HOTA | IDF1 | IDSW |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        r["computed_ratio"] = r["embeddings_computed"] / max(base["embeddings_computed"], 1)
        print(f"| {name} | {r['embeddings_per_frame']:.2f} | {r['computed_ratio']:.2f} | "
              f"{r['embed_ms_per_frame']:.1f} | {100 * r['HOTA']:.2f} | {100 * r['IDF1']:.2f} | {r['IDSW']} |")
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sequences": a.seqs, "det": a.det, "embed_model": a.embed_model, "rows": rows},
                              indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
