"""``mot-dinov3 batch``: source expansion, per-source outputs, failures, resuming, local workers and Ray."""

import csv
import json
import os
from pathlib import Path

import cv2
import pytest
from conftest import shared_path

from mot_dinov3 import pipeline
from mot_dinov3.batch import expand_sources, jobs, run_batch
from mot_dinov3.cli import batch_parser, main
from mot_dinov3.config import OutputConfig, RunConfig
from mot_dinov3.errors import UserError
from mot_dinov3.io import read_mot_txt
from mot_dinov3.options import track_parser
from mot_dinov3.profiling import StageTimer, summarize

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest
# PyTorch detection: an export (--det-runtime auto on a CPU) would be made again in every test's weights folder
RUNTIME = ["--det-runtime", "torch"] if "--det-runtime" in track_parser()._option_string_actions else []


@pytest.fixture
def demo():
    return shared_path("data/videos/mmtracking_demo.mp4")


@pytest.fixture
def broken(tmp_path):
    p = tmp_path / "in" / "broken.mp4"
    p.parent.mkdir()
    p.write_bytes(os.urandom(4096))
    return p


def fast(yolov8n, frames=3):
    return ["--det", yolov8n, "--imgsz", "320", "--embedder", "none", "--max-frames", frames, "--no-progress", *RUNTIME]


def batch(*args):
    return main(["batch", *map(str, args)])


