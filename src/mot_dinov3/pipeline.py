"""The frame loop: read -> detect -> schedule + embed -> track -> draw -> write, each stage timed.

Frames are decoded one to four frames ahead in a background thread (:func:`mot_dinov3.io.prefetch`),
and the detector runs one frame ahead in another (:func:`detect_ahead`; not PyTorch on a CPU): frame
t+1 is detected while frame t is embedded, tracked, drawn and written. So ``read`` and ``detect`` are
the time the loop waited for the frame and its detections (the detector's own time per frame is the
summary's ``detector_ms``); the annotated video is encoded on a thread of its own
(:class:`mot_dinov3.video.VideoWriter` ``background``), so ``write`` is the time the loop waited for
the encoder.

This is the one place that sees every stage. Per frame: the tracker predicts its tracks' boxes;
the scheduler plans which detections need a fresh embedding against those predictions and runs the
embedder (with lazy memory, the default, it also embeds buffered looks of the tracks whose memory is
read this frame, which the tracker absorbs first; with the refresh rules, refreshes within its
budget); the tracker consumes the embeddings (fresh ones update its EMA); viz marks freshly embedded
tracks with ``*``.

Outputs are checked before models load (:func:`mot_dinov3.io.check_outputs`: no output may be an
input or share a path) and closed in a ``finally`` block, so Ctrl-C (and SIGTERM / SIGHUP, which the
CLI turns into it), an error or a full disk still leaves a playable video and every finished frame in
the MOT txt, and a run that fails before its first frame leaves earlier results untouched. A write
error stops the run: what is complete is kept and the :class:`~mot_dinov3.errors.WriteError` raised
carries the run summary.

The report page (``--report``) is written last, from per-frame counts collected on the way
(:class:`mot_dinov3.report.RunRecord`), after an interrupt or a write error too, like the JSON summary.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from array import array
from collections.abc import Generator, Iterable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mot_dinov3.api import MultiObjectTracker
from mot_dinov3.config import RunConfig
from mot_dinov3.detector import Detections, Detector
from mot_dinov3.errors import WriteError
from mot_dinov3.features.base import Embedder
from mot_dinov3.features.factory import create_embedder, embedder_traits
from mot_dinov3.gmc import check_method
from mot_dinov3.io import Frame, FrameSource, ImageFrames, MotWriter, check_outputs, prefetch, write_atomic
from mot_dinov3.profiling import RunSummary, StageTimer, summarize
from mot_dinov3.report import ReportData, RunRecord, write_report
from mot_dinov3.sigstack import clear_dangling_altstack
from mot_dinov3.track import TrackState
from mot_dinov3.video import VideoWriter, resolve_codec
from mot_dinov3.viz import DrawStyle, draw_tracks


def detect_ahead(
    frames: Iterable[Frame], detector: Detector
) -> Generator[tuple[Frame, Detections, float, float], None, None]:
    """Detect each frame in a background thread, one frame ahead of the consumer (:func:`prefetch`).

    Detection of frame t+1 then overlaps the embedding, tracking and writing of frame t: the detector
    releases the GIL while it runs (OpenVINO, onnxruntime, PyTorch), and on a GPU it hardly uses the
    CPU at all. The tracker does not depend on the next frame's boxes, so the results are those of the
    sequential loop. The first frame is detected in the consumer's thread: an export runtime exports
    the model then (seconds, minutes for INT8 calibration), where Ctrl-C can stop it. Errors raised by
    the detector or the source are re-raised in the consumer.

    A PyTorch detector on the CPU (``detector.torch_cpu``) stays in the consumer's thread. PyTorch's
    CPU threads are an OpenMP pool per calling thread; with a second pool (the detection thread's
    next to the one the model was loaded in) libgomp holds more threads than there are cores and
    throttles its workers' spin-wait (GCC's libgomp manual, ``GOMP_SPINCOUNT``), so every layer's
    parallel region waits for a sleeping worker, which costs more than the overlap gains
    (``docs/benchmarks.md``).

    Yields:
        ``(frame, detections, read_ms, detect_ms)``: the time spent waiting for the decoded frame and
        the detector's own time, ms.
    """

    def timed(it: Iterator[Frame]) -> Iterator[tuple[Frame, Detections, float, float]]:
        while True:
            t0 = time.perf_counter()
            frame = next(it, None)
            if frame is None:
                return
            t1 = time.perf_counter()
            dets = detector(frame.image)
            yield frame, dets, (t1 - t0) * 1000.0, (time.perf_counter() - t1) * 1000.0

    it = iter(frames)
    yield from itertools.islice(timed(it), 1)
    if getattr(detector, "torch_cpu", False):  # see above: one OpenMP pool
        yield from timed(it)
        return
    ahead = prefetch(timed(it), depth=1)
    try:
        yield from ahead
    finally:
        ahead.close()


def run(cfg: RunConfig, embedder: Embedder | None = None, detector: Detector | None = None) -> RunSummary:
    """Track ``cfg.source`` and write the configured outputs.

    Args:
        cfg: the run configuration.
        embedder: a ready embedder (default: built from ``cfg.embedder``).
        detector: a ready detector (default: built from ``cfg.detector``).

    Returns:
        The run summary; ``interrupted`` is True when stopped by Ctrl-C (``KeyboardInterrupt``).

    Raises:
        UserError: bad source, an output that is an input or shared, model loading problems.
        WriteError: an output could not be written (disk full, I/O error); its ``summary`` is the run's.
    """
    summary: list[RunSummary] = []
    it = frames(cfg, embedder, detector, summary)
    try:
        for _ in it:
            pass
    except KeyboardInterrupt as exc:  # Ctrl-C landed here, between two frames: the run handles it as its own
        with contextlib.suppress(StopIteration):
            it.throw(exc)  # a generator that already ended re-raises it
    return summary[0]


def frames(
    cfg: RunConfig,
    embedder: Embedder | None = None,
    detector: Detector | None = None,
    summary: list[RunSummary] | None = None,
) -> Generator[tuple[int, np.ndarray, np.ndarray], None, None]:
    """:func:`run`, yielding ``(frame_index, image, tracks)`` after each frame is written: the 1-based
    index, the (H, W, 3) uint8 BGR image and the (M, 8) float32 tracks of
    :meth:`mot_dinov3.api.MultiObjectTracker.update`. Outputs are closed when the generator ends or is
    closed; the run summary is appended to ``summary`` (when given).

    Raises:
        UserError: as :func:`run`.
    """
    out = cfg.output
    source: FrameSource | ImageFrames
    if isinstance(cfg.source, (str, Path)):
        source = FrameSource(cfg.source)
    else:  # any iterable of images, at the output fps (default 30)
        source = ImageFrames(cfg.source, out.fps or 30.0)
    check_method(cfg.tracker.gmc_method)  # before models load
    clear_dangling_altstack()  # an OpenVINO model released before this run must not crash its Ctrl-C
    check_outputs({"output": out.video, "save_mot": out.mot_txt, "save_json": out.json, "report": out.report}, source)
    codec = resolve_codec(out.video, out.codec) if out.video else None  # h264 asked for but missing: fails here
    # the detector loads first: a wrong --det fails in a second, before a large embedding model loads
    capture = (  # an ensemble captures when a part reads features
        embedder.uses_detector_features
        if embedder is not None
        else embedder_traits(cfg.embedder.name, cfg.embedder.model)[1]
    )
    detector = detector or Detector(replace(cfg.detector, capture_features=capture))
    embedder = embedder or create_embedder(cfg.embedder)  # None: --embedder none, motion only
    mot = MultiObjectTracker(embedder, tracker_config=cfg.tracker, scheduler=cfg.scheduler, fps=source.fps)
    style = DrawStyle(out.line_thickness, out.font_scale)

    video: VideoWriter | None = None
    mot_txt: MotWriter | None = None
    failures: list[WriteError] = []  # outputs that could not be written (the run stops at the first)
    timer = StageTimer()
    ids: set[int] = set()
    record = RunRecord() if out.report else None  # per-frame counts for the report page
    interrupted = False
    total = min(filter(None, (source.length, cfg.max_frames)), default=None)
    bar = tqdm(total=total, unit="frame", disable=not out.progress, dynamic_ncols=True)
    decoded = prefetch(source)  # decoding overlaps detection
    detected = detect_ahead(itertools.islice(decoded, cfg.max_frames), detector)  # detection overlaps the rest
    detector_ms = array("d")  # the detector's own ms per frame (8 bytes a frame, as the stage timer)
    try:
        if out.video:
            size = (source.width, source.height)
            video = VideoWriter(out.video, out.fps or source.fps, size, codec or "auto", background=True)
        if out.mot_txt:
            mot_txt = MotWriter(out.mot_txt)
        while True:
            t0 = time.perf_counter()
            item = next(detected, None)
            if item is None:
                break
            frame, dets, read_ms, detect_ms = item
            waited = (time.perf_counter() - t0) * 1000.0  # split: the thread's wait for decoding first
            timer.add("read", min(waited, read_ms))
            timer.add("detect", waited - min(waited, read_ms))
            detector_ms.append(detect_ms)
            before, computed = dict(mot.stats.ms), mot.stats.embeddings_computed
            tracks = mot.step(dets.xyxy, dets.conf, dets.cls, frame.image, dets.feats, include_lost=out.draw_lost)
            for stage in ("embed", "track"):
                timer.add(stage, mot.stats.ms[stage] - before[stage])
            shown = [t for t in tracks if t.state == TrackState.CONFIRMED]
            ids.update(t.track_id for t in shown)
            if video:
                with timer.stage("draw"):
                    annotated = draw_tracks(frame.image, tracks, style)
            with timer.stage("write"):
                # the wait for the encoder first, where Ctrl-C most often lands: nothing is written yet;
                # then the MOT txt: a frame it could not take is not in the video either
                try:
                    if video:
                        video.reserve()
                    if mot_txt:
                        mot_txt.write(
                            frame.index,
                            np.array([t.track_id for t in shown]),
                            np.array([t.xyxy for t in shown]).reshape(-1, 4),
                            np.array([t.conf for t in shown]),
                        )
                    if video:
                        video.write(annotated)
                except WriteError as exc:
                    failures.append(exc)
            if failures:
                break
            timer.end_frame()
            if record is not None:
                record.add_frame(
                    frame.index,
                    len(dets.xyxy),
                    mot.stats.embeddings_computed - computed,
                    [(t.track_id, t.embedded_now) for t in shown],
                )
            bar.update(1)
            yield (
                frame.index,
                frame.image,
                np.array([[*t.xyxy, t.track_id, t.conf, t.cls, t.det_index] for t in shown], np.float32).reshape(-1, 8),
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        detected.close()  # stops the detection thread, then the decoding thread, before the source is closed
        decoded.close()
        source.close()
        for writer in (mot_txt, video):  # finished frames kept; nothing written: an earlier file stays
            if writer is not None:
                try:
                    writer.close()
                except WriteError as exc:
                    failures.append(exc)

    scheduler = mot.scheduler
    named = (("video", out.video), ("mot_txt", out.mot_txt), ("json", out.json), ("report", out.report))
    outputs = {k: v for k, v in named if v}
    settings = {
        "source": str(cfg.source) if isinstance(source, FrameSource) else "<frames>",
        "embedder": embedder.name if embedder else "none",
        "detector": asdict(cfg.detector),
        "scheduler": {**asdict(mot.scheduler_config), "lazy": mot.lazy},  # None resolved
        "tracker": asdict(cfg.tracker),
        "fps": source.fps,
    }
    counts = (scheduler.computed_total, scheduler.reused_total) if scheduler else (0, 0)
    result = summarize(
        timer,
        *counts,
        len(ids),
        interrupted,
        outputs,
        settings,
        scheduler.reasons_total if scheduler else None,
        scheduler.refresh_ms if scheduler else None,
        detector_ms,
        not getattr(detector, "torch_cpu", False),  # as detect_ahead decided
    )
    if out.json:
        try:
            write_atomic(out.json, json.dumps(result.to_dict(), indent=2), "save_json")
        except WriteError as exc:
            failures.append(exc)
    if out.report and record is not None:
        notes = [f"Interrupted after {result.frames} frames."] if interrupted else []
        notes += [f"Not written: {exc}" for exc in failures]
        page = ReportData(
            record,
            timer.per_stage,
            result.to_dict(),
            out.fps or source.fps,
            title=f"mot-dinov3: {source.name}",
            video=Path(video.path) if video is not None and video.written else None,
            video_codec=video.codec if video is not None else None,
            notes=notes,
        )
        try:
            write_report(out.report, page)
        except WriteError as exc:
            failures.append(exc)
    if summary is not None:
        summary.append(result)
    if failures:
        error = failures[0] if len(failures) == 1 else WriteError("; ".join(map(str, failures)))
        error.summary = result
        raise error from failures[0].__cause__
