"""Linear-probe singer identification on frozen embeddings, split by recording.

Reference followed: BYOL-A's linear evaluation (Niizumi et al.; ``evaluate.py`` of github:nttcslab/byol-a,
which trains ``TorchMLPClassifier`` of github:daisukelab/general-learning ``MLP/torch_mlp_clf.py`` at commit
7b31d31, the version BYOL-A's README pins, with ``hidden_layer_sizes=()``). As there:

- standardisation: a StandardScaler fit on the training split only, applied to train, validation and test;
- classifier: one ``torch.nn.Linear`` layer (torch's default initialisation), cross-entropy loss;
- optimiser: Adam, lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-8 (the classifier's ``alpha``);
- mini-batches of ``min(200, n_train)``, reshuffled every epoch, the last one partial; at most 200 epochs;
- early stopping on validation accuracy with patience 10 (``n_iter_no_change``): an epoch whose accuracy is
  *greater than or equal to* the best so far (ties accepted, so the best epoch moves to the latest of a
  plateau) becomes the best and its weights are kept; training stops after 10 consecutive epochs that are not;
- the best epoch's weights are restored, then accuracy is measured on the test split;
- several runs are summarised by their mean and population standard deviation (``np.std``), as BYOL-A's
  ``do_eval`` does over its ``repeat`` runs (:func:`probe_runs`).

Where we deliberately differ:

- splits are by *recording* (``groups``: the manifest's ``recording``, e.g. a whole M4Singer song folder,
  by default the source file), stratified by singer (:func:`split_by_group`): all segments
  of a recording land in one split, so the probe measures singer identity across recordings rather than
  recording/channel memorisation. BYOL-A uses each dataset's fixed train/valid/test lists; here every run
  draws its own grouped split (BYOL-A's repeats only re-initialise the classifier);
- ``TorchMLPClassifier`` standardises a second time inside ``fit`` (a scaler refit on the already-standardised
  training split, a near-identity, applied to training and test inputs but not to validation inputs); we
  standardise once;
- we also report balanced accuracy (sklearn ``balanced_accuracy_score``, the mean per-singer recall);
- training runs on the CPU by default (BYOL-A uses CUDA) with our own seeded generator for the initialisation
  and batch order, so results are reproducible.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["SPLIT_NAMES", "EarlyStopping", "probe_runs", "probe_singer_id", "split_by_group"]

SPLIT_NAMES = ("train", "val", "test", "excluded")


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def split_by_group(
    singers: np.ndarray,
    groups: np.ndarray,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Assign every segment to train/val/test by source recording, stratified by singer.

    Each recording (group) belongs to the singer owning most of its segments (ties: the alphabetically first
    name), and all its segments go to one split. Per singer, with ``n`` recordings shuffled by
    ``np.random.default_rng(seed)`` (singers in sorted order):

    - ``n >= 3``: ``n_test = max(1, round(test_fraction * n))``, ``n_val = max(1, round(val_fraction * n))``
      (rounding half up), reduced (validation first) so at least one recording remains for training;
    - ``n == 2``: one recording for training, one for test; the singer has no validation recording;
    - ``n == 1``: the singer cannot be tested on an unseen recording and is excluded from the probe.

    Returns:
        ``(split, excluded_singers)``: ``split`` (N,) int8 codes indexing :data:`SPLIT_NAMES`
        (0 train, 1 val, 2 test, 3 excluded), and the sorted names of excluded singers.
    """
    singers = np.asarray(singers).astype(str)
    groups = np.asarray(groups).astype(str)
    if singers.ndim != 1 or singers.shape != groups.shape:
        raise ValueError(f"singers and groups must be 1-D of equal length; got {singers.shape} and {groups.shape}")
    if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) with sum < 1"
        )
    group_names, group_of = np.unique(groups, return_inverse=True)
    singer_names, singer_of = np.unique(singers, return_inverse=True)
    group_of, singer_of = group_of.reshape(-1), singer_of.reshape(-1)
    # owner singer of each group: the most frequent singer among its segments (np.argmax: first, i.e. sorted)
    joint = np.zeros((group_names.size, singer_names.size), dtype=np.int64)
    np.add.at(joint, (group_of, singer_of), 1)
    owner = joint.argmax(axis=1)

    rng = np.random.default_rng(seed)
    group_split = np.empty(group_names.size, dtype=np.int8)
    excluded: list[str] = []
    for s, name in enumerate(singer_names):
        mine = np.flatnonzero(owner == s)
        if mine.size == 0:
            continue
        mine = rng.permutation(mine)
        n = mine.size
        if n == 1:
            group_split[mine] = 3
            excluded.append(str(name))
            continue
        if n == 2:
            n_test, n_val = 1, 0
        else:
            n_test = max(1, _round_half_up(test_fraction * n))
            n_val = max(1, _round_half_up(val_fraction * n))
            while n_test + n_val > n - 1:
                if n_val > 1:
                    n_val -= 1
                else:
                    n_test -= 1
        group_split[mine[:n_test]] = 2
        group_split[mine[n_test : n_test + n_val]] = 1
        group_split[mine[n_test + n_val :]] = 0
    return group_split[group_of], excluded


