"""Score normalisation: scores relative to the video's own score distribution (mot_dinov3.scores)."""

import numpy as np

import mot_dinov3
from mot_dinov3.config import TrackerConfig
from mot_dinov3.scores import MIN_SCORES, WINDOW, ScoreNormaliser, rescale, score_scale


def test_low_scores_are_raised_to_the_reference_and_none_is_lowered():
    low = np.linspace(0.2, 0.5, 4 * MIN_SCORES + 1, dtype=np.float32)  # 75th percentile 0.425
    scale = score_scale(low, reference=0.85)
    assert abs(scale - 0.5) < 1e-5
    np.testing.assert_allclose(rescale(np.array([0.2, 0.425, 0.6], np.float32), scale), [0.4, 0.85, 1.0], rtol=1e-5)
    high = np.linspace(0.5, 0.95, 4 * MIN_SCORES + 1, dtype=np.float32)
    assert score_scale(high, 0.8) == 1.0  # a clear scene: unchanged
    assert score_scale(low, 0.0) == 1.0  # reference 0: off
    assert score_scale(low[: MIN_SCORES - 1], 0.8) == 1.0  # too few scores for a stable percentile yet


def test_the_normaliser_forgets_scores_older_than_its_window():
    norm = ScoreNormaliser(0.8)
    first = norm(np.full(50, 0.4, np.float32))
    assert first[0] == np.float32(0.4) and norm.scale == 1.0  # too few scores yet
    for _ in range(WINDOW // 50):
        out = norm(np.full(50, 0.4, np.float32))
    assert out[0] > 0.79 and out.dtype == np.float32  # a low-score stretch: raised to the reference
    for _ in range(WINDOW // 50):
        norm(np.full(50, 0.9, np.float32))
    assert norm(np.array([0.4], np.float32))[0] == np.float32(0.4)  # the low stretch is forgotten
    assert ScoreNormaliser(0.0)(np.array([0.3], np.float32))[0] == np.float32(0.3)


def _walkers(frames: int, rng: np.random.Generator, low: float, high: float):
    """Thirty people walking right in two rows, each scored about its own level in [low, high) (1%
    noise); yields (dets (N, 6), frame)."""
    image = np.zeros((600, 1400, 3), np.uint8)
    x0, y0 = np.tile(60.0 * np.arange(15), 2), np.repeat([100.0, 350.0], 15)
    level = rng.permutation(np.linspace(low, high, len(x0), endpoint=False))
    for k in range(frames):
        x = x0 + 2.0 * k
        boxes = np.c_[x, y0, x + 40, y0 + 120]
        conf = level * (1 + 0.01 * rng.standard_normal(len(x)))
        yield np.c_[boxes, conf, np.zeros(len(x))].astype(np.float32), image


def _coverage(reference: float, low: float, high: float) -> tuple[float, np.ndarray]:
    """Share of the boxes tracked once the normaliser has seen enough scores; every output row."""
    mot = mot_dinov3.MultiObjectTracker(embedder=None, tracker_config=TrackerConfig(score_reference=reference))
    rng = np.random.default_rng(0)
    tracked = total = 0
    rows = []
    for k, (dets, image) in enumerate(_walkers(120, rng, low, high)):
        out = mot.update(dets, image)
        if k * len(dets) >= 2 * MIN_SCORES:
            tracked, total = tracked + len(out), total + len(dets)
        np.testing.assert_array_equal(out[:, 5], dets[out[:, 7].astype(int), 4])  # the detector's own score
        rows.append(out)
    return tracked / total, np.concatenate(rows)


def test_a_crowd_of_low_score_people_is_tracked_with_normalisation_and_missed_without():
    """Thirty people whose boxes score 0.15-0.4 (a small detector in a crowd): with scores relative to
    the video, nearly all are tracked; with the raw scores, the ones under ``track_high_thresh`` never
    start a track. The reported confidence stays the detector's."""
    on, _ = _coverage(0.8, 0.15, 0.4)
    off, _ = _coverage(0.0, 0.15, 0.4)
    assert on > 0.9 and off < 0.6


def test_a_clear_scene_is_tracked_the_same_with_and_without_normalisation():
    _, on = _coverage(0.8, 0.7, 0.95)
    _, off = _coverage(0.0, 0.7, 0.95)
    np.testing.assert_array_equal(on, off)
