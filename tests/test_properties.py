"""Property-based tests (hypothesis) of the tracker's and the embedding scheduler's invariants, through the
public facade :class:`mot_dinov3.api.MultiObjectTracker`, on random synthetic scenes.

A scene is a small image (64x48 .. 320x240) and 1-30 frames of 0-15 detection rows each: objects that move
in and out of view, with missed detections, plus junk rows (NaN / infinite values, empty boxes with
``x2 <= x1`` or ``y2 <= y1``, boxes partly or wholly outside the image, duplicates, confidences out of
[0, 1]). The embedder is a tiny deterministic fake (the crop's colour statistics, L2-normalised; no model)
that counts the crops it embeds and advances a fake clock by a fixed cost per crop, so the refresh budget
(milliseconds) can be checked exactly. Tracker thresholds vary too (short lost buffers, so tracks are
removed within a scene; 1-3 hits to confirm; Hungarian or greedy assignment).

The facade's contract for rows it cannot track (:meth:`MultiObjectTracker.update`): a row with a NaN or
infinite value, or an empty box, is dropped without an error, as if it had not been passed; ``det_index``
still names the caller's row. Boxes outside the frame are kept and confidences are used as given.

The runs are reproducible (``derandomize=True``, no example database) and sized for a slow shared CI
machine: the whole file takes about 20-40 s on two cores.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mot_dinov3.api import MultiObjectTracker
from mot_dinov3.config import SchedulerConfig, TrackerConfig
from mot_dinov3.features.base import CropEmbedder, cut_windows, l2_normalize
from mot_dinov3.scheduler import CRITICAL, REFRESH, REUSE, SKIP

MAX_ROWS = 15  # detection rows per frame
HIGH = TrackerConfig().track_high_thresh  # the embeddings the association reads: conf at or above it

SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


class FakeEmbedder:
    """A deterministic :class:`~mot_dinov3.features.base.CropEmbedder`: a crop's per-channel mean and
    standard deviation plus two constants (never a zero vector), L2-normalised float32.

    Every embedded crop advances :attr:`now` (seconds) by ``ms_per_crop`` ms: the scheduler's clock reads
    it, so each crop costs exactly that much. ``calls`` logs ``(kind, crops)`` per call since the last
    :meth:`mark` (``embed`` for scheduled crops, ``embed_crops`` for buffered looks).
    """

    name = "fake"
    dim = 8
    uses_detector_features = False
    cost_free = False

    def __init__(self, ms_per_crop: float = 1.0):
        self.ms_per_crop = ms_per_crop
        self.now = 0.0
        self.total = 0
        self.calls: list[tuple[str, int]] = []

    def clock(self) -> float:
        return self.now

    def mark(self) -> None:
        self.calls = []

    def crop(self, image: np.ndarray, xyxy: np.ndarray) -> list[np.ndarray]:
        return cut_windows(image, xyxy, (16, 8), 0.0, False)

    def _vectors(self, crops: list[np.ndarray]) -> np.ndarray:
        self.now += self.ms_per_crop * len(crops) / 1000.0
        self.total += len(crops)
        v = [np.r_[c.reshape(-1, 3).mean(0), c.reshape(-1, 3).std(0), 40.0, 10.0] for c in crops]
        return l2_normalize(np.array(v, np.float32).reshape(-1, self.dim))

    def embed(self, image: np.ndarray, xyxy: np.ndarray, det_feats: np.ndarray | None = None) -> np.ndarray:
        self.calls.append(("embed", len(xyxy)))
        return self._vectors(self.crop(image, xyxy))

    def embed_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        self.calls.append(("embed_crops", len(crops)))
        return self._vectors(list(crops))

    def synchronize(self) -> None:
        pass


def test_fake_embedder_is_a_crop_embedder():
    """The fake satisfies the protocol the scheduler checks (lazy memory needs a CropEmbedder)."""
    e = FakeEmbedder()
    assert isinstance(e, CropEmbedder)
    v = e.embed(np.zeros((48, 64, 3), np.uint8), np.array([[0, 0, 10, 10]], np.float32))
    assert v.shape == (1, 8) and v.dtype == np.float32 and np.isclose(np.linalg.norm(v), 1.0)


# -- scenes ----------------------------------------------------------------------------------------------
BAD = [math.nan, math.inf, -math.inf]


@st.composite
def junk_rows(draw, w: int, h: int) -> list[float]:
    """One row the tracker should survive: non-finite values, an empty box, a box outside the image, a
    confidence out of [0, 1], or an ordinary box with a random confidence and class."""
    kind = draw(st.sampled_from(["nonfinite", "empty", "outside", "conf", "plain"]))
    x1 = draw(st.floats(-0.5 * w, 1.2 * w))
    y1 = draw(st.floats(-0.5 * h, 1.2 * h))
    bw = draw(st.floats(1.0, w / 2))
    bh = draw(st.floats(1.0, h / 2))
    row = [x1, y1, x1 + bw, y1 + bh, draw(st.floats(0.0, 1.0)), float(draw(st.integers(0, 2)))]
    if kind == "nonfinite":
        for i in draw(st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True)):
            row[i] = draw(st.sampled_from(BAD))
    elif kind == "empty":  # zero or negative width and/or height
        if draw(st.booleans()):
            row[2] = x1 - draw(st.sampled_from([0.0, 1.0, 0.5 * w]))
        else:
            row[3] = y1 - draw(st.sampled_from([0.0, 1.0, 0.5 * h]))
    elif kind == "outside":  # wholly outside, or straddling a border, or far larger than the image
        where = draw(st.sampled_from(["left", "below", "huge", "straddle"]))
        if where == "left":
            row[0], row[2] = -3.0 * w, -2.0 * w
        elif where == "below":
            row[1], row[3] = 2.0 * h, 3.0 * h
        elif where == "huge":
            row[:4] = [-10.0 * w, -10.0 * h, 10.0 * w, 10.0 * h]
        else:
            row[0], row[2] = w - bw / 2, w + bw / 2
    elif kind == "conf":
        row[4] = draw(st.sampled_from([-1.0, -0.01, 1.01, 1.5, 5.0, 0.0, 1.0]))
    return row


@st.composite
def scenes(draw, max_frames: int = 30) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(image, [dets per frame])``: up to 10 objects moving at constant velocity, each in view from a
    random frame for a random number of frames with a few drop-outs (missed detections), plus up to 4 junk
    rows and a duplicate per frame, in random row order; at most ``MAX_ROWS`` rows per frame, ``(N, 6)``
    float32 ``[x1, y1, x2, y2, conf, cls]``."""
    w, h = draw(st.integers(64, 320)), draw(st.integers(48, 240))
    blocks = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = cv2.resize(blocks, (w, h), interpolation=cv2.INTER_NEAREST)  # coloured blocks: crops differ
    n_frames = draw(st.integers(1, max_frames))
    objects = draw(
        st.lists(
            st.tuples(
                st.floats(-0.1 * w, 0.9 * w),  # x1
                st.floats(-0.1 * h, 0.9 * h),  # y1
                st.floats(4.0, w / 3),  # width
                st.floats(4.0, h / 2),  # height
                st.floats(-4.0, 4.0),  # vx, px per frame
                st.floats(-3.0, 3.0),  # vy
                st.floats(0.0, 1.0),  # confidence
                st.integers(0, 1),  # class
                st.integers(0, n_frames - 1),  # first frame in view
                st.integers(1, n_frames),  # frames in view
            ),
            max_size=10,
        )
    )
    dropouts = draw(st.sets(st.tuples(st.integers(0, 9), st.integers(0, n_frames - 1)), max_size=12))
    frames = []
    for f in range(n_frames):
        rows = [
            [x + vx * f, y + vy * f, x + vx * f + bw, y + vy * f + bh, c, k]
            for i, (x, y, bw, bh, vx, vy, c, k, start, span) in enumerate(objects)
            if start <= f < start + span and (i, f) not in dropouts
        ]
        rows += draw(st.lists(junk_rows(w, h), max_size=4))
        if rows and draw(st.booleans()):
            rows += [list(rows[draw(st.integers(0, len(rows) - 1))])]  # a duplicate row
        rows = rows[:MAX_ROWS]
        order = draw(st.permutations(range(len(rows))))
        frames.append(np.array([rows[i] for i in order], np.float32).reshape(-1, 6))
    return image, frames


