"""``mot-dinov3 dense match | pca | point-track``: dense DINO features from the command line.

A thin layer over :mod:`mot_dinov3.dense`: errors are one line on stderr with exit code 2 (through
:func:`mot_dinov3.cli._guard`, with the library's ``name=value`` written as this command's flags).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from mot_dinov3.dense.features import DEFAULT_MODEL, DEFAULT_SIZE, PatchGrid, load_extractor, read_image
from mot_dinov3.errors import UserError

TRAIL = 30  # frames of trail drawn behind a tracked point
LOST_COLOR = (160, 160, 160)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="ID_OR_PATH",
        help=f"a Hugging Face id, a torch-hub name such as dinov2_vits14, or a local folder (default: {DEFAULT_MODEL})",
    )
    p.add_argument("--device", help="torch device, e.g. cpu or cuda (default: CUDA when available)")
    p.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"longer side of the model input, pixels, rounded to whole patches (default: {DEFAULT_SIZE})",
    )
    p.add_argument(
        "--fallback-open", action="store_true", help="use facebook/dinov2-base if the model is gated or unreachable"
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks")


def dense_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``mot-dinov3 dense`` parser and its subcommands' parsers (whose flags messages name)."""
    p = argparse.ArgumentParser(
        prog="mot-dinov3 dense",
        description="Dense DINOv2 / DINOv3 patch features: point matching, PCA pictures, point tracking.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{match,pca,point-track}")
    m = sub.add_parser("match", help="match points of one image in another (lines with their similarity)")
    m.add_argument("image1", metavar="IMG1")
    m.add_argument("image2", metavar="IMG2")
    m.add_argument("--points", required=True, help='pixels of IMG1, "x,y;x,y;..."')
    m.add_argument("--pca-dim", type=int, metavar="K", help="match on the first K principal components")
    m.add_argument("--mutual", action="store_true", help="check matches both ways (non-mutual ones drawn grey)")
    m.add_argument("--output", default="match.png", help="the picture (default: match.png)")
    m.add_argument(
        "--save-json",
        nargs="?",
        const="",
        metavar="PATH",
        help="write the matches as JSON (default path: the output's, .json)",
    )
    _common(m)
    c = sub.add_parser("pca", help="the first three principal components as RGB, beside the image")
    c.add_argument("image", metavar="IMG")
    c.add_argument("--output", default="pca.png", help="the picture (default: pca.png)")
    c.add_argument(
        "--foreground",
        nargs="?",
        type=float,
        const=0.0,
        metavar="THRESH",
        help="black out the background: first component below THRESH std (default 0, the DINOv2 paper's split)",
    )
    _common(c)
    t = sub.add_parser("point-track", help="track points through a video (trails, lost points)")
    t.add_argument("video", metavar="VIDEO", help="a video file, a MOTChallenge sequence or a folder of images")
    t.add_argument("--point", action="append", required=True, help="x,y pixels in the first frame (repeatable)")
    t.add_argument("--output", default="track.mp4", help="the annotated video (default: track.mp4)")
    t.add_argument("--save-csv", metavar="PATH", help="write frame,point,x,y,similarity,lost rows")
    t.add_argument("--max-frames", type=int, help="stop after this many frames")
    t.add_argument("--window", type=int, default=3, help="search radius, patches per frame (default: 3)")
    t.add_argument("--ema", type=float, default=0.0, help="target update weight, 0 (fixed) to 1 (default: 0)")
    t.add_argument("--lost-below", type=float, default=0.5, help="similarity under which a point is lost (0.5)")
    t.add_argument("--batch-size", type=int, default=4, help="frames per forward pass (default: 4)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _common(t)
    return p, {"match": m, "pca": c, "point-track": t}


def parse_points(text: str, flag: str) -> np.ndarray:
    """``"x,y;x,y"`` -> (N, 2) float64 pixels.

    Raises:
        UserError: not ``x,y`` pairs of numbers.
    """
    pts = []
    for part in text.replace(" ", "").split(";"):
        if not part:
            continue
        xy = part.split(",")
        try:
            if len(xy) != 2:
                raise ValueError
            pts.append((float(xy[0]), float(xy[1])))
        except ValueError:
            raise UserError(
                f"{flag} {text!r}: expected x,y pixel pairs separated by ';', e.g. {flag} \"120,80;300,200\""
            ) from None
    if not pts:
        raise UserError(f'{flag} {text!r}: no points; give x,y pixel pairs, e.g. {flag} "120,80;300,200"')
    return np.asarray(pts, np.float64)


def _check_inside(points: np.ndarray, image_hw: tuple[int, int], flag: str, what: str) -> None:
    inside = PatchGrid(image_hw, (1, 1), 1).contains(points)
    if not inside.all():
        x, y = points[~inside][0]
        height, width = image_hw
        raise UserError(
            f"{flag} {x:g},{y:g}: outside {what} ({width}x{height} pixels); x must be in [0, {width}), "
            f"y in [0, {height})"
        )


def _color(i: int) -> tuple[int, int, int]:
    from mot_dinov3.viz import id_color

    return id_color(i + 1)


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float, color) -> None:
    """``s`` at ``org`` (bottom left), outlined; moved left / down to stay inside the image."""
    (tw, th), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, 3)
    org = (max(0, min(org[0], img.shape[1] - tw - 2)), max(th + 2, org[1]))
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def _check_image_output(path: str) -> None:
    """Fail before the model loads when OpenCV has no writer for ``path``'s extension."""
    if not cv2.haveImageWriter(str(path)):
        raise UserError(f"--output {path}: OpenCV cannot write this format; use a .png or .jpg path")