class EarlyStopping:
    """BYOL-A's early-stopping rule on a validation accuracy (``EarlyStopping`` of ``torch_mlp_clf.py``).

    :meth:`update` is called once per epoch: an accuracy ``>=`` the best so far (ties accepted) makes that epoch
    the best and resets the count; otherwise the count of epochs without a new best grows, and training stops
    once it reaches ``patience``. Epochs are 1-based.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_acc = -1.0
        self.best_epoch = 0
        self.waited = 0

    def update(self, epoch: int, acc: float) -> tuple[bool, bool]:
        """Record ``acc`` of ``epoch``; returns ``(is_new_best, stop)``."""
        if acc >= self.best_acc:
            self.best_acc, self.best_epoch, self.waited = acc, epoch, 0
            return True, False
        self.waited += 1
        return False, self.waited >= self.patience


def _train_linear(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    seed: int,
    lr: float,
    weight_decay: float,
    max_epochs: int,
    patience: int,
    batch_size: int,
    device: Any,
):
    """Adam-trained linear layer with BYOL-A's early stopping (:class:`EarlyStopping`).

    Returns ``(model, epochs_run, best_epoch, best_val_acc, val_history)``; the model holds the best epoch's
    weights, ``val_history`` the validation accuracy of every epoch run.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    dim = x_train.shape[1]
    model = torch.nn.Linear(dim, n_classes)
    bound = 1.0 / np.sqrt(dim)  # torch's default Linear init, drawn from our own generator
    with torch.no_grad():
        model.weight.copy_(torch.rand(model.weight.shape, generator=gen) * 2 * bound - bound)
        model.bias.copy_(torch.rand(model.bias.shape, generator=gen) * 2 * bound - bound)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    xt = torch.as_tensor(x_train, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_train, dtype=torch.int64, device=device)
    xv = torch.as_tensor(x_val, dtype=torch.float32, device=device)
    yv = torch.as_tensor(y_val, dtype=torch.int64, device=device)
    batch = max(1, min(batch_size, xt.shape[0]))
    stopper = EarlyStopping(patience)
    best_state, history = None, []
    epoch = 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.randperm(xt.shape[0], generator=gen).to(device)
        for start in range(0, xt.shape[0], batch):
            take = order[start : start + batch]
            loss = torch.nn.functional.cross_entropy(model(xt[take]), yt[take])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(xv).argmax(dim=1) == yv).float().mean())
        history.append(acc)
        is_best, stop = stopper.update(epoch, acc)
        if is_best:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stop:
            break
    model.load_state_dict(best_state)
    model.eval()
    return model, epoch, stopper.best_epoch, stopper.best_acc, history


