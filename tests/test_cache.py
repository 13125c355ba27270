"""Nothing stale, nothing unsafe: what the train stage may reuse, what it may load, what it leaves behind.

- the run fingerprint covers the code (:func:`singer_ssl.training.checkpoint.code_signature`);
- checkpoints hold tensors and plain types only and load with ``weights_only=True`` (a crafted pickle is
  refused in one line, nothing runs);
- the model folder is byte-reproducible wherever the repository lives (``model.ts`` rewritten);
- atomic writes remove the temporaries that killed writers left (:mod:`singer_ssl.core.io`).

Resuming/retraining behaviour of whole runs is tested in ``tests/test_train.py``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from singer_ssl.core.io import atomic_path, remove_stale_temporaries, write_text
from singer_ssl.model.folder import build_model, save_model_folder, torchscript_hyperparams
from singer_ssl.training import checkpoint as ckpt
from tests.test_full_model import ATTRS, describe, params_for
from tests.test_layout import PACKAGE, ROOT, closure, import_graph, module_files, runs_code, stage_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def python(code: str, cwd: Path, hash_seed: str = "0", path: Path = ROOT) -> str:
    """Run ``code`` in a fresh interpreter (``path`` first on sys.path); returns its stdout."""
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(path)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=3 * 3600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def copy_package(dest: Path) -> Path:
    """A copy of the ``singer_ssl`` package under ``dest`` (returns ``dest``)."""
    shutil.copytree(ROOT / PACKAGE, dest / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


# ---------------------------------------------------------------------------------------------- code fingerprint


def test_code_files_are_the_train_stage_import_closure():
    """Independent computation: tests/test_layout.py's import graph (the one dvc.yaml's deps are checked
    against), from the train module and the packages enclosing it."""
    graph = import_graph(ROOT, PACKAGE)
    start = {"singer_ssl.training.run", "singer_ssl.training", "singer_ssl"}
    theirs = {m for m in closure(start, graph) if runs_code(module_files(ROOT, PACKAGE)[m])}
    ours = {m for m, p in ckpt.code_files().items() if runs_code(p)}
    assert ours == theirs
    # the shim adds only its runner (argument parsing, one-line errors) and the malloc thresholds it sets, neither of
    # which touches the numbers
    shim = {p for p in stage_files(ROOT, "stages/train.py", PACKAGE) if p.startswith(PACKAGE)}
    assert shim - {p.relative_to(ROOT).as_posix() for p in ckpt.code_files().values()} == {
        "singer_ssl/core/stage.py", "singer_ssl/core/allocator.py"}
    assert "singer_ssl.losses.ntxent" in ours and "singer_ssl.evaluation.report" not in ours


def test_code_signature_follows_the_code_the_stage_runs(tmp_path):
    root = copy_package(tmp_path)
    package = root / PACKAGE
    base = ckpt.code_signature(package)
    assert base == ckpt.code_signature(package)
    outside = package / "evaluation" / "report.py"  # not run by the train stage
    outside.write_text(outside.read_text() + "\n# edited\n")
    assert ckpt.code_signature(package) == base
    objective = package / "losses" / "ntxent.py"
    objective.write_text(objective.read_text() + "\n# edited\n")
    edited = ckpt.code_signature(package)
    assert edited != base
    cfg_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    from singer_ssl.training.config import TrainConfig

    cfg = TrainConfig.from_params(cfg_params)
    assert ckpt.fingerprint(cfg, "data", base) != ckpt.fingerprint(cfg, "data", edited)
    assert ckpt.fingerprint(cfg, "data") == ckpt.fingerprint(cfg, "data", ckpt.code_signature())


def test_code_signature_is_the_same_in_any_process(tmp_path):
    """What the process imported before, its hash seed and cwd do not matter (a killed stage resumes)."""
    here = ckpt.code_signature()
    out = python("""
        import singer_ssl.api, singer_ssl.evaluation.run  # more modules loaded than the train stage has
        from singer_ssl.training.checkpoint import code_signature
        print(code_signature())
    """, cwd=tmp_path, hash_seed="12345")
    assert out.strip() == here


# ---------------------------------------------------------------------------------------------- safe checkpoints


class Payload:
    """A pickle that runs code when unpickled: it writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": ckpt.FORMAT, "fingerprint": "x", "step": 1, "model": Payload(marker)}, path)
    return path


