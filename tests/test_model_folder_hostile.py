"""Hostile model folders: each corruption is one ValueError line naming the file and key (load_model),
and one ``error:`` line with a non-zero status, no traceback (``singer-ssl embed`` / ``verify``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from singer_ssl.api import load_model
from singer_ssl.cli import main as cli
from singer_ssl.model.folder import (
    ModelFolderError,
    build_model,
    read_torchscript_hyperparams,
    save_model_folder,
    torchscript_hyperparams,
)
from singer_ssl.training import checkpoint as ckpt

SR = 16000


def _hparams() -> dict:
    return {
        "frontend": {"sample_rate": SR, "n_fft": 512, "hop": 160, "n_mels": 32, "fmin": 0.0, "fmax": None,
                     "log_offset": 1e-8},
        "normalization": {"mean": -8.0, "std": 4.0},
        "encoder": {"name": "audiontt2020", "kwargs": {"n_mels": 32, "embedding_dim": 24}},
        "head": {"kind": "silu_linear", "dim": 16, "hidden": 32},
        "segment_seconds": 1.0,
        "train": {"epochs": 1},
    }


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    hp = _hparams()
    return save_model_folder(build_model(hp).eval(), hp, tmp_path_factory.mktemp("valid") / "model")


@pytest.fixture()
def folder(tmp_path, valid) -> Path:
    """A fresh copy of the valid folder, to corrupt one thing."""
    return Path(shutil.copytree(valid, tmp_path / "model"))


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("wav")
    t = np.arange(SR) / SR
    paths = []
    for f0 in (220.0, 330.0):
        p = d / f"{int(f0)}.wav"
        sf.write(p, (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32), SR)
        paths.append(p)
    return paths[0], paths[1]


def _edit_hp(folder: Path, edit) -> None:
    path = folder / "hyperparams.yaml"
    hp = yaml.safe_load(path.read_text())
    edit(hp)
    path.write_text(yaml.safe_dump(hp, sort_keys=False))


def _refused(folder: Path, *needles: str, **kwargs) -> str:
    """load_model must raise a ValueError (subclass) whose message is one line containing every needle."""
    with pytest.raises(ValueError) as info:
        load_model(folder, device="cpu", **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def _cli_refuses(capsys, folder: Path, wavs: tuple[Path, Path], tmp_path: Path, needle: str) -> None:
    """Both CLI commands: status != 0, exactly one stderr line ``error: ...`` naming ``needle``, nothing on stdout."""
    runs = (["verify", str(wavs[0]), str(wavs[1]), "--model", str(folder), "--device", "cpu"],
            ["embed", str(wavs[0]), "--model", str(folder), "--out", str(tmp_path / "e.h5"), "--device", "cpu",
             "--quiet"])
    for argv in runs:
        capsys.readouterr()
        rc = cli(argv)
        out, err = capsys.readouterr()
        assert rc != 0, argv
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
        assert "Traceback" not in err and out == ""
    assert not (tmp_path / "e.h5").exists()


# ---------------------------------------------------------------------------------- hyperparams.yaml


def test_valid_folder_loads_and_agrees_with_its_torchscript(valid):
    """The checks pass on what save_model_folder writes, eager and TorchScript, and keep the result."""
    wave = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, SR)).astype(np.float32))
    with torch.inference_mode():
        a = load_model(valid, device="cpu")(wave)
        b = load_model(valid, device="cpu", torchscript=True)(wave)
        ref = torch.jit.load(str(valid / "model.ts"))(wave)
    torch.testing.assert_close(a, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, ref)
    assert read_torchscript_hyperparams(valid / "model.ts") == torchscript_hyperparams(valid / "model.ts")


def test_missing_frontend_section(folder, wavs, tmp_path, capsys):
    _edit_hp(folder, lambda hp: hp.pop("frontend"))
    _refused(folder, "hyperparams.yaml", "'frontend'")
    _refused(folder, "hyperparams.yaml", "'frontend'", torchscript=True)
    _cli_refuses(capsys, folder, wavs, tmp_path, "'frontend'")


@pytest.mark.parametrize("key, value", [("sample_rate", "abc"), ("sample_rate", 0), ("hop", -3), ("n_mels", 1.5),
                                        ("fmax", 1e6), ("log_offset", 0), ("window", "hamming")])
def test_bad_frontend_value(folder, key, value):
    _edit_hp(folder, lambda hp: hp["frontend"].__setitem__(key, value))
    assert isinstance(pytest.raises(ModelFolderError, load_model, folder, device="cpu").value, ValueError)
    _refused(folder, "hyperparams.yaml", f"frontend.{key}")


def test_bad_sample_rate_cli(folder, wavs, tmp_path, capsys):
    _edit_hp(folder, lambda hp: hp["frontend"].__setitem__("sample_rate", "abc"))
    _cli_refuses(capsys, folder, wavs, tmp_path, "frontend.sample_rate")


@pytest.mark.parametrize("text", ["frontend: [1, 2\n", "\xff\xfe garbage"])
def test_unparsable_hyperparams(folder, text):
    (folder / "hyperparams.yaml").write_bytes(text.encode("latin-1"))
    _refused(folder, "hyperparams.yaml")


def test_bad_normalization_and_segment(folder):
    _edit_hp(folder, lambda hp: hp["normalization"].__setitem__("std", 0))
    _refused(folder, "normalization.std")
    _edit_hp(folder, lambda hp: (hp["normalization"].__setitem__("std", 4.0), hp.__setitem__("segment_seconds", -1)))
    _refused(folder, "segment_seconds")


def test_normalization_differing_from_the_weights(folder):
    """Eager loading takes mean/std from model.pt; a hyperparams.yaml that disagrees is refused (the
    mean is checked against the weights: the copy in model.ts is removed to isolate that check)."""
    (folder / "model.ts").unlink()
    _edit_hp(folder, lambda hp: hp["normalization"].__setitem__("mean", -7.0))
    msg = _refused(folder, "normalization.mean", "model.pt")
    assert "-7.0" in msg and "-8.0" in msg


# -------------------------------------------------------------------------------------------- model.pt


@pytest.mark.parametrize("content", [b"", b"these are not weights\n", b"PK\x03\x04garbage"])
def test_model_pt_not_a_state_dict(folder, wavs, tmp_path, capsys, content):
    (folder / "model.pt").write_bytes(content)
    _refused(folder, "model.pt", "not a PyTorch state dict")
    _cli_refuses(capsys, folder, wavs, tmp_path, "model.pt")


def test_model_pt_of_other_python_objects(folder):
    torch.save([torch.zeros(3)], folder / "model.pt")
    _refused(folder, "model.pt", "state dict")


def test_training_checkpoint_as_model_pt(folder, wavs, tmp_path, capsys):
    """data/checkpoints/last.pt (singer_ssl.training.run: model/optimizer/step/... entries) is refused by name."""
    model = build_model(_hparams())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, SR)).sum().backward()
    optimizer.step()
    ckpt.save(folder / "model.pt", {"fingerprint": "abc", "step": 3, "epoch": 1, "finished": True,
                                    "model": model.state_dict(), "objective": {}, "teacher": None,
                                    "optimizer": optimizer.state_dict(), "history": []})
    _refused(folder, "model.pt", "training checkpoint", "checkpoint['model']")
    _cli_refuses(capsys, folder, wavs, tmp_path, "training checkpoint")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights(folder, wavs, tmp_path, capsys, bad):
    state = torch.load(folder / "model.pt", weights_only=True)
    names = [k for k, v in state.items() if v.is_floating_point() and v.numel() > 4]
    first, later = names[1], names[-1]
    state[later].view(-1)[0] = bad
    state[first].view(-1)[2] = bad  # the first bad tensor in state-dict order is named
    torch.save(state, folder / "model.pt")
    msg = _refused(folder, "model.pt", repr(first), "NaN/inf")
    assert repr(later) not in msg
    _cli_refuses(capsys, folder, wavs, tmp_path, first)


def test_non_finite_weights_would_give_nan_embeddings(valid):
    """Why the check exists: the same NaN weights loaded without it embed to NaN (independent path)."""
    state = torch.load(valid / "model.pt", weights_only=True)
    name = next(k for k, v in state.items() if k.startswith("encoder") and v.is_floating_point() and v.numel() > 4)
    state[name].view(-1)[0] = float("nan")
    model = build_model(yaml.safe_load((valid / "hyperparams.yaml").read_text()))
    model.load_state_dict(state)
    with torch.no_grad():
        assert torch.isnan(model.eval()(torch.zeros(1, SR))).any()


# -------------------------------------------------------------------------------------------- model.ts


@pytest.mark.parametrize("content", [b"", b"not torchscript", b"PK\x05\x06" + bytes(18)])
def test_garbage_model_ts(folder, wavs, tmp_path, capsys, content):
    (folder / "model.ts").write_bytes(content)
    _refused(folder, "model.ts", torchscript=True)
    _refused(folder, "model.ts")  # eager loading compares with model.ts too: a broken folder is refused
    _cli_refuses(capsys, folder, wavs, tmp_path, "model.ts")


def test_missing_model_ts(folder):
    (folder / "model.ts").unlink()
    _refused(folder, "model.ts is missing", torchscript=True)
    assert load_model(folder, device="cpu").embedding_dim == 24  # eager needs model.pt + hyperparams.yaml only


# ------------------------------------------------------------------------ front end != trained front end


def test_hop_edit_is_refused(folder, wavs, tmp_path, capsys):
    """frontend.hop leaves no trace in model.pt (window and mel basis are non-persistent buffers) but
    model.ts carries the hyperparams it was exported with: the disagreement is named."""
    _edit_hp(folder, lambda hp: hp["frontend"].__setitem__("hop", 80))
    for ts in (False, True):
        msg = _refused(folder, "frontend.hop", "80", "160", "model.ts", torchscript=ts)
        assert "hyperparams.yaml" in msg
    _cli_refuses(capsys, folder, wavs, tmp_path, "frontend.hop")


def test_hop_edit_would_shift_embeddings(valid):
    """Why the check exists: rebuilt with hop 80, the same weights give other embeddings."""
    hp = yaml.safe_load((valid / "hyperparams.yaml").read_text())
    state = torch.load(valid / "model.pt", weights_only=True)
    wave = torch.from_numpy(np.random.default_rng(1).uniform(-0.5, 0.5, (1, SR)).astype(np.float32))
    embs = []
    for hop in (160, 80):
        hp["frontend"]["hop"] = hop
        model = build_model(hp)
        model.load_state_dict(state)
        with torch.no_grad():
            embs.append(model.eval()(wave))
    assert not torch.allclose(embs[0], embs[1], atol=1e-3)


@pytest.mark.parametrize("section, key, value", [("frontend", "fmin", 30.0), ("frontend", "n_fft", 1024),
                                                 ("encoder", "name", "lstm"), ("head", "dim", 8)])
def test_any_build_key_differing_from_model_ts(folder, section, key, value):
    _edit_hp(folder, lambda hp: hp[section].__setitem__(key, value))
    _refused(folder, f"{section}.{key}", torchscript=True)


def test_informative_sections_may_differ(folder):
    """Sections that do not change what the model computes (train, added eer_threshold) are not compared."""
    _edit_hp(folder, lambda hp: (hp["train"].__setitem__("epochs", 99), hp.__setitem__("eer_threshold", 0.5)))
    assert load_model(folder, device="cpu", torchscript=True).embedding_dim == 24


def test_n_mels_edit_is_refused_at_load(folder, wavs, tmp_path, capsys):
    """frontend.n_mels 16 for an encoder built for 32: named from model.ts's copy ..."""
    _edit_hp(folder, lambda hp: hp["frontend"].__setitem__("n_mels", 16))
    _refused(folder, "frontend.n_mels", "16", "32")
    _cli_refuses(capsys, folder, wavs, tmp_path, "frontend.n_mels")


