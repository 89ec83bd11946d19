"""No input can lose data: bad inputs end in one line and exit 2 with every file as it was; outputs are
written beside their path and moved into place only when complete; full disks, mixed frame sizes and
signals are handled. Tiny inputs: six TUD-Campus frames copied into tmp_path, the real YOLOv8n at 320 px."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import ultralytics  # noqa: F401  # at collection: its log handler takes the session's stdout, not a closed capsys one
from conftest import ROOT, shared_path

import mot_dinov3
from mot_dinov3 import io as mio
from mot_dinov3.cli import main
from mot_dinov3.config import DetectorConfig, OutputConfig, TrackerConfig
from mot_dinov3.errors import UserError
from mot_dinov3.evaluate import check_results

N_FRAMES = 6


def video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def write_video(path: Path, images: list[np.ndarray], fps: float = 10.0) -> None:
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    for image in images:
        writer.write(image)
    writer.release()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """frames/ (6 images), seq/ (the same as a MOTChallenge sequence with gt), clip.mp4, res/seq.txt
    (results for eval) and old/ (an earlier run's outputs)."""
    src = shared_path("data/MOT15/train/TUD-Campus")
    root = tmp_path_factory.mktemp("template")
    for folder in ("frames", "seq/img1", "seq/gt", "res", "old"):
        (root / folder).mkdir(parents=True)
    names = sorted(p.name for p in (src / "img1").glob("*.jpg"))[:N_FRAMES]
    for name in names:  # copyfile: writable copies of the read-only shared files
        shutil.copyfile(src / "img1" / name, root / "frames" / name)
        shutil.copyfile(src / "img1" / name, root / "seq/img1" / name)
    (root / "seq/seqinfo.ini").write_text(
        f"[Sequence]\nname=seq\nimDir=img1\nframeRate=25\nseqLength={N_FRAMES}\nimWidth=640\nimHeight=480\n"
    )
    gt = [line for line in (src / "gt/gt.txt").read_text().splitlines() if int(line.split(",")[0]) <= N_FRAMES]
    (root / "seq/gt/gt.txt").write_text("\n".join(gt) + "\n")
    (root / "res/seq.txt").write_text("\n".join(gt) + "\n")  # perfect results
    images = [cv2.imread(str(root / "frames" / n)) for n in names]
    write_video(root / "clip.mp4", images)
    write_video(root / "old/old.mp4", images[:2])
    (root / "old/old.txt").write_text("1,1,10.00,20.00,30.00,40.00,0.9000,-1,-1,-1\n")
    (root / "old/old.json").write_text('{"an earlier": "run"}\n')
    return root


@pytest.fixture
def work(template, tmp_path) -> Path:
    root = tmp_path / "w"
    shutil.copytree(template, root)
    return root


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*.part*")]


DEFAULTS = {
    "--source": "{root}/frames",
    "--det": "{det}",
    "--embedder": "none",
    "--imgsz": "320",
    "--max-frames": "3",
    "--output": "{root}/old/old.mp4",
    "--save-mot": "{root}/old/old.txt",
    "--save-json": "{root}/old/old.json",
}


def cli_args(args: list[str], root: Path) -> list[str]:
    fill = {"root": root, "det": shared_path("weights/yolov8n_from_int8.pt"), "osnet": OSNET, "ov": OPENVINO}
    args = [a.format(**fill) for a in args]
    if args and args[0] == "eval":
        return args
    extra = [x for flag, value in DEFAULTS.items() if flag not in args for x in (flag, value.format(**fill))]
    return [*args, *extra, "--no-progress"]


def run_main(args: list[str], capsys, caplog) -> tuple[int, str, str, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        rc = main(args)
    out, err = capsys.readouterr()
    notices = [r.getMessage() for r in caplog.records if r.name.startswith("mot_dinov3")]  # stderr in the CLI
    return rc, out, err, notices


OSNET = "/work/shared/weights/osnet_x0_25_msmt17.onnx"
OPENVINO = "/work/shared/weights/yolov8n_int8_openvino_model"
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# (id, files to write first {relative path: text}, args, a needle of the one error line)
CASES = [
    # -- sources
    ("source-missing", {}, ["--source", "{root}/nope.mp4"], "--source {root}/nope.mp4: no such file"),
    ("source-not-video", {"notes.mp4": "hello"}, ["--source", "{root}/notes.mp4"], "not a readable video"),
    ("source-empty-folder", {"empty/readme.md": "x"}, ["--source", "{root}/empty"], "no images found"),
    ("source-bad-first-image", {"frames/000000.jpg": "x"}, [], "cannot decode image 000000.jpg"),
    ("seqinfo-no-section", {"seq/seqinfo.ini": "frameRate=25\n"}, ["--source", "{root}/seq"], "not a valid seqinfo"),
    (
        "seqinfo-framerate-text",
        {"seq/seqinfo.ini": "[Sequence]\nframeRate=fast\n"},
        ["--source", "{root}/seq"],
        "framerate='fast' is not a number > 0",
    ),
    (
        "seqinfo-framerate-zero",
        {"seq/seqinfo.ini": "[Sequence]\nframeRate=0\n"},
        ["--source", "{root}/seq"],
        "framerate='0' is not a number > 0",
    ),
    (
        "seqinfo-duplicate-key",
        {"seq/seqinfo.ini": "[Sequence]\nframeRate=25\nframeRate=30\n"},
        ["--source", "{root}/seq"],
        "not a valid seqinfo.ini (DuplicateOptionError",
    ),
    (
        "seqinfo-imdir-missing",
        {"seq/seqinfo.ini": "[Sequence]\nimDir=nowhere\n"},
        ["--source", "{root}/seq"],
        "no images found",
    ),
    # -- models
    ("det-missing", {}, ["--det", "/no/such/weights.pt"], "--det /no/such/weights.pt: file not found"),
    ("det-garbage", {"bad.pt": "garbage"}, ["--det", "{root}/bad.pt"], "cannot load detector weights"),
    ("det-not-a-detector", {}, ["--det", "{osnet}"], "the detector failed on the first frame"),
    pytest.param(
        "det-missing-package",
        {},
        ["--det", "{ov}"],
        "needs the Python package 'openvino', which is not installed: pip install openvino",
        marks=pytest.mark.skipif(HAS_OPENVINO, reason="openvino is installed"),
    ),
    ("det-exported-for-yolo-embedder", {}, ["--det", "{ov}", "--embedder", "yolo"], "needs a PyTorch .pt detector"),
    ("classes-unknown-id", {}, ["--classes", "0,999"], "--classes 0,999: --det"),
    ("classes-name", {}, ["--classes", "person"], "--classes person: expected comma-separated"),
    ("classes-negative", {}, ["--classes", "0,-1"], "--classes 0,-1: expected comma-separated"),
    ("embedder-unknown", {}, ["--embedder", "resnet"], "--embedder resnet: unknown embedder"),
    ("embed-model-missing", {}, ["--embedder", "onnx", "--embed-model", "/no/m.onnx"], "--embed-model /no/m.onnx"),
    ("device-banana", {}, ["--device", "banana"], "--device banana: not a device"),
    pytest.param(
        "device-cuda-absent",
        {},
        ["--device", "cuda:0"],
        "--device cuda:0: no CUDA GPU is available",
        marks=pytest.mark.skipif(_has_cuda(), reason="CUDA is available"),
    ),
    # -- flags
    ("conf-above-1", {}, ["--conf", "1.5"], "--conf 1.5: must be a number in [0, 1]"),
    ("conf-negative", {}, ["--conf", "-0.1"], "--conf -0.1: must be a number in [0, 1]"),
    ("conf-nan", {}, ["--conf", "nan"], "--conf nan: not a finite number"),
    ("imgsz-zero", {}, ["--imgsz", "0"], "--imgsz 0: must be an integer in [32, 4096]"),
    ("imgsz-huge", {}, ["--imgsz", "100000"], "--imgsz 100000: must be an integer in [32, 4096]"),
    ("max-frames-zero", {}, ["--max-frames", "0"], "--max-frames 0: must be an integer >= 1"),
    ("font-scale-huge", {}, ["--font-scale", "1e6"], "--font-scale 1000000.0: must be a number in (0, 10]"),
    ("font-scale-zero", {}, ["--font-scale", "0"], "--font-scale 0.0: must be a number in (0, 10]"),
    ("line-thickness-huge", {}, ["--line-thickness", "100000"], "--line-thickness 100000: must be an integer in [1,"),
    ("line-thickness-zero", {}, ["--line-thickness", "0"], "--line-thickness 0: must be an integer in [1, 50]"),
    ("fps-zero", {}, ["--fps", "0"], "--fps 0.0: must be a number in (0, 1000]"),
    ("fps-inf", {}, ["--fps", "inf"], "--fps inf: not a finite number"),
    ("crop-pad", {}, ["--crop-pad", "5"], "--crop-pad 5.0: must be a number in [0, 1]"),
    ("embed-iou-gate", {}, ["--embed-iou-gate", "2"], "--embed-iou-gate 2.0: must be a number in [0, 1]"),
    ("embed-budget-negative", {}, ["--embed-budget-ms", "-5"], "--embed-budget-ms -5.0: must be a number >= 0"),
    ("embed-overlap-thr", {}, ["--embed-overlap-thr", "-1"], "--embed-overlap-thr -1.0: must be a number in [0, 1]"),
    ("embed-refresh-zero", {}, ["--embed-refresh", "0"], "--embed-refresh 0: must be >= 1 frame"),
    ("embed-lazy-and-all", {}, ["--embed-lazy", "--embed-all"], "--embed-lazy with --embed-all: choose one"),
    # -- tracker YAML
    ("yaml-string", {"t.yaml": 'match_thresh: "0.7"\n'}, ["--tracker-config", "{root}/t.yaml"], "match_thresh='0.7'"),
    ("yaml-nan", {"t.yaml": "match_thresh: .nan\n"}, ["--tracker-config", "{root}/t.yaml"], "match_thresh=nan: not"),
    ("yaml-range", {"t.yaml": "track_high_thresh: 2\n"}, ["--tracker-config", "{root}/t.yaml"], "in [0, 1]"),
    (
        "yaml-float-count",
        {"t.yaml": "track_buffer: 1.5\n"},
        ["--tracker-config", "{root}/t.yaml"],
        "track_buffer=1.5: must be an integer >= 0",
    ),
    (
        "yaml-bool",
        {"t.yaml": "use_hungarian: 1\n"},
        ["--tracker-config", "{root}/t.yaml"],
        "use_hungarian=1: must be true or false",
    ),
    ("yaml-unknown-key", {"t.yaml": "matchthresh: 0.7\n"}, ["--tracker-config", "{root}/t.yaml"], "unknown keys"),
    ("yaml-list", {"t.yaml": "- 1\n- 2\n"}, ["--tracker-config", "{root}/t.yaml"], "must be a mapping"),
    ("yaml-syntax", {"t.yaml": "a: [1,\n"}, ["--tracker-config", "{root}/t.yaml"], "is not valid YAML"),
    ("yaml-missing", {}, ["--tracker-config", "{root}/none.yaml"], "tracker config not found"),
    ("yaml-gmc", {"t.yaml": "gmc_method: orb2\n"}, ["--tracker-config", "{root}/t.yaml"], "gmc_method 'orb2'"),
    # -- outputs
    ("output-is-source", {}, ["--source", "{root}/clip.mp4", "--output", "{root}/clip.mp4"], "is the source video"),
    ("save-mot-is-source", {}, ["--source", "{root}/clip.mp4", "--save-mot", "{root}/clip.mp4"], "is the source video"),
    ("output-frame-jpg", {}, ["--output", "{root}/frames/000005.jpg"], "cannot write a .jpg video"),
    ("output-in-frames", {}, ["--output", "{root}/frames/v.mp4"], "is inside the source image folder"),
    ("save-mot-a-frame", {}, ["--save-mot", "{root}/frames/000005.jpg"], "is inside the source image folder"),
    ("save-json-seqinfo", {}, ["--source", "{root}/seq", "--save-json", "{root}/seq/seqinfo.ini"], "an input of"),
    ("save-mot-gt", {}, ["--source", "{root}/seq", "--save-mot", "{root}/seq/gt/gt.txt"], "an input of the source"),
    ("output-is-save-mot", {}, ["--output", "{root}/old/old.mp4", "--save-mot", "{root}/old/old.mp4"], "is also"),
    ("save-json-is-save-mot", {}, ["--save-json", "{root}/old/old.txt"], "--save-json {root}/old/old.txt is also"),
    ("output-gif", {}, ["--output", "{root}/old/v.gif"], "--output {root}/old/v.gif: cannot write a .gif video"),
    ("output-no-extension", {}, ["--output", "{root}/old/video"], "cannot write a video without an extension"),
    ("output-unwritable", {}, ["--output", "/proc/forbidden/x.mp4"], "--output /proc/forbidden/x.mp4: cannot write"),
    ("save-mot-folder", {}, ["--save-mot", "{root}/old"], "--save-mot {root}/old: cannot write there"),
    (
        "save-mot-link-to-source",
        {"link.txt": "-> clip.mp4"},  # a symlink
        ["--source", "{root}/clip.mp4", "--save-mot", "{root}/link.txt"],
        "--save-mot {root}/link.txt is the source video",
    ),
    # -- eval
    ("eval-nan", {"res/seq.txt": "1,1,nan,2,3,4,1,-1,-1,-1\n"}, ["eval"], "seq.txt: line 1: column 3 is nan"),
    ("eval-columns", {"res/seq.txt": "1,1,2,3,4\n"}, ["eval"], "seq.txt: line 1: 5 columns, expected at least 7"),
    ("eval-spaces", {"res/seq.txt": "1 1 2 3 4 5 1 -1 -1 -1\n"}, ["eval"], "line 1: 1 column, expected"),
    ("eval-negative-id", {"res/seq.txt": "1,-3,1,2,3,4,1,-1,-1,-1\n"}, ["eval"], "line 1: id -3 is not an integer"),
    ("eval-frame-zero", {"res/seq.txt": "0,1,1,2,3,4,1,-1,-1,-1\n"}, ["eval"], "line 1: frame 0 is not an integer"),
    ("eval-frame-past", {"res/seq.txt": "99,1,1,2,3,4,1,-1,-1,-1\n"}, ["eval"], "frame 99 is past the sequence's 6"),
    ("eval-text", {"res/seq.txt": "1,1,1,2,3,4,1,-1,-1,-1\nhello\n"}, ["eval"], "seq.txt: line 2: 1 column"),
    ("eval-twice", {"res/seq.txt": "1,1,1,2,3,4,1,-1,-1,-1\n1,1,5,5,3,4,1,-1,-1,-1\n"}, ["eval"], "id 1 appears twice"),
    ("eval-empty-line", {"res/seq.txt": "1,1,1,2,3,4,1,-1,-1,-1\n\n2,1,1,2,3,4,1,-1,-1,-1\n"}, ["eval"], "empty line"),
    ("eval-no-result", {}, ["eval", "--res-dir", "{root}/old"], "no result file for seq"),
    ("eval-no-gt-root", {}, ["eval", "--gt-root", "{root}/nowhere"], "--gt-root {root}/nowhere: no such folder"),
    ("eval-json-is-result", {}, ["eval", "--save-json", "{root}/res/seq.txt"], "is an input of the evaluation"),
    ("eval-broken-gt", {"seq/gt/gt.txt": "1,1,1,2,3\n"}, ["eval"], "--res-dir {root}/res: "),
]


@pytest.mark.parametrize("case_id,files,args,needle", CASES, ids=[getattr(c, "values", c)[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_no_file_changes(work, capsys, caplog, case_id, files, args, needle):
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("-> "):
            (work / rel).symlink_to(work / text[3:])
        else:
            (work / rel).write_text(text)
    if args and args[0] == "eval" and "--gt-root" not in args:
        args = [*args, "--gt-root", "{root}/seq"]
    if args and args[0] == "eval" and "--res-dir" not in args:
        args = [*args, "--res-dir", "{root}/res"]
    before = hashes(work)
    rc, _, err, notices = run_main(cli_args(args, work), capsys, caplog)
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and not notices, (err, notices)
    assert needle.format(root=work) in lines[0], lines[0]
    assert "Traceback" not in err
    after = hashes(work)
    assert {k: after.get(k) for k in before} == before  # every file as it was: sources, earlier outputs
    assert set(after) == set(before) and not leftovers(work)  # nothing new either, no temporary files


def test_ultralytics_installs_no_package_at_run_time(monkeypatch, yolov8n):
    from ultralytics.utils import checks

    from mot_dinov3.detector import Detector

    monkeypatch.delenv("YOLO_AUTOINSTALL", raising=False)
    monkeypatch.setattr(checks, "AUTOINSTALL", True)
    Detector(DetectorConfig(model=str(yolov8n)))
    assert checks.AUTOINSTALL is False
    monkeypatch.setenv("YOLO_AUTOINSTALL", "true")  # the user's own choice wins
    monkeypatch.setattr(checks, "AUTOINSTALL", True)
    Detector(DetectorConfig(model=str(yolov8n)))
    assert checks.AUTOINSTALL is True


def test_library_calls_get_the_checks_with_parameter_names(tmp_path):
    images = [np.zeros((64, 64, 3), np.uint8)] * 2
    for options, message in (
        ({"conf": 1.5}, r"^conf=1\.5: must be a number in \[0, 1\]$"),
        ({"imgsz": 0}, r"^imgsz=0: must be an integer in \[32, 4096\]"),
        ({"max_frames": 0}, r"^max_frames=0: must be an integer >= 1$"),
        ({"font_scale": 1e6}, r"^font_scale=1000000\.0: must be a number in \(0, 10\]$"),
        ({"classes": ["person"]}, r"^classes='person': expected comma-separated"),
        ({"output": str(tmp_path / "v.gif")}, r"^output='.*v\.gif': cannot write a \.gif video"),
    ):
        with pytest.raises(UserError, match=message):
            mot_dinov3.track(images, embedder="none", **options)
    with pytest.raises(UserError, match=r"^match_thresh='0\.7': must be a number in \[0, 1\]$"):
        mot_dinov3.MultiObjectTracker(embedder=None, tracker_config=TrackerConfig(match_thresh="0.7"))  # type: ignore[arg-type]
    with pytest.raises(UserError, match=r"^device='banana': not a device"):
        DetectorConfig(device="banana")
    with pytest.raises(UserError, match=r"^line_thickness=0: must be an integer in \[1, 50\]$"):
        OutputConfig(line_thickness=0)
    video = tmp_path / "v.mp4"
    write_video(video, images)
    with pytest.raises(UserError, match=r"^output='.*v\.mp4' is the source video; choose another path$"):
        mot_dinov3.track(video, embedder="none", output=str(video))
    res = tmp_path / "r.txt"
    res.write_text("1,1,1,1,1,1,1,-1,-1,-1\n2,1,1,1,inf,1,1,-1,-1,-1\n")
    with pytest.raises(UserError, match=r"r\.txt: line 2: column 5 is inf, not a finite number"):
        check_results(res, 10)


def _run_ok(work: Path, capsys, caplog, *args: str) -> tuple[int, str, str, list[str]]:
    return run_main(cli_args(list(args), work), capsys, caplog)


def test_an_error_at_the_first_frame_keeps_the_earlier_outputs_and_a_complete_run_replaces_them(work, capsys, caplog):
    before = hashes(work / "old")
    rc, *_ = _run_ok(work, capsys, caplog, "--det", OSNET)  # loads, then fails on frame 1
    assert rc == 2 and hashes(work / "old") == before
    rc, out, err, _ = _run_ok(work, capsys, caplog)
    assert rc == 0, err
    assert "Frames: 3" in out and video_frames(work / "old/old.mp4") == 3
    assert json.loads((work / "old/old.json").read_text())["frames"] == 3
    rows = mio.read_mot_txt(work / "old/old.txt")
    assert rows.shape[1] == 10 and set(rows[:, 0]) <= {1, 2, 3} and not leftovers(work)


def test_an_error_mid_run_keeps_the_finished_frames(work, capsys, caplog):
    (work / "frames/000003.jpg").write_text("truncated")
    new = work / "new"
    rc, _, err, _ = _run_ok(
        work, capsys, caplog, "--output", f"{new}/v.mp4", "--save-mot", f"{new}/r.txt", "--save-json", f"{new}/s.json"
    )
    assert rc == 2 and "cannot decode image 000003.jpg" in err
    assert video_frames(new / "v.mp4") == 2  # finalised and playable
    rows = mio.read_mot_txt(new / "r.txt")
    assert len(rows) > 0 and set(rows[:, 0]) <= {1, 2} and not leftovers(work)


class _FullDisk:
    """A file whose disk fills up: ``whole`` writes go through, the next one writes half (``cut``), then
    every write fails with ENOSPC."""

    def __init__(self, f, whole: int, cut: bool):
        self._f, self._whole, self._cut, self._calls = f, whole, cut, 0

    def write(self, data):
        self._calls += 1
        if self._calls <= self._whole:
            return self._f.write(data)
        if self._calls == self._whole + 1 and self._cut:
            return self._f.write(data[: max(1, len(data) // 2)])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _full_disk_open(monkeypatch, pattern: str, whole: int, cut: bool) -> None:
    """``open`` in mot_dinov3.io: files whose name matches ``pattern`` fill the disk (see :class:`_FullDisk`)."""

    def fake_open(file, *args, **kwargs):
        f = open(file, *args, **kwargs)
        return _FullDisk(f, whole, cut) if re.search(pattern, Path(file).name) else f

    monkeypatch.setattr(mio, "open", fake_open, raising=False)


def test_a_full_disk_on_the_mot_txt_keeps_whole_frames_prints_the_summary_and_exits_2(
    work, capsys, caplog, monkeypatch
):
    _full_disk_open(monkeypatch, r"^old\.txt\..*\.part$", whole=1, cut=True)  # frame 1 written, frame 2 cut
    rc, out, err, _ = _run_ok(work, capsys, caplog)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: --save-mot {work}/old/old.txt: cannot write frame 2 (No space left on device")
    assert "Frames: 1" in out and "Effective FPS" in out  # the summary first, of what is complete
    text = (work / "old/old.txt").read_text()
    assert text.endswith("\n") and all(len(line.split(",")) == 10 for line in text.splitlines())
    assert set(mio.read_mot_txt(work / "old/old.txt")[:, 0]) == {1}
    assert video_frames(work / "old/old.mp4") == 1  # the video holds the same frames
    assert json.loads((work / "old/old.json").read_text())["frames"] == 1 and not leftovers(work)


def test_a_full_disk_on_the_json_keeps_the_earlier_json(work, capsys, caplog, monkeypatch):
    _full_disk_open(monkeypatch, r"^old\.json\..*\.part$", whole=0, cut=False)
    before = (work / "old/old.json").read_bytes()
    rc, out, err, _ = _run_ok(work, capsys, caplog)
    assert rc == 2 and "Frames: 3" in out, err
    assert (
        err.strip()
        == f"error: --save-json {work}/old/old.json: cannot write (No space left on device; "
        + (err.strip().split("; ", 1)[1])
    )
    assert (work / "old/old.json").read_bytes() == before and not leftovers(work)
    assert video_frames(work / "old/old.mp4") == 3 and set(mio.read_mot_txt(work / "old/old.txt")[:, 0]) <= {1, 2, 3}


def test_an_unplayable_video_is_removed_and_the_earlier_one_kept(work, capsys, caplog, monkeypatch):
    real = cv2.VideoWriter

    class Truncated:  # what a full disk leaves: the container is never finalised
        fourcc = staticmethod(real.fourcc)

        def __init__(self, path, *args):
            self.path = path
            Path(path).write_bytes(b"\x00\x00\x00\x18ftypmp42")

        def isOpened(self):
            return True

        def write(self, image):
            pass

        def release(self):
            pass

    monkeypatch.setattr(mio.cv2, "VideoWriter", Truncated)
    before = (work / "old/old.mp4").read_bytes()
    rc, out, err, _ = _run_ok(work, capsys, caplog, "--codec", "mp4v")  # the OpenCV writer, truncated above
    assert rc == 2 and "Frames: 3" in out, err
    assert f"error: --output {work}/old/old.mp4: the finished video does not play" in err
    assert (work / "old/old.mp4").read_bytes() == before and not leftovers(work)
    assert json.loads((work / "old/old.json").read_text())["frames"] == 3  # the other outputs are complete


def test_frames_of_another_size_are_letterboxed_not_dropped(work, capsys, caplog):
    for name in ("000004.jpg", "000005.jpg", "000006.jpg"):
        img = cv2.imread(str(work / "frames" / name))
        cv2.imwrite(str(work / "frames" / name), cv2.resize(img, (400, 200)))
    rc, out, err, notices = _run_ok(work, capsys, caplog, "--max-frames", "6")
    assert rc == 0, err
    assert "Frames: 6" in out and video_frames(work / "old/old.mp4") == 6
    assert len(notices) == 1 and "frame 000004.jpg is 400x200, not 640x480" in notices[0]
    boxed = mio.letterbox(np.full((200, 400, 3), 255, np.uint8), (640, 480))
    assert boxed.shape == (480, 640, 3) and boxed[0].max() == 0 and boxed[240, 320].min() == 255  # bars, centred


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_while_models_load_exit_130_and_touch_nothing(work, capsys, caplog, monkeypatch, sig):
    from mot_dinov3 import detector

    def slow_load(self, cfg):
        os.kill(os.getpid(), sig)
        time.sleep(5)  # interrupted at once
        raise AssertionError("the signal did not interrupt loading")

    monkeypatch.setattr(detector.Detector, "__init__", slow_load)
    previous = signal.getsignal(sig)
    before = hashes(work)
    rc, out, err, _ = _run_ok(work, capsys, caplog)
    assert rc == 130 and err.strip() == "interrupted", err
    assert hashes(work) == before and signal.getsignal(sig) == previous  # handlers restored


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_during_a_run_keep_the_finished_frames(work, capsys, caplog, monkeypatch, sig):
    from mot_dinov3 import api

    real = api.MultiObjectTracker.step

    def step(self, *args, **kwargs):  # in the loop's thread (the detector runs one frame ahead in another)
        if getattr(self, "_calls", 0) == 2:  # in frame 3
            os.kill(os.getpid(), sig)
        self._calls = getattr(self, "_calls", 0) + 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(api.MultiObjectTracker, "step", step)
    rc, out, err, _ = _run_ok(work, capsys, caplog, "--max-frames", "6")
    assert rc == 130 and "Frames: 2 (interrupted)" in out, err
    assert video_frames(work / "old/old.mp4") == 2 and set(mio.read_mot_txt(work / "old/old.txt")[:, 0]) <= {1, 2}
    assert json.loads((work / "old/old.json").read_text())["interrupted"] and not leftovers(work)


@pytest.mark.slow
def test_sigterm_during_a_run_exits_130_with_outputs_finalised(tmp_path, yolov8n, tud_campus):
    out, txt, js = tmp_path / "v.mp4", tmp_path / "r.txt", tmp_path / "s.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.Popen(
        [sys.executable, "-m", "mot_dinov3", "--source", str(tud_campus), "--det", str(yolov8n), "--embedder", "none"]
        + ["--imgsz", "320", "--output", str(out), "--save-mot", str(txt), "--save-json", str(js), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.time() + 120

    def second_frame_written() -> bool:  # then frame 1 is complete, its video frame included
        try:
            return any(
                b"\n2," in p.read_bytes() or p.read_bytes().startswith(b"2,") for p in tmp_path.glob("r.txt.*.part")
            )
        except FileNotFoundError:  # renamed into place (the run ended), or the output check's probe file
            return txt.exists()

    while time.time() < deadline and not second_frame_written():
        time.sleep(0.02)  # people in every frame
    p.send_signal(signal.SIGTERM)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    frames = int(re.search(r"Frames: (\d+) \(interrupted\)", stdout).group(1))
    assert 0 < frames < 71 and frames <= video_frames(out) <= frames + 1  # + 1: a signal between two writes
    summary = json.loads(js.read_text())
    assert summary["frames"] == frames and summary["interrupted"]
    text = txt.read_text()
    assert text.endswith("\n") and max(int(r.split(",")[0]) for r in text.splitlines()) <= frames + 1
    assert not list(tmp_path.glob("*.part*")) and "Traceback" not in stderr


_TWO_CORES = """
import os, signal, sys, time
import numpy as np, openvino as ov
from openvino import opset13 as ops
from mot_dinov3.sigstack import clear_dangling_altstack
p = ops.parameter([1, 8], np.float32)
model = ov.Model([ops.relu(p)], [p])
a = ov.Core().compile_model(model, "CPU")
b = ov.Core().compile_model(model, "CPU")
del a  # first made, first destroyed: b's destructor restores a's stack, already unmapped
del b
print("cleared" if sys.argv[1] == "guard" and clear_dangling_altstack() else "kept", flush=True)
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack: Linux")
def test_a_stack_openvino_unmapped_is_disabled_before_a_signal_lands_on_it():
    pytest.importorskip("openvino")
    guarded = _python(_TWO_CORES, "guard")
    assert guarded.returncode == 0 and guarded.stdout.split() == ["cleared", "interrupted"], guarded.stderr
    bare = _python(_TWO_CORES, "none")
    assert bare.returncode == -signal.SIGSEGV, (bare.returncode, bare.stdout)  # what the guard prevents


_TWO_RUNS = """
import gc, os, signal, sys, time
import mot_dinov3
for _ in range(2):
    mot_dinov3.track(sys.argv[1], det=sys.argv[2], classes="0", embedder="onnx", embed_model=sys.argv[3],
                     output=None, max_frames=3, imgsz=160, no_progress=True)
    gc.collect()  # the run's models are released, in whatever order
try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.slow
def test_ctrl_c_after_runs_on_openvino_interrupts_and_does_not_crash(yolov8n, osnet_onnx, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(tmp_path))  # the detector's exports
    seq = shared_path("data/MOT15/train/TUD-Campus")
    done = _python(_TWO_RUNS, str(seq), str(yolov8n), str(osnet_onnx))
    assert done.returncode == 0 and done.stdout.split() == ["interrupted"], (done.returncode, done.stderr[-500:])
