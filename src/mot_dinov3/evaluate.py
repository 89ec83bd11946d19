"""MOTChallenge evaluation (HOTA, CLEAR, Identity) through TrackEval.

Sequences whose ``gt.txt`` has 9 columns (MOT16/17/20) are evaluated with TrackEval's standard
MOTChallenge preprocessing (pedestrians with ``consider == 1``; predictions matched to distractor
classes 2, 7, 8, 12 are ignored); 10-column gt (MOT15) is evaluated in TrackEval's MOT15 mode.
Sequences of both kinds can be mixed: each group runs through TrackEval separately and the raw
per-sequence results are then combined with TrackEval's own ``combine_sequences``.
Metrics: Luiten et al., HOTA, IJCV 2020 (arXiv 2009.07736); CLEAR MOT (Bernardin & Stiefelhagen 2008);
IDF1 (Ristani et al. 2016).
"""

from __future__ import annotations

import contextlib
import io as _io
from pathlib import Path

from mot_dinov3.errors import UserError
from mot_dinov3.io import read_seqinfo

COLUMNS = ("HOTA", "DetA", "AssA", "MOTA", "IDF1", "IDSW", "FP", "FN")
COMBINED = "COMBINED"


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


def _run_group(mode: str, seq_dirs: dict[str, Path], res_dir: Path) -> dict[str, dict]:
    """TrackEval on one group of sequences -> ``{seq: {metric_family: raw result}}``."""
    import trackeval

    gt_folder = {d.parent for d in seq_dirs.values()}
    if len(gt_folder) != 1:  # TrackEval wants one gt folder per dataset
        return {k: v for seq, d in seq_dirs.items() for k, v in _run_group(mode, {seq: d}, res_dir).items()}
    seq_info: dict[str, int | None] = {}
    for seq, d in seq_dirs.items():
        info = read_seqinfo(d)
        if "seqlength" in info:
            seq_info[seq] = int(info["seqlength"])
        else:
            seq_info[seq] = len(list((d / "img1").glob("*"))) or None
    ds_cfg = trackeval.datasets.MotChallenge2DBox.get_default_dataset_config()
    ds_cfg.update(
        {
            "GT_FOLDER": str(gt_folder.pop()),
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
        with contextlib.redirect_stdout(_io.StringIO()):
            dataset = trackeval.datasets.MotChallenge2DBox(ds_cfg)
            res, _ = trackeval.Evaluator(ev_cfg).evaluate([dataset], metrics)
    except trackeval.utils.TrackEvalException as exc:
        raise UserError(
            f"res_dir={str(res_dir)!r}: {exc}; write one <seq>.txt per sequence (a tracking run's MOT txt results)"
        ) from exc
    per_seq = res["MotChallenge2DBox"][res_dir.name]
    return {seq: per_seq[seq]["pedestrian"] for seq in seq_dirs}


def evaluate(gt_root: str | Path, res_dir: str | Path, seqs: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Evaluate ``res_dir/<seq>.txt`` against ``gt_root/**/<seq>/gt/gt.txt``.

    Returns:
        ``{seq or "COMBINED": {"HOTA", "DetA", "AssA", "MOTA", "IDF1" (fractions), "IDSW", "FP", "FN" (counts)}}``.

    Raises:
        UserError: missing folders or result files.
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