def test_crafted_checkpoint_is_refused_in_one_line_and_nothing_runs(tmp_path):
    marker = tmp_path / "marker"
    path = crafted_checkpoint(tmp_path / "last.pt", marker)
    # the file really is malicious: an unrestricted unpickling runs its code
    torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(path)
    assert not marker.exists()
    assert "\n" not in str(err.value) and "cannot be read safely" in str(err.value)
    assert "call of exec" in str(err.value)  # names the refused object


def test_truncated_or_foreign_checkpoint_is_one_line_error(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.save(path, {"step": 3, "w": torch.arange(1000.0)})
    assert ckpt.load(path)["step"] == 3
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(path)
    assert "\n" not in str(err.value)
    torch.save({"format": 2, "step": 3}, path)  # an older format
    with pytest.raises(ckpt.CheckpointError, match=f"not a format-{ckpt.FORMAT} checkpoint"):
        ckpt.load(path)
    torch.save([1, 2], path)
    with pytest.raises(ckpt.CheckpointError, match="found list"):
        ckpt.load(path)
    assert ckpt.load(tmp_path / "absent.pt") is None


def test_plain_state_only_lets_plain_types_through():
    out = ckpt.plain_state({"a": [np.float64(0.5), (np.int64(2), None)], "t": torch.ones(2)})
    assert out["a"] == [0.5, (2, None)] and type(out["a"][0]) is float and type(out["a"][1][0]) is int
    with pytest.raises(TypeError, match=r"checkpoint\['x'\]\[1\] is a \w*Path: a checkpoint holds only"):
        ckpt.plain_state({"x": [1, Path("p")]})
    with pytest.raises(TypeError, match="ndarray"):
        ckpt.save("unused.pt", {"x": np.zeros(2)})


def draws() -> tuple:
    return random.random(), random.gauss(0, 1), tuple(np.random.rand(3)), np.random.randn(), torch.rand(3).tolist()


def test_rng_states_survive_a_safe_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn()  # and in numpy's
    ckpt.save(tmp_path / "last.pt", {"rng": [ckpt.rng_state()]})
    expected = draws()
    draws()
    ckpt.set_rng_state(ckpt.load(tmp_path / "last.pt")["rng"][0])
    assert draws() == expected


def test_module_state_restores_the_mixup_memory_bank():
    from singer_ssl import augment

    def make():
        return augment.build_spectrogram({"mixup": {"p": 1.0, "ratio": 0.4, "bank_size": 4}})

    gen = torch.Generator().manual_seed(0)
    a = make()
    for _ in range(3):
        a(torch.randn(3, 1, 8, 10, generator=gen))
    b = make()
    ckpt.load_module_state(b, ckpt.plain_state(ckpt.module_state(a)), torch.device("cpu"))
    x = torch.randn(3, 1, 8, 10, generator=gen)
    assert torch.equal(a(x, torch.Generator().manual_seed(5)), b(x, torch.Generator().manual_seed(5)))
    fresh = make()
    assert not torch.equal(fresh(x, torch.Generator().manual_seed(5)), b(x, torch.Generator().manual_seed(5)))


# ---------------------------------------------------------------------------------------------- model folder


SAVE = """
    import sys, torch, yaml
    from singer_ssl.model.folder import build_model, save_model_folder
    hp = yaml.safe_load(open(sys.argv[1]).read())
    torch.manual_seed(0)
    save_model_folder(build_model(hp), hp, sys.argv[2])
"""


def save_elsewhere(root: Path, hp_file: Path, out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SAVE), str(hp_file), str(out)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=3 * 3600)
    assert done.returncode == 0, done.stderr[-2000:]


