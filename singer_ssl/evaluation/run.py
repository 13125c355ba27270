"""The evaluate stage: metrics and plots of one test dataset from its stored embeddings.

:class:`EvaluateConfig` validates ``evaluate.*`` (with its ``probe`` and ``tsne`` sub-mappings);
:func:`run` reads the embedding file and the trial list and writes the metrics JSON and the plot
files. For each representation (the encoder's embedding, its projection, each baseline, the
16 kHz-degraded embeddings when present), on the same trials and the same probe splits:

- verification (:mod:`singer_ssl.evaluation.verification`): EER (%) with its threshold and a
  percentile-bootstrap 95 % interval, minDCF, MNR (%);
- linear-probe singer identification (:mod:`singer_ssl.evaluation.probe`, BYOL-A's protocol, split by
  recording, the manifest's ``recording`` carried as the embeddings' ``source``): mean and standard
  deviation of the accuracy and balanced accuracy over ``evaluate.probe.runs`` seeded runs (run ``i``:
  seed ``evaluate.seed + i``).

The random-init baseline is averaged over the embed stage's ``embed.random_inits`` initialisations
(``baseline/random_init/embedding``, then ``baseline/random_init/init<k>/embedding``): each metric is
the mean over initialisations, ``*_std`` their population standard deviation, and ``per_init`` lists
each initialisation's own values (its probe accuracy being the mean over the probe runs).

Two metrics files per dataset. ``metrics/<dataset>.json`` (``metrics:`` in ``dvc.yaml``, what
``dvc metrics show/diff`` and ``dvc exp show`` display) holds the headline numbers only, flat, the
baselines beside the trained encoder (:data:`HEADLINE`, copied from the details)::

    {eer, min_dcf, mnr, probe_acc, random_init_eer, mfcc_eer, [eer_norm,] trials}
                                       (eer_norm: evaluate.score_norm.method's EER, unless none; the baselines'
                                       and the calibrated numbers stay in the details, so that `dvc metrics
                                       show` keeps within 120 columns)

``metrics/<dataset>_details.json`` (a plain ``outs:`` file, so DVC's tables stay narrow; DVC drops
list values from its metrics views anyway) holds everything::

    embedding, projection: {eer, eer_ci95, eer_threshold, min_dcf, mnr}
    probe: {acc, acc_std, bacc, bacc_std, runs}           (of the embedding)
    baselines:
      mfcc: {eer, eer_ci95, eer_threshold, min_dcf, mnr, probe: {acc, acc_std, bacc, bacc_std, runs}}
      random_init: {eer, eer_std, min_dcf, min_dcf_std, mnr, mnr_std,
                    probe: {acc, acc_std, bacc, bacc_std, runs}, inits,
                    per_init: {eer: [...], min_dcf: [...], mnr: [...], probe_acc: [...]}}
    versus: {random_init, mfcc}: {eer_diff, eer_diff_ci95_singer, beaten}
                                                          (trained minus baseline EER, points, on the same trials;
                                                          paired singer-level bootstrap interval; beaten: it lies
                                                          below 0)
    degraded_16k: {embedding, projection}: {...}         (only when the embed stage wrote them)
    embedding, projection, baselines.mfcc, baselines.random_init (averaged over inits), with training-data
    embeddings (the evaluate stage's ``train_dir``/``model_dir``; :mod:`singer_ssl.evaluation.normalised`) also:
        score_norm: {cohort_singers, top_n, snorm: {eer, min_dcf, mnr}, asnorm: {eer, min_dcf, mnr}}
        calibration: {score, scale, offset, act_dcf, min_dcf, cllr, min_cllr, trials, singers}
        eer_norm                                          (evaluate.score_norm.method's EER, unless none)
    versus_norm: {random_init, mfcc}: {...}              (as versus, on the normalised scores; unless none)
    channel: {target_score_mean: {same_recording, cross_recording}, pairs: {...}, score_gap,
              pair_eer: {same_recording, cross_recording}, eer, cross_recording_eer, cross_recording_target_trials}
                                                          (the channel-shortcut diagnostic of the embedding,
                                                          singer_ssl.evaluation.channel)
    invariance: {representation, segments, target_trials, nontarget_trials, reference_eer, eer: {<transform>: ...},
                 target_score_mean: {reference, <transform>: ...}, nontarget_score_mean, training_chain,
                 groups: {seen, held_out}, max_increase: {seen, held_out},
                 increase_ci95_singer: {<transform>: [lo, hi]}}   (paired singer-level interval of each increase)
                                                          (only with embed.invariance; singer_ssl.evaluation.invariance)
    counts: {segments, singers, trials, target_trials, mnr_queries, mnr_negatives,
             probe_train, probe_val, probe_test}          (probe_*: segments in the first run's split)

Everything is computed and validated before the first file is written.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from singer_ssl.core.errors import ConfigError, NonFiniteError
from singer_ssl.core.params import device_param, int_param, mapping_param, number_param, section, test_dataset

#: the keys of the ``evaluate`` section and of its sub-mappings
EVALUATE_KEYS = ("p_target", "c_miss", "c_fa", "bootstrap", "mnr_queries", "mnr_negatives", "seed", "probe", "tsne",
                 "score_norm")
PROBE_KEYS = ("lr", "weight_decay", "max_epochs", "patience", "batch_size", "val_fraction", "test_fraction", "device",
              "runs")
TSNE_KEYS = ("perplexity", "max_points")
SCORE_NORM_KEYS = ("method", "top_n")
#: the matrices the embed stage always writes (``degraded_16k/*`` only with ``embed.degrade_16k``)
REQUIRED_VECTORS = ("embedding", "projection", "baseline/random_init/embedding", "baseline/mfcc/embedding")
#: headline key -> dotted path in the details JSON (the order of ``metrics/<dataset>.json``)
HEADLINE = {"eer": "embedding.eer", "min_dcf": "embedding.min_dcf", "mnr": "embedding.mnr", "probe_acc": "probe.acc",
            "random_init_eer": "baselines.random_init.eer", "mfcc_eer": "baselines.mfcc.eer",
            "eer_norm": "embedding.eer_norm", "trials": "counts.trials"}
DETAILS_SUFFIX = "_details"
#: the further random initialisations (``embed.random_inits`` > 1): ``baseline/random_init/init<k>/embedding``
RANDOM_INIT_MORE = re.compile(r"^baseline/random_init/init([1-9][0-9]*)/embedding$")


@dataclass(frozen=True)
class ProbeConfig:
    """``evaluate.probe``: the linear probe's settings (``runs`` seeded runs of ``probe_singer_id`` with the
    other keys as keyword arguments); defaults are BYOL-A's (:mod:`singer_ssl.evaluation.probe`)."""

    lr: float = 1e-3
    weight_decay: float = 1e-8
    max_epochs: int = 200
    patience: int = 10
    batch_size: int = 200
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    device: str = "cpu"
    runs: int = 5

    @classmethod
    def from_mapping(cls, value: Any, where: str = "evaluate.probe") -> ProbeConfig:
        """Validate the ``probe`` sub-mapping; ConfigError naming ``evaluate.probe.<key>`` otherwise."""
        sec = mapping_param(value, where, PROBE_KEYS)
        d = cls()
        cfg = cls(
            lr=number_param(sec.get("lr", d.lr), f"{where}.lr", 0.0, low_open=True),
            weight_decay=number_param(sec.get("weight_decay", d.weight_decay), f"{where}.weight_decay", 0.0),
            max_epochs=int_param(sec.get("max_epochs", d.max_epochs), f"{where}.max_epochs", minimum=1),
            patience=int_param(sec.get("patience", d.patience), f"{where}.patience", minimum=1),
            batch_size=int_param(sec.get("batch_size", d.batch_size), f"{where}.batch_size", minimum=1),
            val_fraction=number_param(sec.get("val_fraction", d.val_fraction), f"{where}.val_fraction", 0.0, 1.0,
                                      low_open=True, high_open=True),
            test_fraction=number_param(sec.get("test_fraction", d.test_fraction), f"{where}.test_fraction", 0.0,
                                       1.0, low_open=True, high_open=True),
            device=device_param(sec.get("device", d.device), f"{where}.device"),
            runs=int_param(sec.get("runs", d.runs), f"{where}.runs", minimum=1),
        )
        if cfg.val_fraction + cfg.test_fraction >= 1.0:
            raise ConfigError(f"{where}.test_fraction: val_fraction + test_fraction must be < 1, got "
                              f"{cfg.val_fraction} + {cfg.test_fraction}")
        return cfg


