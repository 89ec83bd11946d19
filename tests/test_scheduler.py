"""Scheduler rules and budget accounting, with a fake embedder whose cost runs on a fake clock."""

import numpy as np
import pytest

from mot_dinov3.config import EmbedderConfig, SchedulerConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.base import CropEmbedder
from mot_dinov3.scheduler import (
    CRITICAL,
    REUSE,
    SKIP,
    EmbeddingScheduler,
    contest_groups,
    near_lost_verdicts,
    pick_looks,
    plan_actions,
    plan_lazy,
    runner,
)
from mot_dinov3.scheduler.runner import DEVIATIONS, CallCost
from mot_dinov3.tracker import TrackView

D = 8


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeEmbedder:
    """Costs ``ms_per_crop`` on the fake clock; embeds box i as a one-hot-ish vector seeded by its x1."""

    name, dim, uses_detector_features, cost_free = "fake", D, False, False

    def __init__(self, clock, ms_per_crop=10.0):
        self.clock, self.ms_per_crop, self.calls = clock, ms_per_crop, []

    def embed(self, image, xyxy, det_feats=None):
        self.calls.append(len(xyxy))
        self.clock.t += self.ms_per_crop * len(xyxy) / 1000.0
        v = np.zeros((len(xyxy), D), np.float32)
        v[np.arange(len(xyxy)), (xyxy[:, 0] // 100).astype(int) % D] = 1.0
        return v

    def synchronize(self):
        pass


def box(x, y=0, w=50, h=100):
    return [x, y, x + w, y + h]


def view(tid, x, last, emb=True, lost=False, seen=None, start=0):
    e = np.eye(D, dtype=np.float32)[(tid + 3) % D] if emb else None
    return TrackView(tid, np.array(box(x), np.float32), e, last, lost, last if seen is None else seen, start)


IMG = np.zeros((10, 10, 3), np.uint8)


def test_bootstrap_all_critical():
    p = plan_actions(np.array([box(0), box(300)], np.float32), [], 1, SchedulerConfig())
    assert p.action.tolist() == [CRITICAL, CRITICAL] and p.reasons == ["bootstrap"] * 2


def test_rules_weak_iou_crowded_refresh_reuse():
    dets = np.array([box(0), box(300), box(600), box(900), box(930)], np.float32)
    tracks = [view(1, 2, last=9), view(2, 302, last=5), view(3, 200, last=9), view(4, 900, last=9)]
    p = plan_actions(dets, tracks, 10, SchedulerConfig(refresh_every=5))
    # det0 continues track 1 (fresh) -> reuse; det1 continues track 2, 5 frames old -> refresh;
    # det2 overlaps no track -> weak_iou; det3 continues track 4 but overlaps det4 -> crowded;
    # det4 overlaps det3 and has weak IoU with track 4 -> weak_iou (checked first)
    assert p.reasons == ["reuse", "refresh", "weak_iou", "crowded", "weak_iou"]
    assert p.track_ids[:2].tolist() == [1, 2]
    assert set(p.cached) == {1, 2}


def test_near_lost_and_near_second_track_are_critical():
    dets = np.array([box(0), box(300), box(600)], np.float32)
    tracks = [
        view(1, 2, last=9),
        view(2, 302, last=9),
        view(3, 330, last=9),
        view(4, 602, last=9),
        view(5, 620, last=3, lost=True),
    ]
    p = plan_actions(dets, tracks, 10, SchedulerConfig())
    # det0 continues track 1 alone -> reuse; det1 continues track 2 but overlaps track 3's prediction
    # (IoU 0.25) -> crowded; det2 continues track 4 but a lost track is predicted on top of it -> near_lost
    assert p.reasons == ["reuse", "crowded", "near_lost"]
    assert 5 not in p.track_ids  # a lost track is never the one a detection continues


def test_lost_tracks_alone_do_not_count_as_active():
    dets = np.array([box(0)], np.float32)
    p = plan_actions(dets, [view(1, 0, last=9, lost=True)], 10, SchedulerConfig())
    assert p.reasons == ["bootstrap"]


def test_missing_cache_and_shared_track_are_critical_and_skip_mask():
    dets = np.array([box(0), box(400), box(1000)], np.float32)
    tracks = [view(1, 0, last=0, emb=False), view(2, 402, last=9)]
    p = plan_actions(dets, tracks, 10, SchedulerConfig(), candidates=np.array([True, True, False]))
    assert p.reasons == ["no_cache", "reuse", "skip"] and p.action[2] == SKIP


def test_embed_all_computes_everything():
    clock = FakeClock()
    s = EmbeddingScheduler(SchedulerConfig(embed_all=True), FakeEmbedder(clock), clock)
    dets = np.array([box(0), box(300)], np.float32)
    p = s.plan(10, dets, [view(1, 0, 9), view(2, 300, 9)])
    e = s.run(p, IMG, dets)
    assert e.computed.all() and s.computed_total == 2 and s.reused_total == 0


def test_reuse_returns_cached_embedding_never_zero():
    clock = FakeClock()
    s = EmbeddingScheduler(SchedulerConfig(), FakeEmbedder(clock), clock)
    dets = np.array([box(0)], np.float32)
    t = view(1, 1, last=9)
    e = s.run(s.plan(10, dets, [t]), IMG, dets)
    assert not e.computed[0]
    np.testing.assert_array_equal(e.vectors[0], t.embedding)
    assert np.linalg.norm(e.vectors[0]) == pytest.approx(1.0)


def test_critical_is_never_limited_by_budget():
    clock = FakeClock()
    emb = FakeEmbedder(clock, ms_per_crop=10.0)
    s = EmbeddingScheduler(SchedulerConfig(budget_ms=1.0), emb, clock)
    dets = np.array([box(100 * i, 500 * (i % 2)) for i in range(6)], np.float32)
    e = s.run(s.plan(1, dets, []), IMG, dets)  # bootstrap: 6 critical crops = 60 ms >> 1 ms budget
    assert e.computed.all() and e.critical_ms == pytest.approx(60.0) and e.refresh_ms == 0.0


def test_budget_admits_refreshes_oldest_first_and_defers_the_rest():
    clock = FakeClock()
    emb = FakeEmbedder(clock, ms_per_crop=10.0)
    s = EmbeddingScheduler(SchedulerConfig(budget_ms=25.0, refresh_every=5), emb, clock)
    s.call_cost.add(4, 40.0)  # as measured on earlier frames
    xs = [0, 300, 600, 900]
    dets = np.array([box(x) for x in xs], np.float32)
    tracks = [view(1, 0, last=4), view(2, 300, last=1), view(3, 600, last=3), view(4, 900, last=2)]
    p = s.plan(20, dets, tracks)
    assert p.refresh_order == [1, 3, 2, 0]  # tracks 2, 4, 3, 1: oldest embedding first
    e = s.run(p, IMG, dets)
    assert e.computed.tolist() == [False, True, False, True]  # two crops fit in 25 ms
    assert e.refresh_ms == pytest.approx(20.0) and e.deferred == 2
    assert s.backlog == {3: 3, 1: 4}
    # deferred refreshes keep serving the cached embedding
    np.testing.assert_array_equal(e.vectors[0], tracks[0].embedding)
    np.testing.assert_array_equal(e.vectors[2], tracks[2].embedding)
    # next frame: the backlog (tracks 3 and 1, oldest first) is served before fresher tracks
    tracks2 = [view(1, 0, last=4), view(2, 300, last=20), view(3, 600, last=3), view(4, 900, last=20)]
    e2 = s.run(s.plan(21, dets, tracks2), IMG, dets)
    assert e2.computed.tolist() == [True, False, True, False] and s.backlog == {}


def test_budget_without_estimate_measures_one_crop_first():
    clock = FakeClock()
    s = EmbeddingScheduler(SchedulerConfig(budget_ms=15.0, refresh_every=1), FakeEmbedder(clock, 10.0), clock)
    dets = np.array([box(0), box(300), box(600)], np.float32)
    e = s.run(s.plan(5, dets, [view(1, 0, 1), view(2, 300, 1), view(3, 600, 1)]), IMG, dets)
    assert e.computed.sum() == 1 and s.call_cost.predict(1) == pytest.approx(10.0)


def test_call_cost_fits_overhead_and_per_crop_cost():
    c = CallCost(alpha=0.5)
    assert c.predict(1) is None
    c.add(2, 20.0)  # one size: proportional
    assert c.predict(1) == 10.0 and c.predict(4) == 40.0
    for _ in range(20):  # 3 ms a call + 2 ms a crop, exactly
        c.add(1, 5.0)
        c.add(8, 19.0)
    a, b = c.fit()
    assert a == pytest.approx(3.0, abs=1e-6) and b == pytest.approx(2.0, abs=1e-6)
    assert c.predict(4) == pytest.approx(11.0 + DEVIATIONS * c.dev) and c.dev < 1e-3
    c.add(4, 15.0)  # 4 ms over the fit
    assert c.dev == pytest.approx(0.5 * 4.0, abs=1e-3) and c.predict(4) > 11.0 + DEVIATIONS * 1.9


class JitterEmbedder(FakeEmbedder):
    """A call costs 1 ms plus 4 ms a crop, times a random factor in [0.6, 1.4] (a busy CPU)."""

    def __init__(self, clock, seed=0):
        super().__init__(clock)
        self.rng = np.random.default_rng(seed)

    def embed(self, image, xyxy, det_feats=None):
        v = super().embed(image, xyxy, det_feats)
        self.clock.t += (self.rng.uniform(0.6, 1.4) * (1.0 + 4.0 * len(xyxy)) - 10.0 * len(xyxy)) / 1000.0
        return v


@pytest.mark.parametrize("budget", [10.0, 20.0])
def test_budget_holds_at_p95_when_costs_vary(budget, monkeypatch):
    """Admission against the fitted mean cost runs over the budget on about half the frames it fills;
    against the fit plus two deviations the 95th percentile of refresh ms per frame stays within it."""

    def p95(deviations):
        monkeypatch.setattr(runner, "DEVIATIONS", deviations)
        clock = FakeClock()
        s = EmbeddingScheduler(SchedulerConfig(budget_ms=budget, refresh_every=1), JitterEmbedder(clock), clock)
        dets = np.array([box(300 * i) for i in range(8)], np.float32)
        for f in range(300):  # eight tracks, every one due every frame: always more than the budget
            s.run(s.plan(f + 10, dets, [view(i + 1, 300 * i, f + 8) for i in range(8)]), IMG, dets)
        return float(np.percentile(np.asarray(s.refresh_ms), 95)), s.computed_total

    held, computed = p95(DEVIATIONS)
    over, more = p95(0.0)
    assert held <= budget < over
    assert computed > 0.5 * more  # the margin costs some refreshes, not most


def test_a_slow_call_does_not_stop_refreshes_for_good():
    """One call ten times its usual cost (a busy machine) puts the estimate over the budget; the
    critical calls that follow bring it back."""
    clock = FakeClock()
    emb = FakeEmbedder(clock, ms_per_crop=4.0)
    s = EmbeddingScheduler(SchedulerConfig(budget_ms=10.0, refresh_every=1), emb, clock)
    s.call_cost.add(1, 40.0)
    dets = np.array([box(0), box(300)], np.float32)
    refreshed = []
    for f in range(10, 40):
        # a new box far from both tracks is critical (one crop); the two tracks' boxes are due for refresh
        frame = np.concatenate([dets, np.array([box(900 + 10 * f, 500)], np.float32)])
        e = s.run(s.plan(f, frame, [view(1, 0, f - 1), view(2, 300, f - 1)]), IMG, frame)
        refreshed.append(int(e.computed[:2].sum()))
    assert refreshed[0] == 0 and sum(refreshed[-10:]) == 20


def test_dead_tracks_are_purged_from_backlog():
    clock = FakeClock()
    s = EmbeddingScheduler(SchedulerConfig(budget_ms=5.0), FakeEmbedder(clock, 10.0), clock)
    s.call_cost.add(1, 10.0)
    dets = np.array([box(0), box(300)], np.float32)
    s.run(s.plan(10, dets, [view(1, 0, 1), view(2, 300, 1)]), IMG, dets)
    assert set(s.backlog) == {1, 2}
    s.plan(11, dets[:1], [view(1, 0, 1)])  # track 2 is gone
    assert set(s.backlog) == {1}


def test_unlimited_budget_refreshes_everything_due_in_one_batch():
    clock = FakeClock()
    emb = FakeEmbedder(clock, 10.0)
    s = EmbeddingScheduler(SchedulerConfig(budget_ms=0, refresh_every=5), emb, clock)
    dets = np.array([box(0), box(300), box(600)], np.float32)
    e = s.run(s.plan(10, dets, [view(1, 0, 1), view(2, 300, 8), view(3, 600, 2)]), IMG, dets)
    assert e.computed.tolist() == [True, False, True] and emb.calls == [2]
    assert s.computed_total == 2 and s.reused_total == 1


# -- lazy memory (--embed-lazy) ------------------------------------------------------------------------


class FakeCropEmbedder(FakeEmbedder):
    """A FakeEmbedder that can cut crops and embed them later: a crop is the box's x1 in a 1x1 'image'."""

    def crop(self, image, xyxy):
        return [np.full((1, 1, 3), x1, np.float32) for x1 in np.asarray(xyxy)[:, 0]]

    def embed_crops(self, crops):
        self.calls.append(len(crops))
        return self.embed(None, np.array([[c[0, 0, 0], 0, 1, 1] for c in crops], np.float32).reshape(-1, 4))[:, :]


def test_contest_groups_link_detections_and_tracks_through_candidate_pairs():
    iou = np.array(
        [
            [0.8, 0.5, 0.0],  # det0 - track0, track1: one group with two tracks
            [0.0, 0.0, 0.9],  # det1 - track2 alone
            [0.0, 0.3, 0.0],
        ]
    )  # det2: below the threshold, alone
    dets, tracks = contest_groups(iou, 0.4)
    assert dets.tolist() == [True, False, False] and tracks.tolist() == [True, True, False]
    dets, tracks = contest_groups(np.array([[0.9], [0.6]]), 0.4)  # two detections on one track
    assert dets.tolist() == [True, True] and tracks.tolist() == [True]


def test_lazy_rules_never_refresh_and_list_the_memories_read_now():
    dets = np.array([box(0), box(300), box(600), box(900), box(1200), box(1500)], np.float32)
    tracks = [
        view(1, 2, last=1),  # det0: alone, memory 99 frames old -> still reuse
        view(2, 302, last=9),
        view(3, 310, last=9),  # det1 between two tracks -> contested
        view(4, 905, last=9, emb=False),  # det3: its track has no memory yet
        view(5, 1202, last=9),  # det4: a track lost 5 frames ago on top -> near_lost
        view(6, 1230, last=5, lost=True, seen=95),
        view(7, 1502, last=9),  # det5: lost 40 frames ago -> reuse
        view(8, 1530, last=5, lost=True, seen=60),
    ]
    p = plan_lazy(dets, tracks, 100, SchedulerConfig(lazy=True))
    assert p.reasons == ["reuse", "contested", "weak_iou", "no_cache", "near_lost", "reuse"]
    assert p.action.tolist() == [REUSE, CRITICAL, CRITICAL, CRITICAL, CRITICAL, REUSE]
    assert p.refresh_order == [] and set(p.cached) == {1, 7}
    # contested tracks, near_lost's track, and lost track 6 (computed det4 overlaps it; nothing computed
    # overlaps lost track 8, whose looks wait)
    assert sorted(p.flush) == [2, 3, 5, 6]
    assert plan_lazy(dets, [], 1, SchedulerConfig(lazy=True)).reasons == ["bootstrap"] * 6
    # re-identification reach (the tracker's distance gate) also reads a lost track's memory, but only
    # when the box in reach is computed: det2 (weak_iou) may be lost track 8, det0 (reused) is not looked at
    reach = np.zeros((len(dets), len(tracks)), bool)
    reach[0, 7] = True
    assert sorted(plan_lazy(dets, tracks, 100, SchedulerConfig(lazy=True), reach=reach).flush) == [2, 3, 5, 6]
    reach[2, 7] = True
    assert sorted(plan_lazy(dets, tracks, 100, SchedulerConfig(lazy=True), reach=reach).flush) == [2, 3, 5, 6, 8]


def test_lazy_near_lost_pairs_cleared_by_appearance_are_not_recomputed():
    dets = np.array([box(1200)], np.float32)
    tracks = [
        view(5, 1202, last=80),
        view(6, 1230, last=5, lost=True, seen=95),
        view(9, 1190, last=5, lost=True, seen=97),
    ]
    cfg = SchedulerConfig(lazy=True)  # near_lost_clear_frames 10
    p = plan_lazy(dets, tracks, 100, cfg)
    assert p.reasons == ["near_lost"] and p.near_lost == {0: [6, 9]} and 5 in p.flush
    # one of the two lost tracks cleared: still near_lost
    assert plan_lazy(dets, tracks, 100, cfg, cleared={(5, 6): 95}).reasons == ["near_lost"]
    p = plan_lazy(dets, tracks, 100, cfg, cleared={(5, 6): 95, (5, 9): 91})  # both, within 10 frames
    assert p.reasons == ["reuse"] and p.near_lost == {} and 5 not in p.flush
    assert plan_lazy(dets, tracks, 100, cfg, cleared={(5, 6): 95, (5, 9): 90}).reasons == ["near_lost"]  # expired
    assert plan_lazy(dets, tracks, 100, cfg, cleared={(4, 6): 95, (4, 9): 95}).reasons == ["near_lost"]  # other track


def test_lazy_a_new_track_on_a_long_lost_track_stays_near_lost():
    """A track started within near_lost_new_frames (10) on the predicted box of a track lost 40 frames ago
    may be that track back, first seen half hidden: its box is computed, and a far look does not clear it."""
    dets = np.array([box(1200)], np.float32)
    lost = view(6, 1230, last=55, lost=True, seen=60)
    cfg = SchedulerConfig(lazy=True)
    assert plan_lazy(dets, [view(5, 1202, last=99, start=80), lost], 100, cfg).reasons == ["reuse"]  # 20 frames old
    p = plan_lazy(dets, [view(5, 1202, last=99, start=92), lost], 100, cfg)
    assert p.reasons == ["near_lost"] and p.near_lost == {0: [6]} and 5 in p.flush
    assert plan_lazy(dets, [view(5, 1202, last=99, start=92), lost], 100, cfg, cleared={(5, 6): 99}).reasons == [
        "near_lost"
    ]
    assert plan_lazy(
        dets, [view(5, 1202, last=99, start=92), lost], 100, SchedulerConfig(lazy=True, near_lost_new_frames=5)
    ).reasons == ["reuse"]


def test_near_lost_verdicts_compare_with_the_lost_memories():
    dets = np.array([box(1200), box(0)], np.float32)
    tracks = [
        view(5, 1202, last=90),
        view(1, 2, last=90),
        view(6, 1230, last=5, lost=True, seen=95),
        view(9, 1190, last=5, lost=True, seen=97, emb=False),
    ]
    p = plan_lazy(dets, tracks, 100, SchedulerConfig(lazy=True))
    assert p.near_lost == {0: [6, 9]}
    mem6 = np.eye(D, dtype=np.float32)[1]
    same = np.stack([mem6, np.eye(D, dtype=np.float32)[0]])
    other = np.stack([np.eye(D, dtype=np.float32)[2], np.eye(D, dtype=np.float32)[0]])
    computed = np.array([True, False])
    assert near_lost_verdicts(p, other, computed, {6: mem6}, 0.3) == {(5, 6): True}  # 9 has no memory
    assert near_lost_verdicts(p, same, computed, {6: mem6}, 0.3) == {(5, 6): False}
    assert near_lost_verdicts(p, same, np.array([False, False]), {6: mem6}, 0.3) == {}


def test_lazy_scheduler_clears_a_near_lost_pair_after_a_far_look():
    clock = FakeClock()
    s = EmbeddingScheduler(SchedulerConfig(lazy=True), FakeCropEmbedder(clock), clock)
    dets = np.array([box(1200)], np.float32)  # FakeEmbedder: x1 1200 -> one-hot index 4
    far = view(6, 1230, last=5, lost=True, seen=97)  # memory: one-hot index 1
    near = TrackView(6, far.xyxy, np.eye(D, dtype=np.float32)[4], 5, True, 97)
    for tracks, computed_next in (([view(5, 1202, last=90), far], False), ([view(5, 1202, last=90), near], True)):
        s.cleared.clear()
        assert s.run(s.plan(100, dets, tracks), IMG, dets).computed.tolist() == [True]
        assert s.run(s.plan(101, dets, tracks), IMG, dets).computed.tolist() == [computed_next]
    assert s.cleared == {}  # the look matched the lost memory: the pair stays watched


def test_pick_looks_takes_the_newest_then_spaced_older_ones():
    looks = [(f, None) for f in (3, 5, 6, 7, 9, 10)]
    assert [f for f, _ in pick_looks(looks, 3, 3)] == [3, 7, 10]
    assert [f for f, _ in pick_looks(looks, 2, 1)] == [9, 10]


def test_lazy_needs_a_backend_that_embeds_crops():
    clock = FakeClock()
    assert not isinstance(FakeEmbedder(clock), CropEmbedder) and isinstance(FakeCropEmbedder(clock), CropEmbedder)
    with pytest.raises(UserError, match="^embed_lazy=True: the "):
        EmbeddingScheduler(SchedulerConfig(lazy=True), FakeEmbedder(clock), clock)
    assert not EmbeddingScheduler(SchedulerConfig(lazy=True, embed_all=True), FakeEmbedder(clock), clock).lazy
    # the default (None): lazy memory where the backend can buffer crops, the refresh rules elsewhere
    assert EmbeddingScheduler(SchedulerConfig(), FakeCropEmbedder(clock), clock).lazy
    assert not EmbeddingScheduler(SchedulerConfig(), FakeEmbedder(clock), clock).lazy
    assert not EmbeddingScheduler(SchedulerConfig(lazy=False), FakeCropEmbedder(clock), clock).lazy


def test_crop_backends_name_the_backends_that_buffer_crops(osnet_onnx):
    from mot_dinov3.features.factory import BACKENDS, CROP_BACKENDS, create_embedder

    assert CROP_BACKENDS < set(BACKENDS) and "yolo" not in CROP_BACKENDS
    assert isinstance(create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx))), CropEmbedder)


