"""Tracker behaviour on synthetic scenes where the right answer is known."""

import numpy as np

from mot_dinov3.config import TrackerConfig
from mot_dinov3.gating import Gating
from mot_dinov3.tracker import Tracker, TrackState


def step(tr, boxes, embs=None, conf=0.9):
    """One frame; an all-zero row of ``embs`` stands for an embedding that was not computed (unknown)."""
    tr.predict()
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    e = None if embs is None else np.array(embs, np.float32).reshape(n, -1) if n else np.zeros((0, 4), np.float32)
    return tr.update(
        xyxy,
        np.full(n, conf, np.float32),
        np.zeros(n, np.int64),
        (1000, 500),
        e,
        None if e is None else np.abs(e).any(axis=1),
    )


def unit(i, d=4):
    return np.eye(d, dtype=np.float32)[i]


def test_two_walkers_cross_and_keep_ids_with_appearance():
    tr = Tracker(TrackerConfig())
    ids_a, ids_b = [], []
    for k in range(40):
        xa, xb = 100 + 10 * k, 500 - 10 * k  # they cross around k = 20
        out = step(tr, [[xa, 100, xa + 40, 200], [xb, 100, xb + 40, 200]], [unit(0), unit(1)])
        by_x = {round(float(o.xyxy[0])): o.track_id for o in out}
        if xa in by_x and xb in by_x and xa != xb:
            ids_a.append(by_x[xa])
            ids_b.append(by_x[xb])
    assert len(set(ids_a)) == 1 and len(set(ids_b)) == 1 and ids_a[0] != ids_b[0]


def test_lost_track_is_reidentified_by_appearance_after_occlusion():
    tr = Tracker(TrackerConfig())
    for k in range(10):
        out = step(tr, [[100 + 2 * k, 100, 140 + 2 * k, 200]], [unit(2)])
    tid = out[0].track_id
    for _ in range(15):  # fully occluded
        assert step(tr, [], np.zeros((0, 4))) == []
    # reappears somewhat away from the Kalman prediction, same appearance
    out = step(tr, [[190, 110, 230, 210]], [unit(2)])
    assert [o.track_id for o in out] == [tid]
    # a different-looking object at the same place would not be matched by appearance alone
    tr2 = Tracker(TrackerConfig())
    for k in range(10):
        step(tr2, [[100 + 2 * k, 100, 140 + 2 * k, 200]], [unit(2)])
    for _ in range(15):
        step(tr2, [], np.zeros((0, 4)))
    step(tr2, [[190, 110, 230, 210]], [unit(3)])
    assert all(t.track_id != tid or t.state == TrackState.LOST for t in tr2.tracks)


def test_track_buffer_scales_with_fps_and_lost_tracks_are_removed():
    assert Tracker(TrackerConfig(track_buffer=30), fps=15).max_lost == 15
    assert Tracker(TrackerConfig(track_buffer=30), fps=60).max_lost == 60
    tr = Tracker(TrackerConfig(track_buffer=30), fps=10)  # 10 frames
    for _ in range(5):
        step(tr, [[100, 100, 140, 200]])
    for _ in range(11):
        step(tr, [])
    assert tr.tracks == []


def test_low_score_detections_extend_tracks_but_do_not_start_them():
    tr = Tracker(TrackerConfig())
    for _ in range(3):
        out = step(tr, [[100, 100, 140, 200]])
    tid = out[0].track_id
    out = step(tr, [[101, 100, 141, 200]], conf=0.3)  # ByteTrack second stage
    assert [o.track_id for o in out] == [tid]
    tr2 = Tracker(TrackerConfig())
    for _ in range(3):
        assert step(tr2, [[100, 100, 140, 200]], conf=0.3) == []


def test_tentative_tracks_need_min_hits_and_greedy_mode_works():
    tr = Tracker(TrackerConfig(use_hungarian=False))
    step(tr, [])  # frame 1 without detections
    assert step(tr, [[100, 100, 140, 200]]) == []  # tentative
    out = step(tr, [[102, 100, 142, 200]])
    assert len(out) == 1 and out[0].state == TrackState.CONFIRMED


