"""Generalisation: our tracker and the Ultralytics trackers over conditions DEV does not stress.

    python benchmarks/generalise.py --det-dir ../shared/weights \\
        --reid ../shared/weights/osnet_x0_25_msmt17.onnx --data ../shared/data

Each *condition* is a set of MOTChallenge sequences (gt included) seen through one detector *view*:

=================  ====================================================================================
``base``           MOT17-09 + TUD-Campus + TUD-Stadtmitte, yolov8n @960 (the peer table's detections)
``fps/2, fps/3``   the same at every 2nd / 3rd frame (``seqinfo.ini`` frameRate and seqLength adjusted,
                   gt renumbered): faster motion per frame, shorter occlusions in frames
``scale0.5``       frames downscaled to 0.5x and detected at imgsz 480: smaller people, lower scores
``imgsz640/1280``  the detector at another input size
``yolo11n``        another detector
``conf*0.7``       the base boxes with their scores x0.7 (a weaker detector; boxes under 0.1 dropped)
``fps/2 conf*0.7`` both: the low-score crowd at a lower frame rate
``dense``          MOT17-09's densest 150 frames (most gt boxes)
``mini``           the MOT17-mini sequences (dense, moving cameras; 4-8 frames: detection coverage)
``crowd``          a long crowd of small people: MOT17-09 as a 2x2 mosaic of half-size tiles (1920x1080,
                   about 40 people a frame, 262 frames; see :func:`mosaic_sequence`)
``crowd3``         a 3x3 mosaic of third-size tiles: about 90 people a frame, 175 frames, low scores
``crowd3 fps/2``   the same at every 2nd frame
``crowd3 conf*0.7`` the 3x3 mosaic with its scores x0.7: a crowd whose people score mostly 0.2-0.5
``crowd3 fps/2 conf*0.7`` both: the low-score crowd at every 2nd frame
=================  ====================================================================================

Derived sequences live under ``benchmarks/cache/generalise/<condition>/`` (images are links to
``--data``, or downscaled copies). Detections are cached per view (``common.load_or_detect``) and every
detection's embedding is computed once per view and cached too (:class:`CachedEmbedder`, embeddings
are deterministic), so a replay of tracker + scheduler reads vectors instead of running the model.
Rows: our default (lazy memory), no ReID and ``--embed-all``, and Ultralytics ``bytetrack``,
``botsort`` and ``ocsort`` with their default YAML (their scores are cached: they do not depend on
ours). ``--set key=value`` changes our tracker or scheduler config; ``--ablate`` runs each named
ablation of :data:`ABLATIONS` as well. Prints markdown tables (per condition: HOTA, DetA, AssA, IDF1,
IDSW; a summary of ours minus the best peer, mean and worst case) and writes JSON
(``benchmarks/results/generalise.json``).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import dataclasses
import importlib
import io
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    CACHE_DIR,
    RESULTS_DIR,
    ReplayDetector,
    SequenceDetections,
    cache_path,
    load_or_detect,
    machine_info,
    run_ultralytics_tracker,
    write_json,
)

from mot_dinov3 import pipeline  # noqa: E402
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig, SchedulerConfig, TrackerConfig  # noqa: E402
from mot_dinov3.detector import Detections  # noqa: E402
from mot_dinov3.evaluate import COMBINED, evaluate  # noqa: E402
from mot_dinov3.features.factory import create_embedder  # noqa: E402
from mot_dinov3.io import read_seqinfo  # noqa: E402

GEN_DIR = CACHE_DIR / "generalise"
DEV = ("MOT17/train/MOT17-09-FRCNN", "MOT15/train/TUD-Campus", "MOT15/train/TUD-Stadtmitte")
MINI = tuple(f"MOT17-mini/train/MOT17-{n}-FRCNN" for n in ("02", "04", "05", "10", "11", "13"))
PEERS = ("bytetrack", "botsort", "ocsort")
METRICS = ("HOTA", "DetA", "AssA", "IDF1", "IDSW", "FP", "FN")


@dataclass(frozen=True)
class View:
    """A detector view of the original frames: weights file stem, imgsz, image scale and mosaic."""

    weights: str
    imgsz: int
    scale: float = 1.0
    mosaic: int = 0  # > 1: the n x n crowd mosaic of :func:`mosaic_sequence`


@dataclass(frozen=True)
class Condition:
    """Sequences of one view, optionally subsampled (``step``), cut to a window or with scores scaled."""

    name: str
    view: View
    seqs: tuple[str, ...] = DEV
    step: int = 1
    conf_scale: float = 1.0
    dense_window: int = 0  # > 0: only the densest this-many frames (by gt boxes)


V960 = View("yolov8n_from_int8", 960)
CONDITIONS = (
    Condition("base", V960),
    Condition("fps/2", V960, step=2),
    Condition("fps/3", V960, step=3),
    Condition("scale0.5", View("yolov8n_from_int8", 480, 0.5)),
    Condition("imgsz640", View("yolov8n_from_int8", 640)),
    Condition("imgsz1280", View("yolov8n_from_int8", 1280)),
    Condition("yolo11n", View("yolo11n_from_int8", 960)),
    Condition("conf*0.7", V960, conf_scale=0.7),
    Condition("fps/2 conf*0.7", V960, step=2, conf_scale=0.7),
    Condition("dense", V960, seqs=(DEV[0],), dense_window=150),
    Condition("mini", V960, seqs=MINI),
    Condition("crowd", View("yolov8n_from_int8", 960, mosaic=2), seqs=(DEV[0],)),
    Condition("crowd3", View("yolov8n_from_int8", 960, mosaic=3), seqs=(DEV[0],)),
    Condition("crowd3 fps/2", View("yolov8n_from_int8", 960, mosaic=3), seqs=(DEV[0],), step=2),
    Condition("crowd3 conf*0.7", View("yolov8n_from_int8", 960, mosaic=3), seqs=(DEV[0],), conf_scale=0.7),
    Condition(
        "crowd3 fps/2 conf*0.7", View("yolov8n_from_int8", 960, mosaic=3), seqs=(DEV[0],), step=2, conf_scale=0.7
    ),
)


def _no_veto(self, tracks, app):
    return np.zeros(app.shape, bool)


def _no_look_catch_up(self, track_id, frames, embeddings):
    """Tracker.update_appearance with every look weighing one sample."""
    t = next((t for t in self.tracks if t.track_id == track_id), None)
    if t is None:
        return
    for k in np.argsort(frames, kind="stable"):
        fr = int(frames[k])
        if fr > t.last_embed_frame:
            self._absorb(t, embeddings[k], 1)
            t.last_embed_frame = fr


def _deferred_births():
    """Lazy memory that does not compute a box no track can claim this frame (no active track above
    ``contest_iou``, no lost track on it or within re-identification reach): a new object, whose track's
    first memory is computed when the track is next matched (``no_cache``)."""
    from mot_dinov3.matching import iou_matrix
    from mot_dinov3.scheduler import lazy
    from mot_dinov3.scheduler.plan import SKIP

    orig = lazy.plan_lazy

    def plan(det_xyxy, tracks, frame, cfg, candidates=None, cleared=None, reach=None):
        p = orig(det_xyxy, tracks, frame, cfg, candidates, cleared, reach)
        lost = [i for i, t in enumerate(tracks) if t.lost]
        boxes = np.array([tracks[i].xyxy for i in lost]).reshape(-1, 4)
        claim = (iou_matrix(det_xyxy, boxes) > cfg.overlap_thr).any(axis=1)
        if reach is not None and lost:
            claim |= np.asarray(reach, bool)[:, lost].any(axis=1)
        for i, r in enumerate(p.reasons):
            if r in ("weak_iou", "bootstrap") and not claim[i]:
                p.action[i], p.reasons[i] = SKIP, "deferred"
        return p

    return [("mot_dinov3.scheduler.runner", "plan_lazy", plan)]


def _dynamic_appearance(self, t, e):
    """Deep OC-SORT's dynamic appearance (Maggiolino et al., arXiv 2302.11813): a fresh embedding moves
    the EMA by its detection's confidence, ``a = alpha + (1 - alpha) * (1 - (s - sigma) / (1 - sigma))``
    with ``sigma`` the high-score threshold (a box at sigma leaves the memory as it was)."""
    sigma = self.cfg.track_high_thresh
    trust = min(1.0, max(0.0, (t.conf - sigma) / (1.0 - sigma)))
    a = self.cfg.alpha + (1.0 - self.cfg.alpha) * (1.0 - trust)
    e = np.asarray(e, np.float32)
    if t.embedding is None:
        t.embedding = e.copy()
    else:
        ema = a * t.embedding + (1.0 - a) * e
        t.embedding = (ema / max(float(np.linalg.norm(ema)), 1e-12)).astype(np.float32)
    t.samples += 1
    t.last_embed_frame, t.embedded_now = self.frame, True


def _score_bound(z: float = 2.0, min_scores: int = 20):
    """Score normalisation without the 1000-score warm-up: the percentile read is the 75th's upper
    confidence bound, ``0.75 + z * sqrt(0.75 * 0.25 / n)`` of the n scores seen (binomial standard error
    of the rank), so a few scores rescale only when nearly all of them are low."""

    def score_scale(history, reference):
        n = len(history)
        if reference <= 0 or n < min_scores:
            return 1.0
        q = min(1.0, 0.75 + z * float(np.sqrt(0.1875 / n)))
        return max(min(1.0, float(np.quantile(history, q)) / reference), 1e-6)

    return [("mot_dinov3.scores", "score_scale", score_scale)]


def _strict_births(self, dets, f, image_w):
    """The birth rule before: every box needs new_track_thresh, near a lost track or not."""
    return f.conf[dets] >= self.cfg.new_track_thresh


def _height_births(k: float):
    """Birth rule variant: a lost track blocks a low birth only within ``k`` box heights (of the
    detection) of its last observation, not ``reid_max_dist`` image widths."""

    def may_start(self, dets, f, image_w):
        from mot_dinov3.track import TrackState

        lost = [t for t in self.tracks if t.state == TrackState.LOST]
        if not lost or not len(dets):
            return np.ones(len(dets), bool)
        last = np.array([t.last_obs for t in lost]).reshape(-1, 4)
        box = f.xyxy[dets]
        cl, cb = (last[:, :2] + last[:, 2:]) / 2, (box[:, :2] + box[:, 2:]) / 2
        dist = np.linalg.norm(cl[:, None] - cb[None], axis=2)
        near = dist <= k * (box[:, 3] - box[:, 1])[None]
        return ~near.any(axis=0) | (f.conf[dets] >= self.cfg.new_track_thresh)

    return ("_may_start", may_start)


def _running_scale(tracker, conf, ref: float, q: float, window: int, min_scores: int) -> float:
    """min(1, the q-quantile of the last ``window`` scores / ``ref``), kept on the tracker instance."""
    from collections import deque

    hist = tracker.__dict__.setdefault("_score_hist", deque(maxlen=window))
    hist.extend(np.asarray(conf, float).tolist())
    return min(1.0, float(np.quantile(hist, q)) / ref) if len(hist) >= min_scores else 1.0


# The score-normalisation experiments below predate TrackerConfig.score_reference (the adopted form of
# sn_min1000): combine them with ``score_reference=0`` to measure them against the raw scores again.
def _score_norm(ref: float, q: float = 0.9, window: int = 1000, min_scores: int = 20):
    """Experiment: scores divided by min(1, the q-quantile of the last ``window`` scores / ``ref``)
    before gating and tracking (a detector or scene whose clear objects score low gets the thresholds
    scaled down with it)."""
    from mot_dinov3.api import MultiObjectTracker

    original = MultiObjectTracker.step

    def step(self, xyxy, conf, cls, image, feats=None, include_lost=False):
        s = _running_scale(self, conf, ref, q, window, min_scores)
        return original(
            self, xyxy, np.minimum(np.asarray(conf) / s, 1.0).astype(np.float32), cls, image, feats, include_lost
        )

    return [("mot_dinov3.api", "MultiObjectTracker.step", step)]


def _threshold_norm(ref: float, q: float = 0.75, window: int = 5000):
    """Experiment: like :func:`_score_norm`, but the score thresholds are multiplied by the scale
    instead of the scores divided by it, so the fused cost (1 - IoU x conf) sees the raw scores."""
    from mot_dinov3.api import MultiObjectTracker

    original = MultiObjectTracker.step
    keys = ("track_high_thresh", "track_low_thresh", "new_track_thresh")

    def step(self, xyxy, conf, cls, image, feats=None, include_lost=False):
        s = _running_scale(self, conf, ref, q, window, 20)
        base = self.tracker_config
        self._tracker.cfg = self.gating.cfg = dataclasses.replace(base, **{k: getattr(base, k) * s for k in keys})
        try:
            return original(self, xyxy, conf, cls, image, feats, include_lost)
        finally:
            self._tracker.cfg = self.gating.cfg = base

    return [("mot_dinov3.api", "MultiObjectTracker.step", step)]


def _dlo_boost(coef: float):
    """Experiment (BoostTrack's detection-tracklet confidence boost, Stanojevic and Todorovic, Machine
    Vision and Applications 2024): a box's score becomes max(score, coef x its best IoU with a track's
    last box), so a low-score box that a track supports enters the first association (and may be
    embedded) instead of the IoU-only second one."""
    from mot_dinov3.api import MultiObjectTracker
    from mot_dinov3.matching import iou_matrix

    original = MultiObjectTracker.step

    def step(self, xyxy, conf, cls, image, feats=None, include_lost=False):
        boxes = np.array([t.xyxy for t in self.tracks], np.float32).reshape(-1, 4)
        if len(boxes) and len(xyxy):
            conf = np.maximum(conf, coef * iou_matrix(np.asarray(xyxy, np.float32), boxes).max(1)).astype(np.float32)
        return original(self, xyxy, conf, cls, image, feats, include_lost)

    return [("mot_dinov3.api", "MultiObjectTracker.step", step)]


def _jitter(seed: int, sd: float = 0.01):
    """Noise floor: every detection score times (1 + N(0, sd)), the same draw for a given (seed, frame),
    about the difference between two runtimes of one detector. Rows under different seeds show how far
    a replay moves for reasons no rule controls."""
    from mot_dinov3.replay import ReplayDetector

    original = ReplayDetector.__call__

    def call(self, image):
        d = original(self, image)
        rng = np.random.default_rng((seed, self._next))
        conf = np.clip(d.conf * (1.0 + sd * rng.standard_normal(len(d.conf))), 0.0, 1.0).astype(np.float32)
        return dataclasses.replace(d, conf=conf)

    return [("mot_dinov3.replay", "ReplayDetector.__call__", call)]


def _gmc(static_px: float, static_frames: int = 10) -> list:
    """Camera motion whose static threshold is ``static_px`` pixels of the 320 px estimation frame (the
    release's is 1 px of the full frame), with static-camera mode after ``static_frames`` (0: never)."""
    from mot_dinov3 import gmc

    full_res = gmc.is_static

    def is_static(warp, size_wh, _px):  # a corner's motion in the estimation frame is scale x its own
        return full_res(warp, size_wh, static_px / min(1.0, 320 / size_wh[0]))

    defaults = ("sparseOptFlow", 320, 1.0, static_frames, 5)
    return [
        ("mot_dinov3.gmc", "is_static", is_static),
        ("mot_dinov3.gmc", "CameraMotion.__init__.__defaults__", defaults),
    ]


PATCHES: dict[str, object] = {
    **{f"jitter{i}": _jitter(i) for i in range(1, 6)},
    "score_norm0.9": _score_norm(0.9),
    "score_norm0.85": _score_norm(0.85),
    "score_norm0.9q75": _score_norm(0.8, 0.75),
    "snq75w5k": _score_norm(0.8, 0.75, 5000),
    "snq75all": _score_norm(0.8, 0.75, 10**7),
    "snq75r75w5k": _score_norm(0.75, 0.75, 5000),
    "tn": _threshold_norm(0.8),
    "sn_min200": _score_norm(0.8, 0.75, 5000, 200),
    "sn_min1000": _score_norm(0.8, 0.75, 5000, 1000),
    "strict_births": ("_may_start", _strict_births),
    "second_iou0.5": [("mot_dinov3.tracker", "SECOND_MATCH_THRESH", 0.5)],  # ByteTrack's second stage
    **{f"dlo_boost{c:g}": _dlo_boost(c) for c in (0.5, 0.65)},
    **{f"height_births{k:g}": _height_births(k) for k in (0.5, 1.0, 2.0, 3.0)},
    **{f"gmc_static{px:g}": _gmc(px) for px in (0.3, 0.5, 0.8)},
    "gmc_no_static_mode": _gmc(0.5, 0),
    "no_look_catch_up": ("update_appearance", _no_look_catch_up),  # every buffered look one EMA step
    "deferred_births": _deferred_births(),
    "dynamic_appearance": ("_update_embedding", _dynamic_appearance),
    "score_bound2": _score_bound(2.0),
    "score_bound3": _score_bound(3.0),
}

# name: (tracker overrides, scheduler overrides, Tracker method replaced): each switches one rule off
ABLATIONS: dict[str, tuple[dict, dict, tuple[str, object] | None]] = {
    "low-score stage (ByteTrack)": ({"track_low_thresh": 1.0}, {}, None),
    "births away from lost tracks": ({}, {}, ("_may_start", _strict_births)),
    "appearance veto": ({}, {}, ("_appearance_veto", _no_veto)),
    "re-ID (both tiers)": ({"reid_thresh": 0.0, "reid_motion_thresh": 0.0}, {}, None),
    "re-ID Kalman tier": ({"reid_motion_thresh": 0.0}, {}, None),
    "GMC": ({"gmc_method": "none"}, {}, None),
    "min_hits": ({"min_hits": 1}, {}, None),
    "looks weighed by their frame gap": ({}, {}, ("update_appearance", _no_look_catch_up)),
    "near_lost": ({}, {"near_lost_frames": 0}, None),
    "near_lost for new tracks": ({}, {"near_lost_new_frames": 0}, None),
    "near_lost clearing": ({}, {"near_lost_clear_frames": 0}, None),
    "buffered looks": ({}, {"lazy_samples": 0}, None),
}


class CachedEmbedder:
    """A :class:`~mot_dinov3.features.base.CropEmbedder` that looks embeddings up instead of computing them.

    ``vectors[f]`` holds the (N_f, D) embeddings of frame ``f``'s detections (0-based, in detection order);
    the frame is the one the :class:`~mot_dinov3.replay.ReplayDetector` served for the image. ``crop`` returns the vectors
    themselves as the "crops", so lazy memory's buffered looks embed to exactly what they were.
    """

    name = "onnx"
    uses_detector_features = False
    cost_free = False

    def __init__(self, frames: list[Detections], vectors: list[np.ndarray], replay: ReplayDetector):
        self.frames, self.vectors, self.replay = frames, vectors, replay
        self.dim = int(next((v.shape[1] for v in vectors if len(v)), 512))

    def _rows(self, image: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        f = self.replay.frame_index(image)
        index = {b.tobytes(): i for i, b in enumerate(np.ascontiguousarray(self.frames[f].xyxy, np.float32))}
        rows = [index[b.tobytes()] for b in np.ascontiguousarray(xyxy, np.float32)]
        return self.vectors[f][rows]

    def embed(self, image, xyxy, det_feats=None):
        return self._rows(image, xyxy)

    def crop(self, image, xyxy):
        return list(self._rows(image, xyxy))

    def embed_crops(self, crops):
        return np.stack(crops) if crops else np.zeros((0, self.dim), np.float32)

    def synchronize(self) -> None:
        pass


# -- building the conditions ----------------------------------------------------------------------


def _write_seqinfo(dst: Path, info: dict, length: int, fps: float, wh: tuple[int, int]) -> None:
    ini = configparser.ConfigParser()
    ini.optionxform = str
    ini["Sequence"] = {
        "name": dst.name,
        "imDir": "img1",
        "frameRate": f"{fps:g}",
        "seqLength": str(length),
        "imWidth": str(wh[0]),
        "imHeight": str(wh[1]),
        "imExt": info.get("imext", ".jpg"),
    }
    with open(dst / "seqinfo.ini", "w") as f:
        ini.write(f)


def _frames(seq: Path) -> list[Path]:
    info = read_seqinfo(seq)
    return sorted((seq / info.get("imdir", "img1")).glob("*" + info.get("imext", ".jpg")))


def _new_sequence(dst: Path) -> bool:
    """False when the derived sequence ``dst`` is complete already (its seqinfo.ini is written last);
    else make its ``img1/`` and ``gt/`` folders and return True."""
    if (dst / "seqinfo.ini").is_file():
        return False
    (dst / "img1").mkdir(parents=True, exist_ok=True)
    (dst / "gt").mkdir(exist_ok=True)
    return True


def _gt_rows(seq: Path) -> list[list[str]]:
    return [line.split(",") for line in (seq / "gt" / "gt.txt").read_text().splitlines() if line.strip()]


def mosaic_sequence(src: Path, n: int) -> Path:
    """A long crowd of small people from one sequence (made once under ``GEN_DIR/_mosaic<n>``).

    Each frame is an ``n`` x ``n`` mosaic of tiles 1/n the source's size, at the source's resolution.
    Column ``c`` shows the ``c``-th of ``n`` equal time segments of the sequence; row 0 plays it
    forward, row 1 forward and mirrored (horizontal flip), row 2 backward. ``n**2`` times the people at
    1/n their size, so lower detector scores; where a person appears twice at once, the copies are
    at least a tile height apart. Identities of tile k are offset by ``k * 100000`` in the gt;
    gt boxes are clipped to their tile.
    """
    if n not in (2, 3):
        raise ValueError(f"mosaic n={n}: 2 or 3")
    dst = GEN_DIR / f"_mosaic{n}" / src.name
    if not _new_sequence(dst):
        return dst
    files = _frames(src)
    seg = len(files) // n
    h, w = cv2.imread(str(files[0])).shape[:2]
    th, tw = h // n, w // n

    def source_frame(i: int, row: int, col: int) -> int:  # 0-based source frame of tile (row, col)
        return col * seg + (seg - 1 - i if row == 2 else i)

    for i in range(seg):
        canvas = np.zeros((n * th, n * tw, 3), np.uint8)
        tiles: dict[int, np.ndarray] = {}  # rows 0 and 1 show the same source frame: read it once
        for row in range(n):
            for col in range(n):
                k = source_frame(i, row, col)
                if k not in tiles:
                    tiles[k] = cv2.resize(cv2.imread(str(files[k])), (tw, th), interpolation=cv2.INTER_AREA)
                im = tiles[k]
                canvas[row * th : (row + 1) * th, col * tw : (col + 1) * tw] = im[:, ::-1] if row == 1 else im
        cv2.imwrite(str(dst / "img1" / f"{i + 1:06d}.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 95])
    by_frame: dict[int, list[list[str]]] = {}
    for c in _gt_rows(src):
        by_frame.setdefault(int(c[0]) - 1, []).append(c)
    out = []
    for i in range(seg):
        for row in range(n):
            for col in range(n):
                for c in by_frame.get(source_frame(i, row, col), []):
                    x, y, bw, bh = (float(v) for v in c[2:6])
                    x1, y1 = min(x + bw, w), min(y + bh, h)  # clipped: no box reaches into a neighbour
                    x, y = max(x, 0.0), max(y, 0.0)
                    if x1 - x <= 1 or y1 - y <= 1:
                        continue
                    if row == 1:
                        x, x1 = w - x1, w - x
                    r = list(c)
                    r[0], r[1] = str(i + 1), str(int(c[1]) + (row * n + col) * 100000)
                    r[2:6] = [
                        f"{x / n + col * tw:.2f}",
                        f"{y / n + row * th:.2f}",
                        f"{(x1 - x) / n:.2f}",
                        f"{(y1 - y) / n:.2f}",
                    ]
                    out.append(",".join(r))
    (dst / "gt" / "gt.txt").write_text("\n".join(out) + "\n")
    info = read_seqinfo(src)
    info["imext"] = ".jpg"
    _write_seqinfo(dst, info, seg, float(info["framerate"]), (n * tw, n * th))
    return dst


def view_sequence(data: Path, rel: str, view: View) -> Path:
    """The original sequence, or its frames and gt downscaled by ``view.scale`` or made a crowd
    mosaic (made once)."""
    src = data / rel
    if view.mosaic:
        return mosaic_sequence(src, view.mosaic)
    if view.scale == 1.0:
        return src
    dst = GEN_DIR / f"_x{view.scale:g}" / src.name
    if not _new_sequence(dst):
        return dst
    files = _frames(src)
    for p in files:
        im = cv2.imread(str(p))
        small = cv2.resize(im, None, fx=view.scale, fy=view.scale, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(dst / "img1" / p.name), small, [cv2.IMWRITE_JPEG_QUALITY, 95])
    rows = []
    for line in (src / "gt" / "gt.txt").read_text().splitlines():
        c = line.split(",")
        c[2:6] = [f"{float(v) * view.scale:.2f}" for v in c[2:6]]
        rows.append(",".join(c))
    (dst / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    info = read_seqinfo(src)
    _write_seqinfo(dst, info, len(files), float(info["framerate"]), (small.shape[1], small.shape[0]))
    return dst


def _gt_counts(seq: Path, n: int) -> np.ndarray:
    counts = np.zeros(n + 1, int)
    for line in (seq / "gt" / "gt.txt").read_text().splitlines():
        c = line.split(",")
        keep = len(c) < 9 or (c[6] == "1" and c[7] == "1")  # MOT17: pedestrians that count
        if keep and 1 <= int(c[0]) <= n:
            counts[int(c[0])] += 1
    return counts[1:]


def kept_frames(cond: Condition, seq: Path, n: int) -> np.ndarray:
    """0-based indices of the original frames a condition keeps."""
    if cond.dense_window:
        w = min(cond.dense_window, n)
        sums = np.convolve(_gt_counts(seq, n), np.ones(w, int), "valid")
        start = int(np.argmax(sums))
        return np.arange(start, start + w)
    return np.arange(0, n, cond.step)


def condition_sequence(cond: Condition, src: Path, keep: np.ndarray) -> Path:
    """A MOTChallenge folder holding only the kept frames (renumbered) and their gt; ``src`` itself
    when every frame is kept."""
    files = _frames(src)
    if len(keep) == len(files):
        return src
    dst = GEN_DIR / cond.name.replace("/", "_").replace("*", "x").replace(" ", "_") / src.name
    if not _new_sequence(dst):
        return dst
    new = {int(k) + 1: i + 1 for i, k in enumerate(keep)}  # old 1-based frame -> new
    for old, i in new.items():
        link = dst / "img1" / f"{i:06d}{files[old - 1].suffix}"
        if not link.exists():
            link.symlink_to(files[old - 1].resolve())
    rows = []
    for line in (src / "gt" / "gt.txt").read_text().splitlines():
        c = line.split(",")
        if int(c[0]) in new:
            c[0] = str(new[int(c[0])])
            rows.append(",".join(c))
    (dst / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    info = read_seqinfo(src)
    im = cv2.imread(str(files[0]))
    _write_seqinfo(dst, info, len(keep), float(info["framerate"]) / cond.step, (im.shape[1], im.shape[0]))
    return dst


def view_embeddings(seq: Path, det: DetectorConfig, dets: SequenceDetections, reid: str, tag: str) -> list[np.ndarray]:
    """Every detection's embedding, computed once with the ``onnx`` backend and cached beside the detections."""
    path = cache_path(seq, det, tag).with_suffix(f".{Path(reid).stem}.npz")
    counts = [len(d) for d in dets.frames]
    if path.is_file():
        z = np.load(path)
        return np.split(z["vectors"], np.cumsum(counts)[:-1])
    embedder = create_embedder(EmbedderConfig(name="onnx", model=reid))
    from mot_dinov3.io import FrameSource

    out = []
    source = FrameSource(seq)
    for frame, d in zip(source, dets.frames):
        out.append(embedder.embed(frame.image, d.xyxy) if len(d) else np.zeros((0, embedder.dim), np.float32))
    source.close()
    np.savez(path, vectors=np.concatenate(out).astype(np.float32))
    return out


@dataclass
class Prepared:
    """One condition's sequences with their detections and embeddings."""

    seqs: list[Path]
    dets: dict[Path, SequenceDetections]
    vectors: dict[Path, list[np.ndarray]]


def prepare(cond: Condition, data: Path, det_dir: Path, reid: str) -> Prepared:
    det = DetectorConfig(model=str(det_dir / f"{cond.view.weights}.pt"), conf=0.1, imgsz=cond.view.imgsz, classes=[0])
    out = Prepared([], {}, {})
    for rel in cond.seqs:
        src = view_sequence(data, rel, cond.view)
        tag = (
            f"x{cond.view.scale:g}"
            if cond.view.scale != 1.0
            else f"mosaic{cond.view.mosaic}"
            if cond.view.mosaic
            else ""
        )
        full = load_or_detect(src, det, tag=tag)
        vec = view_embeddings(src, det, full, reid, tag)
        keep = kept_frames(cond, src, len(full.frames))
        seq = condition_sequence(cond, src, keep)
        frames, vectors = [], []
        for k in keep:
            d, v = full.frames[k], vec[k]
            if cond.conf_scale != 1.0:
                conf = d.conf * cond.conf_scale
                m = conf >= det.conf
                d, v = Detections(d.xyxy[m], conf[m].astype(np.float32), d.cls[m], d.feats[m]), v[m]
            frames.append(d)
            vectors.append(v)
        out.seqs.append(seq)
        out.dets[seq] = SequenceDetections(frames, full.detect_ms[keep], full.read_ms[keep])
        out.vectors[seq] = vectors
    return out


# -- running -------------------------------------------------------------------------------------


def scores(seqs: list[Path], res_dir: Path) -> dict:
    gt_root = Path(os.path.commonpath([str(s.parent) for s in seqs]))
    with contextlib.redirect_stdout(io.StringIO()):
        res = evaluate(gt_root, res_dir, [s.name for s in seqs])
    return {m: res[COMBINED][m] for m in METRICS}


def run_ours(prep: Prepared, tracker: TrackerConfig, sched: SchedulerConfig | None, res_dir: Path) -> dict:
    """Our pipeline on the condition's cached detections and embeddings; ``sched`` None: no ReID."""
    computed = frames = 0
    track_ms = 0.0
    for seq in prep.seqs:
        replay = ReplayDetector(prep.dets[seq])
        embedder = None if sched is None else CachedEmbedder(prep.dets[seq].frames, prep.vectors[seq], replay)
        cfg = RunConfig(
            source=str(seq),
            tracker=tracker,
            scheduler=sched or SchedulerConfig(),
            embedder=EmbedderConfig(name="none") if embedder is None else EmbedderConfig(name="onnx"),
            output=OutputConfig(video=None, mot_txt=str(res_dir / f"{seq.name}.txt"), progress=False),
        )
        s = pipeline.run(cfg, embedder=embedder, detector=replay)
        if s.interrupted:
            raise KeyboardInterrupt
        computed += s.embeddings_computed
        frames += s.frames
        track_ms += s.stage_mean_ms["track"] * s.frames
    return {"embeddings_computed": computed, "frames": frames, "track_ms_per_frame": track_ms / max(frames, 1)}


def parse_sets(items: list[str]) -> tuple[dict, dict]:
    """``key=value`` overrides split into tracker and scheduler fields (YAML-parsed values)."""
    import yaml

    tk = {f.name for f in dataclasses.fields(TrackerConfig)}
    sk = {f.name for f in dataclasses.fields(SchedulerConfig)}
    t, s = {}, {}
    for item in items:
        key, _, value = item.partition("=")
        if key in tk:
            t[key] = yaml.safe_load(value)
        elif key in sk:
            s[key] = yaml.safe_load(value)
        else:
            raise SystemExit(f"--set {item}: unknown key {key!r}")
    return t, s


@contextlib.contextmanager
def patched(patch):
    """Apply a patch for the duration: ``None``; a :data:`PATCHES` name (names joined by ``+``; by
    name because closures do not pickle); a ``(Tracker method name, function)`` pair; or a list of
    ``(module, attribute, value)`` triples (a module constant, or ``Class.method``)."""
    if patch is None:
        yield
        return
    if isinstance(patch, str):
        items = [t for name in patch.split("+") for t in _as_triples(PATCHES[name])]
    else:
        items = _as_triples(patch)
    undo = []
    try:
        for module, attr, value in items:
            owner = importlib.import_module(module)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            undo.append((owner, name, getattr(owner, name)))
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in reversed(undo):
            setattr(owner, name, value)


def _as_triples(patch) -> list:
    if isinstance(patch, tuple) and len(patch) == 2 and isinstance(patch[0], str):
        return [("mot_dinov3.tracker", f"Tracker.{patch[0]}", patch[1])]
    return list(patch)


def _job(args) -> tuple[str, str, dict]:
    """One (row, condition) replay in a worker process."""
    row, cond, kind, spec, data, det_dir, reid = args
    prep = prepare(cond, data, det_dir, reid)
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "res"
        res.mkdir()
        if kind == "peer":
            ms = [
                run_ultralytics_tracker(spec, s, prep.dets[s], res / f"{s.name}.txt")["track_ms_per_frame"]
                for s in prep.seqs
            ]
            out = {"track_ms_per_frame": float(np.mean(ms))}
        else:
            t_over, s_over, mode, patch = spec
            tracker = replace(TrackerConfig(), **t_over)
            sched = None if mode == "none" else replace(SchedulerConfig(), embed_all=mode == "all", **s_over)
            with patched(patch):  # workers are reused: every patch is undone
                out = run_ours(prep, tracker, sched, res)
        out.update(scores(prep.seqs, res))
    return row, cond.name, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data", help="folder holding MOT17/, MOT15/, MOT17-mini/")
    ap.add_argument("--det-dir", default="../shared/weights", help="folder holding the YOLO .pt weights")
    ap.add_argument("--reid", default="../shared/weights/osnet_x0_25_msmt17.onnx", help="ONNX ReID model")
    ap.add_argument("--conditions", nargs="*", help="run only these conditions (default: all)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="our tracker / scheduler overrides")
    ap.add_argument(
        "--rows", nargs="*", default=["default", "no ReID", "embed-all"], help="our rows: default, no ReID, embed-all"
    )
    ap.add_argument("--ablate", nargs="*", help="also run these ablations (no names: all of ABLATIONS)")
    ap.add_argument(
        "--variant",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME [KEY=VALUE ...]",
        help="also run our default with these overrides (on top of --set), as row NAME; repeatable",
    )
    ap.add_argument("--no-peers", action="store_true", help="skip the Ultralytics trackers")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=str(RESULTS_DIR / "generalise.json"))
    a = ap.parse_args()

    data, det_dir = Path(a.data), Path(a.det_dir)
    conds = [c for c in CONDITIONS if not a.conditions or c.name in a.conditions]
    t_over, s_over = parse_sets(a.set)
    modes = {"default": "lazy", "no ReID": "none", "embed-all": "all"}
    ours = {f"ours, {r}": (t_over, s_over, modes[r], None) for r in a.rows}
    if a.ablate is not None:
        for name in a.ablate or ABLATIONS:
            t, s, patch = ABLATIONS[name]
            ours[f"ours, -{name}"] = ({**t_over, **t}, {**s_over, **s}, "lazy", patch)
    for name, *items in a.variant:
        patch = next((i.split("=", 1)[1] for i in items if i.startswith("patch=")), None)  # PATCHES names
        if patch is not None and not all(p in PATCHES for p in patch.split("+")):
            raise SystemExit(f"--variant {name}: unknown patch {patch!r}; one of {', '.join(PATCHES)}")
        t, s = parse_sets([i for i in items if not i.startswith("patch=")])
        ours[f"ours, {name}"] = ({**t_over, **t}, {**s_over, **s}, "lazy", patch)
    for c in conds:  # detections and embeddings once, in this process
        prepare(c, data, det_dir, a.reid)
    peer_cache = GEN_DIR / "peers.json"
    peers = json.loads(peer_cache.read_text()) if peer_cache.is_file() else {}
    jobs = [(row, c, "ours", spec, data, det_dir, a.reid) for row, spec in ours.items() for c in conds]
    if not a.no_peers:
        jobs += [
            (f"Ultralytics {k}", c, "peer", k, data, det_dir, a.reid)
            for k in PEERS
            for c in conds
            if f"{k}|{c.name}" not in peers
        ]
    rows: dict[str, dict[str, dict]] = {}
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        for row, cname, out in pool.map(_job, jobs):
            rows.setdefault(row, {})[cname] = out
            if row.startswith("Ultralytics"):
                peers[f"{row.split()[1]}|{cname}"] = out
            print(
                f"{row} / {cname}: HOTA {100 * out['HOTA']:.2f} IDF1 {100 * out['IDF1']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    if not a.no_peers:
        write_json(peer_cache, peers)
        for k in PEERS:
            rows[f"Ultralytics {k}"] = {c.name: peers[f"{k}|{c.name}"] for c in conds}
    report = tables(rows, [c.name for c in conds])
    print(report)
    write_json(
        Path(a.json),
        {
            "conditions": [dataclasses.asdict(c) for c in conds],
            "set": a.set,
            "machine": machine_info(),
            "rows": rows,
            "summary": summary(rows, [c.name for c in conds]),
        },
    )
    print(f"\nwrote {a.json}")


def summary(rows: dict, conds: list[str]) -> dict:
    """Per our row: HOTA and IDF1 minus the best peer per condition, mean and worst; embeddings vs embed-all."""
    peers = [r for r in rows if r.startswith("Ultralytics")]
    out = {}
    for name, per in rows.items():
        if name in peers:
            continue
        s = {}
        for m in ("HOTA", "IDF1"):
            if peers:
                d = [per[c][m] - max(rows[p][c][m] for p in peers) for c in conds]
                s[f"{m} - best peer mean"], s[f"{m} - best peer worst"] = float(np.mean(d)), float(np.min(d))
                s[f"{m} worst condition"] = conds[int(np.argmin(d))]
            s[f"{m} mean"] = float(np.mean([per[c][m] for c in conds]))
        base = rows.get("ours, embed-all")
        if base and "embeddings_computed" in per[conds[0]]:
            s["computed vs embed-all"] = sum(per[c]["embeddings_computed"] for c in conds) / max(
                sum(base[c]["embeddings_computed"] for c in conds), 1
            )
        s["track ms/frame"] = float(np.mean([per[c].get("track_ms_per_frame", 0.0) for c in conds]))
        out[name] = s
    return out


def tables(rows: dict, conds: list[str]) -> str:
    lines = ["| config | " + " | ".join(conds) + " |", "|---" + "|---:" * len(conds) + "|"]
    for name, per in rows.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * per[c]['HOTA']:.1f} / {100 * per[c]['IDF1']:.1f}" for c in conds)
            + " |"
        )
    lines += [
        "",
        "HOTA / IDF1 per condition (above); DetA / AssA / IDSW:",
        "",
        "| config | " + " | ".join(conds) + " |",
        "|---" + "|---:" * len(conds) + "|",
    ]
    for name, per in rows.items():
        lines.append(
            f"| {name} | "
            + " | ".join(f"{100 * per[c]['DetA']:.1f} / {100 * per[c]['AssA']:.1f} / {per[c]['IDSW']}" for c in conds)
            + " |"
        )
    summ = summary(rows, conds)
    if summ:
        keys = list(next(iter(summ.values())))
        lines += ["", "| config | " + " | ".join(keys) + " |", "|---" + "|---:" * len(keys) + "|"]
        for name, s in summ.items():
            cells = [
                (f"{100 * v:+.2f}" if "peer" in k else f"{100 * v:.2f}")
                if isinstance(v, float) and "ms" not in k and "vs" not in k
                else (f"{100 * v:.1f}%" if "vs" in k else (f"{v:.2f}" if isinstance(v, float) else str(v)))
                for k, v in s.items()
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
