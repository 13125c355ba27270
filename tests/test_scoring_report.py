"""scripts/scoring_report.py: docs/scoring.md is built from the metrics files (fabricated here), never typed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("scoring_report", ROOT / "scripts" / "scoring_report.py")
scoring_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scoring_report)


def _block(eer: float, snorm: float, asnorm: float, cllr: float = 0.6, act: float = 0.55) -> dict:
    return {"eer": eer, "min_dcf": 0.9, "mnr": 5.0,
            "score_norm": {"cohort_singers": 38, "top_n": 38, "snorm": {"eer": snorm, "min_dcf": 0.85, "mnr": 4.0},
                           "asnorm": {"eer": asnorm, "min_dcf": 0.8, "mnr": 3.9}},
            "calibration": {"score": "cosine", "scale": 9.0, "offset": -4.0, "act_dcf": act, "min_dcf": 0.5,
                            "cllr": cllr, "min_cllr": 0.4, "trials": 4000, "singers": 10}}


def _details(asnorm: float, cllr: float = 0.6) -> dict:
    return {"embedding": _block(11.0, 10.5, asnorm, cllr), "projection": _block(12.0, 12.0, 12.0),
            "baselines": {"random_init": _block(30.0, 29.0, 28.5), "mfcc": _block(25.0, 24.0, 23.25)},
            "channel": {"target_score_mean": {"same_recording": 0.812, "cross_recording": 0.634}, "score_gap": 0.178,
                        "eer": 11.0, "cross_recording_eer": 14.25, "pairs": {}, "cross_recording_target_trials": 9}}


def _write(folder: Path, sets: dict[str, dict]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, d in sets.items():
        (folder / f"{name}_details.json").write_text(json.dumps(d))
        (folder / f"{name}.json").write_text(json.dumps({"eer": d["embedding"]["eer"]}))
    return folder


def test_table_rows_carry_the_numbers_and_the_verdict_follows_them(tmp_path):
    text = scoring_report.report(_write(tmp_path / "m", {"builtin-test": _details(9.8),
                                                          "builtin-ood": _details(30.0)}))
    lines = text.splitlines()
    assert "## builtin-test" in lines and "## builtin-ood" in lines
    assert ("| trained encoder | 11.00 | 10.50 | 9.80 | 0.900 | 0.800 | cosine | 0.550 | 0.500 | 0.600 | 0.400 |"
            in lines)
    assert "| MFCC | 25.00 | 24.00 | 23.25 | 0.900 | 0.800 | cosine | 0.550 | 0.500 | 0.600 | 0.400 |" in lines
    assert any("same-recording 0.812 vs cross-recording 0.634" in ln and "14.25 %" in ln for ln in lines)
    # builtin-ood: AS-norm 30.0 > raw 11.0 -> not lowered everywhere -> keep none
    assert "does not lower" in text and "keep evaluate.score_norm.method: none" in text
    assert "builtin-test 11.00 -> 9.80" in text
    assert "calibration targets met" in text


def test_asnorm_lower_everywhere_and_calibration_missed(tmp_path):
    text = scoring_report.report(_write(tmp_path / "m", {"a": _details(9.0), "b": _details(10.9, cllr=1.2)}))
    assert "AS-norm lowers" in text and "method: asnorm" in text
    assert "b: Cllr 1.200 (< 1: False)" in text and "calibration targets not met" in text


def test_cli_writes_the_file_and_errors_are_one_line(tmp_path, capsys):
    folder = _write(tmp_path / "m", {"a": _details(9.0)})
    out = tmp_path / "scoring.md"
    assert scoring_report.main(["--metrics", str(folder), "--write", str(out)]) == 0
    assert out.read_text() == scoring_report.report(folder)
    assert scoring_report.main(["--metrics", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "no *_details.json" in err and err.count("\n") == 1
    bad = _details(9.0)
    del bad["baselines"]["mfcc"]["score_norm"]
    _write(tmp_path / "bad", {"a": bad})
    assert scoring_report.main(["--metrics", str(tmp_path / "bad")]) == 1
    assert "missing key 'score_norm'" in capsys.readouterr().err


def test_a_run_without_back_end_blocks_says_so(tmp_path):
    d = _details(9.0)
    for b in (d["embedding"], d["baselines"]["mfcc"], d["baselines"]["random_init"]):
        b.pop("score_norm")
    text = scoring_report.report(_write(tmp_path / "m", {"a": d}))
    assert "No back-end blocks" in text and "AS-norm lowers" not in text