def probe_singer_id(
    emb: np.ndarray,
    singers: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    lr: float = 1e-3,
    weight_decay: float = 1e-8,
    max_epochs: int = 200,
    patience: int = 10,
    batch_size: int = 200,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    device: Any = "cpu",
) -> dict[str, Any]:
    """Singer identification accuracy of a linear classifier on frozen embeddings (closed set, unseen recordings).

    Args:
        emb: (N, D) frozen embeddings of segments. singers: (N,) singer labels. groups: (N,) recording ids
            (manifest ``recording``, stored as the embeddings' ``source``); no recording is split across
            train/val/test (:func:`split_by_group`).
        seed: seeds the split, the weight initialisation and the batch order; the result is deterministic for a
            seed on a given device.
        lr, weight_decay, max_epochs, patience, batch_size: Adam / early-stopping settings (defaults: BYOL-A's,
            see the module docstring). Mini-batches of ``min(batch_size, n_train)``, reshuffled each epoch;
            training stops after ``patience`` consecutive epochs whose validation accuracy is below the best
            (an equal accuracy is a new best), and the best epoch's weights are restored.
        val_fraction, test_fraction: share of each singer's recordings for validation and test.
        device: torch device for training (``"cpu"``, ``"cuda"``, ``"auto"`` = cuda when available). CPU is the
            default: the probe is small, and CPU results are reproducible across machines.

    Returns:
        dict with ``acc`` and ``bacc`` (test accuracy and balanced accuracy, fractions in [0, 1]), ``n_train``,
        ``n_val``, ``n_test`` (segments), ``n_classes``, ``confusion`` (``{"labels": [...], "matrix": [[...]]}``,
        rows = true singer), ``y_true``/``y_pred`` (test singer names), ``val_acc`` (best), ``epochs`` (run),
        ``best_epoch``, ``val_history`` (validation accuracy of each epoch run), ``excluded_singers`` (one
        recording only), ``split`` ((N,) array of "train"/"val"/"test"/"excluded"),
        ``scaler_mean``/``scaler_scale`` ((D,) StandardScaler statistics of the training split).

    Raises:
        ValueError: NaN/inf embeddings, mismatched lengths, fewer than two singers with at least two recordings,
            or no singer with the three recordings needed for a validation split.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix
    from sklearn.preprocessing import StandardScaler

    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array (N, D); got shape {emb.shape}")
    singers = np.asarray(singers).astype(str)
    groups = np.asarray(groups).astype(str)
    if singers.shape != (emb.shape[0],) or groups.shape != (emb.shape[0],):
        raise ValueError(
            f"singers {singers.shape} and groups {groups.shape} must both have shape ({emb.shape[0]},)"
        )
    bad = ~np.isfinite(emb)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"embeddings contain {int(bad.sum())} NaN/inf values in {rows.size} rows (first rows: {rows[:10].tolist()})"
        )
    if max_epochs < 1 or patience < 1 or batch_size < 1:
        raise ValueError(f"max_epochs ({max_epochs}), patience ({patience}), batch_size ({batch_size}) must be >= 1")

    split, excluded = split_by_group(singers, groups, val_fraction, test_fraction, seed)
    classes = sorted(set(singers[split == 0].tolist()))
    # segments of a singer with no training segment (a minority voice in another singer's recording) cannot be
    # classified: exclude them too.
    split[(split != 3) & ~np.isin(singers, classes)] = 3
    train, val, test = split == 0, split == 1, split == 2
    n_all = len(set(singers.tolist()))
    if len(classes) < 2:
        raise ValueError(
            f"linear probe needs at least 2 singers with 2 or more source recordings; got {len(classes)} of "
            f"{n_all} singers ({len(excluded)} have a single recording)"
        )
    if not val.any():
        raise ValueError(
            "too few recordings to split for the linear probe: no singer has the 3 source recordings needed for "
            f"train, validation and test ({n_all} singers, {len(set(groups.tolist()))} recordings)"
        )
    code = {name: i for i, name in enumerate(classes)}
    y = np.array([code.get(s, -1) for s in singers.tolist()], dtype=np.int64)

    scaler = StandardScaler().fit(emb[train].astype(np.float64))
    x = scaler.transform(emb.astype(np.float64)).astype(np.float32)
    import torch

    from singer_ssl.core.device import resolve_device

    device = resolve_device(device)
    # The probe's matrices are tiny: on CPU one thread is fastest and immune to oversubscription (other jobs
    # on the same cores make torch's thread pool spin); the caller's setting is restored afterwards.
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        model, epochs, best_epoch, val_acc, history = _train_linear(
            x[train], y[train], x[val], y[val], len(classes), seed, lr, weight_decay, max_epochs, patience,
            batch_size, device,
        )
        with torch.no_grad():
            pred = model(torch.as_tensor(x[test], device=device)).argmax(dim=1).cpu().numpy()
    finally:
        torch.set_num_threads(threads)
    y_true = y[test]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": fine for a closed-set probe
        bacc = float(balanced_accuracy_score(y_true, pred))
    return {
        "acc": float(np.mean(pred == y_true)),
        "bacc": bacc,
        "n_train": int(train.sum()),
        "n_val": int(val.sum()),
        "n_test": int(test.sum()),
        "n_classes": len(classes),
        "confusion": {
            "labels": classes,
            "matrix": confusion_matrix(y_true, pred, labels=np.arange(len(classes))).tolist(),
        },
        "y_true": [classes[i] for i in y_true],
        "y_pred": [classes[i] for i in pred],
        "val_acc": float(val_acc),
        "epochs": int(epochs),
        "best_epoch": int(best_epoch),
        "val_history": history,
        "excluded_singers": excluded,
        "split": np.asarray(SPLIT_NAMES)[split],
        "scaler_mean": scaler.mean_.copy(),
        "scaler_scale": scaler.scale_.copy(),
    }


def probe_runs(emb: np.ndarray, singers: np.ndarray, groups: np.ndarray, runs: int = 5, seed: int = 0,
               **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`probe_singer_id` ``runs`` times, run ``i`` with seed ``seed + i`` (its own grouped split, weight
    initialisation and batch order; run 0 is exactly ``probe_singer_id(..., seed=seed)``).

    Returns ``(summary, first)``: ``summary`` = ``{acc, acc_std, bacc, bacc_std, runs}``, the mean and the
    population standard deviation (``np.std``, as BYOL-A's ``do_eval``) over runs of the test accuracy and
    balanced accuracy (fractions); ``first`` = the full result of run 0 (for plots and split counts).
    """
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise ValueError(f"runs must be an integer >= 1, got {runs!r}")
    results = [probe_singer_id(emb, singers, groups, seed=seed + i, **kwargs) for i in range(int(runs))]
    acc = np.array([r["acc"] for r in results])
    bacc = np.array([r["bacc"] for r in results])
    summary = {"acc": float(acc.mean()), "acc_std": float(acc.std()), "bacc": float(bacc.mean()),
               "bacc_std": float(bacc.std()), "runs": int(runs)}
    return summary, results[0]