def rows(out):
    with open(out / "batch_summary.csv", newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def touch(path, data=b""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_expand_sources_every_kind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for f in ["videos/a.mp4", "videos/b.MOV", "videos/notes.md", "videos/.hidden.mp4", "videos/c.0123abcd.part.mp4"]:
        touch(tmp_path / f)
    touch(tmp_path / "videos/out/a/a.mp4")  # the batch's own output folder: never searched
    touch(tmp_path / "split/SEQ2/img1/000001.jpg")
    touch(tmp_path / "split/SEQ1/seqinfo.ini", b"[Sequence]\nname=SEQ1\n")
    touch(tmp_path / "split/deeper/clips/z.avi")
    touch(tmp_path / "imgs/0001.jpg")
    touch(tmp_path / "other/a.mp4")
    (tmp_path / "empty").mkdir()
    touch(tmp_path / "lists/list.txt", b"# a comment\n\n../videos/a.mp4\n  ../imgs  \n../missing.mp4\n../other/*.mp4\n")

    got = expand_sources(["videos", "split", "lists/list.txt", "empty", "nothing/*.mkv"], exclude=["videos/out"])
    assert [(s.path, s.name) for s in got] == [
        ("videos/a.mp4", "a"),
        ("videos/b.MOV", "b"),
        ("split/SEQ1", "SEQ1"),
        ("split/SEQ2", "SEQ2"),
        ("split/deeper/clips/z.avi", "z"),
        ("lists/../imgs", "imgs"),  # videos/a.mp4 again (through the list): run once
        ("lists/../missing.mp4", "missing"),
        ("lists/../other/a.mp4", "a-2"),  # the same name twice: a suffix
        ("empty", "empty"),
        ("nothing/*.mkv", "_"),
    ]
    errors = {s.name: s.error for s in got if s.error}
    assert set(errors) == {"missing", "empty", "_"}
    assert "no such file" in errors["missing"] and "no videos" in errors["empty"] and "matches" in errors["_"]
    assert [s.path for s in expand_sources(["split/SEQ1", "imgs", "videos/*.mp4"])] == [
        "split/SEQ1",
        "imgs",
        "videos/a.mp4",
    ]
    assert expand_sources(got_again := ["videos", "split"]) == expand_sources(got_again)  # deterministic
    # real data: a MOTChallenge split folder gives its sequences, a folder of videos its videos
    train = shared_path("data/MOT15/train")
    assert [s.name for s in expand_sources([train])] == ["TUD-Campus", "TUD-Stadtmitte"]
    videos = expand_sources([shared_path("data/videos")])
    assert [s.name for s in videos] == ["mmtracking_demo", "one-by-one-person-detection", "overhead_crowd_vtest"]


@pytest.mark.slow
def test_outputs_failures_and_one_model_load(tmp_path, monkeypatch, capsys, yolov8n, tud_campus, demo, broken):
    built = []

    class CountingDetector(jobs.Detector):
        def __init__(self, cfg):
            built.append(cfg)
            super().__init__(cfg)

    monkeypatch.setattr(jobs, "Detector", CountingDetector)
    out = tmp_path / "out"
    rc = batch(demo, tud_campus, broken, tmp_path / "gone.mp4", "--out-dir", out, *fast(yolov8n))
    assert rc == 1 and len(built) == 1  # a failed source: exit 1; the models loaded once for the batch
    text = capsys.readouterr()
    assert "broken.mp4: not a readable video" in text.out.replace("'", "")
    r = rows(out)
    assert {n: r[n]["status"] for n in r} == {
        "mmtracking_demo": "ok",
        "TUD-Campus": "ok",
        "broken": "failed",
        "gone": "failed",
    }
    assert "broken.mp4" in r["broken"]["error"] and "\n" not in r["broken"]["error"]
    for name in ("mmtracking_demo", "TUD-Campus"):
        assert int(r[name]["frames"]) == 3 and int(r[name]["tracks"]) > 0
        res = read_mot_txt(out / name / f"{name}.txt")
        assert res.shape[1] == 10 and 1 <= res[:, 0].min() and res[:, 0].max() <= 3
        cap = cv2.VideoCapture(str(out / name / f"{name}.mp4"))
        assert cap.isOpened() and cap.read()[0]
        cap.release()
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["frames"] == 3 and "stage_mean_ms" in summary
    failed = json.loads((out / "broken" / "summary.json").read_text())
    assert failed["status"] == "failed" and "Traceback" in failed["traceback"]
    assert not (out / "gone").exists()  # a missing source gets no folder
    doc = json.loads((out / "batch_summary.json").read_text())
    assert doc["counts"] == {"ok": 2, "failed": 2, "interrupted": 0, "skipped": 0, "pending": 0}
    assert not list(out.rglob("*.part*"))


def test_skip_existing_after_a_kill(tmp_path, monkeypatch, yolov8n, tud_campus, demo):
    out = tmp_path / "out"
    flags = ["--out-dir", out, "--no-video", *fast(yolov8n, 2)]
    assert batch(tud_campus, demo, *flags) == 0
    assert not (out / "TUD-Campus" / "TUD-Campus.mp4").exists()  # --no-video
    first = rows(out)
    # a kill while the demo ran: its summary.json not written yet, a writer's temporary file left behind
    (out / "mmtracking_demo" / "summary.json").unlink()
    part = touch(out / "mmtracking_demo" / "mmtracking_demo.txt.0123abcd.part", b"1,1,")
    ran = []
    real_run = pipeline.run
    monkeypatch.setattr(pipeline, "run", lambda cfg, **kw: ran.append(Path(cfg.source).name) or real_run(cfg, **kw))
    assert batch(tud_campus, demo, *flags, "--skip-existing") == 0
    assert ran == ["mmtracking_demo.mp4"] and not part.exists()
    again = rows(out)
    assert again["TUD-Campus"]["status"] == "skipped" and again["mmtracking_demo"]["status"] == "ok"
    assert again["TUD-Campus"]["frames"] == first["TUD-Campus"]["frames"] == "2"  # the earlier run's numbers
    # everything done: no source runs and no model loads
    monkeypatch.setattr(jobs, "Detector", lambda cfg: pytest.fail("models loaded with nothing to run"))
    assert batch(tud_campus, demo, *flags, "--skip-existing") == 0
    assert {r["status"] for r in rows(out).values()} == {"skipped"} and len(ran) == 1


def test_interrupt_stops_the_batch_and_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the second of three sources: exit 130, the third ``pending``; the resume runs the last two."""
    ran = []

    def fake_run(cfg, embedder=None, detector=None):
        ran.append(Path(cfg.source).name)
        Path(cfg.output.mot_txt).write_text("1,1,0,0,1,1,1,-1,-1,-1\n")
        return summarize(StageTimer(), 0, 0, 1, interrupted=len(ran) == 2)

    monkeypatch.setattr(pipeline, "run", fake_run)
    monkeypatch.setattr(jobs, "Detector", lambda cfg: None)
    sources = [touch(tmp_path / "in" / f"{n}.mp4") for n in "abc"]
    out = tmp_path / "out"
    assert batch(*sources, "--out-dir", out, "--embedder", "none", "--no-progress") == 130
    assert {n: r["status"] for n, r in rows(out).items()} == {"a": "ok", "b": "interrupted", "c": "pending"}
    assert "1 pending" in capsys.readouterr().out
    assert batch(*sources, "--out-dir", out, "--embedder", "none", "--no-progress", "--skip-existing") == 0
    assert ran == ["a.mp4", "b.mp4", "b.mp4", "c.mp4"]
    assert {n: r["status"] for n, r in rows(out).items()} == {"a": "skipped", "b": "ok", "c": "ok"}


def test_bad_batch_flags_exit_2(tmp_path, capsys, monkeypatch):
    afile = touch(tmp_path / "f.txt", b"# nothing here\n")
    assert batch(afile, "--out-dir", afile, "--embedder", "none") == 2
    assert "--out-dir" in capsys.readouterr().err
    assert batch(afile, "--out-dir", tmp_path / "o", "--embedder", "none") == 2  # a list with no sources
    assert "no" in capsys.readouterr().err
    assert batch(afile, "--out-dir", tmp_path / "o", "--embedder", "none", "--workers", "0") == 2
    assert "--workers 0" in capsys.readouterr().err
    assert batch(afile, "--out-dir", tmp_path / "o", "--embedder", "none", "--ray-address", "auto") == 2
    assert "--backend ray" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # ray not installed
    assert batch(afile, "--out-dir", tmp_path / "o", "--embedder", "none", "--backend", "ray") == 2
    assert "pip install 'mot-dinov3[ray]'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the per-source track flags are not batch flags
        batch_parser().parse_args(["x", "--out-dir", "o", "--save-mot", "r.txt"])


@pytest.mark.slow
def test_two_local_workers(tmp_path, yolov8n, osnet_onnx, tud_campus, broken):
    out = tmp_path / "out"
    stadtmitte = shared_path("data/MOT15/train/TUD-Stadtmitte")
    flags = ["--embedder", "onnx", "--embed-model", osnet_onnx, "--workers", 2, "--no-video"]
    assert batch(tud_campus, broken, stadtmitte, "--out-dir", out, *fast(yolov8n, 2), *flags) == 1
    r = rows(out)
    assert [r[n]["status"] for n in ("TUD-Campus", "broken", "TUD-Stadtmitte")] == ["ok", "failed", "ok"]
    assert int(r["TUD-Campus"]["embeddings_computed"]) > 0 and read_mot_txt(out / "TUD-Campus" / "TUD-Campus.txt").size
    workers = {row["worker"] for row in r.values()}
    assert 1 <= len(workers) <= 2 and not any(w.endswith(f":{os.getpid()}") for w in workers)


@pytest.mark.slow
def test_ray_backend(tmp_path, yolov8n, tud_campus, broken):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'mot-dinov3[ray]'")
    stadtmitte = shared_path("data/MOT15/train/TUD-Stadtmitte")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        cfg = RunConfig(source="<batch>", output=OutputConfig(video=None, progress=False), max_frames=2)
        cfg.detector.model, cfg.detector.imgsz, cfg.embedder.name = str(yolov8n), 320, "none"
        if RUNTIME:
            cfg.detector.runtime = "torch"
        result = run_batch([tud_campus, broken, stadtmitte], tmp_path / "out", cfg, backend="ray", ray_cpus=2)
    finally:
        ray.shutdown()
    assert [r.status for r in result.results] == ["ok", "failed", "ok"] and not result.interrupted
    assert "broken.mp4" in result.results[1].error
    assert all(r.frames == 2 for r in result.results if r.status == "ok")
    assert rows(tmp_path / "out")["TUD-Campus"]["status"] == "ok"
    assert read_mot_txt(tmp_path / "out" / "TUD-Campus" / "TUD-Campus.txt")[:, 0].max() <= 2
    assert len({r.worker for r in result.results}) == 1  # one task at a time: one worker process, its models reused


def test_library_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="backend="):
        run_batch(["x"], tmp_path, RunConfig(source="<batch>"), backend="slurm")
