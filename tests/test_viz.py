"""Drawing: colour per ID, the `*` for embeddings computed this frame, lost tracks, style overrides."""

import cv2
import numpy as np
from conftest import shared_path

from mot_dinov3.tracker import TrackOutput, TrackState
from mot_dinov3.viz import LOST_COLOR, DrawStyle, draw_tracks, id_color, label_text


def test_labels_and_distinct_colours():
    assert label_text(7, True) == "ID 7 *" and label_text(7, False) == "ID 7"
    colours = {id_color(i) for i in range(1, 31)}
    assert len(colours) == 30
    assert np.abs(np.subtract(id_color(1), id_color(2))).sum() > 100  # neighbours clearly apart


def test_draw_on_a_real_frame():
    img = cv2.imread(str(shared_path("data/MOT15/train/TUD-Campus/img1/000001.jpg")))
    box = np.array([100, 100, 200, 300], np.float32)
    live = TrackOutput(3, box, 0.9, 0, TrackState.CONFIRMED, True)
    out = draw_tracks(img, [live], DrawStyle(line_thickness=4, font_scale=0.8))
    assert out.shape == img.shape and not np.array_equal(out, img)
    assert np.array_equal(img, cv2.imread(str(shared_path("data/MOT15/train/TUD-Campus/img1/000001.jpg"))))
    assert tuple(int(v) for v in out[250, 101]) == id_color(3)  # left edge, 4 px thick
    # a starred label is wider than a plain one
    plain = draw_tracks(img, [TrackOutput(3, box, 0.9, 0, TrackState.CONFIRMED, False)], DrawStyle(4, 0.8))
    assert (np.any(out != img, axis=2).sum()) > (np.any(plain != img, axis=2).sum())
    lost = draw_tracks(img, [TrackOutput(5, box, 0.9, 0, TrackState.LOST, False)], DrawStyle(4, 0.8))
    assert np.abs(lost[250, 100].astype(int) - LOST_COLOR).max() <= 10  # 1 px anti-aliased grey line
    assert DrawStyle().resolve(1080) == (3, 0.72)