def test_n_mels_edit_without_model_ts_fails_the_probe(folder):
    """... and, without model.ts, by the forward pass on one window of silence at load time."""
    (folder / "model.ts").unlink()
    _edit_hp(folder, lambda hp: hp["frontend"].__setitem__("n_mels", 16))
    _refused(folder, "frontend.n_mels = 16", "fails on a 16000-sample window")


# ------------------------------------------------------------------------------------------- input_sr


@pytest.mark.parametrize("input_sr", [0, -16000, True, 44.1, "48000"])
def test_bad_input_sr(valid, input_sr):
    _refused(valid, "input_sr", repr(input_sr), input_sr=input_sr)


def test_good_input_sr(valid):
    assert load_model(valid, input_sr=np.int64(48000), device="cpu").input_sr == 48000


# ------------------------------------------------------------- finite outputs, model.pt == model.ts (issue 25)


def _huge_weight(state: dict) -> str:
    """Set the first convolution's weights to 1e38 (finite: read_state_dict accepts them); returns the name."""
    name = "encoder.features.0.weight"
    state[name].fill_(1e38)
    return name


def test_huge_finite_weight_overflows_on_signal(valid):
    """Why the finite-output check exists, on a signal: finite 1e38 weights pass read_state_dict, and the
    model, built without the load checks, embeds silence to finite values but the probe signal to NaN/inf."""
    from singer_ssl.model.folder import probe_signal, read_state_dict

    state = torch.load(valid / "model.pt", weights_only=True)
    _huge_weight(state)
    torch.save(state, valid.parent / "huge.pt")
    assert read_state_dict(valid.parent / "huge.pt")  # finite tensors: accepted by the tensor check
    model = build_model(yaml.safe_load((valid / "hyperparams.yaml").read_text()))
    model.load_state_dict(state)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.zeros(1, SR))).all()
        assert not torch.isfinite(model(probe_signal(SR, SR))).all()


