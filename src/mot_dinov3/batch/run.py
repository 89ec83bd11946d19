"""Run a batch: sources in this process, in local worker processes, or as Ray tasks.

Each worker process loads the detector and the embedder once and runs its sources one after the other
with them; every source gets a fresh tracker and scheduler (:func:`mot_dinov3.pipeline.run` builds
them). The batch summary is rewritten (atomically) after each source, in this process only.

Interrupts: Ctrl-C (or SIGTERM / SIGHUP, which the CLI turns into it) stops the batch. The sources
being run are interrupted in their workers, which close their outputs (a playable video, every
finished frame) and record them ``interrupted``; sources not started stay ``pending``. A second
Ctrl-C while local workers finish stops them at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from mot_dinov3.batch.jobs import (
    CSV_NAME,
    FAILED,
    INTERRUPTED,
    OK,
    PENDING,
    SKIPPED,
    Job,
    Models,
    SourceResult,
    load_models,
    previous_result,
    run_job,
    write_batch_summary,
)
from mot_dinov3.batch.local import run_pool
from mot_dinov3.batch.ray_backend import import_ray, run_ray
from mot_dinov3.batch.sources import expand_sources
from mot_dinov3.config import RunConfig
from mot_dinov3.detector import resolve_weights
from mot_dinov3.errors import UserError

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
Report = Callable[[Job, SourceResult], None]


@dataclass
class BatchResult:
    """What a batch did.

    Attributes:
        out_dir: the output folder (absolute).
        results: one per source, in batch order.
        interrupted: stopped by Ctrl-C (some sources may be ``pending``).
    """

    out_dir: Path
    results: list[SourceResult] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if r.status == FAILED]

    def counts(self) -> dict[str, int]:
        """Sources per status, statuses that occur only."""
        statuses = (OK, SKIPPED, FAILED, INTERRUPTED, PENDING)
        return {s: n for s in statuses if (n := sum(r.status == s for r in self.results))}

    def text(self) -> str:
        """One line per source, then the counts and where the summary is."""
        width = max((len(r.name) for r in self.results), default=4)
        lines = []
        for r in self.results:
            numbers = f"{r.frames} frames, {r.tracks} tracks, {r.fps:.1f} fps, {r.seconds:.1f} s"
            lines.append(f"{r.status:<11} {r.name:<{width}}  {r.error or ('' if r.status == PENDING else numbers)}")
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        n = len(self.results)
        lines.append(f"{n} source{'s' * (n != 1)}: {counts}; summary: {self.out_dir / CSV_NAME}")
        return "\n".join(lines)


def run_batch(
    sources: Iterable[str | Path],
    out_dir: str | Path,
    base_cfg: RunConfig,
    workers: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    skip_existing: bool = False,
    ray_cpus: float = 1.0,
    ray_gpus: float | None = None,
) -> BatchResult:
    """Track every source of ``sources`` (:func:`~mot_dinov3.batch.sources.expand_sources`) into its own
    folder of ``out_dir`` with the settings of ``base_cfg`` (its ``source`` and output paths are
    replaced; ``output.video=None``: no video; ``output.progress``: the progress bars).

    Args:
        workers: local: worker processes (default 1: this process); ray: most tasks at once (default:
            as many as the cluster's resources allow).
        backend: ``local`` or ``ray`` (one Ray task per source; out_dir and the sources must be
            reachable from every node).
        ray_address: the cluster to join (``auto``: the one ``ray start --head`` started here); default:
            an initialised Ray, else a local one started for the batch and stopped after.
        skip_existing: skip the sources whose ``summary.json`` says ``ok`` (they are listed as
            ``skipped`` with that run's numbers); the settings are not compared.
        ray_cpus: CPUs each Ray task requests.
        ray_gpus: GPUs each Ray task requests (default: 1 when the device is CUDA, else 0).

    Returns:
        The :class:`BatchResult`; a failing source is in it as ``failed`` (the batch goes on).

    Raises:
        UserError: bad arguments (no sources, ``out_dir`` a file, workers < 1, ray not installed or
            not reachable), or models that cannot be loaded.
        WriteError: the batch summary cannot be written.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend={backend!r}: unknown; use one of {', '.join(BACKENDS)}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise UserError(f"workers={workers!r}: must be an integer >= 1")
    if ray_address and backend != "ray":
        raise UserError(f"ray_address={ray_address!r} needs backend='ray'")
    if backend == "ray":
        import_ray()
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise UserError(f"out_dir={str(out_dir)!r}: is a file; pass a folder (created when missing)")
    items = expand_sources(sources, exclude=[out])
    if not items:
        raise UserError("sources: none given (an empty list file?); pass videos, folders, globs or .txt lists")
    _make_folder(out, out_dir)
    cfg = _portable(base_cfg)
    batch = BatchResult(
        out, [SourceResult(s.path, s.name, FAILED if s.error else PENDING, error=s.error) for s in items]
    )
    jobs = []
    for i, s in enumerate(items):
        previous = previous_result(out / s.name, s.path, s.name) if skip_existing and not s.error else None
        if previous is not None:
            batch.results[i] = previous
        elif not s.error:
            jobs.append(Job(i, s.path, str(Path(s.path).resolve()), s.name, str(out / s.name)))
    bar = tqdm(total=len(items), initial=len(items) - len(jobs), unit="source", disable=not cfg.output.progress)

    def report(job: Job, result: SourceResult) -> None:
        batch.results[job.index] = result
        if result.status == FAILED:
            log.warning("%s failed: %s", job.source, result.error)
        write_batch_summary(out, batch.results, batch.interrupted)
        bar.update(result.status != PENDING)

    write_batch_summary(out, batch.results, False)
    try:
        if not jobs:
            pass
        elif backend == "ray":
            batch.interrupted = run_ray(jobs, cfg, workers, ray_address, ray_cpus, ray_gpus, report)
        elif (workers or 1) == 1:
            batch.interrupted = _run_here(jobs, cfg, report)
        else:
            batch.interrupted = run_pool(jobs, cfg, workers or 1, report)
    except KeyboardInterrupt:  # outside a source (between two, writing the summary)
        batch.interrupted = True
    finally:
        bar.close()
    write_batch_summary(out, batch.results, batch.interrupted)
    return batch


def _make_folder(p: Path, given: str | Path) -> None:
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"out_dir={str(given)!r}: cannot create it ({exc.strerror or exc}); choose another") from exc


def _portable(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its model paths absolute (workers may start elsewhere), the detector's looked up
    in ``$MOT_DINOV3_WEIGHTS`` here. Raises UserError for a missing detector file."""

    def absolute(model: str | None) -> str | None:
        return str(Path(model).resolve()) if model and Path(model).exists() else model

    return replace(
        cfg,
        detector=replace(cfg.detector, model=absolute(resolve_weights(cfg.detector.model)) or cfg.detector.model),
        embedder=replace(cfg.embedder, model=absolute(cfg.embedder.model)),
    )


def _run_here(jobs: list[Job], cfg: RunConfig, report: Report) -> bool:
    """Run ``jobs`` in this process; ``True`` when interrupted. Raises the models' UserError."""
    models: Models | None = None
    for job in jobs:
        try:
            models = models or load_models(cfg.detector, cfg.embedder)
            result = run_job(job, cfg, models)
        except KeyboardInterrupt:
            result = SourceResult(job.source, job.name, INTERRUPTED)
        report(job, result)
        if result.status == INTERRUPTED:
            return True
    return False
