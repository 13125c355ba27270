"""Device selection: ``cuda`` when available, else CPU, unless the user names one."""

from __future__ import annotations

import torch


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Map ``"auto"``/``None`` to ``cuda`` if available else ``cpu``; pass other names through.

    Raises ``ValueError`` naming the device when ``cuda`` is requested but unavailable.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} requested but CUDA is not available; use device: auto or cpu")
    return dev
