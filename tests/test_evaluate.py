"""Metrics through TrackEval, checked against the known scores in ../shared/data/reference_results."""

import json

import pytest
from conftest import shared_path

from mot_dinov3.cli import main
from mot_dinov3.evaluate import evaluate


def test_reference_results_tud():
    gt = shared_path("data/MOT15/train")
    res = shared_path("data/reference_results/mmtracking_MOT15_TUD")
    t = evaluate(gt, res)
    c = t["COMBINED"]
    assert c["HOTA"] == pytest.approx(0.400, abs=5e-4)
    assert c["MOTA"] == pytest.approx(0.555, abs=5e-4)
    assert c["IDF1"] == pytest.approx(0.624, abs=5e-4)
    assert c["IDSW"] == 14
    assert t["TUD-Campus"]["HOTA"] == pytest.approx(0.3914, abs=5e-5) and t["TUD-Campus"]["IDSW"] == 7
    assert t["TUD-Stadtmitte"]["IDF1"] == pytest.approx(0.6446, abs=5e-5)


def test_eval_cli_prints_table_and_json(tmp_path, capsys):
    gt = shared_path("data/MOT15/train")
    res = shared_path("data/reference_results/mmtracking_MOT15_TUD")
    out = tmp_path / "m.json"
    assert (
        main(["eval", "--gt-root", str(gt), "--res-dir", str(res), "--seqs", "TUD-Campus", "--save-json", str(out)])
        == 0
    )
    assert "| TUD-Campus | 39.14 |" in capsys.readouterr().out
    assert json.loads(out.read_text())["TUD-Campus"]["IDSW"] == 7


def test_eval_missing_results_is_a_clean_error(tmp_path, capsys):
    gt = shared_path("data/MOT15/train")
    assert main(["eval", "--gt-root", str(gt), "--res-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --res-dir") and "TUD-Campus" in err and "Traceback" not in err
