"""The run report: one self-contained HTML page (no network) with the annotated video, per-frame plots and
a table of tracks.

The page holds the video (an H.264 one under :data:`EMBED_LIMIT` bytes, base64-encoded, played from a
``Blob``; a larger one linked by its path relative to the page), stacked per-frame latency by stage,
detections and embeddings computed per frame, active tracks over time (inline SVG; a line follows the
video's current frame, a click on a plot or a table row seeks the video), the tracks and the run's
settings. Pure: it takes counts and times (:class:`RunRecord`, the stage times of
:class:`~mot_dinov3.profiling.StageTimer`, a run summary as a dict) and knows nothing of the tracker.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from mot_dinov3.io import write_atomic

EMBED_LIMIT = 20 * 2**20  # bytes: a smaller H.264 video is embedded in the page, a larger one linked
MAX_POINTS = 1000  # plot points at most: longer runs are averaged over bins of consecutive frames
STAGE_COLORS = {
    "read": "#4e79a7",
    "detect": "#f28e2b",
    "embed": "#e15759",
    "track": "#76b7b2",
    "draw": "#59a14f",
    "write": "#b07aa1",
}
OTHER_COLORS = ("#9c755f", "#bab0ac", "#edc948", "#ff9da7")
MIME_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/mp4", ".mkv": "video/x-matroska"}


@dataclass(frozen=True)
class TrackRow:
    """One track in the report's table. Frames are 1-based source frame indices.

    Attributes:
        track_id: the track id.
        first_frame, last_frame: the first and last frame it was reported (confirmed) in.
        frames_seen: frames it was reported in.
        embeddings: frames an embedding was computed for its detection (the ``*`` of the video).
    """

    track_id: int
    first_frame: int
    last_frame: int
    frames_seen: int
    embeddings: int


class RunRecord:
    """Per-frame counts and per-track totals for the report, collected during a run.

    Memory: four 8-byte integers per frame and one small list per track (O(frames + tracks)).

    Attributes:
        frame_index: (F,) 1-based source frame index of each processed frame.
        detections: (F,) detections per frame.
        embeddings: (F,) embeddings computed per frame (lazy memory's buffered looks included).
        active: (F,) tracks reported (confirmed) per frame.
    """

    def __init__(self) -> None:
        self.frame_index = array("q")
        self.detections = array("q")
        self.embeddings = array("q")
        self.active = array("q")
        self._tracks: dict[int, list[int]] = {}  # id -> [first, last, seen, embedded]

    def add_frame(self, index: int, detections: int, embeddings: int, tracks: Iterable[tuple[int, bool]]) -> None:
        """Record one frame: its 1-based ``index``, counts, and the ``(track_id, embedded_now)`` of every
        track reported in it."""
        n = 0
        for tid, embedded in tracks:
            n += 1
            row = self._tracks.get(tid)
            if row is None:
                self._tracks[tid] = [index, index, 1, int(embedded)]
            else:
                row[1], row[2], row[3] = index, row[2] + 1, row[3] + int(embedded)
        self.frame_index.append(index)
        self.detections.append(int(detections))
        self.embeddings.append(int(embeddings))
        self.active.append(n)

    def __len__(self) -> int:
        return len(self.frame_index)

    def track_rows(self) -> list[TrackRow]:
        """The tracks, by id."""
        return [TrackRow(tid, *row) for tid, row in sorted(self._tracks.items())]


@dataclass
class ReportData:
    """What the page shows.

    Attributes:
        record: per-frame counts and tracks.
        stage_ms: ``{stage: (F,) ms per frame}``, aligned with ``record`` (a stage timer's ``per_stage``).
        summary: the run summary as a dict (:meth:`~mot_dinov3.profiling.RunSummary.to_dict`).
        fps: the video's frames per second (frame ``i`` of the run is at ``i / fps`` s in it).
        title: the page title (e.g. the source's name).
        video: the video this run wrote, or ``None`` (none asked for, or it could not be written).
        video_codec: its codec (``"h264"``, ``"mp4v"``, ``"mjpg"``): only H.264 is shown in a player.
        notes: lines shown at the top (an interrupted run, outputs that could not be written).
    """

    record: RunRecord
    stage_ms: Mapping[str, Sequence[float]]
    summary: Mapping[str, object]
    fps: float
    title: str = "mot-dinov3 run"
    video: Path | None = None
    video_codec: str | None = None
    notes: list[str] = field(default_factory=list)


def write_report(path: str | Path, data: ReportData, embed_limit: int = EMBED_LIMIT) -> Path:
    """Render the page (:func:`render`) and write it atomically (:func:`mot_dinov3.io.write_atomic`).

    Raises:
        UserError: the location is not writable.
        WriteError: the page could not be written (disk full, I/O error); an earlier file is kept.
    """
    p = Path(path)
    return write_atomic(p, render(data, p, embed_limit), "report")


def render(data: ReportData, path: Path, embed_limit: int = EMBED_LIMIT) -> str:
    """The HTML page for ``data``, to be written at ``path`` (video links are relative to it).

    Args:
        data: what to show.
        path: where the page goes.
        embed_limit: an H.264 video up to this many bytes is embedded (base64), a larger one linked.
    """
    rec = data.record
    n = min([len(rec), *map(len, data.stage_ms.values())])  # equal, but for an interrupt between the two
    frames = np.asarray(rec.frame_index, np.float64)[:n]
    stages = [(s, np.asarray(v, np.float64)[:n]) for s, v in data.stage_ms.items()]
    colors = [STAGE_COLORS.get(s, OTHER_COLORS[i % len(OTHER_COLORS)]) for i, (s, _) in enumerate(stages)]
    plots = "\n".join(
        [
            _figure(
                "Latency per frame by stage",
                "ms",
                frames,
                [(s, c, v) for (s, v), c in zip(stages, colors)],
                stacked=True,
                clip=True,
            ),
            _figure(
                "Detections and embeddings computed per frame",
                "per frame",
                frames,
                [
                    ("detections", "#4e79a7", np.asarray(rec.detections, np.float64)[:n]),
                    ("embeddings computed", "#e15759", np.asarray(rec.embeddings, np.float64)[:n]),
                ],
            ),
            _figure(
                "Active tracks",
                "tracks",
                frames,
                [("active tracks", "#59a14f", np.asarray(rec.active, np.float64)[:n])],
            ),
        ]
    )
    first = int(rec.frame_index[0]) if len(rec) else 1
    body = "\n".join(
        [
            f"<h1>{_e(data.title)}</h1>",
            "".join(f'<p class="note">{_e(note)}</p>' for note in data.notes),
            _summary(data.summary),
            _video(data, path, embed_limit),
            plots if n else '<p class="note">No frame was processed: nothing to plot.</p>',
            _tracks_table(rec.track_rows()),
            _settings(data.summary),
        ]
    )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{_e(data.title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f'<body data-fps="{data.fps:.6g}" data-first-frame="{first}">\n{body}\n'
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, fmt: str = ".1f") -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "?"


def _summary(s: Mapping[str, object]) -> str:
    items = [
        ("frames", f"{s.get('frames', '?')}{' (interrupted)' if s.get('interrupted') else ''}"),
        ("effective fps", _num(s.get("fps"), ".2f")),
        (
            "latency per frame",
            f"mean {_num(s.get('latency_mean_ms'))} ms, p50 {_num(s.get('latency_p50_ms'))} ms, "
            f"p95 {_num(s.get('latency_p95_ms'))} ms",
        ),
        (
            "embeddings",
            f"computed {s.get('embeddings_computed', '?')} ({_num(s.get('embeddings_per_frame'), '.2f')} per frame), "
            f"reused {s.get('embeddings_reused', '?')}",
        ),
        ("tracks", str(s.get("tracks", "?"))),
    ]
    means = s.get("stage_mean_ms")
    if isinstance(means, Mapping) and means:
        items.append(("stages (mean ms)", ", ".join(f"{k} {_num(v)}" for k, v in means.items())))
    if s.get("detector_ms"):
        where = "one frame ahead" if s.get("detected_ahead", True) else "in the loop's thread"
        items.append((f"detector (own ms per frame, {where})", _num(s.get("detector_ms"))))
    outputs = s.get("outputs")
    if isinstance(outputs, Mapping) and outputs:
        items.append(("outputs", ", ".join(f"{k}: {v}" for k, v in outputs.items())))
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in items)
    return f'<table class="summary">{rows}</table>'


def _video_href(video: Path, page: Path) -> str:
    try:
        rel = os.path.relpath(video.resolve(), page.resolve().parent)
    except ValueError:  # another drive (Windows)
        return video.resolve().as_uri()
    return quote(Path(rel).as_posix())


def _video(data: ReportData, page: Path, embed_limit: int) -> str:
    video = data.video
    if video is None or not video.is_file():
        return '<section><h2>Video</h2><p class="note">No video was written for this run.</p></section>'
    href, name = _video_href(video, page), _e(video.name)
    if data.video_codec != "h264":
        return (
            f'<section><h2>Video</h2><p class="note">The video <a href="{href}">{name}</a> is '
            f"{_e(data.video_codec or 'not H.264')}, which browsers do not play: write H.264 with --codec h264 "
            "(Python: codec='h264'; needs PyAV, pip install av).</p></section>"
        )
    mime = MIME_TYPES.get(video.suffix.lower(), "video/mp4")
    size = video.stat().st_size
    attrs = 'id="video" controls muted playsinline preload="auto"'
    if size <= embed_limit:
        b64 = base64.b64encode(video.read_bytes()).decode("ascii")
        player = (
            f"<video {attrs}></video>\n"
            f'<script type="application/octet-stream" id="video-data" data-type="{mime}">{b64}</script>\n'
            f'<p class="small">Embedded in this page ({size / 2**20:.1f} MiB); also written to '
            f'<a href="{href}">{name}</a>. <a id="video-download" download="{name}">Save the embedded video</a>.</p>'
        )
    else:
        player = (
            f'<video {attrs} src="{href}"></video>\n'
            f'<p class="small">Linked, not embedded ({size / 2**20:.1f} MiB): <a href="{href}">{name}</a> must stay '
            "at this path relative to the page.</p>"
        )
    return f"<section><h2>Video</h2>\n{player}\n</section>"


def _bins(frames: np.ndarray, values: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Means over bins of ``k`` consecutive frames so that at most :data:`MAX_POINTS` remain."""
    n = len(frames)
    k = max(1, math.ceil(n / MAX_POINTS))
    if k == 1:
        return frames, values, 1
    edges = np.arange(0, n, k)
    counts = np.diff(np.append(edges, n))
    mean = lambda v: np.add.reduceat(v, edges) / counts  # noqa: E731
    return mean(frames), [mean(v) for v in values], k


def _ticks(top: float) -> list[float]:
    """Round y-axis ticks from 0 to at least ``top`` (at most six)."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


W, H, ML, MR, MT, MB = 900, 230, 52, 14, 10, 30  # SVG size and margins, user units


def _figure(
    title: str,
    unit: str,
    frames: np.ndarray,
    series: list[tuple[str, str, np.ndarray]],
    stacked: bool = False,
    clip: bool = False,
) -> str:
    """An SVG plot of ``series`` (label, colour, (F,) values) over ``frames``: stacked areas or lines.
    ``clip``: a few outliers (above 3x the 95th percentile, e.g. the first frame's warm-up) are cut at
    the top of the axis, which then fits the other frames, and named under the plot."""
    if not len(frames) or not series:
        return ""
    x, vals, k = _bins(frames, [v for _, _, v in series])
    tops = np.cumsum(vals, axis=0) if stacked else np.asarray(vals)
    totals = tops[-1] if stacked else tops.max(axis=0)  # the top of each point
    peak, high = float(totals.max()), float(np.percentile(totals, 95))
    clipped = clip and high > 0 and peak > 3 * high
    ticks = _ticks(1.5 * high if clipped else peak)
    ymax = ticks[-1] or 1.0
    tops = np.minimum(tops, ymax)
    x0, x1 = float(frames[0]), float(frames[-1])
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5

    def px(f: np.ndarray) -> np.ndarray:
        return ML + (f - x0) / (x1 - x0) * (W - ML - MR)

    def py(v: np.ndarray) -> np.ndarray:
        return MT + (1 - v / ymax) * (H - MT - MB)

    def pts(xs: np.ndarray, ys: np.ndarray) -> str:
        return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px(xs), py(ys)))

    parts = []
    for t in ticks:
        y = float(py(np.float64(t)))
        parts.append(f'<line class="grid" x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    for f in _ticks(x1)[1:] if x1 > 1 else []:
        if x0 <= f <= x1:
            xf = float(px(np.float64(f)))
            parts.append(f'<text class="tick" x="{xf:.1f}" y="{H - MB + 16}" text-anchor="middle">{f:g}</text>')
    parts.append(f'<text class="tick" x="{W - MR}" y="{H - 2}" text-anchor="end">frame</text>')
    one = len(x) == 1
    xs = np.array([x[0] - 0.5, x[0] + 0.5]) if one else x
    bottom = np.zeros(len(xs))
    for i, (label, color, _) in enumerate(series):
        top = np.repeat(tops[i], 2) if one else tops[i]
        if stacked:
            d = pts(xs, top) + " " + pts(xs[::-1], bottom[::-1])
            parts.append(
                f'<polygon points="{d}" fill="{color}" fill-opacity="0.85"><title>{_e(label)}</title></polygon>'
            )
            bottom = top
        else:
            parts.append(
                f'<polyline points="{pts(xs, top)}" fill="none" stroke="{color}" stroke-width="1.6">'
                f"<title>{_e(label)}</title></polyline>"
            )
    parts.append(f'<line class="axis" x1="{ML}" x2="{W - MR}" y1="{H - MB}" y2="{H - MB}"/>')
    parts.append(f'<line class="cursor" x1="-10" x2="-10" y1="{MT}" y2="{H - MB}"/>')
    legend = "".join(f'<span class="key"><i style="background:{c}"></i>{_e(lbl)}</span>' for lbl, c, _ in series)
    binned = f" (means over {k} frames)" if k > 1 else ""
    if clipped:
        over = int((totals > ymax).sum())
        binned += f"; {over} {'point' if over == 1 else 'points'} above {ymax:g} cut (max {peak:.4g})"
    return (
        f"<section><h2>{_e(title)}</h2>\n"
        f'<svg class="plot" viewBox="0 0 {W} {H}" role="img" aria-label="{_e(title)}" data-f0="{x0:g}" '
        f'data-f1="{x1:g}" data-left="{ML}" data-right="{W - MR}">{"".join(parts)}</svg>\n'
        f'<div class="legend">{legend}<span class="small">{_e(unit)}{binned}</span></div>\n</section>'
    )


def _tracks_table(rows: list[TrackRow]) -> str:
    if not rows:
        return '<section><h2>Tracks</h2><p class="note">No confirmed track.</p></section>'
    head = "".join(
        f'<th data-col="{i}">{_e(h)}</th>'
        for i, h in enumerate(("id", "first frame", "last frame", "frames seen", "embeddings computed"))
    )
    body = "".join(
        f'<tr data-frame="{r.first_frame}"><td>{r.track_id}</td><td>{r.first_frame}</td><td>{r.last_frame}</td>'
        f"<td>{r.frames_seen}</td><td>{r.embeddings}</td></tr>"
        for r in rows
    )
    return (
        f"<section><h2>Tracks ({len(rows)})</h2>\n"
        '<p class="small">Confirmed tracks. Embeddings computed: frames whose detection of the track was embedded '
        "(the * in the video); looks that lazy memory embedded later count in the per-frame plot only. Click a "
        "heading to sort, a row to see its first frame.</p>\n"
        f'<table class="tracks" id="tracks"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n</section>'
    )


def _settings(s: Mapping[str, object]) -> str:
    settings = s.get("settings")
    if not settings:
        return ""
    text = json.dumps(settings, indent=2, default=str)
    return f"<section><details><summary>Settings</summary><pre>{_e(text)}</pre></details></section>"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:960px;
padding:0 16px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 6px}
table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #eee}
table.summary th{font-weight:600;color:#555;white-space:nowrap}
table.tracks th{cursor:pointer;background:#f6f6f6;user-select:none}table.tracks td{font-variant-numeric:tabular-nums}
table.tracks tbody tr{cursor:pointer}table.tracks tbody tr:hover{background:#f3f7ff}
video{width:100%;max-height:70vh;background:#000}
svg.plot{width:100%;height:auto;display:block;cursor:crosshair}
.grid{stroke:#e6e6e6;stroke-width:1}.axis{stroke:#999;stroke-width:1}.cursor{stroke:#222;stroke-width:1;
stroke-dasharray:3 3}.tick{font-size:11px;fill:#666}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;margin-top:2px}.key i{display:inline-block;width:12px;
height:12px;margin-right:5px;vertical-align:-1px}
.small{color:#666;font-size:12px}.note{background:#fff6e0;border-left:3px solid #e0a800;padding:6px 10px}
pre{background:#f6f6f6;padding:10px;overflow:auto;font-size:12px}
"""

_SCRIPT = """
(function () {
  "use strict";
  var body = document.body, fps = parseFloat(body.dataset.fps) || 30;
  var first = parseInt(body.dataset.firstFrame, 10) || 1;
  var video = document.getElementById("video");
  var data = document.getElementById("video-data");
  if (video && data) {
    var bin = atob(data.textContent.trim()), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var url = URL.createObjectURL(new Blob([bytes], {type: data.dataset.type}));
    video.src = url;
    var save = document.getElementById("video-download");
    if (save) save.href = url;
  }
  var plots = Array.prototype.slice.call(document.querySelectorAll("svg.plot"));
  function seek(frame) {
    if (!video) return;
    video.currentTime = Math.max(0, (frame - first + 0.5) / fps);
    video.scrollIntoView({block: "nearest"});
  }
  function cursor() {
    var frame = first + Math.floor(video.currentTime * fps + 1e-6);
    plots.forEach(function (svg) {
      var d = svg.dataset, f0 = +d.f0, f1 = +d.f1, l = +d.left, r = +d.right;
      var x = l + (frame - f0) / (f1 - f0) * (r - l);
      var line = svg.querySelector(".cursor");
      line.setAttribute("x1", x); line.setAttribute("x2", x);
    });
  }
  if (video) {
    video.addEventListener("timeupdate", cursor);
    video.addEventListener("seeked", cursor);
  }
  plots.forEach(function (svg) {
    svg.addEventListener("click", function (ev) {
      var box = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal, d = svg.dataset;
      var x = (ev.clientX - box.left) / box.width * vb.width;
      seek(+d.f0 + (x - +d.left) / (+d.right - +d.left) * (+d.f1 - +d.f0));
    });
  });
  var table = document.getElementById("tracks");
  if (table) {
    var tbody = table.tBodies[0], dir = {};
    table.tHead.addEventListener("click", function (ev) {
      var th = ev.target.closest("th");
      if (!th) return;
      var col = +th.dataset.col, sign = dir[col] = -(dir[col] || -1);
      var rows = Array.prototype.slice.call(tbody.rows);
      rows.sort(function (a, b) { return sign * (+a.cells[col].textContent - +b.cells[col].textContent); });
      rows.forEach(function (row) { tbody.appendChild(row); });
    });
    tbody.addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr");
      if (tr) seek(+tr.dataset.frame);
    });
  }
})();
"""
