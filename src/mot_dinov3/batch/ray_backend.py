"""A batch on Ray (``backend='ray'``): one task per source.

Each task requests ``num_cpus`` CPUs and ``num_gpus`` GPUs (by default 1 when the device is CUDA);
Ray then runs as many at once as the cluster fits (or ``workers``). The models are loaded once per
Ray worker process (:func:`_cached_models`, a per-process cache keyed by the model settings) and kept
for the next task that process runs. The source paths and the output folder must be reachable from
every node (a shared file system) under the same absolute paths.
"""

from __future__ import annotations

import functools
import logging
import pickle
import signal
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any

from mot_dinov3.batch.jobs import (
    FAILED,
    INTERRUPTED,
    Job,
    ModelLoadError,
    Models,
    SourceResult,
    load_models,
    one_line,
    read_result,
    run_job,
)
from mot_dinov3.config import RunConfig
from mot_dinov3.errors import UserError

RAY_HINT = "pip install 'mot-dinov3[ray]'"
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))
Report = Callable[[Job, SourceResult], None]


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UserError(f"backend='ray' needs the ray package, which is not installed: {RAY_HINT}") from exc
    return ray


@functools.lru_cache(maxsize=1)
def _cached_models(key: bytes) -> Models:
    """The models of the pickled ``(DetectorConfig, EmbedderConfig)`` ``key``, once per Ray worker process."""
    return load_models(*pickle.loads(key))


def _ray_task(cfg: RunConfig, key: bytes, job: Job) -> SourceResult | str:
    """Run ``job`` in a Ray worker: its result, or the models' load error (a string)."""
    try:
        models = _cached_models(key)
    except Exception as exc:
        return one_line(exc)
    return run_job(job, cfg, models)


def _stopped(job: Job) -> SourceResult:
    """A cancelled task's result: what its ``summary.json`` says (``interrupted``, with its numbers), else ``pending``."""
    result = read_result(Path(job.folder), job.source, job.name)
    return result if result is not None and result.status == INTERRUPTED else SourceResult(job.source, job.name)


def _ray_resources(cfg: RunConfig, gpus: float | None) -> tuple[RunConfig, float]:
    """The GPUs a task requests, and ``cfg`` with ``cuda:N`` as ``cuda`` (Ray gives each task its own GPUs)."""
    device = cfg.detector.device or cfg.embedder.device
    if gpus is None:
        if device is None:
            import torch

            gpus = 1.0 if torch.cuda.is_available() else 0.0
        else:
            gpus = 1.0 if device.startswith("cuda") else 0.0
    if device and device.startswith("cuda"):
        cfg = replace(cfg, detector=replace(cfg.detector, device="cuda"), embedder=replace(cfg.embedder, device="cuda"))
    return cfg, gpus


def run_ray(
    jobs: list[Job],
    cfg: RunConfig,
    workers: int | None,
    address: str | None,
    cpus: float,
    gpus: float | None,
    report: Report,
) -> bool:
    """One Ray task per job, at most ``workers`` at once; ``True`` when interrupted."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        handlers = {s: signal.getsignal(s) for s in _SIGNALS}
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(
                f"ray_address={address!r}: cannot start or join Ray ({one_line(exc)}); start a cluster on the "
                "head node ('ray start', head option) and pass ray_address='auto', or leave ray_address out"
            ) from exc
        with suppress(ValueError, TypeError):  # not the main thread; a handler not set from Python
            for s, handler in handlers.items():
                signal.signal(s, handler)  # Ray's own SIGTERM handler aborts: the batch's interrupt handling again
    cfg, gpus = _ray_resources(replace(cfg, output=replace(cfg.output, progress=False)), gpus)
    task = ray.remote(_ray_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    cfg_ref, key = ray.put(cfg), pickle.dumps((cfg.detector, cfg.embedder))
    queue: deque[Job] = deque(jobs)
    running: dict[Any, Job] = {}
    stopping = False
    try:
        while running or (queue and not stopping):
            while queue and not stopping and len(running) < (workers or len(jobs)):
                job = queue.popleft()
                running[task.remote(cfg_ref, key, job)] = job
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                job = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    result = _stopped(job)
                except ray.exceptions.RayError as exc:  # the worker died, the node went away ...
                    result = SourceResult(job.source, job.name, FAILED, error=one_line(exc))
                if isinstance(result, str):
                    for other in running:
                        ray.cancel(other)
                    raise ModelLoadError(result)
                report(job, result)
                if result.status == INTERRUPTED and not stopping:
                    stopping = True
                    for other in running:
                        ray.cancel(other)
    except KeyboardInterrupt:
        stopping = True
        for ref in running:
            ray.cancel(ref)  # KeyboardInterrupt in the task: the source closes its outputs
        if running:  # a moment to write what they have
            ray.wait(list(running), num_returns=len(running), timeout=30)
        for job in running.values():  # what the task wrote before it stopped; pending: it had not started
            report(job, _stopped(job))
    finally:
        if started:
            ray.shutdown()
    return stopping
