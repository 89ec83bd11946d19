"""The Python API: MultiObjectTracker.update, track() and iter_track() give the CLI's tracks."""

import subprocess
import sys

import cv2
import numpy as np
import pytest

import mot_dinov3
from mot_dinov3.io import FrameSource, MotWriter


def test_update_takes_boxmot_layout_and_returns_it():
    mot = mot_dinov3.MultiObjectTracker(embedder=None)
    frame = np.zeros((500, 1000, 3), np.uint8)
    dets = np.array([[100, 100, 140, 200, 0.9, 0], [600, 100, 640, 200, 0.8, 2]], np.float32)
    out = mot.update(dets, frame)  # frame 1: tracks confirmed at once
    assert out.shape == (2, 8) and out.dtype == np.float32
    assert out[:, 4].tolist() == [1, 2] and out[:, 6].tolist() == [0, 2] and out[:, 7].tolist() == [0, 1]
    out = mot.update(dets[::-1] + [[2, 0, 2, 0, 0, 0]], frame)  # rows swapped: det_index follows them
    assert out[:, 4].tolist() == [1, 2] and out[:, 7].tolist() == [1, 0]
    assert mot.update(np.zeros((0, 6)), frame).shape == (0, 8)
    assert {v.track_id for v in mot.tracks} == {1, 2} and all(v.lost for v in mot.tracks)
    assert mot.stats.frames == 3 and mot.embedded_now == set()
    mot.reset()
    assert mot.tracks == [] and mot.stats.frames == 0


def test_update_with_detections_sets_tracker_ids_on_supervision_detections():
    sv = pytest.importorskip("supervision", reason="the optional supervision extra is not installed")
    mot = mot_dinov3.MultiObjectTracker(embedder=None)
    frame = np.zeros((500, 1000, 3), np.uint8)
    dets = sv.Detections(
        xyxy=np.array([[100, 100, 140, 200], [600, 100, 640, 200]], np.float32),
        confidence=np.array([0.9, 0.8], np.float32),
        class_id=np.array([0, 2]),
    )
    out = mot.update_with_detections(dets, frame)
    assert isinstance(out, sv.Detections) and out.tracker_id.tolist() == [1, 2] and out.class_id.tolist() == [0, 2]
    out = mot.update_with_detections(dets[::-1], frame)  # the same people, rows swapped
    assert out.tracker_id.tolist() == [1, 2] and out.class_id.tolist() == [0, 2]
    assert len(mot.update_with_detections(sv.Detections.empty(), frame)) == 0


def test_bad_arguments_raise_value_errors_with_the_fix():
    mot = mot_dinov3.MultiObjectTracker(embedder="none")
    frame = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match=r"expected \(N, 6\)"):
        mot.update(np.zeros((3, 4)), frame)
    with pytest.raises(ValueError, match="BGR image"):
        mot.update(np.zeros((0, 6)), np.zeros((50, 50)))
    with pytest.raises(ValueError, match="scheduler 'sometimes'"):
        mot_dinov3.MultiObjectTracker(embedder="none", scheduler="sometimes")
    with pytest.raises(ValueError, match="unknown embedder"):
        mot_dinov3.MultiObjectTracker(embedder="resnet")
    with pytest.raises(FileNotFoundError):
        mot_dinov3.MultiObjectTracker(embedder="onnx", embed_model="missing.onnx")
    with pytest.raises(FileNotFoundError):
        mot_dinov3.MultiObjectTracker(embedder="none", tracker_config="missing.yaml")
    with pytest.raises(ValueError, match="options .*'sauce'"):
        mot_dinov3.track("video.mp4", sauce=1)


def assert_same_tracks(a_txt, b_txt):
    """Two MOT txt files hold the same tracks: frames and identities exactly, boxes and scores to the
    detector's float noise. PyTorch's CPU convolutions are not bitwise reproducible across processes and
    thread counts (boxes move by ~5e-4 px, measured 1 vs 2 threads on TUD-Campus), which can flip the
    txt's last printed digit."""
    a, b = (np.loadtxt(t, delimiter=",", ndmin=2) for t in (a_txt, b_txt))
    assert a.shape == b.shape
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    np.testing.assert_allclose(a[:, 2:6], b[:, 2:6], atol=0.05)
    np.testing.assert_allclose(a[:, 6], b[:, 6], atol=2e-3)


