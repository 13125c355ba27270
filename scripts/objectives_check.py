"""Each objective once, short, with the current defaults: does it beat random weights on every test set?

    python scripts/objectives_check.py --steps 80                      # every objective, 80 steps each
    python scripts/objectives_check.py --losses ntxent,byol --out docs/objectives.md

Runs ``dvc exp run -S loss=<name> -S train.max_steps=<steps> -S embed.invariance=null`` per objective (the
invariance report left out: it is the slow part of embed and not needed here), in the current repository, one
after the other, restoring ``params.yaml`` from git before each, and reads each run's
``metrics/<dataset>_details.json``. Prints (and with ``--out`` writes) one Markdown table: per objective and test
set, the EER, the random-init and MFCC EERs of the same run and the paired singer-level difference to each
(``versus`` of the evaluate stage; "beaten" when its 95 % interval lies below 0), with the machine and date. A
run that fails is listed with the last line of its error, and the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def objective_names() -> tuple[str, ...]:
    """Every registered objective (``singer_ssl.losses.NAMES``)."""
    from singer_ssl.losses import NAMES

    return NAMES


def _dvc() -> str:
    near = Path(sys.executable).with_name("dvc")
    return str(near) if near.exists() else "dvc"


def run_one(loss: str, steps: int, extra: list[str]) -> tuple[dict[str, dict] | None, str, float]:
    """``(details per test dataset | None, error line, seconds)`` of one short experiment."""
    subprocess.run(["git", "checkout", "params.yaml"], check=True, capture_output=True)
    args = [_dvc(), "exp", "run", "-S", f"loss={loss}", "-S", f"train.max_steps={steps}", "-S",
            "embed.invariance=null", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        lines = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
        return None, (lines[-1] if lines else f"exit {p.returncode}"), seconds
    out = {}
    for f in sorted(Path("metrics").glob("*_details.json")):
        out[f.name[: -len("_details.json")]] = json.loads(f.read_text(encoding="utf-8"))
    return out, "", seconds


def _versus(m: dict, base: str) -> str:
    d = (m.get("versus") or {}).get(base)
    if not d:
        return "—"
    lo, hi = d["eer_diff_ci95_singer"]
    return f"{d['eer_diff']:+.1f} ({lo:+.1f}, {hi:+.1f}){' **beaten**' if d['beaten'] else ''}"


def table(results: dict[str, tuple[dict | None, str, float]], steps: int) -> str:
    head = ("| objective | test set | EER % | random-init EER % | MFCC EER % | Δ vs random-init (95 % CI) "
            "| Δ vs MFCC (95 % CI) |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for loss, (details, err, _) in results.items():
        if details is None:
            lines.append(f"| {loss} | — | failed: {err[:80]} | | | | |")
            continue
        for ds, m in details.items():
            b = m["baselines"]
            lines.append(f"| {loss} | {ds} | {m['embedding']['eer']:.1f} | {b['random_init']['eer']:.1f} | "
                         f"{b['mfcc']['eer']:.1f} | {_versus(m, 'random_init')} | {_versus(m, 'mfcc')} |")
    total = sum(s for _, _, s in results.values())
    cpu = platform.processor() or platform.machine()
    lines.append("")
    lines.append(f"{steps} training steps per objective, other parameters as `params.yaml`; "
                 f"`scripts/objectives_check.py` on {dt.date.today().isoformat()}, {os.cpu_count()} CPU cores ({cpu}), "
                 f"{total / 60:.0f} min in all.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=80, help="train.max_steps of each run (default 80)")
    ap.add_argument("--losses", help="comma-separated objectives (default: every registered one)")
    ap.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a further -S override")
    args = ap.parse_args(argv)
    if args.steps < 1:
        print(f"error: --steps must be >= 1, got {args.steps}", file=sys.stderr)
        return 2
    names = objective_names()
    losses = [x.strip() for x in args.losses.split(",") if x.strip()] if args.losses else list(names)
    unknown = sorted(set(losses) - set(names))
    if unknown or not losses:
        print(f"error: unknown objective(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(names)}",
              file=sys.stderr)
        return 2
    extra = [w for kv in args.set for w in ("-S", kv)]
    results = {}
    for loss in losses:
        results[loss] = run_one(loss, args.steps, extra)
        details, err, sec = results[loss]
        print(f"{loss}: {'failed: ' + err if details is None else 'done'} ({sec:.0f} s)", file=sys.stderr, flush=True)
    subprocess.run(["git", "checkout", "params.yaml"], check=False, capture_output=True)
    text = table(results, args.steps)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0 if all(d is not None for d, _, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
