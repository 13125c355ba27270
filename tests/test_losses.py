"""Tests of the SSL objectives against independent loop-based numpy re-derivations and closed forms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from singer_ssl import losses
from singer_ssl.core.errors import ConfigError
from singer_ssl.losses import distributed
from singer_ssl.losses.ge2e import ge2e_similarity
from singer_ssl.losses.momentum import ema_update, tau_schedule
from singer_ssl.losses.semisupcon import select_labelled, semisup_batch_counts

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers


def views(b: int = 6, d: int = 5, seed: int = 0, normalise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g)
    z2 = z1 + 0.7 * torch.randn(b, d, generator=g)
    if normalise:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return z1, z2


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / math.sqrt(sum(x * x for x in v))


def cos(a, b) -> float:
    a, b = unit(a), unit(b)
    return float(sum(x * y for x, y in zip(a, b)))


def log_sum_exp(values) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


# ----------------------------------------------------------------------------- loop references


def ref_rolled(z1, z2, tau, n_negatives, decouple) -> float:
    """Torres et al. 2023 contrastive_loss: z2 rolled k times puts z2[i-k] on row i."""
    n = len(z1)
    n_rolls = min(n - 1, n_negatives)
    total = 0.0
    for i in range(n):
        pos = cos(z1[i], z2[i]) / tau
        terms = [cos(z1[i], z2[(i - k) % n]) / tau for k in range(1, n_rolls + 1)]
        if not decouple:
            terms.append(pos)
        total += -pos + log_sum_exp(terms)
    return total / n


def ref_supcon(z1, z2, labels, tau, eps: float = 0.0) -> float:
    """Khosla L_out over 2N views, positives = other view or same non-negative label; ``eps > 0``: SemiSupCon's
    SSNTXent, -log(p + eps) per positive pair (p = the pair's softmax probability)."""
    n = len(z1)
    u = [unit(v) for v in list(z1) + list(z2)]
    item = list(range(n)) * 2
    y = None if labels is None else list(labels) * 2
    total = 0.0
    for i in range(2 * n):
        denom = log_sum_exp([float(np.dot(u[i], u[a])) / tau for a in range(2 * n) if a != i])
        pos = [
            p
            for p in range(2 * n)
            if p != i and (item[p] == item[i] or (y is not None and y[i] >= 0 and y[p] == y[i]))
        ]
        total += -sum(np.log(np.exp(float(np.dot(u[i], u[p])) / tau - denom) + eps) for p in pos) / len(pos)
    return total / (2 * n)


def ref_ntxent(z1, z2, tau) -> float:
    n = len(z1)
    u = [unit(v) for v in list(z1) + list(z2)]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        denom = [float(np.dot(u[i], u[k])) / tau for k in range(2 * n) if k != i]
        total += -float(np.dot(u[i], u[j])) / tau + log_sum_exp(denom)
    return total / (2 * n)


def ref_variance(z, gamma, eps) -> float:
    n, d = z.shape
    out = 0.0
    for k in range(d):
        mean = sum(z[i, k] for i in range(n)) / n
        var = sum((z[i, k] - mean) ** 2 for i in range(n)) / (n - 1)
        out += max(0.0, gamma - math.sqrt(var + eps))
    return out / d


def ref_covariance(z) -> float:
    n, d = z.shape
    means = [sum(z[i, k] for i in range(n)) / n for k in range(d)]
    out = 0.0
    for a in range(d):
        for b in range(d):
            if a != b:
                c = sum((z[i, a] - means[a]) * (z[i, b] - means[b]) for i in range(n)) / (n - 1)
                out += c * c
    return out / d


def ref_vicreg(z1, z2, inv_w, var_w, cov_w, gamma, eps) -> float:
    n, d = z1.shape
    mse = sum((z1[i, k] - z2[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)
    var = (ref_variance(z1, gamma, eps) + ref_variance(z2, gamma, eps)) / 2
    cov = ref_covariance(z1) + ref_covariance(z2)
    return inv_w * mse + var_w * var + cov_w * cov


def ref_uniformity(z1, z2, align_w, unif_w, alpha, t) -> float:
    a = [unit(v) for v in z1]
    b = [unit(v) for v in z2]
    n = len(a)
    align = sum(math.sqrt(sum((x - y) ** 2 for x, y in zip(a[i], b[i]))) ** alpha for i in range(n)) / n

    def unif(x):
        vals = [
            math.exp(-t * sum((p - q) ** 2 for p, q in zip(x[i], x[j])))
            for i in range(n)
            for j in range(i + 1, n)
        ]
        return math.log(sum(vals) / len(vals))

    return align_w * align + unif_w * (unif(a) + unif(b)) / 2


def ref_ge2e(e, labels, w, b) -> tuple[np.ndarray, float]:
    """GE2E similarity matrix and softmax loss, by loops (columns = sorted labels)."""
    classes = sorted(set(labels))
    n = len(e)
    members = {c: [i for i in range(n) if labels[i] == c] for c in classes}
    sim = np.zeros((n, len(classes)))
    for i in range(n):
        for k, c in enumerate(classes):
            idx = [m for m in members[c] if not (c == labels[i] and m == i)]
            centroid = [sum(unit(e[m])[dd] for m in idx) / len(idx) for dd in range(len(e[i]))]
            sim[i, k] = w * cos(e[i], centroid) + b
    loss = 0.0
    for i in range(n):
        own = classes.index(labels[i])
        loss += -sim[i, own] + log_sum_exp(list(sim[i]))
    return sim, loss / n


def ref_cola(z1, z2, W) -> float:
    n, d = z1.shape
    total = 0.0
    for i in range(n):
        logits = [
            sum(z1[i, a] * W[a, c] * z2[j, c] for a in range(d) for c in range(d)) for j in range(n)
        ]
        total += -logits[i] + log_sum_exp(logits)
    return total / n


# ----------------------------------------------------------------------------- registry


def test_names_and_flags():
    assert losses.NAMES == (
        "contrastive", "ntxent", "dcl", "contrastive-vc", "uniformity", "vicreg",
        "byol", "cola", "ge2e", "supcon", "semisupcon",
    )  # fmt: skip
    labelled = {n for n in losses.NAMES if losses.get(n).needs_labels}
    assert labelled == {"ge2e", "supcon", "semisupcon"}
    assert {n for n in losses.NAMES if losses.get(n).needs_teacher} == {"byol"}
    assert {n for n in losses.NAMES if losses.get(n).momentum_tau is not None} == {"byol"}


def test_get_errors_name_the_culprit():
    with pytest.raises(ConfigError, match="unknown loss 'simclr'.*ntxent"):
        losses.get("simclr")
    with pytest.raises(ConfigError, match="'temprature'.*accepted: temperature"):
        losses.get("ntxent", temprature=0.1)
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        losses.get("ntxent", temperature=0)
    with pytest.raises(ConfigError, match="n_negatives"):
        losses.get("dcl", n_negatives=0)


def test_get_drops_batch_and_routes_dim():
    assert losses.get("ge2e", w_init=3.0, batch={"singers": 2, "utterances": 2}).w.item() == 3.0
    assert isinstance(losses.get("ntxent", dim=64), nn.Module)  # dim ignored where unused
    assert losses.get("cola", dim=7).W.shape == (7, 7)
    assert losses.get("byol", dim=9).predictor[0].in_features == 9


def test_spec_resolves_the_declared_sampler_options():
    assert losses.spec("ntxent", {"temperature": 0.2}).batch == {}
    assert losses.spec("ge2e", {"batch": {"singers": 3}}).batch == {"singers": 3, "utterances": 4}
    assert losses.spec("semisupcon", {}).batch == {"p_s": 1.0, "b_s": 0.5}
    assert [losses.spec(n).sampler for n in ("ntxent", "ge2e", "semisupcon")] == ["random", "singers", "semisupervised"]
    with pytest.raises(ConfigError, match="'speakers'.*singers, utterances"):
        losses.spec("ge2e", {"batch": {"speakers": 3}})
    with pytest.raises(ConfigError, match="takes no sampler options"):
        losses.spec("vicreg", {"batch": {"singers": 3}})
    with pytest.raises(ConfigError, match="b_s"):
        losses.spec("semisupcon", {"batch": {"b_s": 1.5}})
    with pytest.raises(ConfigError, match="losses.ge2e.batch: .*utterances"):
        losses.spec("ge2e", {"batch": {"utterances": 1}})


def test_objectives_raise_value_error_and_the_registry_names_the_section():
    """Objectives are torch-only (plain ValueError); the registry turns it into a one-line ConfigError
    naming losses.<name> and the key."""
    from singer_ssl.losses.byol import BYOLLoss
    from singer_ssl.losses.ntxent import NTXentLoss

    for build in (lambda: NTXentLoss(temperature=-1), lambda: BYOLLoss(tau_base=2)):
        with pytest.raises(ValueError) as err:
            build()
        assert not isinstance(err.value, ConfigError)
    with pytest.raises(ConfigError, match=r"^losses\.ntxent: temperature must be > 0, got -1$"):
        losses.get("ntxent", temperature=-1)
    with pytest.raises(ConfigError, match=r"^losses\.byol: tau_base must be in \[0, 1\], got 2\.0$"):
        losses.spec("byol", {"tau_base": 2}).build(dim=8)
    spec = losses.spec("byol", {"tau_base": 2})  # values are checked when built, once
    assert spec.kwargs == {"tau_base": 2} and spec.selection_metric == "val_eer"
    with pytest.raises(ConfigError, match=r"^losses\.ge2e: w_init must be > 0"):
        losses.get("ge2e", w_init=0)


def test_params_yaml_builds_every_objective():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    section = params["losses"]
    assert set(section) == set(losses.NAMES)
    for name, kwargs in section.items():
        obj = losses.get(name, dim=params["head"]["dim"], **(kwargs or {}))
        losses.spec(name, kwargs)
        # the yaml states the published defaults: same values as the constructor defaults
        default = losses.get(name, dim=params["head"]["dim"])
        for key, value in (kwargs or {}).items():
            if key != "batch":
                assert getattr(obj, key, value) == getattr(default, key, value), (name, key)


# ----------------------------------------------------------------------------- contrastive family


@pytest.mark.parametrize("n_negatives", [2, 250])
def test_contrastive_and_dcl_match_loops(n_negatives):
    z1, z2 = views(b=6, normalise=False)
    for name, decouple in (("contrastive", False), ("dcl", True)):
        got = losses.get(name, temperature=0.2, n_negatives=n_negatives)(z1, z2).item()
        want = ref_rolled(np64(z1), np64(z2), 0.2, n_negatives, decouple)
        assert got == pytest.approx(want, rel=1e-5), name


def test_contrastive_is_one_way():
    z1, z2 = views(b=5, seed=3)
    loss = losses.get("contrastive")
    assert loss(z1, z2).item() != pytest.approx(loss(z2, z1).item(), rel=1e-3)


def test_contrastive_orthogonal_closed_form():
    b, tau = 4, 0.2
    z = torch.eye(b, 6)[:b]  # identical views, orthogonal items: s_pos = 1/τ, s_neg = 0
    got_c = losses.get("contrastive", temperature=tau)(z, z.clone()).item()
    got_d = losses.get("dcl", temperature=tau)(z, z.clone()).item()
    assert got_c == pytest.approx(-1 / tau + math.log(math.exp(1 / tau) + (b - 1)), abs=1e-6)
    assert got_d == pytest.approx(-1 / tau + math.log(b - 1), abs=1e-6)
    got_n = losses.get("ntxent", temperature=tau)(z, z.clone()).item()
    assert got_n == pytest.approx(-1 / tau + math.log(math.exp(1 / tau) + 2 * b - 2), abs=1e-6)


def test_ntxent_matches_loops():
    z1, z2 = views(b=5, normalise=False, seed=1)
    got = losses.get("ntxent", temperature=0.3)(z1, z2).item()
    assert got == pytest.approx(ref_ntxent(np64(z1), np64(z2), 0.3), rel=1e-5)


def test_supcon_matches_loops_and_reduces_to_ntxent():
    z1, z2 = views(b=6, seed=2)
    labels = torch.tensor([0, 1, 0, 2, 1, -1])
    got = losses.get("supcon", temperature=0.1)(z1, z2, labels).item()
    assert got == pytest.approx(ref_supcon(np64(z1), np64(z2), labels.tolist(), 0.1), rel=1e-5)
    unlabelled = losses.get("supcon", temperature=0.1)(z1, z2).item()
    assert unlabelled == pytest.approx(losses.get("ntxent", temperature=0.1)(z1, z2).item(), rel=1e-6)
    all_minus_one = losses.get("semisupcon", temperature=0.1)(z1, z2, torch.full((6,), -1)).item()
    assert all_minus_one == pytest.approx(ref_supcon(np64(z1), np64(z2), None, 0.1, eps=1e-6), rel=1e-5)
    assert got != pytest.approx(unlabelled, rel=1e-3)  # the labels do change the objective


def test_semisupcon_unlabelled_items_only_pair_with_their_view():
    z1, z2 = views(b=6, seed=4)
    labels = [3, 3, -1, -1, 5, 5]
    got = losses.get("semisupcon")(z1, z2, labels).item()
    assert got == pytest.approx(ref_supcon(np64(z1), np64(z2), labels, 0.1, eps=1e-6), rel=1e-5)
    # two unlabelled items are *not* positives of each other although both are -1
    distinct = ref_supcon(np64(z1), np64(z2), [3, 3, 10, 11, 5, 5], 0.1, eps=1e-6)
    assert got == pytest.approx(distinct, rel=1e-6)


def test_labels_validation():
    z1, z2 = views(b=4)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        losses.get("supcon")(z1, z2, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="integer singer ids"):
        losses.get("supcon")(z1, z2, ["a", "b", "a", "b"])
    with pytest.raises(ValueError, match="integer singer ids"):
        losses.get("supcon")(z1, z2, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    as_array = losses.get("supcon")(z1, z2, np.array([0, 1, 0, 1])).item()
    assert as_array == pytest.approx(losses.get("supcon")(z1, z2, [0, 1, 0, 1]).item())
    with pytest.raises(ValueError, match="shape"):
        losses.get("ntxent")(z1, z2[:3])
    with pytest.raises(ValueError, match="at least 2"):
        losses.get("vicreg")(z1[:1], z2[:1])


# ----------------------------------------------------------------------------- VICReg and friends


def test_vicreg_matches_loops():
    z1, z2 = views(b=7, d=4, seed=5, normalise=False)
    got = losses.get("vicreg", gamma=None, eps=1e-8)(z1, z2).item()
    want = ref_vicreg(np64(z1), np64(z2), 25, 25, 100, 1 / math.sqrt(4), 1e-8)
    assert got == pytest.approx(want, rel=1e-5)
    got_orig = losses.get("vicreg", inv_weight=25, var_weight=25, cov_weight=1, gamma=1.0, eps=1e-4)(z1, z2)
    assert got_orig.item() == pytest.approx(ref_vicreg(np64(z1), np64(z2), 25, 25, 1, 1.0, 1e-4), rel=1e-5)


def test_vicreg_constant_embeddings_give_gamma_times_weight():
    d = 16
    z = torch.full((5, d), 0.25)
    gamma = 1 / math.sqrt(d)
    got = losses.get("vicreg", eps=1e-8)(z, z.clone()).item()  # invariance 0, covariance 0
    assert got == pytest.approx(25 * (gamma - math.sqrt(1e-8)), rel=1e-6)
    got_vc = losses.get("vicreg", inv_weight=0, cov_weight=0, var_weight=2.0, gamma=0.5, eps=1e-8)(z, z)
    assert got_vc.item() == pytest.approx(2.0 * (0.5 - 1e-4), rel=1e-6)


def test_vicreg_identical_views_zero_invariance():
    z1, _ = views(b=6, d=4)
    only_inv = losses.get("vicreg", var_weight=0, cov_weight=0)
    assert only_inv(z1, z1.clone()).item() == pytest.approx(0.0, abs=1e-12)


def test_contrastive_vc_is_dcl_plus_regularisers():
    z1, z2 = views(b=6, d=4, seed=6)
    got = losses.get("contrastive-vc", n_negatives=3)(z1, z2).item()
    a, b = np64(z1), np64(z2)
    gamma = 1 / math.sqrt(4)
    want = (
        ref_rolled(a, b, 0.2, 3, decouple=True)
        + 25 * (ref_variance(a, gamma, 1e-8) + ref_variance(b, gamma, 1e-8)) / 2
        + 100 * (ref_covariance(a) + ref_covariance(b))
    )
    assert got == pytest.approx(want, rel=1e-5)


def test_uniformity_matches_loops():
    z1, z2 = views(b=6, d=3, seed=7, normalise=False)  # normalised inside
    got = losses.get("uniformity")(z1, z2).item()
    assert got == pytest.approx(ref_uniformity(np64(z1), np64(z2), 1, 1, 2, 2), rel=1e-5)
    got = losses.get("uniformity", align_weight=0.25, unif_weight=0.5, alpha=1.0, t=1.0)(z1, z2).item()
    assert got == pytest.approx(ref_uniformity(np64(z1), np64(z2), 0.25, 0.5, 1, 1), rel=1e-5)


def test_uniformity_closed_forms():
    e = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])  # antipodal: ‖x_i - x_j‖² = 4
    assert losses.get("uniformity")(e, e.clone()).item() == pytest.approx(-2 * 4, abs=1e-6)
    ortho = torch.eye(3)  # all pairwise squared distances 2, identical views: align 0
    assert losses.get("uniformity", t=2.0)(ortho, ortho.clone()).item() == pytest.approx(-4.0, abs=1e-6)


# ----------------------------------------------------------------------------- BYOL


def test_byol_loss_matches_loops_and_two_minus_two_cos():
    z1, z2 = views(b=5, d=4, seed=8, normalise=False)
    t1, t2 = views(b=5, d=4, seed=9, normalise=False)
    loss = losses.get("byol", dim=4)
    loss.predictor = nn.Identity()  # isolate the loss formula from the predictor
    got = loss(z1, z2, targets=(t1, t2)).item()

    def mse(q, t):
        q, t = [unit(v) for v in q], [unit(v) for v in t]
        return sum((q[i][k] - t[i][k]) ** 2 for i in range(len(q)) for k in range(len(q[0]))) / (len(q) * 4)

    want = (mse(np64(z1), np64(t2)) + mse(np64(z2), np64(t1))) / 2
    assert got == pytest.approx(want, rel=1e-5)
    mean_cos = [np.mean([cos(q, t) for q, t in zip(np64(a), np64(b))]) for a, b in ((z1, t2), (z2, t1))]
    assert got == pytest.approx(np.mean([(2 - 2 * c) / 4 for c in mean_cos]), rel=1e-5)


def test_byol_predictor_and_requirements():
    loss = losses.get("byol", dim=8, predictor_hidden=32)
    kinds = [type(m) for m in loss.predictor]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert loss.predictor[0].bias is None and loss.predictor[3].bias is not None
    assert (loss.predictor[0].out_features, loss.predictor[3].out_features) == (32, 8)
    assert loss.tau_base == 0.99
    z1, z2 = views(b=4, d=8)
    with pytest.raises(ValueError, match="targets"):
        loss(z1, z2)
    with pytest.raises(ValueError, match="dim=8"):
        loss(*views(b=4, d=5), targets=views(b=4, d=5))
    out = loss(z1.requires_grad_(), z2, targets=(z2, z1))
    out.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loss.parameters())


def test_tau_schedule_values():
    assert tau_schedule(0, 100, 0.99) == pytest.approx(0.99)
    assert tau_schedule(100, 100, 0.99) == pytest.approx(1.0)
    assert tau_schedule(50, 100, 0.99) == pytest.approx(0.995)
    assert tau_schedule(25, 100, 0.9) == pytest.approx(1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2)
    assert tau_schedule(500, 100, 0.99) == 1.0
    with pytest.raises(ValueError):
        tau_schedule(0, 0)


def test_ema_update_arithmetic():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    teacher = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    student[1].running_mean.fill_(4.0)
    student[1].num_batches_tracked.fill_(7)
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    before_s = {k: v.clone() for k, v in student.state_dict().items()}
    ema_update(teacher, student, 0.9)
    after = teacher.state_dict()
    for k in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        want = 0.9 * before_t[k].numpy() + 0.1 * before_s[k].numpy()
        np.testing.assert_allclose(after[k].numpy(), want, rtol=1e-6)
    assert after["1.num_batches_tracked"].item() == 7
    for k, v in student.state_dict().items():  # the student is untouched
        assert torch.equal(v, before_s[k])
    with pytest.raises(ValueError, match="differ"):
        ema_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2)), 0.9)


