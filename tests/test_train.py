"""Tests of the train stage (singer_ssl.training.run and singer_ssl.training.*) on a tiny synthetic corpus.

The corpus is written by the real writers (datasets.write_manifest, features.extract_features) in the
pipeline's layout; runs use a 1-layer LSTM (hidden 16) on 16-mel log-mels, batch 8, a few steps.
"""

from __future__ import annotations

import copy
import csv
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from singer_ssl import losses
from singer_ssl.core.errors import ConfigError
from singer_ssl.training import checkpoint as ckpt
from singer_ssl.training import run as training_run
from singer_ssl.training.config import TrainConfig, resolve_select
from singer_ssl.training.data import ViewDataset, load_segment_table, split_by_singer
from singer_ssl.training.loop import NonFiniteLoss, Trainer, TrainUnit
from singer_ssl.training.monitors import alignment, batch_monitors, uniformity
from singer_ssl.training.run import plan_data
from singer_ssl.training.runtime import Dist
from singer_ssl.training.sampler import BatchStream, RandomBatches, SemiSupervisedBatches, SingerBatches
from tests.synthetic import make_training_set, pipeline_paths

REPO = Path(__file__).parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    make_training_set(root)  # 6 singers x 2 songs x 3 one-second segments at 8 kHz, 16 mels
    return root


def train(params: dict, root: Path, progress: bool = False) -> dict:
    """The train stage on ``params`` with the pipeline's paths under ``root``."""
    return training_run.train(TrainConfig.from_params(params), pipeline_paths(root), progress=progress)


def table_of(root: Path, names: list[str]):
    """The segment table of datasets ``names`` under ``root`` (pipeline layout)."""
    paths = pipeline_paths(root)
    return load_segment_table(paths.features, paths.segments, names)


def run_root(tmp_path: Path, toy: Path, name: str = "run") -> Path:
    """A fresh output root whose data/features and data/segments point at the shared toy corpus."""
    root = tmp_path / name
    (root / "data").mkdir(parents=True)
    for sub in ("features", "segments"):
        (root / "data" / sub).symlink_to(toy / "data" / sub)
    return root


def tiny_params(loss: str = "ntxent", **train_overrides) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["datasets"] = {"train": {"toy": {"path": "data/raw/toy"}}}
    params["loss"] = loss
    params["encoder"] = "lstm"
    params["encoders"]["lstm"] = {"hidden": 16, "layers": 1, "embedding_dim": 16}
    params["head"] = {"kind": "silu_linear", "dim": 8, "hidden": 16}
    params["losses"]["ge2e"]["batch"] = {"singers": 2, "utterances": 4}
    params["losses"]["byol"]["predictor_hidden"] = 16
    params["augment"]["crop_seconds"] = 0.5
    params["train"].update(batch_size=8, max_steps=3, epochs=100, steps_per_epoch=2, num_workers=0,
                           checkpoint_every=2, log_every=1, val_fraction=0.34, val_batches=2, patience=None)
    params["train"].update(train_overrides)
    return params


def independent_centre(logmel: torch.Tensor, norm: dict) -> torch.Tensor:
    """What the model subtracts from a (B, F, T) log-mel under the model folder's ``normalization`` (offset
    included), by a full sort: the dataset mean, each item's mean, maximum, or mean of its loudest quarter."""
    scaling = norm.get("scaling", "dataset_std")
    if scaling == "dataset_std":
        return torch.tensor(norm["mean"])
    ranked = logmel.flatten(1).sort(dim=1, descending=True).values
    keep = {"item_mean": ranked.shape[1], "item_peak": 1, "item_loud": ranked.shape[1] // 4}[scaling]
    return ranked[:, :keep].mean(dim=1).view(-1, 1, 1) - norm.get("offset", 0.0)


def read_metric(root: Path, name: str) -> list[tuple[int, float]]:
    path = root / "plots" / "train" / "plots" / "metrics" / f"{name}.tsv"
    with open(path, newline="") as f:
        return [(int(r["step"]), float(r[name.split("/")[-1]])) for r in csv.DictReader(f, delimiter="\t")]


def load_state(root: Path) -> dict[str, torch.Tensor]:
    return torch.load(root / "data" / "model" / "model.pt", weights_only=True)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------------- runs


@pytest.mark.parametrize("loss", losses.NAMES)
def test_short_run_per_loss(loss, toy, tmp_path):
    root = run_root(tmp_path, toy)
    params = tiny_params(loss)
    summary = train(params, root, progress=False)
    assert summary["steps"] == 3
    values = [v for _, v in read_metric(root, "train/loss")]
    assert len(values) == 3 and all(math.isfinite(v) for v in values)
    assert len(set(values)) > 1
    # the weights moved away from the seeded initialisation
    from singer_ssl.model.folder import build_model

    hp = yaml.safe_load((root / "data/model/hyperparams.yaml").read_text())
    torch.manual_seed(params["seed"])
    init = build_model(hp).state_dict()
    trained = load_state(root)
    moved = [k for k in init if init[k].is_floating_point() and not torch.equal(init[k], trained[k])]
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("head.") for k in moved)
    if loss == "byol":
        taus = [v for _, v in read_metric(root, "train/tau")]
        assert taus[0] == pytest.approx(losses.tau_schedule(0, 3, 0.99)) and taus == sorted(taus)


def test_item_loud_run_stores_the_training_centre_offset_in_the_model_folder(toy, tmp_path):
    """Glue: the train stage computes ``normalization.offset`` from its training features and the model folder
    carries it (the loaded model adds it back; its formula: tests/test_item_mean_scaling.py)."""
    from singer_ssl.model.folder import load_model_folder
    from singer_ssl.training.data import training_centre_offset

    root = run_root(tmp_path, toy)
    train(tiny_params(input_scaling="item_loud", max_steps=1), root)
    norm = yaml.safe_load((root / "data/model/hyperparams.yaml").read_text())["normalization"]
    expected = training_centre_offset(table_of(root, ["toy"]), "item_loud")
    assert norm["scaling"] == "item_loud" and expected > 1.0
    assert norm["offset"] == pytest.approx(expected, rel=1e-9)
    model, _ = load_model_folder(root / "data/model")
    assert model.offset == pytest.approx(expected, rel=1e-6)


def _logged_files(root: Path) -> set[str]:
    base = root / "plots" / "train" / "plots" / "metrics"
    return {str(p.relative_to(base)) for p in base.rglob("*.tsv")}


