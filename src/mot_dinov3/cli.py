"""Command line: ``mot-dinov3 [track] --source ...`` and ``mot-dinov3 eval --gt-root ... --res-dir ...``.

Flags become config dataclasses; :class:`~mot_dinov3.errors.UserError` becomes a one-line message and
exit code 2 (full traceback with ``--debug``); an interrupted run exits 130 after printing its summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from mot_dinov3.errors import UserError
from mot_dinov3.options import build_run_config, parse_classes, track_parser

__all__ = ["build_run_config", "eval_parser", "main", "parse_classes", "track_parser"]

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


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


def _track(argv: list[str]) -> int:
    from mot_dinov3 import pipeline

    args = track_parser().parse_args(argv)
    return _guard(args.debug, lambda: _finish(pipeline.run(build_run_config(args))))


def _finish(summary) -> int:
    print(summary.text())
    return EXIT_INTERRUPTED if summary.interrupted else 0


def _eval(argv: list[str]) -> int:
    from mot_dinov3.evaluate import evaluate, format_table

    args = eval_parser().parse_args(argv)

    def go() -> int:
        table = evaluate(args.gt_root, args.res_dir, args.seqs)
        print(format_table(table))
        if args.save_json:
            Path(args.save_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.save_json).write_text(json.dumps(table, indent=2))
        return 0

    return _guard(args.debug, go)


def _guard(debug: bool, fn) -> int:
    try:
        return fn()
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mot-dinov3`` console script and ``python cli.py``."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env")  # HF_TOKEN and friends; real environment variables win
    logging.basicConfig(format="%(message)s", level=logging.WARNING)  # the library's notices, one line each
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "eval":
        return _eval(argv[1:])
    if argv and argv[0] == "track":
        argv = argv[1:]
    return _track(argv)