# ----------------------------------------------------------------------------- COLA


def test_cola_matches_loops():
    z1, z2 = views(b=5, d=3, seed=10)
    loss = losses.get("cola", dim=3)
    got = loss(z1, z2).item()
    assert got == pytest.approx(ref_cola(np64(z1), np64(z2), np64(loss.W)), rel=1e-5)
    assert loss.W.std().item() == pytest.approx(0.05, rel=0.9)  # Keras random_normal scale
    with torch.no_grad():
        loss.W.copy_(torch.eye(3) * 5.0)
    z = torch.eye(3)  # W = 5·I, orthonormal items: s_ii = 5, s_ij = 0
    assert loss(z, z.clone()).item() == pytest.approx(-5 + math.log(math.exp(5) + 2), rel=1e-6)


# ----------------------------------------------------------------------------- GE2E


def test_ge2e_similarity_hand_built():
    r2 = math.sqrt(2)
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    sim = ge2e_similarity(e, labels, torch.tensor(10.0), torch.tensor(-5.0))
    # own column: exclusive centroid = the other utterance, orthogonal -> cos 0
    # other column: inclusive centroid of the other singer (-1, -1)/√2 -> cos -1/√2
    hand = np.array([[-5, -10 / r2 - 5], [-5, -10 / r2 - 5], [-10 / r2 - 5, -5], [-10 / r2 - 5, -5]])
    np.testing.assert_allclose(sim.numpy(), hand, rtol=1e-6)
    ref, _ = ref_ge2e(e.numpy(), labels.tolist(), 10.0, -5.0)
    np.testing.assert_allclose(sim.numpy(), ref, rtol=1e-6)


