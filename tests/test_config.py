import pytest
from conftest import ROOT

from mot_dinov3.cli import build_run_config, parse_classes, track_parser
from mot_dinov3.config import TrackerConfig
from mot_dinov3.errors import UserError


def test_shipped_tracker_yaml_equals_the_defaults():
    assert TrackerConfig.from_yaml(ROOT / "configs/default.yaml") == TrackerConfig()


def test_tracker_yaml_rejects_unknown_keys(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("tracker_type: botsort\ntrack_buffer: 60\nappearence_thresh: 0.3\n")
    with pytest.raises(UserError, match="appearence_thresh"):
        TrackerConfig.from_yaml(p)
    p.write_text("tracker_type: botsort\ntrack_buffer: 60\n")
    assert TrackerConfig.from_yaml(p).track_buffer == 60


def test_flags_become_configs():
    a = track_parser().parse_args(
        [
            "--source",
            "v.mp4",
            "--embedder",
            "onnx",
            "--embed-model",
            "m.onnx",
            "--classes",
            "0, 2",
            "--cpu",
            "--no-crop-square",
            "--no-embed-lazy",
            "--embed-budget-ms",
            "20",
            "--no-hungarian",
            "--output",
            "",
        ]
    )
    cfg = build_run_config(a)
    assert cfg.detector.classes == [0, 2] and cfg.detector.device == "cpu" and cfg.embedder.device == "cpu"
    assert cfg.embedder.model == "m.onnx" and cfg.embedder.crop_square is False and cfg.embedder.crop_pad is None
    assert cfg.scheduler.budget_ms == 20 and cfg.scheduler.lazy is False and cfg.scheduler.refresh_every == 2
    assert cfg.tracker.use_hungarian is False and cfg.output.video is None
    d = build_run_config(track_parser().parse_args(["--source", "v.mp4"]))
    assert d.embedder.name == "dino" and d.embedder.model == "facebook/dinov3-vitb16-pretrain-lvd1689m"
    assert (d.embedder.crop_pad, d.embedder.crop_square) == (None, None)  # the backend's own crop
    assert d.detector.conf == 0.1 and d.detector.imgsz == 960
    assert d.scheduler.lazy is None and d.scheduler.budget_ms == 0  # lazy memory where the backend allows


@pytest.mark.parametrize(
    "flags, lazy",
    [
        (["--embed-refresh", "5", "--embed-budget-ms", "20"], False),  # the design's example: the refresh rules
        (
            [
                "--embed-iou-gate",
                "0.7",
                "--embed-overlap-thr",
                "0.15",
                "--embed-refresh",
                "8",
                "--embed-budget-ms",
                "15",
            ],
            False,
        ),
        (["--embed-iou-gate", "0.5", "--no-embed-lazy"], False),
        (["--embed-budget-ms", "20", "--embedder", "yolo"], None),  # yolo cannot buffer crops: refresh rules anyway
        (["--embed-refresh", "5", "--embed-all"], None),  # ignored by --embed-all, as before
        ([], None),  # no refresh flag: lazy memory where the backend allows
    ],
)
def test_refresh_flags_select_the_refresh_rules(flags, lazy, caplog):
    cfg = build_run_config(track_parser().parse_args(["--source", "v.mp4", *flags]))
    assert cfg.scheduler.lazy is lazy
    notice = caplog.text
    assert ("selects the refresh rules" in notice) == (lazy is False and "--no-embed-lazy" not in flags)
    if "--embed-budget-ms" in flags and "--embed-all" not in flags:
        assert cfg.scheduler.budget_ms > 0


def test_refresh_flags_with_an_explicit_embed_lazy_are_an_error():
    a = track_parser().parse_args(["--source", "v.mp4", "--embed-budget-ms", "20", "--embed-lazy"])
    with pytest.raises(UserError, match=r"^embed_budget_ms=20\.0 sets the refresh rules, but embed_lazy=True"):
        build_run_config(a)


def test_default_conf_follows_the_tracker_low_threshold(tmp_path):
    y = tmp_path / "t.yaml"
    y.write_text("track_low_thresh: 0.2\ngmc_method: none\nmin_hits: 3\n")
    cfg = build_run_config(track_parser().parse_args(["--source", "v.mp4", "--tracker-config", str(y)]))
    assert cfg.detector.conf == 0.2 and cfg.tracker.gmc_method == "none" and cfg.tracker.min_hits == 3
    cfg = build_run_config(
        track_parser().parse_args(["--source", "v.mp4", "--tracker-config", str(y), "--conf", "0.4"])
    )
    assert cfg.detector.conf == 0.4


@pytest.mark.parametrize("text", ["person", "0,-1", ","])
def test_bad_classes(text):
    with pytest.raises(UserError, match="^classes="):
        parse_classes(text)


def test_help_names_each_default_once():
    text = " ".join(track_parser().format_help().split())  # unwrap argparse's line breaks
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: the source fps)" in text and "the source fps) (default" not in text
    assert "(default: 960)" in text  # a real default is still shown


def test_docs_document_every_flag():
    """Every flag is in the README or in docs/flags.md (which the README links), eval's in the README."""
    import re
    from pathlib import Path

    from mot_dinov3.cli import eval_parser

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert "docs/flags.md" in readme
    readme += (root / "docs" / "flags.md").read_text()
    flags = {
        o
        for p in (track_parser(), eval_parser())
        for a in p._actions
        for o in a.option_strings
        if o.startswith("--") and o != "--help"
    }
    missing = sorted(f for f in flags if not re.search(re.escape(f) + r"(?![\w-])", readme))
    assert len(flags) > 30 and not missing, missing
