"""The benchmark helpers on a MOT17-mini sequence: detection cache, replay, Ultralytics peers, scoring;
generalise.py's cached embeddings on TUD-Campus."""

import sys

import numpy as np
import pytest
from conftest import load_benchmark, shared_path

from mot_dinov3 import pipeline, replay
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig
from mot_dinov3.features.factory import create_embedder
from mot_dinov3.io import FrameSource, read_mot_txt

common = load_benchmark("common")
crops = load_benchmark("crops")
quality = load_benchmark("quality")


@pytest.fixture
def mini(tmp_path, monkeypatch, yolov8n):
    seq = shared_path("data/MOT17-mini/train/MOT17-05-FRCNN")
    det = DetectorConfig(model=str(yolov8n), conf=0.1, imgsz=640, classes=[0])
    return seq, det


def test_detections_are_cached_and_replayed_unchanged(mini, tmp_path):
    seq, det = mini
    first = replay.load_or_detect(tmp_path, seq, det)
    assert replay.cache_path(tmp_path, seq, det).is_file()
    again = replay.load_or_detect(tmp_path, seq, det)
    n = len(list((seq / "img1").glob("*.jpg")))
    assert len(first.frames) == len(again.frames) == n and len(first.detect_ms) == n
    for a, b in zip(first.frames, again.frames):
        np.testing.assert_array_equal(a.xyxy, b.xyxy)
        np.testing.assert_array_equal(a.conf, b.conf)
        assert b.feats.shape == (len(b), 64)  # neck features kept for the yolo embedder
    assert sum(len(f) for f in first.frames) > 0


def test_ours_and_an_ultralytics_peer_run_on_the_same_cached_boxes(mini, tmp_path):
    seq, det = mini
    dets = replay.load_or_detect(tmp_path / "cache", seq, det)
    ours_txt, peer_txt = tmp_path / "ours" / f"{seq.name}.txt", tmp_path / "peer" / f"{seq.name}.txt"
    cfg = RunConfig(
        source=str(seq),
        detector=det,
        embedder=EmbedderConfig(name="none"),
        output=OutputConfig(video=None, mot_txt=str(ours_txt), progress=False),
    )
    pipeline.run(cfg, detector=replay.ReplayDetector(dets))
    peer_txt.parent.mkdir()
    common.run_ultralytics_tracker("bytetrack", seq, dets, peer_txt)
    ours, peer = read_mot_txt(ours_txt), read_mot_txt(peer_txt)
    assert len(ours) and len(peer)
    # every reported box is one of the cached detections (ours reports the Kalman state: close to it)
    boxes = np.concatenate([f.xyxy for f in dets.frames])
    for res in (ours, peer):
        xyxy = np.c_[res[:, 2:4], res[:, 2:4] + res[:, 4:6]]
        err = np.abs(xyxy[:, None] - boxes[None]).max(axis=2).min(axis=1)
        assert np.median(err) < 3.0
    s = quality.scores([seq], tmp_path / "ours")
    assert set(s) == {"DEV", seq.name} and 0 < s["DEV"]["HOTA"] <= 1


def test_scheduler_benchmark_compares_each_view_with_its_own_embed_all():
    bench = load_benchmark("scheduler")

    views = {
        "a@960": {
            "embed-all": {"embeddings_computed": 100, "HOTA": 0.50, "IDF1": 0.60},
            "default": {"embeddings_computed": 70, "HOTA": 0.51, "IDF1": 0.58},
        },
        "b@640": {
            "embed-all": {"embeddings_computed": 200, "HOTA": 0.40, "IDF1": 0.50},
            "default": {"embeddings_computed": 100, "HOTA": 0.38, "IDF1": 0.51},
        },
    }
    s = bench.summarize(views, ["default"])["default"]
    assert s["computed_fraction"] == pytest.approx(0.6)  # mean of 70% and 50%
    assert s["d_HOTA"] == pytest.approx(-0.5) and s["d_IDF1"] == pytest.approx(-0.5)
    assert s["d_HOTA_per_view"] == pytest.approx([1.0, -2.0])
    assert s["d_HOTA_se"] == pytest.approx(1.5)  # std (ddof 1) of +1 and -2 is 2.12, / sqrt(2)
    assert s["d_IDF1_se"] == pytest.approx(1.5)  # -2 and +1
    text = bench.table(views, {"default": s})
    assert "| embed-all HOTA / IDF1 | 50.00 / 60.00 | 40.00 / 50.00 |" in text
    assert "| default | 60% | -0.50 +- 1.50 | -0.50 +- 1.50 | +1.0 -2.0 |" in text
    assert bench.standard_error([0.3]) == 0.0
    assert bench.parse_view("w/yolo.pt:640") == ("w/yolo.pt", 640)
    with pytest.raises(SystemExit, match="WEIGHTS:IMGSZ"):
        bench.parse_view("yolo.pt")


def test_speed_benchmark_says_how_to_get_boxmot_when_it_is_missing(monkeypatch):
    speed = load_benchmark("speed")

    monkeypatch.setitem(sys.modules, "boxmot", None)  # import boxmot -> ImportError
    with pytest.raises(SystemExit, match="boxmot is not importable"):
        speed.boxmot_botsort("unused.mp4", None, "osnet_x0_25_msmt17.pt", 1, None)