def test_ge2e_forward_hand_built_and_loops():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    loss = losses.get("ge2e", w_init=2.0, b_init=-1.0)
    # identical views: singer 0 holds e0, e1, e0, e1; exclusive centroid of e0 is (1, 2)/√5
    got = loss(e, e.clone(), torch.tensor([0, 0, 1, 1])).item()
    s_own, s_other = 2 / math.sqrt(5) - 1, -2 / math.sqrt(2) - 1
    assert got == pytest.approx(math.log(1 + math.exp(s_other - s_own)), rel=1e-5)
    z1, z2 = views(b=6, d=4, seed=11)
    labels = [7, 2, 2, 9, 7, 9]  # unordered, arbitrary ids
    got = losses.get("ge2e")(z1, z2, labels).item()
    e_all = np.concatenate([np64(z1), np64(z2)])
    _, want = ref_ge2e(e_all, labels * 2, 10.0, -5.0)
    assert got == pytest.approx(want, rel=1e-5)


def test_ge2e_batch_validation_and_w_clamp():
    z1, z2 = views(b=6, d=4)
    loss = losses.get("ge2e")
    with pytest.raises(ValueError, match="same number"):
        loss(z1, z2, [0, 0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match="same number"):
        loss(z1, z2, [0, 1, 2, 3, 4, 5])  # one item per singer
    with pytest.raises(ValueError, match=">= 2 singers"):
        loss(z1, z2, [0] * 6)
    with pytest.raises(ValueError, match="needs labels"):
        loss(z1, z2)
    with torch.no_grad():
        loss.w.fill_(-3.0)  # clamped to 1e-6: every logit ≈ b, loss ≈ log(#singers)
    assert loss(z1, z2, [0, 0, 1, 1, 2, 2]).item() == pytest.approx(math.log(3), rel=1e-5)
    with pytest.raises(ConfigError, match="w_init"):
        losses.get("ge2e", w_init=-1)


def test_ge2e_wb_gradient_scale():
    z1, z2 = views(b=4, d=3, seed=12)
    grads = []
    for scale in (1.0, 0.01):
        loss = losses.get("ge2e", wb_grad_scale=scale)
        loss(z1, z2, [0, 0, 1, 1]).backward()
        grads.append((loss.w.grad.item(), loss.b.grad.item()))
    assert grads[1][0] == pytest.approx(0.01 * grads[0][0], rel=1e-6)
    assert grads[1][1] == pytest.approx(0.01 * grads[0][1], rel=1e-6)
    assert grads[0][0] != 0.0


# ----------------------------------------------------------------------------- SemiSupCon sampling


def test_semisup_batch_counts():
    assert semisup_batch_counts(96, 0.5) == (48, 48)
    assert semisup_batch_counts(10, 0.25) == (2, 8)  # floor, as SemiSupCon's int()
    assert semisup_batch_counts(10, 0.3) == (3, 7)
    assert semisup_batch_counts(32, 0.0) == (0, 32)  # pure SSL
    assert semisup_batch_counts(32, 1.0) == (32, 0)  # fully supervised
    assert semisup_batch_counts(32, 0.5, p_s=0.0) == (0, 32)  # no labelled pool
    with pytest.raises(ValueError, match="b_s"):
        semisup_batch_counts(32, 1.2)
    with pytest.raises(ValueError, match="batch_size"):
        semisup_batch_counts(0, 0.5)


def test_select_labelled():
    singers = [f"s{i % 7}" for i in range(40)]
    kept = select_labelled(singers, 0.25, seed=1)
    assert len(kept) == 10 and kept <= set(range(40))
    assert kept == select_labelled(singers, 0.25, seed=1)
    assert kept != select_labelled(singers, 0.25, seed=2)
    assert select_labelled(singers, 0.0, seed=1) == set()
    assert select_labelled(singers, 1.0, seed=1) == set(range(40))
    partly = ["a", None, "b", None]
    assert select_labelled(partly, 1.0, seed=0) == {0, 2}


# ----------------------------------------------------------------------------- generic properties


def _call(name: str, loss: nn.Module, z1, z2):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])[: z1.shape[0]] if loss.needs_labels else None
    kw = {"targets": (z2.detach(), z1.detach())} if loss.needs_teacher else {}
    return loss(z1, z2, labels, **kw)


