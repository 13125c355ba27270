"""Each paper preset computes what its paper's code computes (input transform -> encoder -> head -> objective).

For every preset the model and objective are built exactly as the train stage builds them (``params.yaml``
merged with ``presets/<name>.yaml`` -> ``TrainConfig`` -> ``hyperparams`` -> ``build_model``, the trainer's
input path and ``TrainUnit``), fed a fixed batch, and compared to a re-derivation written here in plain
torch from the paper's code (the facts are quoted in each test): the input scaling, the head's matmuls,
the predictor wiring, per-view batch-norm statistics and the loss formula. Only the encoder backbone is
the project's module (verified against the published weights in ``tests/test_models.py``). Dropout is
switched off (eval) while batch norm stays in training mode, so both sides are deterministic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from singer_ssl.model.folder import build_model
from singer_ssl.presets import load_preset, merge
from singer_ssl.training.config import TrainConfig
from singer_ssl.training.hyperparams import hyperparams
from singer_ssl.training.loop import Trainer, TrainUnit

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = -4.0, 3.0  # dataset scalars of the (fictitious) training log-mels
TOL = {"rtol": 1e-5, "atol": 1e-5}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(name: str, extra: dict | None = None) -> tuple[TrainConfig, Trainer]:
    """The preset's model + objective as the train stage builds them, in training mode without dropout."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params = merge(params, load_preset(name, ROOT / "presets"))
    params = merge(params, extra or {})
    cfg = TrainConfig.from_params(params)
    fe = {"sample_rate": params["audio"]["sample_rate"],
          **{k: params["features"].get(k) for k in ("n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset")}}
    torch.manual_seed(0)
    model = build_model(hyperparams(cfg, fe, MEAN, STD, 4.0))
    objective = cfg.objective.build(dim=cfg.head.dim)
    unit = TrainUnit(model, objective).train()
    for m in unit.modules():
        if isinstance(m, nn.Dropout) or type(m).__name__ == "StochasticDepth":
            m.eval()
    trainer = Trainer(unit, torch.optim.SGD(unit.parameters(), lr=0.0), torch.device("cpu"))
    return cfg, trainer


def project_loss(trainer: Trainer, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The trainer's path: inputs (scaling) -> [teacher targets] -> TrainUnit (views, head, objective)."""
    x = trainer.inputs(batch, None)
    labels = trainer._labels(batch)
    with torch.no_grad():
        return trainer.unit(x, labels, trainer._targets(x))


def logmel(b: int, f: int, t: int, seed: int) -> torch.Tensor:
    """Log-mel-like values (natural log of mel power), loud enough that every item's maximum is > 0."""
    return torch.randn(b, f, t, generator=torch.Generator().manual_seed(seed)) * 2.0 + 3.0


def bn_train(x: torch.Tensor, bn: nn.BatchNorm1d) -> torch.Tensor:
    """Batch norm with the batch's own statistics (training mode)."""
    return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)


def with_joint_views(trainer: Trainer, batch: dict) -> torch.Tensor:
    """The loss when both views share one batch (to show the per-view wiring changes the result)."""
    models = [trainer.unit.model] + ([trainer.teacher] if trainer.teacher is not None else [])
    for m in models:
        m.view_batching = "joint"
    try:
        return project_loss(trainer, batch)[0]
    finally:
        for m in models:
            m.view_batching = "per_view"


# ------------------------------------------------------------------------------------------ Torres et al. 2023