@dataclass(frozen=True)
class TsneConfig:
    """``evaluate.tsne``: t-SNE perplexity and the most segments drawn for the plot."""

    perplexity: float = 30.0
    max_points: int = 2000

    @classmethod
    def from_mapping(cls, value: Any, where: str = "evaluate.tsne") -> TsneConfig:
        """Validate the ``tsne`` sub-mapping; ConfigError naming ``evaluate.tsne.<key>`` otherwise."""
        sec = mapping_param(value, where, TSNE_KEYS)
        # t-SNE needs more points than its perplexity, which report.tsne_2d never lowers below 2
        return cls(perplexity=number_param(sec.get("perplexity", 30.0), f"{where}.perplexity", 0.0, low_open=True),
                   max_points=int_param(sec.get("max_points", 2000), f"{where}.max_points", minimum=3))


@dataclass(frozen=True)
class ScoreNormConfig:
    """``evaluate.score_norm``: the normalised score (``none`` | ``snorm`` | ``asnorm``, wespeaker
    ``bin/score_norm.py``) reported as ``eer_norm`` and calibrated, and AS-norm's ``top_n`` (capped at the cohort
    size). S-norm and AS-norm are both reported in the details whenever training-data embeddings are given."""

    method: str = "none"
    top_n: int = 100

    @classmethod
    def from_mapping(cls, value: Any, where: str = "evaluate.score_norm") -> ScoreNormConfig:
        """Validate the ``score_norm`` sub-mapping; ConfigError naming ``evaluate.score_norm.<key>`` otherwise."""
        from singer_ssl.evaluation.backend import NORM_METHODS

        sec = mapping_param(value, where, SCORE_NORM_KEYS)
        method = sec.get("method", "none")
        if method not in NORM_METHODS:
            raise ConfigError(f"{where}.method: expected one of {', '.join(NORM_METHODS)}, got {method!r}")
        return cls(method=method, top_n=int_param(sec.get("top_n", 100), f"{where}.top_n", minimum=2))


