"""MOTChallenge evaluation (HOTA, CLEAR, Identity) through TrackEval.

Sequences whose ``gt.txt`` has 9 columns (MOT16/17/20) are evaluated with TrackEval's standard
MOTChallenge preprocessing (pedestrians with ``consider == 1``; predictions matched to distractor
classes 2, 7, 8, 12 are ignored); 10-column gt (MOT15) is evaluated in TrackEval's MOT15 mode.
Sequences of both kinds can be mixed: each group runs through TrackEval separately and the raw
per-sequence results are then combined with TrackEval's own ``combine_sequences``.
Metrics: Luiten et al., HOTA, IJCV 2020 (arXiv 2009.07736); CLEAR MOT (Bernardin & Stiefelhagen 2008);
IDF1 (Ristani et al. 2016).

Result files are checked line by line before TrackEval reads them (:func:`check_results`), and
TrackEval's own failures become one-line :class:`~mot_dinov3.errors.UserError` (the original chained).
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import math
from pathlib import Path

from mot_dinov3.errors import UserError
from mot_dinov3.io import read_seqinfo, same_file, seqinfo_number, write_atomic

COLUMNS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN")
COMBINED = "COMBINED"
RESULT_FORMAT = "MOTChallenge results: one box per line, frame,id,x,y,w,h,conf,-1,-1,-1 (at least the first 7)"


def gt_mode(gt_file: Path) -> str:
    """``"MOT15"`` for 10-column gt (no class column), ``"MOT17"`` for 9-column gt."""
    with open(gt_file) as f:
        first = f.readline().strip()
    return "MOT15" if len(first.split(",")) >= 10 else "MOT17"


def find_sequences(gt_root: Path, seqs: list[str] | None) -> dict[str, Path]:
    """Map sequence name -> folder for every ``<gt_root>/**/<seq>/gt/gt.txt`` (or the ``seqs`` given).

    Raises:
        UserError: ``gt_root`` missing, or a requested sequence has no gt.
    """
    if not gt_root.is_dir():
        raise UserError(f"gt_root={str(gt_root)!r}: no such folder; pass a folder of MOTChallenge sequences")
    found = {p.parent.parent.name: p.parent.parent for p in sorted(gt_root.glob("**/gt/gt.txt"))}
    if seqs:
        missing = [s for s in seqs if s not in found]
        if missing:
            raise UserError(
                f"seqs={missing!r}: no <seq>/gt/gt.txt under {gt_root}; available: {', '.join(found) or 'none'}"
            )
        found = {s: found[s] for s in seqs}
    if not found:
        raise UserError(f"gt_root={str(gt_root)!r}: no <seq>/gt/gt.txt found; pass a MOTChallenge split folder")
    return found


def seq_length(seq_dir: Path) -> int | None:
    """Frames of a sequence: ``seqLength`` of its ``seqinfo.ini``, else the images in ``img1/``."""
    n = seqinfo_number(seq_dir, read_seqinfo(seq_dir), "seqlength", int)
    return int(n) if n is not None else len(list((seq_dir / "img1").glob("*"))) or None


def _row_problem(cells: list[str], length: int | None, seen: set[tuple[float, float]]) -> str | None:
    """What is wrong with one result line split at its commas (``None``: nothing)."""
    if cells and not cells[-1].strip():
        cells = cells[:-1]  # a trailing comma
    if len(cells) < 7:
        return f"{len(cells)} column{'s' * (len(cells) != 1)}, expected at least 7"
    values = []
    for k, c in enumerate(cells, start=1):
        try:
            v = float(c)
        except ValueError:
            return f"column {k} is {c.strip()!r}, not a number"
        if not math.isfinite(v):
            return f"column {k} is {c.strip()}, not a finite number"
        values.append(v)
    frame, tid, w, h = values[0], values[1], values[4], values[5]
    if frame < 1 or frame != int(frame):
        return f"frame {cells[0].strip()} is not an integer >= 1"
    if length is not None and frame > length:
        return f"frame {int(frame)} is past the sequence's {length} frames"
    if tid < 0 or tid != int(tid):
        return f"id {cells[1].strip()} is not an integer >= 0"
    if w < 0 or h < 0:
        return f"negative box size {w:g}x{h:g}"
    if (frame, tid) in seen:
        return f"id {int(tid)} appears twice in frame {int(frame)}"
    seen.add((frame, tid))
    return None


def check_results(path: Path, length: int | None = None) -> None:
    """Check a result file before TrackEval reads it: numbers, columns, frames in ``[1, length]``, ids.

    Raises:
        UserError: naming the file, the line and the problem.
    """
    seen: set[tuple[float, float]] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            problem = _row_problem(line.split(","), length, seen) if line.strip() else "an empty line"
            if problem:
                raise UserError(f"{path}: line {n}: {problem}; write {RESULT_FORMAT}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or exc.__class__.__name__


def check_report_path(path: str | Path, gt_root: str | Path, res_dir: str | Path) -> None:
    """Refuse a metrics file path that is one of the gt or result files evaluated.

    Raises:
        UserError: naming ``save_json``.
    """
    target = Path(path).resolve()
    for p in [*Path(res_dir).glob("*.txt"), *Path(gt_root).glob("**/gt/gt.txt")]:
        if same_file(target, p.resolve()):
            raise UserError(f"save_json={str(path)!r} is an input of the evaluation ({p}); choose another path")


def save_table(table: dict[str, dict[str, float]], path: str | Path) -> None:
    """Write the metrics as JSON, through a temporary file (an earlier file is replaced only when complete).

    Raises:
        WriteError: naming ``save_json``.
    """
    write_atomic(path, json.dumps(table, indent=2), "save_json")


def _run_group(mode: str, seq_dirs: dict[str, Path], res_dir: Path) -> dict[str, dict]:
    """TrackEval on one group of sequences -> ``{seq: {metric_family: raw result}}``."""
    import trackeval

    gt_folder = {d.parent for d in seq_dirs.values()}
    if len(gt_folder) != 1:  # TrackEval wants one gt folder per dataset
        return {k: v for seq, d in seq_dirs.items() for k, v in _run_group(mode, {seq: d}, res_dir).items()}
    (gt_dir,) = gt_folder
    seq_info = {seq: seq_length(d) for seq, d in seq_dirs.items()}
    ds_cfg = trackeval.datasets.MotChallenge2DBox.get_default_dataset_config()
    ds_cfg.update(
        {
            "GT_FOLDER": str(gt_dir),
            "TRACKERS_FOLDER": str(res_dir.parent),
            "TRACKERS_TO_EVAL": [res_dir.name],
            "TRACKER_SUB_FOLDER": "",
            "OUTPUT_FOLDER": None,
            "BENCHMARK": mode,
            "SPLIT_TO_EVAL": "train",
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": seq_info,
            "GT_LOC_FORMAT": "{gt_folder}/{seq}/gt/gt.txt",
            "PRINT_CONFIG": False,
            "DO_PREPROC": True,
        }
    )
    ev_cfg = trackeval.Evaluator.get_default_eval_config()
    ev_cfg.update(
        {
            "USE_PARALLEL": False,
            "PRINT_RESULTS": False,
            "PRINT_CONFIG": False,
            "TIME_PROGRESS": False,
            "OUTPUT_SUMMARY": False,
            "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False,
            "OUTPUT_EMPTY_CLASSES": False,
            "DISPLAY_LESS_PROGRESS": True,
            "BREAK_ON_ERROR": True,
            "RETURN_ON_ERROR": False,
            "LOG_ON_ERROR": None,
        }
    )
    metrics = [
        trackeval.metrics.HOTA(),
        trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
        trackeval.metrics.Identity({"PRINT_CONFIG": False}),
    ]
    try:
        with contextlib.redirect_stdout(_io.StringIO()), contextlib.redirect_stderr(_io.StringIO()):  # its traceback
            dataset = trackeval.datasets.MotChallenge2DBox(ds_cfg)
            res, _ = trackeval.Evaluator(ev_cfg).evaluate([dataset], metrics)
    except trackeval.utils.TrackEvalException as exc:
        raise UserError(
            f"res_dir={str(res_dir)!r}: {_one_line(exc)}; write one <seq>.txt per sequence (a tracking run's "
            "MOT txt results)"
        ) from exc
    except Exception as exc:  # TrackEval's own failures on unusual files: no traceback for the user
        raise UserError(
            f"res_dir={str(res_dir)!r}: TrackEval failed ({exc.__class__.__name__}: {_one_line(exc)}); check the "
            f"gt files under {gt_dir} and the results"
        ) from exc
    per_seq = res["MotChallenge2DBox"][res_dir.name]
    return {seq: per_seq[seq]["pedestrian"] for seq in seq_dirs}


def evaluate(gt_root: str | Path, res_dir: str | Path, seqs: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Evaluate ``res_dir/<seq>.txt`` against ``gt_root/**/<seq>/gt/gt.txt``.

    Returns:
        ``{seq or "COMBINED": {"HOTA", "DetA", "AssA", "MOTA", "IDF1" (fractions), "IDSW", "FP", "FN" (counts)}}``.

    Raises:
        UserError: missing folders or result files, a result line that is not MOTChallenge
            (:func:`check_results`), or a failure inside TrackEval.
    """
    import trackeval

    gt_root, res_dir = Path(gt_root), Path(res_dir)
    if not res_dir.is_dir():
        raise UserError(f"res_dir={str(res_dir)!r}: no such folder; pass the folder holding <seq>.txt results")
    seq_dirs = find_sequences(gt_root, seqs)
    missing = [s for s in seq_dirs if not (res_dir / f"{s}.txt").is_file()]
    if missing:
        raise UserError(
            f"res_dir={str(res_dir)!r}: no result file for {', '.join(missing)}; write <seq>.txt for "
            "each sequence or pass seqs= to evaluate fewer"
        )
    for seq, d in seq_dirs.items():
        check_results(res_dir / f"{seq}.txt", seq_length(d))
    groups: dict[str, dict[str, Path]] = {}
    for seq, d in seq_dirs.items():
        groups.setdefault(gt_mode(d / "gt" / "gt.txt"), {})[seq] = d
    raw: dict[str, dict] = {}
    for mode, dirs in groups.items():
        raw.update(_run_group(mode, dirs, res_dir))
    families = {
        "HOTA": trackeval.metrics.HOTA(),
        "CLEAR": trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
        "Identity": trackeval.metrics.Identity({"PRINT_CONFIG": False}),
    }
    combined = {name: m.combine_sequences({s: raw[s][name] for s in raw}) for name, m in families.items()}
    table = {seq: _row(r) for seq, r in raw.items()}
    table[COMBINED] = _row(combined)
    return table


def _row(r: dict) -> dict[str, float]:
    return {
        "HOTA": float(r["HOTA"]["HOTA"].mean()),
        "DetA": float(r["HOTA"]["DetA"].mean()),
        "AssA": float(r["HOTA"]["AssA"].mean()),
        "MOTA": float(r["CLEAR"]["MOTA"]),
        "IDF1": float(r["Identity"]["IDF1"]),
        "IDSW": int(r["CLEAR"]["IDSW"]),
        "FP": int(r["CLEAR"]["CLR_FP"]),
        "FN": int(r["CLEAR"]["CLR_FN"]),
    }


def format_table(table: dict[str, dict[str, float]]) -> str:
    """A markdown table: percentages for HOTA/DetA/AssA/MOTA/IDF1, counts for IDSW/FP/FN."""
    lines = ["| sequence | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for seq, row in table.items():
        cells = [
            f"{100 * row[c]:.2f}" if c in ("HOTA", "DetA", "AssA", "MOTA", "IDF1") else str(row[c]) for c in COLUMNS
        ]
        lines.append(f"| {seq} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
