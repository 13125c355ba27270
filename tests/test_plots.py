"""Evaluate-stage figures and the offline DVC plot template (.dvc/plots), checked against independent computations."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import yaml
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from scipy.stats import norm
from sklearn.metrics import roc_curve

from singer_ssl.evaluation import report

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLOTS = ROOT / ".dvc" / "plots"
BUILTIN_TEMPLATES = {"simple", "linear", "confusion", "confusion_normalized", "scatter", "scatter_jitter", "smooth",
                     "bar_horizontal", "bar_horizontal_sorted"}


def _trials(seed: int = 0, n: int = 400):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    scores = np.clip(0.55 + 0.25 * labels + 0.12 * rng.normal(size=n), -1, 1)
    return labels, scores


def _read(path: Path) -> dict[str, np.ndarray]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    labels, scores = _trials()
    rng = np.random.default_rng(1)
    singers = np.repeat(np.array(["ann", "bob", "cy"]), 10)
    emb = rng.normal(size=(30, 8)) + 3 * np.repeat(np.eye(3, 8), 10, axis=0)  # one cluster per singer
    probe = {"y_true": ["ann", "bob", "cy"], "y_pred": ["ann", "cy", "cy"]}
    out = tmp_path_factory.mktemp("plots")
    report.write_plots(out, {"labels": labels, "scores": scores, "embedding": emb, "singers": singers,
                             "probe": probe}, perplexity=5, max_points=30)
    return out, labels, scores


def test_det_csv_holds_probits_of_sklearn_rates(written):
    out, labels, scores = written
    fpr, tpr, _ = roc_curve(labels, scores)
    det = _read(out / "det.csv")
    np.testing.assert_allclose(det["fpr"].astype(float), fpr, atol=1e-6)
    np.testing.assert_allclose(det["fnr"].astype(float), 1 - tpr, atol=1e-6)
    eps = report.PROBIT_EPS
    np.testing.assert_allclose(det["fpr_probit"].astype(float), norm.ppf(np.clip(fpr, eps, 1 - eps)), atol=1e-4)
    np.testing.assert_allclose(det["fnr_probit"].astype(float), norm.ppf(np.clip(1 - tpr, eps, 1 - eps)), atol=1e-4)
    roc = _read(out / "roc.csv")
    np.testing.assert_allclose(roc["tpr"].astype(float), tpr, atol=1e-6)
    for name in ("roc_det.png", "scores.png", "tsne.png", "tsne.csv", "confusion.csv", "singer_means.csv"):
        assert (out / name).stat().st_size > 0


def test_eer_point_is_sklearn_brentq_eer(written):
    _, labels, scores = written
    fpr, tpr, thr = roc_curve(labels, scores)
    want = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)  # SUPERB's EER
    eer_pct, threshold = report.eer_point(labels, scores)
    assert eer_pct == pytest.approx(100 * want, abs=1e-6)
    # at the threshold the two error rates are both near the EER (a step function: within one trial)
    far = np.mean(scores[labels == 0] >= threshold)
    frr = np.mean(scores[labels == 1] < threshold)
    step = 1 / min((labels == 0).sum(), (labels == 1).sum())
    assert abs(far - want) <= step + 1e-9 and abs(frr - want) <= step + 1e-9


def test_roc_det_and_histogram_mark_the_eer(written):
    _, labels, scores = written
    fpr, tpr, _ = roc_curve(labels, scores)
    eer_pct, threshold = report.eer_point(labels, scores)
    e = eer_pct / 100
    fig, (a, b) = plt.subplots(1, 2)
    report.plot_roc_det(a, b, fpr, tpr, eer_pct, threshold)
    marks = [ln for ln in a.lines if ln.get_marker() == "o"]
    assert len(marks) == 1 and np.allclose(marks[0].get_xydata(), [[e, 1 - e]])
    marks = [ln for ln in b.lines if ln.get_marker() == "o"]
    assert len(marks) == 1 and np.allclose(marks[0].get_xydata(), [[norm.ppf(e), norm.ppf(e)]])
    curve = b.lines[0].get_xydata()  # DET on normal-deviate axes
    np.testing.assert_allclose(curve[:, 0], norm.ppf(np.clip(fpr, 1e-4, 1 - 1e-4)))
    ticks = {t.get_text(): t.get_position()[0] for t in b.get_xticklabels()}
    assert ticks["1"] == pytest.approx(norm.ppf(0.01)) and ticks["40"] == pytest.approx(norm.ppf(0.4))
    plt.close(fig)
    fig, ax = plt.subplots()
    bins = report.score_bins(scores)
    report.plot_scores(ax, scores, labels, bins, eer_pct, threshold)
    vlines = [ln for ln in ax.lines if np.allclose(ln.get_xdata(), threshold)]
    assert len(vlines) == 1
    lo, hi = ax.get_xlim()  # fitted to the scores, not -1..1
    span = scores.max() - scores.min()
    assert scores.min() - 0.1 * span < lo < scores.min() and scores.max() < hi < scores.max() + 0.1 * span
    plt.close(fig)


def test_summary_bars_compare_model_and_both_baselines(tmp_path):
    m = {"embedding": {"eer": 10.0, "eer_ci95": [9.0, 11.0], "eer_ci95_singer": [6.0, 15.0]},
         "probe": {"acc": 0.9, "acc_std": 0.05},
         "baselines": {"random_init": {"eer": 30.0, "eer_std": 4.0, "inits": 3, "probe": {"acc": 0.5, "acc_std": 0.1}},
                       "mfcc": {"eer": 25.0, "eer_ci95": [24.0, 26.0], "probe": {"acc": 0.7, "acc_std": 0.02}}},
         "counts": {"singers": 8, "segments": 100, "trials": 1000}}
    bars = report.summary_bars(m)
    assert bars["eer"] == [("model", 10.0, (6.0, 15.0)), ("random init (3)", 30.0, (26.0, 34.0)),
                           ("MFCC", 25.0, (24.0, 26.0))]
    assert [b[1] for b in bars["acc"]] == pytest.approx([90.0, 50.0, 70.0])
    assert bars["acc"][1][2] == pytest.approx((40.0, 60.0))
    report.write_summary(tmp_path / "summary.png", m, "demo")
    assert (tmp_path / "summary.png").read_bytes()[:4] == b"\x89PNG"


def test_offline_template_loads_nothing_from_the_network():
    cfg = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"^\s*html_template\s*=\s*plots/offline.html\s*$", cfg, re.M)
    html = (PLOTS / "offline.html").read_text(encoding="utf-8")
    assert "{plot_divs}" in html and "{scripts}" not in html  # DVC's CDN <script src> tags have no place to go
    assert '<meta charset="utf-8">' in html
    assert not re.search(r"""<(script|link|img)[^>]*(src|href)\s*=\s*["']?(https?:)?//""", html, re.I)
    scripts = re.findall(r'<script type="text/javascript">\n(.*?)\n    </script>', html, re.S)
    assert len(scripts) == 3
    assert ".vega={}" in scripts[0] and ".vegaLite={}" in scripts[1] and "vegaEmbed" in scripts[2]
    assert (PLOTS / "LICENSE-vega.txt").read_text().count("Redistribution and use") == 1


