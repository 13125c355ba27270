"""A full disk ends a stage with one line, "no space left on device writing X", and leaves no temporary file.

The full disk is simulated: a write (h5py's dataset write, torch.save) raises ``OSError(errno.ENOSPC)`` or the
error text a C library gives without an errno; ``shutil.disk_usage`` reports a nearly full filesystem.
"""

from __future__ import annotations

import errno
import importlib
import io
import shutil
from collections import namedtuple
from pathlib import Path

import h5py
import pytest
import torch
import yaml

from singer_ssl.core.errors import DiskFullError
from singer_ssl.core.io import atomic_path, is_disk_full, write_text
from singer_ssl.core.stage import stage_main
from tests.synthetic import make_training_set
from tests.test_features import FE, HOP, N_FFT, N_MELS, SR, _make_segments, _signals

ROOT = Path(__file__).resolve().parents[1]
Usage = namedtuple("Usage", "total used free")
H5PY_TEXT = ("Can't write data (file write failed: time = Mon Dec  7 10:00:00 2026, filename = 'x.h5', file "
             "descriptor = 5, errno = 28, error message = 'No space left on device', buf = 0x1, total write size = 4)")


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".tmp-" in p.name)


def test_disk_full_is_recognised_from_errno_text_and_torch_short_write(tmp_path: Path, monkeypatch):
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    assert is_disk_full(OSError(H5PY_TEXT), tmp_path)  # h5py: errno only in the text
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
    assert not is_disk_full(ValueError("bad value"), tmp_path)
    # torch.save through a Python file: torch's RuntimeError ("unexpected pos") is raised while handling the
    # file's ENOSPC, once the archive writer has started
    class Full(io.BytesIO):
        writes = 0

        def write(self, b):
            Full.writes += 1
            if Full.writes > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    with pytest.raises(RuntimeError) as err:
        torch.save({"w": torch.zeros(1000)}, Full())
    assert "unexpected pos" in str(err.value) and is_disk_full(err.value, tmp_path)
    # torch.save to a path (C++ writes, the errno is lost): a short write counts only on a nearly full disk
    short = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4736 vs 4624")
    assert not is_disk_full(short, tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**9, 10**9 - 4096, 4096))
    assert is_disk_full(short, tmp_path)


def test_atomic_write_on_a_full_disk_is_one_error_and_no_temporary(tmp_path: Path, monkeypatch):
    target = tmp_path / "out" / "x.txt"
    write_text(target, "old\n")
    monkeypatch.setattr(Path, "write_text", _enospc)
    with pytest.raises(DiskFullError) as err:
        write_text(target, "new\n")
    assert str(err.value) == f"no space left on device writing {target}"
    assert target.read_text() == "old\n" and _leftovers(tmp_path) == []  # the previous output is kept
    with pytest.raises(ZeroDivisionError):  # anything else passes through unchanged
        with atomic_path(tmp_path / "y.txt"):
            raise ZeroDivisionError


def _features_project(tmp_path: Path) -> tuple[Path, object]:
    project = tmp_path / "project"
    seg = project / "data" / "segments" / "test" / "toy"
    seg.mkdir(parents=True)
    x = _signals(SR, 1.0, 3, seed=5)
    _make_segments(seg, [("alice", "alice/a.wav", x[0]), ("bob", "bob/b.wav", x[1]), ("bob", "bob/c.wav", x[2])])
    fe = {k: v for k, v in FE.items() if k != "sample_rate"}
    (project / "params.yaml").write_text(yaml.safe_dump({
        "datasets": {"test": {"toy": {"path": "data/raw/toy"}}}, "audio": {"sample_rate": SR},
        "features": {**fe, "dtype": "float32", "batch_size": 2, "device": "cpu"}}), encoding="utf-8")
    assert (fe["n_fft"], fe["hop"], fe["n_mels"]) == (N_FFT, HOP, N_MELS)
    return project, importlib.import_module("stages.features")


@pytest.mark.parametrize("failure", ["errno", "h5py text", "free space"])
def test_features_stage_on_a_full_disk(tmp_path: Path, monkeypatch, capsys, failure):
    """The features stage: a log-mel write raising ENOSPC (or h5py's text), or too little free space for the
    log-mels up front: `error: features: no space left on device writing <file>`, status 1, no file left."""
    monkeypatch.syspath_prepend(str(ROOT))
    project, stage = _features_project(tmp_path)
    monkeypatch.chdir(project)
    if failure == "errno":
        monkeypatch.setattr(h5py.Dataset, "__setitem__", _enospc)
    elif failure == "h5py text":
        def h5py_full(*args, **kwargs):
            raise OSError(H5PY_TEXT)

        monkeypatch.setattr(h5py.Dataset, "__setitem__", h5py_full)
    else:
        monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10**9, 10**9 - 1000, 1000))
    out = "data/features/test/toy.h5"
    status = stage_main("features", stage.main, ("dataset", "segments", "out"),
                        argv=["toy", "data/segments/test/toy", out])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: features: no space left on device writing {out}"), err
    assert not (project / out).exists() and _leftovers(project) == []


def test_train_stage_on_a_full_disk(tmp_path: Path, monkeypatch, capsys):
    """The train stage: torch.save writes part of a file, then ENOSPC: one line naming the checkpoint or model
    being written, status 1, no temporary file or folder left anywhere."""
    from tests.test_train import tiny_params

    monkeypatch.syspath_prepend(str(ROOT))
    stage = importlib.import_module("stages.train")
    make_training_set(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(max_steps=2)), encoding="utf-8")
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # the file is there, partly written ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... when the disk fills up

    monkeypatch.setattr(torch, "save", save_then_fail)
    monkeypatch.chdir(tmp_path)
    paths = ["data/features/train", "data/segments/train", "data/model", "data/checkpoints", "plots/train"]
    status = stage_main("train", stage.main, ("features", "segments", "model", "checkpoints", "plots"), argv=paths)
    err = capsys.readouterr().err  # the progress lines, then the error
    last = err.strip().splitlines()[-1]
    assert status == 1 and "Traceback" not in err and err.count("error:") == 1, err
    assert last in ("error: train: no space left on device writing data/checkpoints/last.pt",
                    "error: train: no space left on device writing data/model"), err
    assert _leftovers(tmp_path) == [] and not (tmp_path / "data" / "model").exists()