def test_probe_signal_is_not_silence():
    from singer_ssl.model.folder import probe_signal

    probe = probe_signal(SR, SR)
    assert probe.shape == (1, SR) and probe.dtype == torch.float32 and torch.equal(probe, probe_signal(SR, SR))
    x = probe[0].double()
    assert 0.1 < float(x.pow(2).mean().sqrt()) < 0.5 and float(x.abs().max()) < 1.0
    spectrum = torch.fft.rfft(x).abs()  # 1 s at 16 kHz: bin k is k Hz; the fundamental 220 Hz +- 2 % vibrato
    assert 200 <= int(spectrum.argmax()) <= 240


def test_weights_giving_nan_on_signal_are_refused(folder, wavs, tmp_path, capsys):
    """Issue 25 case 1: model.pt with one weight 1e38 loaded and embedded to NaN; now the load names model.pt."""
    state = torch.load(folder / "model.pt", weights_only=True)
    _huge_weight(state)
    torch.save(state, folder / "model.pt")
    _refused(folder, "model.pt", "NaN/inf", "test signal")
    _cli_refuses(capsys, folder, wavs, tmp_path, "model.pt")


def test_model_pt_weights_doubled_disagree_with_model_ts(folder, wavs, tmp_path, capsys):
    """Issue 25 case 2: model.pt x 2 (finite, same keys and shapes) loaded silently; now both files are named."""
    state = {k: v * 2 if v.is_floating_point() and k.startswith("encoder.") else v for k, v in
             torch.load(folder / "model.pt", weights_only=True).items()}
    torch.save(state, folder / "model.pt")
    for ts in (False, True):
        msg = _refused(folder, "model.pt", "model.ts", "disagree", torchscript=ts)
        assert "max abs difference" in msg
    _cli_refuses(capsys, folder, wavs, tmp_path, "disagree")


