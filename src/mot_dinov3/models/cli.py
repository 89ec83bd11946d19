"""``mot-dinov3 models list | recommend | download | use``: the model catalogue from the command line.

Errors are one line on stderr with exit code 2 (as the other subcommands); ``--json`` prints
machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mot_dinov3.models import catalogue as cat
from mot_dinov3.models.fetch import download


def models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mot-dinov3 models",
        description="The ReID / embedding model catalogue: list, recommend, download, choose the default. "
        f"Weights folder: ${cat.WEIGHTS_ENV} (default: the user cache folder); defaults file: ${cat.CONFIG_ENV}.",
    )
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="{list,recommend,download,use}")
    s = sub.add_parser("list", help="every catalogue entry and whether it is cached here")
    s.add_argument("--family", choices=cat.FAMILIES, help="only this family")
    s.add_argument("--json", action="store_true", help="print JSON")
    s = sub.add_parser("recommend", help="one model for a goal, with its reason")
    s.add_argument("goal", choices=cat.GOALS)
    s.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    s.add_argument("--task", choices=cat.TASKS, default="person-reid", help="default: person-reid")
    s.add_argument("--json", action="store_true", help="print JSON")
    s = sub.add_parser("download", help="fetch a model into the weights folder (or the Hugging Face cache)")
    s.add_argument("name")
    s.add_argument("--force", action="store_true", help="download again even if it is there")
    s.add_argument("--url", help="download from this URL instead (a mirror)")
    s.add_argument("--sha256", help="expected sha256 (default: the published one, if any)")
    s = sub.add_parser("use", help="make a model the default embedder of later runs")
    s.add_argument("name", nargs="?", help="catalogue name (none: show the current default)")
    s.add_argument("--reset", action="store_true", help="forget the default (back to --embedder dino)")
    for s in sub.choices.values():
        s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return p


def _source(e: cat.ModelEntry) -> str:
    return f"hf:{e.hf_id}" if e.hf_id else (e.url or "manual")


def _list(args) -> int:
    entries = cat.list_models(args.family)
    chosen = cat.default_model()
    rows = [
        {**e.as_dict(), "cached": cat.is_cached(e), "default": bool(chosen and e.name == chosen.name)} for e in entries
    ]
    if args.json:
        print(json.dumps({"cache_dir": str(cat.cache_dir()), "models": rows}, indent=2))
        return 0
    head = ("name", "family", "task", "embedder", "dim", "input", "speed", "ms/crop", "cached", "license", "source")
    table = [head]
    for r in rows:
        ms = r["ms_per_crop_cpu"]
        table.append(
            (
                ("*" if r["default"] else "") + r["name"],
                r["family"],
                r["task"],
                r["backend"] or "-",
                str(r["dim"]),
                "x".join(map(str, r["input"])),
                r["speed"],
                "-" if ms is None else f"{ms:g}",
                "yes" if r["cached"] else "no",
                r["license"],
                _source(cat.get(r["name"])),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    print(f"weights folder: {cat.cache_dir()}" + ("; * = the default (mot-dinov3 models use)" if chosen else ""))
    return 0


def _recommend(args) -> int:
    entry, reason = cat.recommend(args.goal, args.device, args.task)
    if args.json:
        print(json.dumps({**entry.as_dict(), "reason": reason, "cached": cat.is_cached(entry)}, indent=2))
    else:
        print(f"{entry.name}: {reason}")
    return 0


class _Progress:
    """A tqdm bar on stderr for a streaming download (created at the first chunk)."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _download(args) -> int:
    progress = _Progress()
    try:
        got = download(args.name, force=args.force, url=args.url, sha256=args.sha256, progress=progress)
    finally:
        progress.close()
    if not got.downloaded:
        print(f"{args.name}: already here: {got.path}")
    elif got.sha256:
        check = "verified" if got.verified else "no published checksum"
        print(f"{args.name}: saved {got.path} (sha256 {got.sha256}, {check})")
    else:
        print(f"{args.name}: cached {got.path}")
    return 0


def _use(args) -> int:
    if args.reset:
        had = cat.use_reset()
        print("default embedder reset to --embedder dino" if had else "no default was set (--embedder dino)")
        return 0
    if not args.name:
        entry = cat.default_model()
        print(f"default: {entry.name} (--embedder {entry.backend})" if entry else "default: --embedder dino")
        return 0
    path = cat.use(args.name)
    entry = cat.get(args.name)
    print(
        f"default embedder: {entry.name} (--embedder {entry.backend}); --embedder / --embed-model override it; "
        f"saved in {path}"
    )
    if not cat.is_cached(entry) and entry.file:
        print(f"note: not downloaded yet: mot-dinov3 models download {entry.name}")
    return 0


def _message_flags() -> argparse.ArgumentParser:
    """The flags the library's messages may name (``force=True``, ``embed_model=PATH`` ...), for
    :func:`mot_dinov3.cli.flag_message`."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--force", action="store_true")
    for flag in ("--url", "--sha256", "--device", "--family", "--task", "--embedder", "--embed-model"):
        p.add_argument(flag)
    return p


COMMANDS = {"list": _list, "recommend": _recommend, "download": _download, "use": _use}


def main(argv: list[str]) -> int:
    """``mot-dinov3 models ...`` (``argv`` without ``models``); exit code 0, or 2 on a user error."""
    from mot_dinov3.cli import _guard

    parser = models_parser()
    args = parser.parse_args(argv)
    return _guard(args.debug, lambda: COMMANDS[args.command](args), _message_flags())