def tracker_configs() -> st.SearchStrategy[TrackerConfig]:
    """Tracker thresholds that change the life cycle: short lost buffers (tracks removed within a scene),
    confirmation after 1-3 hits, Hungarian or greedy assignment."""
    return st.builds(
        TrackerConfig,
        track_buffer=st.sampled_from([0, 2, 5, 150]),
        min_hits=st.integers(1, 3),
        use_hungarian=st.booleans(),
    )


def valid_rows(dets: np.ndarray) -> np.ndarray:
    """(N,) bool: the rows the facade keeps (finite, non-empty box)."""
    return np.isfinite(dets).all(axis=1) & (dets[:, 2] > dets[:, 0]) & (dets[:, 3] > dets[:, 1])


# -- running a scene and checking every frame ---------------------------------------------------------------
class Recorder:
    """Wraps the facade's scheduler to keep each frame's ``(plan, embeddings, boxes)``."""

    def __init__(self, mot: MultiObjectTracker):
        self.log: list = []
        sched = mot.scheduler
        if sched is None:
            return
        run = sched.run

        def recorded(plan, image, xyxy, feats=None):
            result = run(plan, image, xyxy, feats)
            self.log.append((plan, result, np.array(xyxy, copy=True)))
            return result

        sched.run = recorded