@pytest.mark.slow
def test_update_on_cached_detections_and_track_give_the_clis_mot_txt(
    tmp_path, yolov8n, osnet_onnx, tud_campus, person_detections
):
    """The CLI, track() and MultiObjectTracker.update on the same detector's boxes: the same tracks."""
    cli_txt, api_txt, mot_txt = tmp_path / "cli.txt", tmp_path / "api.txt", tmp_path / "update.txt"
    opts = ["--det", str(yolov8n), "--classes", "0", "--embedder", "onnx", "--embed-model", str(osnet_onnx)]
    opts += ["--det-runtime", "torch", "--det-precision", "fp32"]  # the replayed detections below are PyTorch's
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mot_dinov3",
            "--source",
            str(tud_campus),
            *opts,
            "--output",
            "",
            "--save-mot",
            str(cli_txt),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    summary = mot_dinov3.track(
        tud_campus,
        det=str(yolov8n),
        classes="0",
        embedder="onnx",
        embed_model=str(osnet_onnx),
        output=None,
        save_mot=str(api_txt),
        no_progress=True,
        det_runtime="torch",
        det_precision="fp32",
    )
    assert summary.frames == 71
    assert_same_tracks(api_txt, cli_txt)

    dets = person_detections(tud_campus)
    source = FrameSource(tud_campus)
    mot = mot_dinov3.MultiObjectTracker(embedder="onnx", embed_model=str(osnet_onnx), fps=source.fps)
    writer = MotWriter(str(mot_txt))
    for frame, d in zip(source, dets.frames):
        out = mot.update(np.c_[d.xyxy, d.conf, d.cls], frame.image)
        writer.write(frame.index, out[:, 4].astype(int), out[:, :4], out[:, 5])
    writer.close()
    assert_same_tracks(mot_txt, cli_txt)
    assert mot.stats.embeddings_computed == summary.embeddings_computed > 0


@pytest.mark.slow
def test_the_reid_runtimes_give_the_same_tracks(tmp_path, osnet_onnx, tud_campus, person_detections):
    """embed_runtime openvino and onnxruntime on the same replayed boxes: the same identities and boxes,
    the same embeddings computed (the vectors agree to float rounding, so no decision flips)."""
    pytest.importorskip("openvino", reason="the openvino package is not installed")
    dets = person_detections(tud_campus)
    txts, computed = [], []
    for runtime in ("openvino", "onnxruntime"):
        source = FrameSource(tud_campus)
        mot = mot_dinov3.MultiObjectTracker(
            embedder="onnx", embed_model=str(osnet_onnx), fps=source.fps, embed_runtime=runtime
        )
        assert mot.embedder.graph.runtime == runtime
        txts.append(tmp_path / f"{runtime}.txt")
        writer = MotWriter(str(txts[-1]))
        for frame, d in zip(source, dets.frames):
            out = mot.update(np.c_[d.xyxy, d.conf, d.cls], frame.image)
            writer.write(frame.index, out[:, 4].astype(int), out[:, :4], out[:, 5])
        writer.close()
        computed.append(mot.stats.embeddings_computed)
    assert_same_tracks(*txts)
    assert computed[0] == computed[1] > 0


@pytest.mark.slow
def test_iter_track_yields_every_frame_with_its_tracks(tmp_path, yolov8n, tud_campus):
    seen = []
    for index, image, tracks in mot_dinov3.iter_track(
        tud_campus,
        det=str(yolov8n),
        classes=[0],
        embedder="none",
        output=str(tmp_path / "v.mp4"),
        max_frames=5,
        no_progress=True,
    ):
        assert image.shape == (480, 640, 3) and tracks.shape[1] == 8
        seen.append(index)
    assert seen == [1, 2, 3, 4, 5]
    cap = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


@pytest.mark.slow
def test_track_takes_any_iterable_of_images(tmp_path, yolov8n, tud_campus):
    """A generator of images tracks as the sequence folder does (same frames, same fps)."""
    files = sorted((tud_campus / "img1").glob("*.jpg"))[:8]
    opts = dict(det=str(yolov8n), classes="0", embedder="none", output=None, no_progress=True)
    folder = mot_dinov3.track(tud_campus, save_mot=str(tmp_path / "folder.txt"), max_frames=8, **opts)
    images = (cv2.imread(str(f)) for f in files)
    frames = mot_dinov3.track(images, save_mot=str(tmp_path / "frames.txt"), fps=25, **opts)
    assert frames.frames == folder.frames == 8 and frames.settings["source"] == "<frames>"
    assert (tmp_path / "frames.txt").read_bytes() == (tmp_path / "folder.txt").read_bytes()
    with pytest.raises(ValueError, match="source frame 1: expected an"):
        mot_dinov3.track([np.zeros((4, 4))], **opts)
