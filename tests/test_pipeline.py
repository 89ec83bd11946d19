"""The frame loop with real YOLO boxes and OSNet: embeddings of low-score boxes (never read) are not computed;
detection runs ahead in a thread with the results of the plain loop."""

import threading

import numpy as np
import pytest

from mot_dinov3 import pipeline, replay
from mot_dinov3.api import MultiObjectTracker
from mot_dinov3.config import DetectorConfig, EmbedderConfig, OutputConfig, RunConfig, SchedulerConfig
from mot_dinov3.features.factory import create_embedder
from mot_dinov3.gating import Gating
from mot_dinov3.io import FrameSource, read_mot_txt


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


class _WatchedDetector(replay.ReplayDetector):
    """Replayed boxes; records the thread of each call; may fail at one frame."""

    def __init__(self, dets, fail_at=None):
        super().__init__(dets)
        self.threads, self.fail_at = [], fail_at

    def __call__(self, image):
        self.threads.append(threading.get_ident())
        if self._next + 1 == self.fail_at:
            raise RuntimeError(f"detector failed at frame {self.fail_at}")
        return super().__call__(image)


def _cfg(seq, txt=None, max_frames=None, embedder="onnx"):
    return RunConfig(
        source=str(seq),
        embedder=EmbedderConfig(name=embedder),
        output=OutputConfig(video=None, mot_txt=str(txt) if txt else None, progress=False),
        max_frames=max_frames,
    )


def test_detection_ahead_in_a_thread_gives_the_sequential_results(person_detections, osnet_onnx, tud_campus):
    """After the first frame (detected in the caller's thread: an export stops at Ctrl-C) the detector
    runs in one background thread, at most two frames ahead of the loop (one queued, one in progress),
    and the tracks are those of the plain loop over ``MultiObjectTracker.update``."""
    dets = person_detections(tud_campus)
    embedder = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    detector = _WatchedDetector(dets)
    ahead = []
    got = []
    for index, _, tracks in pipeline.frames(_cfg(tud_campus), embedder=embedder, detector=detector):
        ahead.append(detector._next - index)
        got.append(tracks)
    main = threading.get_ident()
    assert detector.threads[0] == main and len(set(detector.threads[1:])) == 1 and main not in detector.threads[1:]
    assert max(ahead) <= 2 and len(got) == len(dets.frames)

    mot = MultiObjectTracker(embedder, fps=FrameSource(tud_campus).fps)
    for frame, d, tracks in zip(FrameSource(tud_campus), dets.frames, got):
        want = mot.update(np.column_stack([d.xyxy, d.conf, d.cls]), frame.image)
        np.testing.assert_array_equal(tracks, want)


def test_a_pytorch_cpu_detector_runs_in_the_callers_thread(person_detections, osnet_onnx, tud_campus):
    """PyTorch on a CPU is not detected ahead: a second thread would give PyTorch a second OpenMP pool
    (see ``pipeline.detect_ahead``). The tracks are the same as with detection ahead."""
    dets = person_detections(tud_campus)
    embedder = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    runs = {}
    for torch_cpu in (False, True):
        detector = _WatchedDetector(dets)
        detector.torch_cpu = torch_cpu
        summary: list = []
        frames = pipeline.frames(_cfg(tud_campus), embedder=embedder, detector=detector, summary=summary)
        runs[torch_cpu] = [t for _, _, t in frames]
        in_caller = {threading.get_ident()} == set(detector.threads)
        assert in_caller == torch_cpu and len(detector.threads) == len(dets.frames)
        assert summary[0].detected_ahead != torch_cpu  # what the summary line says
    for a, b in zip(runs[False], runs[True], strict=True):
        np.testing.assert_array_equal(a, b)


def test_detection_ahead_stops_at_max_frames_and_reraises_errors(tmp_path, person_detections, tud_campus):
    """--max-frames N detects N frames, not one more; a detector error reaches the caller, with every
    frame before it in the MOT txt and no thread left running."""
    dets = person_detections(tud_campus)
    detector = _WatchedDetector(dets)
    summary = pipeline.run(_cfg(tud_campus, max_frames=7, embedder="none"), detector=detector)
    assert summary.frames == 7 and detector._next == 7 and summary.detector_ms > 0

    txt = tmp_path / "TUD-Campus.txt"
    with pytest.raises(RuntimeError, match="frame 12"):
        pipeline.run(_cfg(tud_campus, txt, embedder="none"), detector=_WatchedDetector(dets, fail_at=12))
    assert set(read_mot_txt(txt)[:, 0].astype(int)) <= set(range(1, 12))
    assert len(set(read_mot_txt(txt)[:, 0].astype(int))) >= 9  # tracks confirmed from frame 2
    assert not any(t.name == "frame-prefetch" for t in threading.enumerate())


class _InterruptedBetweenFrames:
    """What Ctrl-C landing in ``run``'s own loop looks like: the generator is suspended at its ``yield``
    when ``KeyboardInterrupt`` is raised in the caller's frame."""

    def __init__(self, it, after):
        self.it, self.after, self.served = it, after, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.served == self.after:
            raise KeyboardInterrupt
        self.served += 1
        return next(self.it)

    def throw(self, exc):
        return self.it.throw(exc)


def test_an_interrupt_between_two_frames_still_ends_the_run(tmp_path, monkeypatch, person_detections, tud_campus):
    """A signal can land outside the frame loop (between two frames); the run still stops as
    interrupted, with its summary and the frames done."""
    real = pipeline.frames
    monkeypatch.setattr(pipeline, "frames", lambda *a, **k: _InterruptedBetweenFrames(real(*a, **k), 5))
    txt = tmp_path / "TUD-Campus.txt"
    try:
        summary = pipeline.run(
            _cfg(tud_campus, txt, embedder="none"), detector=_WatchedDetector(person_detections(tud_campus))
        )
    except KeyboardInterrupt:  # escaping, it would stop the whole test session
        pytest.fail("the interrupt escaped pipeline.run")
    assert summary.interrupted and summary.frames == 5
    assert set(read_mot_txt(txt)[:, 0].astype(int)) <= set(range(1, 6)) and len(read_mot_txt(txt)) > 0
