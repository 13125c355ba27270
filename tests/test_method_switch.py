"""Switching method = switching ``loss``: every objective's config (and a 2-step run) from the default params.yaml.

README's smoke test ``dvc exp run -S loss=ge2e -S train.max_steps=3`` changes only ``loss``; an objective
whose sampler fixes the batch (GE2E: ``losses.ge2e.batch.singers x utterances``) defines its own batch
size and ``train.batch_size`` is then not used (singer_ssl.training.config.resolve_batch_size).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from singer_ssl import losses
from singer_ssl.core.errors import ConfigError
from singer_ssl.training import run as training_run
from singer_ssl.training.config import TrainConfig
from tests.synthetic import make_training_set, pipeline_paths

REPO = Path(__file__).parents[1]
DEFAULTS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def with_loss(name: str, params: dict | None = None) -> dict:
    out = copy.deepcopy(DEFAULTS if params is None else params)
    out["loss"] = name
    return out


@pytest.mark.parametrize("name", losses.NAMES)
def test_every_objective_configures_from_the_defaults_with_only_loss_changed(name, capsys):
    cfg = TrainConfig.from_params(with_loss(name))
    err = capsys.readouterr().err
    section = DEFAULTS["losses"].get(name) or {}
    if "singers" in (section.get("batch") or {}):  # the sampler fixes the batch: singers x utterances
        want = section["batch"]["singers"] * section["batch"]["utterances"]
        assert cfg.batch_size == cfg.train_section()["batch_size"] == want
        if want != DEFAULTS["train"]["batch_size"]:
            assert err.count("train.batch_size") == 1 and f"= {want} items" in err and "not used" in err
    else:
        assert cfg.batch_size == DEFAULTS["train"]["batch_size"] and "not used" not in err


def test_ge2e_defaults_give_eight_singers_by_four():
    """The GE2E singer encoder's composition from params.yaml: 8 singers x 4 segments = 32 per batch."""
    assert TrainConfig.from_params(with_loss("ge2e")).batch_size == 32
    agreeing = with_loss("ge2e")
    agreeing["train"]["batch_size"] = 32
    assert TrainConfig.from_params(agreeing).train == TrainConfig.from_params(with_loss("ge2e")).train


def test_ge2e_batch_options_are_still_checked():
    bad = with_loss("ge2e")
    bad["losses"]["ge2e"]["batch"] = {"singers": 8, "utterances": 4, "speakers": 2}
    with pytest.raises(ConfigError, match=r"losses.ge2e.batch: unknown key"):
        TrainConfig.from_params(bad)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    make_training_set(root)  # 6 singers x 2 songs x 3 one-second segments at 8 kHz, 16 mels
    return root


def tiny(name: str) -> dict:
    """Defaults shrunk to the toy corpus (tiny LSTM, 2 steps); train.batch_size 6 differs from GE2E's 2 x 4."""
    p = with_loss(name)
    p["datasets"] = {"train": {"toy": {"path": "data/raw/toy"}}}
    p["encoder"] = "lstm"
    p["encoders"]["lstm"] = {"hidden": 16, "layers": 1, "embedding_dim": 16}
    p["head"] = {"kind": "silu_linear", "dim": 8, "hidden": 16}
    p["losses"]["ge2e"]["batch"] = {"singers": 2, "utterances": 4}
    p["losses"]["byol"]["predictor_hidden"] = 16
    p["augment"]["crop_seconds"] = 0.5
    p["train"].update(batch_size=6, max_steps=2, epochs=100, steps_per_epoch=2, num_workers=0, checkpoint_every=2,
                      log_every=1, val_fraction=0.34, val_batches=1, patience=None, device="cpu")
    return p


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", losses.NAMES)
def test_two_steps_of_every_objective(name, toy, tmp_path):
    root = tmp_path / "run"
    (root / "data").mkdir(parents=True)
    for sub in ("features", "segments"):
        (root / "data" / sub).symlink_to(toy / "data" / sub)
    cfg = TrainConfig.from_params(tiny(name))
    assert cfg.batch_size == (8 if name == "ge2e" else 6)
    training_run.train(cfg, pipeline_paths(root), progress=False)
    hp = yaml.safe_load((root / "data" / "model" / "hyperparams.yaml").read_text())
    assert (root / "data" / "model" / "model.ts").exists() and hp
