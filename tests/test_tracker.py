"""Tracker behaviour on synthetic scenes where the right answer is known."""

import numpy as np

from mot_dinov3.config import TrackerConfig
from mot_dinov3.tracker import Tracker, TrackState


def step(tr, boxes, embs=None, conf=0.9):
    tr.predict()
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    return tr.update(xyxy, np.full(n, conf, np.float32), np.zeros(n, np.int64),
                     None if embs is None else np.array(embs, np.float32), None, (1000, 500))


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
    for k in range(5):
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