def test_camera_motion_warp_keeps_ids_when_the_whole_scene_shifts():
    """A camera pan moves every box 60 px per frame; with the GMC warp the predictions follow."""

    def run(use_warp):
        tr = Tracker(TrackerConfig())
        ids = []
        for k in range(8):
            dx = 60 * k
            warp = np.array([[1, 0, 60], [0, 1, 0]], float) if use_warp and k else None
            tr.predict(warp)
            xyxy = np.array([[100 + dx, 100, 140 + dx, 200], [300 + dx, 100, 340 + dx, 200]], np.float32)
            out = tr.update(xyxy, np.full(2, 0.9, np.float32), np.zeros(2, np.int64), (1000, 500))
            ids.append(tuple(o.track_id for o in out))
        return ids

    with_warp = run(True)
    assert all(i == (1, 2) for i in with_warp)  # the same two tracks throughout
    assert set(run(False)[-1]) != {1, 2}  # without it the 60 px jumps break IoU continuity


def test_overlapping_boxes_stay_out_of_the_memory():
    tr = Tracker(TrackerConfig())
    step(tr, [[100, 100, 140, 200], [400, 100, 440, 200]], [unit(0), unit(1)])
    before = (tr.tracks[0].samples, tr.tracks[0].embedding.copy())
    step(tr, [[100, 100, 140, 200], [110, 100, 150, 200]], [unit(0), unit(2)])  # IoU 0.6 with each other
    assert tr.tracks[0].samples == before[0]
    np.testing.assert_array_equal(tr.tracks[0].embedding, before[1])
    step(tr, [[100, 100, 140, 200], [400, 100, 440, 200]], [unit(0), unit(1)])  # apart again: absorbed
    assert tr.tracks[0].samples == before[0] + 1


def test_a_crowd_of_low_score_people_is_tracked_and_a_one_frame_flicker_is_not():
    """Twelve people at confidence 0.5, below the 0.6 a box near a lost track needs, walking apart from
    each other: every one gets a track. A box seen in one frame only never becomes a reported track."""
    tr = Tracker(TrackerConfig())
    step(tr, [], conf=0.5)  # frame 1 empty: later tracks start tentative
    for k in range(5):
        boxes = [[60 * i + k, 100, 60 * i + 40 + k, 200] for i in range(12)]
        if k == 2:
            boxes.append([900, 400, 940, 480])  # a flicker
        out = step(tr, boxes, conf=0.5)
    assert len(out) == 12 and len({o.track_id for o in out}) == 12
    assert not any(o.xyxy[0] > 850 for o in out)
    assert not any(t.xyxy[0] > 850 for t in tr.tracks)  # the flicker's tentative track was removed


def test_a_half_hidden_box_near_a_lost_track_waits_for_re_identification():
    """Below new_track_thresh, a box within reach of a lost track starts no track: it may be that
    person back. Away from lost tracks the same box starts one."""

    def run(x_back):
        tr = Tracker(TrackerConfig())
        for k in range(5):
            step(tr, [[100 + k, 100, 140 + k, 200]], [unit(0)])
        for _ in range(3):
            step(tr, [])  # lost
        for _ in range(3):
            out = step(tr, [[x_back, 100, x_back + 40, 200]], [unit(1)], conf=0.5)  # looks different
        return out, tr

    out, tr = run(130)  # near the lost track: not re-identified (other look), not a new track either
    assert out == [] and len(tr.tracks) == 1 and tr.tracks[0].state == TrackState.LOST
    out, tr = run(700)  # 0.56 image widths away: a new person
    assert len(out) == 1 and out[0].track_id == 2


