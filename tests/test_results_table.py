"""scripts/results_table.py: README's results block is rebuilt from metrics files, never typed by hand."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
results_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results_table)

PROBE = {"acc": 0.8612, "acc_std": 0.0671, "bacc": 0.8, "bacc_std": 0.05, "runs": 5}
METRICS = {
    "embedding": {"eer": 13.876, "eer_ci95": [12.86, 14.79], "eer_ci95_singer": [9.04, 19.51], "min_dcf": 0.9912,
                  "mnr": 4.912},
    "projection": {"eer": 16.2, "eer_ci95": [15.0, 17.4], "eer_ci95_singer": [11.0, 22.0], "min_dcf": 0.998,
                   "mnr": 8.0},
    "probe": PROBE,
    "baselines": {
        "random_init": {"eer": 30.16, "eer_std": 6.16, "min_dcf": 0.97, "mnr": 14.0, "inits": 3, "probe": PROBE,
                        "per_init": {"eer": [24.65, 27.08, 38.75]}},
        "mfcc": {"eer": 25.19, "eer_ci95": [23.65, 26.49], "eer_ci95_singer": [20.0, 30.0], "min_dcf": 0.964,
                 "mnr": 14.0, "probe": {"acc": 0.865, "acc_std": 0.04, "runs": 5}},
    },
    "counts": {"singers": 8, "segments": 133, "trials": 8644},
}


def test_rows_carry_the_numbers_of_the_metrics_file():
    rows = results_table.rows(METRICS)
    assert len(rows) == 4
    assert rows[0].startswith("| trained encoder, embedding | **13.9** | 12.9–14.8 | 9.0–19.5 | 0.991 | 4.9 |")
    assert "0.861 ± 0.067 (5 runs)" in rows[0]
    assert "mean of 3 inits: 24.6, 27.1, 38.8" in rows[2] and "| 30.2 ± 6.2 |" in rows[2]
    assert rows[3].startswith("| baseline: MFCC mean+std (40-d) | 25.2 | 23.6–26.5 | 20.0–30.0 |")


def test_versus_line_states_each_paired_difference_and_verdict():
    versus = {"random_init": {"eer_diff": -16.28, "eer_diff_ci95_singer": [-22.1, -9.5], "beaten": True},
              "mfcc": {"eer_diff": -1.3, "eer_diff_ci95_singer": [-4.04, 1.46], "beaten": False}}
    m = dict(METRICS, versus=versus)
    line = results_table.versus_line(m)
    assert "vs random-init -16.3 points (-22.1 to -9.5): beaten" in line
    assert "vs MFCC -1.3 points (-4.0 to +1.5): **not shown**" in line
    assert results_table.versus_line(METRICS) == ""  # a metrics file from before the comparison: no line


def test_write_replaces_only_the_marked_block(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    # the evaluate stage's two files: the flat headline (what DVC shows) and the details the table is built from
    (metrics / "toy.json").write_text(json.dumps({"eer": 13.876, "min_dcf": 0.9912, "trials": 8644}))
    (metrics / "toy_details.json").write_text(json.dumps(METRICS))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results_table.START}\nold numbers 15.5\n{results_table.END}\noutro\n")
    assert results_table.main(["--metrics", str(metrics), "--params", str(tmp_path / "none.yaml"),
                               "--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert "old numbers" not in text and "`toy` (8 singers, 133 segments, 8644 trials)" in text
    assert "**13.9**" in text and text.count(results_table.START) == 1
    assert "toy_details" not in text  # one table per dataset, not one per file
    assert results_table.metrics_files(metrics) == {"toy": METRICS}


def test_reads_a_metrics_folder_from_before_the_split(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps(METRICS))  # everything in <dataset>.json, no details file
    assert results_table.metrics_files(tmp_path) == {"old": METRICS}
    assert "**13.9**" in results_table.table(tmp_path)


def test_missing_metrics_or_markers_is_one_line_error(tmp_path, capsys):
    assert results_table.main(["--metrics", str(tmp_path)]) == 1
    assert "no metrics files" in capsys.readouterr().err
    (tmp_path / "a.json").write_text(json.dumps(METRICS))
    (tmp_path / "R.md").write_text("no markers")
    assert results_table.main(["--metrics", str(tmp_path), "--write", str(tmp_path / "R.md")]) == 1
    assert "no <!-- results:start -->" in capsys.readouterr().err