def test_torres2023_matches_the_paper_code():
    """SonyCSLParis/ssl-singer-identity: LogScale (the stored log-mel) -> Grey2Rgb (``data /= data.max()`` over
    the batch, 3 channels, ImageNet mean/std) -> EfficientNet-B0 (1000-d) -> Projection SiLU -> Linear(1000,128)
    -> L2; each view through the encoder on its own; decoupled contrastive loss, tau 0.2, anchors z1, negatives
    z2 rolled by 1..min(B-1, 250), positive not in the log-sum-exp. Grey2Rgb is applied here to each item as a
    batch of one (the preset scales per item, which equals the paper's code for a batch of one)."""
    cfg, trainer = build("torres2023")
    assert (cfg.train.input_scaling, cfg.train.view_batching, cfg.head.kind) == ("none", "per_view", "silu_linear")
    b = 3
    batch = {"x1": logmel(b, 128, 24, 1), "x2": logmel(b, 128, 24, 2)}
    loss, z1, z2 = project_loss(trainer, batch)

    enc, head = trainer.unit.model.encoder, trainer.unit.model.head.net[1]
    imagenet_mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    imagenet_std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def grey2rgb(data: torch.Tensor) -> torch.Tensor:  # their Grey2Rgb on a (1, F, T) batch
        data = data / data.max()
        return (data.expand(3, -1, -1) - imagenet_mean) / imagenet_std

    def view(lm: torch.Tensor) -> torch.Tensor:
        rgb = torch.stack([grey2rgb(lm[i:i + 1]) for i in range(len(lm))])
        with torch.no_grad():
            h = enc.classifier(torch.flatten(enc.avgpool(enc.features(rgb)), 1))
            assert h.shape == (b, 1000)
            return F.normalize(F.silu(h) @ head.weight.T + head.bias, dim=1)

    r1, r2 = view(batch["x1"]), view(batch["x2"])
    torch.testing.assert_close(z1, r1, **TOL)
    torch.testing.assert_close(z2, r2, **TOL)
    s = lambda a, c: F.cosine_similarity(a, c, dim=0) / 0.2  # noqa: E731
    terms = []
    for i in range(b):
        negs = torch.stack([s(r1[i], r2[(i - k) % b]) for k in range(1, min(b - 1, 250) + 1)])
        terms.append(-s(r1[i], r2[i]) + torch.logsumexp(negs, 0))
    torch.testing.assert_close(loss, torch.stack(terms).mean(), **TOL)
    assert abs(float(with_joint_views(trainer, batch) - loss)) > 1e-4  # BN statistics per view matter


# ------------------------------------------------------------------------------------------ GE2E singer encoder


def test_ge2e_singer_trains_the_lstm_embedding_itself():
    """Trebolium/singer-identity-encoder (CorentinJ's GE2E): LSTM -> Linear(768,256) -> ReLU -> L2 is the
    embedding the loss sees (no projection); S_ji,k = w cos(e_ji, c_k) + b with the own centroid excluding
    e_ji, w = 10, b = -5; loss = mean cross-entropy over singers. Both crops of an item are utterances of its
    singer. Input: the dataset-standardised log-mel (a named difference: not AutoVC's dB scaling)."""
    cfg, trainer = build("ge2e-singer", {"losses": {"ge2e": {"batch": {"singers": 3, "utterances": 2}}}})
    assert cfg.head.kind == "none" and not list(trainer.unit.model.head.parameters())
    lab = torch.tensor([0, 0, 1, 1, 2, 2])
    batch = {"x1": logmel(6, 80, 12, 3), "x2": logmel(6, 80, 12, 4), "labels": lab}
    loss, z1, z2 = project_loss(trainer, batch)

    enc = trainer.unit.model.encoder
    with torch.no_grad():
        e = torch.cat([enc(((batch[k] - MEAN) / STD)[:, None]) for k in ("x1", "x2")])
    assert e.shape == (12, 256)
    e = e / e.norm(dim=1, keepdim=True)
    torch.testing.assert_close(torch.cat([z1, z2]), e, **TOL)
    labels = lab.repeat(2)
    w, bias = 10.0, -5.0
    terms = []
    for n in range(len(e)):
        logits = []
        for k in range(3):
            members = [m for m in range(len(e)) if labels[m] == k and m != n]
            c = e[members].mean(0)
            logits.append(w * F.cosine_similarity(e[n], c, dim=0) + bias)
        logits = torch.stack(logits)
        terms.append(-logits[labels[n]] + torch.logsumexp(logits, 0))
    torch.testing.assert_close(loss, torch.stack(terms).mean(), **TOL)


