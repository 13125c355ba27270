"""load_model / embed_files / CLI on a small model folder written by the train stage's writer."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import yaml

from singer_ssl.api import ModelFolderError, load_model
from singer_ssl.cli import main as cli
from singer_ssl.evaluation.store import read_embeddings
from singer_ssl.model.folder import build_model, save_model_folder

SR = 16000


def _hparams(dim: int = 32) -> dict:
    return {
        "frontend": {"sample_rate": SR, "n_fft": 512, "hop": 160, "n_mels": 32, "fmin": 0.0, "fmax": None,
                     "log_offset": 1e-8},
        "normalization": {"mean": -8.0, "std": 4.0},
        "encoder": {"name": "audiontt2020", "kwargs": {"n_mels": 32, "embedding_dim": dim}},
        "head": {"kind": "silu_linear", "dim": 16, "hidden": 32},
        "segment_seconds": 1.0,
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    hp = _hparams()
    out = tmp_path_factory.mktemp("m") / "model"
    save_model_folder(build_model(hp).eval(), hp, out)
    return out


def test_load_model_eager_and_torchscript_agree(model_dir):
    wave = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (3, SR)).astype(np.float32))
    eager = load_model(model_dir, device="cpu")
    ts = load_model(model_dir, device="cpu", torchscript=True)
    with torch.inference_mode():
        a, b = eager(wave), ts(wave)
    assert a.shape == (3, 32)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_input_sr_resamples_like_soxr(model_dir):
    """Feeding 48 kHz audio with input_sr=48000 ~= resampling it with soxr first (independent resampler)."""
    t = np.arange(48000) / 48000
    x48 = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1760 * t)).astype(np.float32)
    x16 = soxr.resample(x48, 48000, SR, quality="VHQ").astype(np.float32)
    with torch.inference_mode():
        e48 = load_model(model_dir, input_sr=48000, device="cpu")(torch.from_numpy(x48)[None])
        e16 = load_model(model_dir, device="cpu")(torch.from_numpy(x16)[None])
    cos = torch.nn.functional.cosine_similarity(e48, e16).item()
    assert cos > 0.999


def test_model_folder_errors(tmp_path, model_dir):
    with pytest.raises(ModelFolderError, match="not found"):
        load_model(tmp_path / "nope")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.pt").write_bytes((model_dir / "model.pt").read_bytes())
    with pytest.raises(ModelFolderError, match="hyperparams.yaml is missing"):
        load_model(broken)
    hp = _hparams(dim=64)  # another embedding size than the weights
    (broken / "hyperparams.yaml").write_text(yaml.safe_dump(hp))
    with pytest.raises(ModelFolderError, match="model.pt does not match"):
        load_model(broken)


def test_cli_embed_averages_windows_and_score(tmp_path, model_dir, capsys):
    rng = np.random.default_rng(1)
    audio = tmp_path / "audio"
    for s, f0 in (("alice", 220.0), ("bob", 330.0)):
        (audio / s).mkdir(parents=True)
        for k in range(3):
            t = np.arange(int(2.5 * 22050)) / 22050  # 2.5 s at 22.05 kHz: two 1 s windows, remainder dropped
            x = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.01 * k) * t) + 0.01 * rng.normal(size=t.size)
            sf.write(audio / s / f"take{k}.wav", x.astype(np.float32), 22050)
    (audio / "bob" / "broken.wav").write_bytes(b"not audio")
    out = tmp_path / "emb.h5"
    assert cli(["embed", str(audio), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    es = read_embeddings(out)
    assert "alice/take0.wav" in es.keys and "bob/broken.wav" not in es.keys
    assert es.singers[es.keys.index("bob/take1.wav")] == "bob"
    # independent: the mean of the two 1 s window embeddings computed by hand
    x, sr = sf.read(audio / "alice" / "take0.wav", dtype="float32")
    x = soxr.resample(x, sr, SR)
    m = load_model(model_dir, device="cpu")
    with torch.inference_mode():
        manual = m(torch.from_numpy(np.stack([x[:SR], x[SR : 2 * SR]]))).mean(0).numpy()
    np.testing.assert_allclose(es.vectors["embedding"][es.keys.index("alice/take0.wav")], manual, atol=1e-4)

    trials = tmp_path / "trials.txt"
    trials.write_text("1,alice/take0.wav,alice/take1.wav\n0,alice/take0.wav,bob/take0.wav\n"
                      "1,bob/take1.wav,bob/take2.wav\n0,alice/take2.wav,bob/take2.wav\n")
    capsys.readouterr()
    assert cli(["score", str(trials), "--embeddings", str(out)]) == 0
    assert "EER" in capsys.readouterr().out
    trials.write_text("1,alice/take0.wav,ghost.wav\n0,alice/take0.wav,bob/take0.wav\n")
    assert cli(["score", str(trials), "--embeddings", str(out)]) == 2
    assert "ghost.wav" in capsys.readouterr().err


def test_cli_embed_reads_every_pipeline_format(tmp_path, model_dir):
    """`singer-ssl embed` takes the pipeline's formats (core.audio.AUDIO_EXTENSIONS), .opus and upper case included."""
    from singer_ssl.core.audio import AUDIO_EXTENSIONS

    assert {"flac", "ogg", "opus"} <= set(AUDIO_EXTENSIONS)
    t = np.arange(48000) / 48000
    x = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    audio = tmp_path / "audio" / "alice"
    audio.mkdir(parents=True)
    sf.write(audio / "a.flac", x, 48000)
    sf.write(audio / "b.ogg", x, 48000, format="OGG", subtype="VORBIS")
    sf.write(audio / "c.opus", x, 48000, format="OGG", subtype="OPUS")
    sf.write(audio / "d.WAV", x, 48000)
    (audio / "notes.txt").write_text("not audio, not listed")
    out = tmp_path / "emb.h5"
    assert cli(["embed", str(tmp_path / "audio"), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    assert read_embeddings(out).keys == ["alice/a.flac", "alice/b.ogg", "alice/c.opus", "alice/d.WAV"]


def test_embed_files_is_exported_lazily_and_matches_the_cli(tmp_path, model_dir):
    import subprocess
    import sys

    code = ("import sys, singer_ssl; assert callable(singer_ssl.embed_files) and callable(singer_ssl.load_model); "
            "assert 'torch' not in sys.modules, 'import singer_ssl pulled in torch'")
    subprocess.run([sys.executable, "-c", code], check=True)

    import singer_ssl

    rng = np.random.default_rng(3)
    audio = tmp_path / "audio"
    audio.mkdir()
    sf.write(audio / "x.wav", (0.1 * rng.normal(size=(2 * 22050, 2))).astype(np.float32), 22050)  # stereo
    ((path, emb),) = list(singer_ssl.embed_files([audio / "x.wav"], model_dir, device="cpu"))
    assert path == str(audio / "x.wav") and emb.shape == (32,)
    out = tmp_path / "emb.h5"
    assert cli(["embed", str(audio), "--model", str(model_dir), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    np.testing.assert_array_equal(read_embeddings(out).vectors["embedding"][0], emb)