@pytest.mark.parametrize("loss", ["ntxent", "byol"])
def test_zero_steps_keep_the_initial_weights_and_log_step_zero(loss, toy, tmp_path):
    """``train.max_steps: 0``: the model is the seeded initialisation, and dvclive holds the same files as after
    a training (one row at step 0 each), so DVC's declared ``plots/train/plots/metrics`` exists."""
    from singer_ssl.model.folder import build_model

    trained_root, root = run_root(tmp_path, toy, "trained"), run_root(tmp_path, toy, "zero")
    train(tiny_params(loss, max_steps=2), trained_root, progress=False)
    params = tiny_params(loss, max_steps=0)
    summary = train(params, root, progress=False)
    assert summary["steps"] == 0 and summary["kept_step"] == 0
    assert _logged_files(root) == _logged_files(trained_root)
    for name in _logged_files(root):
        rows = read_metric(root, name.removesuffix(".tsv"))
        assert [s for s, _ in rows] == [0] and all(math.isfinite(v) for _, v in rows), name
    assert read_metric(root, "train/lr") == [(0, pytest.approx(params["train"]["lr"]))]
    hp = yaml.safe_load((root / "data/model/hyperparams.yaml").read_text())
    assert hp["training"]["steps"] == 0
    torch.manual_seed(params["seed"])
    assert_same_state(build_model(hp).state_dict(), load_state(root))
    assert ckpt.load(root / "data/checkpoints/last.pt")["finished"] is True


@pytest.mark.parametrize("file", ["VGG_best.pth", "renamed.pth"])
def test_zero_steps_from_a_published_checkpoint(file, toy, tmp_path, capsys):
    """``encoders.vgglike.init: published:<file>`` at zero steps: the model's encoder holds the file's weights (its
    classifier dropped); the known file name brings its input gain into hyperparams.yaml and says so, another
    name gets none and a line saying that no convention is recorded for it."""
    from tests.synthetic import write_published_checkpoint

    path = tmp_path / file
    write_published_checkpoint(tmp_path / "VGG_best.pth")
    (tmp_path / "VGG_best.pth").rename(path)
    params = tiny_params("ntxent", max_steps=0)
    params["encoder"] = "vgglike"
    params["encoders"]["vgglike"] = {"init": f"published:{path}"}
    root = run_root(tmp_path, toy)
    capsys.readouterr()
    train(params, root, progress=False)
    err = capsys.readouterr().err
    hp = yaml.safe_load((root / "data/model/hyperparams.yaml").read_text())
    state, published = load_state(root), torch.load(path, weights_only=True)
    for k, v in published.items():
        if not k.startswith("dense_out."):
            assert torch.equal(state[f"encoder.{k}"], v), k
    assert hp["normalization"]["scaling"] == params["train"]["input_scaling"] == "item_loud"  # params.yaml's
    if file == "VGG_best.pth":
        assert hp["normalization"]["gain"] == pytest.approx(math.sqrt(38.8 * 3600 * 100 * 96))
        assert "encoder input as VGG_best.pth was trained (Fonseca et al. 2021" in err and "gain 3.662e+04" in err
    else:
        assert "gain" not in hp["normalization"]
        assert f"{path}: no recorded input convention for this file name (known for vgglike: VGG_best.pth)" in err


def test_progress_line_per_log_interval_off_a_terminal(toy, tmp_path, capsys):
    """stderr is not a terminal under pytest (as in a log file or DVC's output): no bar, but one line per
    ``train.log_every`` steps from the first, carrying the logged loss."""
    root = run_root(tmp_path, toy)
    capsys.readouterr()
    train(tiny_params("ntxent", max_steps=5, log_every=2, steps_per_epoch=10), root, progress=True)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("train: step ")]
    logged = dict(read_metric(root, "train/loss"))
    assert [int(ln.split()[2].split("/")[0].rstrip(":")) for ln in lines] == sorted(logged) == [1, 2, 4]
    for ln in lines:
        step = int(ln.split()[2].split("/")[0])
        assert ln.startswith(f"train: step {step}/5: loss {logged[step]:.4f}, in-batch EER "), ln
    assert "\r" not in err
    capsys.readouterr()
    train(tiny_params("ntxent", max_steps=2), run_root(tmp_path, toy, "quiet"), progress=False)
    assert "train: step " not in capsys.readouterr().err


def test_step_line_estimates_the_time_left():
    from singer_ssl.training.monitors import step_line

    assert step_line(10, 200, 2.30119, 31.25, 42.4, 1.8) == (
        "step 10/200: loss 2.3012, in-batch EER 31.2% | 42 s, 1.8 s/step, ~6 min left")  # 190 x 1.8 s = 342 s
    assert step_line(195, 200, 1.0, 5.0, 400.0, 2.0).endswith("2 s/step, ~10 s left")
    assert step_line(200, 200, 1.0, 5.0, 400.0, 2.0).endswith("~0 s left")


def test_schedule_sets_the_logged_learning_rate(toy, tmp_path):
    """train/lr at step s is lr * lr_factor(s - 1): warm-up then cosine, over the planned steps."""
    from singer_ssl.training.optim import lr_factor

    root = run_root(tmp_path, toy)
    train(tiny_params("byol", max_steps=6, schedule="cosine", warmup_epochs=1, lr=2e-3), root, progress=False)
    logged = read_metric(root, "train/lr")
    assert [s for s, _ in logged] == [1, 2, 3, 4, 5, 6]
    want = [2e-3 * lr_factor(s - 1, 6, "cosine", warmup_steps=2) for s, _ in logged]
    assert [v for _, v in logged] == pytest.approx(want)
    assert want[0] == pytest.approx(1e-3) and want[-1] < 2e-3 * 0.2


