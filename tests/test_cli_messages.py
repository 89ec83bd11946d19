"""User messages: the library names its Python parameters (``embed_model='x.onnx'``), never a CLI flag;
the CLI rewrites them into its flags (``--embed-model x.onnx``) where it prints a UserError."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mot_dinov3.cli import eval_parser, flag_message, main
from mot_dinov3.errors import MissingFileError, UserError
from mot_dinov3.options import build_run_config, parse_classes, track_parser

SRC = Path(__file__).resolve().parents[1] / "src" / "mot_dinov3"
FLAG = re.compile(r"(^|\s|\()--[a-z]")
LOG_NAMES = {"logging", "log", "logger", "_log", "_logger", "LOG"}
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
ERROR_TYPES = {"UserError", "MissingFileError"}
LABELLED = {"ensure_writable"}  # helpers whose string arguments end up in their error messages
# options of other programs quoted in messages, not flags of mot-dinov3
NOT_OURS = ("bash setup.sh cpu --dinov3-edge", "ray start --head")  # other tools' commands


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_message_call(node: ast.Call) -> bool:
    f = node.func
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        if f.value.id == "warnings" and f.attr == "warn":
            return True
        if f.value.id in LOG_NAMES and f.attr in LOG_METHODS:
            return True
    return _name(f) in ERROR_TYPES | LABELLED


def _strings(node: ast.AST) -> list[str]:
    """String constants in ``node``, f-string literal parts included (the help of add_argument skipped)."""
    out = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and _name(sub.func) == "add_argument":
            continue
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.append(sub.value)
    return out


def message_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every literal a user can be shown: in ``raise`` statements, ``warnings.warn`` /
    logging calls, ``UserError`` / ``MissingFileError`` constructions, and the returns of message
    builders (functions named ``*_message`` / ``*_error``)."""
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found |= {(node.lineno, s) for s in _strings(node.exc)}
        elif isinstance(node, ast.Call) and _is_message_call(node):
            found |= {(node.lineno, s) for s in _strings(node)}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith(("_message", "_error")):
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and ret.value is not None:
                    found |= {(ret.lineno, s) for s in _strings(ret.value)}
    return sorted(found)


def flag_mentions(source: str) -> list[tuple[int, str]]:
    hits = []
    for line, text in message_strings(ast.parse(source)):
        for ok in NOT_OURS:
            text = text.replace(ok, "")
        if FLAG.search(text):
            hits.append((line, text))
    return hits


def library_files() -> list[Path]:
    """The package's modules but its command-line front ends (``cli.py``, ``__main__.py``), which print."""
    return [p for p in sorted(SRC.rglob("*.py")) if p.name not in ("cli.py", "__main__.py")]


def test_library_messages_name_no_cli_flag():
    bad = [
        f"{p.relative_to(SRC)}:{line}: {text!r}"
        for p in library_files()
        for line, text in flag_mentions(p.read_text(encoding="utf-8"))
    ]
    assert not bad, "library messages name CLI flags (name the parameter, e.g. embed_model=...):\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "code",
    [
        'raise UserError(f"--embed-model {path}: not found")',
        'raise ValueError("x: bad (--det)")',
        'raise MissingFileError(f"{p}: pass --source with a video")',
        'err = UserError("use --embedder yolo")',
        'log.warning("note: %s --embed-lazy", x)',
        'warnings.warn("--pool is deprecated")',
        'path = ensure_writable(p, "--output")',
        'def gated_message(m):\n    return f"{m}: or add --fallback-open"',
    ],
)
def test_the_check_catches_a_flag(code):
    assert flag_mentions(code)


def test_the_check_leaves_other_strings_alone():
    code = (
        'raise UserError(f"embed_model={p!r}: not found; e.g. `bash setup.sh cpu --dinov3-edge`")\n'
        'x = "--source"\n'
        'p.add_argument("--det", help="see --source")\n'
    )
    assert flag_mentions(code) == []


def test_the_library_never_prints_nor_exits():
    bad = []
    for p in library_files():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Name) and node.func.id in ("print", "exit", "quit"))
                or (
                    isinstance(node.func, ast.Attribute)
                    and _name(node.func) == "exit"
                    and _name(node.func.value) == "sys"
                )
            ):
                bad.append(f"{p.relative_to(SRC)}:{node.lineno}")
    assert not bad, bad


# -- the CLI's rewrite ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tp():
    return track_parser()