def test_model_folder_is_byte_reproducible_wherever_the_repo_lives(tmp_path):
    """Two copies of the code at different paths, other cwd and hash seeds -> the same bytes."""
    hp = describe(params_for("audiontt2020", {"embedding_dim": 16}), ATTRS, -4.0, 3.0, 1.0)
    hp_file = tmp_path / "hp.yaml"
    hp_file.write_text(yaml.safe_dump(hp, sort_keys=False))
    outs = []
    for name, seed in (("first", "1"), ("second_copy", "2")):
        root = copy_package(tmp_path / name)
        save_elsewhere(root, hp_file, tmp_path / f"out_{name}" / "model", seed)
        outs.append(tmp_path / f"out_{name}" / "model")
    for file in ("model.pt", "model.ts", "hyperparams.yaml"):
        assert (outs[0] / file).read_bytes() == (outs[1] / file).read_bytes(), file
    # and it is the model: loads, same embeddings as eager, carries its sample rate
    torch.manual_seed(0)
    eager = build_model(hp).eval()
    scripted = torch.jit.load(str(outs[0] / "model.ts"))
    wave = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(scripted(wave), eager(wave), atol=1e-5, rtol=1e-5)
    assert torchscript_hyperparams(outs[0] / "model.ts")["frontend"]["sample_rate"] == 8000
    assert torchscript_hyperparams(outs[0] / "model.ts") == yaml.safe_load((outs[0] / "hyperparams.yaml").read_text())


def test_torchscript_written_in_process_matches_and_keeps_no_source_paths(tmp_path):
    hp = describe(params_for("lstm", {"hidden": 8, "layers": 1, "embedding_dim": 12}), ATTRS, -4.0, 3.0, 1.0)
    torch.manual_seed(0)
    model = build_model(hp)
    a = save_model_folder(model, hp, tmp_path / "a" / "model")
    b = save_model_folder(model, hp, tmp_path / "b" / "deeper" / "model")
    assert (a / "model.ts").read_bytes() == (b / "model.ts").read_bytes()
    assert str(ROOT).encode() not in (a / "model.ts").read_bytes()


# ---------------------------------------------------------------------------------------------- temporaries


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
    """A writer killed with SIGKILL inside atomic_path leaves its temporary; the next write removes it."""
    for is_dir in (False, True):
        target = tmp_path / f"out_{is_dir}" / "report.txt"
        code = f"""
            import os, signal
            from pathlib import Path
            from singer_ssl.core.io import atomic_path
            with atomic_path(Path({str(target)!r}), is_dir={is_dir}) as tmp:
                (tmp / "f").write_text("x") if {is_dir} else tmp.write_text("half")
                os.kill(os.getpid(), signal.SIGKILL)
        """
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                              timeout=3 * 3600)
        assert done.returncode == -signal.SIGKILL
        left = [p for p in target.parent.iterdir() if p.name.startswith(".report.txt.tmp-")]
        assert len(left) == 1 and left[0].is_dir() == is_dir
        if is_dir:
            with atomic_path(target, is_dir=True) as tmp:
                (tmp / "f").write_text("ok")
        else:
            write_text(target, "ok")
        assert sorted(p.name for p in target.parent.iterdir()) == ["report.txt"]


def test_only_dead_writers_temporaries_of_the_same_target_go(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = dead_pid()
        names = {
            f".a.csv.tmp-{dead}-0123abcd": True,  # dead writer, this target: removed
            f".a.csv.tmp-{dead}-89abcdef/": True,  # a folder of a dead writer: removed
            f".a.csv.tmp-{live.pid}-0123abcd": False,  # a writer still running
            f".a.csv.tmp-{os.getpid()}-0123abcd": False,  # this process (another thread may be writing)
            f".b.csv.tmp-{dead}-0123abcd": False,  # another target
            f".a.csv.tmp-{dead}-xyz": False,  # not our naming
            "a.csv": False,
        }
        for name in names:
            if name.endswith("/"):
                (tmp_path / name).mkdir()
                (tmp_path / name / "inner").write_text("x")
            else:
                (tmp_path / name).write_text("x")
        removed = remove_stale_temporaries(tmp_path / "a.csv")
        assert sorted(p.name for p in removed) == sorted(n.rstrip("/") for n, gone in names.items() if gone)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n.rstrip("/") for n, gone in names.items()
                                                                       if not gone)
    finally:
        live.kill()
        live.wait()


def test_a_folder_replacing_a_file_leaves_no_temporary(tmp_path):
    target = tmp_path / "model"
    write_text(target, "a file")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "f").write_text("x")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (target / "f").read_text() == "x"