def test_dvc_yaml_templates_exist_and_pair_train_with_validation():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    used = []
    for stage in spec["stages"].values():
        for entry in stage.get("do", stage).get("plots", []):
            if isinstance(entry, dict):
                used += [v.get("template") for v in entry.values() if isinstance(v, dict)]
    used += [v.get("template") for p in spec["plots"] for v in p.values()]
    for name in filter(None, used):
        assert name in BUILTIN_TEMPLATES or (PLOTS / f"{name}.json").exists(), name
    for p in spec["plots"]:
        (title, v), = p.items()
        assert "/" not in title  # a title in words, not a path
        files = list(v["y"])
        if "lr" not in files[0]:
            assert [f.split("/")[-2] for f in files] == ["train", "val"]
    det = json.loads((PLOTS / "det_probit.json").read_text())
    values = det["encoding"]["x"]["axis"]["values"]
    np.testing.assert_allclose(values, norm.ppf(np.array(report.DET_TICKS) / 100), atol=1e-4)


needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def render_svg(tmp_path: Path, template: str, data: list[dict], x: str, y: str, color: str = "{}") -> str:
    """Render ``.dvc/plots/<template>.json``, filled as DVC fills it, with the inlined vega + vega-lite of the
    offline page (node, no network); returns the SVG."""
    html = (PLOTS / "offline.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script type="text/javascript">\n(.*?)\n    </script>', html, re.S)
    spec = (PLOTS / f"{template}.json").read_text()
    for anchor, value in (('"<DVC_METRIC_DATA>"', json.dumps(data)), ("<DVC_METRIC_X>", x),
                          ("<DVC_METRIC_Y>", y), ("<DVC_METRIC_TITLE>", "chart"),
                          ('"<DVC_METRIC_PLOT_WIDTH>"', "300"), ('"<DVC_METRIC_PLOT_HEIGHT>"', "300"),
                          ("<DVC_METRIC_X_LABEL>", "x"), ("<DVC_METRIC_Y_LABEL>", "y"),
                          ('"<DVC_METRIC_COLOR>"', color), ('"<DVC_METRIC_STROKE_DASH>"', "{}")):
        spec = spec.replace(anchor, value)
    (tmp_path / "vega.js").write_text(scripts[0])
    (tmp_path / "vl.js").write_text(scripts[1])
    (tmp_path / "spec.json").write_text(spec)
    js = """const fs = require('fs'), vm = require('vm'); const d = process.argv[1];
const ctx = {console, structuredClone, setTimeout, clearTimeout}; ctx.self = ctx; vm.createContext(ctx);
for (const f of ['/vega.js', '/vl.js']) vm.runInContext(fs.readFileSync(d + f, 'utf8'), ctx);
const vg = ctx.vegaLite.compile(JSON.parse(fs.readFileSync(d + '/spec.json', 'utf8'))).spec;
new ctx.vega.View(ctx.vega.parse(vg), {renderer: 'none'}).toSVG().then(s => process.stdout.write(s));"""
    res = subprocess.run(["node", "-e", js, str(tmp_path)], capture_output=True, text=True, timeout=3 * 3600)
    assert res.returncode == 0, res.stderr[-800:]
    return res.stdout


@needs_node
def test_det_template_renders_with_the_vendored_scripts(tmp_path):
    """The inlined vega + vega-lite compile and render the DET template offline, with percent tick labels."""
    fpr = np.linspace(0.001, 0.5, 20)
    data = [{"fpr_probit": float(norm.ppf(f)), "fnr_probit": float(norm.ppf(0.5 - f * 0.9))} for f in fpr]
    svg = render_svg(tmp_path, "det_probit", data, "fpr_probit", "fnr_probit")
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    for tick in ("0.1", "1", "10", "40"):  # percent labels on both axes
        assert labels.count(tick) == 2, labels


@needs_node
@pytest.mark.parametrize("steps", [1, 2, 6])
def test_training_curve_says_when_a_short_run_has_no_line(steps, tmp_path):
    """dvclive rows as DVC passes them (strings, ``rev`` and ``filename`` added): every row is drawn as a point, and
    when no curve has two logged steps (a short run) the chart says so instead of showing an empty frame."""
    data = [{"step": str(10 * s), "loss": str(2.0 - 0.1 * s + 0.05 * k), "rev": "workspace", "filename": f}
            for k, f in enumerate(("train/loss.tsv", "val/loss.tsv")) for s in range(steps)]
    svg = render_svg(tmp_path, "train_curve", data, "step", "loss", '{"field": "filename", "type": "nominal"}')
    texts = " ".join(re.findall(r">([^<>]+)</t", svg))
    assert ("a short run" in texts) == (steps == 1), texts
    if steps == 1:
        assert "a short run: 1 logged step(s) per curve, too few for a line" in texts
    symbols = re.search(r'class="mark-symbol role-mark[^"]*"[^>]*>(.*?)</g>', svg, re.S)
    assert symbols is not None and symbols.group(1).count("<path") == 2 * steps


def test_figure_titles_name_the_test_set():
    labels, scores = _trials()
    fpr, tpr, _ = roc_curve(labels, scores)
    fig, (a, b, c, d) = plt.subplots(1, 4)
    report.plot_roc_det(a, b, fpr, tpr, 10.0, 0.5, "builtin-ood")
    report.plot_scores(c, scores, labels, report.score_bins(scores), 10.0, 0.5, "builtin-ood")
    report.plot_tsne(d, np.zeros((4, 2)), np.array(["ann", "ann", "bob", "bob"]), "builtin-ood")
    assert [ax.get_title() for ax in (a, b, c, d)] == [
        "builtin-ood: ROC", "builtin-ood: DET (normal-deviate axes)", "builtin-ood: trial scores",
        "builtin-ood: t-SNE of the embeddings (4 segments, 2 singers)"]
    plt.close(fig)


def _css_order(html: str) -> tuple[int, list[tuple[str, int]]]:
    """The offline page's ``order`` rules: (default for any chart, [(id suffix, order), ...])."""
    default = int(re.search(r"body > div \{ order: (\d+); \}", html).group(1))
    return default, [(k, int(v)) for k, v in re.findall(r'body > div\[id\$="([^"]+)"\] \{ order: (\d+); \}', html)]


@pytest.mark.slow
def test_plots_page_shows_each_summary_first_and_each_chart_once(tmp_path):
    """`dvc plots show` on this checkout's dvc.yaml and committed plots: the page, laid out by the offline template's
    CSS (flex ``order`` on DVC's chart divs), starts with every test set's summary; ROC and DET come once per test
    set (the vega charts, not also the PNG); no learning-rate panel; every evaluate figure has its place."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    test_sets = list(yaml.safe_load((ROOT / "params.yaml").read_text())["datasets"]["test"])
    project = tmp_path / "repo"
    for rel in ("dvc.yaml", "params.yaml", ".dvc/config", *(f".dvc/plots/{p.name}" for p in PLOTS.iterdir()),
                *(str(p.relative_to(ROOT)) for p in (ROOT / "plots").rglob("*") if p.is_file())):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, project / rel)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    res = subprocess.run([str(Path(sys.executable).parent / "dvc"), "plots", "show", "-o", str(tmp_path / "page")],
                         cwd=project, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    html = (tmp_path / "page" / "index.html").read_text(encoding="utf-8")
    body = html[html.rindex("<body"):]
    ids = re.findall(r'<div\s+id\s*=\s*"([^"]+)"', body)
    default, rules = _css_order(html)

    def order(div_id: str) -> int:
        return next((o for suffix, o in rules if div_id.endswith(suffix)), default)

    shown = sorted(ids, key=order)  # flex order; ties keep the document order
    assert sorted(shown[:len(test_sets)]) == sorted(f"plots_{t}_summary_png" for t in test_sets)
    for t in test_sets:
        mine = [i for i in ids if i.startswith(f"plots_{t}_")]
        assert mine.count(f"plots_{t}_roc_csv") == 1 and mine.count(f"plots_{t}_det_csv") == 1
        assert f"plots_{t}_roc_det_png" not in mine
        assert all(order(i) < default for i in mine), mine  # every evaluate figure placed before the curves
    curves = [i for i in ids if not i.startswith("plots_")]
    assert len(curves) == len(spec["plots"]) and not any("earning_rate" in i for i in curves)
    assert all(order(i) == default for i in curves)