@dataclass(frozen=True)
class EvaluateConfig:
    """The evaluate stage's parameters (``evaluate.*``); defaults are the published values.

    ``p_target``, ``c_miss``, ``c_fa``: the detection-cost model of minDCF (NIST SRE); ``bootstrap``:
    resamples of the EER interval; ``mnr_queries``, ``mnr_negatives``: Torres et al. 2023's MNR sizes;
    ``seed``: seeds the bootstrap, the MNR negatives, the probe and the t-SNE sample.
    """

    dataset: str
    p_target: float = 0.01
    c_miss: float = 1.0
    c_fa: float = 1.0
    bootstrap: int = 1000
    mnr_queries: int = 1000
    mnr_negatives: int = 512
    seed: int = 0
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    tsne: TsneConfig = field(default_factory=TsneConfig)
    score_norm: ScoreNormConfig = field(default_factory=ScoreNormConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any], dataset: str) -> EvaluateConfig:
        """Validate ``evaluate.*`` and that ``dataset`` is a test dataset; ConfigError otherwise.

        Reads no other section, so a bad ``augment:`` or ``train:`` never stops this stage.
        """
        test_dataset(params, dataset, "evaluate")
        sec = section(params, "evaluate", EVALUATE_KEYS)
        d = cls(dataset)
        return cls(
            dataset=dataset,
            p_target=number_param(sec.get("p_target", d.p_target), "evaluate.p_target", 0.0, 1.0,
                                  low_open=True, high_open=True),
            c_miss=number_param(sec.get("c_miss", d.c_miss), "evaluate.c_miss", 0.0, low_open=True),
            c_fa=number_param(sec.get("c_fa", d.c_fa), "evaluate.c_fa", 0.0, low_open=True),
            bootstrap=int_param(sec.get("bootstrap", d.bootstrap), "evaluate.bootstrap", minimum=1),
            mnr_queries=int_param(sec.get("mnr_queries", d.mnr_queries), "evaluate.mnr_queries", minimum=1),
            mnr_negatives=int_param(sec.get("mnr_negatives", d.mnr_negatives), "evaluate.mnr_negatives", minimum=1),
            seed=int_param(sec.get("seed", d.seed), "evaluate.seed", minimum=0),
            probe=ProbeConfig.from_mapping(sec.get("probe")),
            tsne=TsneConfig.from_mapping(sec.get("tsne")),
            score_norm=ScoreNormConfig.from_mapping(sec.get("score_norm")),
        )

    def scoring(self) -> dict[str, Any]:
        """Keyword arguments of :func:`singer_ssl.evaluation.verification.verification`."""
        return {"p_target": self.p_target, "c_miss": self.c_miss, "c_fa": self.c_fa, "bootstrap": self.bootstrap,
                "mnr_queries": self.mnr_queries, "mnr_negatives": self.mnr_negatives, "seed": self.seed}


