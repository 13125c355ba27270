"""scripts/objectives_check.py: the per-objective table carries each run's numbers and verdicts; bad arguments are
one-line errors before any run."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("objectives_check", ROOT / "scripts" / "objectives_check.py")
objectives_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(objectives_check)


def details(eer, rinit, mfcc, d_r, ci_r, d_m, ci_m):
    return {"embedding": {"eer": eer}, "baselines": {"random_init": {"eer": rinit}, "mfcc": {"eer": mfcc}},
            "versus": {"random_init": {"eer_diff": d_r, "eer_diff_ci95_singer": ci_r, "beaten": ci_r[1] < 0},
                       "mfcc": {"eer_diff": d_m, "eer_diff_ci95_singer": ci_m, "beaten": ci_m[1] < 0}}}


def test_table_rows_and_verdicts():
    results = {
        "ntxent": ({"builtin-test": details(12.9, 27.2, 25.3, -14.3, [-21.9, -3.6], -12.4, [-19.4, -2.6]),
                    "builtin-ood": details(35.8, 40.8, 39.7, -5.0, [-11.1, 1.5], -3.9, [-8.5, 0.4])}, "", 300.0),
        "vicreg": (None, "ERROR: failed to reproduce 'train': NaN loss at step 3", 60.0),
    }
    text = objectives_check.table(results, steps=80)
    lines = text.splitlines()
    assert ("| ntxent | builtin-test | 12.9 | 27.2 | 25.3 | -14.3 (-21.9, -3.6) **beaten** "
            "| -12.4 (-19.4, -2.6) **beaten** |") in lines
    assert "| ntxent | builtin-ood | 35.8 | 40.8 | 39.7 | -5.0 (-11.1, +1.5) | -3.9 (-8.5, +0.4) |" in lines
    assert any(ln.startswith("| vicreg | — | failed: ERROR: failed to reproduce 'train'") for ln in lines)
    assert "80 training steps per objective" in lines[-1] and "6 min in all" in lines[-1]


def test_every_registered_objective_is_checked_by_default():
    from singer_ssl.losses import NAMES

    assert objectives_check.objective_names() == NAMES and len(NAMES) == 11


def test_bad_arguments_are_one_line_errors(capsys):
    assert objectives_check.main(["--losses", "ntxent,simclr"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown objective(s) simclr" in err[0]
    assert objectives_check.main(["--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
