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


# --- SingerEncoder: embed / embed_file / embed_files, attributes, README snippet -------------------------------


def _manual_mean(model, x16: np.ndarray) -> np.ndarray:
    """Independent re-derivation: the forward pass on each full 1 s window by hand, then the mean."""
    n = max(1, len(x16) // SR)
    wins = np.stack([x16[k * SR : (k + 1) * SR] for k in range(n)]) if len(x16) >= SR else x16[None]
    with torch.no_grad():
        return model.model(torch.from_numpy(np.ascontiguousarray(wins, dtype=np.float32))).mean(0).numpy()


def test_attributes_and_no_grad(model_dir):
    m = load_model(model_dir, device="cpu")
    assert (m.embedding_dim, m.sample_rate, m.window) == (32, SR, SR)
    ts = load_model(model_dir, device="cpu", torchscript=True)
    assert ts.embedding_dim == 32
    x = np.random.default_rng(0).uniform(-0.3, 0.3, 2 * SR).astype(np.float32)
    e = m.embed(torch.from_numpy(x), SR)
    assert isinstance(e, torch.Tensor) and not e.requires_grad and e.shape == (32,)
    e.numpy()  # the README's failure: a tensor that requires grad cannot be converted
    out = m.embed(x, SR)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, _manual_mean(m, x), atol=1e-5)
    np.testing.assert_allclose(e.numpy(), out, atol=1e-6)


def test_embed_shapes_and_layout_rule(model_dir):
    m = load_model(model_dir, device="cpu")
    rng = np.random.default_rng(5)
    left, right = (rng.uniform(-0.3, 0.3, int(2.5 * SR)).astype(np.float32) for _ in range(2))
    stereo = np.stack([left, right], axis=1)  # soundfile's (frames, channels)
    mono = 0.5 * (left + right)
    np.testing.assert_allclose(m.embed(stereo, SR), _manual_mean(m, mono), atol=1e-5)
    np.testing.assert_allclose(m.embed(stereo.T, SR, layout="channels_frames"), _manual_mean(m, mono), atol=1e-5)
    batch = np.stack([left, right])  # (B, S): 2 rows of 40000 samples -> a batch by the auto rule
    out = m.embed(batch, SR)
    assert out.shape == (2, 32)
    np.testing.assert_allclose(out[1], _manual_mean(m, right), atol=1e-5)
    from singer_ssl.api import _to_batch

    tiny = rng.uniform(-0.3, 0.3, (3, 8)).astype(np.float32)  # 8 columns but only 3 rows: a batch
    assert _to_batch(tiny, "auto").shape == (3, 8)
    np.testing.assert_allclose(_to_batch(tiny.T, "auto"), tiny.mean(0)[None], atol=1e-7)  # (8, 3): frames x channels
    assert _to_batch(tiny.T, "batch").shape == (8, 3)
    nine = rng.uniform(-0.3, 0.3, (SR, 9)).astype(np.float32)  # 9 columns: more than 8 channels -> a batch
    assert _to_batch(nine, "auto").shape == (SR, 9)
    with pytest.raises(ValueError, match="float samples"):
        m.embed((stereo * 32767).astype(np.int16), SR)
    with pytest.raises(ValueError, match="shape"):
        m.embed(np.zeros((2, 2, SR), np.float32), SR)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        m.embed([0.0] * SR, SR)
    with pytest.raises(ValueError, match="sr: expected"):
        m.embed(left, 0)
    with pytest.raises(ValueError, match="layout"):
        m.embed(stereo, SR, layout="planar")


def test_embed_matches_embed_file_and_the_whole_file_differs(tmp_path, model_dir):
    """embed(*sf.read(path)) == embed_file(path) (stereo, 22.05 kHz) == mean over windows by hand."""
    rng = np.random.default_rng(7)
    x = (0.1 * rng.normal(size=(int(3.4 * 22050), 2))).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, 22050)
    m = load_model(model_dir, device="cpu")
    from_file = m.embed_file(tmp_path / "x.wav")
    wave, sr = sf.read(tmp_path / "x.wav", dtype="float32")
    np.testing.assert_allclose(m.embed(wave, sr), from_file, atol=1e-6)
    mono16 = soxr.resample(wave.mean(1), sr, SR, quality="HQ").astype(np.float32)
    np.testing.assert_allclose(from_file, _manual_mean(m, mono16), atol=1e-4)
    assert m.embed_files([tmp_path / "x.wav", tmp_path / "x.wav"]).shape == (2, 32)


