"""Command line: ``mot-dinov3 [track] --source ...``, ``mot-dinov3 batch SOURCES... --out-dir DIR`` and
``mot-dinov3 eval --gt-root ... --res-dir ...``.

Flags become config dataclasses; :class:`~mot_dinov3.errors.UserError` becomes a one-line message and
exit code 2 (full traceback with ``--debug``; a write error prints the run summary first); an interrupted
run (Ctrl-C, SIGTERM or SIGHUP, at any point) exits 130, after printing its summary once it runs.
``batch`` exits 1 when a source failed (the others ran), 130 when interrupted, 2 for bad flags.
The library's messages name its Python parameters (``embed_model='x.onnx'``); :func:`flag_message`
turns them into this command's flags (``--embed-model x.onnx``) where they are shown.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import logging
import re
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from mot_dinov3.errors import UserError
from mot_dinov3.options import build_run_config, parse_classes, track_parser
from mot_dinov3.sigstack import clear_dangling_altstack

__all__ = [
    "batch_parser",
    "build_run_config",
    "eval_parser",
    "flag_message",
    "main",
    "parse_classes",
    "track_parser",
]

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
BATCH_REPLACED = ("source", "output", "save_mot", "save_json", "report")  # track flags batch sets per source

# ``name=value`` as the library writes it: a repr-quoted string, a list literal or a bare token (a number,
# True / False, a placeholder such as PATH.onnx); no value: a bare mention (``pass seqs= to ...``)
_QUOTED = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_VALUE = rf"{_QUOTED}|\[[^\[\]]*\]|[\w+-]+(?:\.[\w+-]+)*"
_NAME_VALUE = re.compile(rf"(?<![\w.-])([a-z_][a-z0-9_]*)=(?:({_VALUE})|(?=[\s,;:.)\]]|$))")


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mot-dinov3 eval", description="HOTA / CLEAR / Identity metrics of MOTChallenge results (TrackEval)."
    )
    p.add_argument("--gt-root", required=True, help="folder holding <seq>/gt/gt.txt (searched recursively)")
    p.add_argument("--res-dir", required=True, help="folder holding <seq>.txt results")
    p.add_argument("--seqs", nargs="+", help="only these sequences (default: every sequence with gt)")
    p.add_argument("--save-json", metavar="PATH", help="write the metrics as JSON")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


def batch_parser() -> argparse.ArgumentParser:
    """The ``batch`` flags: the sources, the output folder and the workers, then every ``track`` flag but
    the per-source ones (``--source``, ``--output``, ``--save-mot``, ``--save-json``; ``--report`` becomes a
    switch: a report page per source)."""
    p = track_parser()
    p.prog = "mot-dinov3 batch"
    p.description = (
        "Track many sources: each gets DIR/<name>/ with <name>.mp4, <name>.txt (MOTChallenge) and summary.json; "
        "DIR/batch_summary.csv and .json list every source. A failing source is recorded and the batch goes on "
        "(exit 1 when one failed, 130 when interrupted)."
    )
    for action in [a for a in p._actions if a.dest in BATCH_REPLACED]:
        p._remove_action(action)
        for group in p._action_groups:
            if action in group._group_actions:
                group._group_actions.remove(action)
        for flag in action.option_strings:
            p._option_string_actions.pop(flag, None)
    g = p.add_argument_group("batch")
    p._action_groups.insert(2, p._action_groups.pop())  # listed first, after the generic options
    g.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="video files, folders (searched for videos, MOTChallenge sequences and image folders), globs, "
        "or .txt lists (one source per line, # comments)",
    )
    g.add_argument("--out-dir", required=True, metavar="DIR", help="output folder (created when missing)")
    g.add_argument("--no-video", action="store_true", help="write no annotated videos (MOT txt and summaries only)")
    g.add_argument(
        "--report", action="store_true", help="also write an HTML report page per source, DIR/<name>/<name>.html"
    )
    g.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip sources whose DIR/<name>/summary.json says ok (resume a stopped batch; settings not compared)",
    )
    g.add_argument(
        "--workers",
        type=int,
        help="local: worker processes, each loading the models once (default 1: this process); ray: most "
        "tasks at once (default: as many as the cluster fits)",
    )
    g.add_argument("--backend", choices=("local", "ray"), default="local", help="where sources run")
    g.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster to join ('auto': the one 'ray start --head' started)"
    )
    g.add_argument("--ray-cpus", type=float, default=1.0, metavar="N", help="CPUs per Ray task")
    g.add_argument("--ray-gpus", type=float, metavar="N", help="GPUs per Ray task (default: 1 with a CUDA device)")
    return p


def _word(value: object) -> str:
    """A value as typed on the command line: quoted (as repr quotes it) only if it holds a space."""
    return repr(value) if " " in str(value) else str(value)


def flag_message(text: str, parser: argparse.ArgumentParser) -> str:
    """``text`` with every ``dest=value`` of ``parser``'s options written as the flag.

    ``embed_model='x.onnx'`` -> ``--embed-model x.onnx`` (a quoted value keeps its quotes only if it
    holds a space; a list becomes its items: ``seqs=['a', 'b']`` -> ``--seqs a b``); ``name=True`` of a
    switch -> ``--name``, ``name=False`` of a ``--name / --no-name`` pair -> ``--no-name``; a bare
    ``embed_model=`` -> ``--embed-model``. Names that are not the parser's dests, and dests not followed
    by ``=``, are left alone.
    """
    actions = {
        a.dest: a
        for a in parser._actions
        if a.option_strings and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    }

    def rewrite(m: re.Match[str]) -> str:
        action, value = actions.get(m.group(1)), m.group(2)
        if action is None:
            return m.group(0)
        flag = action.option_strings[0]
        if value is None:
            return flag
        if action.nargs == 0 and value in ("True", "False"):  # a switch
            if value == "True":
                return flag
            negative = [s for s in action.option_strings if s.startswith("--no-")]
            is_pair = isinstance(action, argparse.BooleanOptionalAction) and negative
            return negative[-1] if is_pair else m.group(0)
        if value[0] in "'\"[":
            try:
                parsed = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                return m.group(0)
            items = parsed if isinstance(parsed, list) else [parsed]
            return " ".join([flag, *map(_word, items)])
        return f"{flag} {value}"

    return _NAME_VALUE.sub(rewrite, text)


class _FlagLogFilter(logging.Filter):
    """Writes the library's log records (its notices) with the flags of ``parser``, as :func:`flag_message`."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".")[0] == "mot_dinov3":
            record.msg, record.args = flag_message(record.getMessage(), self.parser), None
        return True