def test_lost_track_is_not_given_a_different_looking_box_at_its_prediction():
    """After missed frames, a box where the track was predicted but with another appearance starts a
    new track instead of continuing the old identity; with the same appearance it continues."""

    def run(look):
        tr = Tracker(TrackerConfig())
        for k in range(6):
            out = step(tr, [[100 + 10 * k, 100, 140 + 10 * k, 200]], [unit(0)])
        tid = out[0].track_id
        step(tr, [])
        step(tr, [])
        step(tr, [[180, 100, 220, 200]], [unit(look) if look is not None else np.zeros(4)])  # at the prediction
        return tid, {t.track_id: t.state for t in tr.tracks}

    tid, states = run(1)
    assert states[tid] == TrackState.LOST and len(states) == 2
    tid, states = run(0)
    assert states == {tid: TrackState.CONFIRMED}
    tid, states = run(None)  # an all-zero row is an unknown embedding (skipped): IoU decides
    assert states == {tid: TrackState.CONFIRMED}


def test_gates_read_every_high_score_box_and_reach_only_lost_tracks():
    tr = Tracker(TrackerConfig())  # high 0.35, reid_max_dist 0.15
    step(tr, [[100, 100, 140, 200], [600, 100, 640, 200]], [unit(0), unit(1)])
    step(tr, [[100, 100, 140, 200]], [unit(0)])  # the track at 600 is lost now
    views = tr.predict()
    gates = Gating(tr.cfg)
    xyxy = np.array(
        [
            [102, 100, 142, 200],  # on track 1
            [300, 100, 340, 200],  # far from every track: may start one
            [680, 100, 720, 200],  # 0.08 image widths from the lost track: re-identification
            [102, 100, 142, 200],
        ],  # low score: IoU only, never read
        np.float32,
    )
    conf = np.array([0.5, 0.5, 0.5, 0.3], np.float32)
    assert gates.reads_embedding(conf).tolist() == [True, True, True, False]
    # the distance gate, per track (columns as predict's views): only the lost track has reach
    assert [v.track_id for v in views] == [1, 2] and views[1].lost
    reach = gates.reid_reach(views, xyxy, 1000)
    assert reach.shape == (4, 2) and not reach[:, 0].any()
    assert reach[:, 1].tolist() == [False, False, True, False]  # 0.50, 0.30, 0.08, 0.50 widths
    assert not gates.reid_reach(views, xyxy, 300).any()  # 0.27 widths at the least


def test_views_carry_the_frame_each_track_started():
    tr = Tracker(TrackerConfig())
    step(tr, [[100, 100, 140, 200]], [unit(0)])
    step(tr, [[102, 100, 142, 200], [600, 100, 640, 200]], [unit(0), unit(1)])
    assert {v.track_id: v.start_frame for v in tr.predict()} == {1: 1, 2: 2}


def _look(dist_to_first: float, rest: np.ndarray) -> np.ndarray:
    """(8,) unit vector at cosine distance ``dist_to_first`` from ``unit(0, 8)``, the rest along ``rest``."""
    c = 1.0 - dist_to_first
    return (c * unit(0, 8) + np.sqrt(1 - c * c) * rest).astype(np.float32)


def test_reid_accepts_a_looser_match_inside_the_kalman_gate():
    """Up to ``reid_motion_thresh`` a lost track is re-identified where its Kalman prediction expects
    it (DeepSORT's gate), not at the same distance from its last observation the other way."""
    cfg = TrackerConfig(reid_thresh=0.22, reid_motion_thresh=0.3)

    def run(dx, dist, cfg=cfg):
        tr = Tracker(cfg)
        for k in range(10):  # walks right, 10 px a frame
            out = step(tr, [[100 + 10 * k, 100, 140 + 10 * k, 200]], [unit(0, 8)])
        tid = out[0].track_id
        for _ in range(5):
            step(tr, [])
        x = 190 + dx  # the last observation was at 190
        return tid, [o.track_id for o in step(tr, [[x, 100, x + 40, 200]], [_look(dist, unit(2, 8))])]

    tid, ids = run(50, 0.28)  # where the prediction expects it (0.05 image widths from the last box)
    assert ids == [tid]
    tid, ids = run(-50, 0.28)  # as far from the last box, behind it: outside the gate
    assert ids == []
    tid, ids = run(50, 0.32)  # too different even where expected
    assert ids == []
    tid, ids = run(50, 0.28, TrackerConfig(reid_motion_thresh=0.0))  # the rule off
    assert ids == []


