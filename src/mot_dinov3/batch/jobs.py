"""One source of a batch: its outputs, its ``summary.json`` and its row of the batch summary; the
models a worker loads once; the batch summary files.

A source's folder ``<out_dir>/<name>/`` holds ``<name>.mp4`` (the annotated video, unless none is
asked for), ``<name>.txt`` (MOTChallenge results) and ``summary.json``. ``summary.json`` is removed
when the source starts and written last, atomically, so it says ``"status": "ok"`` only for a source
whose outputs are complete: a killed batch resumes (``skip_existing``) at the right place.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import time
import traceback
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from mot_dinov3 import pipeline
from mot_dinov3.batch.sources import is_part_file
from mot_dinov3.config import DetectorConfig, EmbedderConfig, RunConfig
from mot_dinov3.detector import Detector
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import Embedder
from mot_dinov3.features.factory import create_embedder, embedder_traits
from mot_dinov3.io import write_atomic
from mot_dinov3.profiling import RunSummary

log = logging.getLogger(__name__)

OK, FAILED, INTERRUPTED, SKIPPED, PENDING = "ok", "failed", "interrupted", "skipped", "pending"
SUMMARY = "summary.json"
CSV_NAME, JSON_NAME = "batch_summary.csv", "batch_summary.json"

Models = tuple[Detector, "Embedder | None"]


class ModelLoadError(UserError):
    """A worker could not load the detector or the embedder (the same for every source: the batch stops)."""


@dataclass
class SourceResult:
    """A source's row of the batch summary.

    Attributes:
        source: the source as expanded.
        name: its output folder's name.
        status: ``ok``, ``failed``, ``interrupted``, ``skipped`` (done by an earlier run: its numbers
            are that run's) or ``pending`` (not run: the batch stopped first).
        frames: frames tracked.
        fps: frames per second of the tracking loop (model loading not included).
        tracks: confirmed track ids.
        embeddings_computed: appearance embeddings computed.
        seconds: wall time of the source, s (opening it to closing its outputs).
        error: a one-line reason when ``failed``, else ``""``.
        worker: ``host:pid`` of the process that ran it.
    """

    source: str
    name: str
    status: str = PENDING
    frames: int = 0
    fps: float = 0.0
    tracks: int = 0
    embeddings_computed: int = 0
    seconds: float = 0.0
    error: str = ""
    worker: str = ""


@dataclass(frozen=True)
class Job:
    """A source to run: ``index`` in the batch, ``source`` as shown, ``path`` and ``folder`` absolute."""

    index: int
    source: str
    path: str
    name: str
    folder: str


def one_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message; other than a :class:`UserError`, prefixed by its type."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, UserError) and text:
        return text
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def load_models(detector: DetectorConfig, embedder: EmbedderConfig) -> Models:
    """The detector (first: a wrong ``det`` fails fast) and the embedder (``None`` for ``none``) of a run.

    Raises:
        UserError: as :class:`~mot_dinov3.detector.Detector` and
            :func:`~mot_dinov3.features.factory.create_embedder`.
    """
    capture = embedder_traits(embedder.name, embedder.model)[1]
    return Detector(replace(detector, capture_features=capture)), create_embedder(embedder)


def source_config(cfg: RunConfig, job: Job) -> RunConfig:
    """``cfg`` for ``job``: its source, and in its folder its MOT txt, its video (the suffix of
    ``cfg.output.video``; none when that is ``None``) and its report page (when ``cfg.output.report`` is
    set); no JSON (``summary.json`` is written by :func:`run_job`)."""
    folder, name = Path(job.folder), job.name
    paths: dict[str, Any] = {"mot_txt": str(folder / f"{name}.txt"), "json": None}
    paths["video"] = str(folder / f"{name}{Path(cfg.output.video).suffix or '.mp4'}") if cfg.output.video else None
    if getattr(cfg.output, "report", None):
        paths["report"] = str(folder / f"{name}.html")
    return replace(cfg, source=job.path, output=replace(cfg.output, **paths))


def run_job(job: Job, cfg: RunConfig, models: Models) -> SourceResult:
    """Track one source into its folder with ready models, and write its ``summary.json`` last.

    Every failure of the source (a :class:`UserError`, a broken video, any ``Exception``) becomes a
    ``failed`` result with a one-line error (the traceback goes into ``summary.json``); Ctrl-C
    (``KeyboardInterrupt``) an ``interrupted`` one. An output folder that is, or holds, the source
    fails without touching it.
    """
    folder, src = Path(job.folder), Path(job.path)
    result = SourceResult(job.source, job.name, worker=worker_id())
    summary: RunSummary | None = None
    details, ours = "", False
    t0 = time.perf_counter()
    try:
        if folder.resolve() == src.resolve() or src.resolve().is_relative_to(folder.resolve()):
            raise UserError(f"out_dir: {str(folder)!r} is the source's folder or holds it; choose another out_dir")
        ours = True
        folder.mkdir(parents=True, exist_ok=True)
        _clear(folder)
        summary = pipeline.run(source_config(cfg, job), embedder=models[1], detector=models[0])
        result.status = INTERRUPTED if summary.interrupted else OK
    except KeyboardInterrupt:
        result.status = INTERRUPTED
    except Exception as exc:  # one source's failure; the batch goes on
        summary = getattr(exc, "summary", None)  # a WriteError: what was complete
        result.status, result.error, details = FAILED, one_line(exc), traceback.format_exc()
        log.debug("%s failed", job.source, exc_info=True)
    result.seconds = round(time.perf_counter() - t0, 3)
    if summary is not None:
        result.frames, result.fps, result.tracks = summary.frames, round(summary.fps, 3), summary.tracks
        result.embeddings_computed = summary.embeddings_computed
    if ours:
        record = {**asdict(result), "path": job.path, **(summary.to_dict() if summary else {})}
        record.update(fps=result.fps, **({"traceback": details} if details else {}))
        try:
            write_atomic(folder / SUMMARY, json.dumps(record, indent=2), "summary_json")
        except UserError as exc:
            if result.status == OK:
                result.status, result.error = FAILED, one_line(exc)
    return result


def _clear(folder: Path) -> None:
    """Remove ``folder``'s ``summary.json`` (the source is not done until it is rewritten) and the
    ``.part`` files a killed run left."""
    (folder / SUMMARY).unlink(missing_ok=True)
    for p in folder.iterdir():
        if p.is_file() and is_part_file(p):
            p.unlink(missing_ok=True)


def read_result(folder: Path, source: str, name: str) -> SourceResult | None:
    """The result ``folder/summary.json`` records for ``source`` (its absolute path compared); ``None`` when
    there is none, it is unreadable or it is another source's."""
    try:
        record = json.loads((folder / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("path") != str(Path(source).resolve()):
        return None
    known = {f.name for f in fields(SourceResult)} - {"source", "name"}
    try:
        return SourceResult(source, name, **{k: record[k] for k in known if k in record})
    except TypeError:
        return None


def previous_result(folder: Path, source: str, name: str) -> SourceResult | None:
    """The ``skipped`` result of a source an earlier run finished (:func:`read_result` says ``ok``);
    ``None`` when it has to run."""
    result = read_result(folder, source, name)
    return replace(result, status=SKIPPED) if result is not None and result.status == OK else None


def write_batch_summary(out_dir: Path, results: list[SourceResult], interrupted: bool) -> None:
    """Write ``batch_summary.csv`` and ``batch_summary.json`` in ``out_dir`` (each atomically): every source
    in batch order, ``pending`` ones included, and the count per status.

    Raises:
        WriteError: a file could not be written.
    """
    rows = [asdict(r) for r in results]
    text = io.StringIO()
    writer = csv.DictWriter(text, [f.name for f in fields(SourceResult)], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out_dir / CSV_NAME, text.getvalue(), "out_dir")
    counts = {s: sum(r.status == s for r in results) for s in (OK, FAILED, INTERRUPTED, SKIPPED, PENDING)}
    doc = {
        "out_dir": str(out_dir),
        "total": len(results),
        "counts": counts,
        "interrupted": interrupted,
        "sources": rows,
    }
    write_atomic(out_dir / JSON_NAME, json.dumps(doc, indent=2), "out_dir")