def unit_rows(v: np.ndarray) -> bool:
    return bool(np.isfinite(v).all() and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4))


def run_scene(mot: MultiObjectTracker, image: np.ndarray, frames: list[np.ndarray], embedder: FakeEmbedder | None):
    """Run ``frames`` through ``mot`` and check the invariants that hold under every configuration; yield
    ``(frame dets, kept mask, output, recorded (plan, embeddings, boxes) or None)`` per frame for more."""
    rec = Recorder(mot)
    seen: set[int] = set()  # every id ever in mot.tracks
    gone: set[int] = set()  # ids of tracks that left mot.tracks (removed)
    for dets in frames:
        if embedder is not None:
            embedder.mark()
        before = len(rec.log)
        out = mot.update(dets, image)
        keep = valid_rows(dets)
        # the output layout: (M, 8) float32 [x1, y1, x2, y2, id, conf, cls, det_index], finite
        assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 8
        assert np.isfinite(out).all(), out
        ids, det_index = out[:, 4], out[:, 7]
        # ids: positive integers, one box per id, one id per detection row
        assert (ids == np.round(ids)).all() and (ids >= 1).all()
        assert len(set(ids.tolist())) == len(ids)
        assert (det_index == np.round(det_index)).all() and len(set(det_index.tolist())) == len(det_index)
        # det_index: a row of the caller's dets that the facade kept; conf and cls are that row's
        di = det_index.astype(int)
        assert ((di >= 0) & (di < len(dets))).all()
        assert keep[di].all()
        np.testing.assert_array_equal(out[:, 5], dets[di, 4])
        np.testing.assert_array_equal(out[:, 6], dets[di, 5].astype(np.int64).astype(np.float32))
        # the tracks: finite boxes, unit-norm finite embeddings; reported ids are confirmed, not lost
        views = mot.tracks
        now = {v.track_id for v in views}
        assert len(now) == len(views)
        by_id = {v.track_id: v for v in views}
        for tid in ids.astype(int).tolist():
            assert tid in by_id and not by_id[tid].lost
        for v in views:
            assert np.isfinite(v.xyxy).all() and np.isfinite(v.last_obs).all()
            if v.embedding is not None:
                assert v.embedding.shape == (FakeEmbedder.dim,) and unit_rows(v.embedding[None])
        # ids: a new track takes an id above every id seen before; a removed track's id never comes back
        born = now - seen
        assert not (now & gone), f"ids {now & gone} of removed tracks reappeared"
        if born and seen:
            assert min(born) > max(seen), f"new ids {born} not above earlier ids (max {max(seen)})"
        gone |= seen - now
        seen |= now
        assert mot.embedded_now <= set(ids.astype(int).tolist())
        recorded = rec.log[-1] if len(rec.log) > before else None
        if recorded is not None:
            check_embeddings(*recorded, embedder)
        yield dets, keep, out, recorded
    assert mot.stats.frames == len(frames)
    if embedder is not None:
        # the counters count what the embedder saw
        assert mot.stats.embeddings_computed == embedder.total
        reused = sum(int((res.known & ~res.computed).sum()) for _, res, _ in rec.log)
        assert mot.stats.embeddings_reused == reused