@pytest.mark.parametrize("name", losses.NAMES)
def test_gradients_finite_and_inputs_untouched(name):
    torch.manual_seed(0)
    loss = losses.get(name, dim=5)
    z1, z2 = views(b=6, d=5, seed=13)
    for a, b in ((z1, z2), (z1, z1)):  # includes identical views (zero distances)
        a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
        a0, b0 = a.detach().clone(), b.detach().clone()
        out = _call(name, loss, a, b)
        assert out.ndim == 0 and out.dtype == torch.float32 and torch.isfinite(out)
        out.backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
        assert torch.equal(a.detach(), a0) and torch.equal(b.detach(), b0)


@pytest.mark.parametrize("name", ["ntxent", "vicreg", "ge2e"])
def test_full_precision_under_autocast(name):
    loss = losses.get(name)
    z1, z2 = views(b=6, d=5, seed=14)
    want = _call(name, loss, z1, z2).item()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = _call(name, loss, z1.bfloat16().float(), z2.bfloat16().float())
    assert got.dtype == torch.float32
    ref = _call(name, loss, z1.bfloat16().float(), z2.bfloat16().float()).item()
    assert got.item() == pytest.approx(ref, rel=1e-6) and got.item() == pytest.approx(want, rel=2e-2)


# ----------------------------------------------------------------------------- distributed