def test_readme_snippet_runs(tmp_path, model_dir, monkeypatch):
    """The README's 'Use a trained encoder' Python block, executed as written in a folder laid out as a finished
    default run (a model folder and a built-in test set of mixed rates and channel counts)."""
    import re
    import shutil
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use a trained encoder", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shutil.copytree(model_dir, tmp_path / "data" / "model")
    rng = np.random.default_rng(2)
    raw = tmp_path / "data" / "raw" / "builtin-test"
    for singer, name, shape, rate in (("s00", "song0", (6 * 44100, 2), 44100), ("s00", "song1", (3 * 48000,), 48000),
                                      ("s01", "song0", (SR // 2,), SR)):
        (raw / singer).mkdir(parents=True, exist_ok=True)
        sf.write(raw / singer / f"{name}.wav", (0.1 * rng.normal(size=shape)).astype(np.float32), rate)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    d = scope["model"].embedding_dim
    assert scope["emb"].shape == (d,) and scope["embs"].shape == (3, d) and scope["cosine"].shape == (3,)
    assert scope["batch"].shape == (2, d)
    np.testing.assert_allclose(scope["embs"][0], scope["emb"], atol=1e-5)  # the same file, the same embedding
    np.testing.assert_allclose(scope["batch"][0], scope["emb"], atol=1e-5)  # an array equals its file
    assert scope["cosine"][0] == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------------------------------
# embed_batch: mixed lengths and rates in one call; honest input handling


def test_embed_batch_rows_equal_embedding_each_item_alone(model_dir):
    """Lengths below, at and above the 1 s window, at three rates, in one call: each row equals the item alone
    (and, independently, the mean of model(window) over the item's own windows)."""
    model = load_model(model_dir, device="cpu")
    rng = np.random.default_rng(5)
    items = [(rng.uniform(-0.3, 0.3, int(sec * sr)).astype(np.float32), sr)
             for sec, sr in ((0.4, SR), (1.0, SR), (2.7, 22050), (1.3, 8000), (3.2, SR), (0.25, 44100))]
    with pytest.warns(UserWarning):
        batch = model.embed_batch([torch.from_numpy(x) if k % 2 else x for k, (x, _) in enumerate(items)],
                                  [sr for _, sr in items])
    assert batch.shape == (len(items), 32) and batch.dtype == np.float32
    with pytest.warns(UserWarning):
        alone = np.stack([model.embed(x, sr) for x, sr in items])
    assert np.abs(batch - alone).max() <= 1e-5
    x = soxr.resample(items[4][0], SR, SR)  # 3.2 s at the model's rate: three 1 s windows, the rest dropped
    with torch.no_grad():
        manual = model.model(torch.from_numpy(x[: 3 * SR].reshape(3, SR).copy())).mean(0).numpy()
    assert np.abs(batch[4] - manual).max() <= 1e-5
    with torch.no_grad():  # 0.4 s, shorter than a window: the whole clip, unpadded, is the one window
        manual = model.model(torch.from_numpy(soxr.resample(items[0][0], SR, SR)[None].copy()))[0].numpy()
    assert np.abs(batch[0] - manual).max() <= 1e-5
    # no padding leaks: the same item beside a much longer one gives the same row
    with pytest.warns(UserWarning):
        pair = model.embed_batch([items[0][0], rng.uniform(-0.3, 0.3, 5 * SR).astype(np.float32)], SR)
    assert np.abs(pair[0] - batch[0]).max() <= 1e-5


def test_embed_files_reuses_embed_batch_and_notes_short_clips(tmp_path, model_dir):
    model = load_model(model_dir, device="cpu")
    rng = np.random.default_rng(6)
    short, long_ = tmp_path / "short.wav", tmp_path / "long.wav"
    sf.write(short, rng.uniform(-0.3, 0.3, SR // 10).astype(np.float32), SR)
    sf.write(long_, rng.uniform(-0.3, 0.3, 2 * SR).astype(np.float32), SR)
    notes: list = []
    with pytest.warns(UserWarning, match="short.wav: short clip: 0.10 s") as record:
        out = model.embed_files([short, long_], notes=notes)
    assert len([w for w in record if "short clip" in str(w.message)]) == 1  # one warning, naming the file
    assert [n for n, _ in notes] == [str(short)] and "0.10 s" in notes[0][1]
    with pytest.warns(UserWarning):
        ref = model.embed_batch([sf.read(short, dtype="float32")[0], sf.read(long_, dtype="float32")[0]], SR)
    assert np.abs(out - ref).max() <= 1e-6


def test_encoder_minimum_is_refused_with_the_name(model_dir):
    model = load_model(model_dir, device="cpu")
    model.min_samples = 1000
    with pytest.raises(ValueError, match="clip.wav: 0.031 s is shorter than the encoder's minimum input"):
        model.embed_batch([np.zeros(500, np.float32) + 0.1], SR, names=["clip.wav"])
    with pytest.raises(ValueError, match="item 1: the waveform contains NaN"):
        model.embed_batch([np.ones(SR, np.float32) * 0.1, np.full(SR, np.nan, np.float32)], SR)


def test_missing_input_errors_before_the_model_is_loaded(tmp_path, model_dir, monkeypatch, capsys):
    import singer_ssl.api

    def never(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(singer_ssl.api, "load_model", never)
    real = tmp_path / "a.wav"
    sf.write(real, np.zeros(SR, np.float32) + 0.1, SR)
    assert cli(["verify", str(real), str(tmp_path / "gone.wav"), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err
    assert "gone.wav: unreadable: no such file" in err and err.count("\n") == 1
    listing = tmp_path / "list.txt"
    listing.write_text("gone.wav\nalso-gone.flac\n")
    assert cli(["embed", str(listing), "--model", str(model_dir), "--out", str(tmp_path / "e.npz"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "skipped gone.wav: unreadable: no such file" in err and "none of the 2 files" in err


def test_cli_embed_notes_a_short_clip(tmp_path, model_dir, capsys, monkeypatch):
    folder = tmp_path / "in" / "alice"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    sf.write(folder / "tiny.wav", rng.uniform(-0.3, 0.3, SR // 10).astype(np.float32), SR)
    sf.write(folder / "ok.wav", rng.uniform(-0.3, 0.3, 2 * SR).astype(np.float32), SR)
    out = tmp_path / "e.npz"
    with pytest.warns(UserWarning, match="tiny.wav"):
        assert cli(["embed", str(tmp_path / "in"), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    notes = (tmp_path / "e.npz.notes.csv").read_text().splitlines()
    assert notes[0] == "source,note" and len(notes) == 2 and notes[1].startswith("alice/tiny.wav,\"short clip: 0.10 s")
    assert "1 short clip(s) noted" in capsys.readouterr().out
    assert list(np.load(out)["key"]) == ["alice/ok.wav", "alice/tiny.wav"]
    import singer_ssl.api

    real = singer_ssl.api.load_model

    def strict(*args, **kwargs):  # an encoder with a minimum input longer than tiny.wav
        m = real(*args, **kwargs)
        m.min_samples = SR // 5
        return m

    monkeypatch.setattr(singer_ssl.api, "load_model", strict)
    assert cli(["embed", str(tmp_path / "in"), "--model", str(model_dir), "--out", str(out), "--quiet"]) == 0
    assert list(np.load(out)["key"]) == ["alice/ok.wav"]
    assert "shorter than the encoder's minimum input (3200 samples)" in (tmp_path / "e.npz.skipped.csv").read_text()