@pytest.mark.parametrize("mode", ["wave", "logmel"])
def test_resume_after_interruption_matches_uninterrupted_run(mode, toy, tmp_path, monkeypatch, capsys):
    if mode == "wave":  # BYOL: teacher + predictor; audiontt2020: dropout (restored RNG), batch-norm buffers
        params = tiny_params("byol", max_steps=4, checkpoint_every=2, num_workers=2)
        params["encoder"] = "audiontt2020"
        params["encoders"]["audiontt2020"] = {"embedding_dim": 16}
    else:  # log-mel crops from the HDF5 + spectrogram augmentations (mixup's memory bank is state)
        params = tiny_params("ntxent", max_steps=4, checkpoint_every=2)
        params["augment"]["waveform"] = {}
        params["augment"]["spectrogram"] = {"mixup": {"p": 1.0, "ratio": 0.4}, "random_resize_crop": {"p": 0.5}}
    ref = run_root(tmp_path, toy, "ref")
    train(params, ref, progress=False)

    root = run_root(tmp_path, toy, "interrupted")
    original = Trainer.train_step

    def crash_at_third_step(self, batch, step):
        if step == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch, step)

    monkeypatch.setattr(Trainer, "train_step", crash_at_third_step)
    with pytest.raises(KeyboardInterrupt):
        train(params, root, progress=False)
    assert ckpt.load(root / "data/checkpoints/last.pt")["step"] == 2
    assert not (root / "data/model").exists()
    monkeypatch.setattr(Trainer, "train_step", original)

    summary = train(params, root, progress=False)
    assert summary["resumed_from"] == 2 and summary["steps"] == 4
    assert "resuming from" in capsys.readouterr().err
    assert_same_state(load_state(ref), load_state(root))
    a, b = ckpt.load(ref / "data/checkpoints/last.pt"), ckpt.load(root / "data/checkpoints/last.pt")
    if mode == "wave":
        assert_same_state(a["teacher"], b["teacher"])
    assert_same_state(a["objective"], b["objective"])
    # the resumed dvclive log has each step once, and the same values as the reference
    assert read_metric(root, "train/loss") == read_metric(ref, "train/loss")

    # other parameters -> the checkpoint is ignored, with a message
    changed = copy.deepcopy(params)
    changed["train"]["lr"] = 5e-4
    summary = train(changed, root, progress=False)
    assert summary["resumed_from"] is None
    assert "run of other parameters (fingerprint" in capsys.readouterr().err


def interrupt_at_step(params: dict, root: Path, monkeypatch, step: int = 2) -> None:
    """Run until the checkpoint of ``step`` is written, then die as a killed stage would."""
    original = Trainer.train_step

    def crash(self, batch, s):
        if s == step:
            raise KeyboardInterrupt("simulated kill")
        return original(self, batch, s)

    monkeypatch.setattr(Trainer, "train_step", crash)
    with pytest.raises(KeyboardInterrupt):
        train(params, root, progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert ckpt.load(root / "data/checkpoints/last.pt")["step"] == step


def test_finished_run_is_retrained_not_reused(toy, tmp_path, capsys):
    """`dvc repro -f train` retrains: a finished run's checkpoint never stands in for a training."""
    params = tiny_params("ntxent", max_steps=4, checkpoint_every=2)
    root = run_root(tmp_path, toy)
    train(params, root, progress=False)
    first = load_state(root)
    assert ckpt.load(root / "data/checkpoints/last.pt")["finished"] is True
    capsys.readouterr()
    summary = train(params, root, progress=False)
    err = capsys.readouterr().err
    assert summary["resumed_from"] is None and summary["steps"] == 4
    assert "holds a finished run" in err and "training from scratch" in err
    assert len(read_metric(root, "train/loss")) == 4  # all four steps ran again
    assert_same_state(first, load_state(root))  # deterministic: the same weights


def test_interrupted_run_of_other_code_starts_fresh(toy, tmp_path, monkeypatch, capsys):
    params = tiny_params("ntxent", max_steps=4, checkpoint_every=2)
    root = run_root(tmp_path, toy)
    interrupt_at_step(params, root, monkeypatch)
    real = ckpt.code_signature()
    monkeypatch.setattr(ckpt, "code_signature", lambda *a, **k: "edited-objective")
    capsys.readouterr()
    summary = train(params, root, progress=False)
    assert summary["resumed_from"] is None and "run of other code (fingerprint" in capsys.readouterr().err
    # the same code again -> an interrupted run resumes
    monkeypatch.setattr(ckpt, "code_signature", lambda *a, **k: real)
    interrupt_at_step(params, root, monkeypatch)
    assert train(params, root, progress=False)["resumed_from"] == 2


def test_crafted_checkpoint_is_ignored_in_one_line_and_never_run(toy, tmp_path, capsys):
    from tests.test_cache import crafted_checkpoint

    root = run_root(tmp_path, toy)
    marker = tmp_path / "marker"
    crafted_checkpoint(root / "data/checkpoints/last.pt", marker)
    summary = train(tiny_params("ntxent", max_steps=2), root, progress=False)
    assert not marker.exists()
    assert summary["resumed_from"] is None and summary["steps"] == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "last.pt" in ln]
    assert len(lines) == 1 and "cannot be read safely" in lines[0] and "starting fresh" in lines[0]
    assert ckpt.load(root / "data/checkpoints/last.pt")["step"] == 2  # replaced by a real one


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(toy, tmp_path, monkeypatch):
    real_build = losses.ObjectiveSpec.build

    class NaNAtThirdStep(losses.Objective):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.calls = inner, 0
            self.needs_labels, self.momentum_tau = inner.needs_labels, inner.momentum_tau

        def forward(self, z1, z2, **kw):
            out = self.inner(z1, z2, **kw)
            if self.training:
                self.calls += 1
                if self.calls == 3:
                    return out * float("nan")
            return out

    monkeypatch.setattr(losses.ObjectiveSpec, "build", lambda self, dim=None: NaNAtThirdStep(real_build(self, dim)))
    root = run_root(tmp_path, toy)
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 3.*last good checkpoint .*step 2"):
        train(tiny_params("ntxent", max_steps=5, checkpoint_every=2), root, progress=False)
    assert ckpt.load(root / "data/checkpoints/last.pt")["step"] == 2
    assert not (root / "data/model").exists()


def test_same_seed_same_weights_whatever_the_worker_count(toy, tmp_path):
    """Per-sample keyed RNG: 0 and 2 DataLoader workers give bit-identical training on CPU."""
    params = tiny_params("vicreg", max_steps=3)
    a, b = run_root(tmp_path, toy, "a"), run_root(tmp_path, toy, "b")
    train(params, a, progress=False)
    train(tiny_params("vicreg", max_steps=3, num_workers=2), b, progress=False)
    assert_same_state(load_state(a), load_state(b))
    other = run_root(tmp_path, toy, "c")
    params["seed"] += 1
    train(params, other, progress=False)
    assert not torch.equal(load_state(a)["encoder.linear.weight"], load_state(other)["encoder.linear.weight"])


