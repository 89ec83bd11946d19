"""Budget-aware embedding scheduler: per detection, compute now, refresh within budget, or reuse.

Where an embedding is decided, computed and consumed:

* :mod:`~mot_dinov3.scheduler.lazy`: lazy memory, the default rules (:func:`plan_lazy`), and the buffer
  of clean looks they embed later (:class:`LookBuffer`);
* :mod:`~mot_dinov3.scheduler.plan`: the refresh rules (:func:`plan_actions`, ``--no-embed-lazy``, and
  the default for backends that cannot buffer crops), from boxes alone, and the :class:`EmbedPlan` both
  rule sets produce (critical / refresh / reuse / skip per detection);
* :mod:`~mot_dinov3.scheduler.runner`: :class:`EmbeddingScheduler` plans each frame with one rule set
  and carries the plan out: critical crops in one batch, refreshes within ``budget_ms``, the backlog,
  buffered looks. It returns :class:`Embeddings`, which :meth:`mot_dinov3.tracker.Tracker.update`
  (and, for buffered looks, :meth:`~mot_dinov3.tracker.Tracker.update_appearance`) consume.

The scheduler sees tracks only through :class:`TrackLike` (the tracker's read-only ``TrackView``) and
backends only through the :mod:`mot_dinov3.features.base` protocols.
"""

from mot_dinov3.scheduler.lazy import LookBuffer, contest_groups, near_lost_verdicts, pick_looks, plan_lazy
from mot_dinov3.scheduler.plan import CRITICAL, REFRESH, REUSE, SKIP, EmbedPlan, TrackLike, finish_plan, plan_actions
from mot_dinov3.scheduler.runner import REFRESH_CHUNK, Embeddings, EmbeddingScheduler

__all__ = [
    "CRITICAL",
    "REFRESH",
    "REUSE",
    "SKIP",
    "REFRESH_CHUNK",
    "EmbedPlan",
    "Embeddings",
    "EmbeddingScheduler",
    "LookBuffer",
    "TrackLike",
    "contest_groups",
    "finish_plan",
    "near_lost_verdicts",
    "pick_looks",
    "plan_actions",
    "plan_lazy",
]
