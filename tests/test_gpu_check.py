"""benchmarks/gpu_check.py in its CPU smoke mode (``--device cpu --small``), so that the prepared GPU check never rots.

On the CPU every comparison is CPU against CPU through the same code, so the correctness values must be
(near) exact: the features stage vs ``LogMel`` within 1e-5, the step-1 loss equal to the fp32 reference,
the resumed weights equal to the uninterrupted run's, the embeddings at cosine >= 0.999.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
#: a guard against a hung process only, never a speed check: no test fails for being slow on a loaded machine
HANG_GUARD_S = 3 * 3600


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    # a generous budget: the speed sections must run even on a loaded CI machine
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--small",
                           "--budget", "600"], capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=REPO)
    return proc, json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text()


def test_small_cpu_run_passes_and_reports_every_check(small_run):
    from singer_ssl.encoders import ENCODERS
    from singer_ssl.losses import NAMES

    proc, result, md = small_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["meta"]["complete"] is True and result["meta"]["small"] is True
    checks = {c["name"]: c for c in result["checks"]}
    assert len(checks) == len(result["checks"])  # names are unique
    expected = {"correctness/features", "correctness/resume", "correctness/torchscript", "correctness/embed",
                "correctness/api", "ddp/nccl_2proc_vs_1proc", "speed/train/torres2023", "speed/train/laptop",
                "speed/workers/torres2023", "speed/workers/laptop", "memory/train/torres2023",
                "memory/train/laptop", "speed/features", "speed/embed"}
    expected |= {f"correctness/train/{loss}/audiontt2020" for loss in NAMES}
    expected |= {f"correctness/train/ntxent/{enc}" for enc in ENCODERS}
    assert expected <= set(checks), sorted(expected - set(checks))
    for c in result["checks"]:
        assert c["status"] in ("pass", "fail", "skip", "measured"), c
        if c["kind"] == "correctness":
            assert c["status"] == "pass", c
    # CPU against CPU through the same code: exact-ish
    assert checks["correctness/features"]["value"] <= 1e-5
    for name, c in checks.items():
        if name.startswith("correctness/train/"):
            assert c["value"] <= 1e-5, c
            losses = c["details"]["losses"]
            assert len(losses) >= 2 and all(math.isfinite(v) for v in losses)
            assert losses[0] == pytest.approx(c["details"]["cpu_loss"], rel=1e-5, abs=1e-6)
    assert checks["correctness/resume"]["value"] <= 1e-6
    for name in ("correctness/torchscript", "correctness/embed", "correctness/api"):
        assert checks[name]["value"] >= 0.999
    assert checks["ddp/nccl_2proc_vs_1proc"]["status"] == "skip"
    assert checks["memory/train/torres2023"]["value"] is None  # no CUDA memory statistics on the CPU
    # speed: every ratio a positive finite number, the floors too
    for name in ("speed/train/torres2023", "speed/train/laptop", "speed/features", "speed/embed"):
        c = checks[name]
        assert c["status"] == "measured", c
        assert isinstance(c["value"], float) and math.isfinite(c["value"]) and c["value"] > 0, c
    sweep = checks["speed/train/torres2023"]["details"]["sweep"]
    assert [r["workers"] for r in sweep][:1] == [0] and all(r["samples_per_s"] > 0 for r in sweep)
    assert "pitch_shift_praat" in checks["speed/train/torres2023"]["reason"]  # the preset's augmentations
    # the Markdown table lists the same checks, one row each, with their status
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| check")]
    assert [r.split(" | ")[0][2:] for r in rows] == [c["name"] for c in result["checks"]]
    assert all(f" | {c['status']} | " in r for r, c in zip(rows, result["checks"]))


@pytest.mark.parametrize("args, needle", [
    (["--out", "x", "--device", "tpu"], "--device"),
    (["--out", "x", "--device", "cpu", "--budget", "0"], "--budget"),
])
def test_bad_argument_is_one_line_error(args, needle):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=HANG_GUARD_S,
                          cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gpu_check: ") and needle in lines[0], proc.stderr
