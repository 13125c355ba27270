"""core.stage.stage_main: one summary line, one-line user errors, the restore hint inside `dvc exp run`."""

from __future__ import annotations

import pytest

from singer_ssl.core.stage import RESTORE_HINT, stage_main


def _fail(args):
    raise ValueError(f"loss: unknown {args.name!r}\n(choose one of a, b)")


def test_summary_line_and_exit_status(capsys):
    assert stage_main("demo", lambda a: f"ok {a.name}", ("name",), argv=["x"]) == 0
    assert capsys.readouterr().out == "ok x\n"


def test_user_error_is_one_line_without_hint_outside_an_experiment(monkeypatch, capsys):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert stage_main("demo", _fail, ("name",), argv=["ntxnet"]) == 1
    err = capsys.readouterr().err
    assert err == "error: demo: loss: unknown 'ntxnet' (choose one of a, b)\n"


def test_user_error_inside_dvc_exp_run_says_how_to_restore(monkeypatch, capsys):
    monkeypatch.setenv("DVC_EXP_NAME", "sunny-dawn")
    assert stage_main("demo", _fail, ("name",), argv=["ntxnet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip("\n").endswith(RESTORE_HINT)
    for path in ("params.yaml", "dvc.lock", "metrics", "plots"):  # everything a failed run rewrites or deletes
        assert f" {path} " in err
    assert "singer-ssl restore" in err and "dvc checkout --force" in err


def test_a_bug_keeps_its_traceback():
    with pytest.raises(KeyError):
        stage_main("demo", lambda a: {}["missing"], ("name",), argv=["x"])


# ---------------------------------------------------------------- temporaries of killed writers (issue 25)

DEAD = 999999999  # above any pid_max (2**22): no such process


def _files(root) -> set[str]:
    """Every path under ``root`` (brute force, links not followed), relative."""
    import os

    out = set()
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            out.add(os.path.relpath(os.path.join(folder, name), root))
    return out


def _workspace(tmp_path, outside):
    """A pipeline workspace holding temporaries of dead, live and this process, and look-alikes."""
    import os

    ws = tmp_path / "ws"
    (ws / "data" / "features").mkdir(parents=True)
    (ws / "data" / "model").mkdir()
    (ws / ".dvc" / "tmp").mkdir(parents=True)
    (ws / "dvc.yaml").write_text("stages: {}\n")
    (ws / "data" / "features" / "builtin-train.h5").write_bytes(b"good")
    stale = {f"data/features/.builtin-train.h5.tmp-{DEAD}-deadbeef",  # features killed while writing
             f"data/.model.tmp-{DEAD}-0123abcd",  # a model folder being assembled
             f"data/.model.tmp-{DEAD}-0123abcd/model.pt",
             f"metrics/.builtin-test.json.tmp-{DEAD}-00000000"}
    kept = {f"data/features/.builtin-test.h5.tmp-{os.getppid()}-aaaaaaaa",  # a live writer
            f"data/features/.builtin-test.h5.tmp-{os.getpid()}-bbbbbbbb",  # this process (a thread may write)
            f"data/features/.x.h5.tmp-{DEAD}-nothex00", f"data/features/x.h5.tmp-{DEAD}-deadbeef",  # look-alikes
            f".dvc/tmp/.cache.json.tmp-{DEAD}-deadbeef"}  # hidden folders are not entered
    for rel in sorted(stale | kept):
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("0123abcd"):
            path.mkdir()
        else:
            path.write_bytes(b"half")
    (outside / f".song.wav.tmp-{DEAD}-deadbeef").write_bytes(b"not ours")
    (ws / "data" / "linked").symlink_to(outside, target_is_directory=True)  # a linked dataset folder
    return ws, stale


def test_stage_start_removes_stale_temporaries_everywhere(tmp_path, monkeypatch):
    """Issue 25 case 3: a kill -9 of features left .builtin-train.h5.tmp-<pid>-<hex>; the run-cache restore
    never rewrote the target, so nothing removed it. Any stage's start (scan runs at every repro) does now."""
    outside = tmp_path / "outside"
    outside.mkdir()
    ws, stale = _workspace(tmp_path, outside)
    before = _files(ws)
    monkeypatch.chdir(ws)
    assert stage_main("demo", lambda a: "ok", ("name",), argv=["x"]) == 0
    assert _files(ws) == before - stale
    assert (outside / f".song.wav.tmp-{DEAD}-deadbeef").exists()


def test_no_sweep_outside_a_pipeline_workspace(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    ws, _ = _workspace(tmp_path, outside)
    (ws / "dvc.yaml").unlink()
    before = _files(ws)
    monkeypatch.chdir(ws)
    assert stage_main("demo", lambda a: "ok", ("name",), argv=["x"]) == 0
    assert _files(ws) == before


def test_every_stage_runs_through_stage_main_and_scan_runs_at_every_repro():
    """The glue the sweep relies on: each dvc.yaml stage's script calls stage_main, and the scan stages are
    always_changed (DVC runs them even when every other stage is restored from the run cache)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        script = body["cmd"].split()[1]
        assert script.startswith("stages/") and "stage_main(" in (root / script).read_text(), name
    scans = [body.get("do", body) for name, body in stages.items() if name.startswith("scan")]
    assert scans and all(s.get("always_changed") is True for s in scans)