def _write_image(path: str, image: np.ndarray) -> Path:
    from mot_dinov3.io import ensure_writable

    p = ensure_writable(path, "output")
    try:
        ok = cv2.imwrite(str(p), image)
    except cv2.error:  # no writer for this extension
        ok = False
    if not ok:
        raise UserError(f"--output {p}: OpenCV cannot write this format; use a .png or .jpg path")
    return p


def _extractor(args):
    PatchGrid.for_image((1, 1), 1, args.size)  # a bad --size fails before the model loads
    return load_extractor(args.model, device=args.device, fallback_open=args.fallback_open)


def draw_matches(img_a, img_b, xy_a, xy_b, similarity, mutual=None) -> np.ndarray:
    """A | B side by side (B scaled to A's height), a line per match with its similarity."""
    ha = img_a.shape[0]
    scale = ha / img_b.shape[0]
    b = cv2.resize(img_b, (max(1, round(img_b.shape[1] * scale)), ha), interpolation=cv2.INTER_AREA)
    out = np.concatenate([img_a, b], axis=1)
    thick, font = max(1, round(ha / 300)), max(0.45, ha / 1000)
    for i, (pa, pb, s) in enumerate(zip(xy_a, xy_b, similarity)):
        color = _color(i) if mutual is None or mutual[i] else LOST_COLOR
        p1 = (int(round(pa[0])), int(round(pa[1])))
        p2 = (int(round(pb[0] * scale + img_a.shape[1])), int(round(pb[1] * scale)))
        cv2.line(out, p1, p2, color, thick, cv2.LINE_AA)
        cv2.circle(out, p1, 3 * thick + 2, color, -1, cv2.LINE_AA)
        cv2.circle(out, p2, 3 * thick + 2, color, -1, cv2.LINE_AA)
        _text(out, f"{s:.2f}", (p2[0] + 6, p2[1] - 6), font, color)
    return out


def _match(args) -> int:
    from mot_dinov3.dense.features import patch_features
    from mot_dinov3.dense.match import match_points

    points = parse_points(args.points, "--points")
    img_a, img_b = read_image(args.image1, "IMG1"), read_image(args.image2, "IMG2")
    _check_inside(points, img_a.shape[:2], "--points", f"IMG1 {args.image1}")
    _check_image_output(args.output)
    ext = _extractor(args)
    fa, grid_a = patch_features(img_a, ext, args.size, return_grid=True)
    fb, grid_b = patch_features(img_b, ext, args.size, return_grid=True)
    m = match_points(fa, fb, grid_a.to_cell(points), pca_dim=args.pca_dim, mutual=args.mutual)
    xy_b = grid_b.to_pixel(m.cells_b)
    out = _write_image(args.output, draw_matches(img_a, img_b, points, xy_b, m.similarity, m.mutual))
    rows = []
    for i, (pa, pb, s) in enumerate(zip(points, xy_b, m.similarity)):
        mutual = None if m.mutual is None else bool(m.mutual[i])
        rows.append({"a": [float(pa[0]), float(pa[1])], "b": [round(float(v), 2) for v in pb], "similarity": float(s)})
        if mutual is not None:
            rows[-1]["mutual"] = mutual
        tag = "" if mutual is None else (" mutual" if mutual else " not mutual")
        print(f"({pa[0]:g}, {pa[1]:g}) -> ({pb[0]:.1f}, {pb[1]:.1f}) similarity {s:.3f}{tag}")
    print(f"wrote {out}")
    if args.save_json is not None:
        from mot_dinov3.io import ensure_writable

        path = ensure_writable(args.save_json or out.with_suffix(".json"), "save_json")
        doc = {
            "image1": str(args.image1),
            "image2": str(args.image2),
            "model": str(args.model),
            "size": args.size,
            "pca_dim": args.pca_dim,
            "grid1_hw": list(grid_a.grid_hw),
            "grid2_hw": list(grid_b.grid_hw),
            "matches": rows,
        }
        path.write_text(json.dumps(doc, indent=2))
        print(f"wrote {path}")
    return 0