@pytest.mark.parametrize(
    "text,want",
    [
        (
            "embed_model='/m/x.onnx': ONNX file not found; pass the path of a ReID .onnx model",
            "--embed-model /m/x.onnx: ONNX file not found; pass the path of a ReID .onnx model",
        ),
        (
            "embedder='onnx' needs embed_model=PATH.onnx (e.g. an OSNet ReID export)",
            "--embedder onnx needs --embed-model PATH.onnx (e.g. an OSNet ReID export)",
        ),
        ("source='/my videos/a.mp4': no such file", "--source '/my videos/a.mp4': no such file"),
        ('source="it\'s.mp4": no such file', "--source it's.mp4: no such file"),
        ("embed_refresh=0: must be >= 1 frame", "--embed-refresh 0: must be >= 1 frame"),
        ("or add fallback_open=True", "or add --fallback-open"),
        ("embed_lazy=True with embed_all=True: choose one", "--embed-lazy with --embed-all: choose one"),
        ("crop_square=False keeps the box", "--no-crop-square keeps the box"),
        ("embed_lazy=False: the refresh rules", "--no-embed-lazy: the refresh rules"),
        ("use a .pt file as det=", "use a .pt file as --det"),
        (
            "check the model id (embed_model=, or dinov3= for dino)",
            "check the model id (--embed-model, or --dinov3 for dino)",
        ),
        # not dests, or not name=value: left alone
        ("gmc_method='orb2': unknown; choose another embedder", "gmc_method='orb2': unknown; choose another embedder"),
        ("model_id='x' and cfg.det='y' and pooling='z'", "model_id='x' and cfg.det='y' and pooling='z'"),
        ("scheduler='sometimes': unknown", "scheduler='sometimes': unknown"),
        ("the source folder", "the source folder"),
    ],
)
def test_flag_message_rewrites_dests_into_flags(tp, text, want):
    assert flag_message(text, tp) == want


def test_flag_message_uses_the_parser_it_is_given(tp):
    ep = eval_parser()
    text = "seqs=['MOT17-02', 'MOT17-04']: no gt; res_dir='/r': no such folder; det='x.pt'"
    assert flag_message(text, ep) == "--seqs MOT17-02 MOT17-04: no gt; --res-dir /r: no such folder; det='x.pt'"
    assert flag_message("gt_root='/g': no such folder", tp) == "gt_root='/g': no such folder"


def test_the_cli_prints_flags_for_library_messages(tmp_path, capsys, caplog):
    assert main(["--source", str(tmp_path / "nope.mp4"), "--embed-budget-ms", "20"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --source {tmp_path / 'nope.mp4'}: no such file or folder; " + err.split("; ", 1)[1]
    assert "note: --embed-budget-ms 20.0 selects the refresh rules" in caplog.text  # the library's notices too
    caplog.clear()
    build_run_config(track_parser().parse_args(["--source", "x", "--embed-budget-ms", "20"]))
    assert "note: embed_budget_ms=20.0 selects the refresh rules" in caplog.text  # outside the CLI: as written
    assert main(["eval", "--gt-root", str(tmp_path / "g"), "--res-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --gt-root {tmp_path / 'g'}: no such folder")


# -- library calls see the parameters ---------------------------------------------------------------------


def test_library_errors_name_parameters(tmp_path):
    import mot_dinov3
    from mot_dinov3.io import FrameSource

    with pytest.raises(MissingFileError, match=r"^source='.*nope\.mp4': no such file or folder"):
        FrameSource(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match=r"^embedder='resnet': unknown embedder"):
        mot_dinov3.MultiObjectTracker(embedder="resnet")
    with pytest.raises(ValueError, match=r"^embedder='onnx' needs embed_model=PATH\.onnx"):
        mot_dinov3.MultiObjectTracker(embedder="onnx")
    with pytest.raises(FileNotFoundError, match=r"^embed_model='.*x\.onnx': ONNX file not found"):
        mot_dinov3.MultiObjectTracker(embedder="onnx", embed_model=str(tmp_path / "x.onnx"))
    with pytest.raises(FileNotFoundError, match=r"^tracker config not found: tracker_config='.*t\.yaml'"):
        mot_dinov3.MultiObjectTracker(embedder=None, tracker_config=tmp_path / "t.yaml")
    with pytest.raises(UserError, match=r"^classes='person': expected comma-separated class ids, e\.g\. classes='0,2'"):
        parse_classes("person")
    with pytest.raises(UserError, match=r"^embed_refresh=0: must be >= 1 frame"):
        mot_dinov3.track(tmp_path / "nope.mp4", embed_refresh=0)
    with pytest.raises(UserError, match=r"^embed_lazy=True with embed_all=True: choose one"):
        build_run_config(track_parser().parse_args(["--source", "x", "--embed-lazy", "--embed-all"]))