def test_early_stopping_keeps_best_model(toy, tmp_path, monkeypatch):
    """Validation losses 3, 1, 2, 2 with patience 2: stop after epoch 4, keep epoch 2's weights."""
    seq = iter([3.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    kept = {}
    real = Trainer.validate

    def fake_validate(self, batches):
        out = real(self, batches)
        out["loss"] = next(seq)
        kept[out["loss"]] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return out

    monkeypatch.setattr(Trainer, "validate", fake_validate)
    root = run_root(tmp_path, toy)
    summary = train(tiny_params("ntxent", max_steps=20, steps_per_epoch=1, patience=2, select="val_loss"), root,
                    progress=False)
    assert summary["stopped_early"] and summary["epochs"] == 4 and summary["best_step"] == 2
    assert_same_state(load_state(root), kept[1.0])


@pytest.mark.parametrize("loss, select, losses_seq, eers, kept_epoch", [
    ("ntxent", "auto", [3.0, 1.0, 2.0], [30.0, 40.0, 10.0], 2),     # fixed-target loss: lowest val loss
    ("byol", "auto", [1.0, 2.0, 3.0], [30.0, 10.0, 20.0], 2),       # moving target: lowest val EER
    ("ntxent", "val_eer", [1.0, 2.0, 3.0], [30.0, 20.0, 10.0], 3),
    ("byol", "val_loss", [3.0, 1.0, 2.0], [10.0, 20.0, 30.0], 2),
    ("ntxent", "last", [1.0, 2.0, 3.0], [10.0, 20.0, 30.0], 3),
])
def test_select_keeps_the_weights_it_names(loss, select, losses_seq, eers, kept_epoch, toy, tmp_path, monkeypatch):
    """train.select decides which epoch's weights reach model.pt (validation values faked, weights real)."""
    seq = iter(zip(losses_seq, eers))
    states = []
    real = Trainer.validate

    def fake_validate(self, batches):
        out = real(self, batches)
        out["loss"], out["eer"] = next(seq)
        states.append({k: v.clone() for k, v in self.model.state_dict().items()})
        return out

    monkeypatch.setattr(Trainer, "validate", fake_validate)
    root = run_root(tmp_path, toy)
    summary = train(tiny_params(loss, max_steps=3, steps_per_epoch=1, select=select), root, progress=False)
    assert summary["kept_step"] == kept_epoch and len(states) == 3
    assert_same_state(load_state(root), states[kept_epoch - 1])
    hp = yaml.safe_load((root / "data/model/hyperparams.yaml").read_text())
    assert hp["training"]["kept_step"] == kept_epoch


@pytest.mark.parametrize("loss", ["byol", "cola", "ntxent"])
def test_training_starts_from_the_random_init_baseline(loss, toy, tmp_path, monkeypatch):
    """Whatever the objective (with or without parameters of its own), step 0 sees the weights that the
    embed stage rebuilds as its random-init baseline: torch.manual_seed(seed); build_model(hparams)."""
    from singer_ssl.model.folder import build_model

    seen = []
    real = Trainer.train_step

    def spy(self, batch, step):
        if step == 0:
            seen.append({k: v.clone() for k, v in self.model.state_dict().items()})
        return real(self, batch, step)

    monkeypatch.setattr(Trainer, "train_step", spy)
    root = run_root(tmp_path, toy)
    params = tiny_params(loss, max_steps=1)
    train(params, root, progress=False)
    hp = yaml.safe_load((root / "data/model/hyperparams.yaml").read_text())
    torch.manual_seed(params["seed"])
    assert_same_state(seen[0], build_model(hp).state_dict())


def test_resolve_select():
    """``auto`` follows the objective's declared selection metric (val_eer for a moving target)."""
    assert resolve_select("auto", "val_loss") == ("val_loss", "loss")
    assert resolve_select("auto", "val_eer") == ("val_eer", "eer")
    assert resolve_select("val_loss", "val_eer") == ("val_loss", "loss")
    assert resolve_select("val_eer", "val_loss") == ("val_eer", "eer")
    assert resolve_select("last", "val_eer") == ("last", "eer")
    assert resolve_select("last", "val_loss") == ("last", "loss")
    assert losses.objective_class("byol").selection_metric == "val_eer"
    assert {n for n in losses.NAMES if losses.objective_class(n).selection_metric == "val_eer"} == {"byol"}


def test_model_folder_loads_and_torchscript_matches(toy, tmp_path):
    from singer_ssl.core.frontend import LogMel
    from singer_ssl.features import FeatureStore
    from singer_ssl.model.folder import build_model

    root = run_root(tmp_path, toy)
    train(tiny_params("ntxent", max_steps=2), root, progress=False)
    folder = root / "data/model"
    hp = yaml.safe_load((folder / "hyperparams.yaml").read_text())
    store = FeatureStore(toy / "data/features/train/toy.h5")
    assert {k: hp["frontend"][k] for k in ("sample_rate", "n_fft", "hop", "n_mels")} == \
        {k: store.attrs[k] for k in ("sample_rate", "n_fft", "hop", "n_mels")}
    model = build_model(hp)
    model.load_state_dict(load_state(root))
    model.eval()
    wave = 0.1 * torch.randn(3, 8000, generator=torch.Generator().manual_seed(1))
    scripted = torch.jit.load(str(folder / "model.ts"))
    with torch.no_grad():
        eager = model(wave)
        torch.testing.assert_close(scripted(wave), eager, atol=1e-5, rtol=1e-5)
        # independent path: features front end -> standardise with the stored stats -> encoder
        logmel = LogMel.from_attrs(store.attrs)(wave)
        norm = hp["normalization"]
        x = ((logmel - independent_centre(logmel, norm)) / norm["std"]).unsqueeze(1)
        torch.testing.assert_close(model.encoder(x), eager, atol=1e-5, rtol=1e-5)


def test_byol_steps_match_a_hand_written_reference():
    """Trainer + BYOL objective vs BYOL written out here: predictor on each view, normalised MSE to the
    teacher's other view, Adam, then teacher <- tau teacher + (1 - tau) student with the cosine schedule."""
    import torch.nn.functional as F

    model, _, batch = _ddp_setup("ntxent", 8)
    objective = losses.get("byol", dim=8, predictor_hidden=16, tau_base=0.9)
    teacher = copy.deepcopy(model).requires_grad_(False)
    ref_model, ref_pred, ref_teacher = copy.deepcopy(model), copy.deepcopy(objective.predictor), copy.deepcopy(model)
    unit = TrainUnit(model, objective)
    trainer = Trainer(unit, torch.optim.Adam(unit.parameters(), lr=1e-2), torch.device("cpu"), teacher=teacher,
                      total_steps=4)
    ref_opt = torch.optim.Adam([*ref_model.parameters(), *ref_pred.parameters()], lr=1e-2)
    x = ((torch.cat([batch["x1"], batch["x2"]]) + 3.0) / 2.0).unsqueeze(1)  # model mean -3, std 2
    for k in range(2):
        trainer.train_step(batch, k)
        z = ref_model.head(ref_model.encoder(x))
        with torch.no_grad():
            t = F.normalize(ref_teacher.head(ref_teacher.encoder(x)), dim=1)
        q1, q2 = F.normalize(ref_pred(z[:8]), dim=1), F.normalize(ref_pred(z[8:]), dim=1)
        loss = (((q1 - t[8:]) ** 2).mean() + ((q2 - t[:8]) ** 2).mean()) / 2
        ref_opt.zero_grad()
        loss.backward()
        ref_opt.step()
        tau = 1 - (1 - 0.9) * (math.cos(math.pi * k / 4) + 1) / 2
        with torch.no_grad():
            for pt, ps in zip(ref_teacher.parameters(), ref_model.parameters()):
                pt.mul_(tau).add_((1 - tau) * ps)
    for got, want in ((model, ref_model), (objective.predictor, ref_pred), (teacher, ref_teacher)):
        for (name, a), b in zip(got.named_parameters(), want.parameters()):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


class TinyMomentumObjective(losses.Objective):
    """A momentum method declared only by its attributes (as MoCo or DINO would be): a teacher with
    τ₀ = 0.5, a momentum pair of its own (a DINO-like head), the moving-target selection metric."""

    momentum_tau = 0.5
    selection_metric = "val_eer"

    def __init__(self, dim: int = 8):
        super().__init__()
        self.online_head = torch.nn.Linear(dim, dim)
        self.momentum_head = copy.deepcopy(self.online_head).requires_grad_(False)
        self.seen_targets = 0

    def momentum_pairs(self):
        return [(self.online_head, self.momentum_head)]

    def forward(self, z1, z2, labels=None, targets=None):
        assert targets is not None and targets[0].shape == z1.shape  # the loop passes the teacher's views
        self.seen_targets += 1
        t1, t2 = (self.momentum_head(t) for t in targets)
        return ((self.online_head(z1) - t2) ** 2).mean() + ((self.online_head(z2) - t1) ** 2).mean()


def test_declared_momentum_objective_drives_the_teacher_without_loop_changes():
    """The loop reads only the declarations: it keeps a teacher, passes targets and EMA-updates every
    (online, momentum) pair with the cosine τ schedule from momentum_tau; no teacher otherwise."""
    model, _, batch = _ddp_setup("ntxent", 8)
    objective = TinyMomentumObjective(8)
    unit = TrainUnit(model, objective)
    trainer = Trainer(unit, torch.optim.SGD(unit.parameters(), lr=0.1), torch.device("cpu"), total_steps=4)
    assert trainer.teacher is not None and trainer.teacher is not model
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    for step in range(2):
        teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
        head_before = {k: v.clone() for k, v in objective.momentum_head.state_dict().items()}
        result = trainer.train_step(batch, step)
        tau = losses.tau_schedule(step, 4, 0.5)
        assert result.tau == pytest.approx(tau)
        for name, p in model.named_parameters():
            want = tau * teacher_before[name] + (1 - tau) * p.detach()
            torch.testing.assert_close(trainer.teacher.state_dict()[name], want, msg=name)
        for name, p in objective.online_head.named_parameters():
            torch.testing.assert_close(objective.momentum_head.state_dict()[name],
                                       tau * head_before[name] + (1 - tau) * p.detach(), msg=name)
    assert objective.seen_targets == 2
    assert resolve_select("auto", TinyMomentumObjective.selection_metric) == ("val_eer", "eer")
    plain = Trainer(TrainUnit(copy.deepcopy(model), losses.get("ntxent")), torch.optim.SGD(model.parameters(), lr=0.1),
                    torch.device("cpu"))
    assert plain.teacher is None and plain.train_step(batch, 0).tau is None


@pytest.mark.parametrize("loss, kind", [("ntxent", RandomBatches), ("ge2e", SingerBatches),
                                        ("semisupcon", SemiSupervisedBatches)])
def test_declared_sampler_drives_the_batches(loss, kind, toy, tmp_path):
    data = plan_data(TrainConfig.from_params(tiny_params(loss)), pipeline_paths(run_root(tmp_path, toy)), Dist())
    assert type(data.train_plan) is kind and type(data.val_plan) is kind
    assert losses.objective_class(loss).sampler == {RandomBatches: "random", SingerBatches: "singers",
                                                    SemiSupervisedBatches: "semisupervised"}[kind]


def test_objective_built_once_per_run(toy, tmp_path, monkeypatch):
    built = []
    real_build = losses.ObjectiveSpec.build
    monkeypatch.setattr(losses.ObjectiveSpec, "build",
                        lambda self, dim=None: built.append(dim) or real_build(self, dim))
    params = tiny_params("byol", max_steps=1)
    cfg = TrainConfig.from_params(params)
    assert built == []  # validating the configuration builds nothing
    training_run.train(cfg, pipeline_paths(run_root(tmp_path, toy)), progress=False)
    assert built == [params["head"]["dim"]]


# ---------------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_LOSSES = ("ntxent", "vicreg", "cola", "ge2e")


def _ddp_setup(loss: str, batch: int):
    """Same initial weights and the same global batch in every process."""
    from singer_ssl.core.frontend import LogMel
    from singer_ssl.encoders.lstm import LSTMEncoder
    from singer_ssl.model.heads import make_head
    from singer_ssl.model.singer_model import SingerModel

    torch.manual_seed(0)
    model = SingerModel(LogMel(8000, 256, 64, 8), LSTMEncoder(n_mels=8, hidden=16, layers=1, embedding_dim=16),
                        make_head("silu_linear", 16, 8), mean=-3.0, std=2.0)
    objective = losses.get(loss, dim=8)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(batch, 8, 20, generator=g) - 3, torch.randn(batch, 8, 20, generator=g) - 3
    labels = torch.arange(batch) // 2  # 2 items per singer: valid GE2E batches (singer-major, contiguous)
    return model, objective, {"x1": x1, "x2": x2, "labels": labels}


def _grads_after_step(loss: str, batch: dict, model, objective, rank: int, world: int):
    unit = TrainUnit(model, objective)
    opt = torch.optim.Adam(unit.parameters(), lr=1e-3)
    trainer = Trainer(unit, opt, torch.device("cpu"), rank=rank, world_size=world)
    b = len(batch["x1"]) // world
    local = {k: v[rank * b:(rank + 1) * b] for k, v in batch.items()}
    result = trainer.train_step(local, 0)
    return result.loss, {n: p.grad.clone() for n, p in unit.named_parameters() if p.grad is not None}


def _ddp_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        out = {}
        for loss in DDP_LOSSES:
            model, objective, batch = _ddp_setup(loss, 8)
            value, grads = _grads_after_step(loss, batch, model, objective, rank, world)
            out[loss] = value, {k: g.numpy() for k, g in grads.items()}  # numpy: no shared-memory handles
        queue.put((rank, out))
    finally:
        dist.destroy_process_group()


def test_ddp_matches_single_process(tmp_path):
    """2 gloo processes x batch 4 == 1 process x batch 8: same loss and same gradients (x world rule)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=3 * 3600) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    for loss in DDP_LOSSES:
        model, objective, batch = _ddp_setup(loss, 8)
        ref_loss, ref_grads = _grads_after_step(loss, batch, model, objective, 0, 1)
        for rank in (0, 1):
            got_loss, got_grads = results[rank][loss]
            assert got_loss == pytest.approx(ref_loss, rel=1e-5), loss
            assert got_grads.keys() == ref_grads.keys(), loss
            for name, g in ref_grads.items():
                torch.testing.assert_close(torch.from_numpy(got_grads[name]), g, atol=1e-6, rtol=1e-4,
                                           msg=f"{loss}: {name}")


def _train_worker(rank: int, world: int, port: int, params: dict, root: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(params, root, progress=False)


def test_ddp_train_end_to_end(toy, tmp_path):
    """torchrun-style env: two CPU processes train; rank 0 alone writes; step-1 loss = 1-process loss."""
    import multiprocessing as mp

    params = tiny_params("ntxent", max_steps=2)
    single = run_root(tmp_path, toy, "single")
    train(params, single, progress=False)
    root = run_root(tmp_path, toy, "ddp")
    ctx = mp.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_train_worker, args=(r, 2, port, params, str(root))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=3 * 3600)
        assert p.exitcode == 0
    assert (root / "data/model/model.ts").exists()
    assert read_metric(root, "train/loss")[0][1] == pytest.approx(read_metric(single, "train/loss")[0][1], rel=1e-5)


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("change, message", [
    ({"loss": "simclr"}, r"unknown loss 'simclr'; valid choices: .*ntxent"),
    ({"encoder": "wav2vec"}, r"unknown encoder 'wav2vec'; valid choices: .*samplecnn"),
    ({"augment.spectrogram": {"mixupp": {"p": 1}}}, r"mixupp.*valid choices"),
    ({"encoder": "samplecnn", "augment.spectrogram": {"mixup": {"p": 0.5}}}, r"takes waveforms.*mixup"),
    ({"train.batch_size": 1}, r"train.batch_size: expected an integer >= 2, got 1"),
    ({"train.optimiser": "sgd"}, r"train.optimiser: unknown parameter; valid keys of train: .*optimizer"),
    ({"train.select": "best"}, r"train.select: expected one of auto, val_loss, val_eer, last, got 'best'"),
    ({"head.kind": "mlp3"}, r"head.kind: expected one of silu_linear, mlp, mlp_nobias, none, got 'mlp3'"),
    ({"encoders.lstm": {"hidden_size": 8}}, r"encoders.lstm: unknown parameter\(s\) hidden_size"),
    ({"losses.ntxent": {"tau": 0.1}}, r"losses.ntxent: unknown parameter\(s\) 'tau'"),
    ({"train.epochs": None, "train.max_steps": None}, r"both null"),
    ({"train.device": "cuda:7"} if not torch.cuda.is_available() else {"train.device": "tpu"}, r"train.device"),
    ({"train.lr": 0}, r"train.lr: expected a number > 0.0, got 0"),
    ({"train.amp": "yes"}, r"train.amp: expected true or false, got 'yes'"),
    ({"train.val_fraction": 1.0}, r"train.val_fraction: expected a number >= 0.0 and < 1.0, got 1.0"),
    ({"train.patience": 0}, r"train.patience: expected an integer >= 1, got 0"),
    ({"train": ["batch_size", 8]}, r"train: expected a mapping"),
    ({"seed": -1}, r"seed: expected an integer >= 0, got -1"),
    ({"head.dim": 0}, r"head.dim: expected an integer >= 1, got 0"),
    ({"head.size": 3}, r"head.size: unknown parameter"),
    ({"augment.crop_seconds": -1}, r"augment.crop_seconds"),
    ({"losses.ge2e": {"batch": {"speakers": 2}}, "loss": "ge2e"}, r"losses.ge2e.batch: unknown key\(s\) 'speakers'"),
    ({"losses.ntxent": 0.2}, r"losses.ntxent: expected a mapping"),
    ({"encoders.lstm": [16]}, r"encoders.lstm: expected a mapping"),
    ({"datasets": {"test": {"t": {"path": "x"}}}}, r"no training dataset.*datasets.train"),
])
def test_config_errors_before_any_work(change, message):
    params = tiny_params()
    for key, value in change.items():
        node = params
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    with pytest.raises(ConfigError, match=message) as err:
        TrainConfig.from_params(params)
    assert "\n" not in str(err.value)  # one line


def test_stage_script_reports_a_bad_parameter_on_one_line(tmp_path):
    """stages/train.py: paths from the command line, a bad parameter -> `error: train: ...`, exit status 1."""
    import subprocess
    import sys

    params = tiny_params(batch_size=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = [str(tmp_path / d) for d in ("features", "segments", "model", "checkpoints", "plots")]
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), *out, "--params",
                           str(tmp_path / "params.yaml")], capture_output=True, text=True, timeout=3 * 3600)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: train: train.batch_size: expected an integer >= 2, got 1"
    assert not any((tmp_path / d).exists() for d in ("model", "checkpoints", "plots"))


def test_stage_script_trains_with_the_paths_it_is_given(toy, tmp_path):
    """The dvc.yaml command form: every path on the command line, one summary line on stdout."""
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(max_steps=2)))
    data = pipeline_paths(toy)
    out = [str(tmp_path / d) for d in ("model", "checkpoints", "plots")]
    proc = subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), str(data.features), str(data.segments),
                           *out, "--params", str(tmp_path / "params.yaml")], capture_output=True, text=True,
                          timeout=3 * 3600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("train: ntxent/lstm, 2 steps")
    assert (tmp_path / "model" / "model.ts").is_file() and (tmp_path / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "plots" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    first = {f: (tmp_path / "model" / f).read_bytes() for f in ("model.pt", "model.ts", "hyperparams.yaml")}
    # `dvc repro -f train` in another process (other hash seed): the fingerprint matches (so the message
    # is about the finished run), the run trains again, and writes the very same bytes
    again = subprocess.run(proc.args, capture_output=True, text=True, timeout=3 * 3600, cwd=tmp_path,
                           env={**os.environ, "PYTHONHASHSEED": "4242"})
    assert again.returncode == 0, again.stderr
    assert "holds a finished run" in again.stderr and "training from scratch" in again.stderr
    assert {f: (tmp_path / "model" / f).read_bytes() for f in first} == first


def test_config_reads_only_its_own_sections():
    """Garbage in another stage's section (or another objective's/encoder's) never fails the train stage."""
    params = tiny_params()
    reference = TrainConfig.from_params(params)
    params.update(evaluate="garbage", embed={"batch_size": -3, "typo": 1}, features=5, segment=None, trials=[1],
                  corpus={"n_train_singers": "many"})
    params["losses"]["vicreg"] = {"not_a_parameter": 1}
    params["encoders"]["crnn"] = "nonsense"
    assert TrainConfig.from_params(params) == reference


def test_config_keeps_numbers_as_written():
    """hyperparams.yaml records train.* as written: ints stay ints, YAML 1.1 strings become floats."""
    tr = TrainConfig.from_params(tiny_params(warmup_epochs=0, lr="1e-3")).train
    assert tr.warmup_epochs == 0 and isinstance(tr.warmup_epochs, int)
    assert tr.lr == 1e-3 and isinstance(tr.lr, float)


def test_data_dependent_errors(toy, tmp_path):
    root = run_root(tmp_path, toy)
    params = tiny_params()
    params["augment"]["crop_seconds"] = 1.5
    with pytest.raises(ConfigError, match=r"crop_seconds \(1.5 s\) is longer than the training segments \(1 s\)"):
        plan_data(TrainConfig.from_params(params), pipeline_paths(root), Dist())
    with pytest.raises(ConfigError, match=r"batch size 64 is larger than the 24 segments"):
        plan_data(TrainConfig.from_params(tiny_params(batch_size=64)), pipeline_paths(root), Dist())
    unlabelled = tmp_path / "unlabelled"
    make_training_set(unlabelled, labelled=False)
    with pytest.raises(ConfigError, match=r"loss 'supcon' needs singer labels.*0 known singer"):
        plan_data(TrainConfig.from_params(tiny_params("supcon")), pipeline_paths(unlabelled), Dist())
    gone = tmp_path / "gone"
    paths = make_training_set(gone, n_singers=3)
    (paths["segments"] / "singer01" / "song1_002.wav").unlink()
    with pytest.raises(ConfigError, match=r"1 training segment file\(s\) .* missing, e.g. .*song1_002.wav"):
        plan_data(TrainConfig.from_params(tiny_params()), pipeline_paths(gone), Dist())
    # an SSL loss is fine without labels: validation holds out source recordings instead
    data = plan_data(TrainConfig.from_params(tiny_params("ntxent")), pipeline_paths(unlabelled), Dist())
    assert data.val_unit == "source recording" and data.n_val > 0


# ---------------------------------------------------------------------------------------------- data + samplers


def test_segment_table_pools_statistics_over_datasets(tmp_path):
    from singer_ssl.features import FeatureStore

    make_training_set(tmp_path, "a", n_singers=2, seed=1)
    make_training_set(tmp_path, "b", n_singers=3, segments_per_source=2, seed=2)
    table = table_of(tmp_path, ["a", "b"])
    values = np.concatenate([np.stack([FeatureStore(tmp_path / f"data/features/train/{n}.h5")[i]
                                       for i in range(len(FeatureStore(tmp_path / f"data/features/train/{n}.h5")))])
                             .ravel() for n in ("a", "b")]).astype(np.float64)
    assert table.mean == pytest.approx(values.mean(), rel=1e-6)
    assert table.std == pytest.approx(values.std(), rel=1e-5)
    assert len(table) == 2 * 2 * 3 + 3 * 2 * 2
    assert table.singer_names == ["a/singer00", "a/singer01", "b/singer00", "b/singer01", "b/singer02"]
    assert table.segment_seconds == pytest.approx(1.0)


def test_split_holds_out_whole_singers(toy):
    table = table_of(toy, ["toy"])
    tr, va, unit = split_by_singer(table, 0.34, seed=123)
    assert unit == "singer"
    assert set(table.singer[tr]).isdisjoint(table.singer[va])
    assert len(set(table.singer[va])) == 2 and len(tr) + len(va) == len(table)
    tr2, va2, _ = split_by_singer(table, 0.34, seed=123)
    assert np.array_equal(va, va2)


@pytest.mark.parametrize("views", ["file", "clip"])
def test_views(toy, views):
    table = table_of(toy, ["toy"])
    logmel = ViewDataset(table, "logmel", views, crop_samples=4000)
    wave = ViewDataset(table, "wave", views, crop_samples=4000)
    rng = np.random.default_rng(0)
    for index in rng.choice(len(table), 10, replace=False):
        key = (1, 0, 0, 0, int(index))
        v1, v2, label = logmel[(int(index), 7, *key)]
        assert label == 7 and v1.shape == v2.shape == (16, 1 + 4000 // 64)
        w1, w2, _ = wave[(int(index), 7, *key)]
        assert w1.shape == w2.shape == (4000,)
        assert np.array_equal(wave[(int(index), 7, *key)][0], w1)  # keyed RNG: reproducible
        # view 2 comes from a different segment of the same source recording ('file') or the same one ('clip')
        second = logmel.partner(int(index), np.random.default_rng(list(key))) if views == "file" else int(index)
        assert table.source[second] == table.source[index]
        assert second != index if views == "file" else second == index
        # each log-mel view is a frame crop of its segment (checked against the store directly)
        for view, seg in ((v1, int(index)), (v2, second)):
            item = table.stores[0][seg]
            width = view.shape[1]
            assert any(np.allclose(item[:, s:s + width], view) for s in range(item.shape[1] - width + 1))


def test_ge2e_and_semisup_batches():
    labels = np.repeat(np.arange(6), 5)  # 6 singers x 5 segments
    pool = np.arange(30)
    plan = SingerBatches(pool, labels, singers=3, utterances=4, seed=0)
    for rows in plan.batches(0, 5):
        idx, lab = rows[:, 0], rows[:, 1]
        assert np.array_equal(lab, labels[idx]) and len(set(idx)) == 12
        assert [len(set(lab[i * 4:(i + 1) * 4])) for i in range(3)] == [1, 1, 1] and len(set(lab)) == 3
    with pytest.raises(ConfigError, match="only 6 such singers"):
        SingerBatches(pool, labels, singers=7, utterances=4, seed=0)
    semi = SemiSupervisedBatches(pool, labels, batch_size=10, p_s=0.5, b_s=0.5, seed=0)
    assert len(semi.labelled) == 15
    for rows in semi.batches(0, 4):
        labelled = rows[rows[:, 1] >= 0]
        assert len(labelled) == 5 and set(labelled[:, 0]) <= set(semi.labelled)
        assert np.array_equal(labelled[:, 1], labels[labelled[:, 0]])
        assert (rows[:, 1] == -1).sum() == 5


def test_batch_stream_shards_and_resumes():
    labels = np.zeros(40, dtype=np.int64)
    plan = RandomBatches(np.arange(40), labels, batch_size=8, seed=3)
    full = list(BatchStream(plan, steps_per_epoch=4, start_step=0, stop_step=10))
    shards = [list(BatchStream(plan, 4, 0, 10, rank=r, world_size=2)) for r in range(2)]
    for step, batch in enumerate(full):
        assert shards[0][step] + shards[1][step] == batch
        assert len(set(s[0] for s in batch)) == 8  # no repeat within a batch
        assert all(s[4] == step // 4 and s[5] == step % 4 for s in batch)  # keys: (epoch, batch)
    assert list(BatchStream(plan, 4, 6, 10)) == full[6:]
    epoch0 = sorted(s[0] for b in full[:4] for s in b)
    assert epoch0 == sorted(set(epoch0))  # one pass: each segment at most once per 32 items


# ---------------------------------------------------------------------------------------------- monitors + checkpoints


def test_monitors_against_direct_formulas():
    # in-batch trials: positives (z1_i, z2_i), negatives (z1_i, z2_{i+1}); unit vectors on a circle.
    # Two positives are 0.1 rad apart (cos 0.995), one is 3 rad apart (cos -0.99) and scores below every
    # negative, which all score below 0.995: ROC (0,0) (0,2/3) ... (1,2/3) (1,1) -> EER = 1/3.
    angles = np.array([0.0, 2.0, 4.0])
    shifted = angles + [0.1, 0.1, 3.0]
    z1 = torch.tensor(np.stack([np.cos(angles), np.sin(angles)], 1), dtype=torch.float32)
    z2 = torch.tensor(np.stack([np.cos(shifted), np.sin(shifted)], 1), dtype=torch.float32)
    neg = [float(torch.dot(z1[i], z2[(i + 1) % 3])) for i in range(3)]
    assert -0.99 < min(neg) and max(neg) < 0.995
    assert batch_monitors(z1, z2)["eer"] == pytest.approx(100 / 3, abs=1e-3)
    assert batch_monitors(z1, z1 * 2.0)["eer"] == pytest.approx(0.0)  # cosine: scale-free, positives = 1
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    a = (z1 / z1.norm(dim=1, keepdim=True)).numpy()
    b = (z2 / z2.norm(dim=1, keepdim=True)).numpy()
    assert alignment(z1, z2) == pytest.approx(np.mean(np.sum((a - b) ** 2, axis=1)), rel=1e-5)

    def unif(u):
        d = [np.sum((u[i] - u[j]) ** 2) for i in range(len(u)) for j in range(i + 1, len(u))]
        return np.log(np.mean(np.exp(-2 * np.array(d))))

    assert uniformity(z1, z2) == pytest.approx((unif(a) + unif(b)) / 2, rel=1e-5)


def test_fingerprint_ignores_runtime_knobs_only():
    def fp(params: dict, data: str = "data") -> str:
        return ckpt.fingerprint(TrainConfig.from_params(params), data)

    params = tiny_params()
    base = fp(params)
    for key, value in (("num_workers", 4), ("device", "cpu"), ("log_every", 3), ("checkpoint_every", 7)):
        p = copy.deepcopy(params)
        p["train"][key] = value
        assert fp(p) == base
    for change in (lambda p: p["train"].update(lr=0.5), lambda p: p.update(seed=1),
                   lambda p: p["losses"]["ntxent"].update(temperature=0.5),
                   lambda p: p["augment"].update(views="clip")):
        p = copy.deepcopy(params)
        change(p)
        assert fp(p) != base
    assert fp(params, "other data") != base
    p = copy.deepcopy(params)
    p["losses"]["vicreg"]["inv_weight"] = 1.0  # another loss's parameters do not matter
    assert fp(p) == base


def test_truncate_live_logs(tmp_path):
    d = tmp_path / "plots" / "metrics" / "train"
    d.mkdir(parents=True)
    (d / "loss.tsv").write_text("timestamp\tstep\tloss\n1\t1\t0.5\n2\t2\t0.4\n3\t3\t0.3\n")
    ckpt.truncate_live_logs(tmp_path, 2)
    assert (d / "loss.tsv").read_text() == "timestamp\tstep\tloss\n1\t1\t0.5\n2\t2\t0.4\n"
