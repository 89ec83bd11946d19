"""Embedding backends side by side: vector size, CPU cost per crop, how well the vectors tell people
apart, and what they give the tracker.

    python benchmarks/backends.py            # the full table (5 minutes on 2 quiet cores, 15 under load)
    python benchmarks/backends.py --quick    # smoke test: fewer crops and repeats, no DEV replay (1 minute)

Rows: the backends with real weights here (``onnx`` and ``osnet``: OSNet x0.25 MSMT17 from the ``.onnx`` and
from the torchreid ``.pth``, which the ``osnet`` backend exports to ONNX in memory on the CPU; both ONNX graphs
run on ``--embed-runtime auto``: OpenVINO where installed); ``yolo``: the yolov8n detector's neck features;
the ensembles ``onnx@0.7 + yolo`` and, as a
sanity row, ``onnx + osnet``) and, for their cost only, random-init architectures (no DINO or CLIP
weights exist offline): ``dino`` DINOv2-S/14 (``configs/dinov2-small``) and DINOv2-B/14, ``clip``
ViT-B/32 (``CLIPVisionConfig()`` defaults).

Columns:

- ``ms/crop`` at batch 1 and 16: one ``embed(frame, boxes, det_feats)`` call (crop, preprocess, forward,
  L2) on one MOT17-09 frame, divided by the boxes; torch and the ONNX runtime at their default threads
  (``--threads N``: N each). Configurations run interleaved, one call each per round, after warm-up
  rounds; the median of the repeats is kept (the minimum too, in the JSON), so background load hits
  every row alike. Each timed call follows a 50 ms pause: a spinning onnxruntime pool (its default;
  ours is told not to spin) tripled the next torch call's time on 2 cores. On a 2-core machine that other processes load,
  multi-threaded torch at batch 1 slows by up to 10x (a thread descheduled at every parallel region);
  ``--threads 1`` is far steadier there. Ultralytics sets torch to ``cpu_count - 1`` threads when a YOLO
  model first runs on the CPU (8 at most; 1 on 2 cores), so next to the detector in the pipeline the torch
  backends run at that count: ``--threads 1`` measures it here. ``yolo``'s call only normalises the features the detector
  already computed; its real marginal cost is the feature capture inside the detector, measured
  separately (paired detector calls with and without capture on the same frames).
- ``AUC``: :func:`crops.separation` on MOT17-09 ground-truth boxes (:func:`crops.gt_frames`: every 10th
  frame, 40 at most, visible pedestrians): ROC AUC of cosine distance as a same-person (other frame) /
  other-person classifier. Detector features exist only for detected boxes, so ``yolo`` and the
  ``yolo`` ensemble are scored on the gt boxes matched one to one to a cached detection (IoU >= 0.5; the
  feature of that detection, the crop of the gt box); the crop backends' AUC on that same subset is in
  the JSON (``auc_matched``) and the notes.
- ``DEV HOTA / IDF1`` (real weights only): our tracker (``TrackerConfig()`` defaults, the backend's
  default scheduler: lazy memory for crop backends, the refresh rules when a part reads detector
  features) replayed on the cached yolov8n detections (imgsz 960, conf 0.1, person) of MOT17-09 +
  TUD-Campus + TUD-Stadtmitte with the backend's embeddings computed live (:func:`quality.run_ours`);
  TrackEval as in ``quality.py``. A motion-only row (``none``) is the reference.

Prints a markdown table and writes JSON (default ``benchmarks/results/backends.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS_DIR, load_or_detect, machine_info, random_init_dino, write_json  # noqa: E402
from crops import gt_frames, separation  # noqa: E402

from mot_dinov3.config import DetectorConfig, EmbedderConfig, SchedulerConfig, TrackerConfig  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402
from mot_dinov3.features.onnx import graph_runtime  # noqa: E402
from mot_dinov3.matching import iou_matrix  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEV = ("MOT17/train/MOT17-09-FRCNN", "MOT15/train/TUD-Campus", "MOT15/train/TUD-Stadtmitte")
MATCH_IOU = 0.5
SETTLE_S = 0.05  # pause before each timed call


@dataclass
class Row:
    """One backend: table cells and how to build it."""

    backend: str
    model: str
    make: Callable[[], Any]
    real: bool  # real weights: AUC and DEV replay
    heavy: bool = False  # a ViT: fewer timing repeats
    feats: bool = False  # reads the detector's features
    notes: str = ""


def dinov2_base(config_dir: Path):
    """DINOv2-B/14 with random weights: the small config with ViT-B widths (768 wide, 12 heads)."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    from mot_dinov3.features.dino import DinoEmbedder
    from mot_dinov3.features.hf import Preprocess

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(config_dir)
    cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers = 768, 12, 12
    pre = Preprocess.from_processor(AutoImageProcessor.from_pretrained(config_dir))
    return DinoEmbedder(AutoModel.from_config(cfg), pre, EmbedderConfig(name="dino", device="cpu"))


