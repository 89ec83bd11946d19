"""The ``track`` flags and the :class:`~mot_dinov3.config.RunConfig` they make, for the CLI and for
:func:`mot_dinov3.track` (which takes the same options as keywords)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from mot_dinov3 import __version__
from mot_dinov3.config import (
    DEFAULT_DINO_MODEL,
    DET_PRECISIONS,
    DET_RUNTIMES,
    EMBED_RUNTIMES,
    DetectorConfig,
    EmbedderConfig,
    OutputConfig,
    RunConfig,
    SchedulerConfig,
    TrackerConfig,
    check_device,
    check_range,
)
from mot_dinov3.errors import UserError

log = logging.getLogger(__name__)


def parse_classes(text: str | None) -> list[int] | None:
    """``"0,2"`` -> ``[0, 2]``; empty or ``None`` -> ``None`` (all classes).

    Raises:
        UserError: not a comma-separated list of non-negative integers.
    """
    if text is None or not text.strip():
        return None
    try:
        ids = [int(p) for p in text.replace(" ", "").split(",") if p != ""]
    except ValueError:
        ids = [-1]
    if not ids or any(i < 0 for i in ids):
        raise UserError(f"classes={text!r}: expected comma-separated class ids, e.g. classes='0,2'")
    return ids


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: ...)`` only where it says something: not for unset (``None``) or off
    (``False``) flags, nor where the help text already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def track_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mot-dinov3",
        description="Track objects in a video, a MOTChallenge sequence or an image folder: YOLO detection, "
        "scheduled appearance embeddings, IoU + cosine tracking. Subcommands: 'mot-dinov3 eval', 'mot-dinov3 models'.",
        formatter_class=_DefaultsHelpFormatter,
    )
    g = p.add_argument_group("input / output")
    g.add_argument("--source", required=True, help="video file, MOTChallenge sequence folder or image folder")
    g.add_argument(
        "--output", default="outputs/tracked.mp4", help="annotated video (.mp4, .m4v, .mov, .mkv or .avi); '' for none"
    )
    g.add_argument("--save-mot", metavar="PATH", help="write MOTChallenge txt results")
    g.add_argument("--save-json", metavar="PATH", help="write the run summary as JSON")
    g.add_argument(
        "--codec",
        choices=OutputConfig.CODECS,
        default="auto",
        help="video codec; auto: H.264 (plays in browsers; needs PyAV) in .mp4/.m4v/.mov/.mkv, else mp4v, "
        "and MJPG in .avi",
    )
    g.add_argument(
        "--report",
        metavar="PATH.html",
        help="write a self-contained HTML report: the video, per-frame latency by stage, embeddings, tracks",
    )
    g.add_argument("--fps", type=float, help="output video fps (default: the source fps)")
    g.add_argument("--max-frames", type=int, help="stop after this many frames")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    g = p.add_argument_group("detector")
    g.add_argument(
        "--det",
        default="yolov8n.pt",
        metavar="MODEL_OR_PATH",
        help="Ultralytics weights or exported model folder; also looked up in $MOT_DINOV3_WEIGHTS",
    )
    g.add_argument(
        "--conf",
        type=float,
        default=None,
        help="detection confidence threshold (default: the tracker's track_low_thresh, 0.1, so the "
        "second, low-score association gets its boxes)",
    )
    g.add_argument("--imgsz", type=int, default=960, help="detector input size, pixels")
    g.add_argument("--classes", help='keep only these class ids, e.g. "0" (person) or "0,2"')
    g.add_argument("--cpu", action="store_true", help="force CPU for every model")
    g.add_argument("--device", help="torch device, e.g. cuda:0 (default: CUDA if available)")
    g.add_argument(
        "--det-runtime",
        choices=DET_RUNTIMES,
        default="auto",
        help="run a .pt detector in PyTorch or export it once (cached) to OpenVINO, ONNX Runtime or TensorRT; "
        "auto: OpenVINO on a CPU when installed, else PyTorch (default: auto)",
    )
    g.add_argument(
        "--det-precision",
        choices=DET_PRECISIONS,
        default="auto",
        help="detector precision; auto: fp16 on CUDA and on OpenVINO (computed in bf16 on AMX / AVX512-BF16 CPUs, "
        "fp32 elsewhere), bf16 autocast for PyTorch on AMX CPUs, else fp32; fp32: PyTorch's FP32 boxes exactly; "
        "int8: OpenVINO, calibrated on frames of --det-calib (default: auto)",
    )
    g.add_argument(
        "--det-calib",
        metavar="PATH",
        help="video or image folder whose frames calibrate --det-precision int8 (default: the source)",
    )
    g = p.add_argument_group("embeddings")
    g.add_argument(
        "--embedder",
        help="backend: dino, clip, onnx, osnet (torchreid .pt / .pth), yolo, ensemble (parts in --embed-model), "
        "your own package.module:Class, or none (motion only, no ReID) (default: dino, or the model "
        "chosen with 'mot-dinov3 models use')",
    )
    g.add_argument(
        "--embed-model",
        metavar="ID_OR_PATH",
        help="model for the backend, or a catalogue name ('mot-dinov3 models list'; sets --embedder too) "
        "(dino: overrides --dinov3; clip: default openai/clip-vit-base-patch32; ensemble: the parts as "
        "name[:model][@weight], e.g. 'onnx:osnet.onnx@0.7,yolo')",
    )
    g.add_argument("--dinov3", default=DEFAULT_DINO_MODEL, metavar="MODEL_ID", help="dino backend model id or folder")
    g.add_argument(
        "--fallback-open",
        action="store_true",
        help="if the DINOv3 model is gated, unsupported or unreachable, use facebook/dinov2-base",
    )
    g.add_argument("--pool", choices=("cls", "mean"), default="cls", help="dino: CLS token or mean of patch tokens")
    g.add_argument(
        "--crop-pad",
        type=float,
        help="padding fraction around each box for crops (default: 0 for onnx ReID models, 0.12 for dino and clip)",
    )
    g.add_argument(
        "--crop-square",
        action=argparse.BooleanOptionalAction,
        help="expand crops to the model input's aspect ratio (square for ViTs) instead of stretching "
        "the box (default: off for onnx ReID models, on for dino and clip)",
    )
    g.add_argument(
        "--embed-runtime",
        choices=EMBED_RUNTIMES,
        default="auto",
        help="what runs an ONNX ReID network (onnx, and osnet exported in memory); torch: osnet in PyTorch; "
        "auto: onnxruntime on CUDA (with its CUDA provider), else OpenVINO when installed (default: auto)",
    )
    g = p.add_argument_group("embedding scheduler")
    unset = argparse.SUPPRESS  # absent from the namespace unless given: build_run_config tells the rules apart
    g.add_argument(
        "--embed-lazy",
        action=argparse.BooleanOptionalAction,
        default=unset,
        help="lazy memory, the default with dino, clip and onnx: embed only new, contested and "
        "near-lost boxes, and a track's buffered clean looks when its memory is read (about a "
        "fifth of --embed-all's embeddings). --no-embed-lazy selects the refresh rules below",
    )
    g.add_argument(
        "--embed-refresh",
        type=int,
        default=unset,
        help=f"refresh rules: refresh a stable track's embedding every N frames "
        f"(default {SchedulerConfig.refresh_every})",
    )
    g.add_argument(
        "--embed-iou-gate",
        type=float,
        default=unset,
        help=f"refresh rules: IoU with a track >= gate: eligible for reuse (default {SchedulerConfig.iou_gate})",
    )
    g.add_argument(
        "--embed-budget-ms",
        type=float,
        default=unset,
        help="refresh rules: per-frame ms for refresh work (default 0 = unlimited)",
    )
    g.add_argument(
        "--embed-overlap-thr",
        type=float,
        default=SchedulerConfig.overlap_thr,
        help="IoU with another detection, a second track or a lost track above this: critical",
    )
    g.add_argument("--embed-all", action="store_true", help="no scheduling: embed every detection every frame")
    g = p.add_argument_group("tracker")
    g.add_argument("--tracker-config", metavar="YAML", help="tracker thresholds (keys as in configs/default.yaml)")
    g.add_argument("--no-hungarian", action="store_true", help="greedy assignment instead of Hungarian")
    g = p.add_argument_group("drawing")
    g.add_argument("--draw-lost", action="store_true", help="also draw lost tracks (grey, at the prediction)")
    g.add_argument("--line-thickness", type=int, help="box line thickness, px (default: from image size)")
    g.add_argument("--font-scale", type=float, help="label font scale (default: from image size)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--version", action="version", version=f"mot-dinov3 {__version__}")
    return p


def build_run_config(a: argparse.Namespace) -> RunConfig:
    """Turn parsed ``track`` flags into a :class:`RunConfig` (validating cheap things first)."""
    from mot_dinov3.features.factory import check_name, embedder_traits
    from mot_dinov3.models.catalogue import choose_embedder

    dino_given = a.dinov3 != DEFAULT_DINO_MODEL or a.fallback_open
    embedder, embed_model = choose_embedder(a.embedder, a.embed_model, dino_given)  # and the `models use` default
    a = argparse.Namespace(**{**vars(a), "embedder": embedder, "embed_model": embed_model})
    check_name(a.embedder)
    crops_later = embedder_traits(a.embedder, a.embed_model)[0]  # an ensemble's from its parts
    lazy = getattr(a, "embed_lazy", None)
    refresh_options = {  # option -> (SchedulerConfig field, value)
        "embed_refresh": ("refresh_every", getattr(a, "embed_refresh", None)),
        "embed_iou_gate": ("iou_gate", getattr(a, "embed_iou_gate", None)),
        "embed_budget_ms": ("budget_ms", getattr(a, "embed_budget_ms", None)),
    }
    given = {name: kv for name, kv in refresh_options.items() if kv[1] is not None}
    said = [f"{name}={value!r}" for name, (_, value) in given.items()]  # as the messages name them
    refresh: dict[str, Any] = dict(given.values())  # SchedulerConfig fields the user set
    device = "cpu" if a.cpu else a.device
    check_device("device", device, here=True)  # the configs check only the spelling
    every = refresh.get("refresh_every", 1)
    if isinstance(every, int) and every < 1:
        raise UserError(f"embed_refresh={every!r}: must be >= 1 frame")
    for option, (fname, value) in {**given, "embed_overlap_thr": ("overlap_thr", a.embed_overlap_thr)}.items():
        check_range(option, value, SchedulerConfig.RANGES[fname])  # named as the option, not the field
    if lazy and a.embed_all:
        raise UserError("embed_lazy=True with embed_all=True: choose one (embed_all=True computes every embedding)")
    if given and not a.embed_all and lazy:
        raise UserError(
            f"{said[0]} sets the refresh rules, but embed_lazy=True (no refresh) asks for lazy memory: drop one of them"
        )
    if given and not a.embed_all and lazy is None and crops_later:
        lazy = False  # the refresh flags select the refresh rules
        log.warning("note: %s selects the refresh rules (lazy memory off)", " ".join(said))
    tracker = TrackerConfig.from_yaml(a.tracker_config) if a.tracker_config else TrackerConfig()
    if a.no_hungarian:
        tracker.use_hungarian = False
    return RunConfig(
        source=a.source,
        detector=DetectorConfig(
            model=a.det,
            conf=tracker.track_low_thresh if a.conf is None else a.conf,
            imgsz=a.imgsz,
            classes=parse_classes(a.classes),
            device=device,
            runtime=a.det_runtime,
            precision=a.det_precision,
            calib=a.det_calib or (a.source if isinstance(a.source, str) else None),
        ),
        embedder=EmbedderConfig(
            name=a.embedder,
            model=a.embed_model or (a.dinov3 if a.embedder == "dino" else None),
            fallback_open=a.fallback_open,
            pooling=a.pool,
            crop_pad=a.crop_pad,
            crop_square=a.crop_square,
            device=device,
            runtime=a.embed_runtime,
        ),
        scheduler=SchedulerConfig(overlap_thr=a.embed_overlap_thr, embed_all=a.embed_all, lazy=lazy, **refresh),
        tracker=tracker,
        output=OutputConfig(
            video=a.output or None,
            mot_txt=a.save_mot,
            json=a.save_json,
            fps=a.fps,
            draw_lost=a.draw_lost,
            line_thickness=a.line_thickness,
            font_scale=a.font_scale,
            progress=not a.no_progress,
            codec=a.codec,
            report=a.report,
        ),
        max_frames=a.max_frames,
    )


def config_from_options(source: str, options: dict[str, Any]) -> RunConfig:
    """The :class:`RunConfig` of ``mot-dinov3 --source SOURCE`` with ``options`` as its flags (keywords:
    the flag names with underscores; ``True`` / ``False`` for switches; ``classes`` as ``"0,2"`` or a
    list; ``output=None`` writes no video).

    Raises:
        UserError: an unknown option, or what :func:`build_run_config` raises.
    """
    parser = track_parser()
    dests = {a.dest for a in parser._actions} - {"help", "version", "source"}
    unknown = sorted(set(options) - dests)
    if unknown:
        raise UserError(f"options {unknown}: unknown; valid options are {sorted(dests)}")
    ns = parser.parse_args(["--source", source])
    for key, value in options.items():
        if key == "classes" and isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)  # parse_classes checks the ids
        if key == "output" and value is None:
            value = ""
        setattr(ns, key, value)
    return build_run_config(ns)
