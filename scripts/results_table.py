"""README's results table, regenerated from the metrics files of a pipeline run.

    python scripts/results_table.py                       # print the table of every metrics/*.json
    python scripts/results_table.py --write README.md     # replace the block between the markers

Each dataset's numbers come from ``metrics/<dataset>_details.json`` (the evaluate stage's full metrics;
``metrics/<dataset>.json`` holds only the headline numbers DVC displays); a folder from before that split,
whose ``<dataset>.json`` holds everything, is read as well.

The block in README.md sits between ``<!-- results:start -->`` and ``<!-- results:end -->`` and is
written only by this script, so its numbers always come from a run (the line under the table names
the machine and date of that run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
DETAILS = "_details"


def metrics_files(metrics_dir: Path) -> dict[str, dict]:
    """Dataset name -> its full metrics dict: ``<name>_details.json``, else ``<name>.json`` (older layout)."""
    out = {}
    for path in sorted(metrics_dir.glob("*.json")):
        if path.stem.endswith(DETAILS):
            continue
        details = path.with_name(f"{path.stem}{DETAILS}.json")
        out[path.stem] = json.loads((details if details.exists() else path).read_text(encoding="utf-8"))
    return out


def _ci(block: dict, key: str) -> str:
    lo, hi = block.get(key) or (None, None)
    return "—" if lo is None else f"{lo:.1f}–{hi:.1f}"


def _probe(block: dict | None) -> str:
    if not block:
        return "—"
    acc, std = block.get("acc"), block.get("acc_std")
    runs = block.get("runs", 1)
    return f"{acc:.3f}" + (f" ± {std:.3f} ({runs} runs)" if std is not None and runs > 1 else "")


def rows(metrics: dict) -> list[str]:
    """Markdown rows: trained embedding, projection, random-init (mean over inits), MFCC."""
    out = []
    emb, proj = metrics["embedding"], metrics["projection"]
    out.append(f"| trained encoder, embedding | **{emb['eer']:.1f}** | {_ci(emb, 'eer_ci95')} | "
               f"{_ci(emb, 'eer_ci95_singer')} | {emb['min_dcf']:.3f} | {emb['mnr']:.1f} | "
               f"{_probe(metrics.get('probe'))} |")
    out.append(f"| trained encoder, projection | {proj['eer']:.1f} | {_ci(proj, 'eer_ci95')} | "
               f"{_ci(proj, 'eer_ci95_singer')} | {proj['min_dcf']:.3f} | {proj['mnr']:.1f} | — |")
    base = metrics.get("baselines", {})
    if "random_init" in base:
        r = base["random_init"]
        n = r.get("inits", 1)
        eer = f"{r['eer']:.1f}" + (f" ± {r['eer_std']:.1f}" if n > 1 else "")
        per = ", ".join(f"{x:.1f}" for x in (r.get("per_init") or {}).get("eer", []))
        out.append(f"| baseline: same encoder, random weights (mean of {n} inits{': ' + per if per else ''}) | "
                   f"{eer} | — | — | {r['min_dcf']:.3f} | {r['mnr']:.1f} | {_probe(r.get('probe'))} |")
    if "mfcc" in base:
        m = base["mfcc"]
        out.append(f"| baseline: MFCC mean+std (40-d) | {m['eer']:.1f} | {_ci(m, 'eer_ci95')} | "
                   f"{_ci(m, 'eer_ci95_singer')} | {m['min_dcf']:.3f} | {m['mnr']:.1f} | {_probe(m.get('probe'))} |")
    return out


def versus_line(metrics: dict) -> str:
    """One sentence: the trained embedding's EER minus each baseline's on the same trials, with the paired
    singer-level 95 % interval, and whether the baseline is beaten (the whole interval below 0)."""
    names = {"random_init": "random-init", "mfcc": "MFCC"}
    parts = []
    for key, label in names.items():
        d = (metrics.get("versus") or {}).get(key)
        if d:
            lo, hi = d["eer_diff_ci95_singer"]
            verdict = "beaten" if d["beaten"] else "**not shown** (the interval reaches 0)"
            parts.append(f"vs {label} {d['eer_diff']:+.1f} points ({lo:+.1f} to {hi:+.1f}): {verdict}")
    if not parts:
        return ""
    return "Trained minus baseline EER, paired singer-level 95 % interval: " + "; ".join(parts) + "."


def table(metrics_dir: Path, params: dict | None = None) -> str:
    """The whole block: one table per test dataset, then the provenance line."""
    parts = []
    for name, m in metrics_files(metrics_dir).items():
        c = m.get("counts", {})
        parts.append(f"`{name}` ({c.get('singers', '?')} singers, {c.get('segments', '?')} segments, "
                     f"{c.get('trials', '?')} trials):\n")
        parts.append("| representation | EER % | 95 % CI (trials) | 95 % CI (singers) | minDCF | MNR % | probe acc |")
        parts.append("|---|---|---|---|---|---|---|")
        parts.extend(rows(m))
        parts.append("")
        if versus_line(m):
            parts.extend([versus_line(m), ""])
    label = f"`loss: {params.get('loss')}`, `encoder: {params.get('encoder')}`, " if params else ""
    cpu = platform.processor() or platform.machine()
    parts.append(f"{label}default `params.yaml`; generated by `scripts/results_table.py` from the run's "
                 f"`metrics/` on {dt.date.today().isoformat()}, {os.cpu_count()} CPU cores ({cpu}), no GPU.")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", type=Path, default=Path("metrics"), help="folder of <dataset>.json files")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--write", type=Path, help="a Markdown file whose results block is replaced")
    args = ap.parse_args(argv)
    if not any(args.metrics.glob("*.json")):
        print(f"error: no metrics files in {args.metrics}; run `dvc repro` first", file=sys.stderr)
        return 1
    import yaml

    params = yaml.safe_load(args.params.read_text(encoding="utf-8")) if args.params.exists() else None
    block = table(args.metrics, params)
    if not args.write:
        print(block)
        return 0
    text = args.write.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"error: {args.write} has no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    args.write.write_text(f"{head}{START}\n{block}\n{END}{tail}", encoding="utf-8")
    print(f"results block of {args.write} regenerated from {args.metrics}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
