"""docs/scoring.md: raw cosine vs S-norm vs AS-norm, and calibration, per test set, from a finished run.

    python scripts/scoring_report.py                          # print the report of metrics/*_details.json
    python scripts/scoring_report.py --write docs/scoring.md  # write it (atomically)

Reads the back-end blocks the evaluate stage writes with the embed-train stage's training-data embeddings
(:mod:`singer_ssl.evaluation.normalised`): per test set and representation (trained embedding, random-init
mean over initialisations, MFCC) the EER (%) and minDCF of the raw cosine, of S-norm and of AS-norm (wespeaker
``bin/score_norm.py``; cohort = the training singers' mean embeddings), the calibrated score's actDCF, Cllr
and min Cllr (bits), and the channel-shortcut diagnostic of the trained embedding. The closing lines state,
from these numbers only, whether AS-norm lowered the trained encoder's EER on every test set (issue: keep
``evaluate.score_norm.method: none`` unless it does) and whether calibration met Cllr < 1 and
actDCF - minDCF <= 0.1. Nothing here is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DETAILS = "_details"
REPRESENTATIONS = (("trained encoder", ("embedding",)), ("random-init (mean of inits)", ("baselines", "random_init")),
                   ("MFCC", ("baselines", "mfcc")))
HEADER = ("| representation | EER raw | EER S-norm | EER AS-norm | minDCF raw | minDCF AS-norm | calibrated score "
          "| actDCF | minDCF (that score) | Cllr | min Cllr |")


def details_files(metrics_dir: Path) -> dict[str, dict]:
    """Test set -> its ``<set>_details.json``; ValueError when there is none."""
    out = {p.stem[: -len(DETAILS)]: json.loads(p.read_text(encoding="utf-8"))
           for p in sorted(metrics_dir.glob(f"*{DETAILS}.json"))}
    if not out:
        raise ValueError(f"{metrics_dir}: no *{DETAILS}.json (run the pipeline first)")
    return out


def _get(d: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        d = d[key]
    return d


def _f(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(name: str, details: dict) -> list[str]:
    """The Markdown section of one test set (heading, table, cohort and channel lines)."""
    emb = details["embedding"]
    if "score_norm" not in emb:
        return [f"## {name}", "", "No back-end blocks (evaluated without the training-data embeddings).", ""]
    lines = [f"## {name}", "", HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for label, path in REPRESENTATIONS:
        b = _get(details, path)
        sn, cal = b["score_norm"], b.get("calibration") or {}
        lines.append(f"| {label} | {b['eer']:.2f} | {sn['snorm']['eer']:.2f} | {sn['asnorm']['eer']:.2f} | "
                     f"{b['min_dcf']:.3f} | {sn['asnorm']['min_dcf']:.3f} | {cal.get('score', '—')} | "
                     f"{_f(cal.get('act_dcf'), 3)} | {_f(cal.get('min_dcf'), 3)} | {_f(cal.get('cllr'), 3)} | "
                     f"{_f(cal.get('min_cllr'), 3)} |")
    sn, cal = emb["score_norm"], emb.get("calibration")
    lines += ["", f"Cohort: {sn['cohort_singers']} training singers, AS-norm top-N {sn['top_n']}."
              + (f" Calibration: {cal['trials']} trials among {cal['singers']} validation singers." if cal else
                 " No calibration (the model folder names no validation singers).")]
    ch = details.get("channel")
    if ch:
        m = ch["target_score_mean"]
        cross = ch["cross_recording_eer"]
        p = ch.get("pair_eer") or {}
        lines.append(f"Channel shortcut (trained embedding): mean target score same-recording "
                     f"{_f(m['same_recording'], 3)} vs cross-recording {_f(m['cross_recording'], 3)} (EER of those "
                     f"pairs against the non-targets {_f(p.get('same_recording'), 2)} % vs "
                     f"{_f(p.get('cross_recording'), 2)} %); EER over cross-recording targets {_f(cross, 2)} % "
                     f"(all trials {ch['eer']:.2f} %).")
    return lines + [""]


def verdict(sets: dict[str, dict]) -> list[str]:
    """The closing lines: AS-norm vs raw EER of the trained encoder on every set; the calibration targets."""
    with_norm = {n: d["embedding"] for n, d in sets.items() if "score_norm" in d["embedding"]}
    if not with_norm:
        return []
    lower = {n: e["score_norm"]["asnorm"]["eer"] < e["eer"] for n, e in with_norm.items()}
    changes = ", ".join(f"{n} {e['eer']:.2f} -> {e['score_norm']['asnorm']['eer']:.2f}" for n, e in with_norm.items())
    out = [f"AS-norm {'lowers' if all(lower.values()) else 'does not lower'} the trained encoder's EER on every "
           f"test set ({changes}): " + ("it can be the default (evaluate.score_norm.method: asnorm)."
                                        if all(lower.values()) else "keep evaluate.score_norm.method: none.")]
    for n, e in with_norm.items():
        cal = e.get("calibration")
        if cal:
            ok = cal["cllr"] < 1 and cal["act_dcf"] - cal["min_dcf"] <= 0.1
            out.append(f"{n}: Cllr {cal['cllr']:.3f} (< 1: {cal['cllr'] < 1}), actDCF - minDCF "
                       f"{cal['act_dcf'] - cal['min_dcf']:.3f} (<= 0.1: {cal['act_dcf'] - cal['min_dcf'] <= 0.1})"
                       f" -> calibration targets {'met' if ok else 'not met'}.")
    return out


def report(metrics_dir: Path) -> str:
    sets = details_files(metrics_dir)
    lines = ["# Scoring back-end: score normalisation and calibration", "",
             "Generated by `python scripts/scoring_report.py --write docs/scoring.md` from the run's "
             "`metrics/*_details.json`. EER in %, minDCF/actDCF normalised at the evaluation prior "
             "(evaluate.p_target), Cllr in bits.", ""]
    for name, details in sets.items():
        lines += table(name, details)
    return "\n".join(lines + verdict(sets)) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", default="metrics", help="folder of <set>_details.json (default: metrics)")
    ap.add_argument("--write", default=None, help="write the report to this file instead of printing it")
    args = ap.parse_args(argv)
    try:
        text = report(Path(args.metrics))
    except (ValueError, KeyError, OSError) as err:
        print(f"error: {'missing key ' if isinstance(err, KeyError) else ''}{err}", file=sys.stderr)
        return 1
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from singer_ssl.core.io import write_text

        write_text(Path(args.write), text)
        print(f"wrote {args.write}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
