"""Crop policy of a ReID model: how well its embeddings tell people apart on ground-truth boxes.

For each MOTChallenge sequence, every ``--every``-th frame's visible pedestrians (gt class 1, visibility
at least ``--min-vis``; MOT15 gt has no class or visibility: all boxes) are embedded once per crop policy
(``--crop-pad``, ``--crop-square``). Pairs of boxes of the same identity in different frames are
"same", pairs of different identities "other". Reported per policy: the median cosine distance of each,
their gap, and the ROC AUC of distance as a same / other classifier (1.0: every same pair is closer
than every other pair). This is why ``onnx`` crops the detection box itself by default.

    python benchmarks/crops.py --seqs ../shared/data/MOT17/train/MOT17-09-FRCNN \\
        ../shared/data/MOT15/train/TUD-Stadtmitte --reid ../shared/weights/osnet_x0_25_msmt17.onnx

Prints a markdown table and writes JSON (default ``benchmarks/results/crops.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, machine_info, write_json  # noqa: E402

from mot_dinov3.config import EmbedderConfig  # noqa: E402
from mot_dinov3.evaluate import gt_mode  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402
from mot_dinov3.io import read_mot_txt  # noqa: E402

# (label, crop_pad, crop_square); the first row is the onnx default
POLICIES = [
    ("box, stretched (onnx default)", 0.0, False),
    ("box + 12%, stretched", 0.12, False),
    ("box, widened to 1:2", 0.0, True),
    ("box + 12%, widened to 1:2 (the padded window, earlier default)", 0.12, True),
]


def gt_frames(seq: Path, every: int, min_vis: float) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """[(frame, (K,) int ids, (K, 4) float32 xyxy)] of every ``every``-th frame of the ground truth."""
    gt = read_mot_txt(seq / "gt" / "gt.txt")
    if gt_mode(seq / "gt" / "gt.txt") == "MOT17":  # class and visibility columns: visible pedestrians
        gt = gt[(gt[:, 6] == 1) & (gt[:, 7] == 1) & (gt[:, 8] >= min_vis)]
    out = []
    for f in sorted(set(gt[:, 0].astype(int)))[::every]:
        rows = gt[gt[:, 0] == f]
        out.append((f, rows[:, 1].astype(int), np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]].astype(np.float32)))
    return out


def separation(emb: np.ndarray, ids: np.ndarray, frames: np.ndarray) -> dict:
    """Median same / other cosine distances, their gap and the ROC AUC (Mann-Whitney U) of the split."""
    d = 1.0 - emb @ emb.T
    iu = np.triu_indices(len(ids), 1)
    d, a, b = d[iu], ids[iu[0]], ids[iu[1]]
    same = d[(a == b) & (frames[iu[0]] != frames[iu[1]])]
    other = d[a != b]
    ranks = rankdata(np.r_[same, other])[: len(same)]
    auc = 1.0 - (ranks.sum() - len(same) * (len(same) + 1) / 2) / (len(same) * len(other))
    return {
        "same_median": float(np.median(same)),
        "other_median": float(np.median(other)),
        "gap": float(np.median(other) - np.median(same)),
        "auc": float(auc),
        "same_pairs": int(len(same)),
        "other_pairs": int(len(other)),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seqs", nargs="+", required=True, help="MOTChallenge sequence folders (img1/, gt/gt.txt)")
    p.add_argument("--reid", required=True, help="ONNX ReID model")
    p.add_argument("--every", type=int, default=10, help="use every N-th ground-truth frame")
    p.add_argument("--max-frames", type=int, default=40, help="at most this many frames per sequence")
    p.add_argument("--min-vis", type=float, default=0.6, help="MOT17: minimum gt visibility")
    p.add_argument("--json", default=str(RESULTS_DIR / "crops.json"))
    a = p.parse_args(argv)
    rows = []
    for seq in map(Path, a.seqs):
        frames = gt_frames(seq, a.every, a.min_vis)[: a.max_frames]
        images = {f: cv2.imread(str(seq / "img1" / f"{f:06d}.jpg")) for f, _, _ in frames}
        ids = np.concatenate([i for _, i, _ in frames])
        fr = np.concatenate([np.full(len(i), f) for f, i, _ in frames])
        for label, pad, square in POLICIES:
            embedder = create_embedder(EmbedderConfig(name="onnx", model=a.reid, crop_pad=pad, crop_square=square))
            emb = np.concatenate([embedder.embed(images[f], xyxy) for f, _, xyxy in frames])
            rows.append(
                {
                    "sequence": seq.name,
                    "policy": label,
                    "crop_pad": pad,
                    "crop_square": square,
                    **separation(emb, ids, fr),
                }
            )
    print("| sequence | crop | same median | other median | gap | ROC AUC |\n|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['sequence']} | {r['policy']} | {r['same_median']:.3f} | {r['other_median']:.3f} | "
            f"{r['gap']:.3f} | {r['auc']:.4f} |"
        )
    payload = {"machine": machine_info(), "reid": a.reid, "rows": rows}
    write_json(Path(a.json), payload)
    return payload


if __name__ == "__main__":
    main()
