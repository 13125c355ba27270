"""README "Published encoders as a baseline", run as written through DVC on a small generated project.

``dvc exp run -S encoder=vgglike -S +encoders.vgglike.init=published:<VGG_best.pth> -S train.max_steps=0
-S features.n_mels=96`` (plus a small corpus and light evaluation), then the same for ``crnn`` under
``train.input_scaling: none``. The checkpoints have the published files' exact layout (names, order, shapes,
dtypes: :data:`tests.synthetic.PUBLISHED_LAYOUTS`) with seeded random weights. Checked: the run succeeds, the
model folder records and applies Fonseca et al. 2021's input convention (standardised log-mel times sqrt(N))
whatever ``train.input_scaling``, the tracked training logs are rewritten rather than deleted, and a second
``dvc repro`` has nothing to do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from tests.synthetic import write_published_checkpoint
from tests.test_pipeline_e2e import ROOT, _run, _stages_run, clone_project
from tests.test_train import independent_centre

pytestmark = pytest.mark.slow

#: Fonseca et al. 2021's input gain: sqrt(N), N = log-mel values of FSDnoisy18k's noisy set (38.8 h x 100 frames/s x
#: 96 mels), re-derived here rather than imported
GAIN = math.sqrt(38.8 * 3600 * 100 * 96)
SMALL = ["-S", "corpus.n_train_singers=5", "-S", "corpus.n_test_singers=3", "-S", "corpus.n_ood_singers=3",
         "-S", "corpus.songs_per_singer=2", "-S", "corpus.test_songs_per_singer=3", "-S", "corpus.min_seconds=8.0",
         "-S", "corpus.max_seconds=8.0", "-S", "train.batch_size=4", "-S", "trials.n_pairs=200",
         "-S", "embed.random_inits=1", "-S", "embed.invariance=null", "-S", "evaluate.bootstrap=20",
         "-S", "evaluate.mnr_queries=50", "-S", "evaluate.probe.runs=1", "-S", "evaluate.probe.max_epochs=5",
         "-S", "evaluate.tsne.max_points=20", "-S", "evaluate.tsne.perplexity=5"]
TRAIN_LOGS = "plots/train/"


def readme_command(encoder: str, checkpoint: Path) -> list[str]:
    """The README's command for ``encoder`` (its ``...`` front-end suggestions left out)."""
    return ["dvc", "exp", "run", "-S", f"encoder={encoder}", "-S", f"+encoders.{encoder}.init=published:{checkpoint}",
            "-S", "train.max_steps=0", "-S", "features.n_mels=96"]


def tracked_logs(project: Path) -> set[str]:
    out = _run(["git", "ls-files", TRAIN_LOGS], project)
    return {line for line in out.splitlines() if line}


def model_matches_published(project: Path, encoder: str, checkpoint: Path, scaling: str) -> dict:
    """The model folder's encoder holds the checkpoint's weights and is fed its convention: log-mel, minus the
    item's centre (params.yaml's ``item_loud``, offset included) or the dataset mean, over the dataset std, times
    sqrt(N). Returns hyperparams."""
    from singer_ssl import encoders
    from singer_ssl.model.folder import load_model_folder

    model, hp = load_model_folder(project / "data/model")
    norm = hp["normalization"]
    published = encoders.load_published(encoder, checkpoint).encoder
    wave = 0.1 * torch.randn(2, 44100 * 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x = model.frontend(wave)
        assert norm.get("scaling", "dataset_std") == scaling
        want = published(((x - independent_centre(x, norm)) / norm["std"] * GAIN)[:, None])
        torch.testing.assert_close(model(wave), want, rtol=1e-4, atol=1e-4)
    return hp


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A clone with the committed training logs (what the README user has), no data."""
    assert (ROOT / "plots/train/plots/metrics/train/loss.tsv").is_file()
    return clone_project(tmp_path_factory.mktemp("published") / "repo", keep=(TRAIN_LOGS,))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    for name in ("VGG_best.pth", "CRNN_best.pth"):
        write_published_checkpoint(folder / name, seed=len(name))
    return folder


def test_readme_published_vgglike_then_crnn(project: Path, checkpoints: Path):
    before = tracked_logs(project)
    assert {"plots/train/metrics.json", "plots/train/plots/metrics/train/loss.tsv",
            "plots/train/plots/metrics/val/eer.tsv"} <= before

    vgg = checkpoints / "VGG_best.pth"
    out = _run(readme_command("vgglike", vgg) + SMALL, project)
    assert {"train", "embed@builtin-test", "evaluate@builtin-test"} <= _stages_run(out)
    assert "0 steps (train.max_steps: 0)" in out and "gain 3.662e+04" in out
    hp = model_matches_published(project, "vgglike", vgg, "item_loud")  # params.yaml's default scaling
    assert hp["normalization"]["scaling"] == "item_loud" and hp["normalization"]["gain"] == pytest.approx(GAIN)
    assert hp["encoder"]["init"] == f"published:{vgg}" and hp["training"]["steps"] == 0
    # nothing tracked is lost: every committed log file is rewritten with the step-0 row
    for rel in before:
        assert (project / rel).is_file(), rel
    assert json.loads((project / "plots/train/metrics.json").read_text())["step"] == 0
    loss = (project / "plots/train/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss[0] == "step\tloss" and [r.split("\t")[0] for r in loss[1:]] == ["0"]
    assert json.loads((project / "metrics/builtin-test.json").read_text())["trials"] > 0

    crnn = checkpoints / "CRNN_best.pth"
    out = _run(readme_command("crnn", crnn) + SMALL + ["-S", "train.input_scaling=none"], project)
    assert _stages_run(out) == {"train", "embed@builtin-test", "evaluate@builtin-test", "embed@builtin-ood",
                                "evaluate@builtin-ood", "embed-train@builtin-train"}, out
    hp = model_matches_published(project, "crnn", crnn, "dataset_std")  # raw log-mel was never the convention
    assert "scaling" not in hp["normalization"] and hp["normalization"]["gain"] == pytest.approx(GAIN)
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["input_scaling"] == "none"

    assert not _stages_run(_run(["dvc", "repro"], project))  # the declared outputs are complete and stable