def clip_b32():
    """CLIP ViT-B/32 vision tower + projection (``CLIPVisionConfig()`` defaults) with random weights."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from mot_dinov3.features.clip import ClipEmbedder
    from mot_dinov3.features.hf import Preprocess

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig())
    return ClipEmbedder(
        model, Preprocess.from_processor(CLIPImageProcessor()), EmbedderConfig(name="clip", device="cpu")
    )


GRAPH = graph_runtime("auto", "cpu")  # what runs the ONNX ReID graphs here: OpenVINO where installed


def rows(onnx: Path, pth: Path, dino_config: Path) -> list[Row]:
    def emb(name: str, model: str | None = None):
        return lambda: create_embedder(EmbedderConfig(name=name, model=model, device="cpu"))

    return [
        Row("onnx", f"OSNet x0.25 MSMT17 .onnx ({GRAPH})", emb("onnx", str(onnx)), True),
        Row("osnet", f"OSNet x0.25 MSMT17 .pth (exported, {GRAPH})", emb("osnet", str(pth)), True),
        Row("yolo", "yolov8n neck features (imgsz 960)", emb("yolo"), True, feats=True),
        Row("ensemble", "onnx@0.7 + yolo", emb("ensemble", f"onnx:{onnx}@0.7,yolo"), True, feats=True),
        Row("ensemble", "onnx + osnet (sanity)", emb("ensemble", f"onnx:{onnx},osnet:{pth}"), True),
        Row("dino", "DINOv2-S/14, random init", lambda: random_init_dino(str(dino_config), "cpu"), False, True),
        Row("dino", "DINOv2-B/14, random init", lambda: dinov2_base(dino_config), False, True),
        Row("clip", "CLIP ViT-B/32, random init", clip_b32, False, True),
    ]


def set_threads(embedder, n: int) -> None:
    """``n`` intra-op threads for the ONNX graphs in ``embedder`` (an ensemble's parts too), on the
    runtime each already uses."""
    from mot_dinov3.features.onnx import OnnxEmbedder, OnnxGraph
    from mot_dinov3.features.osnet import OSNetEmbedder, onnx_graph

    for e in getattr(embedder, "parts", [embedder]):
        if isinstance(e, OnnxEmbedder):
            e.graph = OnnxGraph(e.cfg.model, e.graph.runtime, threads=n)
        elif isinstance(e, OSNetEmbedder) and e.graph is not None:  # the .pth exported to ONNX
            e.graph = onnx_graph(e.model, e.graph.runtime, n)


def label(r: Row) -> str:
    return f"{r.backend}: {r.model}"


def match_gt(gt_xyxy: np.ndarray, det_xyxy: np.ndarray) -> np.ndarray:
    """(K,) index of the detection matched one to one to each gt box (IoU >= MATCH_IOU), else -1."""
    out = np.full(len(gt_xyxy), -1)
    iou = iou_matrix(gt_xyxy, det_xyxy)
    if iou.size:
        gi, di = linear_sum_assignment(-iou)
        ok = iou[gi, di] >= MATCH_IOU
        out[gi[ok]] = di[ok]
    return out


def time_calls(calls: dict[str, Callable[[int], object]], sizes, warmup: int, repeats: dict[str, int]) -> dict:
    """``{"median" | "min": {name: {size: ms per crop}}}`` over ``repeats[name]`` calls after ``warmup``,
    interleaved."""
    out: dict[str, dict[int, float]] = {k: {} for k in calls}
    low: dict[str, dict[int, float]] = {k: {} for k in calls}
    for n in sizes:
        times: dict[str, list[float]] = {k: [] for k in calls}
        for r in range(warmup + max(repeats.values())):
            for k, fn in calls.items():
                if r >= warmup + repeats[k]:
                    continue
                time.sleep(SETTLE_S)  # the previous call's idle threads (a spinning pool) stop competing
                t0 = time.perf_counter()
                fn(n)
                if r >= warmup:
                    times[k].append(time.perf_counter() - t0)
        for k, v in times.items():
            out[k][n] = float(np.median(v)) * 1000.0 / n
            low[k][n] = float(np.min(v)) * 1000.0 / n
        print(f"batch {n}: " + ", ".join(f"{k} {out[k][n]:.3f}" for k in calls), file=sys.stderr, flush=True)
    return {"median": out, "min": low}


def capture_overhead(seq: Path, det_cfg: DetectorConfig, n_frames: int, warmup: int, repeats: int) -> dict:
    """Detector ms per frame with and without neck-feature capture, paired on the same frames."""
    from dataclasses import replace

    from mot_dinov3.detector import Detector

    plain, capt = Detector(replace(det_cfg, capture_features=False)), Detector(replace(det_cfg, capture_features=True))
    files = sorted((seq / "img1").glob("*.jpg"))
    images = [cv2.imread(str(p)) for p in files[:: max(1, len(files) // n_frames)][:n_frames]]
    ms: dict[str, list[float]] = {"plain": [], "capture": []}
    for r in range(warmup + repeats):
        for im in images:
            for k, d in (("plain", plain), ("capture", capt)):
                t0 = time.perf_counter()
                d(im)
                if r >= warmup:
                    ms[k].append((time.perf_counter() - t0) * 1000.0)
    diff = np.array(ms["capture"]) - np.array(ms["plain"])
    return {
        "frames": len(images),
        "calls": len(diff),
        "plain_ms_median": float(np.median(ms["plain"])),
        "capture_ms_median": float(np.median(ms["capture"])),
        "paired_diff_ms_median": float(np.median(diff)),
        "paired_diff_ms_iqr": [float(np.percentile(diff, 25)), float(np.percentile(diff, 75))],
    }


def dev_replay(table: list[Row], data: Path, det_cfg: DetectorConfig) -> dict:
    """DEV HOTA / IDF1 / IDSW of each real-weight row and of motion only (``quality.run_ours``)."""
    from quality import run_ours, scores

    seqs = [data / s for s in DEV]
    cache = {s: load_or_detect(s, det_cfg) for s in seqs}
    out = {}
    jobs = [(label(r), r.make) for r in table if r.real] + [("none: motion only (reference)", lambda: None)]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, make) in enumerate(jobs):
            res = Path(tmp) / f"run{i}"
            res.mkdir()
            t0 = time.perf_counter()
            run = run_ours(name, make, SchedulerConfig(), TrackerConfig(), det_cfg, seqs, cache, res)
            run["scores"] = scores(seqs, res)
            run["wall_s"] = time.perf_counter() - t0
            out[name] = run
            dev = run["scores"]["DEV"]
            print(
                f"DEV {name}: HOTA {100 * dev['HOTA']:.2f} IDF1 {100 * dev['IDF1']:.2f} ({run['wall_s']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, default=SHARED / "weights/osnet_x0_25_msmt17.onnx")
    ap.add_argument("--pth", type=Path, default=SHARED / "weights/osnet_x0_25_msmt17_from_onnx.pth")
    ap.add_argument("--det", type=Path, default=SHARED / "weights/yolov8n_from_int8.pt")
    ap.add_argument("--dino-config", type=Path, default=SHARED / "weights/configs/dinov2-small")
    ap.add_argument("--data", type=Path, default=SHARED / "data")
    ap.add_argument("--quick", action="store_true", help="smoke test: fewer crops and repeats, no DEV replay")
    ap.add_argument("--only", nargs="*", help="only rows whose 'backend: model' label contains one of these")
    ap.add_argument("--no-dev", action="store_true", help="skip the DEV replay")
    ap.add_argument(
        "--threads", type=int, help="torch and ONNX runtime intra-op threads for the timings (default: theirs)"
    )
    ap.add_argument("--json", type=Path, default=RESULTS_DIR / "backends.json")
    a = ap.parse_args(argv)
    import importlib.metadata

    import torch

    t_start = time.perf_counter()
    load_before = os.getloadavg()

    every, max_frames = (25, 6) if a.quick else (10, 40)
    warmup, repeats, heavy_repeats = (1, 3, 1) if a.quick else (3, 20, 5)
    det_cfg = DetectorConfig(model=str(a.det), conf=0.1, imgsz=960, classes=[0])
    seq = a.data / DEV[0]
    cached = load_or_detect(seq, det_cfg)

    table = rows(a.onnx, a.pth, a.dino_config)
    if a.only:
        table = [r for r in table if any(o in label(r) for o in a.only)]
    built = {label(r): r.make() for r in table}
    if a.threads:
        torch.set_num_threads(a.threads)  # the detector below resets it (Ultralytics): the timings come first
        for e in built.values():
            set_threads(e, a.threads)

    # ground-truth boxes, their detections (for the detector's features)
    frames = gt_frames(seq, every, 0.6)[:max_frames]
    images = {f: cv2.imread(str(seq / "img1" / f"{f:06d}.jpg")) for f, _, _ in frames}
    match = {f: match_gt(xyxy, cached.frames[f - 1].xyxy) for f, _, xyxy in frames}
    ids = np.concatenate([i for _, i, _ in frames])
    fr = np.concatenate([np.full(len(i), f) for f, i, _ in frames])
    matched = np.concatenate([match[f] >= 0 for f, _, _ in frames])
    print(f"{len(ids)} gt boxes in {len(frames)} frames, {matched.sum()} matched to a detection", file=sys.stderr)

    # timing input: the frame with the most gt boxes, its boxes (repeated up to 16) and detector features
    f0, _, box0 = max(frames, key=lambda t: len(t[1]))
    d0 = cached.frames[f0 - 1]
    boxes16 = np.resize(box0, (16, 4)).astype(np.float32)
    feats16 = np.resize(d0.feats, (16, d0.feats.shape[1])).astype(np.float32)
    image0 = images[f0]

    def call(e) -> Callable[[int], object]:
        return lambda n: e.embed(image0, boxes16[:n], feats16[:n])

    calls = {k: call(e) for k, e in built.items()}
    reps = {label(r): heavy_repeats if r.heavy else repeats for r in table}
    torch_threads = torch.get_num_threads()  # before any detector runs (Ultralytics resets it, see above)
    ms = time_calls(calls, (1, 16), warmup, reps)

    capture = None
    if any(r.feats for r in table):
        capture = capture_overhead(seq, det_cfg, 4 if a.quick else 10, 1, 1 if a.quick else 3)
        print(f"detector feature capture: {capture}", file=sys.stderr, flush=True)

    results: dict[str, dict] = {}
    for r in table:
        k = label(r)
        e = built[k]
        res: dict[str, Any] = {
            "backend": r.backend,
            "model": r.model,
            "real_weights": r.real,
            "ms_per_crop": {str(n): v for n, v in ms["median"][k].items()},
            "ms_per_crop_min": {str(n): v for n, v in ms["min"][k].items()},
        }
        if r.real:
            if r.feats:
                embs = [
                    e.embed(images[f], xyxy[match[f] >= 0], cached.frames[f - 1].feats[match[f][match[f] >= 0]])
                    for f, _, xyxy in frames
                ]
                emb = np.concatenate([x for x in embs if len(x)])
                res["auc_matched"] = separation(emb, ids[matched], fr[matched])
                res["auc_on"] = "matched"
            else:
                emb = np.concatenate([e.embed(images[f], xyxy) for f, _, xyxy in frames])
                res["auc_all"] = separation(emb, ids, fr)
                res["auc_matched"] = separation(emb[matched], ids[matched], fr[matched])
                res["auc_on"] = "all"
        res["dim"] = int(e.dim)
        results[k] = res

    dev = None
    if not (a.quick or a.no_dev):
        dev = dev_replay(table, a.data, det_cfg)
        for k, run in dev.items():
            if k in results:
                results[k]["dev"] = run

    payload = {
        "machine": machine_info(),
        "onnx_runtime": {GRAPH: importlib.metadata.version(GRAPH)},
        "torch_threads": torch_threads,
        "threads_option": a.threads,
        "load_average_before_after": [load_before, os.getloadavg()],
        "quick": a.quick,
        "date": time.strftime("%Y-%m-%d"),
        "gt": {
            "sequence": seq.name,
            "every": every,
            "frames": len(frames),
            "boxes": int(len(ids)),
            "matched_to_detection": int(matched.sum()),
            "match_iou": MATCH_IOU,
        },
        "timing": {"warmup": warmup, "repeats": repeats, "heavy_repeats": heavy_repeats, "frame": int(f0)},
        "detector": {"weights": str(a.det), "imgsz": 960, "conf": 0.1, "classes": [0]},
        "yolo_feature_capture": capture,
        "rows": results,
        "dev_reference": {k: v for k, v in (dev or {}).items() if k not in results},
        "wall_s": time.perf_counter() - t_start,
    }
    print(markdown(payload))
    write_json(a.json, payload)
    print(f"\nwrote {a.json} ({payload['wall_s']:.0f} s)")
    return payload


def markdown(p: dict) -> str:
    head = "| backend | model | dim | ms/crop b1 | ms/crop b16 | AUC | DEV HOTA / IDF1 | notes |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in p["rows"].values():
        if "auc_on" in r:
            auc = r["auc_all" if r["auc_on"] == "all" else "auc_matched"]["auc"]
            auc_s = f"{auc:.4f}" + (" *" if r["auc_on"] == "matched" else "")
            notes = f"matched-subset AUC {r['auc_matched']['auc']:.4f}" if r["auc_on"] == "all" else ""
        else:
            auc_s, notes = "-", "random weights: cost only"
        dev = r.get("dev")
        dev_s = f"{100 * dev['scores']['DEV']['HOTA']:.2f} / {100 * dev['scores']['DEV']['IDF1']:.2f}" if dev else "-"
        if dev:
            notes += ("; " if notes else "") + f"{dev['embeddings_per_frame']:.2f} emb/frame"
        if r["backend"] == "yolo" and p["yolo_feature_capture"]:
            c = p["yolo_feature_capture"]
            notes += f"; capture in the detector {c['paired_diff_ms_median']:+.2f} ms/frame (paired median)"
        ms = r["ms_per_crop"]
        fmt = "{:.4f}" if r["backend"] == "yolo" else "{:.2f}"
        lines.append(
            f"| {r['backend']} | {r['model']} | {r['dim']} | {fmt.format(ms['1'])} | {fmt.format(ms['16'])} | "
            f"{auc_s} | {dev_s} | {notes.lstrip('; ')} |"
        )
    for run in p["dev_reference"].values():
        dev = run["scores"]["DEV"]
        lines.append(
            f"| none | motion only (reference) | - | - | - | - | {100 * dev['HOTA']:.2f} / {100 * dev['IDF1']:.2f} | |"
        )
    g = p["gt"]
    lines.append(
        f"\n{g['boxes']} MOT17-09 gt boxes in {g['frames']} frames; * AUC on the {g['matched_to_detection']} "
        f"matched one to one to a detection (IoU >= {g['match_iou']}). Load average (1 min) before / after: "
        f"{p['load_average_before_after'][0][0]:.1f} / {p['load_average_before_after'][1][0]:.1f} "
        f"on {p['machine']['cores']} cores."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
