"""Carrying out a plan: :class:`EmbeddingScheduler` embeds what a frame's plan asks for.

:meth:`EmbeddingScheduler.run` embeds the critical crops in one batch, then admits refresh crops one
chunk at a time while the chunk's predicted cost (:class:`CallCost`: near the call's 95th
percentile) fits in what is left of ``budget_ms`` (0 = unlimited). Only refresh work counts
against the budget; the embedder is synchronised (CUDA) around every timed call. A refresh that does
not fit is served from cache and its track stays in the backlog; backlog entries of tracks that are
no longer active are dropped. With ``--embed-lazy`` it also keeps the
:class:`~mot_dinov3.scheduler.lazy.LookBuffer` and embeds the looks of the tracks the plan flushes.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mot_dinov3.config import SchedulerConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import CropEmbedder, Embedder
from mot_dinov3.scheduler.lazy import LookBuffer, near_lost_verdicts, plan_lazy
from mot_dinov3.scheduler.plan import CRITICAL, SKIP, EmbedPlan, TrackLike, plan_actions

REFRESH_CHUNK = 4  # largest refresh batch admitted at once against the budget
DEVIATIONS = 2.0  # a call is predicted at its fitted cost + 2 mean deviations: about its 95th percentile


class CallCost:
    """What an embedder call of ``k`` crops costs, in ms: a fixed overhead plus a cost per crop,
    ``ms = a + b * k``, fitted by exponentially weighted least squares over every call (critical or
    refresh) at weight ``alpha``, plus the moving mean absolute deviation of the calls from the fit, as
    TCP estimates its retransmission timeout (Jacobson 1988; RFC 6298: smoothed RTT and RTTVAR).

    :meth:`predict` is the fit plus :data:`DEVIATIONS` deviations. For normally distributed costs the
    mean absolute deviation is about 0.8 standard deviations, so the prediction sits near a call's 95th
    percentile: admitting a call only when its prediction fits keeps about 95% of frames within the
    budget, which a plain mean (exceeded by about half the calls) does not. The overhead term is why a
    crop costs more in a small refresh call than in a large critical batch. While the recent calls all
    had one size (or the fit's overhead comes out negative) the cost is taken as proportional to ``k``.
    """

    def __init__(self, alpha: float):
        self.alpha = alpha
        self.moments: np.ndarray | None = None  # moving E[k], E[ms], E[k^2], E[k * ms]
        self.dev = 0.0

    def fit(self) -> tuple[float, float] | None:
        """``(a, b)``: overhead and ms per crop of the current fit; ``None`` before any call."""
        if self.moments is None:
            return None
        k, ms, kk, kms = self.moments
        var = kk - k * k
        if var > 1e-6 * kk:
            b = (kms - k * ms) / var
            a = ms - b * k
            if a >= 0 and b >= 0:
                return float(a), float(b)
        return 0.0, float(ms / k)

    def add(self, k: int, ms: float) -> None:
        """Record one call of ``k`` crops that took ``ms`` milliseconds."""
        x = np.array([k, ms, k * k, k * ms], np.float64)
        fit = self.fit()
        if fit is None or self.moments is None:
            self.moments = x
            return
        a = self.alpha
        self.dev = (1 - a) * self.dev + a * abs(ms - (fit[0] + fit[1] * k))
        self.moments = (1 - a) * self.moments + a * x

    def predict(self, k: int) -> float | None:
        """Predicted ms of a call of ``k`` crops (about its 95th percentile); ``None`` before any call."""
        fit = self.fit()
        return None if fit is None else fit[0] + fit[1] * k + DEVIATIONS * self.dev


@dataclass
class Embeddings:
    """Result of :meth:`EmbeddingScheduler.run`.

    Attributes:
        vectors: (N, D) float32 L2-normalised, one per detection; rows of ``SKIP`` detections and
            ``None`` when there are no detections with an embedding.
        computed: (N,) bool, True where the embedding was computed this frame.
        known: (N,) bool, rows of ``vectors`` that hold an embedding (computed or reused from cache).
        critical_ms: wall time of the critical batch, ms.
        refresh_ms: wall time of refresh work, ms (what the budget limits).
        deferred: refresh candidates served from cache because the budget was spent.
        memory: lazy: ``{track_id: (frames (K,) int64, vectors (K, D) float32)}``, buffered looks embedded
            this frame, for :meth:`mot_dinov3.tracker.Tracker.update_appearance`.
    """

    vectors: np.ndarray | None
    computed: np.ndarray
    known: np.ndarray
    critical_ms: float = 0.0
    refresh_ms: float = 0.0
    deferred: int = 0
    memory: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class EmbeddingScheduler:
    """Stateful half of the scheduler: the embedder's cost per call, the refresh backlog, lazy memory's crop buffer
    and the counters.

    Args:
        cfg: scheduler settings.
        embedder: any :class:`~mot_dinov3.features.base.Embedder`.
        clock: seconds counter (``time.perf_counter``); replaceable in tests.

    Attributes:
        call_cost: the embedder's cost per call (:class:`CallCost`), from every call, critical or
            refresh: critical calls keep it current when the budget admits no refresh.
        backlog: ``{track_id: last_embed_frame}`` of tracks whose refresh was deferred.
        buffer: lazy: the :class:`~mot_dinov3.scheduler.lazy.LookBuffer` of clean looks not yet embedded.
        cleared: lazy: ``{(track_id, lost_track_id): frame}``, near_lost pairs last seen far apart
            (:func:`~mot_dinov3.scheduler.lazy.near_lost_verdicts`).
        computed_total / reused_total: counters over the run (``computed_total`` includes looks embedded).
        refresh_ms: per frame run, the wall time of refresh work, ms (what ``budget_ms`` bounds).
        reasons_total: detections per plan reason; ``memory`` counts looks embedded.

    Raises:
        UserError: ``cfg.lazy`` True with a backend that cannot embed crops later (not a
            :class:`~mot_dinov3.features.base.CropEmbedder`); with ``None`` such a backend gets the
            refresh rules.
    """

    def __init__(self, cfg: SchedulerConfig, embedder: Embedder, clock: Callable[[], float] = time.perf_counter):
        self.cfg = cfg
        self.embedder = embedder
        self.clock = clock
        can_buffer = isinstance(embedder, CropEmbedder)
        if cfg.lazy and not cfg.embed_all and not can_buffer:
            raise UserError(
                f"embed_lazy=True: the {embedder.name} backend cannot embed buffered crops; "
                "use embedder='dino', embedder='clip' or embedder='onnx', or drop embed_lazy=True"
            )
        self.lazy = (can_buffer if cfg.lazy is None else cfg.lazy) and not cfg.embed_all
        self.call_cost = CallCost(cfg.ema_alpha)
        self.backlog: dict[int, int] = {}
        self.buffer = LookBuffer(cfg.lazy_window, cfg.look_overlap_thr)
        self.cleared: dict[tuple[int, int], int] = {}
        self._lost_memory: dict[int, np.ndarray] = {}
        self.computed_total = 0
        self.reused_total = 0
        self.reasons_total: dict[str, int] = {}
        self.refresh_ms = array("d")

    def plan(
        self,
        frame: int,
        det_xyxy: np.ndarray,
        tracks: Sequence[TrackLike],
        candidates: np.ndarray | None = None,
        reach: np.ndarray | None = None,
    ) -> EmbedPlan:
        """Plan this frame (:func:`plan_actions`, or :func:`plan_lazy` with ``cfg.lazy``, which also reads
        ``reach``); drop backlog entries of inactive tracks, and buffered looks and cleared near_lost pairs
        of tracks gone."""
        active = {t.track_id for t in tracks if not t.lost}
        self.backlog = {tid: f for tid, f in self.backlog.items() if tid in active}
        alive = {t.track_id for t in tracks}
        if self.lazy:
            self.buffer.keep_only(alive)
            self.cleared = {k: f for k, f in self.cleared.items() if k[0] in active and k[1] in alive}
            self._lost_memory = {t.track_id: t.embedding for t in tracks if t.lost and t.embedding is not None}
            plan = plan_lazy(det_xyxy, tracks, frame, self.cfg, candidates, self.cleared, reach)
        else:
            plan = plan_actions(det_xyxy, tracks, frame, self.cfg, candidates)
        for r in plan.reasons:
            self.reasons_total[r] = self.reasons_total.get(r, 0) + 1
        return plan

    def run(
        self, plan: EmbedPlan, image: np.ndarray, det_xyxy: np.ndarray, det_feats: np.ndarray | None = None
    ) -> Embeddings:
        """Carry out ``plan`` on one frame.

        Args:
            plan: from :meth:`plan`.
            image: (H, W, 3) uint8 BGR frame.
            det_xyxy: (N, 4) float32 boxes, the same as planned.
            det_feats: (N, C) detector features, passed through to backends that use them.

        Returns:
            :class:`Embeddings` with a vector for every non-skipped detection.
        """
        n = len(det_xyxy)
        computed = np.zeros(n, bool)
        vectors: np.ndarray | None = None
        result = Embeddings(None, computed, np.zeros(n, bool))

        def compute(idx: list[int]) -> float:
            nonlocal vectors
            self.embedder.synchronize()
            t0 = self.clock()
            out = self.embedder.embed(image, det_xyxy[idx], None if det_feats is None else det_feats[idx])
            self.embedder.synchronize()
            ms = (self.clock() - t0) * 1000.0
            if vectors is None:
                vectors = np.zeros((n, out.shape[1]), np.float32)
            vectors[idx] = out
            computed[idx] = True
            self.call_cost.add(len(idx), ms)
            return ms

        critical = np.flatnonzero(plan.action == CRITICAL).tolist()
        refresh = list(plan.refresh_order)
        if self.cfg.budget_ms <= 0:  # unlimited: one batch for everything
            if critical or refresh:
                ms = compute(critical + refresh)
                result.critical_ms = ms * len(critical) / (len(critical) + len(refresh))
                result.refresh_ms = ms - result.critical_ms
            refresh = []
        else:
            if critical:
                result.critical_ms = compute(critical)
            while refresh:
                take = self._admit(self.cfg.budget_ms - result.refresh_ms, min(len(refresh), REFRESH_CHUNK))
                if take < 1:
                    break
                chunk, refresh = refresh[:take], refresh[take:]
                result.refresh_ms += compute(chunk)

        for i in refresh:  # deferred refreshes: reuse, and remember the track in the backlog
            self.backlog[int(plan.track_ids[i])] = int(plan.last_embed_frame[i])
        result.deferred = len(refresh)
        for tid in plan.track_ids[computed]:
            self.backlog.pop(int(tid), None)
        for j in np.flatnonzero((plan.action != SKIP) & ~computed):
            e = plan.cached[int(plan.track_ids[j])]
            if vectors is None:
                vectors = np.zeros((n, e.shape[0]), np.float32)
            vectors[j] = e
        self.refresh_ms.append(result.refresh_ms)
        self.computed_total += int(computed.sum())
        self.reused_total += int(((plan.action != SKIP) & ~computed).sum())
        result.vectors = vectors
        result.known = computed | (plan.action != SKIP)  # every row embedded now or served from cache
        if self.lazy:
            result.memory = self._flush(plan.flush)
            verdicts = near_lost_verdicts(plan, vectors, computed, self._lost_memory, self.cfg.near_lost_clear)
            for pair, far in verdicts.items():
                if far:
                    self.cleared[pair] = plan.frame
                else:
                    self.cleared.pop(pair, None)
            assert isinstance(self.embedder, CropEmbedder)  # lazy memory runs only with one
            self.buffer.add(plan, image, det_xyxy, computed, self.embedder.crop)
        return result

    def _admit(self, left_ms: float, most: int) -> int:
        """How many refresh crops (at most ``most``) to embed in the next call with ``left_ms`` of the
        budget left: the largest call whose predicted cost (:attr:`call_cost`) fits; one crop, to
        measure it, when no call was measured yet."""
        if left_ms <= 0:
            return 0
        for k in range(most, 0, -1):
            ms = self.call_cost.predict(k)
            if ms is None:
                return 1
            if ms <= left_ms:
                return k
        return 0

    def _flush(self, track_ids: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Embed (one batch) the newest buffered looks of these tracks, at most ``lazy_samples`` each and
        ``lazy_spacing`` frames apart, picked newest first; forget their buffers."""
        taken = self.buffer.take(track_ids, self.cfg.lazy_samples, self.cfg.lazy_spacing)
        if not taken:
            return {}
        crops = [crop for _, looks in taken for _, crop in looks]
        assert isinstance(self.embedder, CropEmbedder)
        vectors = self.embedder.embed_crops(crops)
        self.computed_total += len(crops)
        self.reasons_total["memory"] = self.reasons_total.get("memory", 0) + len(crops)
        memory, start = {}, 0
        for tid, looks in taken:
            memory[tid] = (np.array([f for f, _ in looks], np.int64), vectors[start : start + len(looks)])
            start += len(looks)
        return memory