def check_embeddings(plan, res, xyxy, embedder: FakeEmbedder | None) -> None:
    """One frame's :class:`~mot_dinov3.scheduler.Embeddings`: every known row (computed now or reused from
    a track's cache) is a finite unit vector, never zero; reused rows are the continued track's cached
    embedding; skipped rows are not known; buffered looks embedded into memories are unit vectors too."""
    n = len(xyxy)
    assert res.computed.shape == res.known.shape == (n,)
    assert not (res.computed & ~res.known).any()
    assert not res.known[plan.action == SKIP].any()
    assert res.known[plan.action != SKIP].all()
    if res.known.any():
        assert res.vectors is not None and res.vectors.shape == (n, FakeEmbedder.dim)
        assert unit_rows(res.vectors[res.known])
    for j in np.flatnonzero(res.known & ~res.computed):
        assert plan.action[j] in (REFRESH, REUSE)
        np.testing.assert_array_equal(res.vectors[j], plan.cached[int(plan.track_ids[j])])
    assert res.computed[plan.action == CRITICAL].all()  # critical work is never deferred
    for frames, vectors in res.memory.values():
        assert len(frames) == len(vectors) > 0 and (frames <= plan.frame).all() and unit_rows(vectors)
    if embedder is not None:
        crops = sum(k for kind, k in embedder.calls if kind == "embed")
        assert crops == int(res.computed.sum())
        looks = sum(k for kind, k in embedder.calls if kind == "embed_crops")
        assert looks == sum(len(f) for f, _ in res.memory.values())


# -- the properties -------------------------------------------------------------------------------------------
@settings(SETTINGS, max_examples=50)
@given(scene=scenes(), scheduler=st.sampled_from(["lazy", "refresh", "all", "motion"]), tracker=tracker_configs())
def test_tracks_ids_and_embeddings_stay_valid_on_any_scene(scene, scheduler, tracker):
    """Under every scheduler (lazy memory, the refresh rules, embed-all, motion only), on any scene, junk
    rows included, no exception, and per frame: the output is (M, 8) float32, finite; ids are positive
    integers, one per box and one box per id; det_index names a kept row of the caller's dets, whose
    conf and cls the row carries; reported tracks are confirmed; every track box and embedding is finite
    and embeddings have unit norm. Over the run: a new track's id is above every id seen before and a
    removed track's id never reappears; embedded and reused rows are unit vectors (reused ones: the
    track's cached embedding); the stats count what the embedder embedded."""
    image, frames = scene
    embedder = None if scheduler == "motion" else FakeEmbedder()
    mot = MultiObjectTracker(
        embedder=embedder, scheduler=None if scheduler == "motion" else scheduler, tracker_config=tracker
    )
    for _ in run_scene(mot, image, frames, embedder):
        pass


