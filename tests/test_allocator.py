"""glibc malloc tuning (singer_ssl.core.allocator): large buffers are reused, the user's choice is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from singer_ssl.core import allocator, stage

# A convolution's activations well above glibc's largest dynamic mmap threshold (32 MiB): 8 x 32 x 128 x 512
# float32 = 64 MiB per tensor. Page faults counted over 4 forward passes after a warm-up pass.
_FAULTS = textwrap.dedent("""
    import json, resource
    import torch
    from singer_ssl.core.allocator import keep_large_allocations
    applied = keep_large_allocations()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Hardtanh())
    x = torch.randn(8, 1, 128, 512)
    with torch.inference_mode():
        net(x)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(4):
            y = net(x)
            del y
    print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
""")


def _faults(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                                             "SINGER_SSL_DEFAULT_MALLOC", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", _FAULTS], env={**env, **env_extra}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_large_buffers_are_reused_instead_of_remapped():
    tuned = _faults({})
    if not tuned["applied"]:
        pytest.skip("no glibc mallopt here (musl?)")
    default = _faults({"SINGER_SSL_DEFAULT_MALLOC": "1"})
    assert default["applied"] is False
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")  # of one activation
    # glibc's default: every pass maps its activations afresh and faults them in page by page (at least one
    # 64 MiB tensor per pass); tuned: the warm-up pass's heap pages are reused (at most about one tensor's worth new)
    assert default["faults"] > 4 * pages
    assert tuned["faults"] < 2 * pages


@pytest.mark.parametrize("env", [{"MALLOC_MMAP_THRESHOLD_": "65536"}, {"MALLOC_TRIM_THRESHOLD_": "0"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"},
                                 {"SINGER_SSL_DEFAULT_MALLOC": "1"}])
def test_the_users_own_malloc_settings_are_left_alone(monkeypatch, env):
    monkeypatch.setattr(allocator, "_applied", None)
    calls = []
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: calls.append(a))
    assert allocator.keep_large_allocations(env) is False
    assert calls == []


def test_no_mallopt_is_a_no_op(monkeypatch):
    def missing(*args):
        raise OSError("no libc")

    monkeypatch.setattr(allocator, "_applied", None)
    monkeypatch.setattr(allocator.ctypes, "CDLL", missing)
    assert allocator.keep_large_allocations({}) is False


def test_every_stage_tunes_before_it_runs(monkeypatch):
    seen = []
    monkeypatch.setattr(stage, "keep_large_allocations", lambda: seen.append("tuned"))
    status = stage.stage_main("demo", lambda args: seen.append("ran") or "done", (), argv=[])
    assert status == 0
    assert seen == ["tuned", "ran"]
