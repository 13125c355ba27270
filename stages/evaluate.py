"""Stage `evaluate`: metrics and plots for one test dataset from its stored embeddings.

    python stages/evaluate.py <test-dataset>

Reads data/embeddings/<dataset>.h5 and data/trials/<dataset>.txt; writes metrics/<dataset>.json
and plots/<dataset>/ (ROC/DET curves, score histogram, t-SNE, probe confusion matrix, per-singer
mean embeddings). Everything is computed and validated before the first file is written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from singer_ssl.core.params import load_params, test_dataset
from singer_ssl.evaluation.report import write_plots
from singer_ssl.evaluation.store import read_embeddings
from singer_ssl.evaluation.verification import check_labels, probe, trial_indices, verification
from singer_ssl.trials import read_trials


def evaluate_dataset(name: str, emb_path: Path, trials_path: Path, cfg: dict) -> tuple[dict, dict]:
    """Compute the metrics dict (DESIGN.md schema) and the plot data for one dataset."""
    es = read_embeddings(emb_path)
    es.check()
    labels, key1, key2 = read_trials(trials_path)
    labels = np.asarray(labels, dtype=int)
    check_labels(labels)
    idx1, idx2 = trial_indices(es, key1, key2)
    singers = np.asarray(es.singers)
    sources = np.asarray(es.sources)
    v = es.vectors

    out: dict = {}
    main_block, main_scores, (nq, nneg) = verification(v["embedding"], singers, labels, idx1, idx2, cfg)
    out["embedding"] = main_block
    out["projection"], _, _ = verification(v["projection"], singers, labels, idx1, idx2, cfg)
    main_probe = probe(v["embedding"], singers, sources, cfg)
    out["probe"] = {"acc": main_probe["acc"], "bacc": main_probe["bacc"]}
    out["baselines"] = {}
    for base in ("random_init", "mfcc"):
        vec = v[f"baseline/{base}/embedding"]
        block, _, _ = verification(vec, singers, labels, idx1, idx2, cfg)
        p = probe(vec, singers, sources, cfg)
        block["probe"] = {"acc": p["acc"], "bacc": p["bacc"]}
        out["baselines"][base] = block
    if "degraded_16k/embedding" in v:
        out["degraded_16k"] = {
            rep: verification(v[f"degraded_16k/{rep}"], singers, labels, idx1, idx2, cfg)[0]
            for rep in ("embedding", "projection")
        }
    out["counts"] = {
        "segments": len(es.keys), "singers": len(set(es.singers)), "trials": len(labels),
        "target_trials": int(labels.sum()), "mnr_queries": nq, "mnr_negatives": nneg,
        "probe_train": main_probe["n_train"], "probe_val": main_probe["n_val"], "probe_test": main_probe["n_test"],
    }
    plot_data = {"labels": labels, "scores": main_scores, "embedding": v["embedding"], "singers": singers,
                 "probe": main_probe}
    return out, plot_data


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python stages/evaluate.py <test-dataset>", file=sys.stderr)
        return 2
    name = argv[0]
    params = load_params()
    test_dataset(params, name, "evaluate")
    cfg = dict(params.get("evaluate", {}))
    t0 = time.perf_counter()
    result, plot_data = evaluate_dataset(
        name, Path("data/embeddings") / f"{name}.h5", Path("data/trials") / f"{name}.txt", cfg)
    write_plots(Path("plots") / name, plot_data, tsne_cfg=cfg.get("tsne", {}), seed=int(cfg.get("seed", 0)))
    from singer_ssl.core.io import write_json

    write_json(Path("metrics") / f"{name}.json", result)
    e, r, m = result["embedding"], result["baselines"]["random_init"], result["baselines"]["mfcc"]
    print(
        f"{name}: EER {e['eer']:.2f}% [{e['eer_ci95'][0]:.2f}, {e['eer_ci95'][1]:.2f}] "
        f"minDCF {e['min_dcf']:.3f} MNR {e['mnr']:.2f}% probe acc {result['probe']['acc']:.3f} | "
        f"random-init EER {r['eer']:.2f}% | mfcc EER {m['eer']:.2f}% ({time.perf_counter() - t0:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as err:  # ConfigError, bad trials/embeddings/model folder
        print(f"error: evaluate {' '.join(sys.argv[1:])}: {err}", file=sys.stderr)
        sys.exit(1)