@SETTINGS
@given(
    scene=scenes(),
    budget_ms=st.floats(0.5, 12.0),
    ms_per_crop=st.sampled_from([0.3, 1.0, 2.5, 7.0, 20.0]),
    refresh_every=st.integers(1, 3),
    tracker=tracker_configs(),
)
def test_refresh_never_exceeds_its_budget(scene, budget_ms, ms_per_crop, refresh_every, tracker):
    """The refresh rules (lazy off) with ``budget_ms``, each crop costing exactly ``ms_per_crop`` on the
    scheduler's clock: per frame, refresh work stays within the budget (its measured ms and its crop count,
    at most ``floor(budget / cost)``), critical crops are all computed whatever the budget, the refreshes
    computed are the oldest first (a prefix of the plan's refresh order), and every deferred refresh is
    served from its track's cache (never a zero vector)."""
    image, frames = scene
    embedder = FakeEmbedder(ms_per_crop)
    cfg = SchedulerConfig(lazy=False, budget_ms=budget_ms, refresh_every=refresh_every)
    mot = MultiObjectTracker(embedder=embedder, scheduler=cfg, tracker_config=tracker)
    mot.scheduler.clock = embedder.clock
    fits = math.floor(budget_ms / ms_per_crop + 1e-9)
    for _, _, _, recorded in run_scene(mot, image, frames, embedder):
        if recorded is None:
            continue
        plan, res, _ = recorded
        assert not mot.scheduler.lazy
        order = list(plan.refresh_order)
        done = [bool(res.computed[i]) for i in order]
        assert done == sorted(done, reverse=True), "refreshes computed out of order (not oldest first)"
        n_done = sum(done)
        assert n_done <= fits, f"{n_done} refreshes at {ms_per_crop} ms each in a {budget_ms} ms budget"
        assert res.refresh_ms <= budget_ms + 1e-6
        assert mot.scheduler.refresh_ms[-1] == res.refresh_ms
        assert res.deferred == len(order) - n_done
        assert res.known[order].all()


@SETTINGS
@given(scene=scenes(max_frames=15), refresh_every=st.integers(1, 3))
def test_unlimited_budget_computes_every_refresh(scene, refresh_every):
    """The refresh rules with ``budget_ms=0`` (unlimited): every refresh the plan asks for is computed, in
    the frame's single embedder call; nothing is deferred."""
    image, frames = scene
    embedder = FakeEmbedder()
    mot = MultiObjectTracker(embedder=embedder, scheduler="refresh", refresh_every=refresh_every)
    for _, _, _, recorded in run_scene(mot, image, frames, embedder):
        if recorded is None:
            continue
        plan, res, _ = recorded
        assert res.computed[plan.action == REFRESH].all() and res.deferred == 0
        assert len([c for c in embedder.calls if c[0] == "embed"]) <= 1


@SETTINGS
@given(scene=scenes())
def test_embed_all_embeds_every_detection_the_association_reads(scene):
    """``scheduler="all"`` (``--embed-all``): every kept detection at or above ``track_high_thresh`` (the
    ones the association reads, :meth:`~mot_dinov3.gating.Gating.reads_embedding`) is embedded every
    frame, in one embedder call; nothing is reused from cache, lower-score rows are skipped."""
    image, frames = scene
    embedder = FakeEmbedder()
    mot = MultiObjectTracker(embedder=embedder, scheduler="all")
    assert not mot.lazy
    for dets, keep, _, recorded in run_scene(mot, image, frames, embedder):
        kept = dets[keep]
        read = kept[:, 4] >= HIGH
        if recorded is None:
            assert len(kept) == 0
            continue
        plan, res, xyxy = recorded
        np.testing.assert_array_equal(xyxy, kept[:, :4])
        np.testing.assert_array_equal(res.computed, read)
        np.testing.assert_array_equal(plan.action, np.where(read, CRITICAL, SKIP))
        assert embedder.calls == ([("embed", int(read.sum()))] if read.any() else [])
    assert mot.stats.embeddings_reused == 0


