"""In-batch training monitors on the projections (Torres et al.'s callbacks, ``callbacks/evaluation.py``).

For a batch of two views' projections z1, z2 (B, D):

- **in-batch EER** (%): trial scores are cosine similarities; positives ``(z1_i, z2_i)``, negatives
  ``(z1_i, z2_{(i + shift) mod B})`` (Torres et al. 2023 rolls the batch by one; the trainer passes
  ``shift = utterances`` for singer-grouped GE2E batches so that negatives are other singers).
  EER follows SUPERB / Torres et al. 2023: ``roc_curve`` then the root of ``1 - x - tpr(x)`` with linear
  interpolation of the ROC (:func:`eer`).
- **alignment** (Wang & Isola 2020, α = 2): ``mean_i ||ẑ1_i - ẑ2_i||²``.
- **uniformity** (t = 2): ``log mean_{i<j} exp(-2 ||ẑ_i - ẑ_j||²)``, averaged over the two views.

ẑ = L2-normalised z. All functions take torch tensors (any device) and return Python floats, except
:func:`validation_threshold` (numpy): not a batch monitor but the EER threshold of all pairs of the
held-out validation singers' segments at the end of training (the model folder's ``threshold.json``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from singer_ssl.evaluation.metrics import eer


def eer_percent(labels: np.ndarray, scores: np.ndarray) -> float:
    """EER (%) by :func:`singer_ssl.evaluation.metrics.eer` (SUPERB convention); ``nan`` when it is undefined
    (one class only, non-finite scores)."""
    try:
        return float(eer(labels, scores)[0])
    except ValueError:
        return float("nan")


def pair_scores(z1: torch.Tensor, z2: torch.Tensor, shift: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(labels, cosine scores) of the in-batch trials: B positives then B rolled negatives."""
    a = F.normalize(z1.detach().float(), dim=1)
    b = F.normalize(z2.detach().float(), dim=1)
    pos = (a * b).sum(1)
    neg = (a * torch.roll(b, shifts=-int(shift), dims=0)).sum(1)
    scores = torch.cat([pos, neg]).cpu().numpy()
    labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    return labels, scores


