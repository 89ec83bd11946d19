"""The H.264 video (PyAV) and the HTML report page: a short real run's video is H.264 and every frame decodes;
headless Chromium plays it in the report (duration, decoded frames) with no console error; the writer's
fallbacks and failures (no H.264 encoder, odd sizes, a full disk) and the report's pure rendering."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from conftest import shared_path

from mot_dinov3 import io as mio
from mot_dinov3 import pipeline, report, video
from mot_dinov3.cli import main
from mot_dinov3.config import EmbedderConfig, OutputConfig, RunConfig
from mot_dinov3.errors import UserError, WriteError

N_FRAMES = 8


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        pytest.skip("needs headless Chromium (apt-get install chromium): the report browser test is skipped")
    return exe


_ONTO_3_AND_4 = """
import fcntl, os, sys
given = [int(fd) for fd in sys.argv[1:3]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in given]  # copies above 4, then the originals go
for fd in given:
    os.close(fd)
for fd, target in zip(high, (3, 4)):
    os.dup2(fd, target)
    os.close(fd)
os.execv(sys.argv[3], [sys.argv[3], *sys.argv[4:], "about:blank"])
"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on ``--remote-debugging-pipe`` (fd 3: commands
    in, fd 4: replies and events out, NUL-separated JSON), one page attached."""

    def __init__(self, exe: str, profile: Path):
        cmd_r, cmd_w = os.pipe()
        out_r, out_w = os.pipe()

        args = ["--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--mute-audio"]
        args += ["--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--window-size=1000,1200"]
        # the pipe ends go onto fds 3 and 4 in a small single-threaded Python that then execs Chromium (a
        # preexec_fn here could deadlock: this process runs threads, which may hold locks at the fork)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ONTO_3_AND_4, str(cmd_r), str(out_w), exe, *args, f"--user-data-dir={profile}"],
            pass_fds=(cmd_r, out_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(cmd_r)
        os.close(out_w)
        self._w, self._r, self._buf, self._id = cmd_w, out_r, b"", 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", page=True)

    def send(self, method: str, params: dict | None = None, page: bool = False, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if page:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def open(self, url: str, timeout: float = 30) -> None:
        self.events.clear()
        self.send("Page.navigate", {"url": url}, page=True)
        deadline = time.monotonic() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            self._receive(deadline)

    def evaluate(self, expression: str) -> object:
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}, page=True
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (failed loads) since :meth:`open`."""
        out = []
        for e in self.events:
            p = e["params"]
            if e["method"] == "Runtime.exceptionThrown":
                out.append(str(p["exceptionDetails"]))
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(str(p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(str(p["entry"]))
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (TimeoutError, EOFError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


VIDEO_STATE = """new Promise(function (done) {
  var v = document.getElementById("video");
  if (!v) return done(null);
  function state() {
    done({duration: v.duration, readyState: v.readyState, width: v.videoWidth, height: v.videoHeight,
          error: v.error ? v.error.code : null});
  }
  if (v.readyState >= 2) return state();
  v.addEventListener("loadeddata", state);
  v.addEventListener("error", state);
  setTimeout(state, 20000);
})"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> SimpleNamespace:
    """A short real run (the demo video's 8 frames, YOLOv8n at 320 px, OSNet ONNX) with a video, a JSON
    summary and a report."""
    root = tmp_path_factory.mktemp("report")
    out = SimpleNamespace(video=root / "v.mp4", json=root / "s.json", page=root / "r.html", root=root)
    args = ["--source", str(shared_path("data/videos/mmtracking_demo.mp4"))]
    args += ["--det", str(shared_path("weights/yolov8n_from_int8.pt")), "--imgsz", "320", "--embedder", "onnx"]
    args += ["--embed-model", str(shared_path("weights/osnet_x0_25_msmt17.onnx")), "--max-frames", str(N_FRAMES)]
    args += ["--output", str(out.video), "--save-json", str(out.json), "--report", str(out.page), "--no-progress"]
    mp = pytest.MonkeyPatch()  # a module fixture: its own user files (conftest's are per test)
    mp.setenv("MOT_DINOV3_CONFIG", str(root / "user/config.json"))
    mp.setenv("MOT_DINOV3_WEIGHTS", str(root / "user/weights"))
    try:
        assert main(args) == 0
    finally:
        mp.undo()
    out.summary = json.loads(out.json.read_text())
    return out


def test_the_video_is_h264_every_frame_decodes_and_the_report_is_self_contained(run):
    with av.open(str(run.video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (1920, 1080) and float(stream.average_rate) == pytest.approx(3.0)
        assert sum(1 for _ in container.decode(video=0)) == N_FRAMES
    data = run.video.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: the index first, so browsers stream it
    page = run.page.read_text()
    assert run.summary["frames"] == N_FRAMES and run.summary["outputs"]["report"] == str(run.page)
    assert run.summary["detector_ms"] > 0 and "detector (own ms per frame, one frame ahead)" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page loads nothing from a network"
    assert 'id="video-data"' in page and page.count("<svg") == 3
    assert len(re.findall(r'<tr data-frame="\d+">', page)) == run.summary["tracks"]
    assert not list(run.root.glob("*.part*"))


def test_headless_chromium_plays_the_reports_video_embedded_and_linked(run, tmp_path):
    exe = chromium()
    n_tracks = run.summary["tracks"]
    record = report.RunRecord()  # a second page linking the same video, not embedding it
    for i in range(1, N_FRAMES + 1):
        record.add_frame(i, 3, 1, [(1, i == 1)])
    linked = run.root / "sub" / "linked.html"
    data = report.ReportData(record, {"detect": [1.0] * N_FRAMES}, {}, 3.0, video=run.video, video_codec="h264")
    report.write_report(linked, data, embed_limit=0)
    assert 'src="../v.mp4"' in linked.read_text()
    browser = Browser(exe, tmp_path / "profile")
    try:
        for page in (run.page, linked):
            browser.open(page.as_uri())
            state = browser.evaluate(VIDEO_STATE)
            assert isinstance(state, dict) and state["error"] is None, (page.name, state)
            assert state["readyState"] >= 2 and (state["width"], state["height"]) == (1920, 1080), state
            assert abs(state["duration"] - N_FRAMES / 3.0) <= 1 / 3.0, state  # within one frame
            rows = browser.evaluate("document.querySelectorAll('#tracks tbody tr').length")
            assert rows == (n_tracks if page == run.page else 1)
            assert browser.errors() == [], browser.errors()
            if page == run.page:
                browser.evaluate(  # a frame to show in the screenshot
                    "new Promise(function (done) { var v = document.getElementById('video');"
                    " v.addEventListener('seeked', function () { done(true); }); v.currentTime = 1.5; })"
                )
                shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, True)
                png = tmp_path / "report.png"
                png.write_bytes(base64.b64decode(shot["data"]))
                assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    finally:
        browser.close()


def test_without_an_h264_encoder_auto_falls_back_to_mp4v_with_a_notice(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setattr(video, "H264_ENCODERS", ("no-such-encoder",))
    caplog.set_level(logging.WARNING, logger="mot_dinov3")
    writer = video.VideoWriter(tmp_path / "v.mp4", 10.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.close()
    assert writer.codec == "mp4v" and writer.written
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    (notice,) = [r.getMessage() for r in caplog.records]
    assert "has no working H.264 encoder" in notice and "writing mp4v, which browsers do not play" in notice
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed at all
    assert video.find_h264_encoder() == (None, "PyAV is not installed")
    with pytest.raises(UserError, match=r"^codec='h264': PyAV is not installed; pip install 'av>=12'"):
        video.VideoWriter(tmp_path / "w.mp4", 10.0, (64, 48), codec="h264")
    rc = main(["--source", str(tmp_path / "v.mp4"), "--codec", "h264", "--output", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: --codec h264: PyAV is not installed;") and "--codec mp4v" in err, err
    assert not (tmp_path / "o.mp4").exists() and not list(tmp_path.glob("*.part*"))


def test_codec_choices_odd_sizes_and_frames_of_another_size(tmp_path):
    with pytest.raises(UserError, match=r"^codec='x264': unknown; use one of auto, h264, mp4v, mjpg$"):
        OutputConfig(codec="x264")
    with pytest.raises(UserError, match=r"^codec='h264': cannot go in \.avi; use a \.mp4 output"):
        video.VideoWriter(tmp_path / "v.avi", 10.0, (64, 48), codec="h264")
    assert video.resolve_codec("v.avi") == "mjpg" and video.resolve_codec("v.mkv", "mp4v") == "mp4v"
    writer = video.VideoWriter(tmp_path / "odd.mkv", 25.0, (65, 47))  # padded to 66x48 for 4:2:0
    assert writer.codec == "h264"
    with pytest.raises(UserError, match=r"a frame of 64x48 for a 65x47 video; give every frame the first one's size"):
        writer.write(np.zeros((48, 64, 3), np.uint8))
    for i in range(5):
        writer.write(np.full((47, 65, 3), 50 * i, np.uint8))
    writer.close()
    writer.close()  # a second close does nothing
    with av.open(str(tmp_path / "odd.mkv")) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (48, 66, 3) and abs(int(frames[4][20, 20, 0]) - 200) <= 8
    empty = video.VideoWriter(tmp_path / "empty.mp4", 25.0, (64, 48))
    empty.close()  # no frame: no file
    assert not empty.written and not list(tmp_path.glob("empty*"))


@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_a_background_writer_writes_the_same_frames_in_order(tmp_path, codec):
    rng = np.random.default_rng(0)
    images = [cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), np.uint8), (9, 9), 3) for _ in range(30)]
    decoded = {}
    for background in (False, True):
        path = tmp_path / f"{background}.mp4"
        writer = video.VideoWriter(path, 25.0, (128, 96), codec=codec, background=background)
        for im in images:
            writer.write(im)
        writer.close()
        assert writer.frames == 30 and writer.written
        with av.open(str(path)) as container:
            decoded[background] = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(decoded[True]) == 30
    assert all(np.array_equal(a, b) for a, b in zip(decoded[False], decoded[True]))
    assert (
        np.abs(decoded[True][7].astype(int) - images[7]).mean()
        < np.abs(decoded[True][8].astype(int) - images[7]).mean()
    )


def test_a_background_writer_hands_an_encoder_bug_to_the_caller(tmp_path, monkeypatch):
    writer = video.VideoWriter(tmp_path / "v.mp4", 25.0, (64, 48), codec="mp4v", background=True)

    def broken(image):
        raise ValueError("a bug in the encoder")

    monkeypatch.setattr(writer._enc, "write", broken)
    with pytest.raises(ValueError, match="a bug in the encoder"):
        for _ in range(10):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.close()  # raised once already: close finalises (nothing written, no file)
    assert not writer.written and not list(tmp_path.glob("v*"))


def test_reserve_waits_for_the_encoder_so_the_next_write_does_not(tmp_path, monkeypatch):
    """A caller writing one frame to the MOT txt and the video reserves the video's place first: the
    wait (where an interrupt lands) happens before anything is written, the write after it is instant."""
    writer = video.VideoWriter(tmp_path / "v.mp4", 25.0, (64, 48), codec="mp4v", background=True)
    permits, encode = threading.Semaphore(0), writer._enc.write

    def gated(image):  # the encoder encodes one frame per permit
        assert permits.acquire(timeout=10)
        encode(image)

    monkeypatch.setattr(writer._enc, "write", gated)
    image = np.zeros((48, 64, 3), np.uint8)
    for _ in range(video.BACKGROUND_DEPTH):
        writer.write(image)  # no room left now
    waiter = threading.Thread(target=writer.reserve)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # reserve waits for the encoder
    permits.release()  # one frame encoded: its place is reserved, the encoder is stuck on the next
    waiter.join(10)
    assert not waiter.is_alive()
    done = threading.Event()
    threading.Thread(target=lambda: (writer.write(image), done.set()), daemon=True).start()
    assert done.wait(2)  # the write took the reserved place, though the encoder is still stuck
    for _ in range(video.BACKGROUND_DEPTH):
        permits.release()
    writer.close()
    assert writer.frames == video.BACKGROUND_DEPTH + 1 and writer.written


class _FullContainer:
    """A PyAV output container on a disk that fills after ``whole`` packets: later muxes and the trailer fail."""

    def __init__(self, container, whole: int):
        self._c, self._left = container, whole

    def mux(self, packet):
        if self._left <= 0:
            raise av.error.OSError(errno.ENOSPC, "No space left on device")
        self._left -= 1
        return self._c.mux(packet)

    def close(self):
        try:
            self._c.close()
        finally:
            raise av.error.OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("background", [False, True], ids=["inline", "background"])
def test_a_full_disk_during_an_h264_video_keeps_the_earlier_video(tmp_path, background):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"an earlier video")
    writer = video.VideoWriter(path, 10.0, (64, 48), codec="h264", background=background)
    writer._enc._out = _FullContainer(writer._enc._out, whole=0)  # type: ignore[union-attr]
    with pytest.raises(WriteError, match=r"^output='.*v\.mp4': cannot write frame \d+ \(No space left on device"):
        for i in range(40):  # x264 holds frames back before its first packet
            writer.write(np.random.default_rng(i).integers(0, 255, (48, 64, 3), np.uint8))
    with pytest.raises(WriteError, match=r"the finished video does not play \(No space left on device; .*earlier file"):
        writer.close()
    assert path.read_bytes() == b"an earlier video" and not writer.written and not list(tmp_path.glob("*.part*"))


class _NoBoxes:
    """A detector that finds nothing (the pipeline without a model)."""

    def __call__(self, image):
        z = np.zeros(0, np.float32)
        return SimpleNamespace(xyxy=z.reshape(0, 4), conf=z, cls=z.astype(np.int64), feats=None)


def test_an_interrupted_run_still_writes_its_report(tmp_path):
    def images():
        for i in range(3):
            yield np.full((48, 64, 3), 60 * i, np.uint8)
        raise KeyboardInterrupt

    out = OutputConfig(video=str(tmp_path / "v.mp4"), report=str(tmp_path / "r.html"), progress=False, fps=10.0)
    cfg = RunConfig(source=images(), embedder=EmbedderConfig(name="none"), output=out)
    summary = pipeline.run(cfg, detector=_NoBoxes())  # type: ignore[arg-type]
    assert summary.interrupted and summary.frames == 3
    page = (tmp_path / "r.html").read_text()
    assert "Interrupted after 3 frames." in page and 'id="video-data"' in page and "No confirmed track." in page


def test_report_paths_are_checked_before_the_run(tmp_path):
    src = mio.ImageFrames([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(UserError, match=r"^report='.*r\.txt': the report is an HTML page; use a \.html path$"):
        mio.check_outputs({"report": str(tmp_path / "r.txt")}, src)
    with pytest.raises(UserError, match=r"^report='.*s\.html' is also save_json=; choose different paths$"):
        mio.check_outputs({"save_json": str(tmp_path / "s.html"), "report": str(tmp_path / "s.html")}, src)


def test_the_report_bins_long_runs_escapes_text_and_notes_a_missing_video(tmp_path):
    record = report.RunRecord()
    n = 2500
    for i in range(1, n + 1):
        record.add_frame(i, i % 7, i % 3, [(1, i % 5 == 0), (2, False)] if i > 100 else [(1, i % 5 == 0)])
    assert record.track_rows() == [report.TrackRow(1, 1, n, n, n // 5), report.TrackRow(2, 101, n, n - 100, 0)]
    stages = {"detect": np.full(n, 5.0), "embed": np.full(n, 2.0)}
    stages["detect"][:3] = 9000.0  # a warm-up: cut at the top of the axis, which fits the other frames
    data = report.ReportData(record, stages, {"frames": n}, 25.0, title="<script>x</script>", notes=["a & b"])
    page = report.render(data, tmp_path / "r.html")
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "a &amp; b" in page
    assert (
        "No video was written for this run." in page
        and "(means over 3 frames); 1 point above 15 cut (max 9002)" in page
    )
    points = re.findall(r'<polyline points="([^"]*)"', page)
    assert points and all(len(p.split()) <= report.MAX_POINTS for p in points)
    (tmp_path / "v.mp4").write_bytes(b"an mp4v video")
    mp4v = report.ReportData(record, stages, {}, 25.0, video=tmp_path / "v.mp4", video_codec="mp4v")
    assert "which browsers do not play" in report.render(mp4v, tmp_path / "r.html")
