"""A batch on local worker processes (``workers > 1``): a ``ProcessPoolExecutor`` of spawned processes.

Each worker loads the models once in the pool's initializer and runs one source at a time; at most
``workers`` sources are handed out at once, so a stopping batch leaves the rest ``pending``. A worker
process that dies (out of memory, killed) fails the sources it was running and the batch goes on in
a new pool.

The workers ignore Ctrl-C between sources. On Ctrl-C (or SIGTERM / SIGHUP turned into it) the batch
sets a shared stop event and sends SIGINT to every worker: a running source is interrupted and
closes its outputs; a second Ctrl-C terminates the workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from dataclasses import replace
from typing import Any

from mot_dinov3.batch.jobs import FAILED, INTERRUPTED, Job, ModelLoadError, SourceResult, load_models, one_line, run_job
from mot_dinov3.config import RunConfig

Report = Callable[[Job, SourceResult], None]
DIED = "a worker process died while running it (out of memory? killed?)"

_WORKER: dict[str, Any] = {}  # in a worker process only: its config, stop event, models or load error


def _init_worker(cfg: RunConfig, stop: Any, threads: int) -> None:
    """Pool initializer: load the models once for this worker process (Ctrl-C is ignored between sources)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)
    _WORKER.update(cfg=replace(cfg, output=replace(cfg.output, progress=False)), stop=stop)
    try:
        _WORKER["models"] = load_models(cfg.detector, cfg.embedder)
    except Exception as exc:
        _WORKER["error"] = one_line(exc)


def _interrupt_once(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second SIGINT (terminal and batch) is not a second interrupt
    raise KeyboardInterrupt


def _pool_task(job: Job) -> SourceResult | str:
    """Run ``job`` in a worker: its result, or the models' load error (a string)."""
    if "error" in _WORKER:
        return str(_WORKER["error"])
    if _WORKER["stop"].is_set():
        return SourceResult(job.source, job.name)  # pending: the batch is stopping
    signal.signal(signal.SIGINT, _interrupt_once)
    try:
        return run_job(job, _WORKER["cfg"], _WORKER["models"])
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_pool(jobs: list[Job], cfg: RunConfig, workers: int, report: Report) -> bool:
    """Run ``jobs`` on ``workers`` spawned processes (a new pool when a worker dies); ``True`` when interrupted."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = deque(jobs)
    while queue and not stop.is_set():
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg, stop, threads)
        ) as pool:
            _drive_pool(pool, queue, workers, stop, report)
    return stop.is_set()


def _drive_pool(pool: ProcessPoolExecutor, queue: deque[Job], workers: int, stop: Any, report: Report) -> None:
    running: dict[Future, Job] = {}
    broken = False

    def halt() -> None:  # no new sources; the running ones are interrupted and close their outputs
        stop.set()
        for pid in list(getattr(pool, "_processes", None) or {}):
            with suppress(OSError):
                os.kill(pid, signal.SIGINT)

    while running or (queue and not broken and not stop.is_set()):
        try:
            while queue and not broken and not stop.is_set() and len(running) < workers:
                job = queue.popleft()
                running[pool.submit(_pool_task, job)] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                result = _pool_result(future, job, stop.is_set())
                if isinstance(result, str):
                    halt()
                    raise ModelLoadError(result)
                broken = broken or result.error == DIED
                report(job, result)
                if result.status == INTERRUPTED and not stop.is_set():
                    halt()
        except KeyboardInterrupt:
            if not stop.is_set():
                halt()
                continue
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()  # a second Ctrl-C: now
            pool.shutdown(wait=False, cancel_futures=True)
            for job in running.values():
                report(job, SourceResult(job.source, job.name, INTERRUPTED))
            return


def _pool_result(future: Future, job: Job, stopping: bool) -> SourceResult | str:
    try:
        return future.result()
    except BrokenProcessPool:  # INTERRUPTED when the batch is stopping (a worker ended by the interrupt)
        return SourceResult(job.source, job.name, INTERRUPTED if stopping else FAILED, error="" if stopping else DIED)
    except KeyboardInterrupt:
        return SourceResult(job.source, job.name, INTERRUPTED)