def test_memory_growth_is_the_second_half_slope_in_mb_per_1000_frames():
    memory = load_benchmark("memory")

    flat_then_leak = np.r_[np.full(50, 300.0), 300.0 + 0.02 * np.arange(50)]
    assert memory.growth_mb_per_1000(flat_then_leak) == pytest.approx(20.0)
    assert memory.growth_mb_per_1000(np.full(40, 500.0)) == pytest.approx(0.0, abs=1e-9)
    assert memory.growth_mb_per_1000([400.0]) == 0.0
    p = memory.profile(list(np.arange(1.0, 101.0)), warmup=10)
    assert (p["frames"], p["after_warmup"], p["25%"], p["50%"], p["100%"], p["peak"]) == (100, 11, 25, 50, 100, 100)


def test_memory_benchmark_loops_the_source_and_reads_rss_on_every_frame(tmp_path, yolov8n, osnet_onnx):
    memory = load_benchmark("memory")

    from mot_dinov3.io import FrameSource

    seq = shared_path("data/MOT17-mini/train/MOT17-05-FRCNN")
    n = len(list((seq / "img1").glob("*.jpg")))
    det = DetectorConfig(model=str(yolov8n), conf=0.1, imgsz=320, classes=[0])
    rss, summary = memory.measure(str(seq), det, str(osnet_onnx), loops=2, workdir=tmp_path)
    assert len(rss) == summary["frames"] == 2 * n
    assert min(rss) > 100  # MB: a process with torch and the models loaded
    assert FrameSource(tmp_path / "tracked.mp4").length == 2 * n  # the annotated video of the long run
    assert read_mot_txt(tmp_path / "tracked.txt")[:, 0].max() > n  # results from the second loop too


def test_crop_benchmark_shows_osnet_separates_people_best_on_the_box_itself(osnet_onnx, mot17_09, tmp_path):
    """benchmarks/crops.py on real MOT17-09 ground truth (every 60th frame): why ``onnx`` crops the box
    itself by default. Its first row is the default policy; the last one is the padded 1:2 window."""
    out = crops.main(
        ["--seqs", str(mot17_09), "--reid", str(osnet_onnx), "--every", "60", "--json", str(tmp_path / "crops.json")]
    )
    rows = out["rows"]
    assert (tmp_path / "crops.json").is_file() and len(rows) == len(crops.POLICIES)
    for r in rows:
        assert r["same_pairs"] > 50 and r["other_pairs"] > 500 and r["same_median"] < r["other_median"]
    default = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    assert (rows[0]["crop_pad"], rows[0]["crop_square"]) == (default.crop_pad, default.crop_square)
    assert rows[0]["gap"] > rows[-1]["gap"] + 0.05 and rows[0]["auc"] > rows[-1]["auc"], rows
    ids, frames = np.array([1, 1, 2, 2]), np.array([1, 2, 1, 2])
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 1]]
    assert crops.separation(emb, ids, frames)["auc"] == 1.0  # same identity identical, others orthogonal


def test_generalise_replays_cached_embeddings_as_the_real_embedder(tmp_path, person_detections, osnet_onnx, tud_campus):
    """generalise.py's CachedEmbedder serves each detection its precomputed vector, found by the image the
    replay detected (the pipeline detects ahead of the frame it tracks): the same tracks as OSNet itself."""
    generalise = load_benchmark("generalise")
    dets = person_detections(tud_campus)
    osnet = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    images = [f.image for f in FrameSource(tud_campus)]
    vectors = [osnet.embed(img, d.xyxy) for img, d in zip(images, dets.frames)]

    def run(name, embedder):
        txt = tmp_path / name / f"{tud_campus.name}.txt"
        cfg = RunConfig(
            source=str(tud_campus),
            embedder=EmbedderConfig(name="onnx"),
            output=OutputConfig(video=None, mot_txt=str(txt), progress=False),
        )
        return pipeline.run(cfg, embedder=embedder(), detector=replayed), read_mot_txt(txt)

    replayed = replay.ReplayDetector(dets)
    real, real_rows = run("real", lambda: osnet)
    replayed = replay.ReplayDetector(dets)
    cached, cached_rows = run("cached", lambda: generalise.CachedEmbedder(dets.frames, vectors, replayed))
    assert cached.embeddings_computed == real.embeddings_computed > 0
    np.testing.assert_array_equal(cached_rows[:, :2], real_rows[:, :2])  # frames and ids
    np.testing.assert_allclose(cached_rows[:, 2:6], real_rows[:, 2:6], atol=1e-3)


def test_replay_detector_tells_which_frame_an_image_got():
    frames = [replay.Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))] * 12
    det = replay.ReplayDetector(replay.SequenceDetections(frames, np.zeros(12), np.zeros(12)))
    images = [np.zeros((2, 2, 3), np.uint8) for _ in range(12)]
    for img in images:
        det(img)
    assert [det.frame_index(img) for img in images[-8:]] == list(range(4, 12))
    with pytest.raises(KeyError):
        det.frame_index(images[0])  # only the last 8 are kept