def alignment(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Mean squared distance between the normalised positive pairs (α = 2)."""
    a = F.normalize(z1.detach().float(), dim=1)
    b = F.normalize(z2.detach().float(), dim=1)
    return float((a - b).pow(2).sum(1).mean())


def uniformity(z1: torch.Tensor, z2: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola's uniformity ``log mean exp(-t ||ẑ_i - ẑ_j||²)`` over pairs, mean of both views."""
    values = []
    for z in (z1, z2):
        u = F.normalize(z.detach().float(), dim=1)
        if len(u) < 2:
            return float("nan")
        values.append(float(torch.pdist(u, p=2).pow(2).mul(-t).exp().mean().log()))
    return float(np.mean(values))


def batch_monitors(z1: torch.Tensor, z2: torch.Tensor, shift: int = 1) -> dict[str, float]:
    """``{"eer": %, "alignment": x, "uniformity": x}`` for one batch of projections."""
    labels, scores = pair_scores(z1, z2, shift)
    return {"eer": eer_percent(labels, scores), "alignment": alignment(z1, z2), "uniformity": uniformity(z1, z2)}


def validation_threshold(embeddings: np.ndarray, singers: np.ndarray) -> dict[str, float | int] | None:
    """The EER operating point of all pairs of held-out segments, for ``singer-ssl verify``.

    Args:
        embeddings: (N, D) encoder embeddings of the validation singers' segments (one window each, as
            the pipeline embeds them). singers: (N,) singer labels.

    Returns:
        ``{eer_threshold, eer (%), n_segments, n_singers, n_trials, n_target_trials, calibration}``: every pair
        ``i < j`` is a trial (target = same singer), scored by cosine similarity; EER and threshold by
        :func:`singer_ssl.evaluation.metrics.eer`; ``calibration`` ``{scale, offset}`` maps a cosine score to
        a log-likelihood ratio (logistic regression on the same trials,
        :func:`singer_ssl.evaluation.backend.fit_calibration`). ``None`` when there are fewer than two singers or
        no target pair (no threshold can be defined).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    singers = np.asarray(singers)
    i, j = np.triu_indices(len(x), k=1)
    labels = (singers[i] == singers[j]).astype(int)
    if len(np.unique(singers)) < 2 or not labels.any():
        return None
    scores = np.einsum("nd,nd->n", x[i], x[j])
    rate, threshold = eer(labels, scores)
    from singer_ssl.evaluation.backend import fit_calibration

    return {"eer_threshold": float(threshold), "eer": float(rate), "n_segments": int(len(x)),
            "n_singers": int(len(np.unique(singers))), "n_trials": int(len(labels)),
            "n_target_trials": int(labels.sum()), "calibration": fit_calibration(scores, labels).to_dict()}


def normalised_calibrations(embeddings: np.ndarray, singers: np.ndarray, cohort: np.ndarray, mean: np.ndarray,
                            top_n: int) -> dict[str, dict[str, float]]:
    """``{snorm: {scale, offset, top_n}, asnorm: {...}}``: the calibration (as in :func:`validation_threshold`) of
    every validation pair's S-norm and AS-norm score against the training singers' ``cohort`` (C, D) with the
    training ``mean`` (D,) subtracted (:func:`singer_ssl.evaluation.backend.normalize_scores`)."""
    from singer_ssl.evaluation.backend import fit_calibration, normalize_scores

    singers = np.asarray(singers)
    i, j = np.triu_indices(len(embeddings), k=1)
    labels = (singers[i] == singers[j]).astype(int)
    return {m: {**fit_calibration(normalize_scores(embeddings, i, j, cohort, mean, m, top_n), labels).to_dict(),
                "top_n": int(min(top_n, len(cohort)))} for m in ("snorm", "asnorm")}


def progress_line(epoch: int, n_epochs: int, step: int, total_steps: int, train_loss: float,
                  val: dict[str, float] | None, seconds: float, best: dict | None = None) -> str:
    """One progress line per epoch (the train stage prints it after each validation), e.g.::

        epoch 3/10 (step 120/400): train loss 2.3012 | val loss 2.4100, val in-batch EER 31.2% | best val_loss 2.4100
        (epoch 3) | 42 s

    ``train_loss``: mean training loss over the epoch's steps; ``val``: the validation metrics
    (``loss``, ``eer`` = in-batch EER %, see :func:`batch_monitors`), None without validation;
    ``best``: the best epoch so far (``monitor``, ``value``, ``epoch``); ``seconds`` since the start.
    """
    parts = [f"epoch {epoch}/{n_epochs} (step {step}/{total_steps}): train loss {train_loss:.4f}"]
    if val:
        parts.append(f"val loss {val['loss']:.4f}, val in-batch EER {val['eer']:.1f}%")
    if best is not None:
        parts.append(f"best {best['monitor']} {best['value']:.4f} (epoch {best['epoch']})")
    parts.append(f"{seconds:.0f} s")
    return " | ".join(parts)


def step_line(step: int, total_steps: int, loss: float, in_batch_eer: float, seconds: float,
              seconds_per_step: float) -> str:
    """One progress line per log interval (the train stage prints it when stderr is not a terminal, where
    no progress bar is drawn), e.g.::

        step 10/200: loss 2.3012, in-batch EER 31.2% | 42 s, 1.8 s/step, ~6 min left

    ``loss`` and ``in_batch_eer`` (%) of the batch of ``step`` (see :func:`batch_monitors`); ``seconds`` since
    the start of the stage; ``seconds_per_step`` measured over this run's steps so far, which gives the
    estimate of the time left for the ``total_steps - step`` remaining steps.
    """
    left = max(total_steps - step, 0) * seconds_per_step
    left_txt = f"~{left / 60:.0f} min left" if left >= 90 else f"~{left:.0f} s left"
    return (f"step {step}/{total_steps}: loss {loss:.4f}, in-batch EER {in_batch_eer:.1f}% | {seconds:.0f} s, "
            f"{seconds_per_step:.2g} s/step, {left_txt}")