def test_track_embedding_ema_absorbs_fresh_embeddings_only():
    """Embeddings served from cache (not fresh) are matched with but never enter the EMA; each fresh
    clean embedding is one EMA step."""
    alpha, k = 0.8, 4
    look_a, look_b, look_c = unit(0, 8), unit(1, 8), unit(2, 8)
    box = np.array([[100, 100, 140, 200]], np.float32)
    one, cls = np.ones(1, np.float32), np.zeros(1, np.int64)

    def run(fresh_between):
        tr = Tracker(TrackerConfig(alpha=alpha))
        tr.predict()
        tr.update(box, one, cls, (1000, 500), look_a[None], fresh=np.ones(1, bool))
        for _ in range(k):
            tr.predict()
            tr.update(box, one, cls, (1000, 500), look_c[None], fresh=np.full(1, fresh_between))
        tr.predict()
        tr.update(box, one, cls, (1000, 500), look_b[None], fresh=np.ones(1, bool))
        return tr.tracks[0]

    def ema(e, new):
        e = alpha * e + (1 - alpha) * new
        return e / np.linalg.norm(e)

    cached = run(False)
    np.testing.assert_allclose(cached.embedding, ema(look_a, look_b), atol=1e-6)
    assert cached.samples == 2
    e = look_a
    for new in [look_c] * k + [look_b]:
        e = ema(e, new)
    fresh = run(True)
    np.testing.assert_allclose(fresh.embedding, e, atol=1e-6)
    assert fresh.samples == k + 2


def test_update_appearance_weighs_earlier_looks_by_their_frame_gap():
    cfg = TrackerConfig(alpha=0.9)
    tr = Tracker(cfg)
    step(tr, [[0, 0, 50, 100]], [unit(0)])  # frame 1: fresh embedding
    for _ in range(5):  # frames 2-6: served from cache
        tr.predict()
        tr.update(
            np.array([[0, 0, 50, 100]], np.float32),
            np.array([0.9], np.float32),
            np.array([0]),
            (1000, 500),
            np.array([unit(0)], np.float32),
            fresh=np.array([False]),
        )
    t = tr.tracks[0]
    assert t.last_embed_frame == 1 and t.samples == 1
    tr.predict()
    tr.update_appearance(t.track_id, np.array([5, 3]), np.array([unit(2), unit(1)], np.float32))
    tr.update_appearance(99, np.array([6]), np.array([unit(3)], np.float32))  # unknown id: ignored
    e = unit(0)
    for gap, new in ((2, unit(1)), (2, unit(2))):  # frame 3 after 1, frame 5 after 3: alpha**2 each
        e = 0.9**gap * e + (1 - 0.9**gap) * new
        e = e / np.linalg.norm(e)
    np.testing.assert_allclose(t.embedding, e, atol=1e-6)
    assert t.last_embed_frame == 5 and t.samples == 3
    assert not t.embedded_now  # nothing was embedded for this frame's detection
    tr.update_appearance(t.track_id, np.array([4]), np.array([unit(3)], np.float32))  # older than the memory
    assert t.samples == 3


def test_a_tracks_box_follows_its_kalman_state():
    from mot_dinov3 import motion

    tr = Tracker(TrackerConfig())
    for k in range(6):  # a walker, then two frames unseen (predicted only)
        step(tr, [[100 + 8 * k, 100, 140 + 8 * k, 200]] if k < 4 else [])
        for t in tr.tracks:
            np.testing.assert_array_equal(t.xyxy, motion.xywh_to_xyxy(t.mean[:4]).astype(np.float32))
    assert tr.tracks and tr.tracks[0].state == TrackState.LOST
    assert tr.tracks[0].xyxy[0] > 100 + 8 * 3  # the prediction moved on