# ------------------------------------------------------------------------------------------ SemiSupCon


def ssntxent(u: torch.Tensor, item: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """SemiSupCon's SSNTXent as its code computes it: cosine / tau; positives = same clip or a shared label
    (labelled items only), diagonal removed; per anchor the mean over positives of
    -log(exp s_ip / sum_{a != i} exp s_ia + 1e-6); mean over every anchor."""
    n = len(u)
    s = F.cosine_similarity(u[:, None], u[None, :], dim=2) / tau
    total = torch.zeros(())
    for i in range(n):
        denom = sum(torch.exp(s[i, a]) for a in range(n) if a != i)
        pos = [p for p in range(n) if p != i and (item[p] == item[i] or (y[i] >= 0 and y[p] == y[i]))]
        total = total + sum(-torch.log(torch.exp(s[i, p]) / denom + 1e-6) for p in pos) / len(pos)
    return total / n


def test_semisupcon_bias_free_head_and_ssntxent():
    """Pliploop/SemiSupCon: raw waveform -> SampleCNN (512) -> Linear(512,512,bias=False) -> ReLU ->
    Linear(512,128,bias=False), no batch norm; all views in one batch; SSNTXent, tau 0.1."""
    cfg, trainer = build("semisupcon")
    assert cfg.head.kind == "mlp_nobias" and cfg.train.view_batching == "joint"
    b, n = 3, 59049
    gen = torch.Generator().manual_seed(5)
    lab = torch.tensor([4, 4, -1])  # two labelled items of one singer, one unlabelled
    batch = {"x1": 0.1 * torch.randn(b, n, generator=gen), "x2": 0.1 * torch.randn(b, n, generator=gen), "labels": lab}
    loss, z1, z2 = project_loss(trainer, batch)

    model = trainer.unit.model
    w1, w2 = model.head.net[0].weight, model.head.net[2].weight
    with torch.no_grad():
        h = model.encoder(torch.cat([batch["x1"], batch["x2"]]))
        u = torch.relu(h @ w1.T) @ w2.T
    assert h.shape == (2 * b, 512) and u.shape == (2 * b, 128)
    torch.testing.assert_close(torch.cat([z1, z2]), F.normalize(u, dim=1), **TOL)
    item, y = torch.arange(b).repeat(2), lab.repeat(2)
    torch.testing.assert_close(loss, ssntxent(u, item, y, 0.1), **TOL)
    # where the 1e-6 matters: positives pointing away from their anchor (p ~ e^-20), each pair capped at 13.8
    z = F.normalize(torch.randn(4, 8, generator=gen), dim=1)
    got = trainer.unit.objective(z, -z, labels=torch.full((4,), -1))
    want = ssntxent(torch.cat([z, -z]), torch.arange(4).repeat(2), torch.full((8,), -1), 0.1)
    torch.testing.assert_close(got, want, **TOL)


# ------------------------------------------------------------------------------------------ BYOL-A


def test_byol_a_predictor_sees_raw_projections():
    """nttcslab/byol-a (lucidrains byol-pytorch): log-mel standardised with the dataset mean/std -> AudioNTT2020
    (512) -> projector Linear(512,4096) -> BN -> ReLU -> Linear(4096,256) (no L2) -> predictor (same MLP,
    256 -> 4096 -> 256) on the raw projection; target = the momentum copy, each view through the networks on
    its own; loss = mean_n [(2 - 2 cos(q1, t2)) + (2 - 2 cos(q2, t1))]. singer-ssl's BYOL loss is that
    divided by 2 x 256 (the predictor's first Linear has no bias: a batch norm follows it)."""
    cfg, trainer = build("byol-a")
    assert (cfg.head.l2, cfg.objective.kwargs["predictor_input"], cfg.train.view_batching) == (False, "raw", "per_view")
    b = 4
    batch = {"x1": logmel(b, 64, 96, 6), "x2": logmel(b, 64, 96, 7)}
    loss, z1, z2 = project_loss(trainer, batch)

    model, teacher, pred = trainer.unit.model, trainer.teacher, trainer.unit.objective.predictor

    def projector(m, lm):
        net = m.head.net
        with torch.no_grad():
            h = m.encoder(((lm - MEAN) / STD)[:, None])
            return F.linear(torch.relu(bn_train(F.linear(h, net[0].weight, net[0].bias), net[1])), net[3].weight,
                            net[3].bias)

    def predictor(z):
        return F.linear(torch.relu(bn_train(z @ pred[0].weight.T, pred[1])), pred[3].weight, pred[3].bias)

    p1, p2 = projector(model, batch["x1"]), projector(model, batch["x2"])
    torch.testing.assert_close(z1, p1, **TOL)
    t1, t2 = projector(teacher, batch["x1"]), projector(teacher, batch["x2"])
    with torch.no_grad():
        q1, q2 = predictor(p1), predictor(p2)
    byol_a = ((2 - 2 * F.cosine_similarity(q1, t2)) + (2 - 2 * F.cosine_similarity(q2, t1))).mean()
    torch.testing.assert_close(loss * 2 * 256, byol_a, **TOL)
    assert abs(float(with_joint_views(trainer, batch) - loss)) > 1e-6


# ------------------------------------------------------------------------------------------ Fonseca et al. 2021


def test_fonseca2021_per_view_mlp_head_and_ntxent():
    """edufonseca/uclser20: standardised log-mel -> VGG-like (512) -> MLPHead Linear(512,512) -> BN -> ReLU ->
    Linear(512,512) -> L2, each view through the model on its own; NT-Xent over the 2N projections, logits
    u u^T / 0.2, denominator over every other view (positive included), mean over the 2N anchors. (Their
    std / sqrt(N) scaling is a constant gain that the first batch norm cancels in training.)"""
    cfg, trainer = build("fonseca2021")
    assert cfg.train.view_batching == "per_view" and cfg.head.kind == "mlp"
    b = 4
    batch = {"x1": logmel(b, 96, 101, 8), "x2": logmel(b, 96, 101, 9)}
    loss, z1, z2 = project_loss(trainer, batch)

    model = trainer.unit.model
    net = model.head.net

    def view(lm):
        with torch.no_grad():
            h = model.encoder(((lm - MEAN) / STD)[:, None])
            g = F.linear(torch.relu(bn_train(F.linear(h, net[0].weight, net[0].bias), net[1])), net[3].weight,
                         net[3].bias)
        return g / g.norm(dim=1, keepdim=True)

    u = torch.cat([view(batch["x1"]), view(batch["x2"])])
    torch.testing.assert_close(torch.cat([z1, z2]), u, **TOL)
    logits = u @ u.T / 0.2
    terms = []
    for i in range(2 * b):
        pos = (i + b) % (2 * b)
        others = torch.stack([logits[i, v] for v in range(2 * b) if v != i])
        terms.append(-(logits[i, pos] - torch.logsumexp(others, 0)))
    torch.testing.assert_close(loss, torch.stack(terms).mean(), **TOL)
    assert abs(float(with_joint_views(trainer, batch) - loss)) > 1e-4


# ------------------------------------------------------------------------------------------ end to end, small scale

#: per preset: the overrides that make it small (batch, crop, steps); the encoder, head and objective are the preset's
SMALL = {
    "torres2023": {"augment": {"crop_seconds": 1.0}},
    "ge2e-singer": {"augment": {"crop_seconds": 1.0}, "losses": {"ge2e": {"batch": {"singers": 2, "utterances": 2}}},
                    "encoders": {"lstm": {"hidden": 32, "layers": 1}}},  # 3 x 768 costs 20 s on 4 s windows
    "semisupcon": {"augment": {"crop_seconds": 3.7}},  # SampleCNN needs 59049 samples
    "byol-a": {"augment": {"crop_seconds": 1.0}, "losses": {"byol": {"predictor_hidden": 64}}},
    "fonseca2021": {"augment": {"crop_seconds": 1.0}},
    "byol-laptop": {"augment": {"crop_seconds": 1.0}},
}
#: presets that size the built-in test sets and leave the method alone (no model to run here)
TEST_SET_PRESETS = {"ranking": {"corpus", "embed"}}
EMBEDDING_DIMS = {"torres2023": 1000, "ge2e-singer": 256, "semisupcon": 512, "byol-a": 512, "fonseca2021": 512,
                  "byol-laptop": 512}


@pytest.mark.slow
def test_every_preset_runs_train_embed_evaluate(tmp_path):
    """Each preset's model and objective: 2 training steps -> embed -> evaluate on tiny synthetic data (16 kHz,
    32 mels, 4 s segments) through the stages' run functions; finite metrics, the preset's embedding size.
    Batch 4 (GE2E 2 x 2), short crops, a 1 x 32 LSTM under GE2E's 256-d output, a 64-wide BYOL-A predictor."""
    import json
    import time

    from singer_ssl import embed, trials
    from singer_ssl.evaluation import run as evaluation
    from singer_ssl.presets import available
    from singer_ssl.training import run as training
    from tests.synthetic import make_training_set, pipeline_paths

    assert set(SMALL) | set(TEST_SET_PRESETS) == set(available(ROOT / "presets"))
    for name, sections in TEST_SET_PRESETS.items():  # no method settings: its runs compare methods as the default's
        assert set(load_preset(name, ROOT / "presets")) == sections
    data = tmp_path / "data"
    kw = {"sample_rate": 16000, "n_fft": 512, "hop": 160, "n_mels": 32, "seconds": 4.0}
    make_training_set(data, "toy", n_singers=4, sources_per_singer=2, segments_per_source=2, **kw)
    test = make_training_set(data, "held", n_singers=3, sources_per_singer=3, segments_per_source=1, seed=1, **kw)
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    times = {}
    for name, small in SMALL.items():
        params = merge(merge(base, load_preset(name, ROOT / "presets")), small)
        params["datasets"] = {"train": {"toy": {"path": "data/raw/toy"}}, "test": {"held": {"path": "x"}}}
        params["train"].update(batch_size=4, max_steps=2, epochs=1, steps_per_epoch=2, num_workers=0, val_fraction=0.0,
                               patience=None, device="cpu", checkpoint_every=100, amp=False)
        cfg = TrainConfig.from_params(params)
        root = tmp_path / name
        (root / "data").mkdir(parents=True)
        for sub in ("features", "segments"):
            (root / "data" / sub).symlink_to(data / "data" / sub)
        paths = pipeline_paths(root)
        t0 = time.perf_counter()
        training.run(cfg, paths.features, paths.segments, paths.model, paths.checkpoints, paths.plots, progress=False)
        times[name] = time.perf_counter() - t0
        hp = yaml.safe_load((paths.model / "hyperparams.yaml").read_text(encoding="utf-8"))
        assert hp["encoder"]["embedding_dim"] == EMBEDDING_DIMS[name] and hp["training"]["steps"] == 2
        emb = root / "emb.h5"
        embed.run(embed.EmbedConfig("held", seed=0, batch_size=8, device="cpu", random_inits=1), test["features"],
                  test["segments"], paths.model, emb)
        trial_file = root / "trials.txt"
        trials.run(trials.TrialsConfig("held", n_pairs=40, seed=0), test["segments"], trial_file)
        metrics = root / "metrics.json"
        evaluation.run(evaluation.EvaluateConfig("held", bootstrap=20, mnr_queries=10, mnr_negatives=5,
                                                 probe=evaluation.ProbeConfig(max_epochs=5, runs=1)),
                       emb, trial_file, metrics, root / "plots")
        result = json.loads(metrics.read_text())
        numbers = [v for v in _leaves(result) if isinstance(v, float)]
        assert numbers and all(np.isfinite(numbers)), name
        assert "eer" in json.dumps(result)
    print("train (2 steps + model folder) seconds per preset:", {k: round(v, 1) for k, v in times.items()})


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from _leaves(v)
    else:
        yield tree
