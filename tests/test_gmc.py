"""Camera motion estimation on real frames: identity for a static camera, the shift for a moved one."""

import cv2
import numpy as np
import pytest

from mot_dinov3.errors import UserError
from mot_dinov3.gmc import CameraMotion, is_static
from mot_dinov3.io import FrameSource


def frames(seq, n):
    out = []
    for i, f in enumerate(FrameSource(seq)):
        out.append(f.image)
        if i + 1 == n:
            return out
    return out


@pytest.mark.parametrize("method", ["sparseOptFlow", "ecc"])
def test_static_camera_gives_identity(mot17_09, method):
    cam = CameraMotion(method)
    warps = [cam.estimate(im) for im in frames(mot17_09, 4)]
    assert all(np.array_equal(w, np.eye(2, 3)) for w in warps)


@pytest.mark.parametrize("method", ["sparseOptFlow", "ecc"])
def test_camera_shift_is_recovered(mot17_09, method):
    img = frames(mot17_09, 1)[0]
    shift = np.array([[1, 0, 24.0], [0, 1, -12.0]])
    moved = cv2.warpAffine(img, shift, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)
    cam = CameraMotion(method)
    cam.estimate(img)
    w = cam.estimate(moved)
    assert w[0, 2] == pytest.approx(24.0, abs=3.0) and w[1, 2] == pytest.approx(-12.0, abs=3.0)
    assert np.allclose(w[:, :2], np.eye(2), atol=0.02)


def test_static_camera_switches_gmc_off_and_a_later_pan_switches_it_back_on(mot17_09):
    imgs = frames(mot17_09, 12)
    cam = CameraMotion("sparseOptFlow", static_frames=3, recheck_every=4)
    warps = [cam.estimate(im) for im in imgs]
    assert all(np.array_equal(w, np.eye(2, 3)) for w in warps) and cam.camera_static
    # frame 1 only primes; frames 2-4 are estimated (3 static in a row); then one check every 4 frames
    assert cam.estimations == 3 + 2
    # the camera pans 20 px between the last check (frame 12) and the next one (frame 16)
    h, w = imgs[-1].shape[:2]
    pan = cv2.warpAffine(imgs[-1], np.array([[1, 0, 20.0], [0, 1, 0]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    out = [cam.estimate(im) for im in (imgs[-1], imgs[-1], imgs[-1], pan)]
    assert all(np.array_equal(x, np.eye(2, 3)) for x in out[:3])  # skipped frames: no work
    assert out[3][0, 2] == pytest.approx(20.0, abs=3.0) and not cam.camera_static
    assert not np.array_equal(cam.estimate(pan), out[3])  # frame-to-frame again: estimated on the next frame
    assert cam.estimations == 3 + 2 + 2


def test_none_and_unknown_methods():
    assert np.array_equal(CameraMotion("none").estimate(np.zeros((40, 60, 3), np.uint8)), np.eye(2, 3))
    with pytest.raises(UserError, match="gmc_method"):
        CameraMotion("orb2")
    assert is_static(np.array([[1, 0, 0.3], [0, 1, -0.2]]), (1920, 1080), 1.0)
    assert not is_static(np.array([[1.001, 0, 0], [0, 1.001, 0]]), (1920, 1080), 1.0)  # zoom: 2 px at the corner
