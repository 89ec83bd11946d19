"""Stage timing and the run summary (text and JSON)."""

from __future__ import annotations

import time
from array import array
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

STAGES = ("read", "detect", "embed", "track", "draw", "write")


class StageTimer:
    """Accumulates per-stage wall time (ms) for each frame.

    Usage: ``with timer.stage("detect"): ...`` inside the frame loop, then :meth:`end_frame`.
    Memory grows by one 8-byte float per stage per frame (48 MB per million frames for six stages).
    """

    def __init__(self, stages: tuple[str, ...] = STAGES):
        self.stages = stages
        self.per_stage: dict[str, array] = {s: array("d") for s in stages}  # ms per frame
        self._current = dict.fromkeys(stages, 0.0)

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._current[name] += (time.perf_counter() - t0) * 1000.0

    def add(self, name: str, ms: float) -> None:
        """Add ``ms`` measured elsewhere to this frame's ``name`` stage."""
        self._current[name] += ms

    def end_frame(self) -> None:
        for s in self.stages:
            self.per_stage[s].append(self._current[s])
        self._current = dict.fromkeys(self.stages, 0.0)

    @property
    def frames(self) -> int:
        return len(self.per_stage[self.stages[0]])

    def frame_totals(self) -> np.ndarray:
        """(F,) float64 ms per frame, all stages."""
        return np.sum([self.per_stage[s] for s in self.stages], axis=0) if self.frames else np.zeros(0)


@dataclass
class RunSummary:
    """Numbers printed at the end of a run and written by ``--save-json``. Times in ms."""

    frames: int
    fps: float
    latency_mean_ms: float
    latency_p50_ms: float
    latency_p95_ms: float
    stage_mean_ms: dict[str, float]
    stage_percent: dict[str, float]
    embeddings_computed: int
    embeddings_per_frame: float
    embeddings_reused: int
    tracks: int
    interrupted: bool = False
    embed_decisions: dict[str, int] = field(default_factory=dict)  # scheduler reason -> detections ("memory": looks)
    refresh_p95_ms: float = 0.0  # 95th percentile over frames of refresh embedding time (what --embed-budget-ms caps)
    detector_ms: float = 0.0  # the detector's own mean time per frame (ahead of the loop, ``detect`` is the wait)
    detected_ahead: bool = True  # the detector ran one frame ahead in a thread (not PyTorch on a CPU)
    outputs: dict[str, str] = field(default_factory=dict)
    settings: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def _scheduler_mode(self) -> str:
        """`` (lazy memory)``, `` (refresh rules)`` or `` (embed-all)`` from the run's settings; ``""`` if unknown."""
        sched = self.settings.get("scheduler")
        if not isinstance(sched, dict) or self.settings.get("embedder") == "none":
            return ""
        if sched.get("embed_all"):
            return " (embed-all)"
        return " (lazy memory)" if sched.get("lazy") else " (refresh rules)"

    def text(self) -> str:
        lines = [
            f"Frames: {self.frames}{' (interrupted)' if self.interrupted else ''}   tracks: {self.tracks}",
            f"Effective FPS: {self.fps:.2f}",
            f"Latency per frame: mean {self.latency_mean_ms:.1f} ms | p50 {self.latency_p50_ms:.1f} ms"
            f" | p95 {self.latency_p95_ms:.1f} ms",
            "Stages (mean ms, %): "
            + " | ".join(f"{s} {self.stage_mean_ms[s]:.1f} ({self.stage_percent[s]:.0f}%)" for s in self.stage_mean_ms),
            f"Embeddings: computed {self.embeddings_computed} ({self.embeddings_per_frame:.2f}/frame), "
            f"reused {self.embeddings_reused}{self._scheduler_mode()}",
        ]
        if self.detector_ms:
            where = "one frame ahead of the other stages" if self.detected_ahead else "in the loop's thread"
            lines.insert(4, f"Detector: {self.detector_ms:.1f} ms a frame, {where}")
        lines += [f"{k}: {v}" for k, v in self.outputs.items()]
        return "\n".join(lines)


def summarize(
    timer: StageTimer,
    computed: int,
    reused: int,
    tracks: int,
    interrupted: bool = False,
    outputs: dict[str, str] | None = None,
    settings: dict | None = None,
    decisions: dict[str, int] | None = None,
    refresh_ms=None,
    detector_ms=None,
    detected_ahead: bool = True,
) -> RunSummary:
    """Build the :class:`RunSummary` from the timer and the embedding counters (``refresh_ms``: the
    scheduler's per-frame refresh time, ms; ``detector_ms``: the detector's own time per frame, ms;
    ``detected_ahead``: it ran one frame ahead in a thread)."""
    totals = timer.frame_totals()
    n = len(totals)
    total_ms = float(totals.sum())
    means = {s: float(np.mean(v)) if v else 0.0 for s, v in timer.per_stage.items()}
    pct = {s: (100.0 * float(np.sum(v)) / total_ms if total_ms else 0.0) for s, v in timer.per_stage.items()}
    return RunSummary(
        frames=n,
        fps=n / (total_ms / 1000.0) if total_ms else 0.0,
        latency_mean_ms=float(totals.mean()) if n else 0.0,
        latency_p50_ms=float(np.percentile(totals, 50)) if n else 0.0,
        latency_p95_ms=float(np.percentile(totals, 95)) if n else 0.0,
        stage_mean_ms=means,
        stage_percent=pct,
        embeddings_computed=computed,
        embeddings_per_frame=computed / n if n else 0.0,
        embeddings_reused=reused,
        tracks=tracks,
        interrupted=interrupted,
        embed_decisions=dict(decisions or {}),
        refresh_p95_ms=float(np.percentile(refresh_ms, 95)) if refresh_ms is not None and len(refresh_ms) else 0.0,
        detector_ms=float(np.mean(detector_ms)) if detector_ms is not None and len(detector_ms) else 0.0,
        detected_ahead=detected_ahead,
        outputs=outputs or {},
        settings=settings or {},
    )
