"""End-to-end FPS of the CLI of an older checkout against this one, run after run on the same machine.

    git worktree add /tmp/baseline 45dc4a2        # main when issue 27 was filed
    python benchmarks/cli_ab.py --baseline /tmp/baseline/src --frames 300 --rounds 3

Each round runs ``python -m mot_dinov3`` once per row, one after another (``PYTHONPATH`` = the
checkout's ``src``), on the same source and flags (``--save-json`` read back for the FPS; no video
written): the baseline with its defaults, then this checkout with each ``--rows`` flag set. A row's
FPS is the median over rounds, and the ratios compare medians from the same run. Writes a markdown
table and JSON (``benchmarks/results/cli_ab.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, machine_info, write_json  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def run_cli(src: Path, flags: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, "-m", "mot_dinov3", *flags, "--output=", "--no-progress", "--save-json", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed (PYTHONPATH={src}):\n{r.stderr[-2000:]}")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, type=Path, help="the older checkout's src/ folder")
    ap.add_argument("--source", default="../shared/data/MOT17/train/MOT17-09-FRCNN")
    ap.add_argument("--det", default="../shared/weights/yolov8n_from_int8.pt")
    ap.add_argument("--reid", default="../shared/weights/osnet_x0_25_msmt17.onnx", help="ONNX ReID model")
    ap.add_argument("--imgsz", type=int, default=960)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--rows",
        nargs="*",
        default=["--det-runtime torch", ""],
        help="this checkout's extra flags, one string per row ('' = its defaults)",
    )
    ap.add_argument("--json", default=str(RESULTS_DIR / "cli_ab.json"))
    a = ap.parse_args()
    if not (a.baseline / "mot_dinov3").is_dir():
        raise SystemExit(f"--baseline {a.baseline}: no mot_dinov3 package there; pass a checkout's src/ folder")

    common = [
        "--source", a.source, "--det", a.det, "--imgsz", str(a.imgsz), "--classes", "0",
        "--embedder", "onnx", "--embed-model", a.reid, "--max-frames", str(a.frames),
    ]  # fmt: skip
    rows = {"baseline (its defaults)": (a.baseline.resolve(), [])}
    rows.update({f"this checkout {r}".strip(): (SRC, shlex.split(r)) for r in a.rows})
    runs: dict[str, list[dict]] = {name: [] for name in rows}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.rounds):
            for name, (src, extra) in rows.items():
                s = run_cli(src, common + extra, Path(tmp) / f"{k}.json")
                runs[name].append({"fps": s["fps"], "embeddings_per_frame": s["embeddings_per_frame"]})
    fps = {name: statistics.median(r["fps"] for r in rs) for name, rs in runs.items()}
    base = fps["baseline (its defaults)"]
    print("| row | FPS (median) | rounds | vs baseline | emb/frame |\n|---|---:|---|---:|---:|")
    for name, rs in runs.items():
        each = ", ".join(f"{r['fps']:.2f}" for r in rs)
        print(f"| {name} | {fps[name]:.2f} | {each} | {fps[name] / base:.2f}x | {rs[0]['embeddings_per_frame']:.2f} |")
    write_json(
        Path(a.json),
        {
            "machine": machine_info(),
            "baseline": str(a.baseline),
            "flags": common,
            "rounds": a.rounds,
            "runs": runs,
            "median_fps": fps,
            "vs_baseline": {n: f / base for n, f in fps.items()},
        },
    )


if __name__ == "__main__":
    main()