def _pca(args) -> int:
    from mot_dinov3.dense.features import patch_features
    from mot_dinov3.dense.pca import pca_rgb

    img = read_image(args.image, "IMG")
    _check_image_output(args.output)
    feat = patch_features(img, _extractor(args), args.size)
    rgb = pca_rgb(feat, foreground=args.foreground, size_hw=img.shape[:2])
    out = _write_image(args.output, np.concatenate([img, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)], axis=1))
    print(f"features {feat.shape[0]}x{feat.shape[1]} patches x {feat.shape[2]}; wrote {out}")
    return 0


def draw_points(image, trails, lost, similarity) -> np.ndarray:
    """Tracked points with their trails on a copy of a frame; lost points as grey crosses."""
    out = image.copy()
    h = image.shape[0]
    thick, font, r = max(1, round(h / 400)), max(0.45, h / 1200), max(4, round(h / 90))
    for i, trail in enumerate(trails):
        color = LOST_COLOR if lost[i] else _color(i)
        pts = np.round(np.asarray(trail)).astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(out, [pts.reshape(-1, 1, 2)], False, color, thick, cv2.LINE_AA)
        x, y = (int(v) for v in pts[-1])
        if lost[i]:
            cv2.drawMarker(out, (x, y), color, cv2.MARKER_TILTED_CROSS, 2 * r, thick + 1, cv2.LINE_AA)
            _text(out, f"P{i + 1} lost {similarity[i]:.2f}", (x + r + 2, y - r), font, color)
        else:
            cv2.circle(out, (x, y), r, color, -1, cv2.LINE_AA)
            _text(out, f"P{i + 1} {similarity[i]:.2f}", (x + r + 2, y - r), font, color)
    return out


def _point_track(args) -> int:
    from tqdm import tqdm

    from mot_dinov3.dense.point_track import track_points
    from mot_dinov3.io import FrameSource, VideoWriter, ensure_writable, prefetch

    points = np.concatenate([parse_points(p, "--point") for p in args.point])
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError(f"--max-frames {args.max_frames}: must be >= 1")
    source = FrameSource(args.video)
    _check_inside(points, (source.height, source.width), "--point", "the frames")
    ext = _extractor(args)
    total = source.length if args.max_frames is None else min(args.max_frames, source.length or args.max_frames)
    writer = VideoWriter(args.output, source.fps, (source.width, source.height))
    csv_file = open(ensure_writable(args.save_csv, "save_csv"), "w", newline="") if args.save_csv else None
    rows = csv.writer(csv_file) if csv_file else None
    if rows is not None:
        rows.writerow(["frame", "point", "x", "y", "similarity", "lost"])
    trails: list[list[tuple[float, float]]] = [[] for _ in points]
    frames = prefetch(source)
    images: dict[int, np.ndarray] = {}

    def stream():
        for f in itertools.islice(frames, args.max_frames):
            images[f.index - 1] = f.image
            yield f.image

    n = lost_frames = 0
    t0 = time.perf_counter()
    bar = tqdm(total=total, unit="frame", disable=args.no_progress, dynamic_ncols=True, file=sys.stderr)
    try:
        for pf in track_points(
            stream(),
            points,
            ext,
            args.size,
            batch_size=args.batch_size,
            window=args.window,
            ema=args.ema,
            lost_below=args.lost_below,
        ):
            image = images.pop(pf.index)
            for i, xy in enumerate(pf.xy):
                trails[i] = [*trails[i][-(TRAIL - 1) :], (float(xy[0]), float(xy[1]))]
                if rows is not None:
                    rows.writerow(
                        [
                            pf.index + 1,
                            i + 1,
                            f"{xy[0]:.1f}",
                            f"{xy[1]:.1f}",
                            f"{pf.similarity[i]:.4f}",
                            int(pf.lost[i]),
                        ]
                    )
            writer.write(draw_points(image, trails, pf.lost, pf.similarity))
            n += 1
            lost_frames += int(pf.lost.any())
            bar.update(1)
    finally:
        bar.close()
        frames.close()
        source.close()
        writer.close()
        if csv_file is not None:
            csv_file.close()
    seconds = time.perf_counter() - t0
    ms = 1000 * seconds / max(1, n)
    plural = "s" if len(points) != 1 else ""
    print(f"{n} frames, {len(points)} point{plural} ({lost_frames} frames with a lost point); {ms:.0f} ms per frame")
    print(f"wrote {writer.path}" + (f", {args.save_csv}" if args.save_csv else ""))
    return 0


COMMANDS = {"match": _match, "pca": _pca, "point-track": _point_track}


def main(argv: list[str]) -> int:
    """``mot-dinov3 dense ...`` (``argv`` without ``dense``); exit code 0, or 2 on a user error."""
    from mot_dinov3.cli import _guard

    parser, subs = dense_parser()
    args = parser.parse_args(argv)
    return _guard(args.debug, lambda: COMMANDS[args.command](args), subs[args.command])
