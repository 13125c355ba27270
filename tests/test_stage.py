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