def _resave_ts(folder: Path, edit=None, carry_hyperparams: bool = True) -> None:
    """Rewrite model.ts (optionally with a weight edited, optionally without its hyperparams.yaml copy)."""
    from singer_ssl.model.folder import save_torchscript

    files = {"hyperparams.yaml": ""}
    module = torch.jit.load(str(folder / "model.ts"), _extra_files=files)
    if edit is not None:
        with torch.no_grad():
            edit(dict(module.named_parameters()))
    save_torchscript(module, folder / "model.ts", files if carry_hyperparams else None)


def test_model_ts_weight_tampered(folder, wavs, tmp_path, capsys):
    _resave_ts(folder, lambda p: p["encoder.fc.0.weight"].mul_(3.0))
    for ts in (False, True):
        _refused(folder, "model.pt", "model.ts", "disagree", torchscript=ts)
    _cli_refuses(capsys, folder, wavs, tmp_path, "disagree")


def test_resaved_model_ts_still_loads(folder):
    """The comparison keeps what agrees: re-saved without change, with or without the hyperparams copy."""
    _resave_ts(folder)
    assert load_model(folder, device="cpu", torchscript=True).embedding_dim == 24
    _resave_ts(folder, carry_hyperparams=False)
    assert load_model(folder, device="cpu").embedding_dim == 24
    assert load_model(folder, device="cpu", torchscript=True).embedding_dim == 24