def test_feature_backends_name_the_backends_that_read_detector_features():
    from mot_dinov3.features.factory import BACKENDS, FEATURE_BACKENDS
    from mot_dinov3.features.hf import HfVisionEmbedder
    from mot_dinov3.features.onnx import OnnxEmbedder
    from mot_dinov3.features.osnet import OSNetEmbedder
    from mot_dinov3.features.yolo import YoloFeatureEmbedder

    built = {"dino": HfVisionEmbedder, "clip": HfVisionEmbedder, "onnx": OnnxEmbedder, "yolo": YoloFeatureEmbedder}
    built["osnet"] = OSNetEmbedder
    assert set(built) == set(BACKENDS)
    assert {name for name, cls in built.items() if cls.uses_detector_features} == FEATURE_BACKENDS


def test_lazy_buffers_clean_looks_and_embeds_them_when_the_lost_track_may_be_back():
    clock = FakeClock()
    emb = FakeCropEmbedder(clock)
    s = EmbeddingScheduler(SchedulerConfig(lazy=True, lazy_samples=3, lazy_spacing=3, lazy_window=15), emb, clock)
    for f in range(1, 21):  # track 1 walks right, served from cache; det1 overlaps det2 all along
        x = 100 + 10 * f
        dets = np.array([box(x), box(600), box(620)], np.float32)
        tracks = [view(1, x, last=1), view(2, 600, last=1), view(3, 650, last=1)]
        e = s.run(s.plan(f, dets, tracks, np.array([True, True, True])), IMG, dets)
        assert not e.computed[0] and e.memory == {}
    assert [f for f, _ in s.buffer.looks[1]] == list(range(5, 21))  # the last 15 frames (window), track 1 only
    assert 2 not in s.buffer.looks and 3 not in s.buffer.looks  # det1 and det2 overlap: not clean, contested anyway
    computed = s.computed_total
    dets = np.array([box(600), box(620)], np.float32)
    tracks = [view(1, 300, last=1, lost=True, seen=20), view(2, 600, last=1), view(3, 650, last=1)]
    e = s.run(s.plan(21, dets, tracks), IMG, dets)  # track 1 lost; no computed box where it may be
    assert e.memory == {} and s.computed_total == computed + 2 and 1 in s.buffer.looks
    dets = np.array([box(305), box(600), box(620)], np.float32)  # a box at its predicted place
    e = s.run(s.plan(22, dets, tracks), IMG, dets)
    frames, vectors = e.memory[1]
    assert frames.tolist() == [14, 17, 20]  # newest first, 3 frames apart
    np.testing.assert_array_equal(
        vectors, emb.embed(None, np.array([box(100 + 10 * f) for f in (14, 17, 20)], np.float32))
    )
    assert s.computed_total == computed + 2 + 3 + 3  # two contested detections twice, the new box, three looks
    assert s.reasons_total["memory"] == 3 and 1 not in s.buffer.looks


def test_lazy_drops_looks_when_a_clean_detection_is_embedded():
    clock = FakeClock()
    s = EmbeddingScheduler(SchedulerConfig(lazy=True), FakeCropEmbedder(clock), clock)
    dets = np.array([box(0)], np.float32)
    s.run(s.plan(1, dets, [view(1, 0, last=1)]), IMG, dets)
    assert [f for f, _ in s.buffer.looks[1]] == [1]
    s.run(s.plan(2, dets, [view(1, 0, last=1, emb=False)]), IMG, dets)  # no memory -> computed, clean
    assert 1 not in s.buffer.looks
