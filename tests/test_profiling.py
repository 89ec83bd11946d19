"""Stage timing and the run summary, on a deterministic clock."""

import pytest

from mot_dinov3 import profiling
from mot_dinov3.profiling import StageTimer, summarize


def test_stage_times_add_up_per_frame_and_feed_the_summary(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(profiling.time, "perf_counter", lambda: now[0])

    def spend(timer, stage, ms):
        with timer.stage(stage):
            now[0] += ms / 1000.0

    timer = StageTimer()
    for detect_ms in (100.0, 200.0, 300.0, 400.0):
        spend(timer, "detect", detect_ms)
        spend(timer, "embed", 10.0)
        spend(timer, "embed", 10.0)  # two calls in one frame add up
        timer.end_frame()
    assert timer.frames == 4
    assert timer.frame_totals().tolist() == pytest.approx([120.0, 220.0, 320.0, 420.0])

    s = summarize(timer, computed=6, reused=2, tracks=3, decisions={"crowded": 6})
    assert s.frames == 4 and s.fps == pytest.approx(4 / 1.08)
    assert (s.latency_mean_ms, s.latency_p50_ms) == pytest.approx((270.0, 270.0))
    assert s.latency_p95_ms == pytest.approx(405.0)  # numpy's linear interpolation between 320 and 420
    assert s.stage_mean_ms["detect"] == pytest.approx(250.0) and s.stage_mean_ms["embed"] == pytest.approx(20.0)
    assert s.stage_percent["embed"] == pytest.approx(100 * 80 / 1080)
    assert s.embeddings_per_frame == 1.5 and s.embed_decisions == {"crowded": 6}
    assert "Embeddings: computed 6 (1.50/frame), reused 2" in s.text().splitlines()  # no settings: no mode
    assert s.detector_ms == 0.0 and "Detector:" not in s.text()
    ahead = summarize(timer, computed=0, reused=0, tracks=0, detector_ms=[300.0, 500.0])  # its own time, not the wait
    assert ahead.detector_ms == pytest.approx(400.0) and "Detector: 400.0 ms a frame" in ahead.text().splitlines()[4]
    assert "one frame ahead" in ahead.text()
    inline = summarize(timer, computed=0, reused=0, tracks=0, detector_ms=[300.0], detected_ahead=False)
    assert "Detector: 300.0 ms a frame, in the loop's thread" in inline.text() and "ahead" not in inline.text()


@pytest.mark.parametrize(
    "embedder, sched, mode",
    [
        ("onnx", {"lazy": True, "embed_all": False}, " (lazy memory)"),
        ("onnx", {"lazy": False, "embed_all": False}, " (refresh rules)"),
        ("yolo", {"lazy": False, "embed_all": True}, " (embed-all)"),
        ("none", {"lazy": False, "embed_all": False}, ""),
    ],
)
def test_summary_names_the_scheduler_rules_that_ran(embedder, sched, mode):
    s = summarize(StageTimer(), computed=0, reused=0, tracks=0, settings={"embedder": embedder, "scheduler": sched})
    assert f"Embeddings: computed 0 (0.00/frame), reused 0{mode}" in s.text().splitlines()


def test_an_empty_run_summarises_to_zeros():
    s = summarize(StageTimer(), computed=0, reused=0, tracks=0, interrupted=True)
    assert (s.frames, s.fps, s.latency_p95_ms, s.embeddings_per_frame) == (0, 0.0, 0.0, 0.0)
    assert s.interrupted and "(interrupted)" in s.text()