@SETTINGS
@given(scene=scenes(max_frames=20), scheduler=st.sampled_from(["lazy", "refresh", "all", "motion"]))
def test_rows_the_facade_cannot_track_are_invisible(scene, scheduler):
    """Dropping is all the facade does with a row it cannot track (NaN / inf anywhere, empty box): the run
    with those rows gives the same tracks as the run without them, det_index naming the caller's row.
    (Timing-free configurations only: with ``budget_ms`` the clock would differ between the runs.)"""
    image, frames = scene

    def make():
        embedder = None if scheduler == "motion" else FakeEmbedder()
        return MultiObjectTracker(embedder=embedder, scheduler=None if scheduler == "motion" else scheduler)

    with_junk, without = make(), make()
    for dets in frames:
        keep = np.flatnonzero(valid_rows(dets))
        a = with_junk.update(dets, image)
        b = without.update(dets[keep], image)
        np.testing.assert_array_equal(a[:, :7], b[:, :7])
        np.testing.assert_array_equal(a[:, 7], keep[b[:, 7].astype(int)])


# -- examples: the contract spelled out, and the budget property is not vacuous ----------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        [math.nan, 10, 30, 40, 0.9, 0],
        [10, 10, math.inf, 40, 0.9, 0],
        [10, -math.inf, 30, 40, 0.9, 0],
        [10, 10, 30, 40, math.nan, 0],
        [10, 10, 30, 40, math.inf, 0],
        [10, 10, 30, 40, 0.9, math.nan],
        [10, 10, 10, 40, 0.9, 0],  # zero width
        [30, 10, 10, 40, 0.9, 0],  # x2 < x1
        [10, 40, 30, 40, 0.9, 0],  # zero height
    ],
)
@pytest.mark.parametrize("scheduler", ["lazy", "refresh", "all", "motion"])
def test_a_row_that_cannot_be_tracked_is_dropped(bad, scheduler):
    """Such a row, repeated over frames beside a good one, raises nothing (it used to: an OpenCV assertion on
    an empty crop, a singular Kalman gate, scipy's "invalid numeric entries", or NaN tracks) and never
    becomes a track; the good row keeps id 1 with its own det_index."""
    image = np.full((120, 160, 3), 90, np.uint8)
    embedder = None if scheduler == "motion" else FakeEmbedder()
    mot = MultiObjectTracker(embedder=embedder, scheduler=None if scheduler == "motion" else scheduler)
    for f in range(6):
        dets = np.array([bad, bad, [80 + f, 20, 120 + f, 100, 0.9, 1]], np.float32)
        out = mot.update(dets, image)
        assert np.isfinite(out).all()
        assert out[:, 4].tolist() == [1] and out[:, 7].tolist() == [2] and out[:, 6].tolist() == [1]
    assert [v.track_id for v in mot.tracks] == [1]


def test_the_budget_defers_refreshes_on_a_steady_scene():
    """Six steady, well-separated people, a refresh every frame, a budget of 2.5 crops: from the third
    frame on, each frame computes exactly 2 refreshes, the oldest first, and defers the other 4 (served
    from cache); so the budget property above is exercised, not vacuous."""
    image = cv2.resize(
        np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8),
        (320, 240),
        interpolation=cv2.INTER_NEAREST,
    )
    embedder = FakeEmbedder(ms_per_crop=2.0)
    mot = MultiObjectTracker(embedder=embedder, scheduler=SchedulerConfig(lazy=False, budget_ms=5.0, refresh_every=1))
    mot.scheduler.clock = embedder.clock
    dets = np.array([[10 + 50 * i, 60, 40 + 50 * i, 160, 0.9, 0] for i in range(6)], np.float32)
    frames = [dets + [f, 0, f, 0, 0, 0] for f in range(8)]
    refreshed = []
    for _, _, out, recorded in run_scene(mot, image, frames, embedder):
        assert len(out) == 6
        plan, res, _ = recorded
        if plan.frame >= 3:
            assert (plan.action == REFRESH).sum() == 6
            assert res.computed.sum() == 2 and res.deferred == 4 and res.refresh_ms == pytest.approx(4.0)
            refreshed.append(set(plan.track_ids[res.computed].tolist()))
    assert set().union(*refreshed) == set(range(1, 7))  # the backlog rotates through every track