def _probe(cfg: EvaluateConfig, vectors: np.ndarray, singers: np.ndarray,
           sources: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Linear-probe singer identification on frozen vectors: ``(summary over runs, first run's result)``."""
    from singer_ssl.evaluation.probe import probe_runs

    kwargs = dataclasses.asdict(cfg.probe)
    runs = kwargs.pop("runs")
    return probe_runs(vectors, singers, sources, runs=runs, seed=cfg.seed, **kwargs)


def random_init_names(names: Any) -> list[str]:
    """The random-init baseline matrices among ``names``: the first initialisation, then ``init<k>`` by k."""
    more = sorted((int(m[1]), m[0]) for m in map(RANDOM_INIT_MORE.match, names) if m)
    return ["baseline/random_init/embedding", *(name for _, name in more)]


def average_inits(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The random-init baseline block: mean and population std over initialisations (``blocks``: one
    verification block with its ``probe`` summary each), the count, and each initialisation's values."""
    out: dict[str, Any] = {}
    for key in ("eer", "min_dcf", "mnr"):
        vals = np.array([b[key] for b in blocks], dtype=np.float64)
        out[key], out[f"{key}_std"] = float(vals.mean()), float(vals.std())
    probe: dict[str, Any] = {}
    for key in ("acc", "bacc"):
        vals = np.array([b["probe"][key] for b in blocks], dtype=np.float64)
        probe[key], probe[f"{key}_std"] = float(vals.mean()), float(vals.std())
    probe["runs"] = blocks[0]["probe"]["runs"]
    out["probe"] = probe
    out["inits"] = len(blocks)
    # lists of numbers (as eer_ci95), which `dvc metrics show/diff` display as they do other list values
    out["per_init"] = {"eer": [b["eer"] for b in blocks], "min_dcf": [b["min_dcf"] for b in blocks],
                       "mnr": [b["mnr"] for b in blocks], "probe_acc": [b["probe"]["acc"] for b in blocks]}
    return out


def versus(labels: np.ndarray, scores: np.ndarray, baseline_scores: list[np.ndarray], singer1: np.ndarray,
           singer2: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """The trained embedding against one baseline on the same trials: ``eer_diff`` (trained minus baseline, points;
    the baseline's EER averaged over its score vectors), ``eer_diff_ci95_singer`` (paired singer-level bootstrap,
    :func:`singer_ssl.evaluation.metrics.paired_singer_eer_difference`) and ``beaten`` (true when the whole interval
    lies below 0: the trained embedding is better on this population of singers, not by the luck of which singers
    were drawn)."""
    from singer_ssl.evaluation.metrics import paired_singer_eer_difference

    diff, (lo, hi) = paired_singer_eer_difference(labels, scores, baseline_scores, singer1, singer2, n_boot=n_boot,
                                                  seed=seed)
    return {"eer_diff": diff, "eer_diff_ci95_singer": [lo, hi], "beaten": bool(hi < 0.0)}


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """The flat headline metrics (:data:`HEADLINE`, in that order) of a details dict; missing paths left out."""
    out: dict[str, Any] = {}
    for key, dotted in HEADLINE.items():
        value: Any = details
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            out[key] = value
    return out


def versus_line(details: dict[str, Any]) -> str:
    """e.g. ``vs random-init -5.09 [-11.08, 1.48] (not beaten), vs mfcc ...``: the paired EER differences."""
    parts = []
    for base, label in (("random_init", "random-init"), ("mfcc", "mfcc")):
        d = details.get("versus", {}).get(base)
        if d:
            lo, hi = d["eer_diff_ci95_singer"]
            parts.append(f"vs {label} {d['eer_diff']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                         f"{' beaten' if d['beaten'] else ' (not beaten)'}")
    return "EER difference, singer-level 95 % CI: " + ", ".join(parts) if parts else "no baseline comparison"


def details_path(metrics_path: str | os.PathLike) -> Path:
    """``metrics/<dataset>_details.json`` beside the headline file ``metrics/<dataset>.json``."""
    p = Path(metrics_path)
    return p.with_name(f"{p.stem}{DETAILS_SUFFIX}{p.suffix or '.json'}")


def evaluate_dataset(cfg: EvaluateConfig, embeddings_path: str | os.PathLike, trials_path: str | os.PathLike,
                     train_dir: str | os.PathLike | None = None, model_dir: str | os.PathLike | None = None,
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics dict (schema in the module docstring) and the plot data of one dataset; with ``train_dir``
    (embed-train files) and ``model_dir`` (its ``threshold.json`` names the validation singers) also the
    back-end blocks (:mod:`singer_ssl.evaluation.normalised`)."""
    from singer_ssl.evaluation.store import read_embeddings
    from singer_ssl.evaluation.verification import load_trials, verification

    es = read_embeddings(embeddings_path)
    missing = [name for name in REQUIRED_VECTORS if name not in es.vectors]
    if missing:
        raise ValueError(f"{embeddings_path}: no {', '.join(missing)} (not an embed-stage file; "
                         f"it has {', '.join(es.vectors) or 'no matrices'})")
    es.check(embeddings_path)
    trials = load_trials(es, trials_path)
    labels = trials.labels
    singers = np.asarray(es.singers)
    sources = np.asarray(es.sources)
    v = es.vectors
    scoring = cfg.scoring()

    out: dict[str, Any] = {}
    main_block, main_scores, (nq, nneg) = verification(v["embedding"], singers, trials, **scoring)
    out["embedding"] = main_block
    out["projection"], projection_scores, _ = verification(v["projection"], singers, trials, **scoring)
    out["probe"], main_probe = _probe(cfg, v["embedding"], singers, sources)

    baseline_scores: dict[str, np.ndarray] = {}

    def scored(name: str) -> dict[str, Any]:
        block, baseline_scores[name], _ = verification(v[name], singers, trials, **scoring)
        block["probe"] = _probe(cfg, v[name], singers, sources)[0]
        return block

    inits = random_init_names(v)
    out["baselines"] = {"random_init": average_inits([scored(name) for name in inits]),
                        "mfcc": scored("baseline/mfcc/embedding")}
    out["versus"] = {
        base: versus(labels, main_scores, [baseline_scores[n] for n in names], singers[trials.idx1],
                     singers[trials.idx2], n_boot=cfg.bootstrap, seed=cfg.seed)
        for base, names in (("random_init", inits), ("mfcc", ["baseline/mfcc/embedding"]))
    }
    if train_dir is not None:
        raw = {"embedding": main_scores, "projection": projection_scores, **baseline_scores}
        _add_backend(cfg, out, v, singers, trials, raw, inits, train_dir, model_dir)
    from singer_ssl.evaluation.channel import channel_shortcut

    out["channel"] = channel_shortcut(v["embedding"], singers, sources, labels, trials.idx1, trials.idx2,
                                      main_scores, seed=cfg.seed)
    if "degraded_16k/embedding" in v:
        out["degraded_16k"] = {
            rep: verification(v[f"degraded_16k/{rep}"], singers, trials, **scoring)[0]
            for rep in ("embedding", "projection")
        }
    from singer_ssl.evaluation.invariance import invariance_report

    invariance, invariance_scores = (None, {})
    if es.invariance:
        invariance, invariance_scores = invariance_report(v["embedding"], singers, sources, es.invariance_rows,
                                                          es.invariance, labels, trials.idx1, trials.idx2,
                                                          training_chain=es.training_chain,
                                                          n_boot=cfg.bootstrap, seed=cfg.seed)
    if invariance is not None:
        out["invariance"] = invariance
    out["counts"] = {
        "segments": len(es.keys), "singers": len(set(es.singers)), "trials": len(labels),
        "target_trials": int(labels.sum()), "mnr_queries": nq, "mnr_negatives": nneg,
        "probe_train": main_probe["n_train"], "probe_val": main_probe["n_val"], "probe_test": main_probe["n_test"],
    }
    plot_data = {"labels": labels, "scores": main_scores, "embedding": v["embedding"], "singers": singers,
                 "probe": main_probe, "invariance": (invariance, invariance_scores)}
    return out, plot_data


def _add_backend(cfg: EvaluateConfig, out: dict[str, Any], v: dict[str, np.ndarray], singers: np.ndarray,
                 trials: Any, raw: dict[str, np.ndarray], inits: list[str], train_dir: str | os.PathLike,
                 model_dir: str | os.PathLike | None) -> None:
    """Add the S-norm/AS-norm and calibration blocks of every representation (``raw``: its cosine trial scores
    by matrix name) to ``out`` (in place), each with its own cohort, and with ``evaluate.score_norm.method`` set:
    ``eer_norm`` per representation and ``versus_norm`` (the paired comparison on the normalised scores)."""
    from singer_ssl.evaluation.normalised import backend_block, load_reference, mean_blocks

    ref = load_reference(train_dir, model_dir)
    method, top_n = cfg.score_norm.method, cfg.score_norm.top_n
    scoring = {k: val for k, val in cfg.scoring().items() if k != "bootstrap"}
    missing = [n for n in ("embedding", "projection", *inits, "baseline/mfcc/embedding") if n not in ref.vectors]
    if missing:
        raise ValueError(f"{train_dir}: the training-data embeddings lack {', '.join(missing)} (re-run embed-train)")
    norm_scores: dict[str, dict[str, np.ndarray]] = {}

    def block(name: str) -> dict[str, Any]:
        b, norm_scores[name] = backend_block(name, v[name], singers, trials.labels, trials.idx1, trials.idx2,
                                             raw[name], ref, method, top_n, **scoring)
        if method != "none":
            b["eer_norm"] = b["score_norm"][method]["eer"]
        return b

    out["embedding"].update(block("embedding"))
    out["projection"].update(block("projection"))
    out["baselines"]["mfcc"].update(block("baseline/mfcc/embedding"))
    out["baselines"]["random_init"].update(mean_blocks([block(n) for n in inits]))
    if method != "none":
        out["versus_norm"] = {
            base: versus(trials.labels, norm_scores["embedding"][method], [norm_scores[n][method] for n in names],
                         singers[trials.idx1], singers[trials.idx2], n_boot=cfg.bootstrap, seed=cfg.seed)
            for base, names in (("random_init", inits), ("mfcc", ["baseline/mfcc/embedding"]))
        }


def run(cfg: EvaluateConfig, embeddings_path: str | os.PathLike, trials_path: str | os.PathLike,
        metrics_path: str | os.PathLike, plots_dir: str | os.PathLike, train_dir: str | os.PathLike | None = None,
        model_dir: str | os.PathLike | None = None) -> str:
    """Evaluate one dataset: write ``plots_dir``/*, the details file (:func:`details_path`), then the headline
    ``metrics_path``; return the summary line. ``train_dir``/``model_dir``: see :func:`evaluate_dataset`."""
    from singer_ssl.core.io import write_json
    from singer_ssl.evaluation.channel import channel_line
    from singer_ssl.evaluation.report import write_plots, write_summary

    t0 = time.perf_counter()
    try:
        result, plot_data = evaluate_dataset(cfg, embeddings_path, trials_path, train_dir, model_dir)
    except NonFiniteError as e:  # no metric is decided on NaN/inf scores: name the file they come from
        raise NonFiniteError(e if str(embeddings_path) in str(e) else f"{embeddings_path}: {e}") from None
    write_plots(Path(plots_dir), plot_data, perplexity=cfg.tsne.perplexity, max_points=cfg.tsne.max_points,
                seed=cfg.seed, dataset=cfg.dataset)
    write_summary(Path(plots_dir) / "summary.png", result, cfg.dataset)
    from singer_ssl.evaluation.invariance import write_invariance_plot

    write_invariance_plot(Path(plots_dir) / "invariance.png", *plot_data["invariance"], dataset=cfg.dataset)
    write_json(details_path(metrics_path), result)
    write_json(Path(metrics_path), headline(result))
    e, r, m = result["embedding"], result["baselines"]["random_init"], result["baselines"]["mfcc"]
    return (
        f"{cfg.dataset}: EER {e['eer']:.2f}% [{e['eer_ci95'][0]:.2f}, {e['eer_ci95'][1]:.2f}] "
        f"minDCF {e['min_dcf']:.3f} MNR {e['mnr']:.2f}% probe acc {result['probe']['acc']:.3f} "
        f"(std {result['probe']['acc_std']:.3f}) | "
        f"random-init EER {r['eer']:.2f}% (std {r['eer_std']:.2f}, {r['inits']} inits) | "
        f"mfcc EER {m['eer']:.2f}% | {versus_line(result)}{backend_line(result)} | "
        f"{channel_line(result['channel'])} ({time.perf_counter() - t0:.1f} s)"
    )


def backend_line(details: dict[str, Any]) -> str:
    """e.g. `` | AS-norm EER 9.80% (S-norm 10.1%), actDCF 0.512 Cllr 0.61 (min 0.55)``; empty without the
    back-end blocks."""
    e = details["embedding"]
    if "score_norm" not in e:
        return ""
    sn = e["score_norm"]
    text = f" | AS-norm EER {sn['asnorm']['eer']:.2f}% (S-norm {sn['snorm']['eer']:.2f}%, raw {e['eer']:.2f}%)"
    cal = e.get("calibration")
    if cal:
        text += (f", calibrated {cal['score']}: actDCF {cal['act_dcf']:.3f} (minDCF {cal['min_dcf']:.3f}) "
                 f"Cllr {cal['cllr']:.3f} (min {cal['min_cllr']:.3f})")
    return text
