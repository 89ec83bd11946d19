"""What ``mot-dinov3 batch SOURCES...`` runs on: the arguments expanded into a deterministic list of sources.

An argument is one of:

- a video file (any file that is not a ``.txt`` list; one that does not decode fails when it runs);
- a MOTChallenge sequence folder (``seqinfo.ini`` or ``img1/``) or a folder of images: one source;
- any other folder: searched recursively, in name order, for video files (:data:`VIDEO_SUFFIXES`),
  sequence folders and image folders (hidden entries, the batch's own output folder and the writers'
  ``.part`` files are left out); a MOTChallenge split folder (``MOT17/train``) gives its sequences;
- a glob (``clips/*.mp4``, ``data/**/img1/..``), expanded here when the shell did not (no file of that
  literal name exists), matches in name order (``.part`` files left out), each taken as if given on the
  command line;
- a ``.txt`` list: one argument per line (any of these kinds, relative paths relative to the list's
  folder), blank lines and lines starting with ``#`` skipped.

The same file or folder reached twice is run once (its first place). Each source gets a folder name:
the file stem or the folder name, with ``-2``, ``-3`` ... appended where two sources share one
(compared case-insensitively, for case-insensitive file systems).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mot_dinov3.io import IMAGE_EXTS, VIDEO_EXTS

VIDEO_SUFFIXES = (*VIDEO_EXTS, ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".m2ts", ".3gp")
_PART = re.compile(r"\.[0-9a-f]{8}\.part(\.[^.]+)?$")  # io.part_path's temporary files
_MAGIC = re.compile(r"[*?[]")  # a glob pattern
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')  # not allowed in a folder name on common file systems


@dataclass(frozen=True)
class BatchSource:
    """One source of a batch.

    Attributes:
        path: the source as expanded (relative paths stay relative to the working folder).
        name: its output folder's name, unique within the batch.
        error: why it cannot run (it does not exist, nothing found in a folder); ``""`` when it can.
    """

    path: str
    name: str
    error: str = ""


def is_sequence(folder: Path) -> bool:
    """``folder`` is a MOTChallenge sequence (``seqinfo.ini`` or ``img1/`` inside)."""
    return (folder / "seqinfo.ini").is_file() or (folder / "img1").is_dir()


def has_images(folder: Path) -> bool:
    """``folder`` holds image files itself (not only in subfolders); ``False`` when it cannot be listed."""
    try:
        return any(p.suffix.lower() in IMAGE_EXTS and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def is_part_file(path: Path) -> bool:
    """``path`` is a writer's temporary ``<name>.<8 hex>.part[.ext]`` file (a killed run's leftover)."""
    return bool(_PART.search(path.name))


def expand_sources(args: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> list[BatchSource]:
    """Expand batch arguments into sources, in a deterministic order (the arguments' order, and name
    order within a folder, a glob or a list); see the module docstring for the kinds of argument.

    Args:
        args: paths, globs and ``.txt`` lists.
        exclude: folders never searched (the batch's output folder), resolved.

    Returns:
        The sources, each with a unique ``name``; an argument that matches nothing or a folder with
        nothing to run becomes one source with its ``error`` set (the batch records it as failed).
    """
    skip = {Path(p).resolve() for p in exclude}
    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []  # (path, base name, error)
    for path, error in _expand_all([str(a) for a in args], skip, set()):
        key = str(Path(path).resolve()) if not error else f"\0{path}"
        if key not in seen:
            seen.add(key)
            out.append((path, _base_name(path), error))
    return [BatchSource(path, name, error) for (path, _, error), name in zip(out, unique_names([b for _, b, _ in out]))]


def unique_names(names: Iterable[str]) -> list[str]:
    """``names`` with ``-2``, ``-3`` ... appended to repeats (case-insensitively): ``a, a, A`` -> ``a, a-2, A-3``."""
    taken: set[str] = set()
    result = []
    for name in names:
        candidate, n = name, 1
        while candidate.lower() in taken:
            n += 1
            candidate = f"{name}-{n}"
        taken.add(candidate.lower())
        result.append(candidate)
    return result


def _base_name(path: str) -> str:
    p = Path(path)
    name = p.name if p.is_dir() else p.stem
    return _UNSAFE.sub("_", name).strip(". ") or "source"


def _expand_all(
    args: list[str], skip: set[Path], lists: set[Path], base: Path | None = None
) -> Iterator[tuple[str, str]]:
    """``(path, error)`` for each source the arguments name (``base``: the folder relative paths start from)."""
    for arg in args:
        text = arg if base is None or Path(arg).is_absolute() else str(base / arg)
        p = Path(text)
        if not p.exists() and _MAGIC.search(text):
            matches = sorted(m for m in glob.glob(text, recursive=True) if not is_part_file(Path(m)))
            if not matches:
                yield text, f"no file or folder matches {text!r}"
            for m in matches:
                yield from _expand_path(Path(m), skip, lists)
        elif not p.exists():
            yield text, f"source={text!r}: no such file or folder"
        else:
            yield from _expand_path(p, skip, lists)


def _expand_path(p: Path, skip: set[Path], lists: set[Path]) -> Iterator[tuple[str, str]]:
    if p.is_file() and p.suffix.lower() == ".txt":
        resolved = p.resolve()
        if resolved in lists:  # a list that names itself (or a list naming it): read once
            return
        lists.add(resolved)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            yield str(p), f"source list {str(p)!r}: cannot read it ({exc.__class__.__name__}: {exc})"
            return
        entries = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
        yield from _expand_all(entries, skip, lists, base=p.parent)
    elif p.is_dir() and not (is_sequence(p) or has_images(p)):
        found = list(_search(p, skip, set()))
        if not found and p.resolve() not in skip:
            yield str(p), f"source={str(p)!r}: no videos, sequences or image folders found in this folder"
        yield from ((s, "") for s in found)
    else:
        yield str(p), ""


def _search(folder: Path, skip: set[Path], visited: set[Path]) -> Iterator[str]:
    """Video files, sequence folders and image folders under ``folder`` (not a source itself), name order."""
    resolved = folder.resolve()
    if resolved in skip or resolved in visited:  # the output folder; a symlink loop
        return
    visited.add(resolved)
    try:
        entries = sorted(folder.iterdir(), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith(".") or is_part_file(e):
            continue
        if e.is_dir():
            if e.resolve() in skip:
                continue
            if is_sequence(e) or has_images(e):
                yield str(e)
            else:
                yield from _search(e, skip, visited)
        elif e.suffix.lower() in VIDEO_SUFFIXES:
            yield str(e)