def _track(argv: list[str]) -> int:
    from mot_dinov3 import pipeline

    parser = track_parser()
    args = parser.parse_args(argv)
    return _guard(args.debug, lambda: _finish(pipeline.run(build_run_config(args))), parser)


def _batch(argv: list[str]) -> int:
    parser = batch_parser()
    args = parser.parse_args(argv)
    if args.debug:
        logging.getLogger("mot_dinov3.batch").setLevel(logging.DEBUG)  # each failing source's traceback

    def go() -> int:
        from mot_dinov3.batch import run_batch

        if args.det_precision == "int8" and not args.det_calib:  # one detector serves every source
            raise UserError("det_precision='int8' in a batch needs det_calib= a video or image folder to calibrate on")
        per_source = {  # placeholders: run_batch writes each source's outputs in its folder
            "source": "<batch>",
            "output": "" if args.no_video else "batch.mp4",
            "report": "batch.html" if args.report else None,
        }
        cfg = build_run_config(argparse.Namespace(**{**vars(args), "save_mot": None, "save_json": None, **per_source}))
        result = run_batch(
            args.sources,
            args.out_dir,
            cfg,
            workers=args.workers,
            backend=args.backend,
            ray_address=args.ray_address,
            skip_existing=args.skip_existing,
            ray_cpus=args.ray_cpus,
            ray_gpus=args.ray_gpus,
        )
        print(flag_message(result.text(), parser))
        return EXIT_INTERRUPTED if result.interrupted else EXIT_FAILED if result.failed else 0

    return _guard(args.debug, go, parser)


def _finish(summary) -> int:
    print(summary.text())
    return EXIT_INTERRUPTED if summary.interrupted else 0


def _eval(argv: list[str]) -> int:
    from mot_dinov3.evaluate import check_report_path, evaluate, format_table, save_table

    parser = eval_parser()
    args = parser.parse_args(argv)

    def go() -> int:
        if args.save_json:
            check_report_path(args.save_json, args.gt_root, args.res_dir)
        table = evaluate(args.gt_root, args.res_dir, args.seqs)
        print(format_table(table))
        if args.save_json:
            save_table(table, args.save_json)
        return 0

    return _guard(args.debug, go, parser)


def _guard(debug: bool, fn, parser: argparse.ArgumentParser) -> int:
    """Run ``fn``: a UserError is printed as one line in ``parser``'s flags (exit 2), an interrupt exits 130."""
    handlers = list(logging.getLogger().handlers)
    flags = _FlagLogFilter(parser)
    for h in handlers:
        h.addFilter(flags)
    try:
        return fn()
    except UserError as exc:
        partial = getattr(exc, "summary", None)  # a write error: what was complete is written
        if partial is not None:
            print(partial.text())
        if debug:
            traceback.print_exc()
        print(f"error: {flag_message(str(exc), parser)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        for h in handlers:
            h.removeFilter(flags)


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP (where the platform has it) raise ``KeyboardInterrupt`` like
    Ctrl-C; the previous handlers are restored after. Only in the main thread (elsewhere: no change)."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    clear_dangling_altstack()  # a signal on a stack OpenVINO unmapped would be a SIGSEGV
    previous = {}
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                previous[getattr(signal, name)] = signal.signal(getattr(signal, name), handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mot-dinov3`` console script and ``python cli.py``: SIGTERM and SIGHUP stop
    it like Ctrl-C (exit 130; a run finalises its outputs and prints its summary)."""
    with _signals_as_interrupt():
        try:
            return _dispatch(argv)
        except KeyboardInterrupt:  # before a subcommand handles it (imports, loading)
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


def _dispatch(argv: list[str] | None) -> int:
    """Run the subcommand ``argv`` (default: ``sys.argv[1:]``) names."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env")  # HF_TOKEN and friends; real environment variables win
    logging.basicConfig(format="%(message)s", level=logging.WARNING)  # the library's notices, one line each
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":
        return _eval(argv[1:])
    if argv and argv[0] == "batch":  # many sources, one folder each
        return _batch(argv[1:])
    if argv and argv[0] == "models":  # the model catalogue
        from mot_dinov3.models.cli import main as models_main

        return models_main(argv[1:])
    if argv and argv[0] == "dense":  # dense DINO features: match, pca, point-track
        from mot_dinov3.dense.cli import main as dense_main

        return dense_main(argv[1:])
    if argv and argv[0] == "track":
        argv = argv[1:]
    return _track(argv)
