"""Tracker cost per frame over the conditions of ``generalise.py``: this checkout against an older one.

    git worktree add /tmp/baseline 45dc4a2        # the release to compare with
    python benchmarks/track_ms.py --baseline /tmp/baseline/src

Every condition's cached detections and embeddings (``generalise.prepare``) are written once to a
temporary file; a child process per checkout (``PYTHONPATH`` = that checkout's ``src``) replays them
through ``pipeline.run`` with the checkout's own defaults and reports the ``track`` stage's mean ms a
frame (camera motion, Kalman prediction, association and the track life cycle; the embedding scheduler
is the ``embed`` stage). The children run one at a time, alternating, ``--rounds`` times, and each
condition keeps its fastest round, so background load hits both alike. "same tracks" compares the two
checkouts' MOTChallenge outputs byte for byte: against the previous commit it shows whether a speed
change changed any track.

Writes a markdown table and JSON (``benchmarks/results/track_ms.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, machine_info, write_json  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"

# The child: only ``pipeline.run(cfg, embedder=, detector=)``, ``RunConfig`` / ``OutputConfig`` and
# ``Detections(xyxy, conf, cls, feats)``, which every release since the detector stand-in has kept.
CHILD = r"""
import hashlib, json, pickle, sys, tempfile
from pathlib import Path
import numpy as np
from mot_dinov3 import pipeline
from mot_dinov3.config import OutputConfig, RunConfig
from mot_dinov3.detector import Detections

class Replay:
    def __init__(self, frames):
        self.frames, self.next, self.served = frames, 0, {}
    def __call__(self, image):
        xyxy, conf, cls = self.frames[self.next]
        self.served[id(image)] = self.next
        self.next += 1
        return Detections(xyxy, conf, cls, None)

class Lookup:  # generalise.CachedEmbedder again: generalise imports modules an older checkout lacks
    name, uses_detector_features, cost_free = "onnx", False, False
    def __init__(self, frames, vectors, replay):
        self.frames, self.vectors, self.replay = frames, vectors, replay
        self.dim = int(next((v.shape[1] for v in vectors if len(v)), 512))
    def _rows(self, image, xyxy):
        f = self.replay.served[id(image)]
        index = {b.tobytes(): i for i, b in enumerate(np.ascontiguousarray(self.frames[f][0], np.float32))}
        return self.vectors[f][[index[b.tobytes()] for b in np.ascontiguousarray(xyxy, np.float32)]]
    def embed(self, image, xyxy, det_feats=None):
        return self._rows(image, xyxy)
    def crop(self, image, xyxy):
        return list(self._rows(image, xyxy))
    def embed_crops(self, crops):
        return np.stack(crops) if crops else np.zeros((0, self.dim), np.float32)
    def synchronize(self):
        pass

out = {}
for name, seqs in pickle.load(open(sys.argv[1], "rb")).items():
    ms = frames = 0.0
    digest = hashlib.md5()
    for src, dets, vectors in seqs:
        replay = Replay(dets)
        txt = Path(tempfile.mkdtemp()) / "res.txt"
        cfg = RunConfig(source=src, output=OutputConfig(video=None, mot_txt=str(txt), progress=False))
        s = pipeline.run(cfg, embedder=Lookup(dets, vectors, replay), detector=replay)
        ms += s.stage_mean_ms["track"] * s.frames
        frames += s.frames
        digest.update(txt.read_bytes())
    out[name] = {"track_ms": ms / max(frames, 1), "frames": int(frames), "md5": digest.hexdigest()[:12]}
print("RESULT " + json.dumps(out))
"""


def child(src: Path, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    r = subprocess.run([sys.executable, "-c", CHILD, str(data)], env=env, capture_output=True, text=True)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if r.returncode or line is None:
        raise SystemExit(f"replay under {src} failed:\n{r.stderr[-2000:]}")
    return json.loads(line[len("RESULT ") :])


def main() -> None:
    import generalise as g

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, type=Path, help="the older checkout's src/ folder")
    ap.add_argument("--data", default="../shared/data", help="folder holding MOT17/, MOT15/, MOT17-mini/")
    ap.add_argument("--det-dir", default="../shared/weights", help="folder holding the YOLO .pt weights")
    ap.add_argument("--reid", default="../shared/weights/osnet_x0_25_msmt17.onnx", help="ONNX ReID model")
    ap.add_argument("--conditions", nargs="*", help="run only these conditions (default: all)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default=str(RESULTS_DIR / "track_ms.json"))
    a = ap.parse_args()
    if not (a.baseline / "mot_dinov3").is_dir():
        raise SystemExit(f"--baseline {a.baseline}: no mot_dinov3 package there; pass a checkout's src/ folder")

    conds = [c for c in g.CONDITIONS if not a.conditions or c.name in a.conditions]
    prepared = {}
    for c in conds:
        p = g.prepare(c, Path(a.data), Path(a.det_dir), a.reid)
        prepared[c.name] = [
            (str(s.resolve()), [(d.xyxy, d.conf, d.cls) for d in p.dets[s].frames], p.vectors[s]) for s in p.seqs
        ]
    runs: dict[str, list[dict]] = {"ours": [], "baseline": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "conditions.pkl"
        data.write_bytes(pickle.dumps(prepared))
        for _ in range(a.rounds):
            runs["baseline"].append(child(a.baseline.resolve(), data))
            runs["ours"].append(child(SRC, data))

    rows = {}
    for c in conds:
        old = min(r[c.name]["track_ms"] for r in runs["baseline"])
        new = min(r[c.name]["track_ms"] for r in runs["ours"])
        same = runs["ours"][0][c.name]["md5"] == runs["baseline"][0][c.name]["md5"]
        rows[c.name] = {"baseline_ms": old, "ours_ms": new, "change": new / old - 1, "same_tracks": same}
    mean_old = sum(r["baseline_ms"] for r in rows.values()) / len(rows)
    mean_new = sum(r["ours_ms"] for r in rows.values()) / len(rows)
    print("| condition | baseline ms/frame | ours ms/frame | change | same tracks |\n|---|---:|---:|---:|---|")
    for name, r in rows.items():
        same = "yes" if r["same_tracks"] else "no"
        print(f"| {name} | {r['baseline_ms']:.2f} | {r['ours_ms']:.2f} | {100 * r['change']:+.0f}% | {same} |")
    print(f"| mean | {mean_old:.2f} | {mean_new:.2f} | {100 * (mean_new / mean_old - 1):+.0f}% | |")
    worst = max(rows, key=lambda k: rows[k]["change"])
    print(f"\nworst: {worst} {100 * rows[worst]['change']:+.0f}%")
    write_json(
        Path(a.json),
        {
            "machine": machine_info(),
            "baseline": str(a.baseline),
            "rounds": a.rounds,
            "conditions": rows,
            "mean": {"baseline_ms": mean_old, "ours_ms": mean_new},
            "worst": worst,
        },
    )


if __name__ == "__main__":
    main()