@pytest.mark.parametrize("key, value", [("hop", 80), ("fmin", 300.0)])
def test_edit_without_hyperparams_in_model_ts_is_refused(folder, key, value):
    """Issue 25 case 2: a model.ts carrying no hyperparams.yaml (older export) skipped the comparison, so an
    edited frontend key loaded; now the probe comparison of model.pt and model.ts catches it."""
    _resave_ts(folder, carry_hyperparams=False)
    assert read_torchscript_hyperparams(folder / "model.ts") is None
    _edit_hp(folder, lambda hp: hp["frontend"].__setitem__(key, value))
    for ts in (False, True):
        _refused(folder, "model.pt", "model.ts", "disagree", torchscript=ts)


def test_segment_seconds_edit_without_hyperparams_in_model_ts(folder):
    """segment_seconds changes the probe window, not the weights: both copies see the same window, so
    the folder loads, and embeddings are averaged over the edited window (informative, not a model key)."""
    _resave_ts(folder, carry_hyperparams=False)
    _edit_hp(folder, lambda hp: hp.__setitem__("segment_seconds", 2.0))
    assert load_model(folder, device="cpu").window == 2 * SR


def test_model_ts_without_hyperparams_and_no_model_pt_is_refused(folder):
    _resave_ts(folder, carry_hyperparams=False)
    (folder / "model.pt").unlink()
    _refused(folder, "model.ts carries no copy of hyperparams.yaml", "model.pt is missing", torchscript=True)


def test_model_ts_only_with_its_hyperparams_loads(folder):
    (folder / "model.pt").unlink()
    assert load_model(folder, device="cpu", torchscript=True).embedding_dim == 24


class _NanAbove(torch.nn.Module):
    """Wraps a model: NaN embeddings for windows louder than ``level`` (an input-dependent overflow)."""

    def __init__(self, inner: torch.nn.Module, level: float) -> None:
        super().__init__()
        self.inner, self.level, self.embedding_dim = inner, level, inner.embedding_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return torch.where(x.abs().amax(1, keepdim=True) > self.level, torch.full_like(out, float("nan")), out)


@pytest.fixture()
def loud_nan(monkeypatch, valid, tmp_path):
    """load_model gives a model that passes the load checks but embeds loud files to NaN; a loud wav."""
    import singer_ssl.api as api

    real = api.load_model

    def patched(*args, **kwargs):
        enc = real(*args, **kwargs)
        enc.model = _NanAbove(enc.model, 0.6)
        return enc

    monkeypatch.setattr(api, "load_model", patched)
    t = np.arange(SR) / SR
    loud = tmp_path / "loud.wav"
    sf.write(loud, (0.8 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SR)
    return loud


def test_embed_file_refuses_nan_embeddings(loud_nan, valid, wavs):
    import singer_ssl.api as api

    model = api.load_model(valid, device="cpu")
    assert np.isfinite(model.embed_file(wavs[0])).all()
    with pytest.raises(ValueError, match="loud.wav: the model gives NaN/inf"):
        model.embed_file(loud_nan)


def test_cli_embed_and_verify_refuse_nan_embeddings(loud_nan, valid, wavs, tmp_path, capsys):
    """Issue 25 case 1: `embed` wrote an all-NaN file and `verify` printed `score nan` with rc 0."""
    for argv in (["verify", str(wavs[0]), str(loud_nan), "--model", str(valid), "--device", "cpu"],
                 ["embed", str(loud_nan.parent), "--model", str(valid), "--out", str(tmp_path / "e.npz"),
                  "--device", "cpu", "--quiet"]):
        capsys.readouterr()
        rc = cli(argv)
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert rc != 0 and out == "" and len(lines) == 1, (argv, out, err)
        assert lines[0].startswith("error: ") and "loud.wav" in lines[0] and "NaN/inf" in lines[0], err
    assert not (tmp_path / "e.npz").exists()
