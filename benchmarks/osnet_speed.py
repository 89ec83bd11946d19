"""OSNet x0.25 on the CPU: the ``onnx`` backend against the ``osnet`` backend (its .pth network exported to
ONNX in memory, and in PyTorch), each ONNX graph on OpenVINO and onnxruntime (``--embed-runtime``), on the
same crops, in one process.

    python benchmarks/osnet_speed.py --onnx ../shared/weights/osnet_x0_25_msmt17.onnx \\
        --pth ../shared/weights/osnet_x0_25_msmt17_from_onnx.pth \\
        --seq ../shared/data/MOT17/train/MOT17-09-FRCNN

The crops are MOT17 ground-truth pedestrians cut once by the backends' shared ``crop``. Each row times
``embed_crops`` (normalisation, forward, L2) at batch 1 and ``--batch``; both libraries get the same
thread count (``--threads``, one row group each: OpenVINO's ``INFERENCE_NUM_THREADS``, onnxruntime's
``intra_op_num_threads`` and ``torch.set_num_threads``). Besides the backend as shipped (BatchNorm folded into the convolutions,
channels_last), two PyTorch ablations show what those steps bring: the model as loaded (BatchNorm kept,
NCHW) and BatchNorm folded in NCHW. Configurations run interleaved, one call each per round, after
``--warmup`` rounds; the median over ``--repeats`` rounds is kept, so background load hits every row alike.
Also reported: the smallest cosine between the two backends' vectors over the crops.

Prints a markdown table; writes JSON (default ``benchmarks/results/osnet_speed.json``).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, machine_info, write_json  # noqa: E402

from mot_dinov3.config import EmbedderConfig  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402
from mot_dinov3.io import read_mot_txt  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def gt_crops(seq: Path, embedder, n: int) -> list[np.ndarray]:
    """``n`` crops of visible MOT17 pedestrians (class 1, visibility > 0.3), from every 30th frame."""
    gt = read_mot_txt(seq / "gt" / "gt.txt")
    gt = gt[(gt[:, 6] == 1) & (gt[:, 7] == 1) & (gt[:, 8] > 0.3)]
    crops: list[np.ndarray] = []
    for f in np.unique(gt[:, 0])[::30]:
        rows = gt[gt[:, 0] == f][:8]
        xyxy = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]].astype(np.float32)
        crops += embedder.crop(cv2.imread(str(seq / "img1" / f"{int(f):06d}.jpg")), xyxy)
        if len(crops) >= n:
            break
    return crops[:n]


def torch_forward(model, channels_last: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A replacement for ``OSNetEmbedder.forward`` running ``model`` in the given memory format."""
    import torch

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x)
            return model(t.contiguous(memory_format=torch.channels_last) if channels_last else t).numpy()

    return forward


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", type=Path, default=SHARED / "weights/osnet_x0_25_msmt17.onnx")
    ap.add_argument("--pth", type=Path, default=SHARED / "weights/osnet_x0_25_msmt17_from_onnx.pth")
    ap.add_argument("--seq", type=Path, default=SHARED / "data/MOT17/train/MOT17-09-FRCNN")
    ap.add_argument("--batch", type=int, default=16, help="the large batch (the other is 1)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts, one row group each")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--no-ablations", action="store_true", help="only the two backends as shipped")
    ap.add_argument("--json", type=Path, default=RESULTS_DIR / "osnet_speed.json")
    args = ap.parse_args(argv)

    import torch

    from mot_dinov3.features.onnx import OnnxGraph
    from mot_dinov3.features.osnet import load_osnet, onnx_graph

    runtimes = ["openvino", "onnxruntime"] if importlib.util.find_spec("openvino") else ["onnxruntime"]
    onnx = create_embedder(EmbedderConfig(name="onnx", model=str(args.onnx), batch_size=args.batch))
    cfg = EmbedderConfig(name="osnet", model=str(args.pth), batch_size=args.batch, device="cpu")
    exported = create_embedder(cfg)  # on the CPU: the .pth network exported to ONNX
    osnet = create_embedder(replace(cfg, runtime="torch"))
    crops = gt_crops(args.seq, onnx, args.batch)
    if len(crops) < args.batch:
        raise SystemExit(f"{args.seq}: only {len(crops)} gt crops, need --batch {args.batch}")
    cos = (onnx.embed_crops(crops) * osnet.embed_crops(crops)).sum(axis=1)

    shipped = osnet.forward
    ablations: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if not args.no_ablations:
        loaded, _ = load_osnet(args.pth)
        ablations["torch, BatchNorm kept, NCHW"] = torch_forward(loaded, channels_last=False)
        folded = copy.deepcopy(osnet.model).to(memory_format=torch.contiguous_format)
        ablations["torch, BatchNorm folded, NCHW"] = torch_forward(folded, channels_last=False)

    def run_graph(embedder, graph) -> Callable[[list[np.ndarray]], object]:
        def run(batch: list[np.ndarray]) -> object:
            embedder.graph = graph
            return embedder.embed_crops(batch)

        return run

    def run_torch(forward: Callable[[np.ndarray], np.ndarray]) -> Callable[[list[np.ndarray]], object]:
        def run(batch: list[np.ndarray]) -> object:
            osnet.forward = forward
            return osnet.embed_crops(batch)

        return run

    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for n in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(n)
        configs: dict[str, Callable[[list[np.ndarray]], object]] = {}
        for rt in runtimes:
            graph = onnx_graph(exported.model, rt, n)  # an explicit runtime raises where it cannot load
            if graph is None:
                raise SystemExit("osnet: the ONNX export is unavailable here (is the onnx package installed?)")
            configs[f"onnx ({rt})"] = run_graph(onnx, OnnxGraph(args.onnx, rt, threads=n))
            configs[f"osnet ({rt})"] = run_graph(exported, graph)
        configs["osnet (torch)"] = run_torch(shipped)
        configs.update({k: run_torch(f) for k, f in ablations.items()})
        for bs in (1, args.batch):
            batch = crops[:bs]
            times: dict[str, list[float]] = {k: [] for k in configs}
            for r in range(args.warmup + args.repeats):
                for k, fn in configs.items():
                    t0 = time.perf_counter()
                    fn(batch)
                    if r >= args.warmup:
                        times[k].append(time.perf_counter() - t0)
            med = {k: float(np.median(v)) * 1000 / bs for k, v in times.items()}
            rows.append({"threads": n, "batch": bs, "ms_per_crop": med})
            print(f"threads {n} batch {bs}: " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()), flush=True)
    osnet.forward = shipped

    names = list(rows[0]["ms_per_crop"])
    print(f"\nms per crop (median of {args.repeats}); {len(crops)} MOT17-09 gt crops; min cosine {cos.min():.6f}\n")
    print("| threads | batch | " + " | ".join(names) + " | osnet / onnx, same runtime |")
    print("|---|---|" + "---|" * len(names) + "---|")
    for row in rows:
        ms = row["ms_per_crop"]
        ratios = " / ".join(f"{ms[f'osnet ({rt})'] / ms[f'onnx ({rt})']:.2f}" for rt in runtimes)
        print(f"| {row['threads']} | {row['batch']} | " + " | ".join(f"{ms[k]:.2f}" for k in names) + f" | {ratios} |")
    payload = {
        "machine": machine_info(),
        "runtimes": {rt: importlib.metadata.version(rt) for rt in runtimes},
        "load_average_before_after": [load_before, os.getloadavg()],
        "crops": len(crops),
        "min_cosine_onnx_vs_torch": float(cos.min()),
        "repeats": args.repeats,
        "rows": rows,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