DIST_CASES = {
    "ntxent": {},
    "vicreg": {},
    "ge2e": {"wb_grad_scale": 1.0},
    "contrastive": {"n_negatives": 3},  # rolled negatives cross the rank boundary
    "cola": {"dim": 4},
    "supcon": {},
    "uniformity": {},
    "byol": {"dim": 4},
}


def _dist_worker(rank: int, world: int, init_file: str) -> None:
    torch.manual_seed(0)
    b, d_in, d = 4, 3, 4
    x1, x2 = torch.randn(world * b, d_in), torch.randn(world * b, d_in)
    enc = torch.randn(d_in, d)
    labels_by_name = {
        "ge2e": torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
        "supcon": torch.tensor([0, 1, -1, 0, 1, 2, 2, -1]),
    }
    targets = (torch.randn(world * b, d), torch.randn(world * b, d))

    def run(name, loss, rows):
        a = enc.clone().requires_grad_()
        z1, z2 = (x1[rows] @ a), (x2[rows] @ a)
        z1.retain_grad()
        z2.retain_grad()
        labels = labels_by_name.get(name)
        kw = {"targets": (targets[0][rows], targets[1][rows])} if loss.needs_teacher else {}
        out = loss(z1, z2, None if labels is None else labels[rows], **kw)
        out.backward()
        return out.detach(), z1.grad, z2.grad, a.grad, [p.grad.clone() for p in loss.parameters()]

    refs, objs = {}, {}
    for name, kw in DIST_CASES.items():  # 1-process reference on the concatenated batch
        torch.manual_seed(1)
        objs[name] = losses.get(name, **kw)
        if name == "byol":
            objs[name].eval()  # running statistics: per-item predictor, independent of the split
        refs[name] = run(name, objs[name], slice(None))
        for p in objs[name].parameters():
            p.grad = None

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        assert distributed.world_size() == world
        rows = slice(rank * b, (rank + 1) * b)
        for name, loss in objs.items():
            value, g1, g2, g_enc, g_params = run(name, loss, rows)
            r_value, r_g1, r_g2, r_enc, r_params = refs[name]
            torch.testing.assert_close(value, r_value, rtol=1e-5, atol=1e-6, msg=f"{name} value")
            torch.testing.assert_close(g1, r_g1[rows], rtol=1e-4, atol=1e-6, msg=f"{name} dz1")
            torch.testing.assert_close(g2, r_g2[rows], rtol=1e-4, atol=1e-6, msg=f"{name} dz2")
            # trainer: loss × world, DDP: mean over ranks  <=>  sum of the unscaled per-rank gradients
            for got, want in zip([g_enc, *g_params], [r_enc, *r_params]):
                total = got.clone()
                torch.distributed.all_reduce(total)
                torch.testing.assert_close(total, want, rtol=1e-4, atol=1e-6, msg=f"{name} parameter grad")
    finally:
        torch.distributed.destroy_process_group()


def test_distributed_gather_matches_single_process(tmp_path):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    init_file = tmp_path / "dist_init"
    torch.multiprocessing.spawn(_dist_worker, args=(2, str(init_file)), nprocs=2, join=True)


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 2)
    assert distributed.gather(x) is x and distributed.gather(None) is None
    assert distributed.world_size() == 1 and distributed.rank() == 0
