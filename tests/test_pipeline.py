"""The frame loop with real YOLO boxes and OSNet: embeddings of low-score boxes (never read) are not computed."""

import numpy as np
import pytest

from mot_dinov3 import pipeline, replay
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig, SchedulerConfig
from mot_dinov3.features.factory import create_embedder
from mot_dinov3.gating import Gating
from mot_dinov3.io import read_mot_txt


@pytest.mark.slow
def test_skipping_unread_embeddings_changes_no_track(tmp_path, monkeypatch, yolov8n, osnet_onnx, tud_campus):
    """The refresh rules: computing the embeddings of low-score boxes too changes no track (they are matched
    by IoU alone). Lazy memory is different by design: a wanted box served from cache leaves its look in
    the track's buffer, which later enters the track's memory, so wanting low-score boxes there would
    feed their looks into memories."""
    det = DetectorConfig(model=str(yolov8n), conf=0.1, imgsz=960, classes=[0])
    dets = replay.load_or_detect(tmp_path / "cache", tud_campus, det)
    embedder = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))

    def run(name):
        txt = tmp_path / name / "TUD-Campus.txt"
        cfg = RunConfig(
            source=str(tud_campus),
            detector=det,
            scheduler=SchedulerConfig(lazy=False),
            embedder=EmbedderConfig(),
            output=OutputConfig(video=None, mot_txt=str(txt), progress=False),
        )
        summary = pipeline.run(cfg, embedder=embedder, detector=replay.ReplayDetector(dets))
        return summary, read_mot_txt(txt)

    shipped, tracks = run("shipped")
    with monkeypatch.context() as m:  # every box wanted, low-score ones too
        m.setattr(Gating, "reads_embedding", lambda self, conf: conf >= self.cfg.track_low_thresh)
        every, tracks_every = run("every")
    np.testing.assert_array_equal(tracks, tracks_every)
    assert shipped.embeddings_computed < every.embeddings_computed
    assert shipped.embed_decisions["skip"] > every.embed_decisions.get("skip", 0)
