"""Optimiser, parameter groups and learning-rate schedules (singer_ssl.training.optim) against torch's
own schedulers and closed-form values, and their use by the train stage."""

import math

import pytest
import torch
from torch import nn

from singer_ssl import losses
from singer_ssl.core.errors import ConfigError
from singer_ssl.training.config import TrainConfig
from singer_ssl.training.optim import build_optimizer, lr_factor, param_groups, set_lr


def _torch_factors(make_scheduler, steps: int) -> list[float]:
    """Learning-rate factors produced by a torch scheduler (base lr 1), one per optimiser step."""
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = make_scheduler(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_cosine_matches_torch_cosine_annealing():
    want = _torch_factors(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20, eta_min=0.0), 20)
    got = [lr_factor(k, 20, "cosine") for k in range(20)]
    assert got == pytest.approx(want, abs=1e-12)
    assert lr_factor(10, 20, "cosine") == pytest.approx(0.5)
    assert lr_factor(20, 20, "cosine") == pytest.approx(0.0) and lr_factor(25, 20, "cosine") == pytest.approx(0.0)


def test_multistep_matches_torch_multistep():
    want = _torch_factors(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[5, 12], gamma=0.1), 16)
    got = [lr_factor(k, 16, "multistep", milestones=[5, 12], gamma=0.1) for k in range(16)]
    assert got == pytest.approx(want, rel=1e-12)


def test_warmup_is_linear_then_follows_the_schedule():
    w, total = 4, 14
    assert [lr_factor(k, total, "cosine", warmup_steps=w) for k in range(w)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # after the warm-up the cosine runs over the remaining total - w steps
    for k in range(w, total):
        want = (1 + math.cos(math.pi * (k - w) / (total - w))) / 2
        assert lr_factor(k, total, "cosine", warmup_steps=w) == pytest.approx(want)
    assert [lr_factor(k, 10, "constant", warmup_steps=2) for k in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert all(lr_factor(k, 10) == 1.0 for k in range(12))
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, "linear")


def test_param_groups_scale_the_objective_and_optimizers_build():
    model = nn.Linear(8, 8)
    byol = losses.get("byol", dim=8, predictor_hidden=16, predictor_lr_scale=10)
    groups = param_groups(model, byol, 1e-3)
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2])
    assert sum(p.numel() for g in groups for p in g["params"]) == (
        sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in byol.parameters()))
    assert len(param_groups(model, losses.get("ntxent"), 1e-3)) == 1  # parameter-free objective: one group

    opt = build_optimizer(model, byol, "sgd", lr=0.03, weight_decay=1e-4, momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    assert opt.param_groups[1]["lr"] == pytest.approx(0.3)
    set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.015, 0.15])
    opt = build_optimizer(model, byol, "adam", lr=1e-3, weight_decay=0.0)
    assert isinstance(opt, torch.optim.Adam)
    with pytest.raises(ConfigError, match="predictor_lr_scale"):
        losses.get("byol", dim=8, predictor_lr_scale=0)


def test_sgd_step_matches_the_momentum_formula():
    """One SGD group step: v = μ v + (g + wd θ); θ -= lr v (torch's convention, dampening 0)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    w0 = model.weight.detach().clone()
    opt = build_optimizer(model, losses.get("ntxent"), "sgd", lr=0.1, weight_decay=0.01, momentum=0.9)
    x = torch.ones(1, 3)
    v = torch.zeros_like(w0)
    w = w0.clone()
    for _ in range(2):
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
        v = 0.9 * v + (torch.ones_like(w) + 0.01 * w)
        w = w - 0.1 * v
    torch.testing.assert_close(model.weight.detach(), w)


@pytest.mark.parametrize("change, message", [
    ({"optimizer": "rmsprop"}, r"train.optimizer: expected one of adam, sgd, got 'rmsprop'"),
    ({"schedule": "poly"}, r"train.schedule: expected one of constant, cosine, multistep, got 'poly'"),
    ({"milestones": [10, "x"]}, r"train.milestones: expected a .*got 'x'"),
    ({"milestones": 10}, r"train.milestones: expected a list of epochs >= 0, got 10"),
    ({"momentum": -1}, r"train.momentum"),
    ({"warmup_epochs": -2}, r"train.warmup_epochs"),
])
def test_schedule_settings_are_validated(change, message):
    params = {"loss": "ntxent", "encoder": "lstm", "datasets": {"train": {"x": {"path": "x"}}},
              "train": change}
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_params(params)


def test_yaml_11_exponent_strings_are_numbers():
    """PyYAML reads `lr: 1e-4` (no dot) as the string '1e-4'; the settings accept it as 1e-4."""
    import yaml

    tree = yaml.safe_load("lr: 1e-4\nweight_decay: 1.5e-6\n")
    assert tree["lr"] == "1e-4"  # the quirk this guards against
    params = {"loss": "ntxent", "encoder": "lstm", "datasets": {"train": {"x": {"path": "x"}}}, "train": tree}
    tr = TrainConfig.from_params(params).train
    assert tr.lr == pytest.approx(1e-4) and isinstance(tr.lr, float)
    params["train"] = {"lr": "fast"}
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        TrainConfig.from_params(params)
