"""Detector (real YOLOv8n weights) and frame sources / writers on real data."""

import cv2
import numpy as np
import pytest
from conftest import shared_path

from mot_dinov3.config import DetectorConfig
from mot_dinov3.detector import Detector, resolve_weights
from mot_dinov3.errors import UserError
from mot_dinov3.io import FrameSource, MotWriter, prefetch, read_mot_txt
from mot_dinov3.matching import iou_matrix


@pytest.fixture(scope="module")
def frame(mot17_09):
    return cv2.imread(str(mot17_09 / "img1/000001.jpg"))


def test_detector_finds_the_annotated_people(yolov8n, frame, mot17_09):
    dets = Detector(DetectorConfig(model=str(yolov8n), classes=[0], conf=0.3))(frame)
    assert dets.xyxy.dtype == np.float32 and dets.xyxy.shape[1] == 4
    assert dets.conf.dtype == np.float32 and dets.cls.dtype == np.int64 and (dets.cls == 0).all()
    assert dets.feats is None
    gt = read_mot_txt(mot17_09 / "gt/gt.txt")
    g = gt[(gt[:, 0] == 1) & (gt[:, 7] == 1) & (gt[:, 8] > 0.5)]
    gxyxy = np.c_[g[:, 2:4], g[:, 2:4] + g[:, 4:6]]
    recall = (iou_matrix(gxyxy, dets.xyxy).max(axis=1) > 0.5).mean()
    assert recall > 0.6


def test_detector_captures_neck_features_per_box(yolov8n, frame):
    det = Detector(DetectorConfig(model=str(yolov8n), classes=[0], capture_features=True))
    a, b = det(frame), det(frame)
    assert a.feats.shape == (len(a), 64) and a.feats.dtype == np.float32
    np.testing.assert_allclose(a.feats, b.feats, atol=1e-5)  # same frame, same features
    assert np.abs(a.feats[0] - a.feats[1]).sum() > 0  # per box, not per image


def test_weights_lookup_and_errors(yolov8n, tmp_path):
    assert resolve_weights(str(yolov8n), {}) == str(yolov8n)
    assert resolve_weights("yolov8n_from_int8.pt", {"MOT_DINOV3_WEIGHTS": str(yolov8n.parent)}) == str(yolov8n)
    assert resolve_weights("yolo11n.pt", {}) == "yolo11n.pt"  # left to Ultralytics' cache / download
    with pytest.raises(UserError, match=r"^det='.*nope\.pt': file not found"):
        resolve_weights(str(tmp_path / "nope.pt"), {})
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot load detector weights"):
        Detector(DetectorConfig(model=str(bad)))


def test_unfetchable_official_name_names_the_weights_folder(monkeypatch, tmp_path):
    import ultralytics

    def offline(*a, **k):
        raise ConnectionError("Download failure for https://github.com/ultralytics/assets/.../yolo11x.pt")

    monkeypatch.setattr(ultralytics, "YOLO", offline)  # no network in tests: simulate the failed download
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(tmp_path))
    with pytest.raises(UserError) as ei:
        Detector(DetectorConfig(model="yolo11x.pt"))
    msg = str(ei.value)
    assert msg.startswith("det='yolo11x.pt': cannot load") and str(tmp_path) in msg and "\n" not in msg


def test_mot_sequence_source_reads_seqinfo(mot17_09):
    src = FrameSource(mot17_09)
    assert src.fps == 30 and src.length == 525 and (src.width, src.height) == (1920, 1080)
    assert src.name == "MOT17-09-FRCNN"
    first = next(iter(src))
    assert first.index == 1 and first.image.shape == (1080, 1920, 3) and first.timestamp == 0.0


def test_image_folder_and_video_sources(tmp_path):
    img1 = shared_path("data/MOT15/train/TUD-Campus/img1")
    src = FrameSource(img1, fps=12.5)
    assert src.length == 71 and src.fps == 12.5
    video = FrameSource(shared_path("data/videos/mmtracking_demo.mp4"))
    frames = list(video)
    assert len(frames) == 8 and video.fps == pytest.approx(3.0) and frames[-1].index == 8
    with pytest.raises(UserError, match="no such file"):
        FrameSource(tmp_path / "missing.mp4")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(UserError, match="not a readable video"):
        FrameSource(tmp_path / "notes.mp4")
    with pytest.raises(UserError, match="no images"):
        FrameSource(tmp_path)


def test_prefetch_keeps_order_and_content(mot17_09):
    src = FrameSource(mot17_09)
    direct = [(f.index, f.image.sum()) for f, _ in zip(FrameSource(mot17_09), range(6))]
    got = []
    for f in prefetch(src, depth=2):
        got.append((f.index, f.image.sum()))
        if len(got) == 6:
            break
    src.close()
    assert got == direct


def test_prefetch_reraises_reader_errors_in_order_and_stops_its_thread():
    import threading

    def frames():
        yield 1
        yield 2
        raise UserError("--source x: cannot decode image 3.jpg")

    got = []
    with pytest.raises(UserError, match="3.jpg"):
        for f in prefetch(frames()):
            got.append(f)
    assert got == [1, 2]
    gen = prefetch(iter(range(1000)), depth=1)
    assert next(gen) == 0
    gen.close()  # the consumer stops early: the decoding thread must end, not block on the full queue
    assert not any(t.name == "frame-prefetch" for t in threading.enumerate())


def test_mot_writer_format(tmp_path):
    (tmp_path / "r.txt").write_text("an earlier run\n")
    w = MotWriter(tmp_path / "r.txt")
    w.write(3, np.array([7]), np.array([[10.0, 20.0, 40.0, 80.0]]), np.array([0.9]))
    line = "3,7,10.00,20.00,30.00,60.00,0.9000,-1,-1,-1\n"
    (part,) = tmp_path.glob("r.txt.*.part")
    assert part.read_text() == line  # flushed already, beside the earlier file, which is untouched
    assert (tmp_path / "r.txt").read_text() == "an earlier run\n"
    w.close()
    assert (tmp_path / "r.txt").read_text() == line and not part.exists()
